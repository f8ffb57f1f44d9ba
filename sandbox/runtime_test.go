package sandbox

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// guest loads a test guest built by `make guests` from testdata/guests.
func guest(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "build", "guests", name+".wasm"))
	if err != nil {
		t.Fatalf("test guest %s is missing (%v): run `make guests`", name, err)
	}
	return b
}

func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	r, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func compile(t testing.TB, r *Runtime, name string) *Module {
	t.Helper()
	m, err := r.Compile(context.Background(), KindWASI, guest(t, name))
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return m
}

var testLimits = Limits{
	CPU:         200 * time.Millisecond,
	Wall:        2 * time.Second,
	MemoryBytes: 32 << 20,
	OutputBytes: 64 << 10,
	LogBytes:    4 << 10,
}

func TestRunEcho(t *testing.T) {
	r := newRuntime(t)
	m := compile(t, r, "echo")
	res := r.Run(context.Background(), &Task{
		ID:     "tsk_1",
		Module: m,
		Request: Request{
			Method:  "POST",
			URL:     "https://app.example/some/path?x=1",
			Headers: http.Header{"X-Test": {"hello"}, "Authorization": {"Bearer secret"}},
			Body:    []byte("payload"),
		},
		Env:    map[string]string{"GREETING": "hi"},
		Limits: testLimits,
	})
	if res.Outcome != OutcomeOK {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Error)
	}
	if res.Response.Status != 201 || res.Response.Headers.Get("X-Echo") != "yes" {
		t.Errorf("status %d headers %v", res.Response.Status, res.Response.Headers)
	}
	body := string(res.Response.Body)
	for _, want := range []string{"abi=2", "method=POST", "path=/some/path", "query=x=1", "x-test=hello", "greeting=hi", "task=tsk_1", "body=payload"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "secret") {
		t.Errorf("the Authorization header reached the guest")
	}
	if len(res.Logs) != 1 || res.Logs[0].Message != "echo guest running" || res.Logs[0].Level != "info" {
		t.Errorf("logs = %+v", res.Logs)
	}
	if res.Usage.MemoryPeakBytes == 0 || res.Usage.OutputBytes == 0 {
		t.Errorf("usage not metered: %+v", res.Usage)
	}
}

func TestRunOutcomes(t *testing.T) {
	r := newRuntime(t)
	tests := map[string]struct {
		guest   string
		limits  func(*Limits)
		outcome Outcome
		errHas  string
	}{
		"ok":              {guest: "minimal", outcome: OutcomeOK},
		"cpu":             {guest: "loop", outcome: Terminated(ReasonCPU)},
		"wall":            {guest: "sleep", limits: func(l *Limits) { l.Wall = 300 * time.Millisecond }, outcome: Terminated(ReasonWall)},
		"memory":          {guest: "memhog", limits: func(l *Limits) { l.CPU, l.Wall = 10*time.Second, 20*time.Second }, outcome: Terminated(ReasonMemory)},
		"memory at start": {guest: "minimal", limits: func(l *Limits) { l.MemoryBytes = 64 << 10 }, outcome: Terminated(ReasonMemory)},
		"output":          {guest: "flood", outcome: Terminated(ReasonOutput)},
		"trap":            {guest: "trap", outcome: OutcomeError, errHas: "unreachable"},
		"exit code":       {guest: "fail", outcome: OutcomeError, errHas: "exited with code 3: something went wrong"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			lim := testLimits
			if tc.limits != nil {
				tc.limits(&lim)
			}
			res := r.Run(context.Background(), &Task{ID: "t", Module: compile(t, r, tc.guest), Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim})
			if res.Outcome != tc.outcome {
				t.Fatalf("outcome = %s (%s), want %s", res.Outcome, res.Error, tc.outcome)
			}
			if !strings.Contains(res.Error, tc.errHas) {
				t.Errorf("error %q lacks %q", res.Error, tc.errHas)
			}
			if tc.outcome != OutcomeOK && res.Response.Status != 500 {
				t.Errorf("status = %d, want 500", res.Response.Status)
			}
		})
	}
}

func TestCPULimitIsCPUNotWall(t *testing.T) {
	// A guest that sleeps uses no CPU: with a tiny CPU limit and a longer
	// wall limit, it must end at wall, not cpu.
	r := newRuntime(t)
	lim := testLimits
	lim.CPU = 20 * time.Millisecond
	lim.Wall = 400 * time.Millisecond
	res := r.Run(context.Background(), &Task{Module: compile(t, r, "sleep"), Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim})
	if res.Outcome != Terminated(ReasonWall) {
		t.Fatalf("outcome = %s, want terminated:wall", res.Outcome)
	}
	if res.Usage.CPU >= lim.CPU {
		t.Errorf("a sleeping guest was metered %v of CPU", res.Usage.CPU)
	}
}

func TestTerminateCause(t *testing.T) {
	r := newRuntime(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel(Terminate(ReasonRevoked))
	}()
	lim := testLimits
	lim.CPU = 10 * time.Second
	lim.Wall = 10 * time.Second
	res := r.Run(ctx, &Task{Module: compile(t, r, "loop"), Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim})
	if res.Outcome != Terminated(ReasonRevoked) {
		t.Fatalf("outcome = %s, want terminated:revoked", res.Outcome)
	}
}

func TestLogTruncation(t *testing.T) {
	r := newRuntime(t)
	lim := testLimits
	lim.CPU = 5 * time.Second // 100,000 host calls: slow under -race on a loaded machine
	res := r.Run(context.Background(), &Task{Module: compile(t, r, "logflood"), Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim})
	if res.Outcome != OutcomeOK {
		t.Fatalf("outcome = %s (%s)", res.Outcome, res.Error)
	}
	if res.Usage.LogBytes > testLimits.LogBytes {
		t.Errorf("kept %d log bytes, limit %d", res.Usage.LogBytes, testLimits.LogBytes)
	}
	if last := res.Logs[len(res.Logs)-1]; last.Message != TruncatedMarker {
		t.Errorf("last log line = %q, want the truncation marker", last.Message)
	}
}

func TestCompileRefuses(t *testing.T) {
	r := newRuntime(t)
	tests := map[string][]byte{
		"not wasm":  []byte("hello"),
		"truncated": guest(t, "minimal")[:100],
		"empty":     {},
		// A valid module with no _start: (module)
		"no start": {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00},
	}
	for name, code := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := r.Compile(context.Background(), KindWASI, code); err == nil {
				t.Fatal("Compile accepted it")
			}
		})
	}
}

func TestCompileCaches(t *testing.T) {
	r := newRuntime(t)
	a := compile(t, r, "minimal")
	b := compile(t, r, "minimal")
	if a != b {
		t.Error("same bytes compiled twice")
	}
	if !strings.HasPrefix(a.Digest, "sha256:") {
		t.Errorf("digest %q", a.Digest)
	}
}

// TestNodeSurvivesHostileGuests runs many memory-hungry and endless
// guests and checks that goroutines and memory return near their
// baseline: a termination never leaks.
func TestNodeSurvivesHostileGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	r := newRuntime(t)
	hog, loop := compile(t, r, "memhog"), compile(t, r, "loop")
	lim := testLimits
	lim.CPU = 10 * time.Second
	lim.Wall = 30 * time.Second
	lim.MemoryBytes = 16 << 20

	run := func(n int) {
		sem := make(chan struct{}, 4)
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			go func(i int) {
				defer func() { <-sem }()
				m, l := hog, lim
				want := Terminated(ReasonMemory)
				if i%2 == 1 {
					m, want = loop, Terminated(ReasonCPU)
					l.CPU = 5 * time.Millisecond
				}
				res := r.Run(context.Background(), &Task{Module: m, Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: l})
				if res.Outcome != want {
					t.Errorf("run %d: outcome %s (%s), want %s", i, res.Outcome, res.Error, want)
				}
			}(i)
		}
		for i := 0; i < cap(sem); i++ {
			sem <- struct{}{}
		}
	}
	run(20) // warm up
	debug.FreeOSMemory()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	rss0 := rssBytes(t)

	run(400) // 200 memory-hungry, 200 endless

	var after runtime.MemStats
	var rss1 int64
	rssMargin := int64(96 << 20)
	if raceEnabled {
		rssMargin = 192 << 20 // the detector's shadow of the guests' memory
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		debug.FreeOSMemory()
		runtime.ReadMemStats(&after)
		rss1 = rssBytes(t)
		if runtime.NumGoroutine() <= g0+2 && after.HeapInuse < before.HeapInuse+64<<20 && rss1 < rss0+rssMargin || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("goroutines %d → %d, heap in use %d → %d MiB, RSS %d → %d MiB", g0, runtime.NumGoroutine(),
		before.HeapInuse>>20, after.HeapInuse>>20, rss0>>20, rss1>>20)
	if rss1 > rss0+rssMargin {
		t.Errorf("RSS grew from %d MiB to %d MiB", rss0>>20, rss1>>20)
	}
	if g := runtime.NumGoroutine(); g > g0+2 {
		t.Errorf("goroutines: %d before, %d after", g0, g)
	}
	if after.HeapInuse > before.HeapInuse+64<<20 {
		t.Errorf("heap in use grew from %d MiB to %d MiB", before.HeapInuse>>20, after.HeapInuse>>20)
	}
}

// rssBytes reads the process's resident set size from /proc.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	var size, rss int64
	if _, err := fmt.Sscan(string(b), &size, &rss); err != nil {
		t.Fatal(err)
	}
	return rss * int64(os.Getpagesize())
}

// stubFetcher answers every fetch, or refuses with a clause.
type stubFetcher struct {
	clause string
	calls  int
}

func (f *stubFetcher) Fetch(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
	f.calls++
	if f.clause != "" {
		return nil, &FetchError{Clause: f.clause, Message: "refused by the test"}
	}
	return &FetchResponse{Status: 200, Headers: http.Header{"X-Up": {"1"}}, Body: []byte("upstream says hi to " + req.Headers.Get("X-Guest")), URL: req.URL}, nil
}

func TestFetchHostCalls(t *testing.T) {
	r := newRuntime(t)
	m := compile(t, r, "fetch")
	run := func(f Fetcher, env map[string]string) *Result {
		t.Helper()
		var host Host
		if f != nil {
			host.Fetch = f
		}
		return r.Run(context.Background(), &Task{Module: m, Request: Request{Method: "GET", URL: "http://x.example/"}, Env: env, Limits: testLimits, Host: host})
	}
	res := run(&stubFetcher{}, map[string]string{"FETCH_URL": "https://api.example.com/x"})
	if res.Outcome != OutcomeOK || !strings.Contains(string(res.Response.Body), "body upstream says hi to c") || !strings.Contains(string(res.Response.Body), `"status":200`) {
		t.Fatalf("allowed fetch: %s %s\n%s", res.Outcome, res.Error, res.Response.Body)
	}
	res = run(&stubFetcher{clause: "profile.default_deny"}, map[string]string{"FETCH_URL": "https://evil.example/"})
	if res.Outcome != OutcomeOK || !strings.Contains(string(res.Response.Body), `error -2 {"clause":"profile.default_deny"`) {
		t.Fatalf("blocked fetch: %s\n%s", res.Outcome, res.Response.Body)
	}
	res = run(nil, map[string]string{"FETCH_URL": "https://evil.example/"})
	if !strings.Contains(string(res.Response.Body), `"clause":"profile.default_deny"`) {
		t.Fatalf("no fetcher: %s", res.Response.Body)
	}
	f := &stubFetcher{clause: SubrequestClause}
	res = run(f, map[string]string{"FETCH_URL": "https://api.example.com/", "FETCH_COUNT": "5"})
	if res.Outcome != Terminated(ReasonSubrequests) || f.calls != 1 {
		t.Fatalf("over subrequests: %s after %d calls", res.Outcome, f.calls)
	}
}

// TestCacheEvictionKeepsRunningModules: evicting a module from the
// compiled cache while a task runs it does not break that task; an
// evicted module is refused with a clear error only once released.
func TestCacheEvictionKeepsRunningModules(t *testing.T) {
	r, err := New(context.Background(), Config{MaxCachedModules: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	a := compile(t, r, "sleep")
	lim := testLimits
	lim.Wall = 300 * time.Millisecond
	done := runHeld(r, a, lim)
	compile(t, r, "minimal") // evicts a while it runs
	if res := <-done; res.Outcome != Terminated(ReasonWall) {
		t.Fatalf("running task of an evicted module: %s (%s)", res.Outcome, res.Error)
	}
	res := r.Run(context.Background(), &Task{Module: a, Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim})
	if res.Outcome != OutcomeError || !strings.Contains(res.Error, "left the node's cache") {
		t.Fatalf("run of a released evicted module: %s (%s)", res.Outcome, res.Error)
	}
}

// TestCompileRace: concurrent first compiles of the same bytes all get a
// module that runs.
func TestCompileRace(t *testing.T) {
	r := newRuntime(t)
	code := guest(t, "minimal")
	mods := make(chan *Module, 8)
	for i := 0; i < 8; i++ {
		go func() {
			m, err := r.Compile(context.Background(), KindWASI, code)
			if err != nil {
				t.Error(err)
			}
			mods <- m
		}()
	}
	for i := 0; i < 8; i++ {
		m := <-mods
		if res := r.Run(context.Background(), &Task{Module: m, Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: testLimits}); res.Outcome != OutcomeOK {
			t.Fatalf("run %d: %s (%s)", i, res.Outcome, res.Error)
		}
	}
}

// TestCacheBoundInBytes: the module cache evicts the least recently used
// modules once their bytes pass MaxCachedBytes, keeping the newest.
func TestCacheBoundInBytes(t *testing.T) {
	ctx := context.Background()
	a, b := guest(t, "sleep"), guest(t, "minimal")
	r, err := New(ctx, Config{MaxCachedBytes: int64(len(a) + len(b) - 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	ma := compile(t, r, "sleep")
	mb := compile(t, r, "minimal")
	if _, ok := r.Cached(ma.Digest); ok {
		t.Error("the older module is still cached past the byte bound")
	}
	if _, ok := r.Cached(mb.Digest); !ok {
		t.Error("the newest module was evicted")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bytes != int64(len(b)) {
		t.Errorf("cache counts %d bytes, want %d", r.bytes, len(b))
	}
}

// TestForgetDropsCompiledCode: a module forgotten (deleted from the node)
// leaves the cache and its bytes leave the count; compiling it again
// works.
func TestForgetDropsCompiledCode(t *testing.T) {
	ctx := context.Background()
	r, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	m := compile(t, r, "minimal")
	r.Forget(m.Digest)
	if _, ok := r.Cached(m.Digest); ok {
		t.Fatal("a forgotten module is still cached")
	}
	r.mu.Lock()
	held := r.bytes
	r.mu.Unlock()
	if held != 0 {
		t.Fatalf("the cache still counts %d bytes", held)
	}
	if m2 := compile(t, r, "minimal"); m2.Digest != m.Digest {
		t.Fatal("compiled again to another digest")
	}
	if res := r.Run(ctx, &Task{ID: "t", Module: compile(t, r, "minimal"), Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: testLimits}); res.Outcome != OutcomeOK {
		t.Fatalf("run after forget: %s (%s)", res.Outcome, res.Error)
	}
}

// TestRecompileWhileEvictedRuns: a module evicted while a task runs it and
// compiled again meanwhile is the same module taken back, not a second
// compile of the same bytes (wazero shares their code, so the first one's
// release would free what the second's tasks run); tasks of both run, and
// the module stays usable after the first task ends.
func TestRecompileWhileEvictedRuns(t *testing.T) {
	r, err := New(context.Background(), Config{MaxCachedModules: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	a := compile(t, r, "sleep")
	lim := testLimits
	lim.Wall = 300 * time.Millisecond
	done := runHeld(r, a, lim)
	compile(t, r, "minimal") // evicts a while it runs
	again := compile(t, r, "sleep")
	if again != a {
		t.Fatal("compiling an evicted, running module's bytes compiled them anew")
	}
	if res := <-done; res.Outcome != Terminated(ReasonWall) {
		t.Fatalf("first task: %s (%s)", res.Outcome, res.Error)
	}
	if res := r.Run(context.Background(), &Task{Module: again, Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim}); res.Outcome != Terminated(ReasonWall) {
		t.Fatalf("a task after the first one ended: %s (%s)", res.Outcome, res.Error)
	}
}

// runHeld starts a task of m and returns once the run holds m; the
// task's result arrives on the channel.
func runHeld(r *Runtime, m *Module, lim Limits) <-chan *Result {
	done := make(chan *Result, 1)
	go func() {
		done <- r.Run(context.Background(), &Task{Module: m, Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: lim})
	}()
	for {
		r.mu.Lock()
		refs := m.refs
		r.mu.Unlock()
		if refs == 1 {
			return done
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDiskCacheBounded: the on-disk compilation cache is trimmed to its
// bound, oldest first, and modules whose code was trimmed still run (their
// code is in memory, or is compiled again).
func TestDiskCacheBounded(t *testing.T) {
	dir := t.TempDir()
	size := func() (total int64) {
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if info, err := d.Info(); err == nil {
					total += info.Size()
				}
			}
			return nil
		})
		return total
	}
	r, err := New(context.Background(), Config{CacheDir: dir, MaxDiskCacheBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	var mods []*Module
	for _, g := range []string{"minimal", "echo", "fail"} {
		mods = append(mods, compile(t, r, g))
	}
	if size() == 0 {
		t.Skip("wazero wrote no compiled code to the cache dir")
	}
	r.trimDiskCache()
	if got := size(); got > 1 {
		t.Fatalf("cache dir holds %d bytes after a trim to 1", got)
	}
	if res := r.Run(context.Background(), &Task{Module: mods[0], Request: Request{Method: "GET", URL: "http://x.example/"}, Limits: testLimits}); res.Outcome != OutcomeOK {
		t.Fatalf("a module whose cached code was trimmed: %s (%s)", res.Outcome, res.Error)
	}
}
