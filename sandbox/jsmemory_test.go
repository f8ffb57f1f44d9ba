package sandbox

import (
	"bytes"
	"testing"
)

// TestJSImageRestore: a buffer a task dirtied everywhere is the image
// again after restore, zero runs included (on Linux their whole pages are
// given back to the kernel rather than cleared), and the edges of a run
// that do not fill a page are cleared too.
func TestJSImageRestore(t *testing.T) {
	const page = 4096
	img := make([]byte, 64*page)
	img[10] = 1                 // first page non-zero
	img[3*page+100] = 2         // a run of zero pages after it
	img[40*page+page-1] = 3     // then a long zero run
	copy(img[60*page:], "tail") // and data near the end
	c := newCopyImage(img)
	if len(c.runs) != 4 {
		t.Fatalf("runs %v, want 4", c.runs)
	}
	// an unaligned buffer: the zero runs start and end inside pages
	raw := make([]byte, len(img)+2*page)
	for _, off := range []int{0, 1, 1000} {
		b := raw[off : off+len(img)]
		for i := range b {
			b[i] = 0xee
		}
		c.restore(b)
		// restore covers the image up to its trailing zeros (the pool
		// clears what a task dirtied past them)
		b, want := b[:len(c.data)], img[:len(c.data)]
		if !bytes.Equal(b, want) {
			for i := range b {
				if b[i] != want[i] {
					t.Fatalf("offset %d: byte %d is %#x, want %#x", off, i, b[i], want[i])
				}
			}
		}
	}
	// zeroPages on its own, large and small, leaving its neighbours alone
	for _, n := range []int{10, jsDropRun - 1, jsDropRun, 3*jsDropRun + 17} {
		b := raw[3 : 3+n]
		for i := range b {
			b[i] = 0xaa
		}
		raw[2], raw[3+n] = 0x55, 0x55
		zeroPages(b)
		for i, v := range b {
			if v != 0 {
				t.Fatalf("zeroPages(%d bytes): byte %d is %#x", n, i, v)
			}
		}
		if raw[2] != 0x55 || raw[3+n] != 0x55 {
			t.Fatalf("zeroPages(%d bytes) changed a byte next to it", n)
		}
	}
}
