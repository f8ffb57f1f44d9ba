package sandbox

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// spinModule is a module importing leash.interrupt, with one global and
// exported functions "spin" (an endless loop with no call in it) and
// "rec" (endless recursion without a loop), built by hand.
var spinModule = []byte("\x00asm\x01\x00\x00\x00" +
	"\x01\x08\x02\x60\x00\x00\x60\x00\x01\x7f" + // types: () -> (), () -> i32
	"\x02\x13\x01\x05leash\x09interrupt\x00\x01" + // import func 0: leash.interrupt
	"\x03\x03\x02\x00\x00" + // functions 1, 2 of type 0
	"\x06\x06\x01\x7f\x01\x41\x00\x0b" + // global 0: mutable i32 0
	"\x07\x0e\x02\x04spin\x00\x01\x03rec\x00\x02" + // exports
	"\x0a\x0e\x02" + // code: two bodies
	"\x07\x00\x03\x40\x0c\x00\x0b\x0b" + // spin: loop br 0 end end
	"\x04\x00\x10\x02\x0b") // rec: call 2 end

// TestFuelTraps: the instrumented module validates, runs, asks
// leash.interrupt every jsFuel checks, and traps when it says stop, in a
// loop with no call and in recursion without a loop.
func TestFuelTraps(t *testing.T) {
	m, err := parseWasm(spinModule)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := m.snapshotModule(0, []uint64{0}, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	var asked atomic.Int64
	var stop atomic.Bool
	_, err = rt.NewHostModuleBuilder(HostModule).NewFunctionBuilder().
		WithFunc(func() int32 {
			asked.Add(1)
			if stop.Load() {
				return 1
			}
			return 0
		}).Export("interrupt").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"spin", "rec"} {
		t.Run(fn, func(t *testing.T) {
			stop.Store(false)
			asked.Store(0)
			mod, err := rt.InstantiateWithConfig(ctx, snap, wazero.NewModuleConfig().WithName(""))
			if err != nil {
				t.Fatal(err)
			}
			defer mod.Close(ctx)
			if mod.ExportedGlobal(jsFuelExport) == nil {
				t.Fatal("no leash_fuel export")
			}
			done := make(chan error, 1)
			go func() {
				_, err := mod.ExportedFunction(fn).Call(ctx)
				done <- err
			}()
			for asked.Load() < 3 {
				select {
				case err := <-done:
					t.Fatalf("returned before it was told to stop: %v", err)
				case <-time.After(time.Millisecond):
				}
			}
			stop.Store(true)
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "unreachable") {
					t.Fatalf("err %v, want the unreachable trap", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the guest did not stop")
			}
		})
	}
}

// TestInstrumentRefuses: code the instrumenter cannot read is refused,
// never passed through unchecked.
func TestInstrumentRefuses(t *testing.T) {
	for name, body := range map[string][]byte{
		"simd":         []byte("\x01\x05\x00\xfd\x0c\x0b\x0b"),
		"truncated":    []byte("\x01\x05\x00\x03\x40"),
		"no end":       []byte("\x01\x02\x00\x01"),
		"trailing":     []byte("\x01\x02\x00\x0b\x00"),
		"bytes after":  []byte("\x01\x03\x00\x0b\x01"),
		"unknown 0xfc": []byte("\x01\x04\x00\xfc\x20\x0b"),
	} {
		if _, err := instrumentCode(body, fuelCheck(0, 0)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := instrumentCode([]byte("\x01\x02\x00\x0b"), fuelCheck(0, 0)); err != nil {
		t.Errorf("empty function: %v", err)
	}
}

// FuzzInstrumentCode: the instrumenter never panics, and what it accepts
// it can read back.
func FuzzInstrumentCode(f *testing.F) {
	f.Add([]byte("\x02\x07\x00\x03\x40\x0c\x00\x0b\x0b\x04\x00\x10\x01\x0b"))
	f.Add([]byte("\x01\x0b\x01\x02\x7f\x41\x05\x04\x40\x01\x0b\x0b\x0b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := instrumentCode(b, fuelCheck(3, 1))
		if err != nil {
			return
		}
		if _, err := instrumentCode(out, fuelCheck(3, 1)); err != nil {
			t.Fatalf("instrumented code does not read back: %v", err)
		}
	})
}

// TestJSStopInNativeCode: a cancellation (a revocation, a shutdown) ends a
// task that is inside a long native built-in, with the cause's reason.
func TestJSStopInNativeCode(t *testing.T) {
	e := testJSEngine(t)
	m := jsModule(t, e, `export default { fetch() {
  const a = new Float64Array(1 << 22);
  for (let i = 0; i < a.length; i++) a[i] = (i * 7919) % 1000003;
  for (;;) a.sort((x, y) => 0), a.sort();
} };`)
	for _, reason := range []string{ReasonRevoked, ReasonShutdown} {
		t.Run(reason, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			lim := jsTestLimits
			lim.CPU, lim.Wall = 0, 0
			task := &Task{ID: "tsk_native", Module: m, Request: get("https://example.com/"), Limits: lim}
			done := make(chan *Result, 1)
			go func() { done <- e.run(ctx, task) }()
			time.Sleep(300 * time.Millisecond)
			t0 := time.Now()
			cancel(Terminate(reason))
			var res *Result
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the task did not end")
			}
			if want := Terminated(reason); res.Outcome != want {
				t.Fatalf("outcome %q (%s), want %q", res.Outcome, res.Error, want)
			}
			t.Logf("ended %v after the cancellation", time.Since(t0))
		})
	}
}

// TestJSBulkMemoryChunked: memory.copy and memory.fill of more than
// jsBulkChunk go through the chunked helpers; overlapping copies in both
// directions, fills and out-of-range copies behave as the instructions
// do (checked against plain JS loops).
func TestJSBulkMemoryChunked(t *testing.T) {
	src := `export default { fetch() {
  const n = 3 << 20, a = new Uint8Array(n), want = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = want[i] = (i * 31 + 7) & 255;
  const check = what => { for (let i = 0; i < n; i++) if (a[i] !== want[i]) throw new Error(what + " differs at " + i); };
  a.copyWithin(5, 0, n - 5);                       // overlapping, dst > src: backward
  for (let i = n - 1; i >= 5; i--) want[i] = want[i - 5];
  check("copyWithin up");
  a.copyWithin(0, 7);                              // overlapping, dst < src: forward
  for (let i = 0; i < n - 7; i++) want[i] = want[i + 7];
  check("copyWithin down");
  a.fill(9, 3, n - 2);
  for (let i = 3; i < n - 2; i++) want[i] = 9;
  check("fill");
  const b = a.slice(1);                            // a copy into fresh memory
  for (let i = 0; i < n - 1; i++) if (b[i] !== a[i + 1]) throw new Error("slice differs at " + i);
  return new Response("same");
} };`
	res := runJS(t, src, get("https://x.example/"), func(tk *Task) {
		tk.Limits.CPU, tk.Limits.Wall, tk.Limits.MemoryBytes = 30*time.Second, 60*time.Second, 64<<20
	})
	if res.Outcome != OutcomeOK || string(res.Response.Body) != "same" {
		t.Fatalf("%s: %s %q", res.Outcome, res.Error, res.Response.Body)
	}
}
