package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/leash-dev/leash/api"
)

// workerKVPolicy names the binding MEMORY and allows three KV calls a
// task; nokv grants no KV.
const workerKVPolicy = `version: 1
profiles:
  js:
    limits: {cpu_ms: 5000, wall_ms: 20000, memory_mb: 128, output_bytes: 65536, log_bytes: 4096, subrequests: 0}
    max_lease_ttl: 1h
    kv: {quota_bytes: 4096, ttl: 1h, ops_per_task: 3, binding: MEMORY}
  nokv:
    limits: {cpu_ms: 5000, wall_ms: 20000, memory_mb: 128, output_bytes: 65536, log_bytes: 4096, subrequests: 0}
    max_lease_ttl: 1h
intents: {}
tenants:
  demo:
    profiles: [js, nokv]
`

// kvWorker reports which bindings it has, then makes KV calls on
// env.MEMORY until one is refused, and answers what it saw.
const kvWorker = `export default { async fetch(request, env) {
  const seen = [typeof env.SESSION, typeof env.MEMORY];
  if (env.MEMORY) {
    try {
      await env.MEMORY.put('note', 'from a worker', { metadata: { n: 1 } });
      seen.push((await env.MEMORY.getWithMetadata('note', 'text')).metadata.n);
      seen.push((await env.MEMORY.list()).keys.length);
      await env.MEMORY.get('note');
      seen.push('fourth call allowed');
    } catch (e) {
      seen.push(e.message.split(':')[0]);
    }
  }
  return new Response(seen.join(' '));
} };`

// TestWorkerSessionKV runs a JS worker on a real node: its binding is
// named by the profile's kv.binding, each call goes through the task's
// KV (kv.ops_per_task refuses the fourth with kv_ops_exceeded), a client
// reads what it wrote, and a profile without KV leaves no binding.
func TestWorkerSessionKV(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(workerKVPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	engine := filepath.Join("..", "build", "engine", "engine.wasm")
	if _, err := os.Stat(engine); err != nil {
		t.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	tn := startTestNode(t, Config{PolicyFile: pol, EnginePath: engine})
	var k api.APIKey
	tn.call(t, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: "tenant", Tenant: "demo"}, &k, 201)
	run := func(profile, session string) string {
		t.Helper()
		var l api.Lease
		tn.call(t, "POST", "/v1/leases", k.Key, api.LeaseRequest{Profile: profile, Session: session}, &l, 201)
		src := kvWorker
		var res api.TaskResult
		tn.call(t, "POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{JS: &src}}, &res, 200)
		if res.Response == nil {
			t.Fatalf("%s/%s: no response: %+v", profile, session, res)
		}
		b, _ := res.Response.Bytes()
		return string(b)
	}
	cases := []struct{ profile, session, want string }{
		{"js", "w1", "undefined object 1 1 kv_ops_exceeded"},
		{"js", "", "undefined undefined"},
		{"nokv", "w1", "undefined undefined"},
	}
	for _, c := range cases {
		if got := run(c.profile, c.session); got != c.want {
			t.Errorf("profile %s session %q: %q, want %q", c.profile, c.session, got, c.want)
		}
	}
	if st, b, _ := kvDo(t, tn, "GET", "/v1/sessions/w1/kv/note", k.Key, nil); st != 200 || string(b) != "from a worker" {
		t.Fatalf("a client reads the worker's put: %d %q", st, b)
	}
}
