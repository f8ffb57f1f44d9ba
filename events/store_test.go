package events

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// storeBus wires a store to a bus the way the node does.
func storeBus(t testing.TB, db *pebble.DB, clock func() time.Time, cfg StoreConfig) (*Bus, *Store) {
	t.Helper()
	if cfg.RetentionInterval == 0 {
		cfg.RetentionInterval = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = clock
	}
	st, err := OpenStore(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := testBus(t, clock)
	b.AddSink("pebble", st, SinkOptions{})
	return b, st
}

// randomEvents emits n events over an hour with random correlation.
func randomEvents(t testing.TB, b *Bus, clock *fakeClock, n int, rng *rand.Rand) {
	t.Helper()
	tenants := []string{"demo", "acme", "globex", ""}
	for i := 0; i < n; i++ {
		sc := Scope{
			Tenant: tenants[rng.IntN(len(tenants))],
			Lease:  fmt.Sprintf("lease-%d", rng.IntN(8)),
			Task:   fmt.Sprintf("task-%d", rng.IntN(40)),
		}
		if rng.IntN(3) > 0 {
			sc.Traceparent = fmt.Sprintf("00-%032x-00f067aa0ba902b7-01", 1+rng.IntN(5))
		}
		ty := Types[rng.IntN(len(Types))]
		e := New(dataFor(ty))
		b.Emit(WithScope(context.Background(), sc), e)
		if rng.IntN(4) == 0 {
			clock.Add(time.Duration(rng.IntN(int(2 * time.Second))))
		}
	}
	flush(t, b)
}

// queryAll pages through every result of f.
func queryAll(t testing.TB, st *Store, f Filter) []Event {
	t.Helper()
	var all []Event
	for page := 0; ; page++ {
		evs, next, err := st.Query(context.Background(), f)
		if err != nil {
			t.Fatalf("query %+v: %v", f, err)
		}
		if len(evs) > max(f.Limit, 0) && f.Limit > 0 {
			t.Fatalf("page of %d > limit %d", len(evs), f.Limit)
		}
		all = append(all, evs...)
		if next == "" {
			return all
		}
		if page > 10_000 {
			t.Fatal("no end of pages")
		}
		f.Cursor = next
	}
}

func TestQueryMatchesBruteForce(t *testing.T) {
	clock := newFakeClock(t0)
	db := openMemDB(t)
	b, st := storeBus(t, db, clock.Now, StoreConfig{})
	rng := rand.New(rand.NewPCG(1, 2))
	sink := &memSink{}
	b.AddSink("mem", sink, SinkOptions{Queue: 10_000})
	randomEvents(t, b, clock, 2000, rng)
	all := sink.events()
	if int(st.Count()) != len(all) {
		t.Fatalf("count %d, emitted %d", st.Count(), len(all))
	}

	filters := []Filter{
		{},
		{Tenant: "demo"},
		{Tenant: "acme", Types: []Type{TypeToolCallBlocked, TypeExecutionCompleted}},
		{Types: []Type{TypeNodeJoined}},
		{Types: []Type{TypeNodeJoined, TypeLeaderChanged, TypeTaskDead}},
		{Lease: "lease-3"},
		{Lease: "lease-3", Tenant: "globex"},
		{Task: "task-7"},
		{Task: "task-7", Types: []Type{TypeSandboxIssued}},
		{Trace: fmt.Sprintf("%032x", 2)},
		{Trace: fmt.Sprintf("%032x", 2), Tenant: "demo"},
		{Since: t0.Add(10 * time.Minute)},
		{Since: t0.Add(5 * time.Minute), Until: t0.Add(9 * time.Minute), Tenant: "demo"},
		{Until: t0.Add(3 * time.Minute), Types: []Type{TypeBudgetWarning, TypeBudgetExhausted}},
		{Tenant: "nobody"},
	}
	for i, f := range filters {
		for _, desc := range []bool{false, true} {
			for _, limit := range []int{0, 1, 7, 1000} {
				f := f
				f.Desc, f.Limit = desc, limit
				t.Run(fmt.Sprintf("%d/desc=%v/limit=%d", i, desc, limit), func(t *testing.T) {
					var want []string
					for _, e := range all {
						if f.Match(e) {
							want = append(want, e.ID)
						}
					}
					slices.Sort(want)
					if desc {
						slices.Reverse(want)
					}
					var got []string
					for _, e := range queryAll(t, st, f) {
						got = append(got, e.ID)
					}
					if !slices.Equal(got, want) {
						t.Errorf("got %d events, want %d", len(got), len(want))
					}
				})
			}
		}
	}
}

func TestQueryReturnsWholeEvents(t *testing.T) {
	clock := newFakeClock(t0)
	b, st := storeBus(t, openMemDB(t), clock.Now, StoreConfig{})
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := WithScope(context.Background(), Scope{Tenant: "demo", Lease: "l1", Task: "t1", Traceparent: tp})
	tokens := &ModelTokens{Model: "m", Input: 10, Output: 20}
	b.Emit(ctx, New(ExecutionCompleted{Outcome: "ok", Profile: "reader", DurationMS: 12, CPUMS: 3, EgressBytes: 99, ModelTokens: tokens}))
	flush(t, b)
	evs, next, err := st.Query(context.Background(), Filter{Trace: "4bf92f3577b34da6a3ce929d0e0e4736"})
	if err != nil || next != "" || len(evs) != 1 {
		t.Fatalf("%v %q %d", err, next, len(evs))
	}
	e := evs[0]
	var d ExecutionCompleted
	if err := e.DecodeData(&d); err != nil {
		t.Fatal(err)
	}
	if e.Tenant != "demo" || e.Lease != "l1" || e.Task != "t1" || e.Traceparent != tp || !e.Time.Equal(t0) ||
		d.EgressBytes != 99 || d.ModelTokens == nil || d.ModelTokens.Output != 20 {
		t.Errorf("%+v %+v", e, d)
	}
	got, ok, err := st.Get(e.ID)
	if err != nil || !ok || got.ID != e.ID {
		t.Errorf("Get: %v %v", ok, err)
	}
}

func TestCursorIsBoundToItsQuery(t *testing.T) {
	clock := newFakeClock(t0)
	b, st := storeBus(t, openMemDB(t), clock.Now, StoreConfig{})
	for i := 0; i < 5; i++ {
		b.Emit(WithScope(context.Background(), Scope{Tenant: "demo"}), New(TaskEnqueued{}))
	}
	flush(t, b)
	_, next, err := st.Query(context.Background(), Filter{Tenant: "demo", Limit: 2})
	if err != nil || next == "" {
		t.Fatal(err, next)
	}
	for _, f := range []Filter{
		{Tenant: "acme", Limit: 2, Cursor: next},
		{Tenant: "demo", Desc: true, Cursor: next},
		{Tenant: "demo", Cursor: "garbage"},
	} {
		if _, _, err := st.Query(context.Background(), f); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
	// The limit may change between pages.
	evs, _, err := st.Query(context.Background(), Filter{Tenant: "demo", Limit: 10, Cursor: next})
	if err != nil || len(evs) != 3 {
		t.Errorf("%v %d", err, len(evs))
	}
}

func TestScanBudget(t *testing.T) {
	clock := newFakeClock(t0)
	b, st := storeBus(t, openMemDB(t), clock.Now, StoreConfig{ScanBudget: 10})
	for i := 0; i < 35; i++ {
		b.Emit(WithScope(context.Background(), Scope{Lease: "x", Tenant: "hay"}), New(TaskEnqueued{}))
	}
	b.Emit(WithScope(context.Background(), Scope{Lease: "x", Tenant: "needle"}), New(TaskEnqueued{}))
	flush(t, b)
	// The lease index has 36 entries, 35 of them for another tenant: the
	// query pages through them ten at a time, returning cursors.
	evs, next, err := st.Query(context.Background(), Filter{Lease: "x", Tenant: "needle"})
	if err != nil || len(evs) != 0 || next == "" {
		t.Errorf("first page: %v %d %q", err, len(evs), next)
	}
	got := queryAll(t, st, Filter{Lease: "x", Tenant: "needle"})
	if len(got) != 1 || got[0].Tenant != "needle" {
		t.Errorf("got %d", len(got))
	}
	evs, next, err = st.Query(context.Background(), Filter{Since: t0})
	if err != nil || len(evs) != 10 || next == "" {
		t.Errorf("%v %d %q", err, len(evs), next)
	}
}

func countKeys(t testing.TB, db *pebble.DB, prefix string) int {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

func TestRetention(t *testing.T) {
	clock := newFakeClock(t0)
	db := openMemDB(t)
	b, st := storeBus(t, db, clock.Now, StoreConfig{MaxAge: time.Hour, MaxCount: 100, RetentionChunk: 7})
	emit := func(n int) {
		for i := 0; i < n; i++ {
			b.Emit(WithScope(context.Background(), Scope{Tenant: "demo", Lease: "l", Task: fmt.Sprint(i),
				Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}), New(TaskEnqueued{}))
			clock.Add(time.Second)
		}
		flush(t, b)
	}
	emit(60) // t0 .. t0+59s
	clock.Add(2 * time.Hour)
	emit(30) // all of the first 60 are now older than an hour
	n, err := st.Retain()
	if err != nil || n != 60 || st.Count() != 30 {
		t.Fatalf("deleted %d (%v), count %d", n, err, st.Count())
	}
	// Index entries went with their events: each event has tenant,
	// tenant+type, lease, task, trace and type entries.
	if got := countKeys(t, db, DefaultPrefix+"i/"); got != 30*6 {
		t.Errorf("%d index entries for 30 events", got)
	}
	emit(150)
	n, err = st.Retain()
	if err != nil || n != 80 || st.Count() != 100 {
		t.Fatalf("deleted %d (%v), count %d", n, err, st.Count())
	}
	if got := countKeys(t, db, DefaultPrefix+"t/"); got != 100 {
		t.Errorf("%d events stored", got)
	}
	// The oldest went: the first remaining is the 81st of the 180.
	evs, _, _ := st.Query(context.Background(), Filter{Limit: 1})
	all := queryAll(t, st, Filter{Lease: "l"})
	if len(evs) != 1 || len(all) != 100 || evs[0].ID != all[0].ID {
		t.Errorf("oldest remaining %v", evs)
	}
}

func TestRetentionRunsInBackground(t *testing.T) {
	clock := newFakeClock(t0)
	b, st := storeBus(t, openMemDB(t), clock.Now, StoreConfig{MaxCount: 10, RetentionInterval: 10 * time.Millisecond})
	for i := 0; i < 50; i++ {
		b.Emit(context.Background(), New(TaskEnqueued{}))
	}
	flush(t, b)
	deadline := time.Now().Add(5 * time.Second)
	for st.Count() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("count %d", st.Count())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCountSurvivesReopen(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pebble.Open("", &pebble.Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock(t0)
	st, err := OpenStore(db, StoreConfig{Now: clock.Now, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBus(BusConfig{Now: clock.Now})
	b.AddSink("pebble", st, SinkOptions{})
	for i := 0; i < 42; i++ {
		b.Emit(context.Background(), New(TaskEnqueued{}))
	}
	b.Close(context.Background())
	st.Close()
	db.Close()

	db, err = pebble.Open("", &pebble.Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Without the count key, the store counts once.
	for _, drop := range []bool{false, true} {
		if drop {
			if err := db.Delete([]byte(DefaultPrefix+"m/count"), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		st, err = OpenStore(db, StoreConfig{Now: clock.Now, RetentionInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if st.Count() != 42 {
			t.Errorf("drop=%v: count %d", drop, st.Count())
		}
		st.Close()
	}
}

func TestLongValuesAreIndexedByPrefix(t *testing.T) {
	clock := newFakeClock(t0)
	b, st := storeBus(t, openMemDB(t), clock.Now, StoreConfig{})
	long := func(c byte) string { return string(slices.Repeat([]byte{'t'}, 200)) + string(c) }
	b.Emit(WithScope(context.Background(), Scope{Tenant: long('a')}), New(TaskEnqueued{}))
	b.Emit(WithScope(context.Background(), Scope{Tenant: long('b')}), New(TaskEnqueued{}))
	flush(t, b)
	evs, _, err := st.Query(context.Background(), Filter{Tenant: long('b')})
	if err != nil || len(evs) != 1 || evs[0].Tenant != long('b') {
		t.Errorf("%v %d", err, len(evs))
	}
}
