package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// HostModule is the import module of leash's host functions. Its ABI is
// versioned (docs/guest-abi.md); functions are only ever added.
const HostModule = "leash"

// ABIVersion is the version abi_version returns. 2 added the session KV
// (kv_get, kv_put, kv_delete, kv_list).
const ABIVersion = 2

// Log levels of the log host function.
var logLevels = [...]string{"debug", "info", "warn", "error"}

// hostFunctionNames lists every host function a guest may import.
var hostFunctionNames = map[string]bool{
	"abi_version":    true,
	"log":            true,
	"fetch":          true,
	"response_meta":  true,
	"response_read":  true,
	"response_close": true,
	"last_error":     true,
	"kv_get":         true,
	"kv_put":         true,
	"kv_delete":      true,
	"kv_list":        true,
}

// instantiateHostModule defines the "leash" module once per runtime. Host
// functions find their task through the call's context.
func instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	_, err := r.NewHostModuleBuilder(HostModule).
		// abi_version() -> i32
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(ctx context.Context, stack []uint64) {
			stack[0] = ABIVersion
		}), nil, []api.ValueType{api.ValueTypeI32}).
		WithName("abi_version").
		Export("abi_version").
		// log(level i32, ptr i32, len i32) -> i32 (0, or -1 for bad arguments)
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostLog),
			[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32},
			[]api.ValueType{api.ValueTypeI32}).
		WithParameterNames("level", "ptr", "len").
		WithName("log").
		Export("log").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostFetch), i32s(2), i32s(1)).
		WithParameterNames("req_ptr", "req_len").Export("fetch").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostResponseMeta), i32s(3), i32s(1)).
		WithParameterNames("handle", "buf_ptr", "buf_cap").Export("response_meta").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostResponseRead), i32s(3), i32s(1)).
		WithParameterNames("handle", "buf_ptr", "buf_cap").Export("response_read").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostResponseClose), i32s(1), i32s(1)).
		WithParameterNames("handle").Export("response_close").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostLastError), i32s(2), i32s(1)).
		WithParameterNames("buf_ptr", "buf_cap").Export("last_error").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostKVGet), i32s(5), i32s(1)).
		WithParameterNames("key_ptr", "key_len", "buf_ptr", "buf_cap", "len_ptr").Export("kv_get").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostKVPut), i32s(6), i32s(1)).
		WithParameterNames("key_ptr", "key_len", "val_ptr", "val_len", "opts_ptr", "opts_len").Export("kv_put").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostKVDelete), i32s(2), i32s(1)).
		WithParameterNames("key_ptr", "key_len").Export("kv_delete").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostKVList), i32s(5), i32s(1)).
		WithParameterNames("opts_ptr", "opts_len", "buf_ptr", "buf_cap", "len_ptr").Export("kv_list").
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("instantiate host module: %w", err)
	}
	return nil
}

func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	level, ptr, n := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	st := stateFrom(ctx)
	msg, ok := mod.Memory().Read(ptr, n)
	if st == nil || !ok || level >= uint32(len(logLevels)) {
		stack[0] = api.EncodeI32(-1)
		return
	}
	st.logs.add(logLevels[level], string(msg))
	stack[0] = 0
}

func i32s(n int) []api.ValueType {
	out := make([]api.ValueType, n)
	for i := range out {
		out[i] = api.ValueTypeI32
	}
	return out
}

// The session KV for WASI guests (ABI v2):
//
//	kv_get(key_ptr, key_len, buf_ptr, buf_cap, len_ptr) -> i32
//	kv_put(key_ptr, key_len, val_ptr, val_len, opts_ptr, opts_len) -> i32
//	kv_delete(key_ptr, key_len) -> i32
//	kv_list(opts_ptr, opts_len, buf_ptr, buf_cap, len_ptr) -> i32
//
// 0 is success; kv_get returns 1 for a missing key. A result (a value,
// a list's JSON) is copied to buf when it fits and its length stored at
// len_ptr (u32, little-endian) either way; when it does not fit nothing
// is copied and the call returns kvErrTooSmall. A refusal sets
// last_error to {"code","message"}.
const (
	kvNotFound     = 1
	kvErrArgs      = -1 // bad pointers, lengths or JSON
	kvErrTooSmall  = -6 // the result does not fit: *len_ptr says what does
	kvErrNoSession = -10
	kvErrDisabled  = -11
	kvErrQuota     = -12
	kvErrKey       = -13
	kvErrTooLarge  = -14
	kvErrTTL       = -15
	kvErrOps       = -16
	kvErrFailed    = -17 // kv_unavailable: the write did not reach the cluster, or the task is ending
	// Reads of guest memory are bounded before the node's own checks.
	maxKVKeyRead   = 4096
	maxKVValueRead = 2 << 20
	maxKVOptsRead  = 64 << 10
)

var kvErrCodes = map[string]int32{
	CodeKVNoSession: kvErrNoSession, CodeKVDisabled: kvErrDisabled, CodeKVQuota: kvErrQuota,
	CodeKVInvalidKey: kvErrKey, CodeKVTooLarge: kvErrTooLarge, CodeKVInvalidTTL: kvErrTTL,
	CodeKVOps: kvErrOps, CodeKVUnavailable: kvErrFailed, CodeKVInvalid: kvErrArgs,
}

// kvOf is the task's KV, or an error when it has none.
func kvOf(st *taskState) (KV, error) {
	if st.task.Host.KV == nil {
		return nil, &KVError{Code: CodeKVNoSession, Message: "this task has no session KV: its lease names no session"}
	}
	return st.task.Host.KV, nil
}

// kvFail turns an error into the call's result, noting it for last_error.
func kvFail(st *taskState, err error) int32 {
	var ke *KVError
	if !errors.As(err, &ke) {
		ke = &KVError{Code: CodeKVUnavailable, Message: err.Error()}
	}
	b, _ := json.Marshal(ke)
	fs := st.fetches()
	fs.mu.Lock()
	fs.lastErr = b
	fs.mu.Unlock()
	if c, ok := kvErrCodes[ke.Code]; ok {
		return c
	}
	return kvErrFailed
}

// kvCall runs one KV call with the task's CPU meter paused (waiting for
// Raft is not guest CPU), and refuses calls of a task that is ending.
func kvCall(ctx context.Context, st *taskState, fn func(KV) error) error {
	kv, err := kvOf(st)
	if err != nil {
		return err
	}
	if err := context.Cause(ctx); err != nil {
		return &KVError{Code: CodeKVUnavailable, Message: "the task is ending: " + err.Error()}
	}
	st.meter.pause()
	defer st.meter.resume()
	return fn(kv)
}

// readGuest copies n bytes at ptr out of guest memory (nil, false when
// the range is outside it or over limit).
func readGuest(mod api.Module, ptr, n, limit uint32) ([]byte, bool) {
	if n > limit {
		return nil, false
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

// copyResult writes src to buf when it fits and its length to len_ptr.
func copyResult(mod api.Module, bufPtr, bufCap, lenPtr uint32, src []byte) int32 {
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(src)))
	if !mod.Memory().Write(lenPtr, n[:]) {
		return kvErrArgs
	}
	if uint32(len(src)) > bufCap {
		return kvErrTooSmall
	}
	if !mod.Memory().Write(bufPtr, src) {
		return kvErrArgs
	}
	return 0
}

func hostKVGet(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	ret := func(v int32) { stack[0] = api.EncodeI32(v) }
	key, ok := readGuest(mod, uint32(stack[0]), uint32(stack[1]), maxKVKeyRead)
	if st == nil || !ok {
		ret(kvErrArgs)
		return
	}
	var v *KVValue
	err := kvCall(ctx, st, func(kv KV) (err error) {
		v, err = kv.Get(ctx, string(key))
		return err
	})
	switch {
	case err != nil:
		ret(kvFail(st, err))
	case v == nil:
		ret(kvNotFound)
	default:
		ret(copyResult(mod, uint32(stack[2]), uint32(stack[3]), uint32(stack[4]), v.Value))
	}
}

func hostKVPut(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	ret := func(v int32) { stack[0] = api.EncodeI32(v) }
	key, ok1 := readGuest(mod, uint32(stack[0]), uint32(stack[1]), maxKVKeyRead)
	val, ok2 := readGuest(mod, uint32(stack[2]), uint32(stack[3]), maxKVValueRead)
	opts, ok3 := readGuest(mod, uint32(stack[4]), uint32(stack[5]), maxKVOptsRead)
	if st == nil || !ok1 || !ok2 || !ok3 {
		ret(kvErrArgs)
		return
	}
	var o KVPutOptions
	if len(opts) > 0 {
		if err := json.Unmarshal(opts, &o); err != nil {
			ret(kvFail(st, &KVError{Code: CodeKVInvalid, Message: "options are not valid JSON: " + err.Error()}))
			return
		}
	}
	if err := kvCall(ctx, st, func(kv KV) error { return kv.Put(ctx, string(key), val, o) }); err != nil {
		ret(kvFail(st, err))
		return
	}
	ret(0)
}

func hostKVDelete(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	ret := func(v int32) { stack[0] = api.EncodeI32(v) }
	key, ok := readGuest(mod, uint32(stack[0]), uint32(stack[1]), maxKVKeyRead)
	if st == nil || !ok {
		ret(kvErrArgs)
		return
	}
	if err := kvCall(ctx, st, func(kv KV) error { return kv.Delete(ctx, string(key)) }); err != nil {
		ret(kvFail(st, err))
		return
	}
	ret(0)
}

func hostKVList(ctx context.Context, mod api.Module, stack []uint64) {
	st := stateFrom(ctx)
	ret := func(v int32) { stack[0] = api.EncodeI32(v) }
	opts, ok := readGuest(mod, uint32(stack[0]), uint32(stack[1]), maxKVOptsRead)
	if st == nil || !ok {
		ret(kvErrArgs)
		return
	}
	var o KVListOptions
	if len(opts) > 0 {
		if err := json.Unmarshal(opts, &o); err != nil {
			ret(kvFail(st, &KVError{Code: CodeKVInvalid, Message: "options are not valid JSON: " + err.Error()}))
			return
		}
	}
	var l *KVList
	err := kvCall(ctx, st, func(kv KV) (err error) {
		l, err = kv.List(ctx, o)
		return err
	})
	if err != nil {
		ret(kvFail(st, err))
		return
	}
	b, err := json.Marshal(l)
	if err != nil {
		ret(kvFail(st, err))
		return
	}
	ret(copyResult(mod, uint32(stack[2]), uint32(stack[3]), uint32(stack[4]), b))
}
