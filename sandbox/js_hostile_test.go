package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostileLimits are the hostile suite's limits: a short CPU budget so the
// suite stays fast, and room in memory for the large inputs.
var hostileLimits = Limits{
	CPU:         100 * time.Millisecond,
	Wall:        10 * time.Second,
	MemoryBytes: 128 << 20,
	OutputBytes: 1 << 20,
	LogBytes:    16 << 10,
	Subrequests: 10,
}

// hostileCases are testdata/hostile/*.js and how each must end.
var hostileCases = map[string]struct {
	outcome Outcome
	cpu     time.Duration // instead of hostileLimits.CPU
	check   func(t *testing.T, res *Result)
}{
	"microtask-chain": {outcome: "terminated:cpu"},
	"header-flood":    {outcome: "terminated:output", cpu: 5 * time.Second},
	"endless-stream":  {outcome: "terminated:output"},
	"huge-error": {outcome: OutcomeError, cpu: 5 * time.Second, check: func(t *testing.T, res *Result) {
		if len(res.Error) > jsMaxErrorBytes+64 || !strings.Contains(res.Error, "truncated") || !strings.HasPrefix(res.Error, "uncaught_exception: Error: xxx") {
			t.Errorf("error of %d bytes: %.100q…", len(res.Error), res.Error)
		}
		for _, l := range res.Logs {
			if len(l.Message) > jsMaxLogLine+64 {
				t.Errorf("a log line of %d bytes", len(l.Message))
			}
		}
	}},
	"typedarray-sort":  {outcome: "terminated:cpu"},
	"array-sort":       {outcome: "terminated:cpu"},
	"typedarray-copy":  {outcome: "terminated:cpu"},
	"deep-json":        {outcome: "terminated:cpu"},
	"regexp":           {outcome: "terminated:cpu"},
	"string-build":     {outcome: "terminated:cpu"},
	"bigint":           {outcome: "terminated:cpu"},
	"structured-clone": {outcome: "terminated:cpu"},
	"text-decode":      {outcome: "terminated:cpu"},
	"legacy-decode":    {outcome: "terminated:cpu"},
}

func hostileScript(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "hostile", name+".js"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJSHostile runs each hostile script and asserts how it ends; it logs
// (never asserts) how far past cpu_ms the task ran.
func TestJSHostile(t *testing.T) {
	e := testJSEngine(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "hostile", "*.js"))
	if len(files) != len(hostileCases) {
		t.Fatalf("%d scripts in testdata/hostile, %d cases", len(files), len(hostileCases))
	}
	for name, tc := range hostileCases {
		t.Run(name, func(t *testing.T) {
			m := jsModule(t, e, hostileScript(t, name))
			lim := hostileLimits
			if tc.cpu > 0 {
				lim.CPU = tc.cpu
			}
			task := &Task{ID: "tsk_hostile", Module: m, Request: get("https://example.com/"), Limits: lim}
			res := e.run(context.Background(), task)
			if res.Outcome != tc.outcome {
				t.Fatalf("outcome %q (error %.200q), want %q", res.Outcome, res.Error, tc.outcome)
			}
			if res.Outcome != OutcomeOK && (res.Response.Status != 500 || len(res.Response.Body) != 0) {
				t.Errorf("a task that did not finish served %d with %d body bytes", res.Response.Status, len(res.Response.Body))
			}
			if tc.check != nil {
				tc.check(t, res)
			}
			t.Logf("%s: cpu %v (over by %v), wall %v", res.Outcome, res.Usage.CPU, res.Usage.CPU-lim.CPU, res.Usage.Wall)
		})
	}
	// The engine still runs an ordinary task.
	if res := runJS(t, `export default { fetch() { return new Response("ok") } }`, get("https://example.com/")); res.Outcome != OutcomeOK || string(res.Response.Body) != "ok" {
		t.Fatalf("after the hostile scripts: %s %q %s", res.Outcome, res.Response.Body, res.Error)
	}
}

// TestJSMemoryReturns: the pool keeps at most jsPoolMaxIdle idle bytes,
// and the memory of large instances is handed back to the OS after they
// end: unmapped at once (Linux), or released once jsReleaseAfter bytes
// were dropped.
func TestJSMemoryReturns(t *testing.T) {
	e := testJSEngine(t)
	m := jsModule(t, e, `export default { fetch() { const a = new Uint8Array(48 << 20).fill(1); return new Response(String(a[7])); } };`)
	returned := func() int64 { return jsReleases.Load() + jsUnmapped.Load() }
	before := returned()
	for i := 0; i < 3; i++ {
		res := e.run(context.Background(), &Task{ID: "tsk_big", Module: m, Request: get("https://example.com/"), Limits: hostileLimits})
		if res.Outcome != OutcomeOK {
			t.Fatalf("%s: %s", res.Outcome, res.Error)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for returned() == before {
		if time.Now().After(deadline) {
			t.Fatal("no release of dropped instance memory")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p, ok := e.image.(*poolImage); ok {
		if idle := p.idle.Load(); idle > jsPoolMaxIdle || idle < 0 {
			t.Fatalf("pool holds %d idle bytes", idle)
		}
	}
}

// TestBlockedCountedOnce: a fetch the sandbox refuses itself (no Fetcher:
// default deny) counts once in Usage.Blocked, for JS and WASI alike; what
// goes to a Fetcher, the Fetcher counts (the node adds the egress
// gateway's counts), so the sandbox reports no subrequests for it.
func TestBlockedCountedOnce(t *testing.T) {
	res := runJS(t, `export default { async fetch() {
  for (let i = 0; i < 3; i++) { try { await fetch("https://api.example/" + i); } catch {} }
  return new Response("done");
} };`, get("https://x.example/"))
	if res.Outcome != OutcomeOK || res.Usage.Blocked != 3 || res.Usage.Subrequests != 0 {
		t.Fatalf("js: %s, usage %+v", res.Outcome, res.Usage)
	}
	r := newRuntime(t)
	lim := testLimits
	res = r.Run(context.Background(), &Task{Module: compile(t, r, "fetch"), Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim,
		Env: map[string]string{"FETCH_URL": "http://api.example/", "FETCH_COUNT": "2"}})
	if res.Usage.Blocked != 2 {
		t.Fatalf("wasi: %s (%s), usage %+v", res.Outcome, res.Error, res.Usage)
	}
}
