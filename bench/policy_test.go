package bench

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/policy"
)

// variant is the built-in bundle with docs-reader's cpu_ms set: a new
// digest per value.
func variant(cpu int) []byte {
	return []byte(strings.Replace(string(policy.DefaultYAML()), "cpu_ms: 500", fmt.Sprintf("cpu_ms: %d", cpu), 1))
}

// BenchmarkPolicyPromotion promotes a new bundle to prod on a
// three-node cluster, ten times, each step through another node, and
// measures how long the promotion takes to answer and until every node
// serves the new digest (the issue's bar: within a second).
func BenchmarkPolicyPromotion(b *testing.B) {
	c := nodetest.StartCluster(b, nodetest.ClusterOptions{N: 3, Args: []string{"--log-level", "warn"}})
	n := c.Nodes
	var answered, inForce []time.Duration
	for i := range 10 {
		src := variant(400 - i)
		pb, _ := policy.Parse(src)
		n[i%3].JSON("PUT", "/v1/policy/envs/dev", n[i%3].Token, src, 200, nil)
		n[(i+1)%3].JSON("POST", "/v1/policy/envs/stage/promote", n[(i+1)%3].Token, api.PromoteRequest{}, 200, nil)
		start := time.Now()
		n[(i+2)%3].JSON("POST", "/v1/policy/envs/prod/promote", n[(i+2)%3].Token, api.PromoteRequest{}, 200, nil)
		answered = append(answered, time.Since(start))
		for _, m := range n {
			for {
				var e api.PolicyEnv
				m.JSON("GET", "/v1/policy/envs/prod", m.Token, nil, 200, &e)
				if e.Digest == pb.Digest() {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		inForce = append(inForce, time.Since(start))
	}
	slices.Sort(answered)
	slices.Sort(inForce)
	b.ReportMetric(float64(answered[len(answered)/2].Microseconds())/1000, "answer_p50_ms")
	b.ReportMetric(float64(inForce[len(inForce)/2].Microseconds())/1000, "all_nodes_p50_ms")
	b.ReportMetric(float64(inForce[len(inForce)-1].Microseconds())/1000, "all_nodes_max_ms")
}

// BenchmarkLeaseIssueCanary issues leases on one node with no canary and
// with a 50% canary, rounds alternating in one run: what choosing the
// digest from the lease id (and reading the canary) costs.
func BenchmarkLeaseIssueCanary(b *testing.B) {
	n := startNode(b)
	src := variant(400)
	n.JSON("PUT", "/v1/policy/envs/dev", n.Token, src, 200, nil)
	n.JSON("POST", "/v1/policy/envs/stage/promote", n.Token, api.PromoteRequest{}, 200, nil)
	req, _ := json.Marshal(api.LeaseRequest{Tenant: "demo", Intent: "read_docs"})
	var rates [2][]float64
	for round := 0; round < 3; round++ {
		for i, pct := range []int{0, 50} {
			if pct == 0 {
				if st, body := n.Do("POST", "/v1/policy/canary/abort", n.Token, nil); st != 200 && st != 409 {
					b.Fatalf("abort: %d %s", st, body)
				}
			} else {
				n.JSON("PUT", "/v1/policy/canary", n.Token, api.CanaryRequest{Percent: pct}, 200, nil)
			}
			lat := Load(1000, 8, func(int) error { return post(n.URL()+"/v1/leases", n.Token, req, 201) })
			if lat.Errors > 0 {
				b.Fatalf("%d errors", lat.Errors)
			}
			rates[i] = append(rates[i], lat.Rate())
		}
	}
	off, on := median(rates[0]), median(rates[1])
	b.ReportMetric(off, "no_canary_per_s")
	b.ReportMetric(on, "canary_per_s")
	b.ReportMetric(on/off, "canary/none")
}

// BenchmarkCanaryPicks is the digest choice alone.
func BenchmarkCanaryPicks(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		consensus.CanaryPicks("lse_abcdefghijklmnopqrstuvwxyz", i%100)
	}
}
