package events

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// DefaultPrefix is where the store keeps events in the node's Pebble
// database: under x/, the node-local (unreplicated) prefix.
const DefaultPrefix = "x/ev/"

// StoreConfig configures a Store. Zero values take the defaults.
type StoreConfig struct {
	// Prefix of every key (DefaultPrefix).
	Prefix string
	// MaxAge: older events are deleted (7 days; negative: keep).
	MaxAge time.Duration
	// MaxCount: beyond it the oldest events are deleted (1,000,000;
	// negative: no cap).
	MaxCount int64
	// RetentionInterval: how often retention runs (1 minute).
	RetentionInterval time.Duration
	// RetentionChunk: events deleted per Pebble batch (1000), so
	// retention never holds writers up for long.
	RetentionChunk int
	// ScanBudget bounds the index entries one Query examines (100,000):
	// a query that reaches it returns what it found and a cursor.
	ScanBudget int
	Now        func() time.Time
	Logger     *slog.Logger
}

// Store is the node's event history in Pebble: a Sink for the Bus, a
// query engine, and background retention. Safe for concurrent use.
//
// Keys, under the prefix P:
//
//	P t/ <time ns:8> <seq:8>                      → the event's JSON
//	P i/ <kind:1> <len:uvarint> <value> <time> <seq> → "" (indexes)
//	P m/count                                     → number of events (8 bytes)
//
// Index kinds: n tenant, l lease, k task, r trace id, y type, z tenant
// then type. Values longer than 128 bytes are indexed by their first 128
// bytes; every query still compares whole values.
type Store struct {
	db  *pebble.DB
	cfg StoreConfig
	log *slog.Logger
	p   []byte

	mu    sync.Mutex // serialises writes and retention (the count)
	count int64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

var _ Sink = (*Store)(nil)

const maxIndexValue = 128

// Index kinds.
const (
	idxTenant     = 'n'
	idxLease      = 'l'
	idxTask       = 'k'
	idxTrace      = 'r'
	idxType       = 'y'
	idxTenantType = 'z'
)

// OpenStore opens the event history kept in db and starts its retention.
// Close it before db.
func OpenStore(db *pebble.DB, cfg StoreConfig) (*Store, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	if cfg.MaxCount == 0 {
		cfg.MaxCount = 1_000_000
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = time.Minute
	}
	if cfg.RetentionChunk <= 0 {
		cfg.RetentionChunk = 1000
	}
	if cfg.ScanBudget <= 0 {
		cfg.ScanBudget = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{db: db, cfg: cfg, log: cfg.Logger.With("component", "events.store"), p: []byte(cfg.Prefix),
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.loadCount(); err != nil {
		return nil, err
	}
	go s.retainLoop()
	return s, nil
}

// SinkOptions are the store's batch bounds: small batches, written soon.
func (s *Store) SinkOptions() SinkOptions {
	return SinkOptions{Queue: 8192, MaxBatch: 512, MaxDelay: 5 * time.Millisecond}
}

// Close stops retention. It does not close the database.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Count is the number of stored events.
func (s *Store) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

func (s *Store) key(parts ...[]byte) []byte {
	n := len(s.p)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	k = append(k, s.p...)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

var (
	segTime  = []byte("t/")
	segIndex = []byte("i/")
	segCount = []byte("m/count")
)

func (s *Store) primaryKey(k eventKey) []byte { return s.key(segTime, k[:]) }

// indexPrefix is the key prefix of one index value: i/ kind lp(v)...
func (s *Store) indexPrefix(kind byte, values ...string) []byte {
	k := s.key(segIndex, []byte{kind})
	for _, v := range values {
		if len(v) > maxIndexValue {
			v = v[:maxIndexValue]
		}
		k = binary.AppendUvarint(k, uint64(len(v)))
		k = append(k, v...)
	}
	return k
}

// indexKeys lists the index entries of an event.
func (s *Store) indexKeys(e *indexed, k eventKey) [][]byte {
	var out [][]byte
	add := func(p []byte) { out = append(out, append(p, k[:]...)) }
	if e.Tenant != "" {
		add(s.indexPrefix(idxTenant, e.Tenant))
		add(s.indexPrefix(idxTenantType, e.Tenant, string(e.Type)))
	}
	if e.Lease != "" {
		add(s.indexPrefix(idxLease, e.Lease))
	}
	if e.Task != "" {
		add(s.indexPrefix(idxTask, e.Task))
	}
	if tr := traceIDOf(e.Traceparent); tr != "" {
		add(s.indexPrefix(idxTrace, tr))
	}
	add(s.indexPrefix(idxType, string(e.Type)))
	return out
}

// indexed is the part of an event the indexes need.
type indexed struct {
	Type        Type   `json:"type"`
	Tenant      string `json:"leashtenant"`
	Lease       string `json:"leashlease"`
	Task        string `json:"leashtask"`
	Traceparent string `json:"traceparent"`
}

func indexedOf(e *Event) *indexed {
	return &indexed{Type: e.Type, Tenant: e.Tenant, Lease: e.Lease, Task: e.Task, Traceparent: e.Traceparent}
}

// WriteEvents stores a batch in one Pebble batch (without fsync: the
// history is node-local, and a crash may lose the last few milliseconds
// of it, never the replicated state).
func (s *Store) WriteEvents(ctx context.Context, recs []*Record) error {
	if len(recs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, r := range recs {
		if err := b.Set(s.primaryKey(r.key), r.JSON, nil); err != nil {
			return err
		}
		for _, ik := range s.indexKeys(indexedOf(&r.Event), r.key) {
			if err := b.Set(ik, nil, nil); err != nil {
				return err
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.count + int64(len(recs))
	if err := b.Set(s.key(segCount), binary.BigEndian.AppendUint64(nil, uint64(n)), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	s.count = n
	return nil
}

// loadCount reads the stored count, counting the events once when it is
// missing.
func (s *Store) loadCount() error {
	v, closer, err := s.db.Get(s.key(segCount))
	if err == nil {
		defer closer.Close()
		if len(v) == 8 {
			s.count = int64(binary.BigEndian.Uint64(v))
			return nil
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("read event count: %w", err)
	}
	lo := s.key(segTime)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		s.count++
	}
	return it.Error()
}

// prefixEnd is the smallest key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Retention.

func (s *Store) retainLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.RetentionInterval)
	defer t.Stop()
	for {
		if n, err := s.Retain(); err != nil {
			s.log.Error("event retention failed", "err", err)
		} else if n > 0 {
			s.log.Debug("event retention", "deleted", n)
		}
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
	}
}

// Retain runs one retention pass now: it deletes events older than
// MaxAge, then the oldest beyond MaxCount, a chunk per batch. It returns
// how many it deleted.
func (s *Store) Retain() (int, error) {
	total := 0
	if s.cfg.MaxAge > 0 {
		cutoff := makeKey(s.cfg.Now().Add(-s.cfg.MaxAge), 0)
		upper := s.primaryKey(cutoff)
		for {
			n, err := s.deleteOldest(upper, s.cfg.RetentionChunk)
			total += n
			if err != nil || n < s.cfg.RetentionChunk {
				if err != nil {
					return total, err
				}
				break
			}
			if s.stopping() {
				return total, nil
			}
		}
	}
	if s.cfg.MaxCount > 0 {
		for {
			over := s.Count() - s.cfg.MaxCount
			if over <= 0 {
				break
			}
			n, err := s.deleteOldest(nil, int(min(over, int64(s.cfg.RetentionChunk))))
			total += n
			if err != nil || n == 0 {
				return total, err
			}
			if s.stopping() {
				return total, nil
			}
		}
	}
	return total, nil
}

func (s *Store) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// deleteOldest deletes up to max of the oldest events below upper (nil:
// any), with their index entries, in one batch.
func (s *Store) deleteOldest(upper []byte, max int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo := s.key(segTime)
	if upper == nil {
		upper = prefixEnd(lo)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	for ok := it.First(); ok && n < max; ok = it.Next() {
		key := it.Key()
		var k eventKey
		copy(k[:], key[len(lo):])
		var ix indexed
		if err := json.Unmarshal(it.Value(), &ix); err == nil {
			for _, ik := range s.indexKeys(&ix, k) {
				_ = b.Delete(ik, nil)
			}
		}
		_ = b.Delete(key, nil)
		n++
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	count := max64(s.count-int64(n), 0)
	_ = b.Set(s.key(segCount), binary.BigEndian.AppendUint64(nil, uint64(count)), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("delete old events: %w", err)
	}
	s.count = count
	return n, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Query.

// Query returns the stored events matching f, oldest first (newest first
// when f.Desc), at most f.Limit (DefaultLimit when 0, MaxLimit at most),
// and a cursor for the next page ("" when there is none). Pass the cursor
// back in f.Cursor with the same conditions. Events emitted in the last
// few milliseconds may not be visible yet (the bus writes in batches).
func (s *Store) Query(ctx context.Context, f Filter) ([]Event, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var after *eventKey
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		if c.desc != f.Desc || c.fp != f.fingerprint() {
			return nil, "", badParam("cursor belongs to another query: repeat the query's parameters with it")
		}
		after = &c.key
	}
	// Bounds on the 16-byte event key, inclusive low, exclusive high.
	var lo, hi []byte
	if !f.Since.IsZero() {
		k := makeKey(f.Since, 0)
		lo = k[:]
	}
	if !f.Until.IsZero() {
		k := makeKey(f.Until, 0)
		hi = k[:]
	}
	if after != nil {
		if f.Desc {
			if hi == nil || bytes.Compare(after[:], hi) < 0 {
				hi = bytes.Clone(after[:])
			}
		} else {
			succ := append(bytes.Clone(after[:]), 0)
			if lo == nil || bytes.Compare(succ, lo) > 0 {
				lo = succ
			}
		}
	}
	if lo != nil && hi != nil && bytes.Compare(lo, hi) >= 0 {
		return []Event{}, "", nil
	}

	prefixes, primary := s.plan(&f)
	scans := make([]*scan, 0, len(prefixes))
	defer func() {
		for _, sc := range scans {
			sc.it.Close()
		}
	}()
	for _, p := range prefixes {
		opts := &pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)}
		if lo != nil {
			opts.LowerBound = append(bytes.Clone(p), lo...)
		}
		if hi != nil {
			opts.UpperBound = append(bytes.Clone(p), hi...)
		}
		it, err := s.db.NewIterWithContext(ctx, opts)
		if err != nil {
			return nil, "", err
		}
		sc := &scan{it: it, plen: len(p)}
		scans = append(scans, sc)
		if f.Desc {
			sc.ok = it.Last()
		} else {
			sc.ok = it.First()
		}
	}

	// Index scans read each event through one reused iterator: cheaper
	// than a Get per event.
	var prim *pebble.Iterator
	if !primary {
		lo := s.key(segTime)
		it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return nil, "", err
		}
		defer it.Close()
		prim = it
	}

	out := make([]Event, 0, min(limit, 64))
	var last eventKey
	examined := 0
	for {
		sc := pick(scans, f.Desc)
		if sc == nil {
			return out, "", firstErr(scans)
		}
		if examined >= s.cfg.ScanBudget {
			// Out of budget: hand back a cursor at the last examined key.
			return out, cursor{key: last, desc: f.Desc, fp: f.fingerprint()}.encode(), nil
		}
		if examined%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
		}
		examined++
		k := sc.key()
		var val []byte
		if primary {
			val = sc.it.Value()
		} else if pk := s.primaryKey(k); prim.SeekGE(pk) && bytes.Equal(prim.Key(), pk) {
			v, err := prim.ValueAndErr()
			if err != nil {
				return nil, "", err
			}
			val = v
		} else if err := prim.Error(); err != nil {
			return nil, "", err
		}
		if val != nil {
			var e Event
			if err := json.Unmarshal(val, &e); err == nil && f.Match(e) {
				if len(out) == limit {
					// One more match exists: the page ends at last.
					return out, cursor{key: last, desc: f.Desc, fp: f.fingerprint()}.encode(), nil
				}
				out = append(out, e)
			}
		}
		last = k
		sc.advance(f.Desc)
	}
}

// plan picks the index scans for f: the most selective condition wins;
// every condition is checked on each event anyway. primary reports that
// the scans read events directly.
func (s *Store) plan(f *Filter) (prefixes [][]byte, primary bool) {
	switch {
	case f.Task != "":
		return [][]byte{s.indexPrefix(idxTask, f.Task)}, false
	case f.Lease != "":
		return [][]byte{s.indexPrefix(idxLease, f.Lease)}, false
	case f.Trace != "":
		return [][]byte{s.indexPrefix(idxTrace, f.Trace)}, false
	case f.Tenant != "" && len(f.Types) > 0:
		for _, t := range f.Types {
			prefixes = append(prefixes, s.indexPrefix(idxTenantType, f.Tenant, string(t)))
		}
		return prefixes, false
	case f.Tenant != "":
		return [][]byte{s.indexPrefix(idxTenant, f.Tenant)}, false
	case len(f.Types) > 0:
		for _, t := range f.Types {
			prefixes = append(prefixes, s.indexPrefix(idxType, string(t)))
		}
		return prefixes, false
	}
	return [][]byte{s.key(segTime)}, true
}

// scan is one index iterator in a merge.
type scan struct {
	it   *pebble.Iterator
	plen int
	ok   bool
}

func (sc *scan) key() eventKey {
	var k eventKey
	key := sc.it.Key()
	if len(key) >= 16 {
		copy(k[:], key[len(key)-16:])
	}
	return k
}

func (sc *scan) advance(desc bool) {
	if desc {
		sc.ok = sc.it.Prev()
	} else {
		sc.ok = sc.it.Next()
	}
}

// pick returns the scan whose current key comes first in the order.
func pick(scans []*scan, desc bool) *scan {
	var best *scan
	var bk eventKey
	for _, sc := range scans {
		if !sc.ok {
			continue
		}
		k := sc.key()
		if best == nil {
			best, bk = sc, k
			continue
		}
		c := bytes.Compare(k[:], bk[:])
		if (!desc && c < 0) || (desc && c > 0) {
			best, bk = sc, k
		}
	}
	return best
}

func firstErr(scans []*scan) error {
	for _, sc := range scans {
		if err := sc.it.Error(); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the stored event with the given id.
func (s *Store) Get(id string) (Event, bool, error) {
	k, ok := parseEventKey(id)
	if !ok {
		return Event{}, false, nil
	}
	v, closer, err := s.db.Get(s.primaryKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return Event{}, false, nil
	}
	if err != nil {
		return Event{}, false, err
	}
	defer closer.Close()
	var e Event
	if err := json.Unmarshal(v, &e); err != nil {
		return Event{}, false, fmt.Errorf("decode event %s: %w", id, err)
	}
	return e, true, nil
}
