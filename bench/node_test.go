package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// client is an HTTP client with enough idle connections for the
// concurrency levels used here.
var client = &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}, Timeout: time.Minute}

func post(url, token string, body []byte, want int) error {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// startNode starts a real node (not race-instrumented: benchmarks run
// without -race) with enough slots and queue for the load.
func startNode(b *testing.B) *nodetest.Node {
	return nodetest.Start(b, nodetest.Options{Args: []string{"--slots", "8", "--log-level", "warn"}})
}

// BenchmarkTasksEndToEnd drives POST /v1/tasks on a real node with the
// minimal guest (stored by digest): lease verification, scheduling,
// a fresh sandbox and the task record, per request.
func BenchmarkTasksEndToEnd(b *testing.B) {
	n := startNode(b)
	var l api.Lease
	n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, 201, &l)
	st, body := n.Do("PUT", "/v1/modules", l.Token, loadGuest(b, "minimal"), "Content-Type", "application/wasm")
	if st != 201 {
		b.Fatalf("put module: %d %s", st, body)
	}
	var ref api.ModuleRef
	_ = json.Unmarshal(body, &ref)
	task, _ := json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}})
	url := n.URL() + "/v1/tasks"
	for _, c := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			Load(200, c, func(int) error { return post(url, l.Token, task, 200) }) // warm up
			b.ResetTimer()
			lat := Load(max(b.N, 2000), c, func(int) error { return post(url, l.Token, task, 200) })
			lat.Report(b, "tasks")
		})
	}
}

// BenchmarkLeaseIssue issues leases through Raft on one node.
func BenchmarkLeaseIssue(b *testing.B) {
	n := startNode(b)
	req, _ := json.Marshal(api.LeaseRequest{Tenant: "demo", Intent: "read_docs"})
	url := n.URL() + "/v1/leases"
	for _, c := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			b.ResetTimer()
			lat := Load(max(b.N, 1000), c, func(int) error { return post(url, n.Token, req, 201) })
			lat.Report(b, "leases")
		})
	}
}

// BenchmarkAuditCost runs the same load against two nodes in one run, one
// with receipts (signed, batched through Raft into the Merkle ledger) and
// one without (LEASH_BENCH_UNAUDITED=1), and reports the throughput ratio.
func BenchmarkAuditCost(b *testing.B) {
	for _, c := range []int{8, 32} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) { auditCost(b, c) })
	}
}

// minimalTask issues a lease on n, uploads the minimal guest under it and
// returns the lease token and a task request that runs it by digest.
func minimalTask(b *testing.B, n *nodetest.Node) (token string, task []byte) {
	var l api.Lease
	n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, 201, &l)
	_, body := n.Do("PUT", "/v1/modules", l.Token, loadGuest(b, "minimal"), "Content-Type", "application/wasm")
	var ref api.ModuleRef
	_ = json.Unmarshal(body, &ref)
	task, _ = json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}})
	return l.Token, task
}

func auditCost(b *testing.B, conc int) {
	run := func(env []string) Latencies {
		n := nodetest.Start(b, nodetest.Options{Args: []string{"--slots", "8", "--log-level", "warn"}, Env: env})
		defer n.Stop(30 * time.Second)
		token, task := minimalTask(b, n)
		url := n.URL() + "/v1/tasks"
		Load(300, conc, func(int) error { return post(url, token, task, 200) })
		return Load(max(b.N, 3000), conc, func(int) error { return post(url, token, task, 200) })
	}
	b.ResetTimer()
	off := run([]string{"LEASH_BENCH_UNAUDITED=1"})
	on := run(nil)
	b.ReportMetric(on.Rate(), "audited_tasks/s")
	b.ReportMetric(off.Rate(), "unaudited_tasks/s")
	b.ReportMetric(on.Rate()/off.Rate(), "ratio")
	b.ReportMetric(float64(on.P50.Microseconds()), "audited_p50_µs")
	b.ReportMetric(float64(off.P50.Microseconds()), "unaudited_p50_µs")
}

// BenchmarkCredentialCost issues leases (a Raft write each) and reads a
// lease record (no write: the credential check is most of the work) on one
// node with the admin token and with a tenant's API key, alternating
// rounds in one run, and reports the key/admin throughput ratio.
func BenchmarkCredentialCost(b *testing.B) {
	n := startNode(b)
	var k api.APIKey
	n.JSON("POST", "/v1/apikeys", n.Token, api.APIKeyRequest{Role: "tenant", Tenant: "demo"}, 201, &k)
	var l api.Lease
	n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, 201, &l)
	req, _ := json.Marshal(api.LeaseRequest{Tenant: "demo", Intent: "read_docs"})
	get := func(token string) error {
		r, _ := http.NewRequest("GET", n.URL()+"/v1/leases/"+l.LeaseID, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(r)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	for _, op := range []struct {
		name string
		fn   func(token string) error
		n    int
	}{
		{"issue", func(tok string) error { return post(n.URL()+"/v1/leases", tok, req, 201) }, 1000},
		{"read", get, 5000},
	} {
		b.Run(op.name, func(b *testing.B) {
			var rates [2][]float64
			for round := 0; round < 3; round++ {
				for i, tok := range []string{n.Token, k.Key} {
					lat := Load(op.n, 8, func(int) error { return op.fn(tok) })
					if lat.Errors > 0 {
						b.Fatalf("%d errors", lat.Errors)
					}
					rates[i] = append(rates[i], lat.Rate())
				}
			}
			admin, key := median(rates[0]), median(rates[1])
			b.ReportMetric(admin, "admin_per_s")
			b.ReportMetric(key, "key_per_s")
			b.ReportMetric(key/admin, "key/admin")
		})
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	slices.Sort(s)
	return s[len(s)/2]
}
