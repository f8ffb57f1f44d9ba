package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/usage"
)

// BenchmarkMeteringCost measures what metering costs a task, in one run:
// two real nodes, one metering (every task journals its usage, synced,
// and batches it through Raft) and one started with
// LEASH_BENCH_UNMETERED=1, driven in alternating rounds with the minimal
// guest at each concurrency; the ratio of the rates is the cost.
//
//	go test -run '^$' -bench BenchmarkMeteringCost -benchtime 1x ./bench/
func BenchmarkMeteringCost(b *testing.B) {
	args := []string{"--slots", "8", "--log-level", "warn"}
	on := nodetest.Start(b, nodetest.Options{Args: args})
	off := nodetest.Start(b, nodetest.Options{Args: args, Env: []string{"LEASH_BENCH_UNMETERED=1"}})
	type target struct {
		url, token string
		task       []byte
	}
	prep := func(n *nodetest.Node) target {
		var l api.Lease
		n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs", TTLSeconds: 900}, 201, &l)
		st, body := n.Do("PUT", "/v1/modules", l.Token, loadGuest(b, "minimal"), "Content-Type", "application/wasm")
		if st != 201 {
			b.Fatalf("put module: %d %s", st, body)
		}
		var ref api.ModuleRef
		_ = json.Unmarshal(body, &ref)
		task, _ := json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}})
		return target{n.URL() + "/v1/tasks", l.Token, task}
	}
	tOn, tOff := prep(on), prep(off)
	run := func(t target, n, c int) Latencies {
		return Load(n, c, func(int) error { return post(t.url, t.token, t.task, 200) })
	}
	const rounds, perRound = 10, 200
	for _, c := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			run(tOn, 100, c) // warm up both
			run(tOff, 100, c)
			var sumOn, sumOff time.Duration
			var errs int64
			costs := make([]float64, 0, rounds)
			for r := 0; r < rounds; r++ {
				// Alternate which goes first so drift on the shared VM
				// lands on both sides; each round gives a ratio.
				first, second := tOn, tOff
				if r%2 == 1 {
					first, second = tOff, tOn
				}
				a, z := run(first, perRound, c), run(second, perRound, c)
				if r%2 == 1 {
					a, z = z, a
				}
				sumOn += a.Elapsed
				sumOff += z.Elapsed
				errs += a.Errors + z.Errors
				costs = append(costs, (1-z.Elapsed.Seconds()/a.Elapsed.Seconds())*100)
			}
			slices.Sort(costs)
			n := float64(rounds * perRound)
			rOn, rOff := n/sumOn.Seconds(), n/sumOff.Seconds()
			b.ReportMetric(rOn, "metered_tasks/s")
			b.ReportMetric(rOff, "unmetered_tasks/s")
			b.ReportMetric((1-rOn/rOff)*100, "cost_%")
			b.ReportMetric((costs[rounds/2-1]+costs[rounds/2])/2, "median_round_cost_%")
			if errs > 0 {
				b.ReportMetric(float64(errs), "errors")
			}
		})
	}
}

// BenchmarkUsageQuery measures GET /v1/usage and the FOCUS export over
// 1,000 tenants × 30 days (one profile each: 30,000 counter rows) on a
// real node. The usage gets there the way a node's own does: written to
// the node's meter journal while it is stopped, replayed and batched
// through Raft when it starts.
//
//	go test -run '^$' -bench BenchmarkUsageQuery -benchtime 1x ./bench/
func BenchmarkUsageQuery(b *testing.B) {
	const tenants, days = 1000, 30
	n := nodetest.Start(b, nodetest.Options{Args: []string{"--log-level", "warn"}})
	if err := n.Stop(30 * time.Second); err != nil {
		b.Fatal(err)
	}
	to := time.Now().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, -(days - 1))
	seedJournal(b, filepath.Join(n.DataDir, "pebble"), tenants, days, from)
	n.Restart()
	q := fmt.Sprintf("from=%s&to=%s", consensus.Day(from), consensus.Day(to))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var rep struct {
			Total struct {
				Usage consensus.UsageCounters `json:"usage"`
			} `json:"total"`
		}
		n.JSON("GET", "/v1/usage?group_by=day&"+q, n.Token, nil, 200, &rep)
		if rep.Total.Usage.Tasks == tenants*days*10 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("usage replayed: %d tasks, want %d", rep.Total.Usage.Tasks, tenants*days*10)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, tc := range []struct{ name, path string }{
		{"usage/all", "/v1/usage?" + q},
		{"usage/group_by=tenant", "/v1/usage?group_by=tenant&" + q},
		{"usage/one-tenant", "/v1/usage?tenant=t0500&" + q},
		{"focus/all", "/v1/usage/focus?" + q},
		{"focus/one-tenant", "/v1/usage/focus?tenant=t0500&" + q},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var size int64
			lat := Load(max(b.N, 5), 1, func(int) error {
				req, _ := http.NewRequest("GET", n.URL()+tc.path, nil)
				req.Header.Set("Authorization", "Bearer "+n.Token)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				size, err = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return err
			})
			b.ReportMetric(float64(lat.P50.Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(lat.Max.Microseconds())/1000, "max_ms")
			b.ReportMetric(float64(size), "bytes")
			if lat.Errors > 0 {
				b.ReportMetric(float64(lat.Errors), "errors")
			}
		})
	}
}

// seedJournal meters tenants × days of usage into a stopped node's
// journal through the meter itself (concurrent Adds, as tasks make them).
func seedJournal(b *testing.B, dir string, tenants, days int, from time.Time) {
	db, err := consensus.OpenDB(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, err := usage.Open(usage.Config{DB: db, Node: "seed-unused", Propose: nil})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t, d := i/days, i%days
				m.Add(fmt.Sprintf("t%04d", t), "read_docs", from.AddDate(0, 0, d).Add(12*time.Hour), consensus.UsageCounters{
					Tasks: 10, CPUMs: 1234, WallMs: 2345, EgressBytesOut: 10_000, EgressBytesIn: 200_000, ToolCalls: 7, Subrequests: 7})
			}
		}()
	}
	for i := 0; i < tenants*days; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
}
