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

//go:wasmimport leash fetch
func wasmFetch(ptr unsafe.Pointer, n int32) int32

//go:wasmimport leash response_meta
func wasmResponseMeta(h int32, ptr unsafe.Pointer, n int32) int32

//go:wasmimport leash response_read
func wasmResponseRead(h int32, ptr unsafe.Pointer, n int32) int32

//go:wasmimport leash response_close
func wasmResponseClose(h int32) int32

//go:wasmimport leash last_error
func wasmLastError(ptr unsafe.Pointer, n int32) int32

func hostFetch(req []byte) int32 {
	return wasmFetch(unsafe.Pointer(unsafe.SliceData(req)), int32(len(req)))
}

func hostResponseMeta(h int32, b []byte) int32 {
	return wasmResponseMeta(h, unsafe.Pointer(unsafe.SliceData(b)), int32(len(b)))
}

func hostResponseRead(h int32, b []byte) int32 {
	return wasmResponseRead(h, unsafe.Pointer(unsafe.SliceData(b)), int32(len(b)))
}

func hostResponseClose(h int32) { wasmResponseClose(h) }

func hostLastError(b []byte) int32 {
	return wasmLastError(unsafe.Pointer(unsafe.SliceData(b)), int32(len(b)))
}
