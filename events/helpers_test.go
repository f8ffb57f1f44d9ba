package events

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// openMemDB opens a Pebble database on an in-memory file system.
func openMemDB(t testing.TB) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memSink keeps what it gets.
type memSink struct {
	mu   sync.Mutex
	recs []*Record
}

func (m *memSink) WriteEvents(_ context.Context, b []*Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, b...)
	return nil
}

func (m *memSink) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

func (m *memSink) events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Event, len(m.recs))
	for i, r := range m.recs {
		out[i] = r.Event
	}
	return out
}

// stuckSink blocks forever in its first write, ignoring the context, as
// a wedged disk or a hung client might.
type stuckSink struct {
	entered atomic.Int64
	release chan struct{}
}

func newStuckSink() *stuckSink { return &stuckSink{release: make(chan struct{})} }

func (s *stuckSink) WriteEvents(context.Context, []*Record) error {
	s.entered.Add(1)
	<-s.release
	return nil
}

var t0 = time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC)

// testBus is a bus with a fixed nonce and clock, closed at cleanup.
func testBus(t testing.TB, clock func() time.Time) *Bus {
	t.Helper()
	if clock == nil {
		clock = time.Now
	}
	b := NewBus(BusConfig{Node: "node-a", Now: clock, Nonce: 0x5eed})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return b
}

func flush(t testing.TB, b *Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// quietLogger keeps Pebble's informational lines out of test output.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Errorf(string, ...any)        {}
func (quietLogger) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
