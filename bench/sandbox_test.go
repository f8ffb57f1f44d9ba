package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/sandbox"
)

func loadGuest(b *testing.B, name string) []byte {
	code, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "build", "guests", name+".wasm"))
	if err != nil {
		b.Fatalf("guest %s missing (%v): run make guests", name, err)
	}
	return code
}

func buildHello(b *testing.B) []byte {
	out := filepath.Join(b.TempDir(), "hello.wasm")
	cmd := exec.Command("go", "build", "-o", out, "./examples/hello")
	cmd.Dir = nodetest.RepoRoot()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, o)
	}
	code, _ := os.ReadFile(out)
	return code
}

// BenchmarkColdStart measures instantiate + run + close of a fresh
// instance per task, the module already compiled and cached: the cost a
// task pays before and after its own work.
func BenchmarkColdStart(b *testing.B) {
	ctx := context.Background()
	r, err := sandbox.New(ctx, sandbox.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(ctx)
	for _, g := range []struct {
		name string
		code func(*testing.B) []byte
	}{
		{"minimal-c", func(b *testing.B) []byte { return loadGuest(b, "minimal") }},
		{"go-hello", buildHello},
	} {
		b.Run(g.name, func(b *testing.B) {
			m, err := r.Compile(ctx, sandbox.KindWASI, g.code(b))
			if err != nil {
				b.Fatal(err)
			}
			task := &sandbox.Task{ID: "bench", Module: m, Request: sandbox.Request{Method: "GET", URL: "https://bench.example/"},
				Limits: sandbox.Limits{CPU: time.Second, Wall: 5 * time.Second, MemoryBytes: 64 << 20, OutputBytes: 1 << 20, LogBytes: 1 << 16}}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				res := r.Run(ctx, task)
				lat = append(lat, time.Since(t0))
				if res.Outcome != sandbox.OutcomeOK {
					b.Fatalf("outcome %s: %s", res.Outcome, res.Error)
				}
			}
			summarize(lat, time.Since(start), 0).Report(b, "tasks")
		})
	}
}
