package consensus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/policy"
)

// FSM applies committed commands to replicated state in Pebble. State and
// the applied index are written in one batch, so after a crash the state
// is exactly that of some applied index and raft's replay of later
// entries is idempotent (entries at or below the stored index are
// skipped). raft is configured not to restore a snapshot on start: the
// state survives restarts on its own.
type FSM struct {
	db    *pebble.DB
	log   *slog.Logger
	state *State

	// mu orders Apply against Restore and Snapshot.
	mu        sync.Mutex
	listeners []func(Applied)
	restored  []func()
	// ledgerKeys is the ledger's log and trusted keys as the last
	// command that read them found them (under mu): every batch of
	// receipts needs them, and they change only when a command writes
	// the ledger's origin or a node key, or a snapshot is restored,
	// which reset it.
	ledgerKeys ledgerKeys
}

// ledgerKeys caches what ledgerLogKeys reads; log nil: not read yet.
type ledgerKeys struct {
	log  *ledger.Log
	keys *ledger.KeySet
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// Applied describes one applied command, for listeners (events, caches).
type Applied struct {
	Index   uint64
	Command Command
	Result  *Result
}

// Result is what applying a command returned. A refused command leaves
// state untouched; Code is a stable error code for the API.
type Result struct {
	Code    string
	Message string
	Value   any
	// Index is the log index the command was applied at.
	Index uint64
}

// Err returns the refusal as an error, or nil.
func (r *Result) Err() error {
	if r == nil || r.Code == "" {
		return nil
	}
	return &RefusedError{Code: r.Code, Message: r.Message}
}

// RefusedError is a command the FSM refused.
type RefusedError struct {
	Code    string
	Message string
}

func (e *RefusedError) Error() string { return e.Code + ": " + e.Message }

func refuse(code, format string, args ...any) error {
	return &RefusedError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// NewFSM returns the FSM over db.
func NewFSM(db *pebble.DB, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{db: db, log: logger.With("component", "fsm"), state: &State{db: db, cache: newBundleCache(), records: newRecordCache(65536)}}
}

// State returns the read side of the replicated state.
func (f *FSM) State() *State { return f.state }

// OnApply registers fn to be called after each applied command, in log
// order, on raft's FSM goroutine: fn must be quick.
func (f *FSM) OnApply(fn func(Applied)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listeners = append(f.listeners, fn)
}

// OnRestore registers fn to be called after a snapshot replaced the
// state (a follower catching up by snapshot): what a node derives from
// replicated state must be derived again, as if it had applied the
// commands one by one. fn runs on raft's FSM goroutine, after the new
// state is committed.
func (f *FSM) OnRestore(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restored = append(f.restored, fn)
}

// Apply applies one log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in one Pebble commit.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]any, len(logs))
	applied, err := appliedIndex(f.db)
	if err != nil {
		// The store is broken; raft cannot go on safely.
		panic(fmt.Sprintf("consensus: read applied index: %v", err))
	}
	batch := f.db.NewIndexedBatch()
	defer batch.Close()
	var done []Applied
	var written []string // cached keys this batch writes
	last := applied
	for i, l := range logs {
		if l.Index <= applied {
			out[i] = &Result{Code: "already_applied"}
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			out[i] = &Result{}
			continue
		}
		cmd, err := Decode(l.Data)
		if err != nil {
			f.log.Error("refused malformed command", "index", l.Index, "err", err)
			out[i] = &Result{Code: "malformed_command", Message: err.Error()}
			continue
		}
		tx := &Tx{r: batch, pending: map[string][]byte{}, ledgerKeys: &f.ledgerKeys}
		val, err := apply(tx, cmd)
		res := &Result{Value: val, Index: l.Index}
		if err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				res.Code, res.Message = re.Code, re.Message
			} else {
				res.Code, res.Message = "apply_failed", err.Error()
				f.log.Error("command failed", "index", l.Index, "op", cmd.Op(), "err", err)
			}
		} else if err := tx.flush(batch); err != nil {
			panic(fmt.Sprintf("consensus: write batch: %v", err))
		} else {
			for _, k := range tx.order {
				if cached(k) {
					written = append(written, k)
				}
				if k == keyLedgerOrigin || strings.HasPrefix(k, prefixKey) {
					f.ledgerKeys = ledgerKeys{}
				}
			}
		}
		out[i] = res
		done = append(done, Applied{Index: l.Index, Command: cmd, Result: res})
	}
	if last > applied {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], last)
		if err := batch.Set([]byte(keyApplied), b[:], nil); err != nil {
			panic(fmt.Sprintf("consensus: write applied index: %v", err))
		}
		// NoSync: the raft log is synced; a lost tail of state is
		// re-applied from it on restart.
		if err := batch.Commit(pebble.NoSync); err != nil {
			panic(fmt.Sprintf("consensus: commit state: %v", err))
		}
		if len(written) > 0 {
			f.state.records.invalidate(written)
		}
	}
	for _, a := range done {
		for _, fn := range f.listeners {
			fn(a)
		}
	}
	return out
}

// Tx is one command's view of state: reads see its own pending writes,
// and its writes reach the batch only if the command succeeds, so a
// refused command never half-applies.
type Tx struct {
	r       *pebble.Batch
	pending map[string][]byte // nil value: delete
	order   []string
	// ledgerKeys, when set, is the FSM's cache of the ledger's log and
	// keys (ledgerLogKeys).
	ledgerKeys *ledgerKeys
}

// Get reads a key through pending writes.
func (tx *Tx) Get(key []byte) ([]byte, io.Closer, error) {
	if v, ok := tx.pending[string(key)]; ok {
		if v == nil {
			return nil, nil, pebble.ErrNotFound
		}
		return v, io.NopCloser(nil), nil
	}
	return tx.r.Get(key)
}

// Set stages a write.
func (tx *Tx) Set(key string, value []byte) {
	if _, ok := tx.pending[key]; !ok {
		tx.order = append(tx.order, key)
	}
	tx.pending[key] = value
}

// Delete stages a delete.
func (tx *Tx) Delete(key string) { tx.Set(key, nil) }

// NewIter iterates committed-plus-batch state (not pending writes).
func (tx *Tx) NewIter(o *pebble.IterOptions) (*pebble.Iterator, error) { return tx.r.NewIter(o) }

func (tx *Tx) flush(b *pebble.Batch) error {
	for _, k := range tx.order {
		v := tx.pending[k]
		var err error
		if v == nil {
			err = b.Delete([]byte(k), nil)
		} else {
			err = b.Set([]byte(k), v, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// snapshotVersion is the format of FSM snapshots.
const snapshotVersion = 1

// Snapshot captures state at the current applied index.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Make the state this snapshot captures durable first: otherwise a
	// crash could leave Pebble older than a snapshot raft believes in.
	if err := f.db.LogData(nil, pebble.Sync); err != nil {
		return nil, fmt.Errorf("sync state before snapshot: %w", err)
	}
	return &fsmSnapshot{snap: f.db.NewSnapshot()}, nil
}

type fsmSnapshot struct {
	snap *pebble.Snapshot
}

// Persist writes: a version byte, then (len key, key, len value, value)
// records with uvarint lengths, then a zero-length key as the end mark.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<16)
	err := func() error {
		if err := w.WriteByte(snapshotVersion); err != nil {
			return err
		}
		var buf [binary.MaxVarintLen64]byte
		put := func(b []byte) error {
			n := binary.PutUvarint(buf[:], uint64(len(b)))
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			_, err := w.Write(b)
			return err
		}
		if err := scan(s.snap, PrefixState, func(k, v []byte) error {
			if err := put(k); err != nil {
				return err
			}
			return put(v)
		}); err != nil {
			return err
		}
		if err := put(nil); err != nil {
			return err
		}
		return w.Flush()
	}()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

// maxSnapshotRecord bounds one key or value read from a snapshot.
const maxSnapshotRecord = 64 << 20

// Restore replaces all replicated state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) (err error) {
	defer rc.Close()
	f.mu.Lock()
	restored := f.restored
	f.ledgerKeys = ledgerKeys{} // whatever the restore leaves, read it again
	defer func() {
		f.mu.Unlock()
		if err == nil {
			for _, fn := range restored {
				fn()
			}
		}
	}()
	r := bufio.NewReaderSize(rc, 1<<16)
	v, err := r.ReadByte()
	if err != nil {
		return fmt.Errorf("restore: read version: %w", err)
	}
	if v != snapshotVersion {
		return fmt.Errorf("restore: snapshot version %d, this node reads %d", v, snapshotVersion)
	}
	read := func() ([]byte, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if n > maxSnapshotRecord {
			return nil, fmt.Errorf("record of %d bytes", n)
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return b, err
	}
	batch := f.db.NewBatch()
	defer func() { _ = batch.Close() }()
	if err := batch.DeleteRange([]byte(PrefixState), PrefixEnd([]byte(PrefixState)), nil); err != nil {
		return fmt.Errorf("restore: clear state: %w", err)
	}
	for {
		k, err := read()
		if err != nil {
			return fmt.Errorf("restore: read key: %w", err)
		}
		if len(k) == 0 {
			break
		}
		val, err := read()
		if err != nil {
			return fmt.Errorf("restore: read value of %q: %w", k, err)
		}
		if len(k) < len(PrefixState) || string(k[:len(PrefixState)]) != PrefixState {
			return fmt.Errorf("restore: key %q outside replicated state", k)
		}
		if err := batch.Set(k, val, nil); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("restore: commit: %w", err)
	}
	f.state.cache.clear()
	f.state.records.clear()
	return nil
}

// bundleCache keeps parsed bundles by digest.
type bundleCache struct {
	mu sync.Mutex
	m  map[string]*policy.Bundle
}

func newBundleCache() *bundleCache { return &bundleCache{m: map[string]*policy.Bundle{}} }

func (c *bundleCache) get(d string) (*policy.Bundle, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[d]
	return b, ok
}

func (c *bundleCache) put(d string, b *policy.Bundle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 64 {
		clear(c.m)
	}
	c.m[d] = b
}

func (c *bundleCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}
