// Package usage meters what tenants use and holds them to their daily
// envelopes (docs/budgets.md).
//
// A node's Meter takes every task's and every outbound call's usage,
// writes it to a local journal in the node's Pebble (so a kill -9 loses
// nothing the meter took), adds it up per tenant × profile × UTC day, and
// sends it through Raft as a batch keyed by the node and a sequence, at
// most every Interval or once MaxPending entries wait, whichever comes
// first. The state machine applies a node's sequence once
// (consensus.UsageBatch), so a batch that is retried, forwarded twice or
// replayed from the journal after a crash never counts twice.
//
// The budget decision (Check) reads only replicated state: a tenant whose
// day is at or over any limit of its envelope is refused with 429
// budget_exhausted until the next UTC midnight.
//
// The endpoints (Service: GET /v1/usage, the FOCUS export, the budget
// routes) read the same replicated counters and envelopes; the node binds
// their Handlers.
package usage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/consensus"
)

// Journal keys, in the node-local part of Pebble.
const (
	prefixDelta = consensus.PrefixLocal + "usage/d/" // <8-byte seq> → one metered delta, not cut into a batch yet
	prefixBatch = consensus.PrefixLocal + "usage/b/" // <8-byte seq> → a batch cut, not known applied yet
	keyNext     = consensus.PrefixLocal + "usage/next"
)

// Defaults of Config.
const (
	DefaultInterval   = 250 * time.Millisecond
	DefaultMaxPending = 512
)

// Proposer applies a command through Raft (forwarding to the leader).
type Proposer func(ctx context.Context, c consensus.Command) (*consensus.Result, error)

// Config configures a Meter.
type Config struct {
	DB   *pebble.DB
	Node string
	// Propose sends a batch; LastSeq is the last sequence the replicated
	// state applied for Node (a journal never runs behind it).
	Propose Proposer
	LastSeq func() (uint64, error)
	// Interval and MaxPending: a batch goes at most Interval after its
	// first delta, or once MaxPending tenant × profile × day entries
	// wait.
	Interval   time.Duration
	MaxPending int
	Logger     *slog.Logger
}

type entryKey struct{ tenant, profile, day string }

// Meter is a node's usage meter.
type Meter struct {
	cfg Config
	log *slog.Logger

	// journalMu is held shared by each Add from reserving its delta key
	// to adding it up, and exclusively by a cut.
	journalMu sync.RWMutex
	mu        sync.Mutex
	pending   map[entryKey]*consensus.UsageCounters
	deltaSeq  uint64 // next delta key
	deltaLow  uint64 // first delta key not cut yet
	nextBatch uint64
	kick      chan struct{}

	sendMu sync.Mutex // one batch in flight, in sequence order
}

// Open opens the meter over its journal: batches cut before a crash are
// sent again first (their sequence makes them count once), then the
// deltas not cut yet.
func Open(cfg Config) (*Meter, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Meter{cfg: cfg, log: cfg.Logger.With("component", "usage"), pending: map[entryKey]*consensus.UsageCounters{}, kick: make(chan struct{}, 1)}
	next, err := readUint(cfg.DB, keyNext)
	if err != nil {
		return nil, err
	}
	if cfg.LastSeq != nil {
		last, err := cfg.LastSeq()
		if err != nil {
			return nil, fmt.Errorf("usage: last applied sequence: %w", err)
		}
		next = max(next, last+1)
	}
	m.nextBatch = max(next, 1)
	// Deltas not cut: back into pending.
	it, err := cfg.DB.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixDelta), UpperBound: []byte(consensus.PrefixEnd([]byte(prefixDelta)))})
	if err != nil {
		return nil, err
	}
	first := true
	for it.First(); it.Valid(); it.Next() {
		seq := binary.BigEndian.Uint64(it.Key()[len(prefixDelta):])
		if first {
			m.deltaLow, first = seq, false
		}
		m.deltaSeq = seq + 1
		var d consensus.UsageDelta
		if err := msgpack.Unmarshal(it.Value(), &d); err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("usage journal delta %d: %w", seq, err)
		}
		m.addLocked(entryKey{d.Tenant, d.Profile, d.Day}, &d.Usage)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	if first {
		m.deltaLow, m.deltaSeq = 0, 0
	}
	return m, nil
}

// Add meters one delta: journalled at once and synced (neither a kill -9
// nor a power loss loses it once Add returned), sent with the next batch.
//
// The synced write happens outside m.mu, so concurrent Adds reach
// Pebble's commit pipeline together and share one fsync; m.mu only hands
// out the delta's key and adds it up. journalMu keeps a cut from running
// while a delta is reserved but not yet journalled and added (the cut
// deletes the journal's deltas below deltaSeq and takes the pending sums:
// a delta in between would be deleted before it is written, or written
// below deltaLow and replayed twice after a crash).
func (m *Meter) Add(tenant, profile string, at time.Time, u consensus.UsageCounters) {
	if m == nil || tenant == "" || profile == "" {
		return
	}
	d := consensus.UsageDelta{Tenant: tenant, Profile: profile, Day: consensus.Day(at), Usage: u}
	b, err := msgpack.Marshal(&d)
	if err != nil {
		m.log.Error("usage delta", "err", err)
		return
	}
	m.journalMu.RLock()
	defer m.journalMu.RUnlock()
	m.mu.Lock()
	seq := m.deltaSeq
	m.deltaSeq++
	m.mu.Unlock()
	if err := m.cfg.DB.Set([]byte(prefixDelta+string(be(seq))), b, pebble.Sync); err != nil {
		// The key stays unused: a gap in the journal is harmless.
		m.log.Error("usage journal", "err", err)
		return
	}
	m.mu.Lock()
	m.addLocked(entryKey{d.Tenant, d.Profile, d.Day}, &d.Usage)
	full := len(m.pending) >= m.cfg.MaxPending
	m.mu.Unlock()
	if full {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
}

func (m *Meter) addLocked(k entryKey, u *consensus.UsageCounters) {
	c := m.pending[k]
	if c == nil {
		c = &consensus.UsageCounters{}
		m.pending[k] = c
	}
	c.Add(u)
}

// Run sends batches until ctx ends, then sends what is left once.
func (m *Meter) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := m.Flush(fctx); err != nil {
				m.log.Warn("usage not sent at stop; the journal keeps it", "err", err)
			}
			cancel()
			return
		case <-t.C:
		case <-m.kick:
		}
		if err := m.Flush(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("usage batch not applied; retried", "err", err)
		}
	}
}

// Flush cuts the pending deltas into a batch and sends every batch not
// known applied, oldest first.
func (m *Meter) Flush(ctx context.Context) error {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	if err := m.cut(); err != nil {
		return err
	}
	for {
		seq, batch, err := m.oldestBatch()
		if err != nil || batch == nil {
			return err
		}
		res, err := m.cfg.Propose(ctx, batch)
		if err != nil {
			return fmt.Errorf("usage batch %d: %w", seq, err)
		}
		if err := m.cfg.DB.Delete([]byte(prefixBatch+string(be(seq))), pebble.NoSync); err != nil {
			return err
		}
		dup := false
		if v, ok := res.Value.(*consensus.UsageApplied); ok && v != nil {
			dup = v.Duplicate
		}
		m.log.Debug("usage batch applied", "seq", seq, "deltas", len(batch.Deltas), "duplicate", dup, "index", res.Index)
	}
}

// cut turns the pending deltas into the next batch, in the journal: the
// batch written and its deltas deleted in one Pebble batch.
func (m *Meter) cut() error {
	m.journalMu.Lock()
	defer m.journalMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.pending) == 0 {
		return nil
	}
	keys := make([]entryKey, 0, len(m.pending))
	for k := range m.pending {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.day != b.day {
			return a.day < b.day
		}
		if a.tenant != b.tenant {
			return a.tenant < b.tenant
		}
		return a.profile < b.profile
	})
	// Every batch and the deletion of the deltas they hold go in one
	// Pebble batch: a crash leaves either the deltas or the batches.
	wb := m.cfg.DB.NewBatch()
	defer wb.Close()
	seq := m.nextBatch
	for len(keys) > 0 {
		n := min(len(keys), consensus.MaxUsageDeltas)
		b := &consensus.UsageBatch{Node: m.cfg.Node, Seq: seq}
		for _, k := range keys[:n] {
			b.Deltas = append(b.Deltas, consensus.UsageDelta{Tenant: k.tenant, Profile: k.profile, Day: k.day, Usage: *m.pending[k]})
		}
		keys = keys[n:]
		enc, err := msgpack.Marshal(b)
		if err != nil {
			return err
		}
		_ = wb.Set([]byte(prefixBatch+string(be(seq))), enc, nil)
		seq++
	}
	_ = wb.Set([]byte(keyNext), be(seq), nil)
	_ = wb.DeleteRange([]byte(prefixDelta+string(be(m.deltaLow))), []byte(prefixDelta+string(be(m.deltaSeq))), nil)
	if err := wb.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("usage journal: cut batches from %d: %w", m.nextBatch, err)
	}
	m.nextBatch = seq
	m.deltaLow = m.deltaSeq
	clear(m.pending)
	return nil
}

func (m *Meter) oldestBatch() (uint64, *consensus.UsageBatch, error) {
	it, err := m.cfg.DB.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixBatch), UpperBound: []byte(consensus.PrefixEnd([]byte(prefixBatch)))})
	if err != nil {
		return 0, nil, err
	}
	defer it.Close()
	if !it.First() {
		return 0, nil, it.Error()
	}
	seq := binary.BigEndian.Uint64(it.Key()[len(prefixBatch):])
	var b consensus.UsageBatch
	if err := msgpack.Unmarshal(it.Value(), &b); err != nil {
		return 0, nil, fmt.Errorf("usage journal batch %d: %w", seq, err)
	}
	return seq, &b, nil
}

// Pending is how many tenant × profile × day entries wait for a batch,
// and how many cut batches wait to be applied.
func (m *Meter) Pending() (entries, batches int) {
	m.mu.Lock()
	entries = len(m.pending)
	m.mu.Unlock()
	it, err := m.cfg.DB.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixBatch), UpperBound: []byte(consensus.PrefixEnd([]byte(prefixBatch)))})
	if err != nil {
		return entries, -1
	}
	for it.First(); it.Valid(); it.Next() {
		batches++
	}
	_ = it.Close()
	return entries, batches
}

func be(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func readUint(db *pebble.DB, key string) (uint64, error) {
	v, closer, err := db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("usage journal %s is %d bytes", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
