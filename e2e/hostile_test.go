package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// The hostile-worker suite on the real binary: the scripts of
// sandbox/testdata/hostile run under the built-in transform_content
// profile (cpu_ms 1000, wall_ms 5000, memory_mb 128); each must end with
// its reason, the node must stay healthy, and a revocation or a shutdown
// must end a task stuck in native code. Overruns and the node's RSS are
// logged (measured, not asserted): docs/BENCHMARKS.md has them.

// hostileOutcomes: how each script must end under transform_content.
var hostileOutcomes = map[string]string{
	"typedarray-sort":  "terminated:cpu",
	"array-sort":       "terminated:cpu",
	"typedarray-copy":  "terminated:cpu",
	"deep-json":        "terminated:cpu",
	"regexp":           "terminated:cpu",
	"string-build":     "terminated:cpu",
	"bigint":           "terminated:cpu",
	"structured-clone": "terminated:cpu",
	"text-decode":      "terminated:cpu",
	"legacy-decode":    "terminated:cpu",
	"microtask-chain":  "terminated:cpu",
	"header-flood":     "terminated:output",
	"endless-stream":   "terminated:output",
	"huge-error":       "error",
}

func hostileSource(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "sandbox", "testdata", "hostile", name+".js"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsTask(src string) api.TaskRequest {
	return api.TaskRequest{Module: api.Module{JS: &src}, Request: api.TaskHTTPRequest{Method: "GET", URL: "https://app.example/"}}
}

// nodeRSS reads the node's resident memory from its /metrics.
func nodeRSS(t *testing.T, n *nodetest.Node) float64 {
	t.Helper()
	st, body := n.Do("GET", "/metrics", n.Token, nil)
	if st != 200 {
		t.Fatalf("metrics: %d", st)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no process_resident_memory_bytes in /metrics")
	return 0
}

func TestHostileWorkersOnTheBinary(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "transform_content", TTLSeconds: 600})
	hello := jsTask(`export default { fetch() { return new Response("hello") } }`)
	for i := 0; i < 20; i++ {
		if r := runTask(t, n, l.Token, hello); r.Outcome != "ok" {
			t.Fatalf("hello: %s %s", r.Outcome, r.Error)
		}
	}
	base := nodeRSS(t, n)
	names := make([]string, 0, len(hostileOutcomes))
	for name := range hostileOutcomes {
		names = append(names, name)
	}
	sort.Strings(names)
	peak := base
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			var r api.TaskResult
			n.JSON("POST", "/v1/tasks", l.Token, jsTask(hostileSource(t, name)), 200, &r)
			if r.Outcome != hostileOutcomes[name] {
				t.Fatalf("outcome %q (%.200s), want %q", r.Outcome, r.Error, hostileOutcomes[name])
			}
			if r.Outcome != "ok" && r.Response != nil && r.Response.Status != 500 {
				t.Errorf("a task that did not finish answered %d", r.Response.Status)
			}
			if len(r.Error) > 20<<10 {
				t.Errorf("error of %d bytes returned", len(r.Error))
			}
			// The task record keeps the bounded error too.
			var rec api.Task
			n.JSON("GET", "/v1/tasks/"+r.TaskID, l.Token, nil, 200, &rec)
			if rec.Result == nil || len(rec.Result.Error) > 20<<10 {
				t.Errorf("task record: %+v", rec.Result)
			}
			if st, _ := n.Do("GET", "/healthz", "", nil); st != 200 {
				t.Fatalf("healthz %d after %s", st, name)
			}
			peak = max(peak, nodeRSS(t, n))
			t.Logf("%s: cpu %.1f ms (past cpu_ms by %.1f), wall %.1f ms", r.Outcome, r.Usage.CPUMs, r.Usage.CPUMs-1000, r.Usage.WallMs)
		})
	}
	// The node still serves ordinary work.
	if r := runTask(t, n, l.Token, hello); r.Outcome != "ok" {
		t.Fatalf("hello after the suite: %s %s", r.Outcome, r.Error)
	}
	after := nodeRSS(t, n)
	deadline := time.Now().Add(20 * time.Second)
	for after > base+64<<20 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		after = nodeRSS(t, n)
	}
	t.Logf("node RSS: baseline %.0f MiB, peak %.0f MiB, after the suite %.0f MiB", base/(1<<20), peak/(1<<20), after/(1<<20))
}

// TestStopInNativeCodeOnTheBinary: a revocation and a node shutdown end a
// task that is inside a native built-in (sorting a large typed array)
// with terminated:revoked and terminated:shutdown, promptly.
func TestStopInNativeCodeOnTheBinary(t *testing.T) {
	stuck := jsTask(`export default { fetch() {
  const a = new Float64Array(1 << 22);
  for (let i = 0; i < a.length; i++) a[i] = (i * 7919) % 1000003;
  for (;;) a.sort((x, y) => 0), a.sort();
} };`)
	start := func(n *nodetest.Node, token string) (<-chan api.TaskResult, <-chan error) {
		res, errs := make(chan api.TaskResult, 1), make(chan error, 1)
		go func() {
			var r api.TaskResult
			if err := n.TryJSON("POST", "/v1/tasks", token, stuck, 200, &r); err != nil {
				errs <- err
				return
			}
			res <- r
		}()
		// The task is past its loading and in the sort loop by now; it
		// would run until cpu_ms (1000).
		time.Sleep(400 * time.Millisecond)
		return res, errs
	}

	t.Run("revoked", func(t *testing.T) {
		n := nodetest.Start(t, nodetest.Options{})
		l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "transform_content", TTLSeconds: 600})
		res, errs := start(n, l.Token)
		t0 := time.Now()
		n.JSON("DELETE", "/v1/leases/"+l.LeaseID, n.Token, nil, 204, nil)
		t1 := time.Now()
		select {
		case r := <-res:
			if r.Outcome != "terminated:revoked" {
				t.Fatalf("outcome %q (%s), want terminated:revoked", r.Outcome, r.Error)
			}
			t.Logf("answered %v after DELETE was sent, %v after it returned (cpu %.1f ms)", time.Since(t0), time.Since(t1), r.Usage.CPUMs)
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(30 * time.Second):
			t.Fatal("no answer")
		}
	})

	// The node gives running tasks its shutdown grace (10 s) before it
	// ends them: this task's profile lets it run past that.
	t.Run("shutdown", func(t *testing.T) {
		n := nodetest.Start(t, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "hostile-policy.yaml")})
		l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "long_task", TTLSeconds: 600})
		res, errs := start(n, l.Token)
		var stopErr error
		var wg sync.WaitGroup
		wg.Add(1)
		t0 := time.Now()
		go func() { defer wg.Done(); stopErr = n.Stop(30 * time.Second) }()
		select {
		case r := <-res:
			if r.Outcome != "terminated:shutdown" {
				t.Fatalf("outcome %q (%s), want terminated:shutdown", r.Outcome, r.Error)
			}
			t.Logf("answered %v after SIGTERM, i.e. %v after the 10 s grace (cpu %.1f ms)", time.Since(t0), time.Since(t0)-10*time.Second, r.Usage.CPUMs)
		case err := <-errs:
			t.Fatalf("no answer before the node stopped: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no answer")
		}
		wg.Wait()
		if stopErr != nil {
			t.Fatalf("stop: %v\n%s", stopErr, n.Logs())
		}
	})
}

// TestHostileFloodKeepsFairness: while one tenant fills the node's two
// slots with hostile tasks stuck in native code (each until cpu_ms) and
// queues a third, another tenant's task is dispatched at the next free
// slot, ahead of the flooder's queued task, as the scheduler's fair
// queueing promises (docs/scheduling.md): it ends before that task. (A
// queued task may instead be shed with queue_timeout on a loaded machine;
// then it was never dispatched ahead of the victim either.)
func TestHostileFloodKeepsFairness(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "hostile-policy.yaml"), Args: []string{"--slots", "2"}})
	flooder := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "cpu_task", TTLSeconds: 600})
	victim := issue(t, n, api.LeaseRequest{Tenant: "other", Intent: "cpu_task", TTLSeconds: 600})
	hostile := jsTask(hostileSource(t, "typedarray-sort"))
	var wg sync.WaitGroup
	type answer struct {
		res  api.TaskResult
		code string
	}
	answers := make([]answer, 3)
	for i := range answers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := n.Request(time.Minute, "POST", "/v1/tasks", flooder.Token, hostile)
			switch {
			case err != nil:
				t.Errorf("flooder task %d: %v", i, err)
			case resp.Status == 200:
				if err := json.Unmarshal(resp.Body, &answers[i].res); err != nil {
					t.Errorf("flooder task %d: %v", i, err)
				}
			case resp.Status == 503:
				answers[i].code = errCode(t, resp.Body)
			default:
				t.Errorf("flooder task %d: %d %s", i, resp.Status, resp.Body)
			}
		}(i)
		time.Sleep(50 * time.Millisecond) // in order: two run, the third waits
	}
	time.Sleep(150 * time.Millisecond)
	r := runTask(t, n, victim.Token, jsTask(`export default { fetch() { return new Response("fair") } }`))
	wg.Wait()
	if r.Outcome != "ok" {
		t.Fatalf("victim: %s %s", r.Outcome, r.Error)
	}
	for i, a := range answers {
		switch {
		case a.code == "queue_timeout":
			t.Logf("flooder task %d was shed while queued", i)
		case a.res.Outcome != "terminated:cpu":
			t.Fatalf("flooder task %d: %q (%s) %s", i, a.res.Outcome, a.res.Error, a.code)
		}
	}
	if q := answers[2]; q.code == "" && !r.EndedAt.Before(q.res.EndedAt) {
		t.Fatalf("the victim's task ended at %v, after the flooder's queued task (%v): it was not dispatched ahead of it", r.EndedAt, q.res.EndedAt)
	}
	t.Logf("victim ended %v after the flooder's first task", r.EndedAt.Sub(answers[0].res.EndedAt))
}
