package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

func sessionPolicyPath() string {
	return filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "session-policy.yaml")
}

// sessionGoGuest builds examples/session (the Go guest package's KV) for
// wasip1.
func sessionGoGuest(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "session.wasm")
	cmd := exec.Command("go", "build", "-o", out, "./examples/session")
	cmd.Dir = nodetest.RepoRoot()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// kvTask runs testdata/guests/kv.c ("op key [ttl]") on n.
func kvTask(t *testing.T, n *nodetest.Node, token, wasm, cmd, body string) (int, string) {
	t.Helper()
	f := strings.Fields(cmd)
	env := map[string]string{"KV_OP": f[0], "KV_KEY": f[1]}
	if len(f) > 2 {
		env["KV_TTL"] = f[2]
	}
	req := api.TaskRequest{Module: api.Module{WASM: &wasm}, Env: api.StringEnv(env),
		Request: api.TaskHTTPRequest{Method: "POST", URL: "https://task.local/", Body: api.Body{Body: &body}}}
	res := runTask(t, n, token, req)
	if res.Response == nil {
		t.Fatalf("%s: no response: %+v", cmd, res)
	}
	b, _ := res.Response.Bytes()
	return res.Response.Status, string(b)
}

// goTask runs the Go guest with a query on n.
func goTask(t *testing.T, n *nodetest.Node, token, wasm, query string) (int, string) {
	t.Helper()
	req := api.TaskRequest{Module: api.Module{WASM: &wasm}, Request: api.TaskHTTPRequest{Method: "GET", URL: "https://task.local/?" + query}}
	res := runTask(t, n, token, req)
	if res.Response == nil {
		t.Fatalf("%s: no response: %+v", query, res)
	}
	b, _ := res.Response.Bytes()
	return res.Response.Status, string(b)
}

// kvAPI calls the sessions API and returns status, body and error code.
func kvAPI(t *testing.T, n *nodetest.Node, method, path, token string, body any) (int, string, string) {
	t.Helper()
	st, b := n.Do(method, path, token, body)
	code := ""
	if st >= 400 && len(b) > 0 && b[0] == '{' {
		code = errCode(t, b)
	}
	return st, string(b), code
}

// sessionWorker is a JS worker on env.SESSION (Workers KV's API): ?op=
// incr, get, put (the request body, ?ttl=), list (?prefix=) or has; a
// thrown KV error answers 409 with its code.
const sessionWorker = `
export default {
  async fetch(request, env) {
    const q = new URL(request.url).searchParams, kv = env.SESSION, key = q.get('key');
    if (q.get('op') === 'has') return new Response(String(kv !== undefined));
    try {
      switch (q.get('op')) {
        case 'incr': {
          const n = Number((await kv.get(key)) ?? 0) + 1;
          await kv.put(key, String(n));
          return new Response(String(n));
        }
        case 'get': {
          const v = await kv.get(key);
          return v === null ? new Response('', { status: 404 }) : new Response(v);
        }
        case 'put':
          await kv.put(key, await request.text(), q.has('ttl') ? { expirationTtl: Number(q.get('ttl')) } : {});
          return new Response(null, { status: 204 });
        case 'list':
          return Response.json(await kv.list({ prefix: q.get('prefix') }));
      }
      return new Response('unknown op', { status: 400 });
    } catch (e) {
      return new Response(e.message.split(':')[0], { status: 409 });
    }
  },
};
`

// workerTask runs sessionWorker with a query (and a body) on n.
func workerTask(t *testing.T, n *nodetest.Node, token, query, body string) (int, string) {
	t.Helper()
	src := sessionWorker
	req := api.TaskRequest{Module: api.Module{JS: &src},
		Request: api.TaskHTTPRequest{Method: "POST", URL: "https://task.local/?" + query, Body: api.Body{Body: &body}}}
	res := runTask(t, n, token, req)
	if res.Response == nil {
		t.Fatalf("%s: no response: %+v", query, res)
	}
	b, _ := res.Response.Bytes()
	return res.Response.Status, string(b)
}

// TestSessionState runs on three real nodes: WASI guests (C, and Go
// through the guest package on one node, with offloading off so that
// only that node compiles it: compiling a Go module under the race
// detector is slow) and JS workers (env.SESSION) share one session's
// state across tasks on different nodes and with clients of the API;
// another session and another tenant see none of it; the quota holds
// cluster-wide; a TTL runs out on every node; the state survives kill -9
// of the leader.
func TestSessionState(t *testing.T) {
	goWasm := sessionGoGuest(t)
	cWasm := guestB64(t, "kv")
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: sessionPolicyPath(), Args: clusterArgs("--no-offload")})
	a, b, d := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	key := func(tenant string) string {
		var k api.APIKey
		a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "tenant", Tenant: tenant}, 201, &k)
		return k.Key
	}
	demo, other := key("demo"), key("other")
	lease := func(n *nodetest.Node, session string) string {
		var l api.Lease
		n.JSON("POST", "/v1/leases", demo, api.LeaseRequest{Intent: "stateful", Session: session}, 201, &l)
		return l.Token
	}
	s1 := lease(a, "chat-1")

	// Tasks of one session on three nodes, C, Go and JS guests, add to
	// one counter; each sees the one before it.
	for i, step := range []struct {
		n     *nodetest.Node
		guest string
	}{{a, "c"}, {b, "go"}, {d, "js"}, {a, "js"}, {b, "go"}} {
		var st int
		var out string
		switch step.guest {
		case "go":
			st, out = goTask(t, step.n, s1, goWasm, "op=incr&key=turns")
		case "js":
			st, out = workerTask(t, step.n, s1, "op=incr&key=turns", "")
		default:
			st, out = kvTask(t, step.n, s1, cWasm, "incr turns", "")
		}
		if st != 200 || out != fmt.Sprint(i+1) {
			t.Fatalf("step %d on %s (%s): %d %q", i, step.n.ID(), step.guest, st, out)
		}
	}
	// A client reads the tasks' state on a third node and writes a note
	// a task then reads.
	if st, body, _ := kvAPI(t, d, "GET", "/v1/sessions/chat-1/kv/turns", demo, nil); st != 200 || body != "5" {
		t.Fatalf("client read: %d %q", st, body)
	}
	if st, body, _ := kvAPI(t, b, "PUT", "/v1/sessions/chat-1/kv/note%2F1", demo, "remember this"); st != 200 {
		t.Fatalf("client put: %d %s", st, body)
	}
	if st, out := goTask(t, b, s1, goWasm, "op=get&key=note/1"); st != 200 || out != "remember this" {
		t.Fatalf("task reads the client's note: %d %q", st, out)
	}
	if st, out := kvTask(t, a, s1, cWasm, "list note/", ""); st != 200 || !strings.Contains(out, `"name":"note/1"`) {
		t.Fatalf("task lists: %d %s", st, out)
	}
	if st, out := workerTask(t, d, s1, "op=get&key=note/1", ""); st != 200 || out != "remember this" {
		t.Fatalf("a worker reads the client's note: %d %q", st, out)
	}
	if st, out := workerTask(t, a, s1, "op=list&prefix=note/", ""); st != 200 || !strings.HasPrefix(out, `{"keys":[{"name":"note/1","expiration":`) || !strings.HasSuffix(out, `}],"list_complete":true,"cacheStatus":null}`) {
		t.Fatalf("a worker lists: %d %s", st, out)
	}
	// A worker's put, read by a Go guest and a client on other nodes.
	if st, out := workerTask(t, a, s1, "op=put&key=from-js", "written by a worker"); st != 204 {
		t.Fatalf("worker put: %d %q", st, out)
	}
	if st, out := goTask(t, b, s1, goWasm, "op=get&key=from-js"); st != 200 || out != "written by a worker" {
		t.Fatalf("the Go guest reads the worker's put: %d %q", st, out)
	}
	if st, body, _ := kvAPI(t, d, "GET", "/v1/sessions/chat-1/kv/from-js", demo, nil); st != 200 || body != "written by a worker" {
		t.Fatalf("a client reads the worker's put: %d %q", st, body)
	}
	// A lease without a session: the worker has no binding.
	var bare api.Lease
	a.JSON("POST", "/v1/leases", demo, api.LeaseRequest{Intent: "stateful"}, 201, &bare)
	if st, out := workerTask(t, b, bare.Token, "op=has", ""); st != 200 || out != "false" {
		t.Fatalf("a worker without a session: %d %q", st, out)
	}

	// Isolation: another session of the tenant, another tenant's session
	// of the same name, and a lease reaching for another session.
	s2 := lease(b, "chat-2")
	if st, out := kvTask(t, b, s2, cWasm, "get turns", ""); st != 404 {
		t.Fatalf("another session's task: %d %q", st, out)
	}
	if st, _, code := kvAPI(t, a, "GET", "/v1/sessions/chat-1/kv/turns", other, nil); st != 404 || code != "kv_not_found" {
		t.Fatalf("another tenant: %d %s", st, code)
	}
	if st, _, code := kvAPI(t, a, "GET", "/v1/sessions/chat-1/kv/turns", s2, nil); st != 403 || code != "session_not_allowed" {
		t.Fatalf("a lease of another session: %d %s", st, code)
	}

	// The quota is the session's, on every node: fill it through one node,
	// be refused through another, and nothing is written.
	fill := strings.Repeat("f", 120)
	for i := 0; ; i++ {
		n := c.Nodes[i%3]
		st, _, code := kvAPI(t, n, "PUT", fmt.Sprintf("/v1/sessions/chat-2/kv/fill-%d", i), demo, fill)
		if st == 429 && code == "kv_quota_exceeded" {
			break
		}
		if st != 200 || i > 3 {
			t.Fatalf("fill %d: %d %s", i, st, code)
		}
	}
	if st, out := kvTask(t, d, s2, cWasm, "put one-more", fill); st != 409 || out != "kv_quota_exceeded" {
		t.Fatalf("task over the quota: %d %q", st, out)
	}
	if st, out := workerTask(t, b, s2, "op=put&key=one-more", fill); st != 409 || out != "kv_quota_exceeded" {
		t.Fatalf("worker over the quota: %d %q", st, out)
	}
	if st, _, _ := kvAPI(t, a, "GET", "/v1/sessions/chat-2/kv/one-more", demo, nil); st != 404 {
		t.Fatalf("a refused put was written: %d", st)
	}

	// A short TTL runs out on every node.
	if st, out := kvTask(t, a, s1, cWasm, "put brief 1", "soon gone"); st != 204 {
		t.Fatalf("put with a ttl: %d %q", st, out)
	}
	waitFor(t, 30*time.Second, "the brief entry to expire everywhere", func() bool {
		for _, n := range c.Nodes {
			if st, _, _ := kvAPI(t, n, "GET", "/v1/sessions/chat-1/kv/brief", demo, nil); st != 404 {
				return false
			}
		}
		return true
	})

	// kill -9 of the leader: the survivors elect another, keep the state
	// and take writes; the killed node comes back with it.
	leader := c.Leader(30 * time.Second)
	leader.Kill()
	survivor := c.Leader(60*time.Second, leader)
	var rest *nodetest.Node
	for _, n := range c.Nodes {
		if n != leader && n != survivor {
			rest = n
		}
	}
	if st, body, _ := kvAPI(t, rest, "GET", "/v1/sessions/chat-1/kv/turns", demo, nil); st != 200 || body != "5" {
		t.Fatalf("after the leader died: %d %q", st, body)
	}
	waitFor(t, 60*time.Second, "a task to write after the leader died", func() bool {
		st, out := kvTask(t, rest, s1, cWasm, "incr turns", "")
		return st == 200 && out == "6"
	})
	leader.Restart()
	leader.WaitReady(60 * time.Second)
	waitFor(t, 60*time.Second, "the restarted node to serve the state", func() bool {
		st, body, _ := kvAPI(t, leader, "GET", "/v1/sessions/chat-1/kv/turns", demo, nil)
		return st == 200 && body == "6"
	})

	// Ending the session drops its state on every node.
	var ended api.SessionEnded
	rest.JSON("DELETE", "/v1/sessions/chat-1", demo, nil, 200, &ended)
	if ended.Deleted < 2 {
		t.Fatalf("end session: %+v", ended)
	}
	for _, n := range c.Nodes {
		waitFor(t, 10*time.Second, "the ended session to be gone on "+n.ID(), func() bool {
			st, _, _ := kvAPI(t, n, "GET", "/v1/sessions/chat-1/kv/turns", demo, nil)
			return st == 404
		})
	}
}

// TestTaskHistoryOnAnyNode: an interactive task's record is readable on
// every node of the cluster (bounded: no body, no logs), by its tenant
// and staff only.
func TestTaskHistoryOnAnyNode(t *testing.T) {
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: sessionPolicyPath(), Args: clusterArgs("--no-offload")})
	a := c.Nodes[0]
	key := func(tenant string) string {
		var k api.APIKey
		a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "tenant", Tenant: tenant}, 201, &k)
		return k.Key
	}
	demo, other := key("demo"), key("other")
	var l api.Lease
	a.JSON("POST", "/v1/leases", demo, api.LeaseRequest{Intent: "stateful"}, 201, &l)
	wasm := guestB64(t, "kv")
	res := runTask(t, a, l.Token, api.TaskRequest{Module: api.Module{WASM: &wasm}, Env: api.StringEnv(map[string]string{"KV_OP": "none", "KV_KEY": "x"})})
	if res.Outcome != "ok" || res.Node != a.ID() {
		t.Fatalf("task: %+v", res)
	}
	for _, n := range c.Nodes[1:] {
		var got api.Task
		waitFor(t, 30*time.Second, "the task's record on "+n.ID(), func() bool {
			st, b := n.Do("GET", "/v1/tasks/"+res.TaskID, demo, nil)
			return st == 200 && json.Unmarshal(b, &got) == nil
		})
		r := got.Result
		if got.State != "succeeded" || r == nil || r.Outcome != "ok" || r.Node != a.ID() || r.Tenant != "demo" ||
			r.Receipt == nil || r.Receipt.Index != res.Receipt.Index || !r.ResponseElided || r.Response == nil || r.Response.Status != 200 || len(r.Logs) != 0 {
			t.Fatalf("record on %s: %+v", n.ID(), got)
		}
		if body, _ := r.Response.Bytes(); len(body) != 0 {
			t.Fatalf("history kept the body on %s: %q", n.ID(), body)
		}
		if st, _ := n.Do("GET", "/v1/tasks/"+res.TaskID, other, nil); st != 404 {
			t.Fatalf("another tenant reads the record on %s: %d", n.ID(), st)
		}
		if st, _ := n.Do("GET", "/v1/tasks/"+res.TaskID, n.Token, nil); st != 200 {
			t.Fatalf("the admin reads the record on %s: %d", n.ID(), st)
		}
	}
}
