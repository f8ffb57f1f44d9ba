package events

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Record is one emitted event as the sinks get it: the event and its
// encoding as one line of CloudEvents structured JSON (no newline). Sinks
// must treat both as read-only: every sink shares them.
type Record struct {
	Event Event
	JSON  []byte
	key   eventKey
}

// Sink receives batches of records from its own goroutine. WriteEvents may
// take as long as it likes (and retry inside, until ctx ends): while it
// runs, new records wait in the sink's bounded queue and, once that is
// full, are dropped and counted. An error drops the batch (counted too).
type Sink interface {
	WriteEvents(ctx context.Context, batch []*Record) error
}

// SinkOptions bound a sink's queue and shape its batches. Zero fields take
// the sink's own defaults (a sink may offer them with a method
// SinkOptions() SinkOptions), then DefaultSinkOptions.
type SinkOptions struct {
	Queue    int           // records waiting for the sink; beyond, drops
	MaxBatch int           // records per WriteEvents call
	MaxDelay time.Duration // how long a partial batch waits for more
}

// DefaultSinkOptions are the fallback queue and batch bounds.
var DefaultSinkOptions = SinkOptions{Queue: 4096, MaxBatch: 256, MaxDelay: 10 * time.Millisecond}

// SinkStats are one sink's counters since the bus started.
type SinkStats struct {
	Name    string `json:"name"`
	Written uint64 `json:"written"`
	Dropped uint64 `json:"dropped"` // queue full, batch failed, or bus closed
	Queued  int    `json:"queued"`
}

// BusConfig configures a Bus.
type BusConfig struct {
	// Node is the node id: the leashnode attribute, and the source
	// /leash/nodes/<Node> unless Source is set.
	Node   string
	Source string
	Logger *slog.Logger
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// OnDrop is called (from any goroutine, never blocking) when n
	// records are dropped for a sink; wire it to a metric.
	OnDrop func(sink string, n int)
	// OnEmit is called once per emitted event; wire it to a metric.
	OnEmit func(t Type)
	// DropLogInterval is how often drops are logged, one line per sink
	// that dropped since the last (default 10s).
	DropLogInterval time.Duration
	// SubscriberBuffer bounds each live subscription (default 256); a
	// subscriber that falls further behind is cut off.
	SubscriberBuffer int
	// Nonce fixes the middle of event ids (tests); 0 draws one at random.
	Nonce uint32
}

// Bus is the node's Emitter: it stamps events, encodes each once, and
// hands it to every sink's bounded queue and every live subscriber
// without ever blocking. Safe for concurrent use.
type Bus struct {
	cfg    BusConfig
	log    *slog.Logger
	now    func() time.Time
	source string
	nonce  uint64
	seq    atomic.Uint32

	mu      sync.Mutex // guards changes to sinks and subs
	sinks   atomic.Pointer[[]*runner]
	subs    atomic.Pointer[[]*subscriber]
	closed  atomic.Bool
	stop    chan struct{}
	ctx     context.Context // base context of sink writes; cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // runners
	logDone chan struct{}
	encErrs atomic.Uint64
	dropMu  sync.Mutex // guards runner.logged
}

var _ Emitter = (*Bus)(nil)

// NewBus starts a bus with no sinks; add them with AddSink.
func NewBus(cfg BusConfig) *Bus {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DropLogInterval <= 0 {
		cfg.DropLogInterval = 10 * time.Second
	}
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = 256
	}
	nonce := cfg.Nonce
	if nonce == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		nonce = binary.BigEndian.Uint32(b[:]) | 1
	}
	source := cfg.Source
	if source == "" {
		source = "/leash/nodes/" + cfg.Node
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		cfg: cfg, log: cfg.Logger.With("component", "events"), now: cfg.Now,
		source: source, nonce: uint64(nonce) << 32,
		stop: make(chan struct{}), ctx: ctx, cancel: cancel, logDone: make(chan struct{}),
	}
	b.sinks.Store(&[]*runner{})
	b.subs.Store(&[]*subscriber{})
	go b.logDrops()
	return b
}

// AddSink starts delivering events to s under name (a metric label: keep
// it short and fixed, e.g. "pebble", "stdout", "http").
func (b *Bus) AddSink(name string, s Sink, opts SinkOptions) {
	if o, ok := s.(interface{ SinkOptions() SinkOptions }); ok {
		opts = fillSinkOptions(opts, o.SinkOptions())
	}
	opts = fillSinkOptions(opts, DefaultSinkOptions)
	r := &runner{bus: b, name: name, sink: s, opts: opts, q: make(chan item, opts.Queue)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return
	}
	next := append(append([]*runner(nil), *b.sinks.Load()...), r)
	b.sinks.Store(&next)
	b.wg.Add(1)
	go r.run()
}

func fillSinkOptions(o, d SinkOptions) SinkOptions {
	if o.Queue <= 0 {
		o.Queue = d.Queue
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = d.MaxBatch
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = d.MaxDelay
	}
	return o
}

// Emit stamps e and hands it to every sink and subscriber. It never
// blocks and never fails: what a sink cannot take is dropped and counted.
// Fields of e left empty are filled: id, source, specversion, time,
// datacontenttype, node, and tenant, lease, task and traceparent from
// ctx's Scope. A nil *Bus discards.
func (b *Bus) Emit(ctx context.Context, e Event) {
	if b == nil || b.closed.Load() {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("event emit panicked", "type", string(e.Type), "panic", fmt.Sprint(r))
		}
	}()
	rec, err := b.stamp(ctx, e)
	if err != nil {
		n := b.encErrs.Add(1)
		if n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th, ... failure
			b.log.Error("event not encodable; dropped", "type", string(e.Type), "err", err, "total", n)
		}
		return
	}
	if b.cfg.OnEmit != nil {
		b.cfg.OnEmit(rec.Event.Type)
	}
	for _, r := range *b.sinks.Load() {
		r.offer(rec)
	}
	for _, s := range *b.subs.Load() {
		if s.f.Match(rec.Event) {
			s.offer(rec.Event)
		}
	}
}

// stamp fills e's envelope and encodes it.
func (b *Bus) stamp(ctx context.Context, e Event) (*Record, error) {
	sc := ScopeFrom(ctx)
	if e.Tenant == "" {
		e.Tenant = sc.Tenant
	}
	if e.Lease == "" {
		e.Lease = sc.Lease
	}
	if e.Task == "" {
		e.Task = sc.Task
	}
	if e.Traceparent == "" {
		e.Traceparent = sc.Traceparent
	}
	if e.Node == "" {
		e.Node = b.cfg.Node
	}
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	e.Time = e.Time.UTC()
	e.SpecVersion = SpecVersion
	e.Source = b.source
	if len(e.Data) == 0 {
		e.Data = json.RawMessage("{}")
	}
	e.DataContentType = ContentType
	var k eventKey
	if e.ID == "" {
		k = makeKey(e.Time, b.nonce|uint64(b.seq.Add(1)))
		e.ID = k.String()
	} else if kk, ok := parseEventKey(e.ID); ok {
		k = kk
	} else {
		k = makeKey(e.Time, fnv64(e.ID))
	}
	if e.Type == "" {
		return nil, errors.New("event has no type")
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return &Record{Event: e, JSON: raw, key: k}, nil
}

// makeKey builds the storage key of an event at t with sequence seq.
func makeKey(t time.Time, seq uint64) eventKey {
	var k eventKey
	binary.BigEndian.PutUint64(k[:8], timeNanos(t))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// timeNanos is t in Unix nanoseconds, clamped to the uint64 range.
func timeNanos(t time.Time) uint64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Flush waits until every event emitted before the call has been handed
// to the named sinks (all sinks when none are named) and written (or
// dropped), or until ctx ends. A sink that never returns makes Flush
// wait for ctx: use it in tests and at shutdown, never on a task's path.
func (b *Bus) Flush(ctx context.Context, sinks ...string) error {
	var acks []chan struct{}
	for _, r := range *b.sinks.Load() {
		if len(sinks) > 0 && !contains(sinks, r.name) {
			continue
		}
		ack := make(chan struct{})
		select {
		case r.q <- item{ack: ack}:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.stop:
			return errClosed
		}
		acks = append(acks, ack)
	}
	for _, ack := range acks {
		select {
		case <-ack:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

var errClosed = errors.New("events: bus closed")

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Stats returns each sink's counters.
func (b *Bus) Stats() []SinkStats {
	var out []SinkStats
	for _, r := range *b.sinks.Load() {
		out = append(out, SinkStats{Name: r.name, Written: r.written.Load(), Dropped: r.dropped.Load(), Queued: len(r.q)})
	}
	return out
}

// Close stops accepting events, lets every sink write what is queued, and
// ends live subscriptions. When ctx ends first, sink writes are
// cancelled, what is left is dropped (and counted), and Close returns
// ctx's error; a sink that ignores cancellation is abandoned.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return nil
	}
	close(b.stop)
	subs := *b.subs.Load()
	b.subs.Store(&[]*subscriber{})
	b.mu.Unlock()
	for _, s := range subs {
		s.end(false)
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		b.cancel()
		err = ctx.Err()
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
			b.log.Warn("event sink did not stop; abandoned")
		}
	}
	b.cancel()
	<-b.logDone
	b.reportDrops()
	return err
}

// logDrops writes, every DropLogInterval, one warning per sink that
// dropped records since the last.
func (b *Bus) logDrops() {
	defer close(b.logDone)
	t := time.NewTicker(b.cfg.DropLogInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.reportDrops()
		case <-b.stop:
			return
		}
	}
}

func (b *Bus) reportDrops() {
	b.dropMu.Lock()
	defer b.dropMu.Unlock()
	for _, r := range *b.sinks.Load() {
		d := r.dropped.Load()
		if d > r.logged {
			attrs := []any{"sink", r.name, "dropped", d - r.logged, "dropped_total", d}
			if e := r.lastErr.Load(); e != nil {
				attrs = append(attrs, "last_error", *e)
			}
			b.log.Warn("events dropped", attrs...)
			r.logged = d
		}
	}
}

// item is one queue entry: a record, or a flush marker (ack).
type item struct {
	rec *Record
	ack chan struct{}
}

// runner owns one sink: its queue, its goroutine, its counters.
type runner struct {
	bus     *Bus
	name    string
	sink    Sink
	opts    SinkOptions
	q       chan item
	written atomic.Uint64
	dropped atomic.Uint64
	lastErr atomic.Pointer[string]
	logged  uint64 // drops already logged
}

func (r *runner) offer(rec *Record) {
	select {
	case r.q <- item{rec: rec}:
	default:
		r.drop(1)
	}
}

func (r *runner) drop(n int) {
	r.dropped.Add(uint64(n))
	if f := r.bus.cfg.OnDrop; f != nil {
		f(r.name, n)
	}
}

func (r *runner) run() {
	defer r.bus.wg.Done()
	batch := make([]*Record, 0, r.opts.MaxBatch)
	var acks []chan struct{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var it item
		select {
		case it = <-r.q:
		case <-r.bus.stop:
			r.drain()
			return
		}
		batch, acks = batch[:0], acks[:0]
		add := func(it item) bool { // reports whether the batch must go now
			if it.ack != nil {
				acks = append(acks, it.ack)
				return true
			}
			batch = append(batch, it.rec)
			return len(batch) >= r.opts.MaxBatch
		}
		full := add(it)
		waited := false
	gather:
		for !full {
			select {
			case it = <-r.q:
				full = add(it)
				continue
			default:
			}
			if waited {
				break
			}
			waited = true
			timer.Reset(r.opts.MaxDelay)
			for !full {
				select {
				case it = <-r.q:
					full = add(it)
				case <-timer.C:
					break gather
				case <-r.bus.stop:
					timer.Stop()
					break gather
				}
			}
			timer.Stop() // Go ≥ 1.23: no stale tick survives Stop
		}
		r.write(batch)
		for _, a := range acks {
			close(a)
		}
	}
}

// drain writes what is queued when the bus closes.
func (r *runner) drain() {
	batch := make([]*Record, 0, r.opts.MaxBatch)
	for {
		select {
		case it := <-r.q:
			if it.ack != nil {
				close(it.ack)
				continue
			}
			batch = append(batch, it.rec)
			if len(batch) >= r.opts.MaxBatch {
				r.write(batch)
				batch = batch[:0]
			}
		default:
			r.write(batch)
			return
		}
	}
}

func (r *runner) write(batch []*Record) {
	if len(batch) == 0 {
		return
	}
	if r.bus.ctx.Err() != nil {
		r.drop(len(batch))
		return
	}
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("sink panicked: %v", p)
			}
		}()
		return r.sink.WriteEvents(r.bus.ctx, batch)
	}()
	if err != nil {
		msg := err.Error()
		r.lastErr.Store(&msg)
		r.drop(len(batch))
		return
	}
	r.written.Add(uint64(len(batch)))
}

// subscriber is one live subscription.
type subscriber struct {
	f      Filter
	ch     chan Event
	mu     sync.Mutex
	ended  bool
	lagged bool
	done   chan struct{}
}

func (s *subscriber) offer(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	select {
	case s.ch <- e:
	default:
		s.ended, s.lagged = true, true
		close(s.ch)
		close(s.done)
	}
}

func (s *subscriber) end(lagged bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended, s.lagged = true, lagged
	close(s.ch)
	close(s.done)
}

// Lagged reports whether the subscription was cut off for falling behind.
func (s *subscriber) Lagged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lagged
}

// Subscribe returns the live events matching f (its time bounds apply;
// limit and cursor do not), from now until ctx ends. The channel is
// bounded: a subscriber that falls behind by more than the buffer is cut
// off (its channel closes while ctx is still live) and never slows
// emitters. The channel also closes when ctx ends or the bus closes.
func (b *Bus) Subscribe(ctx context.Context, f Filter) <-chan Event {
	return b.subscribe(ctx, f).ch
}

func (b *Bus) subscribe(ctx context.Context, f Filter) *subscriber {
	s := &subscriber{f: f, ch: make(chan Event, b.cfg.SubscriberBuffer), done: make(chan struct{})}
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		s.end(false)
		return s
	}
	next := append(append([]*subscriber(nil), *b.subs.Load()...), s)
	b.subs.Store(&next)
	b.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			s.end(false)
		case <-s.done:
			if s.Lagged() {
				b.log.Info("event subscriber fell behind; cut off", "buffer", cap(s.ch))
			}
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		cur := *b.subs.Load()
		next := make([]*subscriber, 0, len(cur))
		for _, x := range cur {
			if x != s {
				next = append(next, x)
			}
		}
		b.subs.Store(&next)
	}()
	return s
}
