package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// jsEnginePath is where `make engine` puts the engine; LEASH_TEST_ENGINE
// names another build (an engine being worked on).
var jsEnginePath = func() string {
	if p := os.Getenv("LEASH_TEST_ENGINE"); p != "" {
		return p
	}
	return filepath.Join("..", "build", "engine", "engine.wasm")
}()

var (
	sharedJSOnce   sync.Once
	sharedJSEngine *jsEngine
	sharedJSErr    error
)

// testJSEngine returns the package's shared engine (taking the snapshot
// once). A missing engine fails the test: `make test` builds it first.
func testJSEngine(t testing.TB) *jsEngine {
	t.Helper()
	if _, err := os.Stat(jsEnginePath); err != nil {
		t.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	sharedJSOnce.Do(func() {
		sharedJSEngine, sharedJSErr = newJSEngine(context.Background(), jsEnginePath, nil)
	})
	if sharedJSErr != nil {
		t.Fatalf("load the JS engine: %v", sharedJSErr)
	}
	return sharedJSEngine
}

var jsTestLimits = Limits{
	CPU:         time.Second,
	Wall:        3 * time.Second,
	MemoryBytes: 64 << 20,
	OutputBytes: 1 << 20,
	LogBytes:    16 << 10,
	Subrequests: 10,
}

// jsModule prepares a worker's source as Runtime.Compile would.
func jsModule(t testing.TB, e *jsEngine, src string) *Module {
	t.Helper()
	m := &Module{Digest: Digest([]byte(src)), Kind: KindJS, Size: len(src)}
	if err := e.prepare(context.Background(), m, []byte(src)); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return m
}

func runJS(t testing.TB, src string, req Request, mutate ...func(*Task)) *Result {
	t.Helper()
	e := testJSEngine(t)
	task := &Task{ID: "tsk_js", Module: jsModule(t, e, src), Request: req, Limits: jsTestLimits, Env: map[string]string{"GREETING": "hi"}}
	for _, f := range mutate {
		f(task)
	}
	return e.run(context.Background(), task)
}

func get(url string) Request { return Request{Method: "GET", URL: url, Headers: http.Header{}} }

func TestJSHello(t *testing.T) {
	res := runJS(t, `export default {
  async fetch(request, env, ctx) {
    const u = new URL(request.url);
    console.log("hello from", u.pathname);
    return new Response("hello " + env.GREETING + " " + u.searchParams.get("name"), { headers: { "x-answer": "42" } });
  },
};`, get("https://app.example/greet?name=leash"))
	if res.Outcome != OutcomeOK {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Error)
	}
	if got := string(res.Response.Body); got != "hello hi leash" {
		t.Errorf("body %q", got)
	}
	if res.Response.Status != 200 || res.Response.Headers.Get("X-Answer") != "42" ||
		res.Response.Headers.Get("Content-Type") != "text/plain;charset=UTF-8" {
		t.Errorf("response %d %v", res.Response.Status, res.Response.Headers)
	}
	if len(res.Logs) != 1 || res.Logs[0].Message != "hello from /greet" || res.Logs[0].Level != "log" {
		t.Errorf("logs %+v", res.Logs)
	}
	if res.Usage.MemoryPeakBytes == 0 || res.Usage.CPU == 0 {
		t.Errorf("usage %+v", res.Usage)
	}
}

func TestJSMissingEngine(t *testing.T) {
	_, err := newJSEngine(context.Background(), filepath.Join(t.TempDir(), "engine.wasm"), nil)
	if !errors.Is(err, ErrJSEngineUnavailable) || !strings.Contains(err.Error(), "make engine") {
		t.Fatalf("err = %v", err)
	}
}

// fakeFetcher answers every subrequest from a function.
type fakeFetcher func(ctx context.Context, req *FetchRequest) (*FetchResponse, error)

func (f fakeFetcher) Fetch(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
	return f(ctx, req)
}

func TestJSOutcomes(t *testing.T) {
	tests := map[string]struct {
		src     string
		req     Request
		limits  func(*Limits)
		host    Host
		outcome Outcome
		status  int
		body    string // exact body when outcome is ok
		errHas  string // substring of Result.Error
		logHas  string // substring of some log line
		maxWall time.Duration
	}{
		"no default export": {
			src:     `export const x = 1;`,
			outcome: OutcomeError, errHas: "invalid_worker:",
		},
		"default export without fetch": {
			src:     `export default { hello() {} };`,
			outcome: OutcomeError, errHas: "invalid_worker:",
		},
		"handler throws": {
			src:     `export default { fetch() { throw new TypeError("boom"); } };`,
			outcome: OutcomeError, errHas: "uncaught_exception: TypeError: boom", logHas: "Uncaught TypeError: boom",
		},
		"handler rejects": {
			src:     `export default { async fetch() { await null; throw new Error("later"); } };`,
			outcome: OutcomeError, errHas: "uncaught_exception: Error: later",
		},
		"top-level throw": {
			src:     `throw new Error("at load"); export default { fetch() {} };`,
			outcome: OutcomeError, errHas: "script_error: Error: at load",
		},
		"not a Response": {
			src:     `export default { fetch() { return "text"; } };`,
			outcome: OutcomeError, errHas: "did not resolve to 'Response'",
		},
		"cpu loop": {
			src:     `export default { fetch() { for (;;) {} } };`,
			limits:  func(l *Limits) { l.CPU = 100 * time.Millisecond },
			outcome: Terminated(ReasonCPU), maxWall: 5 * time.Second,
		},
		"cpu loop catching": {
			src:     `export default { fetch() { for (;;) { try { for (;;) {} } catch (e) {} } } };`,
			limits:  func(l *Limits) { l.CPU = 100 * time.Millisecond },
			outcome: Terminated(ReasonCPU), maxWall: 5 * time.Second,
		},
		"promise never settles": {
			src:     `export default { fetch() { return new Promise(() => {}); } };`,
			limits:  func(l *Limits) { l.Wall = 200 * time.Millisecond },
			outcome: Terminated(ReasonWall), maxWall: 3 * time.Second,
		},
		"timer past wall": {
			src:     `export default { async fetch() { await new Promise(r => setTimeout(r, 10000)); return new Response("late"); } };`,
			limits:  func(l *Limits) { l.Wall = 200 * time.Millisecond },
			outcome: Terminated(ReasonWall), maxWall: 3 * time.Second,
		},
		"memory": {
			src:     `export default { fetch() { const a = []; for (;;) a.push(new Array(100000).fill(1.5)); } };`,
			limits:  func(l *Limits) { l.MemoryBytes = 16 << 20 },
			outcome: Terminated(ReasonMemory),
		},
		"memory caught": {
			src:     `export default { fetch() { const a = []; try { for (;;) a.push("x".repeat(1 << 20) + a.length); } catch (e) { return new Response("caught " + e); } } };`,
			limits:  func(l *Limits) { l.MemoryBytes = 16 << 20 },
			outcome: Terminated(ReasonMemory),
		},
		"deep recursion caught": {
			src:     `export default { fetch() { function f(n) { return f(n + 1) + 1; } try { f(0); } catch (e) { return new Response(e.name + ": " + e.message); } } };`,
			outcome: OutcomeOK, body: "RangeError: Maximum call stack size exceeded",
		},
		"deep recursion uncaught": {
			src:     `export default { fetch() { const f = (n) => f(n + 1); return f(0); } };`,
			outcome: OutcomeError, errHas: "RangeError: Maximum call stack size exceeded",
		},
		"deep JSON nesting": {
			src:     `export default { fetch() { try { JSON.parse("[".repeat(1e6)); } catch (e) { return new Response(e.name); } } };`,
			outcome: OutcomeOK, body: "SyntaxError", // no trap: QuickJS's parser checks its stack
		},
		"catastrophic regexp": {
			src:     `export default { fetch() { return new Response(String(/(a+)+$/.test("a".repeat(40) + "b"))); } };`,
			limits:  func(l *Limits) { l.CPU = 100 * time.Millisecond },
			outcome: Terminated(ReasonCPU), maxWall: 5 * time.Second,
		},
		"no I/O at the top level": {
			src:     `let r; try { fetch("https://x.example/"); } catch (e) { r = e.message; } export default { fetch() { return new Response(r.slice(0, 47)); } };`,
			outcome: OutcomeOK, body: "Disallowed operation called within global scope",
		},
		"output limit": {
			src:     `export default { fetch() { return new Response("x".repeat(2 << 20)); } };`,
			outcome: Terminated(ReasonOutput),
		},
		"eval disallowed": {
			src:     `export default { fetch() { const r = []; for (const f of [() => eval("1"), () => new Function("return 1"), () => (async function(){}).constructor("return 1")]) { try { f(); r.push("ran"); } catch (e) { r.push(e.name + ": " + e.message); } } return new Response(r.join("\n")); } };`,
			outcome: OutcomeOK, body: "EvalError: Code generation from strings disallowed for this context\nEvalError: Code generation from strings disallowed for this context\nEvalError: Code generation from strings disallowed for this context",
		},
		"no os module": {
			src:     `export default { async fetch() { try { await import("os"); return new Response("escaped"); } catch (e) { return new Response(String(e)); } } };`,
			outcome: OutcomeOK, body: `ReferenceError: No such module "os"`,
		},
		"fetch denied by default": {
			src:     `export default { async fetch() { try { await fetch("https://example.com/"); return new Response("fetched"); } catch (e) { return new Response(e.name + ": " + e.message); } } };`,
			outcome: OutcomeOK, body: "TypeError: fetch blocked by profile.default_deny: this task may not make subrequests (no egress is granted)",
		},
		"fetch through the host": {
			src: `export default { async fetch() {
  const r = await fetch("https://api.example/v1?q=1", { method: "POST", body: "ping", headers: { "x-a": "b" } });
  return new Response(r.status + " " + r.headers.get("content-type") + " " + await r.text() + " " + r.url);
} };`,
			host: Host{Fetch: fakeFetcher(func(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
				if req.Method != "POST" || string(req.Body) != "ping" || req.Headers.Get("X-A") != "b" {
					return nil, errors.New("unexpected request")
				}
				return &FetchResponse{Status: 201, Headers: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("pong")}, nil
			})},
			outcome: OutcomeOK, body: "201 text/plain pong https://api.example/v1?q=1",
		},
		"fetch refused by policy": {
			src: `export default { async fetch() { try { await fetch("http://10.0.0.1/"); } catch (e) { return new Response(e.message); } } };`,
			host: Host{Fetch: fakeFetcher(func(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
				return nil, &FetchError{Clause: "address.private", Message: "10.0.0.1 is not globally reachable"}
			})},
			outcome: OutcomeOK, body: "fetch blocked by address.private: 10.0.0.1 is not globally reachable",
		},
		"parallel fetches": {
			src: `export default { async fetch() {
  const rs = await Promise.all([1, 2, 3].map(i => fetch("https://api.example/" + i).then(r => r.text())));
  return new Response(rs.join(","));
} };`,
			host: Host{Fetch: fakeFetcher(func(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
				time.Sleep(time.Second)
				return &FetchResponse{Status: 200, Body: []byte(req.URL[len(req.URL)-1:])}, nil
			})},
			// one after another they would take 3s
			outcome: OutcomeOK, body: "1,2,3", maxWall: 2500 * time.Millisecond,
		},
		"subrequest limit": {
			src:    `export default { async fetch() { for (let i = 0; i < 5; i++) await fetch("https://api.example/"); return new Response("done"); } };`,
			limits: func(l *Limits) { l.Subrequests = 2 },
			host: Host{Fetch: fakeFetcher(func(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
				return &FetchResponse{Status: 200}, nil
			})},
			outcome: Terminated(ReasonSubrequests),
		},
		"waitUntil runs after the response": {
			src:     `export default { fetch(req, env, ctx) { ctx.waitUntil(new Promise(r => setTimeout(r, 30)).then(() => console.log("after"))); return new Response("now"); } };`,
			outcome: OutcomeOK, body: "now", logHas: "after",
		},
		"waitUntil cut at wall": {
			src:     `export default { fetch(req, env, ctx) { ctx.waitUntil(new Promise(r => setTimeout(r, 60000))); return new Response("now"); } };`,
			limits:  func(l *Limits) { l.Wall = 200 * time.Millisecond },
			outcome: OutcomeOK, body: "now", logHas: "terminated:wall", maxWall: 3 * time.Second,
		},
		"binary body echo": {
			src: `export default { async fetch(req) { const b = new Uint8Array(await req.arrayBuffer()); return new Response(b, { headers: { "content-type": "application/octet-stream" } }); } };`,
			req: Request{Method: "POST", URL: "https://x.example/", Body: func() []byte {
				b := make([]byte, 256)
				for i := range b {
					b[i] = byte(i)
				}
				return b
			}()},
			outcome: OutcomeOK, body: func() string {
				b := make([]byte, 256)
				for i := range b {
					b[i] = byte(i)
				}
				return string(b)
			}(),
		},
		"digest": {
			src:     `export default { async fetch() { const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc")); return new Response([...new Uint8Array(d)].map(b => b.toString(16).padStart(2, "0")).join("")); } };`,
			outcome: OutcomeOK, body: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		},
		"ordering": {
			src: `export default { async fetch() {
  const log = [];
  setTimeout(() => log.push("timeout"), 0);
  queueMicrotask(() => log.push("microtask"));
  Promise.resolve().then(() => log.push("then"));
  log.push("sync");
  await new Promise(r => setTimeout(r, 5));
  return new Response(log.join(","));
} };`,
			outcome: OutcomeOK, body: "sync,microtask,then,timeout",
		},
		"request headers are immutable": {
			src:     `export default { fetch(req) { try { req.headers.set("x", "y"); return new Response("mutable"); } catch (e) { return new Response(e.message); } } };`,
			outcome: OutcomeOK, body: "Can't modify immutable headers.",
		},
		"env": {
			src:     `export default { fetch(req, env) { return new Response(JSON.stringify(env)); } };`,
			outcome: OutcomeOK, body: `{"GREETING":"hi"}`,
		},
		"env holds only the client's vars; leash's own are on ctx.leash": {
			src:     `export default { fetch(req, env, ctx) { return new Response(Object.keys(env).join() + " " + JSON.stringify(ctx.leash) + " " + Object.isFrozen(ctx.leash)); } };`,
			outcome: OutcomeOK, body: `GREETING {"attempt":1,"idempotencyKey":null} true`,
		},
		"a Response subclass cannot redefine what is sent": {
			src: `class R extends Response { get status() { return 299; } get headers() { return new Headers({ "x-fake": "1" }); } get body() { return null; } get bodyUsed() { return false; } }
export default { fetch() { return new R("real", { status: 201, headers: { "x-real": "1" } }); } };`,
			outcome: OutcomeOK, status: 201, body: "real",
		},
		"a non-Response with a Response prototype is refused": {
			src:     `export default { fetch() { return Object.create(Response.prototype); } };`,
			outcome: OutcomeError, errHas: "did not resolve to 'Response'",
		},
		"abort: onabort where it was set, dependents aborted before the source's listeners": {
			src: `export default { fetch() {
  const c = new AbortController(), s = c.signal, log = [];
  const d = AbortSignal.any([s]), dd = AbortSignal.any([d]);
  s.addEventListener("abort", () => log.push("first d=" + d.aborted + " dd=" + dd.aborted));
  s.onabort = () => log.push("onabort");
  s.addEventListener("abort", () => log.push("last"));
  d.addEventListener("abort", () => log.push("d " + (d.reason === s.reason)));
  dd.addEventListener("abort", () => log.push("dd"));
  c.abort();
  return new Response(log.join());
} };`,
			outcome: OutcomeOK, body: "first d=true dd=true,onabort,last,d true,dd",
		},
		"upstream QuickJS fixes: Date parsing, argument order, hex literal member access": {
			src: `export default { fetch() {
  const order = [];
  new Date({ valueOf() { order.push(1); return 2000; } }, { valueOf() { order.push(2); return 0; } });
  return new Response([Number.isNaN(Date.parse("1997-03-08 11:19:10-0700")), Number.isNaN(Date.parse("1997-03-08T11:19:10-07")), order.join(""), 0x10.toString()].join());
} };`,
			outcome: OutcomeOK, body: "false,true,12,16",
		},
		"a listener removed during dispatch is not called": {
			src: `export default { fetch() {
  const c = new AbortController(), seen = [];
  const b = () => seen.push("b");
  c.signal.addEventListener("abort", () => { seen.push("a"); c.signal.removeEventListener("abort", b); });
  c.signal.addEventListener("abort", b);
  c.abort();
  return new Response(seen.join());
} };`,
			outcome: OutcomeOK, body: "a",
		},
		"many listeners, params, form entries and headers stay linear": {
			src: `export default { fetch() {
  const t = new EventTarget(), fs = [];
  for (let i = 0; i < 20000; i++) { const f = () => {}; fs.push(f); t.addEventListener("x", f); }
  for (const f of fs) t.removeEventListener("x", f);
  const p = new URLSearchParams(), fd = new FormData(), h = new Headers();
  for (let i = 0; i < 20000; i++) { p.set("k" + i, i); fd.set("k" + i, i); h.set("k" + i, i); }
  for (let i = 0; i < 20000; i++) { p.set("k0", i); fd.set("k0", i); p.delete("k" + i); }
  return new Response(p.size + " " + [...fd.keys()].length + " " + [...h.keys()].length);
} };`,
			limits:  func(l *Limits) { l.CPU, l.Wall = 10*time.Second, 20*time.Second },
			outcome: OutcomeOK, body: "1 20000 20000",
		},
		"an endless microtask chain after the response is not waitUntil work": {
			src:     `export default { fetch() { const spin = () => Promise.resolve().then(spin); spin(); return new Response("too early"); } };`,
			limits:  func(l *Limits) { l.CPU = 50 * time.Millisecond },
			outcome: "terminated:cpu",
		},
		"an endless microtask chain under waitUntil keeps the response": {
			src:     `export default { fetch(req, env, ctx) { const spin = () => Promise.resolve().then(spin); ctx.waitUntil(new Promise(() => spin())); return new Response("kept"); } };`,
			limits:  func(l *Limits) { l.CPU = 50 * time.Millisecond },
			outcome: OutcomeOK, body: "kept", logHas: "ctx.waitUntil() tasks did not finish: terminated:cpu",
		},
		"log_bytes 0 keeps no log bytes": {
			src:     `export default { fetch() { console.log("hidden"); return new Response("ok"); } };`,
			limits:  func(l *Limits) { l.LogBytes = 0 },
			outcome: OutcomeOK, body: "ok", logHas: TruncatedMarker,
		},
		"subrequests 0 allows none": {
			src:    `export default { async fetch() { await fetch("https://api.example/"); return new Response("fetched"); } };`,
			limits: func(l *Limits) { l.Subrequests = 0 },
			host: Host{Fetch: fakeFetcher(func(context.Context, *FetchRequest) (*FetchResponse, error) {
				return &FetchResponse{Status: 200}, nil
			})},
			outcome: "terminated:subrequests",
		},
		"one line is bounded": {
			src:     `export default { fetch() { console.log("y".repeat(1 << 20)); return new Response("ok"); } };`,
			limits:  func(l *Limits) { l.LogBytes = 4 << 20 },
			outcome: OutcomeOK, body: "ok", logHas: "[leash: truncated",
		},
		"logs truncated": {
			src:     `export default { fetch() { for (let i = 0; i < 1000; i++) console.log("line " + i + " " + "x".repeat(100)); return new Response("ok"); } };`,
			outcome: OutcomeOK, body: "ok", logHas: TruncatedMarker,
		},
		"status and headers": {
			src:     `export default { fetch() { return new Response(null, { status: 204, headers: [["set-cookie", "a=1"], ["set-cookie", "b=2"]] }); } };`,
			outcome: OutcomeOK, status: 204, body: "",
		},
	}
	// Give the idle instance memories back when done: later tests
	// measure the process's memory.
	t.Cleanup(func() {
		_ = testJSEngine(t).image.close()
		runtime.GC()
	})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			req := tc.req
			if req.URL == "" {
				req = get("https://x.example/")
			}
			t0 := time.Now()
			res := runJS(t, tc.src, req, func(task *Task) {
				if tc.limits != nil {
					tc.limits(&task.Limits)
				}
				task.Host = tc.host
			})
			if res.Outcome != tc.outcome {
				t.Fatalf("outcome %s (%s), want %s; logs %v", res.Outcome, res.Error, tc.outcome, res.Logs)
			}
			if tc.outcome == OutcomeOK && string(res.Response.Body) != tc.body {
				t.Errorf("body %q, want %q", res.Response.Body, tc.body)
			}
			if tc.status != 0 && res.Response.Status != tc.status {
				t.Errorf("status %d, want %d", res.Response.Status, tc.status)
			}
			if tc.outcome != OutcomeOK && res.Response.Status != 500 {
				t.Errorf("status %d for outcome %s", res.Response.Status, res.Outcome)
			}
			if !strings.Contains(res.Error, tc.errHas) {
				t.Errorf("error %q, want it to contain %q", res.Error, tc.errHas)
			}
			if tc.logHas != "" {
				found := false
				for _, l := range res.Logs {
					found = found || strings.Contains(l.Message, tc.logHas)
				}
				if !found {
					t.Errorf("no log line contains %q: %v", tc.logHas, res.Logs)
				}
			}
			if tc.maxWall > 0 && time.Since(t0) > tc.maxWall {
				t.Errorf("took %v, want under %v", time.Since(t0), tc.maxWall)
			}
		})
	}
}

func TestJSPrepareRefuses(t *testing.T) {
	e := testJSEngine(t)
	for src, want := range map[string]string{
		"export default { fetch( { }":                                   "SyntaxError",
		`import * as std from "std"; export default { fetch() {} };`:    `No such module "std"`,
		`import { readFile } from "os"; export default { fetch() {} };`: `No such module "os"`,
	} {
		m := &Module{Kind: KindJS}
		err := e.prepare(context.Background(), m, []byte(src))
		if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), want) {
			t.Errorf("prepare(%q) = %v, want ErrInvalidModule with %q", src, err, want)
		}
	}
}

func TestJSRandomnessPerTask(t *testing.T) {
	src := `export default { fetch() { return new Response(Math.random() + " " + crypto.randomUUID()); } };`
	a := runJS(t, src, get("https://x.example/"))
	b := runJS(t, src, get("https://x.example/"))
	if a.Outcome != OutcomeOK || b.Outcome != OutcomeOK || string(a.Response.Body) == string(b.Response.Body) {
		t.Fatalf("two tasks drew the same numbers: %q %q (%s %s)", a.Response.Body, b.Response.Body, a.Error, b.Error)
	}
}

// TestJSThroughRuntime runs a worker the way the node does: Runtime.Compile
// (bytecode cached on the Module by digest), then Runtime.Run.
func TestJSThroughRuntime(t *testing.T) {
	testJSEngine(t) // fails clearly when the engine is missing
	ctx := context.Background()
	r, err := New(ctx, Config{EnginePath: jsEnginePath})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if r.JSError() != nil {
		t.Fatal(r.JSError())
	}
	src := []byte(`export default { async fetch(req) { return Response.json({ method: req.method, body: await req.text() }); } };`)
	m, err := r.Compile(ctx, KindJS, src)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := m.compiled.(*jsPrepared); !ok || len(p.bytecode) == 0 {
		t.Fatalf("no bytecode cached on the module: %#v", m.compiled)
	}
	if m2, err := r.Compile(ctx, KindJS, src); err != nil || m2 != m {
		t.Fatalf("second compile: %v, same module %v", err, m2 == m)
	}
	res := r.Run(ctx, &Task{Module: m, Request: Request{Method: "PUT", URL: "https://x.example/", Body: []byte("data")}, Limits: jsTestLimits})
	if res.Outcome != OutcomeOK || string(res.Response.Body) != `{"method":"PUT","body":"data"}` ||
		res.Response.Headers.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s %q %v", res.Outcome, res.Error, res.Response.Body, res.Response.Headers)
	}
	if _, err := r.Compile(ctx, KindJS, []byte("export default {")); !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("syntax error: %v", err)
	}
}

// TestJSEngineReproducible checks the built engine against the SHA-256
// recorded in engine/SHA256SUMS and quoted in docs/javascript.md: `make
// engine` on any machine gives the same bytes.
func TestJSEngineReproducible(t *testing.T) {
	b, err := os.ReadFile(jsEnginePath)
	if err != nil {
		t.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	sums, err := os.ReadFile(filepath.Join("..", "engine", "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for _, line := range strings.Split(string(sums), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == "engine.wasm" {
			want = f[0]
		}
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	if got != want {
		t.Fatalf("engine.wasm has sha256 %s, engine/SHA256SUMS records %s: the build is not reproducible, or the engine's sources changed without updating engine/SHA256SUMS and docs/javascript.md (engine/build.sh OUT --check builds twice and compares)", got, want)
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "javascript.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), want) {
		t.Errorf("docs/javascript.md does not quote the engine's sha256 %s", want)
	}
}

// FuzzParseWasm: the snapshot's wasm reader never panics, and what it
// accepts it can rewrite.
func FuzzParseWasm(f *testing.F) {
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	// a global, a memory, an export, a data segment
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x05\x03\x01\x00\x01\x06\x06\x01\x7f\x01\x41\x2a\x0b\x07\x05\x01\x01m\x02\x00\x0b\x07\x01\x00\x41\x00\x0b\x01x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseWasm(b)
		if err != nil {
			return
		}
		_ = m.withGlobalExports()
		vals := make([]uint64, len(m.globals))
		_, _ = m.snapshotModule(1, vals, true)
	})
}

// TestJSTerminateCause: the node ends a running task (revocation,
// shutdown) by cancelling its context with a cause; a busy loop stops at
// the next interrupt check and the outcome names the cause.
func TestJSTerminateCause(t *testing.T) {
	e := testJSEngine(t)
	m := jsModule(t, e, `export default { fetch() { for (;;) {} } };`)
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(Terminate(ReasonRevoked)) })
	lim := jsTestLimits
	lim.CPU, lim.Wall = 30*time.Second, 30*time.Second
	t0 := time.Now()
	res := e.run(ctx, &Task{Module: m, Request: get("https://x.example/"), Limits: lim})
	if res.Outcome != Terminated(ReasonRevoked) || time.Since(t0) > 5*time.Second {
		t.Fatalf("outcome %s after %v", res.Outcome, time.Since(t0))
	}
	// already cancelled before it starts
	res = e.run(ctx, &Task{Module: m, Request: get("https://x.example/"), Limits: lim})
	if res.Outcome != Terminated(ReasonRevoked) {
		t.Fatalf("outcome %s", res.Outcome)
	}
}

// TestJSHammer runs tasks of every kind from 8 goroutines and checks
// that nothing leaks: subrequests still in flight when a task ends are
// cancelled and their goroutines exit.
func TestJSHammer(t *testing.T) {
	e := testJSEngine(t)
	slow := fakeFetcher(func(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
			return &FetchResponse{Status: 200}, nil
		}
	})
	workers := []struct {
		src       string
		cpu, wall time.Duration
		want      Outcome
	}{
		{`export default { fetch() { return new Response("ok"); } };`, time.Second, 5 * time.Second, OutcomeOK},
		{`export default { fetch() { fetch("https://a.example/"); return new Response("left a fetch running"); } };`, time.Second, 5 * time.Second, OutcomeOK},
		{`export default { async fetch() { await fetch("https://a.example/"); return new Response("late"); } };`, time.Second, 150 * time.Millisecond, Terminated(ReasonWall)},
		{`export default { fetch() { for (;;) {} } };`, 50 * time.Millisecond, 2 * time.Second, ""}, // cpu, or wall on a very busy machine
		{`export default { fetch() { throw new Error("x"); } };`, time.Second, 5 * time.Second, OutcomeError},
	}
	mods := make([]*Module, len(workers))
	for i, w := range workers {
		mods[i] = jsModule(t, e, w.src)
	}
	g0 := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				k := (g + i) % len(workers)
				lim := jsTestLimits
				lim.CPU, lim.Wall = workers[k].cpu, workers[k].wall
				res := e.run(context.Background(), &Task{Module: mods[k], Request: get("https://x.example/"), Limits: lim, Host: Host{Fetch: slow}})
				want := workers[k].want
				if want == "" && (res.Outcome == Terminated(ReasonCPU) || res.Outcome == Terminated(ReasonWall)) {
					want = res.Outcome
				}
				if res.Outcome != want {
					t.Errorf("worker %d: outcome %s (%s), want %s", k, res.Outcome, res.Error, workers[k].want)
				}
			}
		}(g)
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g0+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > g0+2 {
		t.Errorf("goroutines %d → %d", g0, n)
	}
}

// TestJSAttemptAndIdempotencyKey: a worker sees its attempt number and
// idempotency key on ctx.leash (WASI guests get them in their
// environment), and env holds only the client's variables.
func TestJSAttemptAndIdempotencyKey(t *testing.T) {
	src := `export default { fetch(request, env, ctx) { return new Response(ctx.leash.attempt + " " + ctx.leash.idempotencyKey + " " + env.GREETING + " " + ("LEASH_ATTEMPT" in env)); } };`
	res := runJS(t, src, get("https://app.example/"), func(t *Task) { t.Attempt, t.IdempotencyKey = 2, "order-17" })
	if got := string(res.Response.Body); res.Outcome != OutcomeOK || got != "2 order-17 hi false" {
		t.Fatalf("%s %q", res.Outcome, got)
	}
}

// TestJSEnvJSONVars: env holds exactly the client's vars, as workerd's
// vars: strings stay strings (even one that looks like JSON), JSON vars
// arrive parsed; nothing of leash's own is among them.
func TestJSEnvJSONVars(t *testing.T) {
	res := runJS(t, `export default {
  fetch(request, env, ctx) {
    return Response.json({ keys: Object.keys(env).sort(), s: env.S, looks: env.LOOKS, n: env.N, o: env.O, attempt: ctx.leash.attempt });
  },
};`, get("https://x.test/"), func(task *Task) {
		task.Env = map[string]string{"S": "text", "LOOKS": "42", "N": "42", "O": `{"a":[1,2],"b":null}`}
		task.EnvJSON = map[string]bool{"N": true, "O": true}
	})
	if res.Outcome != OutcomeOK {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Error)
	}
	want := `{"keys":["LOOKS","N","O","S"],"s":"text","looks":"42","n":42,"o":{"a":[1,2],"b":null},"attempt":1}`
	if got := string(res.Response.Body); got != want {
		t.Fatalf("body %s\nwant %s", got, want)
	}
}
