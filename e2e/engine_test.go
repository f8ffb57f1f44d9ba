package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/engine/image"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestBinaryCarriesItsEngine starts the real binary with no --engine (the
// flag given empty overrides the harness's path) in a working directory
// with no build/ beside it: the node installs the engine it carries into
// its data dir and runs JavaScript.
func TestBinaryCarriesItsEngine(t *testing.T) {
	if image.Engine() == nil {
		t.Fatal("the test binary carries no engine: run make build (or make test), which copies build/engine/engine.wasm into engine/image/data")
	}
	t.Chdir(t.TempDir())
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath(), Args: []string{"--engine="}, NoWait: true})
	// With no compiled code cached yet, the node snapshots and compiles
	// the engine it carries before it serves: seconds on its own, over a
	// minute for a race-built binary on a loaded test machine.
	n.WaitReady(5 * time.Minute)
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
	src := `export default { fetch() { return new Response("carried") } }`
	res := runTask(t, n, l.Token, api.TaskRequest{Module: api.Module{JS: &src}})
	if res.Outcome != "ok" || res.Response == nil || res.Response.Body.Body == nil || *res.Response.Body.Body != "carried" {
		t.Fatalf("JS task on the carried engine: %+v", res)
	}
	// env through the API: a string var stays a string, a JSON var arrives
	// parsed, as workerd's vars.
	envSrc := `export default { fetch(r, env) { return Response.json({ keys: Object.keys(env).sort(), s: env.S, o: env.O }) } }`
	st, body := n.Do("POST", "/v1/tasks", l.Token, `{"module":{"js":`+strconv.Quote(envSrc)+`},"env":{"S":"{\"not\":\"parsed\"}","O":{"a":[1,true]}}}`, "Content-Type", "application/json")
	var er api.TaskResult
	if st != 200 || json.Unmarshal(body, &er) != nil || er.Response == nil || er.Response.Body.Body == nil {
		t.Fatalf("env task: %d %s", st, body)
	}
	if got, want := *er.Response.Body.Body, `{"keys":["O","S"],"s":"{\"not\":\"parsed\"}","o":{"a":[1,true]}}`; got != want {
		t.Fatalf("env as the worker saw it: %s, want %s", got, want)
	}
	installed, _ := filepath.Glob(filepath.Join(n.DataDir, "engine", "engine-*.wasm"))
	if len(installed) != 1 {
		t.Fatalf("installed engines in the data dir: %v", installed)
	}
}

// TestNodeWithoutEngineRefusesJS: an --engine that does not exist is said
// at start, and JS tasks are refused with js_engine_unavailable while WASI
// tasks still run.
func TestNodeWithoutEngineRefusesJS(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-engine.wasm")
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath(), Args: []string{"--engine=" + missing}})
	if !strings.Contains(n.Logs(), "no JS engine") {
		t.Fatalf("the node did not say it has no JS engine:\n%s", n.Logs())
	}
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
	src := `export default { fetch() { return new Response("x") } }`
	code, body := n.Do("POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{JS: &src}})
	if code != 501 || errCode(t, body) != api.CodeJSEngineUnavail {
		t.Fatalf("JS without an engine: %d %s", code, body)
	}
	if res := runTask(t, n, l.Token, wasmTask(guestB64(t, "minimal"))); res.Outcome != "ok" {
		t.Fatalf("WASI task on a node without JS: %+v", res)
	}
}
