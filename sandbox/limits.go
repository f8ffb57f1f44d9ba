package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// TerminateError is the cancellation cause that ends a task with a named
// reason. The node cancels a task's context with it (shutdown, revoked,
// cancelled); the sandbox uses it for the limits it enforces itself.
type TerminateError struct {
	Reason string
}

func (e *TerminateError) Error() string { return "task terminated: " + e.Reason }

// Terminate returns the cause that ends a task with reason.
func Terminate(reason string) error { return &TerminateError{Reason: reason} }

// ReasonOf finds the termination reason in a context's cause: the
// TerminateError's reason, wall for a deadline, cancelled for any other
// cancellation, and "" while ctx is live.
func ReasonOf(ctx context.Context) string {
	var te *TerminateError
	if errors.As(context.Cause(ctx), &te) {
		return te.Reason
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ReasonWall
	}
	if ctx.Err() != nil {
		return ReasonCancelled
	}
	return ""
}

// meter enforces a task's CPU limit and records what it used. CPU time is
// the guest thread's own CPU clock where the platform has one (see
// cputime_linux.go), so a busy machine does not end tasks early; elsewhere
// it is wall time spent outside blocking host calls.
type meter struct {
	limit  time.Duration
	cancel context.CancelCauseFunc
	clock  threadClock

	mu      sync.Mutex
	stopped bool
	timer   *time.Timer
	used    time.Duration
}

// startMeter starts the CPU meter on the calling goroutine's thread. The
// caller must call stop on the same goroutine.
func startMeter(limit time.Duration, cancel context.CancelCauseFunc) *meter {
	m := &meter{limit: limit, cancel: cancel, clock: lockThreadClock()}
	if limit > 0 {
		m.mu.Lock()
		m.timer = time.AfterFunc(limit, m.check)
		m.mu.Unlock()
	}
	return m
}

// check runs when the guest may have used its CPU budget: it cannot have
// used more CPU than wall time, so the first check is at start+limit and
// each later one after the budget still left.
func (m *meter) check() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	used := m.clock.elapsed()
	if used >= m.limit {
		m.cancel(Terminate(ReasonCPU))
		return
	}
	m.timer.Reset(max(m.limit-used, time.Millisecond))
}

// poll checks the budget now, from the guest's own thread (the JS
// engine's interrupt calls it): the limit then holds even when the timer's
// goroutine waits for a CPU on a loaded machine.
func (m *meter) poll() {
	if m.limit <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.stopped && m.clock.elapsed() >= m.limit {
		m.cancel(Terminate(ReasonCPU))
	}
}

// pause and resume bracket blocking host calls on clocks that cannot tell
// CPU from waiting.
func (m *meter) pause()  { m.clock.pause() }
func (m *meter) resume() { m.clock.resume() }

// stop ends metering and returns the CPU time used.
func (m *meter) stop() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.stopped {
		m.stopped = true
		if m.timer != nil {
			m.timer.Stop()
		}
		m.used = m.clock.elapsed()
		m.clock.release()
	}
	return m.used
}

// memoryLimiter is a wazero MemoryAllocator that caps an instance's linear
// memory at the profile's limit and records the peak. A refused grow makes
// memory.grow return -1; when the guest then dies, the outcome is
// terminated:memory rather than a generic error.
type memoryLimiter struct {
	limit   uint64
	peak    atomic.Uint64
	refused atomic.Bool
}

var _ experimental.MemoryAllocator = (*memoryLimiter)(nil)

func (l *memoryLimiter) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	return &linearMemory{l: l, capHint: min(capacity, l.limit)}
}

// wasiPool keeps the linear memories of finished WASI instances (up to
// wasiPoolMaxBuffer each) for the next instances: a fresh instance of a
// small guest allocated its whole memory (128 KiB for the minimal guest),
// which was 60% of the bytes a node allocates per task and most of its
// garbage collection. A buffer is zeroed, up to what its last instance
// used, when it is taken, so no instance sees another's bytes (even one
// written after Free); sync.Pool lets the collector take idle ones.
var wasiPool sync.Pool // of *wasiBuffer

const wasiPoolMaxBuffer = 8 << 20

type wasiBuffer struct {
	buf   []byte
	dirty int // bytes of buf that may not be zero
}

type linearMemory struct {
	l       *memoryLimiter
	capHint uint64
	buf     []byte
	pooled  *wasiBuffer // where buf came from, to go back to wasiPool
}

func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.l.limit {
		m.l.refused.Store(true)
		return nil
	}
	if m.buf == nil && m.pooled == nil {
		if pb, _ := wasiPool.Get().(*wasiBuffer); pb != nil {
			if uint64(cap(pb.buf)) >= size {
				clear(pb.buf[:pb.dirty])
				pb.dirty = 0
				m.pooled, m.buf = pb, pb.buf[:0]
			} // else too small for this guest: left to the collector
		}
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
	} else {
		// Grow geometrically, but never reserve past the limit.
		c := max(size, m.capHint, uint64(cap(m.buf))*2)
		c = min(c, m.l.limit)
		nb := make([]byte, size, c)
		copy(nb, m.buf)
		if cap(m.buf) > jsPoolMaxBuffer {
			dropMemory(cap(m.buf))
		}
		m.buf = nb
	}
	for {
		p := m.l.peak.Load()
		if size <= p || m.l.peak.CompareAndSwap(p, size) {
			break
		}
	}
	return m.buf
}

func (m *linearMemory) Free() {
	switch {
	case cap(m.buf) > jsPoolMaxBuffer:
		dropMemory(cap(m.buf)) // see jsmemory.go
	case cap(m.buf) > 0 && cap(m.buf) <= wasiPoolMaxBuffer:
		pb := m.pooled
		if pb == nil {
			pb = &wasiBuffer{}
		}
		pb.buf, pb.dirty = m.buf[:0], len(m.buf)
		wasiPool.Put(pb)
	}
	m.buf, m.pooled = nil, nil
}

// cappedWriter keeps at most limit bytes; past it, it calls over once and
// drops the rest.
type cappedWriter struct {
	limit int64
	over  func()
	buf   []byte
	n     int64 // bytes offered, kept or not
	hit   bool
}

func (w *cappedWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	room := w.limit - int64(len(w.buf))
	if room >= int64(len(p)) {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if room > 0 {
		w.buf = append(w.buf, p[:room]...)
	}
	if !w.hit {
		w.hit = true
		if w.over != nil {
			w.over()
		}
	}
	return 0, fmt.Errorf("output limit of %d bytes reached", w.limit)
}
