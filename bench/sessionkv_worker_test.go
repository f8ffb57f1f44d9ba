package bench

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// BenchmarkSessionKVJS measures the JS hello rate (c=8, one real node)
// of a worker making one env.SESSION get and one put per task against
// the same worker making one get only and no KV call, in rounds
// interleaved so that the machine's noise falls on all three. (The
// counter the put writes races at c=8; its value is not the point.)
//
//	go test -run '^$' -bench BenchmarkSessionKVJS -benchtime 1x ./bench/
func BenchmarkSessionKVJS(b *testing.B) {
	pol := filepath.Join(nodetest.RepoRoot(), "bench", "testdata", "session.yaml")
	n := nodetest.Start(b, nodetest.Options{Policy: pol, Args: []string{"--slots", "8", "--log-level", "warn"}})
	var k api.APIKey
	n.JSON("POST", "/v1/apikeys", n.Token, api.APIKeyRequest{Role: "tenant", Tenant: "demo"}, 201, &k)
	var l api.Lease
	n.JSON("POST", "/v1/leases", k.Key, api.LeaseRequest{Intent: "stateful", Session: "bench-js"}, 201, &l)
	const hello = `export default { async fetch(request, env) {
  const path = new URL(request.url).pathname;
  if (path !== '/') {
    const n = Number((await env.SESSION.get('c')) ?? 0);
    if (path === '/kv') await env.SESSION.put('c', String(n + 1));
  }
  return new Response('hello');
} };`
	src := hello
	task := func(path string) []byte {
		t, _ := json.Marshal(api.TaskRequest{Module: api.Module{JS: &src}, Request: api.TaskHTTPRequest{Method: "GET", URL: "https://task.local" + path}})
		return t
	}
	url := n.URL() + "/v1/tasks"
	bodies := [][]byte{task("/"), task("/get"), task("/kv")}
	for _, body := range bodies { // compile and warm
		if err := post(url, l.Token, body, 200); err != nil {
			b.Fatal(err)
		}
	}
	var rates [3][]float64
	for round := 0; round < 3; round++ {
		for i, body := range bodies {
			lat := Load(400, 8, func(int) error { return post(url, l.Token, body, 200) })
			if lat.Errors > 0 {
				b.Fatalf("%d errors", lat.Errors)
			}
			rates[i] = append(rates[i], lat.Rate())
		}
	}
	for i := range rates {
		slices.Sort(rates[i])
	}
	b.ReportMetric(rates[0][1], "tasks/s_no_kv")
	b.ReportMetric(rates[1][1], "tasks/s_get")
	b.ReportMetric(rates[2][1], "tasks/s_get_put")
	b.Logf("JS hello tasks/s, median of 3 rounds: no kv %.0f, one get %.0f (%.0f%%), one get + one put %.0f (%.0f%%); rounds %.0f",
		rates[0][1], rates[1][1], 100*rates[1][1]/rates[0][1], rates[2][1], 100*rates[2][1]/rates[0][1], rates)
}
