// Package scheduler shares a node's sandbox slots between tasks. This is
// the walking skeleton's version: a bounded pool with a bounded wait
// queue; weighted fair queueing between classes and tenants replaces it
// (issue 7) behind the same Acquire.
package scheduler

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Errors of Acquire.
var (
	ErrQueueFull    = errors.New("queue full")
	ErrQueueTimeout = errors.New("timed out waiting for a slot")
)

// Config sizes a Pool.
type Config struct {
	Slots    int           // tasks running at once
	MaxQueue int           // tasks waiting at once; more are refused
	MaxWait  time.Duration // how long a task waits for a slot
}

// Pool hands out sandbox slots.
type Pool struct {
	cfg     Config
	slots   chan struct{}
	waiting atomic.Int64
	running atomic.Int64
}

// New returns a pool.
func New(cfg Config) *Pool {
	if cfg.Slots <= 0 {
		cfg.Slots = 1
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Second
	}
	return &Pool{cfg: cfg, slots: make(chan struct{}, cfg.Slots)}
}

// Acquire waits for a slot for a task of class for tenant. The returned
// release must be called once when the task ends.
func (p *Pool) Acquire(ctx context.Context, class, tenant string) (release func(), err error) {
	select {
	case p.slots <- struct{}{}:
		return p.releaser(), nil
	default:
	}
	if p.waiting.Add(1) > int64(p.cfg.MaxQueue) {
		p.waiting.Add(-1)
		return nil, ErrQueueFull
	}
	defer p.waiting.Add(-1)
	t := time.NewTimer(p.cfg.MaxWait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		return p.releaser(), nil
	case <-t.C:
		return nil, ErrQueueTimeout
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (p *Pool) releaser() func() {
	p.running.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			p.running.Add(-1)
			<-p.slots
		}
	}
}

// Load is the fraction of slots in use plus queued work, for gossip.
func (p *Pool) Load() (running, waiting int64, slots int) {
	return p.running.Load(), p.waiting.Load(), p.cfg.Slots
}
