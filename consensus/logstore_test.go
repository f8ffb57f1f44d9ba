package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// newTestStore opens a LogStore on a fresh database that is closed when the
// test ends.
func newTestStore(t testing.TB) (*LogStore, *pebble.DB) {
	t.Helper()
	db := openTestDB(t, t.TempDir())
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close db: %v", err)
		}
	})
	s, err := NewLogStore(db)
	if err != nil {
		t.Fatalf("NewLogStore: %v", err)
	}
	return s, db
}

func testLog(index uint64) *raft.Log {
	return &raft.Log{
		Index: index,
		Term:  index/10 + 1,
		Type:  raft.LogCommand,
		Data:  fmt.Appendf(nil, "cmd-%d", index),
	}
}

func storeRange(t testing.TB, s *LogStore, from, to uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := from; ; i++ {
		logs = append(logs, testLog(i))
		if i == to { // not i <= to: to may be math.MaxUint64
			break
		}
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs(%d..%d): %v", from, to, err)
	}
}

// sameLog reports whether a and b hold the same entry: equal fields, the
// same nil-ness of the byte slices, and equal instants.
func sameLog(a, b *raft.Log) bool {
	sameBytes := func(x, y []byte) bool { return bytes.Equal(x, y) && (x == nil) == (y == nil) }
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		sameBytes(a.Data, b.Data) && sameBytes(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt) && a.AppendedAt.IsZero() == b.AppendedAt.IsZero()
}

func TestLogStoreIndexes(t *testing.T) {
	type span struct{ min, max uint64 }
	tests := map[string]struct {
		store     []span // ranges stored, in order
		del       []span // ranges deleted, in order, after storing
		wantFirst uint64
		wantLast  uint64
		present   []uint64
		absent    []uint64
	}{
		"empty":                 {wantFirst: 0, wantLast: 0, absent: []uint64{0, 1, math.MaxUint64}},
		"one entry":             {store: []span{{7, 7}}, wantFirst: 7, wantLast: 7, present: []uint64{7}, absent: []uint64{6, 8}},
		"three entries":         {store: []span{{1, 3}}, wantFirst: 1, wantLast: 3, present: []uint64{1, 2, 3}, absent: []uint64{0, 4}},
		"two batches":           {store: []span{{1, 3}, {4, 9}}, wantFirst: 1, wantLast: 9, present: []uint64{1, 4, 9}},
		"gap after restore":     {store: []span{{1, 3}, {100, 101}}, wantFirst: 1, wantLast: 101, present: []uint64{3, 100}, absent: []uint64{4, 99}},
		"index above 2^56":      {store: []span{{1 << 60, 1<<60 + 2}}, wantFirst: 1 << 60, wantLast: 1<<60 + 2, absent: []uint64{1}},
		"largest index":         {store: []span{{math.MaxUint64 - 1, math.MaxUint64}}, wantFirst: math.MaxUint64 - 1, wantLast: math.MaxUint64},
		"delete front":          {store: []span{{1, 10}}, del: []span{{1, 4}}, wantFirst: 5, wantLast: 10, present: []uint64{5, 10}, absent: []uint64{1, 4}},
		"delete back":           {store: []span{{1, 10}}, del: []span{{7, 10}}, wantFirst: 1, wantLast: 6, present: []uint64{1, 6}, absent: []uint64{7, 10}},
		"delete middle":         {store: []span{{1, 10}}, del: []span{{4, 6}}, wantFirst: 1, wantLast: 10, present: []uint64{3, 7}, absent: []uint64{4, 5, 6}},
		"delete whole":          {store: []span{{1, 10}}, del: []span{{1, 10}}, wantFirst: 0, wantLast: 0, absent: []uint64{1, 10}},
		"delete past both ends": {store: []span{{5, 10}}, del: []span{{0, math.MaxUint64}}, wantFirst: 0, wantLast: 0, absent: []uint64{5, 10}},
		"delete one":            {store: []span{{1, 3}}, del: []span{{2, 2}}, wantFirst: 1, wantLast: 3, present: []uint64{1, 3}, absent: []uint64{2}},
		"delete disjoint":       {store: []span{{1, 3}}, del: []span{{20, 30}}, wantFirst: 1, wantLast: 3, present: []uint64{1, 2, 3}},
		"delete min above max":  {store: []span{{1, 3}}, del: []span{{3, 1}}, wantFirst: 1, wantLast: 3, present: []uint64{1, 2, 3}},
		"compact then append":   {store: []span{{1, 10}}, del: []span{{1, 8}, {9, 10}}, wantFirst: 0, wantLast: 0},
		"delete largest index":  {store: []span{{math.MaxUint64 - 2, math.MaxUint64}}, del: []span{{math.MaxUint64 - 1, math.MaxUint64}}, wantFirst: math.MaxUint64 - 2, wantLast: math.MaxUint64 - 2},
		"truncate then rewrite": {
			// A follower drops a conflicting suffix and takes the
			// leader's entries in its place.
			store: []span{{1, 10}}, del: []span{{6, 10}}, wantFirst: 1, wantLast: 5, absent: []uint64{6},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, _ := newTestStore(t)
			for _, sp := range tc.store {
				storeRange(t, s, sp.min, sp.max)
			}
			for _, sp := range tc.del {
				if err := s.DeleteRange(sp.min, sp.max); err != nil {
					t.Fatalf("DeleteRange(%d, %d): %v", sp.min, sp.max, err)
				}
			}
			first, err := s.FirstIndex()
			if err != nil || first != tc.wantFirst {
				t.Errorf("FirstIndex() = %d, %v; want %d, nil", first, err, tc.wantFirst)
			}
			last, err := s.LastIndex()
			if err != nil || last != tc.wantLast {
				t.Errorf("LastIndex() = %d, %v; want %d, nil", last, err, tc.wantLast)
			}
			for _, idx := range tc.present {
				var got raft.Log
				if err := s.GetLog(idx, &got); err != nil {
					t.Errorf("GetLog(%d): %v", idx, err)
				} else if want := testLog(idx); !sameLog(&got, want) {
					t.Errorf("GetLog(%d) = %+v, want %+v", idx, got, want)
				}
			}
			for _, idx := range tc.absent {
				var got raft.Log
				// raft compares with ==, so the sentinel must not be wrapped.
				if err := s.GetLog(idx, &got); err != raft.ErrLogNotFound {
					t.Errorf("GetLog(%d) error = %v, want raft.ErrLogNotFound", idx, err)
				}
			}
		})
	}
}

func TestLogStoreRoundTrip(t *testing.T) {
	appended := time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.FixedZone("CET", 3600))
	tests := map[string]*raft.Log{
		"zero fields":         {Index: 1},
		"empty data":          {Index: 2, Data: []byte{}, Extensions: []byte{}},
		"command":             {Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte("hello")},
		"all fields":          {Index: 4, Term: 9, Type: raft.LogConfiguration, Data: []byte{0, 1, 0xff}, Extensions: []byte("ext"), AppendedAt: appended},
		"noop":                {Index: 5, Term: 3, Type: raft.LogNoop},
		"barrier":             {Index: 6, Term: 3, Type: raft.LogBarrier},
		"unknown type":        {Index: 7, Term: 3, Type: raft.LogType(255)},
		"large data":          {Index: 8, Term: 1, Data: bytes.Repeat([]byte("x"), 1<<20)},
		"time before 1970":    {Index: 9, AppendedAt: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)},
		"time far ahead":      {Index: 10, AppendedAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"time with monotonic": {Index: 11, AppendedAt: time.Now()},
		"max index and term":  {Index: math.MaxUint64, Term: math.MaxUint64},
	}
	s, _ := newTestStore(t)
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			if err := s.StoreLog(want); err != nil {
				t.Fatalf("StoreLog: %v", err)
			}
			var got raft.Log
			if err := s.GetLog(want.Index, &got); err != nil {
				t.Fatalf("GetLog(%d): %v", want.Index, err)
			}
			if !sameLog(&got, want) {
				t.Errorf("GetLog(%d) = %+v, want %+v", want.Index, got, want)
			}
		})
	}
}

func TestLogStoreStoreLogsReplaces(t *testing.T) {
	s, _ := newTestStore(t)
	storeRange(t, s, 1, 5)
	// A new leader's entries overwrite the old ones at the same indexes.
	repl := []*raft.Log{
		{Index: 4, Term: 7, Data: []byte("new-4")},
		{Index: 5, Term: 7, Data: []byte("new-5")},
		{Index: 6, Term: 7, Data: []byte("new-6")},
	}
	if err := s.StoreLogs(repl); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	for _, want := range repl {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil || !sameLog(&got, want) {
			t.Errorf("GetLog(%d) = %+v, %v; want %+v", want.Index, got, err, want)
		}
	}
	if err := s.StoreLogs(nil); err != nil {
		t.Errorf("StoreLogs(nil): %v", err)
	}
	if last, _ := s.LastIndex(); last != 6 {
		t.Errorf("LastIndex() = %d, want 6", last)
	}
}

// TestLogStoreOwnPrefixOnly puts keys right next to the raft prefixes, in
// the other prefixes of the shared database, and checks that the store
// neither sees nor touches them.
func TestLogStoreOwnPrefixOnly(t *testing.T) {
	s, db := newTestStore(t)
	neighbours := []string{
		"r/k\xff", "r/l", "r/l0", "r/m", "r/s", "r/t",
		PrefixState + "lease/1", PrefixLocal + "event/1", "\x00", "\xff\xff",
	}
	for _, k := range neighbours {
		if err := db.Set([]byte(k), []byte("other"), pebble.Sync); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
	}
	if first, err := s.FirstIndex(); err != nil || first != 0 {
		t.Errorf("FirstIndex() with only neighbours = %d, %v; want 0, nil", first, err)
	}
	storeRange(t, s, 3, 9)
	if err := s.Set([]byte("CurrentTerm"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	for _, k := range neighbours {
		val, closer, err := db.Get([]byte(k))
		if err != nil {
			t.Errorf("neighbour %q: %v", k, err)
			continue
		}
		if string(val) != "other" {
			t.Errorf("neighbour %q = %q, want %q", k, val, "other")
		}
		closer.Close()
	}
	if last, err := s.LastIndex(); err != nil || last != 0 {
		t.Errorf("LastIndex() after deleting all = %d, %v; want 0, nil", last, err)
	}
}

func TestLogStoreCorruptRecord(t *testing.T) {
	tests := map[string]struct {
		key, val []byte
	}{
		"garbage":        {key: logKey(1), val: []byte("not msgpack")},
		"empty":          {key: logKey(1), val: nil},
		"index mismatch": {key: logKey(1), val: mustMarshalLog(t, &raft.Log{Index: 2})},
		"future version": {key: logKey(1), val: []byte{0x91, 0x02}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, db := newTestStore(t)
			if err := db.Set(tc.key, tc.val, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			err := s.GetLog(1, &got)
			if !errors.Is(err, ErrCorruptLogRecord) {
				t.Errorf("GetLog(1) error = %v, want ErrCorruptLogRecord", err)
			}
		})
	}
	t.Run("malformed key", func(t *testing.T) {
		dir := t.TempDir()
		db := openTestDB(t, dir)
		defer db.Close()
		if err := db.Set([]byte(PrefixRaftLog+"abc"), []byte("x"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, err := NewLogStore(db); err == nil {
			t.Error("NewLogStore on a database with a malformed log key succeeded, want error")
		}
	})
}

func mustMarshalLog(t testing.TB, l *raft.Log) []byte {
	t.Helper()
	b, err := marshalLog(l)
	if err != nil {
		t.Fatalf("marshalLog: %v", err)
	}
	return b
}

func TestStableStore(t *testing.T) {
	type step struct {
		op      string // "set", "get", "setu", "getu"
		key     string
		val     []byte
		u       uint64
		wantErr error // for get and getu; nil means success
	}
	tests := map[string][]step{
		"get missing": {
			{op: "get", key: "nope", wantErr: ErrKeyNotFound},
		},
		"getu missing": {
			{op: "getu", key: "CurrentTerm", wantErr: ErrKeyNotFound},
		},
		"set get": {
			{op: "set", key: "LastVoteCand", val: []byte("node-1")},
			{op: "get", key: "LastVoteCand", val: []byte("node-1")},
		},
		"overwrite": {
			{op: "set", key: "k", val: []byte("one")},
			{op: "set", key: "k", val: []byte("two")},
			{op: "get", key: "k", val: []byte("two")},
		},
		"empty value is not missing": {
			{op: "set", key: "k", val: []byte{}},
			{op: "get", key: "k", val: []byte{}},
		},
		"binary key": {
			{op: "set", key: "\x00\xff/k", val: []byte{1}},
			{op: "get", key: "\x00\xff/k", val: []byte{1}},
			{op: "get", key: "\x00\xff/", wantErr: ErrKeyNotFound},
		},
		"empty key": {
			{op: "set", key: "", val: []byte("v")},
			{op: "get", key: "", val: []byte("v")},
		},
		"setu getu": {
			{op: "setu", key: "CurrentTerm", u: 42},
			{op: "getu", key: "CurrentTerm", u: 42},
		},
		"getu zero is stored": {
			{op: "setu", key: "LastVoteTerm", u: 0},
			{op: "getu", key: "LastVoteTerm", u: 0},
		},
		"getu max": {
			{op: "setu", key: "k", u: math.MaxUint64},
			{op: "getu", key: "k", u: math.MaxUint64},
		},
		"getu of a short value": {
			{op: "set", key: "k", val: []byte{1, 2, 3}},
			{op: "getu", key: "k", wantErr: errAny},
		},
		"keys are separate from log": {
			{op: "setu", key: "k", u: 1},
			{op: "get", key: "other", wantErr: ErrKeyNotFound},
		},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			s, _ := newTestStore(t)
			for i, st := range steps {
				key := []byte(st.key)
				switch st.op {
				case "set":
					if err := s.Set(key, st.val); err != nil {
						t.Fatalf("step %d: Set(%q): %v", i, key, err)
					}
				case "setu":
					if err := s.SetUint64(key, st.u); err != nil {
						t.Fatalf("step %d: SetUint64(%q): %v", i, key, err)
					}
				case "get":
					got, err := s.Get(key)
					checkStableErr(t, i, "Get", key, err, st.wantErr)
					if st.wantErr == nil && (!bytes.Equal(got, st.val) || got == nil) {
						t.Errorf("step %d: Get(%q) = %#v, want %#v (non-nil)", i, key, got, st.val)
					}
					if st.wantErr != nil && got != nil {
						t.Errorf("step %d: Get(%q) = %#v with an error, want nil", i, key, got)
					}
				case "getu":
					got, err := s.GetUint64(key)
					checkStableErr(t, i, "GetUint64", key, err, st.wantErr)
					if want := st.u; st.wantErr != nil {
						want = 0
						if got != want {
							t.Errorf("step %d: GetUint64(%q) = %d with an error, want 0", i, key, got)
						}
					} else if got != want {
						t.Errorf("step %d: GetUint64(%q) = %d, want %d", i, key, got, want)
					}
				default:
					t.Fatalf("step %d: unknown op %q", i, st.op)
				}
			}
		})
	}
}

// errAny stands for "some error" in table rows.
var errAny = errors.New("any error")

func checkStableErr(t *testing.T, step int, op string, key []byte, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("step %d: %s(%q): %v", step, op, key, err)
	case want == errAny && err == nil:
		t.Errorf("step %d: %s(%q) succeeded, want an error", step, op, key)
	case want == ErrKeyNotFound:
		// raft tests err.Error() == "not found"; hold the store to exactly
		// that, and to errors.Is for our own callers.
		if err == nil || err.Error() != "not found" || !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("step %d: %s(%q) error = %v, want %q", step, op, key, err, "not found")
		}
	}
}

func TestStableStoreGetReturnsCopy(t *testing.T) {
	s, _ := newTestStore(t)
	val := []byte("value")
	if err := s.Set([]byte("k"), val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store must have copied on Set
	got, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'Y' // and must hand out a copy on Get
	again, err := s.Get([]byte("k"))
	if err != nil || string(again) != "value" {
		t.Errorf("Get after mutating copies = %q, %v; want %q", again, err, "value")
	}
}

// TestRaftExistingState holds the store to raft's reading of "not found":
// an empty store is a fresh node, a stored term is not.
func TestRaftExistingState(t *testing.T) {
	s, _ := newTestStore(t)
	snaps := raft.NewInmemSnapshotStore()
	has, err := raft.HasExistingState(s, s, snaps)
	if err != nil || has {
		t.Fatalf("HasExistingState(empty) = %v, %v; want false, nil", has, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	has, err = raft.HasExistingState(s, s, snaps)
	if err != nil || !has {
		t.Fatalf("HasExistingState(term 3) = %v, %v; want true, nil", has, err)
	}
}

func TestLogStoreReopen(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	s, err := NewLogStore(db)
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, s, 1, 100)
	if err := s.DeleteRange(1, 20); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 12); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTestDB(t, dir)
	defer db.Close()
	s, err = NewLogStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if first, err := s.FirstIndex(); err != nil || first != 21 {
		t.Errorf("FirstIndex() after reopen = %d, %v; want 21", first, err)
	}
	if last, err := s.LastIndex(); err != nil || last != 90 {
		t.Errorf("LastIndex() after reopen = %d, %v; want 90", last, err)
	}
	for i := uint64(21); i <= 90; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil || !sameLog(&got, testLog(i)) {
			t.Fatalf("GetLog(%d) after reopen = %+v, %v", i, got, err)
		}
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 12 {
		t.Errorf("GetUint64(CurrentTerm) after reopen = %d, %v; want 12", term, err)
	}
	if cand, err := s.Get([]byte("LastVoteCand")); err != nil || string(cand) != "node-2" {
		t.Errorf("Get(LastVoteCand) after reopen = %q, %v; want node-2", cand, err)
	}
}

// TestLogStoreHammer runs raft's access pattern from many goroutines at once:
// one appender (the leader's log), one compactor deleting from the front
// (snapshots), readers of arbitrary entries (replication), and stable-store
// writers and readers. Run it with -race.
func TestLogStoreHammer(t *testing.T) {
	const (
		total    = 3000
		batch    = 16
		trailing = 64
		readers  = 4
	)
	s, _ := newTestStore(t)
	var (
		appended  atomic.Uint64 // highest index stored
		compacted atomic.Uint64 // highest index surely deleted
		deleting  atomic.Uint64 // highest index that may be deleted
		done      = make(chan struct{})
		wg        sync.WaitGroup
		errs      = make(chan error, 16)
	)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}

	wg.Add(1)
	go func() { // appender
		defer wg.Done()
		defer close(done)
		for next := uint64(1); next <= total; next += batch {
			logs := make([]*raft.Log, 0, batch)
			for i := next; i < next+batch && i <= total; i++ {
				logs = append(logs, testLog(i))
			}
			if err := s.StoreLogs(logs); err != nil {
				fail(err)
				return
			}
			appended.Store(logs[len(logs)-1].Index)
		}
	}()

	wg.Add(1)
	go func() { // compactor
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			last := appended.Load()
			from := compacted.Load() + 1
			if last <= trailing || last-trailing < from {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			to := last - trailing
			deleting.Store(to)
			if err := s.DeleteRange(from, to); err != nil {
				fail(err)
				return
			}
			compacted.Store(to)
		}
	}()

	for r := range readers {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for {
				select {
				case <-done:
					return
				default:
				}
				// What surely happened before reading the store must
				// show; what may be happening may show.
				lo, hi := compacted.Load(), appended.Load()
				first, err := s.FirstIndex()
				if err != nil {
					fail(err)
					return
				}
				last, err := s.LastIndex()
				if err != nil {
					fail(err)
					return
				}
				maxDeleted := deleting.Load()
				if hi > 0 && (first <= lo || first > maxDeleted+1 || last < hi || first > last) {
					fail(fmt.Errorf("first=%d last=%d while compacted=%d..%d appended=%d", first, last, lo, maxDeleted, hi))
					return
				}
				if hi == 0 {
					continue
				}
				idx := 1 + rng.Uint64N(hi)
				var got raft.Log
				err = s.GetLog(idx, &got)
				switch {
				case err == nil:
					if !sameLog(&got, testLog(idx)) {
						fail(fmt.Errorf("GetLog(%d) = %+v", idx, got))
						return
					}
				case err == raft.ErrLogNotFound:
					if idx > deleting.Load() {
						fail(fmt.Errorf("GetLog(%d) not found, compacting only to %d", idx, deleting.Load()))
						return
					}
				default:
					fail(err)
					return
				}
				key := fmt.Appendf(nil, "k%d", seed)
				if err := s.SetUint64(key, idx); err != nil {
					fail(err)
					return
				}
				if v, err := s.GetUint64(key); err != nil || v != idx {
					fail(fmt.Errorf("GetUint64(%s) = %d, %v; want %d", key, v, err, idx))
					return
				}
			}
		}(uint64(r))
	}

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if last, err := s.LastIndex(); err != nil || last != total {
		t.Errorf("LastIndex() = %d, %v; want %d", last, err, total)
	}
}

// countFSM is a trivial raft.FSM: it counts the commands applied and the
// sum of their payloads, and snapshots both.
type countFSM struct {
	mu      sync.Mutex
	applied uint64
	sum     uint64
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied++
	f.sum += binary.BigEndian.Uint64(l.Data)
	return f.applied
}

func (f *countFSM) state() (applied, sum uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.sum
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	applied, sum := f.state()
	return countSnapshot{applied: applied, sum: sum}, nil
}

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [16]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return fmt.Errorf("read count snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = binary.BigEndian.Uint64(b[:8])
	f.sum = binary.BigEndian.Uint64(b[8:])
	return nil
}

type countSnapshot struct{ applied, sum uint64 }

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	b := binary.BigEndian.AppendUint64(nil, s.applied)
	b = binary.BigEndian.AppendUint64(b, s.sum)
	if _, err := sink.Write(b); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

func testRaftConfig(id raft.ServerID) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.TrailingLogs = 100
	conf.SnapshotThreshold = 1 << 20 // only the explicit snapshot below
	conf.SnapshotInterval = time.Hour
	conf.LogOutput = io.Discard
	return conf
}

func waitLeader(t *testing.T, r *raft.Raft) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 5s, state %v", r.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRaftOnPebble runs a one-node raft on the store: bootstrap, 500
// commands, a snapshot that compacts the log, then a restart on the same
// Pebble directory that must come back with the same log and state.
func TestRaftOnPebble(t *testing.T) {
	const commands = 500
	dir := t.TempDir()
	snaps := raft.NewInmemSnapshotStore() // survives the restart, like a snapshot dir
	conf := testRaftConfig("node-1")

	db := openTestDB(t, dir)
	store, err := NewLogStore(db)
	if err != nil {
		t.Fatal(err)
	}
	addr, trans := raft.NewInmemTransport("")
	fsm := &countFSM{}
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	boot := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
	if err := r.BootstrapCluster(boot).Error(); err != nil {
		t.Fatalf("BootstrapCluster: %v", err)
	}
	waitLeader(t, r)

	futures := make([]raft.ApplyFuture, 0, commands)
	var wantSum uint64
	for i := range uint64(commands) {
		wantSum += i
		futures = append(futures, r.Apply(binary.BigEndian.AppendUint64(nil, i), 5*time.Second))
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	if applied, sum := fsm.state(); applied != commands || sum != wantSum {
		t.Fatalf("FSM after apply = %d commands, sum %d; want %d, %d", applied, sum, commands, wantSum)
	}

	if err := r.Snapshot().Error(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	lastIndex := r.LastIndex()
	first, err := store.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if last != lastIndex {
		t.Errorf("store LastIndex() = %d, raft LastIndex() = %d", last, lastIndex)
	}
	if want := lastIndex - conf.TrailingLogs + 1; first != want {
		t.Errorf("store FirstIndex() after compaction = %d, want %d (last %d, trailing %d)", first, want, lastIndex, conf.TrailingLogs)
	}
	if err := store.GetLog(first-1, new(raft.Log)); err != raft.ErrLogNotFound {
		t.Errorf("GetLog(%d) below the compacted front: %v, want raft.ErrLogNotFound", first-1, err)
	}
	term, err := store.GetUint64([]byte("CurrentTerm"))
	if err != nil || term == 0 {
		t.Errorf("stable CurrentTerm = %d, %v; want > 0", term, err)
	}

	if err := r.Shutdown().Error(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	trans.Close()
	if err := db.Close(); err != nil {
		t.Fatalf("close db: %v", err)
	}

	// Restart on the same directory.
	db = openTestDB(t, dir)
	defer db.Close()
	store, err = NewLogStore(db)
	if err != nil {
		t.Fatal(err)
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil || !has {
		t.Fatalf("HasExistingState after restart = %v, %v; want true", has, err)
	}
	_, trans = raft.NewInmemTransport(addr)
	defer trans.Close()
	fsm = &countFSM{}
	r, err = raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatalf("NewRaft after restart: %v", err)
	}
	defer func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	if got := r.LastIndex(); got != lastIndex {
		t.Errorf("LastIndex() after restart = %d, want %d", got, lastIndex)
	}
	if got, err := store.FirstIndex(); err != nil || got != first {
		t.Errorf("store FirstIndex() after restart = %d, %v; want %d", got, err, first)
	}
	if gotTerm, _ := store.GetUint64([]byte("CurrentTerm")); gotTerm < term {
		t.Errorf("CurrentTerm after restart = %d, want >= %d", gotTerm, term)
	}
	waitLeader(t, r)
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatalf("Barrier after restart: %v", err)
	}
	if applied, sum := fsm.state(); applied != commands || sum != wantSum {
		t.Errorf("FSM after restart = %d commands, sum %d; want %d, %d", applied, sum, commands, wantSum)
	}
}

func FuzzDecodeLog(f *testing.F) {
	seeds := []*raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("cmd")},
		{Index: 7, Term: 2, Type: raft.LogConfiguration, Data: []byte{1, 2}, Extensions: []byte("x"), AppendedAt: time.Unix(1700000000, 5).UTC()},
		{Index: math.MaxUint64, Term: math.MaxUint64, Type: 255, Data: []byte{}, AppendedAt: time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, l := range seeds {
		f.Add(mustMarshalLog(f, l), l.Index, l.Term, uint8(l.Type), l.Data, l.Extensions, l.AppendedAt.Unix(), int64(l.AppendedAt.Nanosecond()))
	}
	for _, raw := range [][]byte{
		nil, {0x97}, {0x91, 0x02}, {0x97, 0x01, 0xc0},
		{0x97, 0x01, 0x01, 0x01, 0x00, 0xc6, 0xff, 0xff, 0xff, 0xff},                   // bin32 of 4 GiB
		{0x97, 0x01, 0x01, 0x01, 0x00, 0xc0, 0xc0, 0xc9, 0xff, 0xff, 0xff, 0xff, 0xff}, // ext32 of 4 GiB
		{0x97, 0x01, 0x01, 0x01, 0x00, 0xc0, 0xc0, 0xc0, 0x00},                         // trailing byte
		{0x97, 0x01, 0xff, 0x01, 0x00, 0xc0, 0xc0, 0xc0},                               // negative index
	} {
		f.Add(raw, uint64(0), uint64(0), uint8(0), []byte(nil), []byte(nil), int64(0), int64(0))
	}
	f.Fuzz(func(t *testing.T, raw []byte, index, term uint64, typ uint8, data, ext []byte, sec, nsec int64) {
		// Any input: an entry or an error, never a panic.
		var got raft.Log
		if err := decodeLog(raw, &got); err == nil {
			// A decoded entry encodes and decodes to itself.
			again := mustMarshalLog(t, &got)
			var back raft.Log
			if err := decodeLog(again, &back); err != nil {
				t.Fatalf("re-decode of %x: %v", again, err)
			}
			if !sameLog(&got, &back) {
				t.Fatalf("re-decode = %+v, want %+v", back, got)
			}
		} else if !errors.Is(err, ErrCorruptLogRecord) {
			t.Fatalf("decode error %v does not wrap ErrCorruptLogRecord", err)
		}

		// A valid entry built from the inputs round-trips.
		want := &raft.Log{Index: index, Term: term, Type: raft.LogType(typ), Data: data, Extensions: ext}
		if sec != 0 || nsec != 0 {
			// Keep within years ±4000 around 1970 so the instant is representable.
			want.AppendedAt = time.Unix(sec%(1<<37), nsec%1e9)
		}
		var back raft.Log
		if err := decodeLog(mustMarshalLog(t, want), &back); err != nil {
			t.Fatalf("decode of %+v: %v", want, err)
		}
		if !sameLog(&back, want) {
			t.Fatalf("round trip = %+v, want %+v", back, want)
		}
	})
}

func BenchmarkStoreLogs(b *testing.B) {
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, _ := newTestStore(b)
			payload := bytes.Repeat([]byte("p"), 256)
			logs := make([]*raft.Log, size)
			next := uint64(1)
			b.SetBytes(int64(size * len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				for i := range logs {
					logs[i] = &raft.Log{Index: next, Term: 1, Data: payload, AppendedAt: time.Now()}
					next++
				}
				if err := s.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
