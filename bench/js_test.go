package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/sandbox"
)

// The JS benchmarks of docs/javascript.md ("Benchmarks"). The end-to-end
// POST /v1/tasks numbers (and workerd's Worker Loader) need a node with JS
// wired: they are not here yet.

const jsHello = `export default { async fetch(request) { return new Response("hello"); } };`

// jsCPUHeavy is a loop and JSON work, the same script in leash and workerd.
const jsCPUHeavy = `export default { async fetch(request) {
  let acc = 0;
  for (let i = 0; i < 2000000; i++) acc = (acc + i * 7) % 1000003;
  const items = [];
  for (let i = 0; i < 2000; i++) items.push({ id: i, name: "item-" + i, tags: ["a", "b", String(i % 7)], score: i / 3 });
  let n = 0;
  for (let k = 0; k < 10; k++) n += JSON.parse(JSON.stringify(items)).filter(x => x.score > 100).length;
  return new Response(acc + " " + n);
} };`

var jsLimits = sandbox.Limits{CPU: 10 * time.Second, Wall: 30 * time.Second, MemoryBytes: 128 << 20, OutputBytes: 1 << 20, LogBytes: 1 << 16}

func jsRuntime(b *testing.B) *sandbox.Runtime {
	b.Helper()
	engine := filepath.Join(nodetest.RepoRoot(), "build", "engine", "engine.wasm")
	if _, err := os.Stat(engine); err != nil {
		b.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	ctx := context.Background()
	r, err := sandbox.New(ctx, sandbox.Config{EnginePath: engine})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close(ctx) })
	if err := r.JSError(); err != nil {
		b.Fatal(err)
	}
	return r
}

func jsTask(b *testing.B, r *sandbox.Runtime, src string) *sandbox.Task {
	b.Helper()
	m, err := r.Compile(context.Background(), sandbox.KindJS, []byte(src))
	if err != nil {
		b.Fatal(err)
	}
	return &sandbox.Task{ID: "bench", Module: m, Request: sandbox.Request{Method: "GET", URL: "https://bench.example/"}, Limits: jsLimits}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkJSColdStart is one JS task from the snapshot: a fresh engine
// instance, the worker loaded from its cached bytecode, one fetch call,
// the response collected, the instance closed.
func BenchmarkJSColdStart(b *testing.B) {
	r := jsRuntime(b)
	task := jsTask(b, r, jsHello)
	for i := 0; i < 50; i++ { // warm the instance pool
		r.Run(context.Background(), task)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res := r.Run(context.Background(), task)
		lat = append(lat, time.Since(t0))
		if res.Outcome != sandbox.OutcomeOK {
			b.Fatalf("%s: %s", res.Outcome, res.Error)
		}
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkJSMemoryPerInstance holds 32 instances live at once (each
// waits on a timer) and reports the process's resident memory per
// instance and the instances' linear memory.
func BenchmarkJSMemoryPerInstance(b *testing.B) {
	const live = 32
	for i := 0; i < b.N; i++ {
		// a fresh runtime each time: its pool of instance memories is
		// empty, so every live instance's memory is new
		b.StopTimer()
		r := jsRuntime(b)
		task := jsTask(b, r, `export default { async fetch() { await new Promise(r => setTimeout(r, 300)); return new Response("held"); } };`)
		runtime.GC()
		rss0 := rss(b)
		b.StartTimer()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var peak int64
		var linear int64
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					if v := rss(b); v > 0 {
						mu.Lock()
						peak = max(peak, v)
						mu.Unlock()
					}
				}
			}
		}()
		for j := 0; j < live; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := r.Run(context.Background(), task)
				mu.Lock()
				linear += res.Usage.MemoryPeakBytes
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(stop)
		b.ReportMetric(float64(peak-rss0)/live/(1<<20), "rss-MiB/instance")
		b.ReportMetric(float64(linear)/live/(1<<20), "linear-MiB/instance")
	}
}

func rss(b *testing.B) int64 {
	s, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(s))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// BenchmarkJSCPUHeavy runs a CPU-heavy worker (a loop, JSON work) in
// leash and, with LEASH_WORKERD set to a workerd binary, in workerd over
// loopback HTTP, and reports the ratio.
func BenchmarkJSCPUHeavy(b *testing.B) {
	r := jsRuntime(b)
	task := jsTask(b, r, jsCPUHeavy)
	var want string
	leash := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res := r.Run(context.Background(), task)
		leash = append(leash, time.Since(t0))
		if res.Outcome != sandbox.OutcomeOK {
			b.Fatalf("%s: %s", res.Outcome, res.Error)
		}
		want = string(res.Response.Body)
	}
	sort.Slice(leash, func(i, j int) bool { return leash[i] < leash[j] })
	b.ReportMetric(float64(leash[len(leash)/2].Microseconds())/1e3, "leash-ms")
	bin := os.Getenv("LEASH_WORKERD")
	if bin == "" {
		return
	}
	url, stop := startWorkerd(b, bin, jsCPUHeavy)
	defer stop()
	wd := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N+1; i++ {
		t0 := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i == 0 {
			continue // the first request compiles and warms the isolate
		}
		wd = append(wd, time.Since(t0))
		if string(body) != want {
			b.Fatalf("workerd answered %q, leash %q", body, want)
		}
	}
	sort.Slice(wd, func(i, j int) bool { return wd[i] < wd[j] })
	b.ReportMetric(float64(wd[len(wd)/2].Microseconds())/1e3, "workerd-ms")
	b.ReportMetric(float64(leash[len(leash)/2])/float64(wd[len(wd)/2]), "leash/workerd")
}

func startWorkerd(b *testing.B, bin, src string) (string, func()) {
	return startWorkerdWith(b, bin, src, "")
}

// startWorkerdWith serves src as the only worker, with extra worker
// fields and workerd flags.
func startWorkerdWith(b *testing.B, bin, src, extra string, flags ...string) (string, func()) {
	dir := b.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, "w.js"), []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	if extra != "" {
		extra = ", " + extra
	}
	conf := fmt.Sprintf(`using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = (modules = [(name = "w.js", esModule = embed "w.js")], compatibilityDate = "2025-09-01"%s)) ],
  sockets = [ (name = "http", address = "127.0.0.1:%d", http = (), service = "main") ],
);
`, extra, port)
	if err := os.WriteFile(filepath.Join(dir, "c.capnp"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append([]string{"serve", filepath.Join(dir, "c.capnp")}, flags...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			b.Fatalf("workerd did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr + "/", func() { cancel(); _ = cmd.Wait() }
}

// BenchmarkJSTasksConcurrent runs the hello worker from 8 goroutines, a
// fresh instance per task, in process (no HTTP, no lease): the sandbox's
// share of POST /v1/tasks at concurrency 8.
func BenchmarkJSTasksConcurrent(b *testing.B) {
	r := jsRuntime(b)
	task := jsTask(b, r, jsHello)
	b.SetParallelism(8 / runtime.GOMAXPROCS(0))
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := *task
			if res := r.Run(context.Background(), &t); res.Outcome != sandbox.OutcomeOK {
				b.Errorf("%s: %s", res.Outcome, res.Error)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkJSTasksEndToEnd drives POST /v1/tasks on a real node with the
// hello worker (stored by digest) at concurrency 8, a fresh engine
// instance per task; with LEASH_WORKERD set it drives, in the same run,
// workerd with a Worker Loader creating a new dynamic isolate per request
// for the same script, and reports the ratio.
func BenchmarkJSTasksEndToEnd(b *testing.B) {
	engine := filepath.Join(nodetest.RepoRoot(), "build", "engine", "engine.wasm")
	if _, err := os.Stat(engine); err != nil {
		b.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	n := nodetest.Start(b, nodetest.Options{Args: []string{"--slots", "8", "--log-level", "warn", "--engine", engine}})
	var l api.Lease
	n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, 201, &l)
	st, body := n.Do("PUT", "/v1/modules", l.Token, []byte(jsHello), "Content-Type", "application/javascript")
	if st != 201 {
		b.Fatalf("put module: %d %s", st, body)
	}
	var ref api.ModuleRef
	_ = json.Unmarshal(body, &ref)
	task, _ := json.Marshal(api.TaskRequest{Module: api.Module{Digest: &ref.Digest}, Request: api.TaskHTTPRequest{Method: "GET", URL: "https://bench.example/"}})
	url := n.URL() + "/v1/tasks"
	const conc = 8
	if err := post(url, l.Token, task, 200); err != nil {
		b.Fatal(err)
	}
	Load(200, conc, func(int) error { return post(url, l.Token, task, 200) }) // warm up
	b.ResetTimer()
	lat := Load(max(b.N, 2000), conc, func(int) error { return post(url, l.Token, task, 200) })
	b.StopTimer()
	if lat.Errors > 0 {
		b.Fatalf("%d of %d tasks failed", lat.Errors, lat.N)
	}
	lat.Report(b, "tasks")
	bin := os.Getenv("LEASH_WORKERD")
	if bin == "" {
		return
	}
	n.Stop(30 * time.Second) // leave the cores to workerd
	wurl, stop := startWorkerdLoader(b, bin, jsHello)
	defer stop()
	get := func(int) error {
		resp, err := client.Get(wurl)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "hello" {
			return fmt.Errorf("workerd: %d %q", resp.StatusCode, b)
		}
		return nil
	}
	Load(50, conc, get)
	wd := Load(max(b.N, 500), conc, get)
	if wd.Errors > 0 {
		b.Fatalf("%d of %d workerd requests failed", wd.Errors, wd.N)
	}
	b.ReportMetric(wd.Rate(), "workerd_loader_req/s")
	b.ReportMetric(float64(wd.P50.Microseconds()), "workerd_p50_µs")
	b.ReportMetric(float64(wd.P99.Microseconds()), "workerd_p99_µs")
	b.ReportMetric(lat.Rate()/wd.Rate(), "leash/workerd")
}

// startWorkerdLoader serves a parent worker whose every request loads the
// script as a new dynamic worker (a fresh isolate: a new id each time).
func startWorkerdLoader(b *testing.B, bin, src string) (string, func()) {
	parent := fmt.Sprintf(`const SRC = %q;
let n = 0;
export default { async fetch(request, env) {
  const w = env.LOADER.get("w" + n++, () => ({ compatibilityDate: "2025-09-01", mainModule: "w.js", modules: { "w.js": SRC } }));
  return w.getEntrypoint().fetch(request);
} };`, src)
	return startWorkerdWith(b, bin, parent, `compatibilityFlags = ["experimental"], bindings = [(name = "LOADER", workerLoader = ())]`, "--experimental")
}

// BenchmarkJSHostileOverrun runs each hostile script of
// sandbox/testdata/hostile that ends at its CPU limit (cpu_ms 100) b.N
// times and reports how far past cpu_ms it ran:
// the max and the p99 of CPU time past the limit, in ms.
func BenchmarkJSHostileOverrun(b *testing.B) {
	r := jsRuntime(b)
	files, err := filepath.Glob(filepath.Join(nodetest.RepoRoot(), "sandbox", "testdata", "hostile", "*.js"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no hostile scripts: %v", err)
	}
	lim := sandbox.Limits{CPU: 100 * time.Millisecond, Wall: 10 * time.Second, MemoryBytes: 128 << 20, OutputBytes: 1 << 20, LogBytes: 1 << 16}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".js")
		b.Run(name, func(b *testing.B) {
			task := jsTask(b, r, string(src))
			task.Limits = lim
			over := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				res := r.Run(context.Background(), task)
				if res.Outcome != sandbox.Terminated(sandbox.ReasonCPU) {
					b.Skipf("%s ends %s, not at its CPU limit", name, res.Outcome)
				}
				over = append(over, res.Usage.CPU-lim.CPU)
			}
			sort.Slice(over, func(i, j int) bool { return over[i] < over[j] })
			b.ReportMetric(float64(over[len(over)-1].Microseconds())/1e3, "max-over-ms")
			b.ReportMetric(float64(over[(len(over)-1)*99/100].Microseconds())/1e3, "p99-over-ms")
		})
	}
}
