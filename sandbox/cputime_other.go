//go:build !linux

package sandbox

import (
	"sync"
	"time"
)

// threadClock, where threads have no readable CPU clock, approximates CPU
// time by wall time outside blocking host calls.
type threadClock struct{ *wallClock }

type wallClock struct {
	mu      sync.Mutex
	start   time.Time
	paused  time.Duration
	pausing time.Time
}

func lockThreadClock() threadClock { return threadClock{&wallClock{start: time.Now()}} }

func (c threadClock) elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.paused
	if !c.pausing.IsZero() {
		p += time.Since(c.pausing)
	}
	return time.Since(c.start) - p
}

func (c threadClock) pause() {
	c.mu.Lock()
	c.pausing = time.Now()
	c.mu.Unlock()
}

func (c threadClock) resume() {
	c.mu.Lock()
	if !c.pausing.IsZero() {
		c.paused += time.Since(c.pausing)
		c.pausing = time.Time{}
	}
	c.mu.Unlock()
}

func (c threadClock) release() {}
