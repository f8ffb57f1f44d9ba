package sandbox

// Host functions of the JS engine: the import module "leash" of
// engine.wasm (engine/shim.c lists them). They are not the WASI guests'
// host module (hostmod.go): the engine has its own wazero runtime.

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/leash-dev/leash/weburl"
)

// jsTask is one task's state, reached by host functions through the
// call's context.
type jsTask struct {
	t      *Task
	ctx    context.Context
	cancel context.CancelCauseFunc
	logs   *logSink

	oom       bool
	errCode   string
	errMsg    string
	reply     []byte
	bytecode  []byte
	responded bool
	resp      Response
	// waitUntil: when the response was ready, ctx.waitUntil promises
	// were pending, so a limit that ends the task cuts only those
	waitUntil bool
	outLimit  int64
	usage     Usage

	// meter is the task's CPU meter, polled by jsInterrupt at most every
	// jsPollEvery (lastPoll)
	meter    *meter
	lastPoll time.Time

	sent     int64 // subrequests handed on, for the limit
	nextID   int32
	inflight int
	done     chan jsFetchDone
	finished chan struct{}
}

type jsTaskKey struct{}

type jsFetchDone struct {
	id   int32
	url  string
	resp *FetchResponse
	err  error
}

func jsTaskFrom(ctx context.Context) *jsTask {
	st, _ := ctx.Value(jsTaskKey{}).(*jsTask)
	return st
}

// stopped says whether the task must not run on: a limit, a cancellation,
// exhausted memory, or a reported failure.
func (st *jsTask) stopped() bool {
	return st.oom || st.errCode != "" || (st.ctx != nil && st.ctx.Err() != nil)
}

// jsLogLevels are the prelude's console levels.
var jsLogLevels = [...]string{"debug", "log", "info", "warn", "error"}

const (
	i32 = api.ValueTypeI32
	f64 = api.ValueTypeF64
)

func instantiateJSHost(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(HostModule)
	fn := func(name string, f api.GoModuleFunc, params, results []api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(f, params, results).WithName(name).Export(name)
	}
	fn("interrupt", jsInterrupt, nil, []api.ValueType{i32})
	fn("oom", jsOOM, nil, nil)
	fn("now", jsNow, nil, []api.ValueType{f64})
	fn("random", jsRandom, []api.ValueType{i32, i32}, nil)
	fn("log", jsLog, []api.ValueType{i32, i32, i32}, nil)
	fn("digest", jsDigest, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("url_parse", jsURLParse, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("reply", jsReply, []api.ValueType{i32}, nil)
	fn("url_set", jsURLSet, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32})
	fn("decode", jsDecode, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32})
	fn("fetch", jsFetch, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("respond", jsRespond, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("error", jsError, []api.ValueType{i32, i32, i32, i32}, nil)
	fn("bytecode", jsBytecode, []api.ValueType{i32, i32}, nil)
	fn("kv", jsKV, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	_, err := b.Instantiate(ctx)
	return err
}

// jsPollEvery is how often the interrupt (every 10,000 bytecode branches
// or fuel checks) also reads the CPU clock and the deadline itself.
const jsPollEvery = 250 * time.Microsecond

func jsInterrupt(ctx context.Context, _ api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	if st != nil && st.meter != nil && !st.stopped() {
		if now := time.Now(); now.Sub(st.lastPoll) >= jsPollEvery {
			st.lastPoll = now
			st.meter.poll()
			if dl, ok := st.ctx.Deadline(); ok && now.After(dl) {
				st.cancel(Terminate(ReasonWall))
			}
		}
	}
	if st != nil && st.stopped() {
		stack[0] = 1
		return
	}
	stack[0] = 0
}

func jsOOM(ctx context.Context, _ api.Module, _ []uint64) {
	if st := jsTaskFrom(ctx); st != nil {
		st.oom = true
	}
}

func jsNow(_ context.Context, _ api.Module, stack []uint64) {
	stack[0] = api.EncodeF64(float64(time.Now().UnixMicro()) / 1000)
}

func jsRandom(_ context.Context, mod api.Module, stack []uint64) {
	b, ok := mod.Memory().Read(uint32(stack[0]), uint32(stack[1]))
	if ok {
		_, _ = rand.Read(b)
	}
}

func jsLog(ctx context.Context, mod api.Module, stack []uint64) {
	level, ptr, n := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	st := jsTaskFrom(ctx)
	msg, ok := mod.Memory().Read(ptr, n)
	if st == nil || !ok {
		return
	}
	if level >= uint32(len(jsLogLevels)) {
		level = 1
	}
	line := string(msg)
	if len(line) > jsMaxLogLine {
		line = truncateText(line, jsMaxLogLine)
	}
	st.logs.add(jsLogLevels[level], line)
}

// Digest algorithms, as the prelude numbers them.
var jsDigests = map[uint32]func() hash.Hash{1: sha1.New, 2: sha256.New, 3: sha512.New384, 4: sha512.New, 5: md5.New}

func jsDigest(_ context.Context, mod api.Module, stack []uint64) {
	alg, ptr, n, out := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	newHash, ok := jsDigests[alg]
	data, ok2 := mod.Memory().Read(ptr, n)
	if !ok || !ok2 {
		stack[0] = api.EncodeI32(-1)
		return
	}
	h := newHash()
	h.Write(data)
	sum := h.Sum(nil)
	if !mod.Memory().Write(out, sum) {
		stack[0] = api.EncodeI32(-1)
		return
	}
	stack[0] = uint64(len(sum))
}

func readString(mod api.Module, ptr, n uint32) (string, bool) {
	b, ok := mod.Memory().Read(ptr, n)
	return string(b), ok
}

// jsURLParse parses with weburl, the parser the egress gateway uses.
func jsURLParse(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	in, ok := readString(mod, uint32(stack[0]), uint32(stack[1]))
	if st == nil || !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	var base string
	hasBase := uint32(stack[3]) != math.MaxUint32
	if hasBase {
		if base, ok = readString(mod, uint32(stack[2]), uint32(stack[3])); !ok {
			stack[0] = api.EncodeI32(-1)
			return
		}
	}
	fail := func(msg string) {
		st.reply = []byte(msg)
		stack[0] = api.EncodeI32(-int32(len(st.reply)))
	}
	if hasBase && base == "" {
		fail("invalid base URL")
		return
	}
	u, err := weburl.Parse(in, base)
	if err != nil {
		fail(err.Error())
		return
	}
	b, err := json.Marshal(u)
	if err != nil {
		fail(err.Error())
		return
	}
	st.reply = b
	stack[0] = uint64(len(b))
}

func jsReply(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	if st == nil {
		return
	}
	mod.Memory().Write(uint32(stack[0]), st.reply)
	st.reply = nil
}

// jsFetchMeta is a subrequest as the prelude's fetch describes it.
type jsFetchMeta struct {
	Method   string      `json:"method"`
	URL      string      `json:"url"`
	Headers  [][2]string `json:"headers"`
	Redirect string      `json:"redirect"`
}

// jsFetch starts a subrequest through the task's Fetcher and returns its
// id; the result arrives through the event loop (jsEngine.loop).
func jsFetch(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	metaB, ok1 := mod.Memory().Read(uint32(stack[0]), uint32(stack[1]))
	body, ok2 := mod.Memory().Read(uint32(stack[2]), uint32(stack[3]))
	if st == nil || st.t == nil {
		stack[0] = 0
		return
	}
	st.nextID++
	id := st.nextID
	stack[0] = uint64(uint32(id))
	st.inflight++
	finish := func(d jsFetchDone) {
		d.id = id
		go func() {
			select {
			case st.done <- d:
			case <-st.finished:
			}
		}()
	}
	var meta jsFetchMeta
	if !ok1 || !ok2 || json.Unmarshal(metaB, &meta) != nil {
		finish(jsFetchDone{err: errors.New("fetch failed: malformed request")})
		return
	}
	if len(body) > jsMaxFetchBody {
		finish(jsFetchDone{url: meta.URL, err: fmt.Errorf("fetch failed: request body over %d bytes", jsMaxFetchBody)})
		return
	}
	// subrequests means what it means for WASI guests: 0 allows none.
	st.sent++
	lim := st.t.Limits.Subrequests
	if st.sent > lim {
		st.cancel(Terminate(ReasonSubrequests))
		finish(jsFetchDone{url: meta.URL, err: fmt.Errorf("too many subrequests (limit %d)", lim)})
		return
	}
	req := &FetchRequest{Method: meta.Method, URL: meta.URL, Headers: http.Header{}, Body: slices.Clone(body)}
	for _, kv := range meta.Headers {
		req.Headers.Add(kv[0], kv[1])
	}
	fetcher := st.t.Host.Fetch
	if fetcher == nil {
		// Without a Fetcher every subrequest is refused, as the egress
		// gateway's default deny would; the refusal is the sandbox's
		// own, so it counts it. What goes to a Fetcher, the Fetcher
		// accounts for (the node adds the egress gateway's counts), so
		// nothing is counted twice.
		st.usage.Blocked++
		finish(jsFetchDone{url: meta.URL, err: &FetchError{Clause: "profile.default_deny", Message: "this task may not make subrequests (no egress is granted)"}})
		return
	}
	fctx := st.ctx
	go func() {
		resp, err := fetcher.Fetch(fctx, req)
		if err == nil && resp == nil {
			err = errors.New("fetch failed: no response")
		}
		d := jsFetchDone{id: id, url: meta.URL, resp: resp, err: err}
		select {
		case st.done <- d:
		case <-st.finished:
		}
	}()
}

// jsResponseOut is the worker's response as the prelude's respond writes
// it. Over, instead, says a streamed body passed output_bytes (the bytes
// read when the prelude stopped); Waits is how many ctx.waitUntil
// promises were pending.
type jsResponseOut struct {
	Status     int         `json:"status"`
	StatusText string      `json:"statusText"`
	Headers    [][2]string `json:"headers"`
	Waits      int         `json:"waits"`
	Over       int64       `json:"over"`
}

func jsRespond(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	metaB, ok1 := mod.Memory().Read(uint32(stack[0]), uint32(stack[1]))
	body, ok2 := mod.Memory().Read(uint32(stack[2]), uint32(stack[3]))
	stack[0] = 0
	if st == nil || st.responded {
		return
	}
	var meta jsResponseOut
	if !ok1 || !ok2 || json.Unmarshal(metaB, &meta) != nil {
		st.errCode, st.errMsg = JSCodeUncaughtException, "malformed response"
		stack[0] = 1
		return
	}
	if meta.Over > 0 || int64(len(body)) > st.outLimit {
		st.cancel(Terminate(ReasonOutput))
		st.usage.OutputBytes = max(meta.Over, int64(len(body)))
		stack[0] = 1
		return
	}
	size := 0
	for _, kv := range meta.Headers {
		size += len(kv[0]) + len(kv[1])
	}
	if len(meta.Headers) > jsMaxResponseHeaders || size > jsMaxResponseHeaderBytes {
		st.cancel(Terminate(ReasonOutput))
		st.logs.add("error", fmt.Sprintf("the response has %d headers of %d bytes; the limits are %d headers and %d bytes",
			len(meta.Headers), size, jsMaxResponseHeaders, jsMaxResponseHeaderBytes))
		stack[0] = 1
		return
	}
	h := http.Header{}
	for _, kv := range meta.Headers {
		h.Add(kv[0], kv[1])
	}
	st.resp = Response{Status: meta.Status, Headers: h, Body: slices.Clone(body)}
	st.responded = true
	st.waitUntil = meta.Waits > 0
}

func jsError(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	code, _ := readString(mod, uint32(stack[0]), min(uint32(stack[1]), 64))
	if st == nil || st.errCode != "" || st.responded {
		return
	}
	// Only the first jsMaxErrorBytes of the message are copied out.
	n := uint32(stack[3])
	b, _ := mod.Memory().Read(uint32(stack[2]), min(n, jsMaxErrorBytes))
	msg := cutText(string(b), int(n), jsMaxErrorBytes)
	if code == "exception" {
		code = JSCodeUncaughtException
	}
	st.errCode, st.errMsg = code, msg
}

func jsBytecode(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	b, ok := mod.Memory().Read(uint32(stack[0]), uint32(stack[1]))
	if st != nil && ok {
		st.bytecode = slices.Clone(b)
	}
}
