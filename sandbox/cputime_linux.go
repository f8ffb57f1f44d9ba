//go:build linux

package sandbox

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// threadClock reads the CPU clock of the OS thread a guest runs on. The
// guest's goroutine is locked to that thread for the whole run, so the
// thread's CPU time is the guest's CPU time (plus the host calls it makes),
// and a watchdog on another thread can read it. Time the goroutine spends
// blocked (network, sleep) does not count, exactly as a CPU limit should.
type threadClock struct {
	clockID int32
	start   time.Duration
}

// Linux encodes a thread's CPU clock id as MAKE_THREAD_CPUCLOCK(tid,
// CPUCLOCK_SCHED): ((~tid) << 3) | CPUCLOCK_PERTHREAD_MASK(4) | SCHED(2).
func threadCPUClockID(tid int) int32 { return int32((^tid)<<3 | 6) }

func lockThreadClock() threadClock {
	runtime.LockOSThread()
	c := threadClock{clockID: threadCPUClockID(unix.Gettid())}
	c.start = c.now()
	return c
}

func (c threadClock) now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(c.clockID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func (c threadClock) elapsed() time.Duration { return c.now() - c.start }
func (c threadClock) pause()                 {}
func (c threadClock) resume()                {}
func (c threadClock) release()               { runtime.UnlockOSThread() }
