package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// BenchmarkStarvation measures, in one run on one real node, whether bulk
// work and another tenant's flood starve a tenant's interactive tasks
// (docs/scheduling.md, docs/BENCHMARKS.md):
//
//  1. tenant a sends interactive tasks at a steady rate (open loop): its
//     p50 and p99 alone;
//
//  2. for the record, while tenant b floods interactive tasks at 10× a's
//     rate, without bulk work;
//
//  3. then, after 10,000 bulk tasks of tenant b are enqueued, while b
//     floods again and the backlog drains: a's p50 and p99, and the ratio
//     of a's p99 to its p99 alone (target: within 2×);
//
//  4. the backlog still drains: how many bulk tasks finished during the
//     flood, and how long the whole backlog took.
//
//     go test -run '^$' -bench BenchmarkStarvation -benchtime 1x ./bench/
func BenchmarkStarvation(b *testing.B) {
	const (
		rateA   = 20.0 // a's interactive tasks per second
		rateB   = 10 * rateA
		backlog = 10_000
		window  = 30 * time.Second
	)
	n := nodetest.Start(b, nodetest.Options{
		Policy: filepath.Join(nodetest.RepoRoot(), "bench", "testdata", "starvation.yaml"),
		Args:   append([]string{"--slots", "4", "--log-level", "warn", "--no-offload"}, strings.Fields(os.Getenv("STARVATION_ARGS"))...),
	})
	lease := func(tenant, class string) api.Lease {
		var l api.Lease
		n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: tenant, Intent: "quick", Class: class, TTLSeconds: 3600}, 201, &l)
		return l
	}
	la, lb, lbulk := lease("a", "interactive"), lease("b", "interactive"), lease("b", "bulk")
	st, body := n.Do("PUT", "/v1/modules", n.Token, loadGuest(b, "minimal"), "Content-Type", "application/wasm")
	if st != 201 {
		b.Fatalf("put module: %d %s", st, body)
	}
	var ref api.ModuleRef
	_ = json.Unmarshal(body, &ref)
	task, _ := json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}})
	url := n.URL() + "/v1/tasks"
	interactive := func(token string) func() error { return func() error { return post(url, token, task, 200) } }

	for b.Loop() {
		Load(200, 4, func(int) error { return post(url, la.Token, task, 200) }) // warm up

		alone := openLoop(context.Background(), rateA, window, interactive(la.Token))
		b.Logf("a alone:                  %d tasks, p50 %v, p99 %v, errors %d", alone.N, alone.P50, alone.P99, alone.Errors)

		// For the record: the flood alone, without bulk work.
		floodOnly := openLoops(rateA, rateB, window, interactive(la.Token), interactive(lb.Token))
		b.Logf("a with b's flood only:    %d tasks, p50 %v, p99 %v, errors %d (b: %d sent, p99 %v, shed %d)",
			floodOnly[0].N, floodOnly[0].P50, floodOnly[0].P99, floodOnly[0].Errors, floodOnly[1].N+int(floodOnly[1].Errors), floodOnly[1].P99, floodOnly[1].Errors)

		// The backlog, enqueued by 16 clients; it starts draining at once.
		start := time.Now()
		enq := Load(backlog, 16, func(i int) error {
			req, _ := json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}, IdempotencyKey: fmt.Sprint("backlog-", i)})
			return post(url, lbulk.Token, req, 202)
		})
		if enq.Errors > 0 {
			b.Fatalf("%d enqueues failed", enq.Errors)
		}
		before := countTasks(b, n, "succeeded")
		b.Logf("bulk backlog:             %d enqueued in %v (%.0f/s, p99 %v); %d already finished",
			backlog, enq.Elapsed.Round(time.Millisecond), enq.Rate(), enq.P99, before)

		// a's steady load and b's flood while the backlog drains.
		res := openLoops(rateA, rateB, window, interactive(la.Token), interactive(lb.Token))
		loaded, flood := res[0], res[1]
		during := countTasks(b, n, "succeeded") - before
		b.Logf("a with flood and backlog: %d tasks, p50 %v, p99 %v, errors %d", loaded.N, loaded.P50, loaded.P99, loaded.Errors)
		b.Logf("b's flood:                %d sent at %.0f/s, p50 %v, p99 %v, shed %d", flood.N+int(flood.Errors), rateB, flood.P50, flood.P99, flood.Errors)
		b.Logf("bulk during the flood:    %d finished in %v (%.0f/s)", during, window, float64(during)/window.Seconds())
		ratio := float64(loaded.P99) / float64(alone.P99)
		verdict := "met"
		if ratio > 2 {
			verdict = "NOT met"
		}
		b.Logf("a's p99 under load / alone: %.2f (target ≤ 2: %s)", ratio, verdict)

		drained := waitDrained(b, n, 10*time.Minute)
		total := time.Since(start)
		if !drained {
			b.Fatal("the bulk backlog did not drain")
		}
		if got := countTasks(b, n, "succeeded"); got != backlog {
			b.Errorf("%d bulk tasks succeeded, want %d", got, backlog)
		}
		b.Logf("bulk backlog drained:     all %d %v after the first enqueue (%.0f tasks/s overall)", backlog, total.Round(time.Millisecond), float64(backlog)/total.Seconds())
		b.ReportMetric(float64(alone.P99.Microseconds())/1000, "a_p99_alone_ms")
		b.ReportMetric(float64(loaded.P99.Microseconds())/1000, "a_p99_loaded_ms")
		b.ReportMetric(ratio, "p99_ratio")
		b.ReportMetric(float64(during)/window.Seconds(), "bulk_per_s_under_flood")
		b.ReportMetric(total.Seconds(), "backlog_drain_s")
	}
}

// openLoops runs two open loops at once for d.
func openLoops(rate1, rate2 float64, d time.Duration, op1, op2 func() error) [2]Latencies {
	var out [2]Latencies
	done := make(chan struct{})
	go func() {
		out[1] = openLoop(context.Background(), rate2, d, op2)
		close(done)
	}()
	out[0] = openLoop(context.Background(), rate1, d, op1)
	<-done
	return out
}

// openLoop starts op at a steady rate for d, each on its own goroutine
// (an open loop: a slow answer does not delay the next request), and
// measures each call. Failed calls count as errors, not latencies.
func openLoop(ctx context.Context, rate float64, d time.Duration, op func() error) Latencies {
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	start := time.Now()
	end := time.After(d)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if err := op(); err != nil {
				errs.Add(1)
				return
			}
			el := time.Since(t0)
			mu.Lock()
			lat = append(lat, el)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return summarize(lat, time.Since(start), errs.Load())
}

// countTasks counts bulk tasks in a state, page by page.
func countTasks(b *testing.B, n *nodetest.Node, state string) int {
	k, cursor := 0, ""
	for {
		var page api.TaskList
		if err := n.TryJSON("GET", "/v1/tasks?limit=500&state="+state+"&cursor="+cursor, n.Token, nil, http.StatusOK, &page); err != nil {
			b.Fatal(err)
		}
		k += len(page.Tasks)
		if page.NextCursor == "" {
			return k
		}
		cursor = page.NextCursor
	}
}

// waitDrained waits until no bulk task is queued or running.
func waitDrained(b *testing.B, n *nodetest.Node, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		empty := true
		for _, state := range []string{"queued", "running"} {
			var page api.TaskList
			if err := n.TryJSON("GET", "/v1/tasks?limit=1&state="+state, n.Token, nil, http.StatusOK, &page); err != nil {
				b.Fatal(err)
			}
			if len(page.Tasks) > 0 {
				empty = false
			}
		}
		if empty {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}
