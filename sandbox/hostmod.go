package sandbox

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// HostModule is the import module of leash's host functions. Its ABI is
// versioned (docs/guest-abi.md); functions are only ever added.
const HostModule = "leash"

// ABIVersion is the version abi_version returns.
const ABIVersion = 1

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
