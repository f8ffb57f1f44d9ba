package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/sync/singleflight"
)

// Errors of Compile.
var (
	ErrInvalidModule       = errors.New("invalid module")
	ErrJSEngineUnavailable = errors.New("js engine unavailable")
)

// Config configures a Runtime.
type Config struct {
	// CacheDir keeps compiled machine code across restarts (wazero's
	// compilation cache). Empty: in memory only.
	CacheDir string
	// MaxDiskCacheBytes bounds CacheDir (default 1 GiB): past it the
	// oldest compiled code is deleted (a module whose code is gone is
	// compiled again when next needed).
	MaxDiskCacheBytes int64
	// EnginePath is the JS engine (engine.wasm). Empty or missing: JS
	// modules are refused with ErrJSEngineUnavailable.
	EnginePath string
	// MaxCachedModules and MaxCachedBytes bound the compiled-module cache
	// (LRU by use); the bytes are the modules' own and a JS module's
	// bytecode (default 256 MiB).
	MaxCachedModules int
	MaxCachedBytes   int64
	Logger           *slog.Logger
}

// Runtime is a node's sandbox: one wazero runtime for WASI guests, the JS
// engine, and the compiled-module cache.
type Runtime struct {
	log   *slog.Logger
	wasi  wazero.Runtime
	cache wazero.CompilationCache
	js    *jsEngine
	jsErr error

	// compiling makes concurrent compiles of the same bytes one compile:
	// wazero keeps one engine entry per module content, shared by every
	// CompiledModule of those bytes, so closing a duplicate would free
	// the code a running instance of the kept one uses.
	compiling singleflight.Group

	cacheDir  string
	maxDisk   int64
	trimming  atomic.Bool
	sinceTrim atomic.Int64

	mu sync.Mutex
	// modules is the compiled-module cache, least recently used out
	// first, bounded by count (the LRU's size) and by bytes (store).
	modules *simplelru.LRU[string, *Module]
	// evicted are modules out of the cache that runs still use: a compile
	// of the same bytes takes one back rather than compiling anew (wazero
	// would share its code, which the last run's release then frees).
	evicted  map[string]*Module
	maxBytes int64
	bytes    int64 // cached bytes, as cacheBytes counts them
}

// cacheBytes is what a cached module counts against MaxCachedBytes.
func cacheBytes(m *Module) int64 {
	n := int64(m.Size)
	if p, ok := m.compiled.(*jsPrepared); ok {
		n += int64(len(p.bytecode))
	}
	return n
}

// New starts a Runtime.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxCachedModules <= 0 {
		cfg.MaxCachedModules = 256
	}
	if cfg.MaxCachedBytes <= 0 {
		cfg.MaxCachedBytes = 256 << 20
	}
	if cfg.MaxDiskCacheBytes <= 0 {
		cfg.MaxDiskCacheBytes = 1 << 30
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache %q: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	// WASI guests are arbitrary code: the compiler inserts termination
	// checks so that a cancelled context (cpu, wall, output, shutdown,
	// revoked) stops even a tight loop.
	// Debug info off: with it, wazero keeps every custom section of a
	// module in memory (to find DWARF among them), and a guest's custom
	// sections are as large as its uploader likes — an upload flood
	// measured 264 MB of them held by the compiled-module cache.
	rc := wazero.NewRuntimeConfigCompiler().
		WithCloseOnContextDone(true).
		WithDebugInfoEnabled(false).
		WithCompilationCache(cache)
	wr := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, wr); err != nil {
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	if err := instantiateHostModule(ctx, wr); err != nil {
		return nil, err
	}
	r := &Runtime{
		log:      cfg.Logger.With("component", "sandbox"),
		wasi:     wr,
		cache:    cache,
		evicted:  map[string]*Module{},
		maxBytes: cfg.MaxCachedBytes,
		cacheDir: cfg.CacheDir,
		maxDisk:  cfg.MaxDiskCacheBytes,
	}
	r.modules, _ = simplelru.NewLRU(cfg.MaxCachedModules, r.onEvict) // size > 0: no error
	r.trimDiskCache()
	if cfg.EnginePath != "" {
		r.js, r.jsErr = newJSEngine(ctx, cfg.EnginePath, r.log)
	} else {
		r.jsErr = fmt.Errorf("%w: no engine configured; run `make engine`", ErrJSEngineUnavailable)
	}
	if r.jsErr != nil {
		r.log.Warn("javascript tasks disabled", "err", r.jsErr)
	}
	return r, nil
}

// Close releases every compiled module and the runtimes.
func (r *Runtime) Close(ctx context.Context) error {
	var errs []error
	if r.js != nil {
		errs = append(errs, r.js.Close(ctx))
	}
	errs = append(errs, r.wasi.Close(ctx), r.cache.Close(ctx))
	return errors.Join(errs...)
}

// JSError says why JS modules are refused, or nil when they run.
func (r *Runtime) JSError() error { return r.jsErr }

// Digest names module bytes: "sha256:<hex>".
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Cached returns the compiled module for digest, if it is in memory.
func (r *Runtime) Cached(digest string) (*Module, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.modules.Get(digest)
}

// Forget drops digest's compiled code from memory (a module deleted from
// this node): once the runs using it end, its code is freed.
func (r *Runtime) Forget(digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.modules.Remove(digest)
	delete(r.evicted, digest)
}

// Compile validates and compiles module bytes of the given kind, or
// returns the cached module with the same digest.
func (r *Runtime) Compile(ctx context.Context, kind Kind, code []byte) (*Module, error) {
	digest := Digest(code)
	if m, ok := r.Cached(digest); ok && m.Kind == kind {
		return m, nil
	}
	v, err, _ := r.compiling.Do(string(kind)+" "+digest, func() (any, error) {
		if m, ok := r.Cached(digest); ok && m.Kind == kind {
			return m, nil
		}
		if m := r.revive(digest, kind); m != nil {
			return m, nil
		}
		return r.compile(context.WithoutCancel(ctx), kind, digest, code)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Module), nil
}

// compile does Compile's work, once per digest at a time.
func (r *Runtime) compile(ctx context.Context, kind Kind, digest string, code []byte) (*Module, error) {
	m := &Module{Digest: digest, Kind: kind, Size: len(code)}
	switch kind {
	case KindWASI:
		cm, err := r.wasi.CompileModule(ctx, code)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
		}
		if err := checkWASIModule(cm); err != nil {
			_ = cm.Close(ctx)
			return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
		}
		m.compiled = cm
		if r.sinceTrim.Add(1)%32 == 0 {
			go r.trimDiskCache()
		}
	case KindJS:
		if r.js == nil {
			return nil, r.jsErr
		}
		if err := r.js.prepare(ctx, m, code); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalidModule, kind)
	}
	return r.store(ctx, m), nil
}

// store caches m and returns the module to use: m, or the one another
// compile of the same bytes stored first.
func (r *Runtime) store(ctx context.Context, m *Module) *Module {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.modules.Get(m.Digest); ok && old.Kind == m.Kind {
		// Another compile of the same bytes stored first (compiles are
		// one per digest at a time, so only across kinds or after an
		// eviction race): keep that one, and do not close m's code, which
		// wazero shares with it (see compiling).
		return old
	}
	r.modules.Remove(m.Digest) // the same bytes as the other kind, if cached
	r.modules.Add(m.Digest, m) // over the count: the oldest goes (onEvict)
	r.bytes += cacheBytes(m)
	for r.bytes > r.maxBytes && r.modules.Len() > 1 {
		r.modules.RemoveOldest()
	}
	return m
}

// onEvict frees a module that left the cache, or keeps it aside while
// runs still use it (r.mu is held: the LRU calls it from Add and
// Remove*).
func (r *Runtime) onEvict(digest string, m *Module) {
	r.bytes -= cacheBytes(m)
	m.evicted = true
	if m.refs == 0 {
		r.closeLocked(context.Background(), m)
	} else {
		r.evicted[digest] = m
	}
}

// revive puts back in the cache an evicted module that runs still use.
func (r *Runtime) revive(digest string, kind Kind) *Module {
	r.mu.Lock()
	m, ok := r.evicted[digest]
	if !ok || m.Kind != kind || m.closed {
		r.mu.Unlock()
		return nil
	}
	delete(r.evicted, digest)
	m.evicted = false
	r.mu.Unlock()
	return r.store(context.Background(), m)
}

// acquire marks m in use by a run; it fails only for a module evicted
// and released before the run began.
func (r *Runtime) acquire(m *Module) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.closed {
		return false
	}
	m.refs++
	return true
}

// release ends a run's use of m, freeing an evicted module's code.
func (r *Runtime) release(ctx context.Context, m *Module) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m.refs--
	if m.refs == 0 && m.evicted {
		r.closeLocked(ctx, m)
		if r.evicted[m.Digest] == m {
			delete(r.evicted, m.Digest)
		}
	}
}

func (r *Runtime) closeLocked(ctx context.Context, m *Module) {
	if cm, ok := m.compiled.(wazero.CompiledModule); ok && !m.closed {
		_ = cm.Close(ctx)
	}
	m.closed = true
}

// checkWASIModule refuses modules that could never run here: no _start,
// or imports other than WASI and the leash host module.
func checkWASIModule(cm wazero.CompiledModule) error {
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		return errors.New("module exports no _start function (build it as a WASI command)")
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
		case HostModule:
			if !hostFunctionNames[name] {
				return fmt.Errorf("module imports unknown host function %s.%s", mod, name)
			}
		default:
			return fmt.Errorf("module imports %s.%s; only %s and %s are provided", mod, name, wasi_snapshot_preview1.ModuleName, HostModule)
		}
	}
	if len(cm.ImportedMemories()) > 0 {
		return errors.New("module imports a memory; it must define its own")
	}
	return nil
}

// Run executes one task in a fresh instance and always returns a Result.
// Cancelling ctx with Terminate(reason) as the cause ends the task with
// that reason.
func (r *Runtime) Run(ctx context.Context, t *Task) *Result {
	if t.Module != nil && t.Module.Kind == KindJS {
		if r.js == nil {
			return errorResult(time.Now(), r.jsErr.Error())
		}
		return r.js.run(ctx, t)
	}
	return r.runWASI(ctx, t)
}

func errorResult(start time.Time, msg string) *Result {
	return &Result{Outcome: OutcomeError, Error: msg, Start: start, End: time.Now(), Response: Response{Status: 500}}
}

// taskState is what host functions reach through the call's context.
type taskState struct {
	task   *Task
	meter  *meter
	logs   *logSink
	cancel context.CancelCauseFunc

	fetchOnce sync.Once
	fetch     *fetchState
	blocked   int64 // fetches the policy refused (host calls run on the guest's goroutine)
}

type taskStateKey struct{}

func stateFrom(ctx context.Context) *taskState {
	s, _ := ctx.Value(taskStateKey{}).(*taskState)
	return s
}

func (r *Runtime) runWASI(parent context.Context, t *Task) *Result {
	start := time.Now()
	res := &Result{Start: start}
	if t.Module == nil {
		return errorResult(start, "no module")
	}
	if !r.acquire(t.Module) {
		return errorResult(start, "the module left the node's cache before the task started; submit it again")
	}
	defer r.release(context.WithoutCancel(parent), t.Module)
	cm, ok := t.Module.compiled.(wazero.CompiledModule)
	if !ok {
		return errorResult(start, "no compiled module")
	}
	lim := t.Limits

	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	if lim.Wall > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, lim.Wall, Terminate(ReasonWall))
		defer stop()
	}

	mem := &memoryLimiter{limit: uint64(lim.MemoryBytes)}
	if lim.MemoryBytes <= 0 {
		mem.limit = 4 << 30
	}
	for _, md := range cm.ExportedMemories() {
		if uint64(md.Min())*65536 > mem.limit {
			res.Outcome = Terminated(ReasonMemory)
			res.Response.Status = 500
			res.Error = fmt.Sprintf("module needs %d bytes of memory at start; the limit is %d", uint64(md.Min())*65536, mem.limit)
			res.End = time.Now()
			res.Usage.Wall = res.End.Sub(start)
			res.Usage.finish()
			return res
		}
	}
	stdout := &cappedWriter{limit: lim.OutputBytes, over: func() { cancel(Terminate(ReasonOutput)) }}
	if lim.OutputBytes <= 0 {
		stdout.limit = 64 << 20
	}
	logs := newLogSink(lim.LogBytes)
	stderr := &stderrWriter{sink: logs}

	env, err := wagiEnv(&t.Request, t)
	if err != nil {
		return errorResult(start, err.Error())
	}
	mc := wazero.NewModuleConfig().
		WithName("").
		WithArgs("guest").
		WithStdin(bytes.NewReader(t.Request.Body)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(func(ns int64) { sleepCtx(ctx, time.Duration(ns)) }).
		WithStartFunctions() // _start is called below, so start-up is measured apart
	for _, kv := range env {
		mc = mc.WithEnv(kv[0], kv[1])
	}

	m := startMeter(lim.CPU, cancel)
	st := &taskState{task: t, meter: m, logs: logs, cancel: cancel}
	runCtx := context.WithValue(ctx, taskStateKey{}, st)
	runCtx = experimental.WithMemoryAllocator(runCtx, mem)

	var runErr error
	var startup time.Duration
	func() {
		defer func() {
			if p := recover(); p != nil {
				runErr = fmt.Errorf("sandbox panic: %v", p)
			}
		}()
		t0 := time.Now()
		inst, err := r.wasi.InstantiateModule(runCtx, cm, mc)
		startup = time.Since(t0)
		if err != nil {
			runErr = err
			return
		}
		defer func() { _ = inst.Close(context.WithoutCancel(ctx)) }()
		_, runErr = inst.ExportedFunction("_start").Call(runCtx)
	}()
	cpu := m.stop()
	stderr.flush()
	res.End = time.Now()

	res.Usage.CPU = cpu
	res.Usage.Startup = startup
	res.Usage.Wall = res.End.Sub(start)
	res.Usage.MemoryPeakBytes = int64(mem.peak.Load())
	res.Usage.OutputBytes = stdout.n
	res.Usage.Blocked = st.blocked
	res.Logs, res.Usage.LogBytes = logs.lines()
	res.Usage.finish()

	// Decide the outcome: a limit or a termination cause wins over what
	// the guest saw as a consequence of it.
	reason := ReasonOf(ctx)
	switch {
	case reason != "" && (runErr != nil || stdout.hit || ctx.Err() != nil):
		res.Outcome = Terminated(reason)
	case mem.refused.Load() && runErr != nil:
		res.Outcome = Terminated(ReasonMemory)
	case runErr != nil:
		var exit *sys.ExitError
		if errors.As(runErr, &exit) {
			if exit.ExitCode() == 0 {
				break
			}
			res.Outcome = OutcomeError
			res.Error = fmt.Sprintf("guest exited with code %d", exit.ExitCode())
			if tail := logs.tail(); tail != "" {
				res.Error += ": " + tail
			}
		} else {
			res.Outcome = OutcomeError
			res.Error = trapMessage(runErr)
		}
	}
	if res.Outcome == "" {
		res.Outcome = OutcomeOK
		resp, err := parseCGI(stdout.buf)
		if err != nil {
			res.Outcome = OutcomeError
			res.Error = err.Error()
		} else {
			res.Response = *resp
		}
	}
	if res.Outcome != OutcomeOK && res.Response.Status == 0 {
		res.Response.Status = 500
	}
	return res
}

// trapMessage keeps the first line of a wazero error ("wasm error:
// unreachable") and drops the host-side stack.
func trapMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\nwasm stack trace:"); i >= 0 {
		msg = msg[:i]
	}
	return strings.TrimSpace(msg)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// finish fills the millisecond views of the durations.
func (u *Usage) finish() {
	u.CPUMs = float64(u.CPU.Microseconds()) / 1000
	u.WallMs = float64(u.Wall.Microseconds()) / 1000
}

// trimDiskCache keeps the on-disk compilation cache within its bound:
// past it, the oldest files go until it is at three quarters of the
// bound. It runs at start and after every 32 WASI compiles, one at a time.
func (r *Runtime) trimDiskCache() {
	if r.cacheDir == "" || !r.trimming.CompareAndSwap(false, true) {
		return
	}
	defer r.trimming.Store(false)
	type file struct {
		path string
		size int64
		mod  time.Time
	}
	var files []file
	var total int64
	_ = filepath.WalkDir(r.cacheDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			files = append(files, file{path, info.Size(), info.ModTime()})
			total += info.Size()
		}
		return nil
	})
	if total <= r.maxDisk {
		return
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	removed := 0
	for _, f := range files {
		if total <= r.maxDisk*3/4 {
			break
		}
		if os.Remove(f.path) == nil {
			total -= f.size
			removed++
		}
	}
	r.log.Info("compilation cache trimmed", "dir", r.cacheDir, "files_removed", removed, "bytes", total, "bound", r.maxDisk)
}
