package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const jsHelloWorker = `export default { async fetch(request) { return new Response("hello"); } };`

// BenchmarkJSColdStart is one task from the snapshot: a fresh instance,
// the worker loaded from cached bytecode, one fetch call, close. It
// compares the two ways of handing the snapshot memory to an instance.
func BenchmarkJSColdStart(b *testing.B) {
	code, err := os.ReadFile(jsEnginePath)
	if err != nil {
		b.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	for _, mode := range []struct {
		name string
		img  func([]byte) (jsImage, error)
	}{
		{"cow", func(m []byte) (jsImage, error) { return newCOWImage(m) }},
		{"copy", func(m []byte) (jsImage, error) { return newCopyImage(m), nil }},
		{"pool", func(m []byte) (jsImage, error) { return newPoolImage(m, 16), nil }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			e, err := newJSEngineImage(context.Background(), code, nil, mode.img, filepath.Dir(jsEnginePath))
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close(context.Background())
			m := jsModule(b, e, jsHelloWorker)
			task := &Task{Module: m, Request: get("https://x.example/"), Limits: jsTestLimits}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				res := e.run(context.Background(), task)
				lat = append(lat, time.Since(t0))
				if res.Outcome != OutcomeOK {
					b.Fatalf("%s: %s", res.Outcome, res.Error)
				}
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(e.image.size())/(1<<20), "image-MiB")
		})
	}
}

// jsCPUHeavyWorker is bench/js_test.go's CPU-heavy worker (a loop, JSON
// work).
const jsCPUHeavyWorker = `export default { async fetch(request) {
  let acc = 0;
  for (let i = 0; i < 2000000; i++) acc = (acc + i * 7) % 1000003;
  const items = [];
  for (let i = 0; i < 2000; i++) items.push({ id: i, name: "item-" + i, tags: ["a", "b", String(i % 7)], score: i / 3 });
  let n = 0;
  for (let k = 0; k < 10; k++) n += JSON.parse(JSON.stringify(items)).filter(x => x.score > 100).length;
  return new Response(acc + " " + n);
} };`

// BenchmarkJSStopCost compares, in one run, what enforcing limits in
// native code costs: the interrupt handler alone (bytecode only; the
// engine before the stop flag), the fuel counter (the default), and wazero's
// WithCloseOnContextDone; on the CPU-heavy worker and on the hello worker.
// The modes take turns in every round, so that the shared machine's load
// falls on all of them alike; each reports its mean per task in ms and
// its ratio to interrupt-only.
func BenchmarkJSStopCost(b *testing.B) {
	code, err := os.ReadFile(jsEnginePath)
	if err != nil {
		b.Fatalf("the JS engine is missing (%v): run `make engine`", err)
	}
	modes := []struct {
		name string
		mode jsStopMode
	}{
		{"interrupt-only", jsStopInterrupt},
		{"fuel", jsStopFuel},
		{"close-on-done", jsStopCloseOnDone},
	}
	engines := make([]*jsEngine, len(modes))
	for i, m := range modes {
		dir := ""
		if m.mode == jsStopFuel {
			dir = filepath.Dir(jsEnginePath)
		}
		e, err := newJSEngineMode(context.Background(), code, nil, newDefaultImage, dir, m.mode)
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close(context.Background())
		engines[i] = e
	}
	lim := jsTestLimits
	lim.CPU, lim.Wall, lim.MemoryBytes = 0, time.Minute, 128<<20
	for _, w := range []struct {
		name, src string
		per       int // tasks per mode per round
	}{{"cpu-heavy", jsCPUHeavyWorker, 1}, {"hello", jsHelloWorker, 200}} {
		b.Run(w.name, func(b *testing.B) {
			tasks := make([]*Task, len(modes))
			for i, e := range engines {
				tasks[i] = &Task{Module: jsModule(b, e, w.src), Request: get("https://x.example/"), Limits: lim}
				for k := 0; k < 20; k++ { // warm the pool
					e.run(context.Background(), tasks[i])
				}
			}
			total := make([]time.Duration, len(modes))
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				for i, e := range engines {
					t0 := time.Now()
					for k := 0; k < w.per; k++ {
						if res := e.run(context.Background(), tasks[i]); res.Outcome != OutcomeOK {
							b.Fatalf("%s: %s", res.Outcome, res.Error)
						}
					}
					total[i] += time.Since(t0)
				}
			}
			b.StopTimer()
			for i, m := range modes {
				per := float64(total[i].Microseconds()) / 1e3 / float64(b.N*w.per)
				b.ReportMetric(per, m.name+"-ms")
				b.ReportMetric(float64(total[i])/float64(total[0]), m.name+"-ratio")
			}
		})
	}
}

// BenchmarkJSEngineCompare compares two engine builds in one run:
// LEASH_BENCH_ENGINE_A (before) and LEASH_BENCH_ENGINE_B (after, default
// the engine `make engine` built). The engines take turns in every round
// (200 hello tasks each), so the shared machine's load falls on both
// alike. It reports each one's p50 cold start, its snapshot image and the
// linear memory a hello task peaks at, and B's ratios to A.
func BenchmarkJSEngineCompare(b *testing.B) {
	pathA, pathB := os.Getenv("LEASH_BENCH_ENGINE_A"), os.Getenv("LEASH_BENCH_ENGINE_B")
	if pathB == "" {
		pathB = jsEnginePath
	}
	if pathA == "" {
		b.Skip("set LEASH_BENCH_ENGINE_A to the engine to compare with")
	}
	var engines [2]*jsEngine
	for i, p := range []string{pathA, pathB} {
		code, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		e, err := newJSEngineImage(context.Background(), code, nil, newDefaultImage, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close(context.Background())
		engines[i] = e
	}
	const per = 200
	var tasks [2]*Task
	var lat [2][]time.Duration
	var peak [2]int64
	for i, e := range engines {
		tasks[i] = &Task{Module: jsModule(b, e, jsHelloWorker), Request: get("https://x.example/"), Limits: jsTestLimits}
		for k := 0; k < 50; k++ { // warm the pool
			e.run(context.Background(), tasks[i])
		}
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i, e := range engines {
			for k := 0; k < per; k++ {
				t0 := time.Now()
				res := e.run(context.Background(), tasks[i])
				lat[i] = append(lat[i], time.Since(t0))
				if res.Outcome != OutcomeOK {
					b.Fatalf("%s: %s", res.Outcome, res.Error)
				}
				peak[i] = max(peak[i], res.Usage.MemoryPeakBytes)
			}
		}
	}
	b.StopTimer()
	var p50 [2]float64
	for i, name := range []string{"A", "B"} {
		sort.Slice(lat[i], func(x, y int) bool { return lat[i][x] < lat[i][y] })
		p50[i] = float64(lat[i][len(lat[i])/2].Nanoseconds()) / 1e3
		b.ReportMetric(p50[i], name+"-p50-µs")
		b.ReportMetric(float64(engines[i].image.size())/(1<<20), name+"-image-MiB")
		b.ReportMetric(float64(peak[i])/(1<<20), name+"-linear-MiB")
	}
	b.ReportMetric(p50[1]/p50[0], "B/A-p50")
	b.ReportMetric(float64(engines[1].image.size())/float64(engines[0].image.size()), "B/A-image")
	b.ReportMetric(float64(peak[1])/float64(peak[0]), "B/A-linear")
	// resident memory of 32 live instances on fresh memories, each
	// engine in turn, twice
	var rss [2]float64
	for round := 0; round < 2; round++ {
		for i, p := range []string{pathA, pathB} {
			rss[i] += jsLiveRSS(b, p) / 2
		}
	}
	b.ReportMetric(rss[0]/(1<<20), "A-rss-MiB/instance")
	b.ReportMetric(rss[1]/(1<<20), "B-rss-MiB/instance")
	b.ReportMetric(rss[1]/rss[0], "B/A-rss")
}

// jsLiveRSS holds 32 instances of a fresh engine (an empty pool: every
// instance memory is new) live at once, each waiting on a timer, and
// returns the process's resident memory growth per instance.
func jsLiveRSS(b *testing.B, path string) float64 {
	const live = 32
	code, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	e, err := newJSEngineImage(context.Background(), code, nil, newDefaultImage, filepath.Join(os.TempDir(), "leash-bench-"+filepath.Base(filepath.Dir(path))))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	task := &Task{Module: jsModule(b, e, `export default { async fetch() { await new Promise(r => setTimeout(r, 300)); return new Response("held"); } };`),
		Request: get("https://x.example/"), Limits: jsTestLimits}
	runtime.GC()
	debug.FreeOSMemory()
	rss0 := jsRSS()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if v := jsRSS(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for j := 0; j < live; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := e.run(context.Background(), task); res.Outcome != OutcomeOK {
				b.Errorf("%s: %s", res.Outcome, res.Error)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	return float64(peak.Load()-rss0) / live
}

// jsRSS is the process's resident memory in bytes (Linux; 0 elsewhere).
func jsRSS() int64 {
	s, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(s))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
