//go:build !linux

package sandbox

import (
	"errors"
	"unsafe"
)

func newCOWImage(mem []byte) (jsImage, error) { return newCopyImage(mem), nil }

// reserveMemory is Linux only; elsewhere large instances grow in Go
// buffers.
func reserveMemory(n uint64) (unsafe.Pointer, error) {
	return nil, errors.New("no memory reservations on this platform")
}

func releaseMemory(p unsafe.Pointer, n uint64) {}

// zeroPages makes b zero (jsmemory_linux.go gives whole pages back to the
// kernel instead).
func zeroPages(b []byte) { clear(b) }
