package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/leash-dev/leash/api"
)

// BenchmarkMCPRunJavaScript compares, on one node in one run, the same
// Worker run three ways at concurrency 8 (docs/BENCHMARKS.md, "MCP"):
//
//   - tasks: POST /v1/tasks with a lease issued once (the floor);
//   - lease+task: POST /v1/leases, then POST /v1/tasks, per call (what a
//     client that takes a lease per task pays);
//   - mcp: run_javascript over Streamable HTTP at /mcp with a tenant key
//     (one JSON-RPC tools/call per POST, stateless), which issues a lease
//     and submits the task in process, per call.
//
// Rounds alternate and the medians are reported, with mcp/tasks and
// mcp/lease+task ratios.
func BenchmarkMCPRunJavaScript(b *testing.B) {
	n := startNode(b)
	var k api.APIKey
	n.JSON("POST", "/v1/apikeys", n.Token, api.APIKeyRequest{Role: "tenant", Tenant: "demo"}, 201, &k)
	var l api.Lease
	n.JSON("POST", "/v1/leases", k.Key, api.LeaseRequest{Intent: "transform_content", TTLSeconds: 3600}, 201, &l)
	src := jsHello
	task, _ := json.Marshal(api.TaskRequest{Module: api.Module{JS: &src}})
	leaseReq, _ := json.Marshal(api.LeaseRequest{Intent: "transform_content"})
	call, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": "run_javascript", "arguments": map[string]any{"code": src, "intent": "transform_content"}}})

	tasks := func(int) error { return post(n.URL()+"/v1/tasks", l.Token, task, 200) }
	leaseTask := func(int) error {
		req, _ := http.NewRequest("POST", n.URL()+"/v1/leases", bytes.NewReader(leaseReq))
		req.Header.Set("Authorization", "Bearer "+k.Key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var fresh api.Lease
		err = json.NewDecoder(resp.Body).Decode(&fresh)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 201 {
			return fmt.Errorf("lease: %d %v", resp.StatusCode, err)
		}
		return post(n.URL()+"/v1/tasks", fresh.Token, task, 200)
	}
	mcp := func(int) error {
		req, _ := http.NewRequest("POST", n.URL()+"/mcp", bytes.NewReader(call))
		req.Header.Set("Authorization", "Bearer "+k.Key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"outcome":"ok"`) || strings.Contains(string(body), `"isError":true`) {
			return fmt.Errorf("mcp: %d %s", resp.StatusCode, body)
		}
		return nil
	}
	ops := []struct {
		name string
		fn   func(int) error
	}{{"tasks", tasks}, {"lease+task", leaseTask}, {"mcp", mcp}}
	for _, op := range ops {
		if err := op.fn(0); err != nil {
			b.Fatalf("%s: %v", op.name, err)
		}
		Load(100, 8, op.fn) // warm up
	}
	b.ResetTimer()
	rates := make([][]float64, len(ops))
	p50 := make([][]float64, len(ops))
	for round := 0; round < 5; round++ {
		for i, op := range ops {
			lat := Load(max(b.N, 400), 8, op.fn)
			if lat.Errors > 0 {
				b.Fatalf("%s: %d errors", op.name, lat.Errors)
			}
			rates[i] = append(rates[i], lat.Rate())
			p50[i] = append(p50[i], float64(lat.P50.Microseconds()))
		}
	}
	t, lt, m := median(rates[0]), median(rates[1]), median(rates[2])
	b.ReportMetric(t, "tasks/s")
	b.ReportMetric(lt, "lease+task/s")
	b.ReportMetric(m, "mcp/s")
	b.ReportMetric(m/t, "mcp/tasks")
	b.ReportMetric(m/lt, "mcp/lease+task")
	b.ReportMetric(median(p50[0]), "tasks_p50_µs")
	b.ReportMetric(median(p50[2]), "mcp_p50_µs")
}
