//go:build wasip1

package leash

import "unsafe"

//go:wasmimport leash abi_version
func hostABIVersion() int32

//go:wasmimport leash log
func hostLog(level int32, ptr unsafe.Pointer, n int32) int32

func abiVersion() int32 { return hostABIVersion() }

func logLine(level Level, msg string) int32 {
	if len(msg) == 0 {
		return 0
	}
	return hostLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), int32(len(msg)))
}
