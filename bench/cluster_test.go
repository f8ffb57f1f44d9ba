package bench

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// BenchmarkCluster runs three real nodes on loopback (each on its own
// 127.x address, as the cluster tests do) and measures, in one cluster:
// lease issues through the leader and through a follower, revocation
// propagation (acknowledged → refused on every node), leader failover
// (kill -9 → a leader every live node agrees on), and interactive tasks/s
// sent to one node versus spread over the three.
//
//	go test -run '^$' -bench BenchmarkCluster -benchtime 1x ./bench/
//
// (-benchtime 1x: each sub-benchmark is one run of a fixed size.)
func BenchmarkCluster(b *testing.B) {
	c := nodetest.StartCluster(b, nodetest.ClusterOptions{
		N:      3,
		Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "policy.yaml"),
		Args:   []string{"--log-level", "warn", "--slots", "4", "--no-offload", "--dead-timeout", "1m"},
	})
	leader := c.Leader(10 * time.Second)
	var follower *nodetest.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	leaseBody, _ := json.Marshal(api.LeaseRequest{Tenant: "demo", Intent: "small_task", TTLSeconds: 600})
	issue := func(n *nodetest.Node) func(int) error {
		return func(int) error { return post(n.URL()+"/v1/leases", n.Token, leaseBody, 201) }
	}
	for _, tc := range []struct {
		name string
		n    *nodetest.Node
	}{{"leader", leader}, {"follower", follower}} {
		b.Run("lease/"+tc.name, func(b *testing.B) {
			Load(50, 4, issue(tc.n)) // warm up connections
			l := Load(1000, 8, issue(tc.n))
			l.Report(b, "leases")
			b.Logf("lease via %s: %.0f/s p50 %v p99 %v errors %d", tc.name, l.Rate(), l.P50, l.P99, l.Errors)
		})
	}

	b.Run("revocation", func(b *testing.B) {
		const rounds = 50
		lat := make([]time.Duration, 0, rounds)
		for i := range rounds {
			var l api.Lease
			leader.JSON("POST", "/v1/leases", leader.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, 201, &l)
			via := c.Nodes[i%len(c.Nodes)]
			time.Sleep(20 * time.Millisecond)
			resp, err := via.Request(10*time.Second, "DELETE", "/v1/leases/"+l.LeaseID, via.Token, nil)
			if err != nil || resp.Status != 204 {
				b.Fatalf("revoke: %v %+v", err, resp)
			}
			acked := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var worst time.Duration
			for _, n := range c.Nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						// An empty task body: the lease is checked first, so
						// a live lease answers 400 and a revoked one 403.
						r, err := n.Request(5*time.Second, "POST", "/v1/tasks", l.Token, "{}", "Content-Type", "application/json")
						if err == nil && r.Status == 403 {
							d := time.Since(acked)
							mu.Lock()
							worst = max(worst, d)
							mu.Unlock()
							return
						}
						if time.Since(acked) > 5*time.Second {
							b.Errorf("%s still accepts a revoked lease", n.ID())
							return
						}
					}
				}()
			}
			wg.Wait()
			lat = append(lat, worst)
		}
		s := summarize(lat, 0, 0)
		b.ReportMetric(float64(s.P50.Microseconds()), "p50_µs")
		b.ReportMetric(float64(s.P99.Microseconds()), "p99_µs")
		b.Logf("revocation acknowledged → refused on all 3 nodes: p50 %v p99 %v max %v (%d rounds)", s.P50, s.P99, s.Max, rounds)
	})

	b.Run("tasks", func(b *testing.B) {
		wasm, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "build", "guests", "minimal.wasm"))
		if err != nil {
			b.Skipf("guest missing (make guests): %v", err)
		}
		s := base64.StdEncoding.EncodeToString(wasm)
		body, _ := json.Marshal(api.TaskRequest{Module: api.Module{WASM: &s}})
		var l api.Lease
		leader.JSON("POST", "/v1/leases", leader.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task", TTLSeconds: 600}, 201, &l)
		time.Sleep(200 * time.Millisecond)
		run := func(nodes []*nodetest.Node) Latencies {
			return Load(600, 12, func(i int) error {
				n := nodes[i%len(nodes)]
				return post(n.URL()+"/v1/tasks", l.Token, body, 200)
			})
		}
		run(c.Nodes) // warm every node's compile cache
		one := run(c.Nodes[:1])
		all := run(c.Nodes)
		b.ReportMetric(one.Rate(), "one-node-tasks/s")
		b.ReportMetric(all.Rate(), "cluster-tasks/s")
		b.ReportMetric(all.Rate()/one.Rate(), "ratio")
		b.Logf("tasks: one node %.0f/s (p50 %v, errors %d); three nodes %.0f/s (p50 %v, errors %d); ratio %.2f",
			one.Rate(), one.P50, one.Errors, all.Rate(), all.P50, all.Errors, all.Rate()/one.Rate())
	})

	// follower-path: interactive tasks sent to one follower only, the
	// path the freshness check guards (docs/BENCHMARKS.md, "Cluster under
	// faults": run on the code before and after it, back to back).
	b.Run("follower-path", func(b *testing.B) {
		wasm, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "build", "guests", "minimal.wasm"))
		if err != nil {
			b.Skipf("guest missing (make guests): %v", err)
		}
		s := base64.StdEncoding.EncodeToString(wasm)
		body, _ := json.Marshal(api.TaskRequest{Module: api.Module{WASM: &s}})
		var l api.Lease
		leader.JSON("POST", "/v1/leases", leader.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task", TTLSeconds: 600}, 201, &l)
		time.Sleep(200 * time.Millisecond)
		task := func(int) error { return post(follower.URL()+"/v1/tasks", l.Token, body, 200) }
		Load(100, 8, task) // warm the follower's compile cache
		var rates []float64
		var p50s []time.Duration
		for range 3 {
			r := Load(600, 8, task)
			rates = append(rates, r.Rate())
			p50s = append(p50s, r.P50)
			b.Logf("follower path: %.0f tasks/s p50 %v p99 %v errors %d", r.Rate(), r.P50, r.P99, r.Errors)
		}
		b.ReportMetric(rates[len(rates)-1], "tasks/s")
		b.Logf("follower path, 3 rounds: %v tasks/s, p50 %v", rates, p50s)
	})

	b.Run("failover", func(b *testing.B) {
		const rounds = 3
		var took []time.Duration
		for range rounds {
			old := c.Leader(10 * time.Second)
			old.Kill()
			killed := time.Now()
			nl := c.Leader(15*time.Second, old)
			took = append(took, time.Since(killed))
			if nl == old {
				b.Fatal("same leader")
			}
			old.Restart()
			c.WaitMembers(30*time.Second, 3)
		}
		s := summarize(took, 0, 0)
		b.ReportMetric(float64(s.P50.Milliseconds()), "p50_ms")
		b.ReportMetric(float64(s.Max.Milliseconds()), "max_ms")
		b.Logf("failover (kill -9 of the leader → all live nodes agree on a new one): %v", fmt.Sprint(took))
	})
}
