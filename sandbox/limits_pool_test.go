package sandbox

import (
	"testing"
	"unsafe"
)

// TestWASIMemoryPoolIsZeroed: a WASI instance's linear memory may be a
// buffer an earlier instance (another tenant's) used; every byte it can
// see is zero, at start and after a grow, even when the earlier
// instance's slice was written after its Free.
func TestWASIMemoryPoolIsZeroed(t *testing.T) {
	const page = 64 << 10
	reused := 0
	var last unsafe.Pointer
	for i := range 200 {
		l := &memoryLimiter{limit: 16 * page}
		m := l.Allocate(2*page, 16*page)
		b := m.Reallocate(2 * page)
		if unsafe.Pointer(unsafe.SliceData(b)) == last {
			reused++
		}
		for j, v := range b {
			if v != 0 {
				t.Fatalf("instance %d: byte %d of a new memory is %#x", i, j, v)
			}
		}
		b = m.Reallocate(3 * page) // grow (within the buffer or not)
		for j, v := range b {
			if v != 0 {
				t.Fatalf("instance %d: byte %d after a grow is %#x", i, j, v)
			}
		}
		for j := range b {
			b[j] = 0xaa
		}
		last = unsafe.Pointer(unsafe.SliceData(b))
		m.Free()
		b[len(b)-1] = 0xbb // a late write into the freed memory
	}
	if reused == 0 {
		t.Error("no memory was reused from the pool")
	}
}
