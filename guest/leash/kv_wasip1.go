//go:build wasip1

package leash

import "unsafe"

//go:wasmimport leash kv_get
func wasmKVGet(kp unsafe.Pointer, kn int32, bp unsafe.Pointer, bc int32, lp unsafe.Pointer) int32

//go:wasmimport leash kv_put
func wasmKVPut(kp unsafe.Pointer, kn int32, vp unsafe.Pointer, vn int32, op unsafe.Pointer, on int32) int32

//go:wasmimport leash kv_delete
func wasmKVDelete(kp unsafe.Pointer, kn int32) int32

//go:wasmimport leash kv_list
func wasmKVList(op unsafe.Pointer, on int32, bp unsafe.Pointer, bc int32, lp unsafe.Pointer) int32

func hostKVGet(key string, buf []byte) (int32, uint32) {
	var n uint32
	rc := wasmKVGet(unsafe.Pointer(unsafe.StringData(key)), int32(len(key)),
		unsafe.Pointer(unsafe.SliceData(buf)), int32(len(buf)), unsafe.Pointer(&n))
	return rc, n
}

func hostKVPut(key string, value, opts []byte) int32 {
	return wasmKVPut(unsafe.Pointer(unsafe.StringData(key)), int32(len(key)),
		unsafe.Pointer(unsafe.SliceData(value)), int32(len(value)),
		unsafe.Pointer(unsafe.SliceData(opts)), int32(len(opts)))
}

func hostKVDelete(key string) int32 {
	return wasmKVDelete(unsafe.Pointer(unsafe.StringData(key)), int32(len(key)))
}

func hostKVList(opts, buf []byte) (int32, uint32) {
	var n uint32
	rc := wasmKVList(unsafe.Pointer(unsafe.SliceData(opts)), int32(len(opts)),
		unsafe.Pointer(unsafe.SliceData(buf)), int32(len(buf)), unsafe.Pointer(&n))
	return rc, n
}
