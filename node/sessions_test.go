package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/sessions"
)

// sessionPolicy has a profile with a small session KV, one with a
// single KV call per task, and one without KV.
const sessionPolicy = `version: 1
profiles:
  kv:
    limits: {cpu_ms: 5000, wall_ms: 20000, memory_mb: 128, output_bytes: 65536, log_bytes: 4096, subrequests: 0}
    max_lease_ttl: 1h
    kv: {quota_bytes: 64, ttl: 1h, max_key_bytes: 32, max_value_bytes: 40, ops_per_task: 10}
  onecall:
    limits: {cpu_ms: 5000, wall_ms: 20000, memory_mb: 128, output_bytes: 65536, log_bytes: 4096, subrequests: 0}
    max_lease_ttl: 1h
    kv: {quota_bytes: 64, ops_per_task: 1}
  nokv:
    limits: {cpu_ms: 5000, wall_ms: 20000, memory_mb: 128, output_bytes: 65536, log_bytes: 4096, subrequests: 0}
    max_lease_ttl: 1h
intents: {}
tenants:
  demo:
    profiles: [kv, onecall, nokv]
  other:
    profiles: [kv]
`

// fakeClock is the session KV's injected clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// kvDo sends one request to the sessions API and returns status, body
// and the error code of a JSON error.
func kvDo(t *testing.T, tn *testNode, method, path, token string, body []byte, hdr ...string) (int, []byte, string) {
	t.Helper()
	req, _ := http.NewRequest(method, tn.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb struct {
		Error api.Error `json:"error"`
	}
	_ = json.Unmarshal(b, &eb)
	return resp.StatusCode, b, eb.Error.Code
}

// runSessionTask runs testdata/guests/kv.c: query is "op key [ttl]".
func runSessionTask(t *testing.T, tn *testNode, token, query string, body string) (status int, out string, res api.TaskResult) {
	t.Helper()
	wasm := guestWasm(t, "kv")
	f := strings.Fields(query)
	env := map[string]string{"KV_OP": f[0], "KV_KEY": f[1]}
	if len(f) > 2 {
		env["KV_TTL"] = f[2]
	}
	req := api.TaskRequest{Module: api.Module{WASM: &wasm}, Env: api.StringEnv(env), Request: api.TaskHTTPRequest{Method: "POST", URL: "https://task.local/"}}
	req.Request.Body.Body = &body
	tn.call(t, "POST", "/v1/tasks", token, req, &res, 200)
	if res.Response == nil {
		t.Fatalf("task without a response: %+v", res)
	}
	b, _ := res.Response.Bytes()
	return res.Response.Status, string(b), res
}

// TestSessionKV: clients and tasks share a session's state; tenants and
// sessions are isolated; every limit refuses with its code and writes
// nothing; TTLs run on the injected clock; ending a session drops it.
func TestSessionKV(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(sessionPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now()}
	tn := startTestNode(t, Config{PolicyFile: pol, KVNow: clock.Now})
	key := func(tenant string) string {
		var k api.APIKey
		tn.call(t, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: "tenant", Tenant: tenant}, &k, 201)
		return k.Key
	}
	demo, other := key("demo"), key("other")
	lease := func(profile, session string) string {
		var l api.Lease
		tn.call(t, "POST", "/v1/leases", demo, api.LeaseRequest{Profile: profile, Session: session}, &l, 201)
		return l.Token
	}

	// A client writes; a task of the session reads and adds; the client
	// reads the task's write.
	if st, b, _ := kvDo(t, tn, "PUT", "/v1/sessions/s1/kv/count", demo, []byte("41")); st != 200 {
		t.Fatalf("put: %d %s", st, b)
	}
	s1 := lease("kv", "s1")
	if st, out, res := runSessionTask(t, tn, s1, "incr count", ""); st != 200 || out != "42" {
		t.Fatalf("incr: %d %q %+v", st, out, res)
	}
	if st, b, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/count", demo, nil); st != 200 || string(b) != "42" {
		t.Fatalf("get after the task: %d %q", st, b)
	}
	// The lease reads its own session through the API, never another.
	if st, b, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/count", s1, nil); st != 200 || string(b) != "42" {
		t.Fatalf("lease get: %d %q", st, b)
	}
	if st, _, code := kvDo(t, tn, "GET", "/v1/sessions/s2/kv/count", s1, nil); st != 403 || code != sessions.CodeSessionNotAllowed {
		t.Fatalf("lease reads another session: %d %s", st, code)
	}

	// Revoking a lease of the session does not delete its state.
	var rl api.Lease
	tn.call(t, "POST", "/v1/leases", demo, api.LeaseRequest{Profile: "kv", Session: "s1"}, &rl, 201)
	if st, _, _ := kvDo(t, tn, "DELETE", "/v1/leases/"+rl.LeaseID, demo, nil); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	if st, b, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/count", demo, nil); st != 200 || string(b) != "42" {
		t.Fatalf("after a lease of the session was revoked: %d %q", st, b)
	}

	// Isolation: another session of the tenant and another tenant's
	// session of the same name see nothing; their writes do not show.
	if st, _, code := kvDo(t, tn, "GET", "/v1/sessions/s2/kv/count", demo, nil); st != 404 || code != sessions.CodeKVNotFound {
		t.Fatalf("another session: %d %s", st, code)
	}
	if st, _, code := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/count", other, nil); st != 404 || code != sessions.CodeKVNotFound {
		t.Fatalf("another tenant: %d %s", st, code)
	}
	if st, _, _ := kvDo(t, tn, "PUT", "/v1/sessions/s1/kv/count", other, []byte("7")); st != 200 {
		t.Fatalf("other's put: %d", st)
	}
	if _, b, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/count", demo, nil); string(b) != "42" {
		t.Fatalf("other tenant's write shows in demo's session: %q", b)
	}
	if st, out, _ := runSessionTask(t, tn, lease("kv", "s2"), "get count", ""); st != 404 {
		t.Fatalf("task of another session: %d %q", st, out)
	}

	// Bad input: each refused with its code, nothing written.
	for name, c := range map[string]struct {
		method, path string
		body         []byte
		status       int
		code         string
	}{
		"key too long":    {"PUT", "/v1/sessions/s1/kv/" + strings.Repeat("k", 33), []byte("v"), 400, "invalid_kv_key"},
		"key not utf-8":   {"PUT", "/v1/sessions/s1/kv/%ff", []byte("v"), 400, "invalid_kv_key"},
		"value too large": {"PUT", "/v1/sessions/s1/kv/big", bytes.Repeat([]byte("v"), 41), 413, "kv_value_too_large"},
		"bad ttl":         {"PUT", "/v1/sessions/s1/kv/t?expiration_ttl=-1", []byte("v"), 400, "invalid_kv_ttl"},
		"over quota":      {"PUT", "/v1/sessions/s1/kv/fill-fill-fill-fill-fill", bytes.Repeat([]byte("v"), 40), 429, "kv_quota_exceeded"},
		"bad session":     {"GET", "/v1/sessions/s%2F1/kv/count", nil, 400, "bad_request"},
		"bad limit":       {"GET", "/v1/sessions/s1/kv?limit=5000", nil, 400, "invalid_kv_argument"},
		"no kv profile":   {"GET", "/v1/sessions/s1/kv/count?profile=nokv", nil, 403, "kv_disabled"},
	} {
		st, b, code := kvDo(t, tn, c.method, c.path, demo, c.body)
		if st != c.status || code != c.code {
			t.Errorf("%s: %d %s (%s), want %d %s", name, st, code, b, c.status, c.code)
		}
	}
	var list struct {
		Keys []struct {
			Name string `json:"name"`
		} `json:"keys"`
		ListComplete bool `json:"list_complete"`
	}
	if st, b, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv", demo, nil); st != 200 || json.Unmarshal(b, &list) != nil || len(list.Keys) != 1 || !list.ListComplete {
		t.Fatalf("list after refusals: %d %s", st, b)
	}

	// Tasks: no session, no KV in the profile, one call per task.
	if st, out, _ := runSessionTask(t, tn, lease("kv", ""), "get count", ""); st != 409 || out != "kv_no_session" {
		t.Fatalf("task without a session: %d %q", st, out)
	}
	if st, out, _ := runSessionTask(t, tn, lease("nokv", "s1"), "get count", ""); st != 409 || out != "kv_disabled" {
		t.Fatalf("profile without kv: %d %q", st, out)
	}
	if st, out, _ := runSessionTask(t, tn, lease("onecall", "s1"), "incr count", ""); st != 409 || out != "kv_ops_exceeded" {
		t.Fatalf("second call of a one-call task: %d %q", st, out)
	}
	if st, out, _ := runSessionTask(t, tn, s1, "put big", strings.Repeat("v", 41)); st != 409 || out != "kv_value_too_large" {
		t.Fatalf("task's put over the value limit: %d %q", st, out)
	}

	// TTL on the injected clock: a put's TTL is capped to the profile's;
	// past it the entry is gone from reads at once, and its bytes no
	// longer count against the quota.
	if st, b, _ := kvDo(t, tn, "PUT", "/v1/sessions/s1/kv/short?expiration_ttl=60", demo, bytes.Repeat([]byte("s"), 30)); st != 200 {
		t.Fatalf("short put: %d %s", st, b)
	}
	st, _, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/short", demo, nil)
	if st != 200 {
		t.Fatalf("short before its ttl: %d", st)
	}
	if st, _, code := kvDo(t, tn, "PUT", "/v1/sessions/s1/kv/more", demo, bytes.Repeat([]byte("m"), 30)); st != 429 || code != "kv_quota_exceeded" {
		t.Fatalf("put over quota: %d %s", st, code)
	}
	clock.Advance(61 * time.Second)
	if st, _, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/short", demo, nil); st != 404 {
		t.Fatalf("short after its ttl: %d", st)
	}
	if st, b, _ := kvDo(t, tn, "PUT", "/v1/sessions/s1/kv/more", demo, bytes.Repeat([]byte("m"), 30)); st != 200 {
		t.Fatalf("put once the expired entry is gone: %d %s", st, b)
	}
	// The long-lived entries outlive the short one, until their hour.
	clock.Advance(time.Hour)
	if st, _, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/count", demo, nil); st != 404 {
		t.Fatalf("count after the profile's ttl: %d", st)
	}

	// Events: a task's KV calls are tool calls with their bytes.
	var evs struct {
		Events []struct {
			Data toolCallData `json:"data"`
		} `json:"events"`
	}
	tn.call(t, "GET", "/v1/events?type=tool_call_attempted&limit=500", tn.token, nil, &evs, 200)
	tools := map[string]int{}
	for _, e := range evs.Events {
		if strings.HasPrefix(e.Data.Tool, "kv.") && e.Data.Destination == "session:s1" {
			tools[e.Data.Tool]++
			if e.Data.Tool == "kv.put" && e.Data.BytesSent == 0 {
				t.Errorf("kv.put event without bytes: %+v", e.Data)
			}
		}
	}
	if tools["kv.get"] == 0 || tools["kv.put"] == 0 {
		t.Fatalf("kv tool call events: %v", tools)
	}

	// ... and tool calls in the tenant's usage (the daily envelope,
	// chargeback); the meter sends its batches every few seconds.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var u struct {
			Rows []struct {
				Profile string `json:"profile"`
				Usage   struct {
					ToolCalls int64 `json:"tool_calls"`
				} `json:"usage"`
			} `json:"rows"`
		}
		tn.call(t, "GET", "/v1/usage?tenant=demo&group_by=profile", tn.token, nil, &u, 200)
		var calls int64 // every profile's: the onecall lease's get counts too
		for _, r := range u.Rows {
			calls += r.Usage.ToolCalls
		}
		if calls >= int64(tools["kv.get"]+tools["kv.put"]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metered tool calls: %d, want at least %d (%+v)", calls, tools["kv.get"]+tools["kv.put"], u)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Ending the session drops its state, not the other tenant's.
	for _, k := range []string{demo, other} {
		if st, b, _ := kvDo(t, tn, "PUT", "/v1/sessions/s1/kv/a", k, []byte("7")); st != 200 {
			t.Fatalf("put: %d %s", st, b)
		}
	}
	var ended api.SessionEnded
	tn.call(t, "DELETE", "/v1/sessions/s1", demo, nil, &ended, 200)
	if ended.Deleted < 1 {
		t.Fatalf("end session: %+v", ended)
	}
	if st, _, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/a", demo, nil); st != 404 {
		t.Fatalf("after the session ended: %d", st)
	}
	if st, b, _ := kvDo(t, tn, "GET", "/v1/sessions/s1/kv/a", other, nil); st != 200 || string(b) != "7" {
		t.Fatalf("other tenant's session after demo's ended: %d %q", st, b)
	}
}

type toolCallData struct {
	Tool        string `json:"tool"`
	Destination string `json:"destination"`
	BytesSent   int64  `json:"bytes_sent"`
}
