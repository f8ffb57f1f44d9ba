package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"sort"
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
