package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// BenchmarkSessionKV measures the session KV on real nodes, in one run:
// a get and a put from a task (timed inside the guest on its monotonic
// clock, so only the host call: the boundary, the lease check, the read
// or the Raft round trip, the event), a put through the API at
// concurrency 1 and 8 on one node and on three, and the task rate of a
// WASI guest with one get and one put per task against the same guest
// making no KV call.
//
//	go test -run '^$' -bench BenchmarkSessionKV -benchtime 1x ./bench/
func BenchmarkSessionKV(b *testing.B) {
	pol := filepath.Join(nodetest.RepoRoot(), "bench", "testdata", "session.yaml")
	one := nodetest.Start(b, nodetest.Options{Policy: pol, Args: []string{"--slots", "8", "--log-level", "warn"}})
	b.Run("one-node", func(b *testing.B) { sessionKVRuns(b, one, one) })
	c := nodetest.StartCluster(b, nodetest.ClusterOptions{N: 3, Policy: pol,
		Args: []string{"--log-level", "warn", "--slots", "8", "--no-offload", "--dead-timeout", "1m"}})
	leader := c.Leader(10 * time.Second)
	for _, n := range c.Nodes {
		if n != leader {
			b.Run("three-nodes/follower", func(b *testing.B) { sessionKVRuns(b, n, leader) })
			break
		}
	}
	b.Run("three-nodes/leader", func(b *testing.B) { sessionKVRuns(b, leader, leader) })
}

func sessionKVRuns(b *testing.B, n, admin *nodetest.Node) {
	var k api.APIKey
	admin.JSON("POST", "/v1/apikeys", admin.Token, api.APIKeyRequest{Role: "tenant", Tenant: "demo"}, 201, &k)
	var l api.Lease
	n.JSON("POST", "/v1/leases", k.Key, api.LeaseRequest{Intent: "stateful", Session: "bench"}, 201, &l)
	st, body := n.Do("PUT", "/v1/modules", l.Token, loadGuest(b, "kv"), "Content-Type", "application/wasm")
	if st != 201 {
		b.Fatalf("put module: %d %s", st, body)
	}
	var ref api.ModuleRef
	_ = json.Unmarshal(body, &ref)
	task := func(env map[string]string) []byte {
		t, _ := json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}, Env: api.StringEnv(env)})
		return t
	}
	if st, body := n.Do("PUT", "/v1/sessions/bench/kv/k", k.Key, "v"); st != 200 {
		b.Fatalf("seed: %d %s", st, body)
	}

	// From a task, timed in the guest.
	for _, op := range []string{"get", "put"} {
		b.Run("task-"+op, func(b *testing.B) {
			const calls = 2000
			var res api.TaskResult
			n.JSON("POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{Digest: &ref.Digest},
				Env: api.StringEnv(map[string]string{"KV_OP": "bench-" + op, "KV_KEY": "k", "KV_N": strconv.Itoa(calls)})}, 200, &res)
			out, _ := res.Response.Bytes()
			if res.Response.Status != 200 {
				b.Fatalf("%s: %d %s", op, res.Response.Status, out)
			}
			var lat []time.Duration
			for _, line := range strings.Fields(string(out)) {
				ns, _ := strconv.ParseInt(line, 10, 64)
				lat = append(lat, time.Duration(ns))
			}
			slices.Sort(lat)
			p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
			b.ReportMetric(float64(p(0.5).Microseconds()), "p50_µs")
			b.ReportMetric(float64(p(0.99).Microseconds()), "p99_µs")
			b.Logf("kv.%s from a task on %s: %d calls, p50 %v p99 %v", op, n.ID(), len(lat), p(0.5), p(0.99))
		})
	}

	// Through the API, with a tenant key.
	for _, c := range []int{1, 8} {
		b.Run(fmt.Sprintf("api-put/c=%d", c), func(b *testing.B) {
			put := func(i int) error {
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/v1/sessions/bench/kv/p%d", n.URL(), i%64), bytes.NewReader([]byte("value-0123456789")))
				req.Header.Set("Authorization", "Bearer "+k.Key)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}
			Load(50, c, put)
			lat := Load(1000, c, put)
			lat.Report(b, "puts")
			b.Logf("api put c=%d on %s: %.0f/s p50 %v p99 %v errors %d", c, n.ID(), lat.Rate(), lat.P50, lat.P99, lat.Errors)
		})
	}

	// Tasks/s with one get and one put per task against none, c=8,
	// interleaved in rounds so that the machine's noise hits both.
	b.Run("tasks", func(b *testing.B) {
		url := n.URL() + "/v1/tasks"
		none, incr := task(map[string]string{"KV_OP": "none", "KV_KEY": "c"}), task(map[string]string{"KV_OP": "incr", "KV_KEY": "c"})
		var rates [2][]float64
		for round := 0; round < 3; round++ {
			for i, body := range [][]byte{none, incr} {
				lat := Load(400, 8, func(int) error { return post(url, l.Token, body, 200) })
				if lat.Errors > 0 {
					b.Fatalf("%d errors", lat.Errors)
				}
				rates[i] = append(rates[i], lat.Rate())
			}
		}
		slices.Sort(rates[0])
		slices.Sort(rates[1])
		b.ReportMetric(rates[0][1], "tasks/s_no_kv")
		b.ReportMetric(rates[1][1], "tasks/s_get_put")
		b.Logf("tasks/s on %s, median of 3 rounds: no kv %.0f, one get + one put %.0f (%.0f%%)", n.ID(), rates[0][1], rates[1][1], 100*rates[1][1]/rates[0][1])
	})
}
