package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// BenchmarkRunbookContainment: on a three-node cluster, 40 rounds of each
// containment action (freeze/thaw, block/unblock, revoke a tenant's
// leases), each through another node: the time to the acknowledgement,
// and from the acknowledgement until every node enforces it (the issue's
// bar: within a second, aiming at 200 ms). p50 and p99 per action.
func BenchmarkRunbookContainment(b *testing.B) {
	c := nodetest.StartCluster(b, nodetest.ClusterOptions{N: 3, Args: []string{"--log-level", "warn"}})
	n := c.Nodes
	type series struct{ ack, after []time.Duration }
	res := map[string]*series{"freeze": {}, "block": {}, "revoke": {}}
	run := func(name string, via *nodetest.Node, call func(*nodetest.Node), inForce func(*nodetest.Node) bool) {
		start := time.Now()
		call(via)
		acked := time.Now()
		for _, m := range n {
			for !inForce(m) {
				if time.Since(acked) > 5*time.Second {
					b.Fatalf("%s not in force on %s", name, m.ID())
				}
				time.Sleep(500 * time.Microsecond)
			}
		}
		s := res[name]
		s.ack, s.after = append(s.ack, acked.Sub(start)), append(s.after, time.Since(acked))
	}
	for i := range 40 {
		via := n[i%3]
		run("freeze", via, func(v *nodetest.Node) {
			v.JSON("PUT", "/v1/runbook/frozen/docs-reader", v.Token, api.FreezeRequest{}, 200, nil)
		}, func(m *nodetest.Node) bool {
			st, _ := m.Do("POST", "/v1/leases", m.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"})
			return st == 409
		})
		via.JSON("DELETE", "/v1/runbook/frozen/docs-reader", via.Token, nil, 200, nil)
		dest := fmt.Sprintf("x%d.exfil.test", i)
		run("block", via, func(v *nodetest.Node) {
			v.JSON("POST", "/v1/runbook/blocks", v.Token, api.BlockRequest{Destinations: []string{dest}}, 200, nil)
		}, func(m *nodetest.Node) bool {
			var l struct {
				Blocks []api.Block `json:"blocks"`
			}
			m.JSON("GET", "/v1/runbook/blocks", m.Token, nil, 200, &l)
			for _, bl := range l.Blocks {
				if bl.Destination == dest {
					return true
				}
			}
			return false
		})
		var l api.Lease
		n[(i+1)%3].JSON("POST", "/v1/leases", n[0].Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, 201, &l)
		run("revoke", via, func(v *nodetest.Node) {
			v.JSON("POST", "/v1/runbook/revoke", v.Token, api.RevokeRequest{Tenant: "demo"}, 200, nil)
		}, func(m *nodetest.Node) bool {
			var got api.Lease
			return m.TryJSON("GET", "/v1/leases/"+l.LeaseID, m.Token, nil, 200, &got) == nil && got.Revoked
		})
	}
	for _, name := range []string{"freeze", "block", "revoke"} {
		s := res[name]
		b.ReportMetric(ms(percentile(s.ack, 50)), name+"_ack_p50_ms")
		b.ReportMetric(ms(percentile(s.ack, 99)), name+"_ack_p99_ms")
		b.ReportMetric(ms(percentile(s.after, 50)), name+"_in_force_after_ack_p50_ms")
		b.ReportMetric(ms(percentile(s.after, 99)), name+"_in_force_after_ack_p99_ms")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
