//go:build linux

package sandbox

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

const jsPage = 4096

// cowImage keeps the snapshot memory in a memfd (sparse: only non-zero
// pages are written). Each instance maps it MAP_PRIVATE at the start of a
// reservation as large as its limit: reading shares the page cache, the
// first write to a page copies that page only.
type cowImage struct {
	fd int
	n  uint64

	mu     sync.RWMutex
	closed bool
}

func newCOWImage(mem []byte) (*cowImage, error) {
	fd, err := unix.MemfdCreate("leash-js-snapshot", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(len(mem))); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("ftruncate: %w", err)
	}
	for off := 0; off < len(mem); off += jsPage {
		page := mem[off:min(off+jsPage, len(mem))]
		if allZero(page) {
			continue
		}
		if _, err := unix.Pwrite(fd, page, int64(off)); err != nil {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("write snapshot: %w", err)
		}
	}
	// The image never changes again: seal it.
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
	return &cowImage{fd: fd, n: uint64(len(mem))}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (c *cowImage) size() uint64 { return c.n }

func (c *cowImage) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return unix.Close(c.fd)
}

func (c *cowImage) allocator(limit uint64) jsAllocator {
	return &cowAllocator{img: c, jsAllocStats: jsAllocStats{limit: limit}}
}

type cowAllocator struct {
	img *cowImage
	jsAllocStats
}

func (a *cowAllocator) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	reserve := min(maxBytes, a.limit)
	reserve = (reserve + jsPage - 1) &^ (jsPage - 1)
	return &cowMemory{a: a, reserve: reserve}
}

type cowMemory struct {
	a       *cowAllocator
	reserve uint64
	base    unsafe.Pointer
	size    uint64
	failed  bool
}

func (m *cowMemory) Reallocate(size uint64) []byte {
	if m.failed || !m.a.grow(size) || size > m.reserve {
		return nil
	}
	if m.base == nil {
		if err := m.mapImage(); err != nil {
			m.failed = true
			return nil
		}
	}
	m.size = size
	return unsafe.Slice((*byte)(m.base), m.reserve)[:size:size]
}

func (m *cowMemory) mapImage() error {
	if m.a.img.n > m.reserve {
		return fmt.Errorf("snapshot of %d bytes over the limit %d", m.a.img.n, m.reserve)
	}
	base, err := unix.MmapPtr(-1, 0, nil, uintptr(m.reserve),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return err
	}
	if m.a.img.n > 0 {
		img := m.a.img
		img.mu.RLock()
		if img.closed {
			img.mu.RUnlock()
			_ = unix.MunmapPtr(base, uintptr(m.reserve))
			return fmt.Errorf("snapshot closed")
		}
		_, err := unix.MmapPtr(img.fd, 0, base, uintptr(img.n),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED)
		img.mu.RUnlock()
		if err != nil {
			_ = unix.MunmapPtr(base, uintptr(m.reserve))
			return err
		}
	}
	m.base = base
	return nil
}

func (m *cowMemory) Free() {
	if m.base != nil {
		_ = unix.MunmapPtr(m.base, uintptr(m.reserve))
		m.base = nil
	}
}

// reserveMemory maps n bytes of anonymous memory, not backed until
// touched, for an instance that outgrew the pool's buffers: growing in
// it copies nothing, and releaseMemory gives it back to the OS at once.
func reserveMemory(n uint64) (unsafe.Pointer, error) {
	n = (n + jsPage - 1) &^ (jsPage - 1)
	return unix.MmapPtr(-1, 0, nil, uintptr(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
}

func releaseMemory(p unsafe.Pointer, n uint64) {
	n = (n + jsPage - 1) &^ (jsPage - 1)
	_ = unix.MunmapPtr(p, uintptr(n))
}

// jsDropRun is the smallest zero run zeroPages gives back to the kernel
// instead of clearing: below it a clear is cheaper than the system call.
const jsDropRun = 64 << 10

// zeroPages makes b zero. The whole pages inside a large b are given back
// to the kernel (MADV_DONTNEED: they read as zero and take no memory until
// written), so the unused part of an instance's stack and heap is not
// resident in every live instance; the edges are cleared.
func zeroPages(b []byte) {
	if len(b) < jsDropRun {
		clear(b)
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := int((p+jsPage-1)&^(jsPage-1) - p)
	hi := int((p+uintptr(len(b)))&^(jsPage-1) - p)
	if hi-lo < jsPage || unix.Madvise(b[lo:hi], unix.MADV_DONTNEED) != nil {
		clear(b)
		return
	}
	clear(b[:lo])
	clear(b[hi:])
}
