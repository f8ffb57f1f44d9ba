package sandbox

// The JS engine: QuickJS compiled to wasm32-wasi (engine/, built by `make
// engine`), run in its own wazero runtime. Every task gets a fresh instance
// started from a snapshot taken once when the engine loads (jssnapshot.go,
// jsmemory*.go); the host drives the instance's event loop (dispatch, run
// jobs and timers, deliver subrequest results) and QuickJS's interrupt
// handler asks the host, through leash.interrupt, whether the task may go
// on. docs/javascript.md describes the ABI and the behaviour.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/leash-dev/leash/weburl"
)

const (
	// jsABIVersion is what the engine's leash_abi export must return.
	jsABIVersion = 1
	// jsStackBytes is the shadow stack the engine is linked with
	// (engine/build.sh); QuickJS's own stack check stops recursion well
	// before it, with a RangeError.
	jsStackBytes    = 1 << 20
	jsMaxStackBytes = jsStackBytes - 160<<10
	// jsDefaultMemory bounds an instance when the task sets no limit.
	jsDefaultMemory = 128 << 20
	// jsDefaultOutput bounds a response when the task sets no limit.
	jsDefaultOutput = 64 << 20
	// jsPrepareTimeout bounds compiling a module for the cache.
	jsPrepareTimeout = 10 * time.Second
	// jsMaxFetchBody bounds one subrequest's body handed to the host.
	jsMaxFetchBody = 32 << 20
	// jsMaxResponseHeaders and jsMaxResponseHeaderBytes bound a
	// response's headers (count, and names plus values); past either the
	// task ends terminated:output.
	jsMaxResponseHeaders     = 1000
	jsMaxResponseHeaderBytes = 64 << 10
	// jsMaxErrorBytes bounds the error text shown to the client and kept
	// in the task record; jsMaxLogLine bounds one console line.
	jsMaxErrorBytes = 16 << 10
	jsMaxLogLine    = 16 << 10
)

// truncateText cuts s to at most n bytes (on a UTF-8 boundary) and says
// how much was cut.
func truncateText(s string, n int) string { return cutText(s, len(s), n) }

// cutText is truncateText of a text of total bytes of which s is the
// start (at least min(total, n) bytes of it).
func cutText(s string, total, n int) string {
	if total <= n && len(s) == total {
		return s
	}
	cut := min(n, len(s))
	for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD") + fmt.Sprintf("… [leash: truncated %d bytes]", total-cut)
}

// Error codes the engine reports with OutcomeError; Result.Error starts
// with the code and a colon.
const (
	JSCodeInvalidWorker     = "invalid_worker"     // no default export with a fetch handler
	JSCodeScriptError       = "script_error"       // the module failed to compile or evaluate
	JSCodeUncaughtException = "uncaught_exception" // the fetch handler threw or rejected
	JSCodeNoResponse        = "no_response"        // the handler never produced a response
)

// jsCompilationCache is shared by every JS engine of the process, so a
// second engine (tests, benchmarks) does not compile QuickJS again.
var jsCompilationCache = wazero.NewCompilationCache()

// jsEngine runs Workers modules. It is safe for concurrent use.
type jsEngine struct {
	log    *slog.Logger
	rt     wazero.Runtime
	module wazero.CompiledModule // the snapshot module
	image  jsImage
	modCfg wazero.ModuleConfig
	cache  wazero.CompilationCache // this engine's own (on disk), if any
	// snapshotTime is how long taking the snapshot took.
	snapshotTime time.Duration
}

// jsPrepared is what prepare caches on a Module: the worker's bytecode.
type jsPrepared struct {
	bytecode []byte
}

func newJSEngine(ctx context.Context, path string, logger *slog.Logger) (*jsEngine, error) {
	code, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing; run `make engine`", ErrJSEngineUnavailable, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrJSEngineUnavailable, path, err)
	}
	return newJSEngineImage(ctx, code, logger, newDefaultImage, filepath.Dir(path))
}

// PrepareJSEngine loads the engine at path once, so that its snapshot and
// compiled code are cached beside it (`make engine` runs it through
// engine/warm): a node, or a test binary built with -race, then starts
// the engine in milliseconds.
func PrepareJSEngine(ctx context.Context, path string) error {
	e, err := newJSEngine(ctx, path, nil)
	if err != nil {
		return err
	}
	return e.Close(ctx)
}

// jsSnapshotFormat versions the cached snapshot files; change it when
// takeJSSnapshot changes what it produces.
const jsSnapshotFormat = "4"

// jsStopMode is how a task's end reaches code that never polls the
// interrupt handler. Only jsStopFuel is used outside benchmarks, which
// compare the three in one run.
type jsStopMode int

const (
	jsStopFuel        jsStopMode = iota // the fuel counter (jsstop.go)
	jsStopInterrupt                     // QuickJS's interrupt handler alone (bytecode only)
	jsStopCloseOnDone                   // wazero's WithCloseOnContextDone
)

// newJSEngineImage builds an engine whose instances get the snapshot
// memory from newImage (copy or copy-on-write). With a cacheDir, the
// snapshot and wazero's compiled code are kept there (best effort).
func newJSEngineImage(ctx context.Context, code []byte, logger *slog.Logger, newImage func([]byte) (jsImage, error), cacheDir string) (*jsEngine, error) {
	return newJSEngineMode(ctx, code, logger, newImage, cacheDir, jsStopFuel)
}

func newJSEngineMode(ctx context.Context, code []byte, logger *slog.Logger, newImage func([]byte) (jsImage, error), cacheDir string, mode jsStopMode) (*jsEngine, error) {
	if mode != jsStopFuel {
		cacheDir = "" // the caches hold the default mode's snapshot
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "js")
	start := time.Now()
	snap, mem, err := cachedJSSnapshot(ctx, code, cacheDir, logger, mode == jsStopFuel)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrJSEngineUnavailable, err)
	}
	img, err := newImage(mem)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot image: %v", ErrJSEngineUnavailable, err)
	}
	cache := jsCompilationCache
	if cacheDir != "" {
		if c, err := wazero.NewCompilationCacheWithDir(filepath.Join(cacheDir, "wazero-cache")); err == nil {
			cache = c
		}
	}
	// No WithCloseOnContextDone: it calls a Go trampoline at every loop
	// head, which costs the interpreter's hot loop several times more
	// than the fuel counter (jsstop.go).
	rc := wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache)
	if mode == jsStopCloseOnDone {
		rc = rc.WithCloseOnContextDone(true)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	fail := func(err error) (*jsEngine, error) {
		_ = rt.Close(ctx)
		_ = img.close()
		return nil, fmt.Errorf("%w: %v", ErrJSEngineUnavailable, err)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(err)
	}
	if err := instantiateJSHost(ctx, rt); err != nil {
		return fail(err)
	}
	cm, err := rt.CompileModule(ctx, snap)
	if err != nil {
		return fail(fmt.Errorf("compile snapshot: %w", err))
	}
	e := &jsEngine{
		log:    logger,
		rt:     rt,
		module: cm,
		image:  img,
		modCfg: wazero.NewModuleConfig().
			WithName("").
			WithStartFunctions(). // the snapshot is initialised already
			WithRandSource(rand.Reader).
			WithSysWalltime().
			WithSysNanotime(),
		snapshotTime: time.Since(start),
	}
	if cache != jsCompilationCache {
		e.cache = cache
	}
	e.log.Debug("js engine ready", "snapshot_bytes", img.size(), "took", e.snapshotTime)
	return e, nil
}

// cachedJSSnapshot returns the snapshot of code from cacheDir, or takes
// it and tries to keep it there. Files are named by the engine's SHA-256,
// so a rebuilt engine never meets a stale snapshot.
func cachedJSSnapshot(ctx context.Context, code []byte, cacheDir string, logger *slog.Logger, stopChecks bool) (snap, mem []byte, err error) {
	if cacheDir == "" {
		return takeJSSnapshot(ctx, code, stopChecks)
	}
	sum := sha256.Sum256(code)
	base := filepath.Join(cacheDir, "snapshot", hex.EncodeToString(sum[:16])+"-"+jsSnapshotFormat)
	snap, err1 := os.ReadFile(base + ".wasm")
	mem, err2 := os.ReadFile(base + ".mem")
	if err1 == nil && err2 == nil {
		if _, err := parseWasm(snap); err == nil {
			return snap, mem, nil
		}
	}
	snap, mem, err = takeJSSnapshot(ctx, code, stopChecks)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFilesAtomic(map[string][]byte{base + ".wasm": snap, base + ".mem": mem}); err != nil {
		logger.Debug("js snapshot not cached", "err", err)
	}
	return snap, mem, nil
}

func writeFilesAtomic(files map[string][]byte) error {
	for path, b := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
		if err != nil {
			return err
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			_ = os.Remove(f.Name())
			return err
		}
	}
	return nil
}

func (e *jsEngine) Close(ctx context.Context) error {
	errs := []error{e.rt.Close(ctx), e.image.close()}
	if e.cache != nil {
		errs = append(errs, e.cache.Close(ctx))
	}
	return errors.Join(errs...)
}

// takeJSSnapshot runs the engine's initialisation once, in wazero's
// interpreter (it runs once; compiling QuickJS twice would cost more), and
// returns the snapshot module and its memory image; stopChecks puts the
// fuel checks in its code.
func takeJSSnapshot(ctx context.Context, code []byte, stopChecks bool) (snap, mem []byte, err error) {
	wm, err := parseWasm(code)
	if err != nil {
		return nil, nil, err
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer func() { _ = r.Close(ctx) }()
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		return nil, nil, err
	}
	if err := instantiateJSHost(ctx, r); err != nil {
		return nil, nil, err
	}
	cm, err := r.CompileModule(ctx, wm.withGlobalExports())
	if err != nil {
		return nil, nil, fmt.Errorf("compile engine: %w", err)
	}
	for _, name := range []string{"_initialize", "leash_abi", "leash_init", "leash_begin", "leash_alloc", "leash_free", "leash_load", "leash_dispatch", "leash_deliver", "leash_poll"} {
		if _, ok := cm.ExportedFunctions()[name]; !ok {
			return nil, nil, fmt.Errorf("engine exports no %s: rebuild it with `make engine`", name)
		}
	}
	st := &jsTask{logs: newLogSink(64 << 10)}
	ictx := context.WithValue(ctx, jsTaskKey{}, st)
	mod, err := r.InstantiateModule(ictx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
	if err != nil {
		return nil, nil, fmt.Errorf("initialise engine: %w", err)
	}
	defer func() { _ = mod.Close(ctx) }()
	v, err := mod.ExportedFunction("leash_abi").Call(ictx)
	if err != nil {
		return nil, nil, err
	}
	if v[0] != jsABIVersion {
		return nil, nil, fmt.Errorf("engine ABI %d, want %d: rebuild it with `make engine`", v[0], jsABIVersion)
	}
	v, err = mod.ExportedFunction("leash_init").Call(ictx)
	if err != nil {
		return nil, nil, fmt.Errorf("leash_init: %w", err)
	}
	if v[0] != 0 {
		return nil, nil, fmt.Errorf("leash_init failed (%d, oom %v): %s %s", v[0], st.oom, st.errCode, st.errMsg)
	}
	size := mod.Memory().Size()
	b, _ := mod.Memory().Read(0, size)
	mem = append([]byte(nil), b...)
	values := make([]uint64, len(wm.globals))
	for i := range wm.globals {
		g := mod.ExportedGlobal(fmt.Sprintf("__leash_global_%d", i))
		if g == nil {
			return nil, nil, fmt.Errorf("global %d not exported", i)
		}
		values[i] = g.Get()
	}
	snap, err = wm.snapshotModule(size/65536, values, stopChecks)
	if err != nil {
		return nil, nil, err
	}
	return snap, mem, nil
}

// jsInstance is one task's engine instance and its exports.
type jsInstance struct {
	mod                          api.Module
	begin, load, dispatch, alloc api.Function
	// looked up when first needed: a task without timers or
	// subrequests never calls them
	deliverFn, pollFn api.Function
}

func (e *jsEngine) instantiate(ctx context.Context) (*jsInstance, error) {
	mod, err := e.rt.InstantiateModule(ctx, e.module, e.modCfg)
	if err != nil {
		return nil, err
	}
	in := &jsInstance{
		mod:      mod,
		begin:    mod.ExportedFunction("leash_begin"),
		load:     mod.ExportedFunction("leash_load"),
		dispatch: mod.ExportedFunction("leash_dispatch"),
		alloc:    mod.ExportedFunction("leash_alloc"),
	}
	return in, nil
}

// close closes the instance; its memory goes back to the pool.
func (in *jsInstance) close(ctx context.Context) { _ = in.mod.Close(ctx) }

// put copies b into a fresh guest buffer and returns its address (0 for
// an empty b).
func (in *jsInstance) put(ctx context.Context, b []byte) (uint32, error) {
	if len(b) == 0 {
		return 0, nil
	}
	v, err := in.alloc.Call(ctx, uint64(len(b)))
	if err != nil {
		return 0, err
	}
	p := uint32(v[0])
	if p == 0 || !in.mod.Memory().Write(p, b) {
		return 0, errJSOutOfMemory
	}
	return p, nil
}

// The buffers put hands the guest are not freed: the instance lives for
// one task and its memory goes away with it.

func (in *jsInstance) poll() api.Function {
	if in.pollFn == nil {
		in.pollFn = in.mod.ExportedFunction("leash_poll")
	}
	return in.pollFn
}

func (in *jsInstance) deliver() api.Function {
	if in.deliverFn == nil {
		in.deliverFn = in.mod.ExportedFunction("leash_deliver")
	}
	return in.deliverFn
}

var errJSOutOfMemory = errors.New("out of memory")

// Flags of leash_load.
const (
	jsLoadBytecode    = 1
	jsLoadEmit        = 2
	jsLoadCompileOnly = 4
)

// prepare compiles a Workers module without running any of it and caches
// its bytecode on m; a syntax error is ErrInvalidModule.
func (e *jsEngine) prepare(ctx context.Context, m *Module, source []byte) error {
	m.source = source
	ctx, cancel := context.WithTimeout(ctx, jsPrepareTimeout)
	defer cancel()
	st := &jsTask{ctx: ctx, logs: newLogSink(4 << 10), t: &Task{}}
	alloc := e.image.allocator(jsDefaultMemory)
	cctx := experimental.WithMemoryAllocator(context.WithValue(ctx, jsTaskKey{}, st), alloc)
	in, err := e.instantiate(cctx)
	if err != nil {
		return fmt.Errorf("js engine: %w", err)
	}
	defer in.close(context.WithoutCancel(ctx))
	if _, err := in.begin.Call(cctx, 1, jsDefaultMemory-jsStackBytes, jsMaxStackBytes); err != nil {
		return fmt.Errorf("js engine: %w", err)
	}
	p, err := in.put(cctx, source)
	if err != nil {
		return fmt.Errorf("js engine: %w", err)
	}
	v, err := in.load.Call(cctx, uint64(p), uint64(len(source)), jsLoadEmit|jsLoadCompileOnly)
	if err != nil {
		return fmt.Errorf("js engine: %s", trapMessage(err))
	}
	if v[0] != 0 || st.oom {
		msg := st.errMsg
		if st.oom {
			msg = "the module is too large to compile"
		}
		return fmt.Errorf("%w: %s", ErrInvalidModule, msg)
	}
	m.compiled = &jsPrepared{bytecode: st.bytecode}
	return nil
}

// jsRequestMeta is the request as the prelude's dispatch reads it.
type jsRequestMeta struct {
	Method  string                     `json:"method"`
	URL     string                     `json:"url"`
	Headers [][2]string                `json:"headers"`
	Env     map[string]json.RawMessage `json:"env"`
	// leash's own values: ctx.leash in the worker, never env
	Attempt        int    `json:"attempt"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// OutputLimit bounds a streamed response body as the prelude reads it
	OutputLimit int64 `json:"output_limit"`
	// KVBinding is the env name of the session KV (jskv.go), "" for none
	KVBinding string `json:"kv_binding,omitempty"`
}

func (e *jsEngine) run(parent context.Context, t *Task) *Result {
	start := time.Now()
	res := &Result{Start: start}
	if t.Module == nil {
		return errorResult(start, "no module")
	}
	lim := t.Limits
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	if lim.Wall > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, lim.Wall, Terminate(ReasonWall))
		defer stop()
	}
	memLimit := uint64(lim.MemoryBytes)
	if lim.MemoryBytes <= 0 {
		memLimit = jsDefaultMemory
	}
	outLimit := lim.OutputBytes
	if outLimit <= 0 {
		outLimit = jsDefaultOutput
	}
	// log_bytes means what it means for WASI guests: 0 keeps no log
	// bytes.
	logLimit := max(lim.LogBytes, 0)
	st := &jsTask{
		t:        t,
		ctx:      ctx,
		cancel:   cancel,
		logs:     newLogSink(logLimit),
		outLimit: outLimit,
		done:     make(chan jsFetchDone),
		finished: make(chan struct{}),
	}
	defer close(st.finished)

	if e.image.size() > memLimit {
		res.Outcome = Terminated(ReasonMemory)
		res.Error = fmt.Sprintf("the JS engine needs %d bytes of memory at start; the limit is %d", e.image.size(), memLimit)
		res.Response.Status = 500
		res.End = time.Now()
		res.Usage.Wall = res.End.Sub(start)
		res.Usage.finish()
		return res
	}
	alloc := e.image.allocator(memLimit)
	m := startMeter(lim.CPU, cancel)
	st.meter = m
	cctx := experimental.WithMemoryAllocator(context.WithValue(ctx, jsTaskKey{}, st), alloc)
	var runErr error
	func() {
		defer func() {
			if p := recover(); p != nil {
				runErr = fmt.Errorf("sandbox panic: %v", p)
			}
		}()
		runErr = e.exec(cctx, st, t, memLimit)
	}()
	cpu := m.stop()
	res.End = time.Now()

	res.Usage = st.usage
	res.Usage.CPU = cpu
	res.Usage.Wall = res.End.Sub(start)
	res.Usage.MemoryPeakBytes = int64(alloc.peak())
	if st.responded {
		res.Usage.OutputBytes = int64(len(st.resp.Body))
	}
	res.Logs, res.Usage.LogBytes = st.logs.lines()
	res.Usage.finish()

	reason := ReasonOf(ctx)
	oom := st.oom || (alloc.refused() && runErr != nil)
	switch {
	case st.responded && !oom && runErr == nil && (reason == "" || st.waitUntil):
		res.Outcome = OutcomeOK
		res.Response = st.resp
		if reason != "" {
			// The response was ready; only ctx.waitUntil work was cut.
			res.Logs = append(res.Logs, LogLine{Level: "warn", Time: res.End,
				Message: "ctx.waitUntil() tasks did not finish: terminated:" + reason})
		}
	case oom:
		res.Outcome = Terminated(ReasonMemory)
		res.Error = fmt.Sprintf("the worker ran out of memory (limit %d bytes)", memLimit)
	case reason != "":
		res.Outcome = Terminated(reason)
	case st.errCode != "":
		res.Outcome = OutcomeError
		res.Error = truncateText(st.errCode+": "+st.errMsg, jsMaxErrorBytes)
	case runErr != nil:
		res.Outcome = OutcomeError
		res.Error = jsTrapMessage(runErr)
	default:
		res.Outcome = OutcomeError
		res.Error = JSCodeNoResponse + ": the worker did not produce a response"
	}
	if res.Outcome != OutcomeOK {
		res.Response = Response{Status: 500}
	}
	return res
}

// jsTrapMessage explains a trap of the engine itself; deep recursion in
// native code is the likely one.
func jsTrapMessage(err error) string {
	msg := trapMessage(err)
	if strings.Contains(msg, "stack overflow") || strings.Contains(msg, "call stack exhausted") {
		return "RangeError: Maximum call stack size exceeded (" + msg + ")"
	}
	return "the JS engine trapped: " + msg
}

// exec runs one task in a fresh instance: load the worker, dispatch the
// request, then run the event loop until the response is ready and the
// ctx.waitUntil promises settled, or a limit ends it.
func (e *jsEngine) exec(ctx context.Context, st *jsTask, t *Task, memLimit uint64) error {
	t0 := time.Now()
	in, err := e.instantiate(ctx)
	st.usage.Startup = time.Since(t0)
	if err != nil {
		return err
	}
	defer in.close(context.WithoutCancel(ctx))
	err = e.execIn(ctx, st, t, memLimit, in)
	if err != nil && st.stopped() {
		// The fuel check trapped because leash.interrupt said stop
		// (jsstop.go): the limit, cause or failure says why.
		return nil
	}
	return err
}

func (e *jsEngine) execIn(ctx context.Context, st *jsTask, t *Task, memLimit uint64, in *jsInstance) error {

	var seed [8]byte
	_, _ = rand.Read(seed[:])
	qjsLimit := memLimit - min(memLimit/2, jsStackBytes)
	if _, err := in.begin.Call(ctx, binary.LittleEndian.Uint64(seed[:]), min(qjsLimit, 1<<32-1), jsMaxStackBytes); err != nil {
		return err
	}

	code, flags := t.Module.source, uint64(0)
	if p, ok := t.Module.compiled.(*jsPrepared); ok && len(p.bytecode) > 0 {
		code, flags = p.bytecode, jsLoadBytecode
	}
	p, err := in.put(ctx, code)
	if err != nil {
		return err
	}
	v, err := in.load.Call(ctx, uint64(p), uint64(len(code)), flags)
	if err != nil {
		return err
	}
	if v[0] != 0 || st.stopped() {
		return nil
	}

	// The prelude trusts this URL as request.url: parse it here, with the
	// parser the URL class uses.
	u, err := weburl.Parse(t.Request.URL, "")
	if err != nil {
		st.errCode, st.errMsg = JSCodeUncaughtException, fmt.Sprintf("TypeError: invalid request URL %q: %v", t.Request.URL, err)
		return nil
	}
	// env holds exactly the client's variables, as workerd's vars; the
	// attempt number and idempotency key (bulk delivery is at least once)
	// are ctx.leash.attempt and ctx.leash.idempotencyKey.
	meta := jsRequestMeta{Method: t.Request.Method, URL: u.Href, Headers: headerPairs(t.Request.Headers), Env: make(map[string]json.RawMessage, len(t.Env)),
		Attempt: max(t.Attempt, 1), IdempotencyKey: t.IdempotencyKey, OutputLimit: st.outLimit, KVBinding: jsKVBinding(t)}
	if meta.Method == "" {
		meta.Method = http.MethodGet
	}
	for k, v := range t.Env {
		// A string var is a string; a JSON var is its value, parsed by
		// the prelude with the rest of the request.
		if t.EnvJSON[k] && json.Valid([]byte(v)) {
			meta.Env[k] = json.RawMessage(v)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		meta.Env[k] = b
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	mp, err := in.put(ctx, mb)
	if err != nil {
		return err
	}
	bp, err := in.put(ctx, t.Request.Body)
	if err != nil {
		return err
	}
	v, err = in.dispatch.Call(ctx, uint64(mp), uint64(len(mb)), uint64(bp), uint64(len(t.Request.Body)))
	if err != nil {
		return err
	}
	return e.loop(ctx, st, in, int64(v[0]))
}

// loop runs the event loop from state r (what leash_poll, leash_dispatch
// and leash_deliver return): wait for the next timer or subrequest,
// deliver, repeat, until the response is ready and no ctx.waitUntil
// promise is pending, or the task must stop.
func (e *jsEngine) loop(ctx context.Context, st *jsTask, in *jsInstance, r int64) error {
	poll := func() (int64, error) {
		v, err := in.poll().Call(ctx)
		if err != nil {
			return -1, err
		}
		return int64(v[0]), nil
	}
	for {
		if r < 0 || st.stopped() {
			return nil
		}
		waits, next := uint32(r>>32), uint32(r)
		if st.responded && waits > 0 {
			// What still runs is ctx.waitUntil work: a limit that cuts
			// it leaves the response standing.
			st.waitUntil = true
		}
		if st.responded && waits == 0 {
			// Subrequests still in flight are abandoned, as workerd
			// cancels them when the response is sent.
			return nil
		}
		var err error
		if next == 0 { // a timer is due
			if r, err = poll(); err != nil {
				return err
			}
			continue
		}
		var timer <-chan time.Time
		var tm *time.Timer
		if next != 0xffffffff {
			tm = time.NewTimer(time.Duration(next) * time.Millisecond)
			timer = tm.C
		}
		if timer == nil && st.inflight == 0 {
			if st.responded {
				return nil // waitUntil promises that can never settle
			}
			// Nothing can ever settle the handler's promise: it ends
			// at the wall limit (or when the node cancels the task).
			<-st.ctx.Done()
			return nil
		}
		var got *jsFetchDone
		select {
		case d := <-st.done:
			got = &d
		case <-timer:
		case <-st.ctx.Done():
		}
		if tm != nil {
			tm.Stop()
		}
		switch {
		case st.ctx.Err() != nil:
			return nil
		case got != nil:
			st.inflight--
			r, err = e.deliver(ctx, st, in, *got)
		default:
			r, err = poll()
		}
		if err != nil {
			return err
		}
	}
}

// jsResponseMeta is a subrequest's answer as the prelude's deliver reads it.
type jsResponseMeta struct {
	Status     int         `json:"status,omitempty"`
	StatusText string      `json:"statusText,omitempty"`
	Headers    [][2]string `json:"headers,omitempty"`
	URL        string      `json:"url,omitempty"`
	Redirected bool        `json:"redirected,omitempty"`
	Message    string      `json:"message,omitempty"`
}

// deliver settles subrequest d in the guest and returns the loop's state.
func (e *jsEngine) deliver(ctx context.Context, st *jsTask, in *jsInstance, d jsFetchDone) (int64, error) {
	var meta jsResponseMeta
	var body []byte
	ok := uint64(0)
	if d.err != nil {
		meta.Message = d.err.Error()
		var fe *FetchError
		if errors.As(d.err, &fe) && fe.Clause == SubrequestClause {
			st.cancel(Terminate(ReasonSubrequests))
		}
	} else {
		ok = 1
		r := d.resp
		meta = jsResponseMeta{Status: r.Status, StatusText: http.StatusText(r.Status), Headers: headerPairs(r.Headers), URL: r.URL}
		if meta.URL == "" {
			meta.URL = d.url
		}
		meta.Redirected = meta.URL != d.url
		body = r.Body
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return -1, err
	}
	mp, err := in.put(ctx, mb)
	if err != nil {
		return -1, err
	}
	bp, err := in.put(ctx, body)
	if err != nil {
		return -1, err
	}
	v, err := in.deliver().Call(ctx, uint64(d.id), ok, uint64(mp), uint64(len(mb)), uint64(bp), uint64(len(body)))
	if err != nil {
		return -1, err
	}
	return int64(v[0]), nil
}

// headerPairs lists headers with lower-case names, sorted, for the
// prelude's Headers.
func headerPairs(h http.Header) [][2]string {
	out := make([][2]string, 0, len(h))
	for k, vs := range h {
		lk := strings.ToLower(k)
		for _, v := range vs {
			out = append(out, [2]string{lk, v})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
