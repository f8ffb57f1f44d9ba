// Package scheduler shares a node's sandbox slots between tasks by
// hierarchical Start-time Fair Queueing (SFQ): between the interactive and
// bulk classes by class weight (default 4:1), and inside a class between
// tenants by tenant weight. docs/scheduling.md gives the algorithm, its
// fairness bound and the rules for lending idle capacity.
//
// Concurrency: a Scheduler is safe for concurrent use. Acquire blocks the
// caller until a slot is granted, the wait times out (interactive), the
// queue is full, or ctx ends; the caller then leaves the queue at once.
package scheduler

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// Classes.
const (
	Interactive = "interactive"
	Bulk        = "bulk"
)

// Errors of Acquire.
var (
	ErrQueueFull    = errors.New("queue full")
	ErrQueueTimeout = errors.New("timed out waiting for a slot")
	ErrUnknownClass = errors.New("unknown class")
)

// ClassConfig sizes one class.
type ClassConfig struct {
	Weight        float64       // share of slots when both classes wait
	MaxConcurrent int           // slots the class may hold at once
	MaxQueue      int           // tasks of the class waiting at once; more are refused
	MaxWait       time.Duration // longest wait for a slot; 0: until ctx ends
}

// Config sizes a Scheduler.
type Config struct {
	Slots       int
	Interactive ClassConfig
	Bulk        ClassConfig
	// BulkWhileInteractiveWaits caps the slots bulk may hold while
	// interactive work waits: a running bulk task is never pre-empted, so
	// this is how bulk gives capacity back. Bulk starts nothing new while
	// it holds this many (or more) and interactive work waits.
	BulkWhileInteractiveWaits int
	// TenantWeight gives a tenant's weight inside a class (default 1).
	TenantWeight func(class, tenant string) float64
	// After is the clock for wait limits; default time.After.
	After func(time.Duration) <-chan time.Time
}

// DefaultConfig is a node's default for a number of slots.
func DefaultConfig(slots int) Config {
	slots = max(slots, 1)
	return Config{
		Slots:                     slots,
		Interactive:               ClassConfig{Weight: 4, MaxConcurrent: slots, MaxQueue: 256, MaxWait: 2 * time.Second},
		Bulk:                      ClassConfig{Weight: 1, MaxConcurrent: slots, MaxQueue: 1024},
		BulkWhileInteractiveWaits: max(1, slots/5),
	}
}

// Scheduler hands out sandbox slots.
type Scheduler struct {
	cfg     Config
	mu      sync.Mutex
	running int
	v       float64 // virtual time between classes
	classes [2]*class
}

type class struct {
	name    string
	cfg     ClassConfig
	running int
	queued  int
	v       float64 // virtual time between tenants of this class
	start   float64 // start tag of the class's next dispatch
	finish  float64
	flows   map[string]*flow
	stats   ClassStats
	lastEnd time.Time // when a task of the class last gave its slot back
}

// flow is one tenant's queue inside a class.
type flow struct {
	weight float64
	start  float64
	finish float64
	q      []*waiter
}

type waiter struct {
	ready   chan struct{}
	granted bool
	enqueue time.Time
}

// ClassStats are a class's counters (for metrics).
type ClassStats struct {
	Running, Queued int
	Granted, Shed   int64 // shed: refused (queue full) or timed out
	WaitTotal       time.Duration
	// WaitHist counts granted waits by WaitBuckets: WaitHist[i] waits of
	// at most WaitBuckets[i] (and above WaitBuckets[i-1]); the last
	// entry counts longer waits. Not cumulative.
	WaitHist [len(WaitBuckets) + 1]int64
}

// WaitBuckets are the upper bounds of the wait-time histogram.
var WaitBuckets = [...]time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

func (st *ClassStats) observeWait(d time.Duration) {
	st.WaitTotal += d
	for i, b := range WaitBuckets {
		if d <= b {
			st.WaitHist[i]++
			return
		}
	}
	st.WaitHist[len(WaitBuckets)]++
}

// New returns a scheduler.
func New(cfg Config) *Scheduler {
	d := DefaultConfig(cfg.Slots)
	if cfg.Slots <= 0 {
		cfg.Slots = d.Slots
	}
	fill := func(c *ClassConfig, def ClassConfig) {
		if c.Weight <= 0 {
			c.Weight = def.Weight
		}
		if c.MaxConcurrent <= 0 || c.MaxConcurrent > cfg.Slots {
			c.MaxConcurrent = cfg.Slots
		}
		if c.MaxQueue <= 0 {
			c.MaxQueue = def.MaxQueue
		}
	}
	fill(&cfg.Interactive, d.Interactive)
	fill(&cfg.Bulk, d.Bulk)
	if cfg.BulkWhileInteractiveWaits <= 0 {
		cfg.BulkWhileInteractiveWaits = d.BulkWhileInteractiveWaits
	}
	if cfg.TenantWeight == nil {
		cfg.TenantWeight = func(string, string) float64 { return 1 }
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	s := &Scheduler{cfg: cfg}
	s.classes[0] = &class{name: Interactive, cfg: cfg.Interactive, flows: map[string]*flow{}}
	s.classes[1] = &class{name: Bulk, cfg: cfg.Bulk, flows: map[string]*flow{}}
	return s
}

func (s *Scheduler) class(name string) *class {
	switch name {
	case Interactive:
		return s.classes[0]
	case Bulk:
		return s.classes[1]
	}
	return nil
}

// Acquire waits for a slot for a task of class for tenant. The returned
// release must be called once when the task ends.
func (s *Scheduler) Acquire(ctx context.Context, className, tenant string) (release func(), err error) {
	s.mu.Lock()
	c := s.class(className)
	if c == nil {
		s.mu.Unlock()
		return nil, ErrUnknownClass
	}
	if c.queued >= c.cfg.MaxQueue {
		c.stats.Shed++
		s.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := &waiter{ready: make(chan struct{}), enqueue: time.Now()}
	s.enqueue(c, tenant, w)
	s.dispatch()
	if w.granted {
		s.mu.Unlock()
		return s.releaser(c), nil
	}
	s.mu.Unlock()

	var timeout <-chan time.Time
	if c.cfg.MaxWait > 0 {
		timeout = s.cfg.After(c.cfg.MaxWait)
	}
	select {
	case <-w.ready:
		return s.releaser(c), nil
	case <-timeout:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		// Granted while we gave up: keep the slot; the caller gets it.
		return s.releaser(c), nil
	}
	s.remove(c, tenant, w)
	c.stats.Shed++
	return nil, err
}

// enqueue appends w to tenant's flow; a flow that was idle restarts at
// the class's virtual time (SFQ: start = max(v, finish)).
func (s *Scheduler) enqueue(c *class, tenant string, w *waiter) {
	f := c.flows[tenant]
	if f == nil {
		f = &flow{weight: s.cfg.TenantWeight(c.name, tenant)}
		if f.weight <= 0 {
			f.weight = 1
		}
		c.flows[tenant] = f
	}
	if len(f.q) == 0 {
		f.start = math.Max(c.v, f.finish)
	}
	if c.queued == 0 {
		c.start = math.Max(s.v, c.finish)
	}
	f.q = append(f.q, w)
	c.queued++
	c.stats.Queued = c.queued
}

func (s *Scheduler) remove(c *class, tenant string, w *waiter) {
	f := c.flows[tenant]
	if f == nil {
		return
	}
	for i, x := range f.q {
		if x == w {
			f.q = append(f.q[:i], f.q[i+1:]...)
			c.queued--
			c.stats.Queued = c.queued
			break
		}
	}
	s.gc(c, tenant, f)
}

// gc forgets idle flows whose finish tag is behind virtual time: they
// would restart at v anyway.
func (s *Scheduler) gc(c *class, tenant string, f *flow) {
	if len(f.q) == 0 && f.finish <= c.v {
		delete(c.flows, tenant)
	}
}

// eligible says whether class c may start a task now.
func (s *Scheduler) eligible(c *class) bool {
	if c.queued == 0 || c.running >= c.cfg.MaxConcurrent {
		return false
	}
	if c.name == Bulk && s.classes[0].queued > 0 && c.running >= s.cfg.BulkWhileInteractiveWaits {
		return false
	}
	return true
}

// dispatch grants slots while there are free slots and eligible waiters:
// the class with the smallest start tag, then inside it the tenant with
// the smallest start tag; ties go to interactive and then to the tenant
// name, so the order is deterministic.
func (s *Scheduler) dispatch() {
	for s.running < s.cfg.Slots {
		var c *class
		for _, k := range s.classes {
			if s.eligible(k) && (c == nil || k.start < c.start) {
				c = k
			}
		}
		if c == nil {
			return
		}
		var tenant string
		var f *flow
		for name, k := range c.flows {
			if len(k.q) == 0 {
				continue
			}
			if f == nil || k.start < f.start || k.start == f.start && name < tenant {
				tenant, f = name, k
			}
		}
		w := f.q[0]
		f.q = f.q[1:]
		c.queued--
		// Tenant tags inside the class.
		c.v = f.start
		f.finish = f.start + 1/f.weight
		if len(f.q) > 0 {
			f.start = f.finish
		}
		// Class tags.
		s.v = c.start
		c.finish = c.start + 1/c.cfg.Weight
		if c.queued > 0 {
			c.start = math.Max(s.v, c.finish)
		}
		s.gc(c, tenant, f)
		s.running++
		c.running++
		c.stats.Running, c.stats.Queued = c.running, c.queued
		c.stats.Granted++
		c.stats.observeWait(time.Since(w.enqueue))
		w.granted = true
		close(w.ready)
	}
}

func (s *Scheduler) releaser(c *class) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.running--
			c.running--
			c.stats.Running = c.running
			c.lastEnd = time.Now()
			s.dispatch()
		})
	}
}

// Active reports whether a class has tasks running or waiting, or gave a
// slot back within the last within: whether it is in use now.
func (s *Scheduler) Active(className string, within time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.class(className)
	if c == nil {
		return false
	}
	return c.running > 0 || c.queued > 0 || time.Since(c.lastEnd) < within
}

// Weight is a class's weight.
func (s *Scheduler) Weight(className string) float64 {
	if c := s.class(className); c != nil {
		return c.cfg.Weight
	}
	return 0
}

// Load is what gossip advertises: slots in use, tasks waiting, slots.
func (s *Scheduler) Load() (running, waiting int64, slots int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.running), int64(s.classes[0].queued + s.classes[1].queued), s.cfg.Slots
}

// Stats returns each class's counters.
func (s *Scheduler) Stats() map[string]ClassStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]ClassStats{Interactive: s.classes[0].stats, Bulk: s.classes[1].stats}
}
