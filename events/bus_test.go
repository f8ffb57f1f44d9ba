package events

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEmitStampsEnvelope(t *testing.T) {
	clock := newFakeClock(t0)
	b := testBus(t, clock.Now)
	sink := &memSink{}
	b.AddSink("mem", sink, SinkOptions{})
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := WithScope(context.Background(), Scope{Tenant: "demo", Lease: "lease-1", Traceparent: tp})
	ctx = WithScope(ctx, Scope{Task: "task-1"}) // inner scope adds the task
	b.Emit(ctx, New(ToolCallBlocked{Tool: "fetch", Destination: "169.254.169.254:80", Method: "GET", Clause: "address.private"}))
	flush(t, b)

	if sink.len() != 1 {
		t.Fatalf("got %d records", sink.len())
	}
	rec := sink.recs[0]
	var m map[string]any
	if err := json.Unmarshal(rec.JSON, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"specversion": "1.0", "type": "tool_call_blocked", "source": "/leash/nodes/node-a",
		"datacontenttype": "application/json", "time": "2026-11-25T09:30:00Z",
		"traceparent": tp, "leashtenant": "demo", "leashlease": "lease-1", "leashtask": "task-1", "leashnode": "node-a",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if id, _ := m["id"].(string); len(id) != 32 {
		t.Errorf("id %q", id)
	}
	data, _ := m["data"].(map[string]any)
	if data["clause"] != "address.private" || data["tool"] != "fetch" {
		t.Errorf("data %v", data)
	}
	// Attribute names follow the CloudEvents naming rule.
	name := regexp.MustCompile(`^[a-z0-9]{1,20}$`)
	for k := range m {
		if !name.MatchString(k) {
			t.Errorf("attribute %q breaks the CloudEvents naming rule", k)
		}
	}
	// The id is the storage key, in order of time.
	clock.Add(time.Nanosecond)
	b.Emit(ctx, New(NodeLeft{NodeID: "n2", Reason: "dead"}))
	flush(t, b)
	if !(sink.recs[0].Event.ID < sink.recs[1].Event.ID) {
		t.Errorf("ids not time-ordered: %s %s", sink.recs[0].Event.ID, sink.recs[1].Event.ID)
	}
}

func TestEveryTypeHasData(t *testing.T) {
	for _, ty := range Types {
		d := dataFor(ty)
		if d == nil {
			t.Fatalf("%s: no data type", ty)
		}
		if d.EventType() != ty {
			t.Errorf("%s: data says %s", ty, d.EventType())
		}
		if !ty.Known() {
			t.Errorf("%s not known", ty)
		}
	}
	if Type("nope").Known() {
		t.Error("unknown type known")
	}
}

// TestStuckSinkNeverBlocks is the promise of the package: a sink that
// blocks forever (ignoring cancellation) neither blocks nor fails
// emitters. 100,000 events go out quickly; the healthy sink gets every
// one, the stuck sink's queue fills and the rest are counted as drops.
func TestStuckSinkNeverBlocks(t *testing.T) {
	const n = 100_000
	var dropHook atomic.Int64
	var logs bytes.Buffer
	var logMu sync.Mutex
	b := NewBus(BusConfig{
		Node:            "node-a",
		OnDrop:          func(_ string, k int) { dropHook.Add(int64(k)) },
		Logger:          slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil)),
		DropLogInterval: 20 * time.Millisecond,
	})
	stuck := newStuckSink()
	defer close(stuck.release)
	healthy := &memSink{}
	b.AddSink("stuck", stuck, SinkOptions{Queue: 1000, MaxBatch: 100})
	b.AddSink("mem", healthy, SinkOptions{Queue: n, MaxBatch: 1000})

	ctx := WithScope(context.Background(), Scope{Tenant: "demo"})
	emit := func(b *Bus) (elapsed, worst time.Duration) {
		start := time.Now()
		for i := 0; i < n; i++ {
			s := time.Now()
			b.Emit(ctx, New(ToolCallAttempted{Tool: "fetch", Destination: "api.example:443", Method: "GET", BytesSent: int64(i)}))
			if d := time.Since(s); d > worst {
				worst = d
			}
		}
		return time.Since(start), worst
	}
	// The same emits on a bus with the healthy sink alone, for a ratio
	// (a loaded machine makes absolute times meaningless).
	base := NewBus(BusConfig{Node: "node-a", Logger: slog.New(slog.DiscardHandler)})
	base.AddSink("mem", &memSink{}, SinkOptions{Queue: n, MaxBatch: 1000})
	baseline, _ := emit(base)
	_ = base.Close(context.Background())
	elapsed, worst := emit(b)
	t.Logf("%d emits in %v (%.0f/s), slowest %v; %v without the stuck sink", n, elapsed, n/elapsed.Seconds(), worst, baseline)
	if elapsed > 10*baseline+time.Second {
		t.Errorf("emitting beside a stuck sink took %v, against %v without it", elapsed, baseline)
	}

	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Flush(fctx, "mem"); err != nil {
		t.Fatal(err)
	}
	if healthy.len() != n {
		t.Errorf("healthy sink got %d of %d", healthy.len(), n)
	}
	var st SinkStats
	for _, s := range b.Stats() {
		if s.Name == "stuck" {
			st = s
		}
	}
	// At most the queue and one batch in the sink's hands are not drops.
	if st.Dropped < n-1000-100 {
		t.Errorf("stuck sink dropped %d", st.Dropped)
	}
	if got := dropHook.Load(); got != int64(st.Dropped) {
		t.Errorf("OnDrop saw %d, stats %d", got, st.Dropped)
	}
	// Drops are logged.
	deadline := time.Now().Add(5 * time.Second)
	for {
		logMu.Lock()
		ok := strings.Contains(logs.String(), "events dropped") && strings.Contains(logs.String(), "sink=stuck")
		logMu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drops were not logged")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Close gives up on the stuck sink when its context ends.
	cctx, ccancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer ccancel()
	s := time.Now()
	if err := b.Close(cctx); err == nil {
		t.Error("Close returned nil with a stuck sink")
	}
	if d := time.Since(s); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	// Emit after Close is a no-op, not a panic.
	b.Emit(ctx, New(NodeLeft{NodeID: "x"}))
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestFailingSinkCountsDrops(t *testing.T) {
	b := testBus(t, nil)
	b.AddSink("bad", failingSink{}, SinkOptions{MaxBatch: 10})
	for i := 0; i < 25; i++ {
		b.Emit(context.Background(), New(TaskDead{Attempts: 3, Reason: "wall"}))
	}
	flush(t, b)
	st := b.Stats()[0]
	if st.Dropped != 25 || st.Written != 0 {
		t.Errorf("stats %+v", st)
	}
}

type failingSink struct{}

func (failingSink) WriteEvents(context.Context, []*Record) error {
	panic("disk on fire")
}

func TestEmitIsSafeConcurrently(t *testing.T) {
	b := testBus(t, nil)
	sink := &memSink{}
	b.AddSink("mem", sink, SinkOptions{Queue: 10_000})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				b.Emit(context.Background(), New(TaskEnqueued{Class: "bulk", Profile: "p"}))
			}
		}()
	}
	wg.Wait()
	flush(t, b)
	evs := sink.events()
	if len(evs) != 4000 {
		t.Fatalf("got %d", len(evs))
	}
	ids := map[string]bool{}
	for _, e := range evs {
		if ids[e.ID] {
			t.Fatalf("duplicate id %s", e.ID)
		}
		ids[e.ID] = true
	}
}

func TestSubscribe(t *testing.T) {
	b := testBus(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ch := b.Subscribe(ctx, Filter{Tenant: "demo", Types: []Type{TypeToolCallBlocked}})
	demo := WithScope(context.Background(), Scope{Tenant: "demo"})
	other := WithScope(context.Background(), Scope{Tenant: "other"})
	b.Emit(other, New(ToolCallBlocked{Clause: "x"}))
	b.Emit(demo, New(NodeLeft{NodeID: "n"}))
	b.Emit(demo, New(ToolCallBlocked{Clause: "profile.default_deny"}))
	select {
	case e := <-ch:
		var d ToolCallBlocked
		if err := e.DecodeData(&d); err != nil || d.Clause != "profile.default_deny" || e.Tenant != "demo" {
			t.Errorf("got %+v %+v", e, d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("event after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestSlowSubscriberIsCutOff(t *testing.T) {
	b := NewBus(BusConfig{SubscriberBuffer: 8})
	defer b.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := b.subscribe(ctx, Filter{})
	start := time.Now()
	for i := 0; i < 10_000; i++ {
		b.Emit(context.Background(), New(TaskEnqueued{Class: "bulk"}))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("emitting with a stalled subscriber took %v", d)
	}
	n := 0
	for range sub.ch {
		n++
	}
	if n != 8 || !sub.Lagged() {
		t.Errorf("got %d events, lagged %v", n, sub.Lagged())
	}
	// The cut-off subscriber is removed from the bus.
	deadline := time.Now().Add(5 * time.Second)
	for len(*b.subs.Load()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscriber not removed")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNilBusAndDiscard(t *testing.T) {
	var b *Bus
	b.Emit(context.Background(), New(NodeLeft{})) // no panic
	Discard.Emit(context.Background(), New(NodeLeft{}))
}

func TestBatchesAreSmallAndTimely(t *testing.T) {
	b := testBus(t, nil)
	var mu sync.Mutex
	var sizes []int
	got := make(chan struct{}, 100)
	b.AddSink("sizes", sinkFunc(func(_ context.Context, recs []*Record) error {
		mu.Lock()
		sizes = append(sizes, len(recs))
		mu.Unlock()
		got <- struct{}{}
		return nil
	}), SinkOptions{MaxBatch: 4, MaxDelay: 20 * time.Millisecond})
	for i := 0; i < 10; i++ {
		b.Emit(context.Background(), New(TaskEnqueued{}))
	}
	flush(t, b)
	mu.Lock()
	total := 0
	for _, s := range sizes {
		if s > 4 {
			t.Errorf("batch of %d > MaxBatch", s)
		}
		total += s
	}
	mu.Unlock()
	if total != 10 {
		t.Errorf("total %d", total)
	}
	for len(got) > 0 {
		<-got
	}
	// A lone event is written within MaxDelay, without Flush.
	b.Emit(context.Background(), New(TaskEnqueued{}))
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Error("lone event not written")
	}
}

type sinkFunc func(context.Context, []*Record) error

func (f sinkFunc) WriteEvents(ctx context.Context, r []*Record) error { return f(ctx, r) }
