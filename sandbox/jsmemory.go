package sandbox

import (
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
)

// jsImage is the snapshot's linear memory, handed to every new instance.
// Three ways are implemented, and BenchmarkJSColdStart measures them:
//
//   - pool (the default): a recycled buffer with the image copied over it;
//   - copy: a fresh buffer with the image copied in;
//   - cow (Linux): the image in a memfd mapped MAP_PRIVATE, so an instance
//     shares every page it does not write.
//
// Copy-on-write looks cheapest but is not: a hello task writes ~100 of
// the image's pages (QuickJS's reference counts live in every object it
// touches), and a copy-on-write fault costs more than copying the whole
// image from a warm buffer. Fresh buffers cost page faults and garbage.
// docs/javascript.md has the numbers.
type jsImage interface {
	// allocator returns the memory allocator of one instance, capped at
	// limit bytes of linear memory.
	allocator(limit uint64) jsAllocator
	size() uint64
	close() error
}

type jsAllocator interface {
	experimental.MemoryAllocator
	// peak is the largest linear memory the instance had; refused says
	// whether a grow was refused at the limit.
	peak() uint64
	refused() bool
}

// jsAllocStats is what both allocators record.
type jsAllocStats struct {
	limit uint64
	max   atomic.Uint64
	over  atomic.Bool
}

func (s *jsAllocStats) peak() uint64  { return s.max.Load() }
func (s *jsAllocStats) refused() bool { return s.over.Load() }

func (s *jsAllocStats) grow(size uint64) bool {
	if size > s.limit {
		s.over.Store(true)
		return false
	}
	for {
		p := s.max.Load()
		if size <= p || s.max.CompareAndSwap(p, size) {
			return true
		}
	}
}

// copyImage copies the non-zero prefix of the image into a fresh buffer.
type copyImage struct {
	data []byte // the image without its trailing zero bytes
	n    uint64 // the image's size in bytes (whole pages)
	// runs are the [start, end) ranges of data holding non-zero 4 KiB
	// pages; between them data is zero (most of the stack, mostly).
	runs [][2]int
}

func newCopyImage(mem []byte) *copyImage {
	end := len(mem)
	for end > 0 && mem[end-1] == 0 {
		end--
	}
	c := &copyImage{data: append([]byte(nil), mem[:end]...), n: uint64(len(mem))}
	const page = 4096
	for off := 0; off < end; off += page {
		pe := min(off+page, end)
		zero := true
		for _, b := range c.data[off:pe] {
			if b != 0 {
				zero = false
				break
			}
		}
		if zero {
			continue
		}
		if k := len(c.runs); k > 0 && c.runs[k-1][1] == off {
			c.runs[k-1][1] = pe
		} else {
			c.runs = append(c.runs, [2]int{off, pe})
		}
	}
	return c
}

// restore makes b[:len(data)] the image again, zeroing the zero runs
// (cheaper than copying zeros; on Linux their whole pages go back to the
// kernel, so the unused stack of an idle or live instance is not
// resident) and copying the rest.
func (c *copyImage) restore(b []byte) {
	prev := 0
	for _, r := range c.runs {
		zeroPages(b[prev:r[0]])
		copy(b[r[0]:r[1]], c.data[r[0]:r[1]])
		prev = r[1]
	}
	zeroPages(b[prev:len(c.data)])
}

func (c *copyImage) size() uint64 { return c.n }
func (c *copyImage) close() error { return nil }

func (c *copyImage) allocator(limit uint64) jsAllocator {
	return &copyAllocator{img: c, jsAllocStats: jsAllocStats{limit: limit}}
}

type copyAllocator struct {
	img *copyImage
	jsAllocStats
}

func (a *copyAllocator) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	return &copyMemory{a: a, capHint: min(max(capacity, a.img.n), a.limit)}
}

type copyMemory struct {
	a       *copyAllocator
	capHint uint64
	buf     []byte
}

func (m *copyMemory) Reallocate(size uint64) []byte {
	if !m.a.grow(size) {
		return nil
	}
	if m.buf == nil {
		m.buf = make([]byte, size, max(size, m.capHint))
		copy(m.buf, m.a.img.data)
		return m.buf
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	nb := make([]byte, size, min(max(size, uint64(cap(m.buf))*2), m.a.limit))
	copy(nb, m.buf)
	if cap(m.buf) > jsPoolMaxBuffer {
		dropMemory(cap(m.buf))
	}
	m.buf = nb
	return m.buf
}

func (m *copyMemory) Free() {
	if cap(m.buf) > jsPoolMaxBuffer {
		dropMemory(cap(m.buf))
	}
	m.buf = nil
}

// poolImage is copyImage with recycled buffers: an instance's memory is a
// buffer a finished instance gave back, restored to the image (the image
// copied over it, the part the last user dirtied past it zeroed). No page
// faults and no garbage, at the price of copying the image and of keeping
// the idle buffers.
type poolImage struct {
	*copyImage
	pool chan *pooledBuffer
	// idle is the bytes of the buffers in pool: at most jsPoolMaxIdle
	idle atomic.Int64
}

type pooledBuffer struct {
	buf   []byte
	dirty int // bytes the last user may have written
}

// jsPoolBuffers bounds the idle buffers kept; jsPoolMaxBuffer is the
// largest buffer kept (a task that grew its memory past it gives it back
// to the garbage collector).
const (
	jsPoolBuffers   = 16
	jsPoolMaxBuffer = 8 << 20
	jsPoolMaxIdle   = 64 << 20
	jsPoolHeadroom  = 1 << 20
)

// Memory a large instance leaves behind is garbage the Go runtime keeps
// (an idle node runs no collection) and, once collected, returns to the
// OS only slowly. So past jsReleaseAfter bytes of dropped instance memory
// the sandbox collects and returns it to the OS, at most once per
// jsReleaseEvery.
const (
	jsReleaseAfter = 64 << 20
	jsReleaseEvery = time.Second
)

var (
	jsDropped   atomic.Int64 // bytes dropped since the last release
	jsReleasing atomic.Bool
	jsLastFree  atomic.Int64 // unix nanoseconds of the last release
	jsReleases  atomic.Int64 // releases done, for tests
	jsUnmapped  atomic.Int64 // reservations given back to the OS, for tests
)

// dropMemory notes n bytes of instance memory left to the garbage
// collector and, past the bound, releases memory to the OS in the
// background.
func dropMemory(n int) {
	if jsDropped.Add(int64(n)) < jsReleaseAfter || !jsReleasing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer jsReleasing.Store(false)
		if wait := time.Duration(jsLastFree.Load() + int64(jsReleaseEvery) - time.Now().UnixNano()); wait > 0 {
			time.Sleep(wait)
		}
		jsDropped.Store(0)
		debug.FreeOSMemory()
		jsLastFree.Store(time.Now().UnixNano())
		jsReleases.Add(1)
	}()
}

func newDefaultImage(mem []byte) (jsImage, error) { return newPoolImage(mem, jsPoolBuffers), nil }

func newPoolImage(mem []byte, size int) *poolImage {
	return &poolImage{copyImage: newCopyImage(mem), pool: make(chan *pooledBuffer, size)}
}

// close drops the idle buffers.
func (p *poolImage) close() error {
	for {
		select {
		case pb := <-p.pool:
			p.idle.Add(-int64(cap(pb.buf)))
		default:
			return nil
		}
	}
}

func (p *poolImage) allocator(limit uint64) jsAllocator {
	return &poolAllocator{img: p, jsAllocStats: jsAllocStats{limit: limit}}
}

type poolAllocator struct {
	img *poolImage
	jsAllocStats
}

func (a *poolAllocator) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	return &poolMemory{a: a}
}

type poolMemory struct {
	a  *poolAllocator
	pb *pooledBuffer
	// big is the reservation of the whole limit an instance moves to when
	// it outgrows jsPoolMaxBuffer (Linux): no copy on later grows, and
	// its pages go back to the OS when the instance ends.
	big  unsafe.Pointer
	bigN uint64
}

func (m *poolMemory) Reallocate(size uint64) []byte {
	if !m.a.grow(size) {
		return nil
	}
	if m.big != nil {
		if size > m.bigN {
			return nil
		}
		return unsafe.Slice((*byte)(m.big), m.bigN)[:size:size]
	}
	img := m.a.img
	if m.pb == nil {
		select {
		case m.pb = <-img.pool:
			img.idle.Add(-int64(cap(m.pb.buf)))
		default:
			m.pb = &pooledBuffer{buf: make([]byte, 0, img.n+jsPoolHeadroom)}
		}
		b := m.pb.buf[:cap(m.pb.buf)]
		img.restore(b)
		if m.pb.dirty > len(img.data) {
			zeroPages(b[len(img.data):m.pb.dirty])
		}
	}
	if size > uint64(cap(m.pb.buf)) && size > jsPoolMaxBuffer {
		if p, err := reserveMemory(m.a.limit); err == nil {
			b := unsafe.Slice((*byte)(p), m.a.limit)
			copy(b, m.pb.buf)
			m.big, m.bigN = p, m.a.limit
			m.pb.dirty = max(m.pb.dirty, len(m.pb.buf))
			m.putBack()
			return b[:size:size]
		}
	}
	if size > uint64(cap(m.pb.buf)) {
		nb := make([]byte, size, min(max(size, uint64(cap(m.pb.buf))*2), m.a.limit))
		copy(nb, m.pb.buf)
		if cap(m.pb.buf) > jsPoolMaxBuffer {
			dropMemory(cap(m.pb.buf))
		}
		m.pb.buf = nb
	}
	m.pb.buf = m.pb.buf[:size]
	m.pb.dirty = max(m.pb.dirty, int(size))
	return m.pb.buf
}

func (m *poolMemory) Free() {
	if m.big != nil {
		// Unmapping tens of MiB of touched pages takes milliseconds of
		// kernel time: not on the task's thread (its CPU meter), and
		// nothing uses the memory after Free.
		go func(p unsafe.Pointer, n uint64) {
			releaseMemory(p, n)
			jsUnmapped.Add(1)
		}(m.big, m.bigN)
		m.big = nil
	}
	m.putBack()
}

// putBack gives the pooled buffer back to the pool, or to the garbage
// collector past the pool's bounds.
func (m *poolMemory) putBack() {
	if m.pb == nil {
		return
	}
	pb, img := m.pb, m.a.img
	m.pb = nil
	n := int64(cap(pb.buf))
	if n > jsPoolMaxBuffer || img.idle.Add(n) > jsPoolMaxIdle {
		if n <= jsPoolMaxBuffer {
			img.idle.Add(-n)
		}
		dropMemory(int(n))
		return
	}
	select {
	case img.pool <- pb:
	default:
		img.idle.Add(-n)
		dropMemory(int(n))
	}
}
