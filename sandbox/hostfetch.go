package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// Fetch for WASI guests (ABI v1): a request is a JSON document, a
// response a handle whose metadata and body the guest reads in pieces.
//
//	fetch(req_ptr, req_len) -> i32       handle > 0, or a negative error
//	response_meta(h, buf_ptr, buf_cap) -> i32   JSON {"status","headers","url","body_length"}
//	response_read(h, buf_ptr, buf_cap) -> i32   body bytes copied; 0 at the end
//	response_close(h) -> i32
//	last_error(buf_ptr, buf_cap) -> i32  JSON {"clause","message"} of the last failed fetch
//
// A call whose output does not fit returns -(bytes needed) and copies
// nothing. Error codes are the constants below.
const (
	fetchErrArgs     = -1 // bad pointers, lengths or JSON
	fetchErrBlocked  = -2 // refused by policy: last_error names the clause
	fetchErrNetwork  = -3 // the request failed on the network
	fetchErrHandle   = -4 // unknown handle
	fetchErrTooMany  = -5 // too many open responses
	maxOpenResponses = 16
	maxFetchRequest  = 16 << 20
)

// SubrequestClause is the egress clause for a task over its subrequests;
// it ends the task as terminated:subrequests.
const SubrequestClause = "limit.subrequests"

// clauseTaskEnded refuses a fetch of a task that is ending; it is no
// policy refusal and is not counted as blocked.
const clauseTaskEnded = "task.ended"

type fetchRequestJSON struct {
	Method     string              `json:"method"`
	URL        string              `json:"url"`
	Headers    map[string][]string `json:"headers"`
	BodyBase64 []byte              `json:"body_base64"`
}

type fetchMetaJSON struct {
	Status     int                 `json:"status"`
	Headers    map[string][]string `json:"headers"`
	URL        string              `json:"url"`
	BodyLength int                 `json:"body_length"`
}

type fetchErrorJSON struct {
	Clause  string `json:"clause,omitempty"`
	Message string `json:"message"`
}

// fetchState is a task's open responses and last error.
type fetchState struct {
	mu      sync.Mutex
	next    int32
	open    map[int32]*openResponse
	lastErr []byte
}

type openResponse struct {
	meta []byte
	body []byte
	off  int
}

func (st *taskState) fetches() *fetchState {
	st.fetchOnce.Do(func() { st.fetch = &fetchState{open: map[int32]*openResponse{}} })
	return st.fetch
}

// doFetch performs a guest's fetch through the task's Fetcher. It is the
// one place WASI guests reach the network, and it meters blocked time.
func doFetch(ctx context.Context, st *taskState, req *FetchRequest) (*FetchResponse, error) {
	if st.task.Host.Fetch == nil {
		// The sandbox's own refusal: it counts it (a Fetcher counts
		// its own, as the node's egress gateway does).
		st.blocked++
		return nil, &FetchError{Clause: "profile.default_deny", Message: "this task may not make outbound requests"}
	}
	if err := context.Cause(ctx); err != nil {
		// The task is ending: no more requests.
		return nil, &FetchError{Clause: clauseTaskEnded, Message: err.Error()}
	}
	st.meter.pause()
	defer st.meter.resume()
	resp, err := st.task.Host.Fetch.Fetch(ctx, req)
	var fe *FetchError
	if errors.As(err, &fe) && fe.Clause == SubrequestClause && st.cancel != nil {
		st.cancel(Terminate(ReasonSubrequests))
	}
	return resp, err
}

func hostFetch(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	ptr, n := uint32(stack[0]), uint32(stack[1])
	ret := func(v int32) { stack[0] = api.EncodeI32(v) }
	if st == nil || n > maxFetchRequest {
		ret(fetchErrArgs)
		return
	}
	raw, ok := mod.Memory().Read(ptr, n)
	if !ok {
		ret(fetchErrArgs)
		return
	}
	var in fetchRequestJSON
	if err := json.Unmarshal(raw, &in); err != nil {
		fs := st.fetches()
		fs.setErr("", "request is not valid JSON: "+err.Error())
		ret(fetchErrArgs)
		return
	}
	fs := st.fetches()
	fs.mu.Lock()
	tooMany := len(fs.open) >= maxOpenResponses
	fs.mu.Unlock()
	if tooMany {
		fs.setErr("", "too many open responses; close some")
		ret(fetchErrTooMany)
		return
	}
	method := in.Method
	if method == "" {
		method = http.MethodGet
	}
	resp, err := doFetch(ctx, st, &FetchRequest{Method: method, URL: in.URL, Headers: http.Header(in.Headers), Body: in.BodyBase64})
	if err != nil {
		var fe *FetchError
		if errors.As(err, &fe) && fe.Clause != "" {
			fs.setErr(fe.Clause, fe.Message)
			ret(fetchErrBlocked)
			return
		}
		fs.setErr("", err.Error())
		ret(fetchErrNetwork)
		return
	}
	meta, _ := json.Marshal(fetchMetaJSON{Status: resp.Status, Headers: resp.Headers, URL: resp.URL, BodyLength: len(resp.Body)})
	fs.mu.Lock()
	fs.next++
	h := fs.next
	fs.open[h] = &openResponse{meta: meta, body: resp.Body}
	fs.mu.Unlock()
	ret(h)
}

func (fs *fetchState) setErr(clause, msg string) {
	b, _ := json.Marshal(fetchErrorJSON{Clause: clause, Message: msg})
	fs.mu.Lock()
	fs.lastErr = b
	fs.mu.Unlock()
}

// copyOut writes src into guest memory if it fits, else returns -needed.
func copyOut(mod api.Module, ptr, capacity uint32, src []byte) int32 {
	if uint32(len(src)) > capacity {
		return -int32(len(src))
	}
	if !mod.Memory().Write(ptr, src) {
		return fetchErrArgs
	}
	return int32(len(src))
}

// withResponse runs fn on the open response named by stack[0], under the
// task's fetch lock, and writes fn's result (or an error code) back.
func withResponse(ctx context.Context, stack []uint64, fn func(fs *fetchState, h int32, r *openResponse) int32) {
	st := stateFrom(ctx)
	if st == nil {
		stack[0] = api.EncodeI32(fetchErrArgs)
		return
	}
	fs := st.fetches()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h := int32(stack[0])
	r := fs.open[h]
	if r == nil {
		stack[0] = api.EncodeI32(fetchErrHandle)
		return
	}
	stack[0] = api.EncodeI32(fn(fs, h, r))
}

func hostResponseMeta(ctx context.Context, mod api.Module, stack []uint64) {
	withResponse(ctx, stack, func(_ *fetchState, _ int32, r *openResponse) int32 {
		return copyOut(mod, uint32(stack[1]), uint32(stack[2]), r.meta)
	})
}

func hostResponseRead(ctx context.Context, mod api.Module, stack []uint64) {
	withResponse(ctx, stack, func(_ *fetchState, _ int32, r *openResponse) int32 {
		ptr, capacity := uint32(stack[1]), uint32(stack[2])
		chunk := r.body[r.off:]
		if uint32(len(chunk)) > capacity {
			chunk = chunk[:capacity]
		}
		if len(chunk) > 0 && !mod.Memory().Write(ptr, chunk) {
			return fetchErrArgs
		}
		r.off += len(chunk)
		return int32(len(chunk))
	})
}

func hostResponseClose(ctx context.Context, mod api.Module, stack []uint64) {
	withResponse(ctx, stack, func(fs *fetchState, h int32, _ *openResponse) int32 {
		delete(fs.open, h)
		return 0
	})
}

func hostLastError(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	if st == nil {
		stack[0] = api.EncodeI32(fetchErrArgs)
		return
	}
	fs := st.fetches()
	fs.mu.Lock()
	e := fs.lastErr
	fs.mu.Unlock()
	stack[0] = api.EncodeI32(copyOut(mod, uint32(stack[0]), uint32(stack[1]), e))
}
