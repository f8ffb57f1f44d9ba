package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// bearerTransport adds a bearer credential to every request.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// fixture is a real node (a leash serve process) with tenant keys.
type fixture struct {
	node    *nodetest.Node
	demo    string // a tenant key of demo
	limited string // a tenant key of limited
	// mcpURL is an endpoint serving Streamable HTTP: the node's /mcp, or a
	// standalone server calling the node over HTTP.
	mcpURL string
}

func startFixture(t *testing.T) *fixture {
	t.Helper()
	n := nodetest.Start(t, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "mcp", "testdata", "policy.yaml")})
	f := &fixture{node: n}
	for _, k := range []struct {
		tenant string
		into   *string
	}{{"demo", &f.demo}, {"limited", &f.limited}} {
		var key api.APIKey
		n.JSON("POST", "/v1/apikeys", n.Token, api.APIKeyRequest{Role: "tenant", Tenant: k.tenant, Name: "mcp-test"}, 201, &key)
		*k.into = key.Key
	}
	return f
}

// standalone serves the MCP handler on a loopback server of its own that
// calls the node over HTTP, as a sidecar would.
func (f *fixture) standalone(t *testing.T) string {
	t.Helper()
	srv, err := mcp.New(mcp.Options{API: http.DefaultTransport, BaseURL: f.node.URL(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// connectHTTP connects a Go SDK client over Streamable HTTP.
func connectHTTP(t *testing.T, endpoint, token, version string) *sdk.ClientSession {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "leash-test", Version: "1"}, nil)
	tr := &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: bearerTransport{token, http.DefaultTransport}}, DisableStandaloneSSE: true}
	cs, err := c.Connect(context.Background(), tr, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect %s: %v", endpoint, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// connectStdio starts `leash mcp` with the key in LEASH_KEY and connects
// a Go SDK client to it.
func connectStdio(t *testing.T, nodeURL, key string) *sdk.ClientSession {
	t.Helper()
	cmd := exec.Command(nodetest.Binary(t), "mcp", "--log-level", "info")
	cmd.Env = append(os.Environ(), "LEASH_URL="+nodeURL, "LEASH_KEY="+key, "LEASH_TOKEN=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	c := sdk.NewClient(&sdk.Implementation{Name: "leash-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.CommandTransport{Command: cmd, TerminateDuration: 5 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connect stdio: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		cs.Close()
		if t.Failed() {
			t.Logf("leash mcp stderr:\n%s", stderr.String())
		}
	})
	return cs
}

func call(t *testing.T, cs *sdk.ClientSession, tool string, args any) (*sdk.CallToolResult, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error: %v", tool, err)
	}
	var out map[string]any
	if res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: structured content: %v", tool, err)
		}
	}
	return res, out
}

func text(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// TestToolsOverEveryTransport lists and calls every tool with the Go SDK
// client over Streamable HTTP (both protocol revisions) and stdio, against
// a real node: a run, a refused call, a terminated task, a blocked fetch,
// a WASI module and a task read back.
func TestToolsOverEveryTransport(t *testing.T) {
	f := startFixture(t)
	echo, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "build", "guests", "echo.wasm"))
	if err != nil {
		t.Fatalf("echo guest (make guests): %v", err)
	}
	var mod api.ModuleRef
	if st, body := f.node.Do("PUT", "/v1/modules", f.demo, echo, "Content-Type", "application/wasm"); st != 201 {
		t.Fatalf("upload echo: %d %s", st, body)
	} else if err := json.Unmarshal(body, &mod); err != nil {
		t.Fatal(err)
	}
	standalone := f.standalone(t)
	transports := map[string]func(t *testing.T, key string) *sdk.ClientSession{
		// The node's own /mcp in both revisions; a standalone server
		// (calling the node over HTTP) and stdio in one each.
		"node /mcp 2026-07-28": func(t *testing.T, key string) *sdk.ClientSession {
			return connectHTTP(t, f.node.URL()+"/mcp", key, "2026-07-28")
		},
		"node /mcp 2025-11-25": func(t *testing.T, key string) *sdk.ClientSession {
			return connectHTTP(t, f.node.URL()+"/mcp", key, "2025-11-25")
		},
		"standalone 2025-11-25": func(t *testing.T, key string) *sdk.ClientSession {
			return connectHTTP(t, standalone, key, "2025-11-25")
		},
		"stdio": func(t *testing.T, key string) *sdk.ClientSession { return connectStdio(t, f.node.URL(), key) },
	}
	for _, name := range slices.Sorted(mapsKeys(transports)) {
		connect := transports[name]
		t.Run(name, func(t *testing.T) {
			cs := connect(t, f.demo)
			t.Run("list", func(t *testing.T) {
				tools, err := cs.ListTools(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, tl := range tools.Tools {
					names = append(names, tl.Name)
					if tl.InputSchema == nil || tl.OutputSchema == nil {
						t.Errorf("%s: input schema %v, output schema %v", tl.Name, tl.InputSchema != nil, tl.OutputSchema != nil)
					}
				}
				slices.Sort(names)
				if want := []string{"get_task", "list_capabilities", "run_javascript", "run_wasm", "session_get", "session_put"}; !slices.Equal(names, want) {
					t.Fatalf("tools %v, want %v", names, want)
				}
			})
			t.Run("list_capabilities", func(t *testing.T) {
				res, out := call(t, cs, "list_capabilities", map[string]any{})
				if res.IsError {
					t.Fatalf("isError: %s", text(res))
				}
				var caps api.Capabilities
				b, _ := json.Marshal(out)
				if err := json.Unmarshal(b, &caps); err != nil {
					t.Fatal(err)
				}
				if caps.Tenant != "demo" || len(caps.Profiles) != 3 || len(caps.Intents) != 3 {
					t.Fatalf("capabilities %+v", caps)
				}
				for _, p := range caps.Profiles {
					if p.Name == "fetcher" && (len(p.Egress.Allow) != 1 || p.Egress.Allow[0].Host != "api.example.com" || p.Limits.CPUMs != 500) {
						t.Errorf("fetcher %+v", p)
					}
				}
				// A tenant key names no other tenant.
				res, out = call(t, cs, "list_capabilities", map[string]any{"tenant": "limited"})
				if !res.IsError || out["error"].(map[string]any)["code"] != "forbidden" {
					t.Errorf("another tenant's capabilities: %v %v", res.IsError, out)
				}
			})
			var taskID string
			t.Run("run_javascript", func(t *testing.T) {
				res, out := call(t, cs, "run_javascript", map[string]any{
					"code":    `export default { async fetch(req, env) { console.log("hi", env.WHO); return new Response("hello " + env.WHO + " " + req.method, {headers: {"x-a": "b"}}) } }`,
					"intent":  "compute",
					"env":     map[string]any{"WHO": "model"},
					"request": map[string]any{"method": "POST", "body": "x"},
				})
				if res.IsError {
					t.Fatalf("isError: %s", text(res))
				}
				if out["outcome"] != "ok" || out["body"] != "hello model POST" || out["status"] != float64(200) {
					t.Fatalf("result %v", out)
				}
				if h, _ := out["headers"].(map[string]any); h["x-a"] != "b" {
					t.Errorf("headers %v", out["headers"])
				}
				if _, ok := out["receipt_index"].(float64); !ok {
					t.Errorf("no receipt index: %v", out)
				}
				if l, _ := out["lease"].(map[string]any); l["tenant"] != "demo" || l["profile"] != "quick" {
					t.Errorf("lease %v", out["lease"])
				}
				if logs, _ := out["logs"].([]any); len(logs) != 1 {
					t.Errorf("logs %v", out["logs"])
				}
				taskID, _ = out["task_id"].(string)
			})
			t.Run("get_task", func(t *testing.T) {
				if taskID == "" {
					t.Skip("no task")
				}
				res, out := call(t, cs, "get_task", map[string]any{"task_id": taskID})
				if res.IsError {
					t.Fatalf("isError: %s", text(res))
				}
				if out["task_id"] != taskID || out["state"] != "succeeded" {
					t.Fatalf("task %v", out)
				}
				res, out = call(t, cs, "get_task", map[string]any{"task_id": "tsk_nosuchtask"})
				if !res.IsError || out["error"].(map[string]any)["code"] != "task_not_found" {
					t.Fatalf("unknown task: %v %v", res.IsError, out)
				}
			})
			t.Run("run_wasm", func(t *testing.T) {
				res, out := call(t, cs, "run_wasm", map[string]any{"digest": mod.Digest, "intent": "compute", "request": map[string]any{"method": "POST", "body": "ping"}})
				if res.IsError || out["outcome"] != "ok" {
					t.Fatalf("run_wasm: %v %s", out, text(res))
				}
				if !strings.Contains(out["body"].(string), "ping") {
					t.Errorf("echo body %q", out["body"])
				}
			})
			t.Run("refused", func(t *testing.T) {
				res, out := call(t, cs, "run_javascript", map[string]any{"code": `export default { fetch() { return new Response("x") } }`, "intent": "no_such_intent"})
				if !res.IsError || out["outcome"] != "refused" || out["error"].(map[string]any)["code"] != "unknown_intent" {
					t.Fatalf("unknown intent: %v %v", res.IsError, out)
				}
			})
			t.Run("terminated", func(t *testing.T) {
				res, out := call(t, cs, "run_javascript", map[string]any{"code": `export default { fetch() { for (;;) {} } }`, "intent": "compute"})
				if !res.IsError || !strings.HasPrefix(out["outcome"].(string), "terminated:") {
					t.Fatalf("runaway loop: %v %v", res.IsError, out)
				}
				if out["reason"] == "" || out["task_id"] == "" {
					t.Errorf("terminated without reason or task: %v", out)
				}
			})
			t.Run("blocked fetch", func(t *testing.T) {
				res, out := call(t, cs, "run_javascript", map[string]any{
					"code":   `export default { async fetch() { try { await fetch("https://blocked.example.net/x"); return new Response("fetched") } catch (e) { return new Response("caught: " + e.message, {status: 502}) } } }`,
					"intent": "call_api",
				})
				if !res.IsError {
					t.Fatalf("a blocked fetch is not isError: %v", out)
				}
				blocked, _ := out["blocked"].([]any)
				if len(blocked) != 1 {
					t.Fatalf("blocked %v (result %v)", out["blocked"], out)
				}
				b := blocked[0].(map[string]any)
				if b["destination"] != "blocked.example.net:443" || b["clause"] == "" {
					t.Errorf("blocked call %v", b)
				}
				if !strings.HasPrefix(out["body"].(string), "caught: ") {
					t.Errorf("body %q", out["body"])
				}
			})
			t.Run("session state", func(t *testing.T) {
				session := "mcp-" + strings.NewReplacer(" ", "-", "/", "").Replace(name)
				res, out := call(t, cs, "session_put", map[string]any{"session": session, "key": "plan", "value": "step 2", "profile": "quick"})
				if res.IsError || out["stored"] != true {
					t.Fatalf("session_put: %v %s", out, text(res))
				}
				res, out = call(t, cs, "session_get", map[string]any{"session": session, "key": "plan"})
				if res.IsError || out["value"] != "step 2" || out["expiration"] == nil {
					t.Fatalf("session_get: %v %s", out, text(res))
				}
				res, out = call(t, cs, "session_get", map[string]any{"session": session, "key": "nope"})
				if !res.IsError || out["error"].(map[string]any)["code"] != "kv_not_found" {
					t.Fatalf("missing key: %v %v", res.IsError, out)
				}
				// A run under a lease for the session.
				res, out = call(t, cs, "run_javascript", map[string]any{"code": `export default { fetch() { return new Response("in session") } }`, "intent": "compute", "session": session})
				if res.IsError || out["body"] != "in session" {
					t.Fatalf("run in session: %v", out)
				}
			})
			t.Run("bad arguments", func(t *testing.T) {
				for name, args := range map[string]map[string]any{
					"no code":      {"intent": "compute"},
					"huge code":    {"code": strings.Repeat("x", mcp.MaxCodeBytes+1), "intent": "compute"},
					"bad digest":   {"digest": "md5:abc", "intent": "compute"},
					"extra field":  {"code": "x", "intent": "compute", "nope": 1},
					"wrong intent": {"code": "x", "intent": "../../v1/leases"},
				} {
					tool := "run_javascript"
					if _, ok := args["digest"]; ok {
						tool = "run_wasm"
					}
					res, _ := call(t, cs, tool, args)
					if !res.IsError || !strings.Contains(text(res), "validating") {
						t.Errorf("%s: isError %v, %q", name, res.IsError, clipText(text(res)))
					}
				}
				_, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "no_such_tool", Arguments: map[string]any{}})
				if err == nil || !strings.Contains(err.Error(), "no_such_tool") {
					t.Errorf("unknown tool: %v", err)
				}
			})
		})
	}
	t.Run("limited tenant", func(t *testing.T) {
		cs := connectHTTP(t, standalone, f.limited, "")
		res, out := call(t, cs, "run_javascript", map[string]any{"code": `export default { fetch() { return new Response("x") } }`, "intent": "call_api"})
		if !res.IsError || out["error"].(map[string]any)["code"] != "profile_not_allowed" {
			t.Fatalf("limited tenant, other profile: %v %v", res.IsError, out)
		}
		// Another tenant's task is not found.
		res, out = call(t, cs, "run_javascript", map[string]any{"code": `export default { fetch() { return new Response("x") } }`, "intent": "compute"})
		if res.IsError {
			t.Fatalf("limited tenant, its profile: %v", out)
		}
		demo := connectHTTP(t, standalone, f.demo, "")
		res, got := call(t, demo, "get_task", map[string]any{"task_id": out["task_id"]})
		if !res.IsError || got["error"].(map[string]any)["code"] != "task_not_found" {
			t.Fatalf("demo read limited's task: %v %v", res.IsError, got)
		}
	})
}

func clipText(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestBadInputOverHTTP: a request the protocol cannot take gets a clear
// answer with the right status, never a 500 and never a hung stream.
func TestBadInputOverHTTP(t *testing.T) {
	f := startFixture(t)
	endpoint := f.standalone(t)
	initReq := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	cases := []struct {
		name, token, body, ctype string
		want                     int
		contains                 string
	}{
		{"no credential", "", initReq, "application/json", 401, `"code":"unauthorized"`},
		{"malformed json", f.demo, `{"jsonrpc":"2.0",`, "application/json", 400, ""},
		{"not json-rpc", f.demo, `[1,2,3]`, "application/json", 400, ""},
		{"wrong content type", f.demo, initReq, "text/plain", 415, ""},
		{"oversized", f.demo, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_javascript","arguments":{"code":"` + strings.Repeat("x", 7<<20) + `"}}}`, "application/json", 413, ""},
		{"initialize", f.demo, initReq, "application/json", 200, `"protocolVersion":"2025-11-25"`},
		{"unknown method", f.demo, `{"jsonrpc":"2.0","id":2,"method":"no/such","params":{}}`, "application/json", 400, `unsupported`},
		{"unknown tool", f.demo, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope","arguments":{}}}`, "application/json", 200, `"code":-32602`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", endpoint, strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.ctype)
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			t.Logf("%d %s", resp.StatusCode, clipText(string(b)))
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, clipText(string(b)))
			}
			if !strings.Contains(string(b), c.contains) {
				t.Fatalf("body %s lacks %s", clipText(string(b)), c.contains)
			}
		})
	}
}

// TestDisconnectEndsTheTask: a client that goes away mid-call leaves no
// task running: the node ends it long before its limits would.
func TestDisconnectEndsTheTask(t *testing.T) {
	f := startFixture(t)
	for name, endpoint := range map[string]string{"standalone": f.standalone(t), "node": f.node.URL() + "/mcp"} {
		t.Run(name, func(t *testing.T) {
			since := url.QueryEscape(time.Now().Add(-10 * time.Millisecond).UTC().Format(time.RFC3339Nano))
			cs := connectHTTP(t, endpoint, f.demo, "")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_javascript", Arguments: map[string]any{
					"code": `export default { fetch() { for (;;) {} } }`, "intent": "long_job"}})
				done <- err
			}()
			// Wait until the task runs (its sandbox_issued lease exists), then go away.
			var evs struct {
				Events []struct {
					Type string          `json:"type"`
					Data json.RawMessage `json:"data"`
				} `json:"events"`
			}
			waitFor(t, 20*time.Second, func() bool {
				f.node.JSON("GET", "/v1/events?tenant=demo&type=sandbox_issued&since="+since, f.node.Token, nil, 200, &evs)
				return len(evs.Events) > 0
			})
			time.Sleep(300 * time.Millisecond)
			cancel()
			if err := <-done; err == nil {
				t.Fatal("the cancelled call returned no error")
			}
			// The task ends with the call (cancelled), not by its CPU or wall
			// limit (20 s and 30 s), which the loop would otherwise reach.
			waitFor(t, 60*time.Second, func() bool {
				f.node.JSON("GET", "/v1/events?tenant=demo&type=execution_terminated,execution_completed&since="+since, f.node.Token, nil, 200, &evs)
				return len(evs.Events) > 0
			})
			var d struct {
				Reason  string  `json:"reason"`
				Outcome string  `json:"outcome"`
				CPUMs   float64 `json:"cpu_ms"`
			}
			_ = json.Unmarshal(evs.Events[0].Data, &d)
			t.Logf("%s %s", evs.Events[0].Type, evs.Events[0].Data)
			if evs.Events[0].Type != "execution_terminated" || d.Reason != "cancelled" {
				t.Fatalf("the task ended by %s %+v, not by the disconnect", evs.Events[0].Type, d)
			}
		})
	}
}

func waitFor(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not so after %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeaseReuse: the node's /mcp reuses a call's lease for the next call
// of the same key and intent; a revoked lease is replaced at once, and a
// revoked key is refused at once; a server without reuse (stdio, a
// standalone one) issues a lease per call.
func TestLeaseReuse(t *testing.T) {
	f := startFixture(t)
	hello := map[string]any{"code": `export default { fetch() { return new Response("x") } }`, "intent": "compute"}
	leaseOf := func(t *testing.T, cs *sdk.ClientSession) string {
		t.Helper()
		res, out := call(t, cs, "run_javascript", hello)
		if res.IsError {
			t.Fatalf("run: %v", out)
		}
		return out["lease"].(map[string]any)["lease_id"].(string)
	}
	t.Run("node", func(t *testing.T) {
		var key api.APIKey
		f.node.JSON("POST", "/v1/apikeys", f.node.Token, api.APIKeyRequest{Role: "tenant", Tenant: "demo", Name: "reuse"}, 201, &key)
		cs := connectHTTP(t, f.node.URL()+"/mcp", key.Key, "")
		first := leaseOf(t, cs)
		if again := leaseOf(t, cs); again != first {
			t.Fatalf("second call: lease %s, want the first call's %s", again, first)
		}
		// Another intent is another lease.
		res, out := call(t, cs, "run_javascript", map[string]any{"code": hello["code"], "intent": "call_api"})
		if res.IsError || out["lease"].(map[string]any)["lease_id"] == first {
			t.Fatalf("another intent: %v", out)
		}
		// The tenant revokes the kept lease: the next call runs under a new one.
		if st, body := f.node.Do("DELETE", "/v1/leases/"+first, key.Key, nil); st != 204 {
			t.Fatalf("revoke: %d %s", st, body)
		}
		if next := leaseOf(t, cs); next == first {
			t.Fatal("a revoked lease was used again")
		}
		// A revoked key is refused at once, kept lease or not.
		if st, body := f.node.Do("DELETE", "/v1/apikeys/"+key.KeyID, f.node.Token, nil); st != 204 {
			t.Fatalf("revoke key: %d %s", st, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_javascript", Arguments: hello}); err == nil {
			t.Fatal("a revoked key still runs code through /mcp")
		}
	})
	for name, connect := range map[string]func(t *testing.T) *sdk.ClientSession{
		"standalone": func(t *testing.T) *sdk.ClientSession { return connectHTTP(t, f.standalone(t), f.demo, "") },
		"stdio":      func(t *testing.T) *sdk.ClientSession { return connectStdio(t, f.node.URL(), f.demo) },
	} {
		t.Run(name, func(t *testing.T) {
			cs := connect(t)
			if a, b := leaseOf(t, cs), leaseOf(t, cs); a == b {
				t.Fatalf("two calls under one lease %s without reuse", a)
			}
		})
	}
}
