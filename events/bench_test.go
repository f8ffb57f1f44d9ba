package events

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// openDiskDB opens Pebble on the real file system (the node's setup,
// without the node's cache tuning).
func openDiskDB(b *testing.B) *pebble.DB {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func benchEvent(i int) Event {
	return New(ToolCallAttempted{Tool: "fetch", Destination: "api.partner.example:443", Method: "GET",
		Status: 200, BytesSent: 512, BytesReceived: int64(i), DurationMS: 12})
}

// BenchmarkEmitPebble: the emitter's cost on the caller's goroutine with
// the Pebble store attached as a sink. The store drains in the
// background; what it could not take in time is reported as dropped.
func BenchmarkEmitPebble(b *testing.B) {
	db := openDiskDB(b)
	st, err := OpenStore(db, StoreConfig{RetentionInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	bus := NewBus(BusConfig{Node: "bench"})
	defer bus.Close(context.Background())
	bus.AddSink("pebble", st, SinkOptions{})
	ctx := WithScope(context.Background(), Scope{Tenant: "demo", Lease: "lease-1", Task: "task-1",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bus.Emit(ctx, benchEvent(i))
	}
	b.StopTimer()
	if err := bus.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(bus.Stats()[0].Dropped)/float64(b.N), "dropped/op")
}

// BenchmarkStoreWrite: what the Pebble sink sustains, in events/s, in the
// bus's batches of 512 (the store's default batch).
func BenchmarkStoreWrite(b *testing.B) {
	db := openDiskDB(b)
	st, err := OpenStore(db, StoreConfig{RetentionInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	bus := NewBus(BusConfig{Node: "bench"})
	defer bus.Close(context.Background())
	ctx := WithScope(context.Background(), Scope{Tenant: "demo", Lease: "lease-1", Task: "task-1",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	const batch = 512
	recs := make([]*Record, batch)
	for i := range recs {
		recs[i], _ = bus.stamp(ctx, benchEvent(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		for j := range recs { // fresh keys for every batch
			recs[j].key = makeKey(time.Now(), uint64(i+j))
		}
		if err := st.WriteEvents(context.Background(), recs[:min(batch, b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEmitNoSinks: the cost of stamping and encoding alone.
func BenchmarkEmitNoSinks(b *testing.B) {
	bus := NewBus(BusConfig{Node: "bench"})
	defer bus.Close(context.Background())
	ctx := WithScope(context.Background(), Scope{Tenant: "demo"})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bus.Emit(ctx, benchEvent(i))
	}
}

// BenchmarkQuery: one page of 100 from a store of 100,000 events, by
// each access path.
func BenchmarkQuery(b *testing.B) {
	db := openDiskDB(b)
	clock := newFakeClock(t0)
	st, err := OpenStore(db, StoreConfig{RetentionInterval: time.Hour, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	bus := NewBus(BusConfig{Node: "bench", Now: clock.Now})
	defer bus.Close(context.Background())
	bus.AddSink("pebble", st, SinkOptions{Queue: 1 << 17})
	const n = 100_000
	for i := 0; i < n; i++ {
		sc := Scope{Tenant: fmt.Sprintf("tenant-%d", i%10), Lease: fmt.Sprintf("lease-%d", i%1000), Task: fmt.Sprintf("task-%d", i/4)}
		bus.Emit(WithScope(context.Background(), sc), New(dataFor(Types[i%len(Types)])))
		clock.Add(time.Millisecond)
	}
	if err := bus.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	for name, f := range map[string]Filter{
		"all":         {},
		"all-desc":    {Desc: true},
		"since":       {Since: t0.Add(50 * time.Second)},
		"tenant":      {Tenant: "tenant-3"},
		"tenant-type": {Tenant: "tenant-3", Types: []Type{TypeToolCallBlocked}},
		"type":        {Types: []Type{TypeToolCallBlocked, TypeExecutionCompleted}},
		"lease":       {Lease: "lease-7"},
		"task":        {Task: "task-77"},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				evs, _, err := st.Query(context.Background(), f)
				if err != nil || len(evs) == 0 {
					b.Fatal(err, len(evs))
				}
			}
		})
	}
}
