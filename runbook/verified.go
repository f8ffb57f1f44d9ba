package runbook

// The verifier ahead of the queries (docs/runbook.md "Blast radius"): a
// receipt's signature is checked once on each node, not once a query.
// It walks the log in order, binds each record it reads to the tree's
// stored leaf hash, checks each receipt's signature with the ledger's
// trusted keys, and keeps a watermark: the records below size are
// checked, the tree of that size has hash root (from the same stored
// hashes), and failed lists the receipts below it whose signature did not
// verify. A query trusts the watermark only after a consistency proof
// from it to the signed checkpoint it answers against, so every record it
// counts below the watermark is, by its inclusion proof, the one the
// verifier checked. The watermark is kept in the node's local store: a
// restart does not check a million signatures again; a change of the key
// set starts it over.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/ledger"
)

// keyVerified is the watermark's local key (not replicated).
const keyVerified = consensus.PrefixLocal + "blast/verified"

// DefaultVerifyShare is the share of one core the verifier takes at
// most: after each chunk it rests for as long as the share says (half of
// one core: as long as it worked), so catching up after a start or a
// burst never takes the node's CPU from its tasks, however slow a
// signature check is on a loaded machine. It checks only while the node
// runs and queues no task (it looks every busyEvery records), so the task
// path does not pay for it: a node that is never idle leaves the
// signatures to the queries.
const DefaultVerifyShare = 0.5

// maxFailed bounds the receipts that did not verify the watermark lists;
// at the bound it stops (every later receipt is checked by the queries).
const maxFailed = 1024

// verifyChunk is how many records the verifier reads and binds at once.
const verifyChunk = 1024

// watermark is what the verifier has checked.
type watermark struct {
	Keys   tlog.Hash `json:"keys"` // keysFingerprint of the key set used
	Size   int64     `json:"size"`
	Root   tlog.Hash `json:"root"`
	Failed []int64   `json:"failed,omitempty"`
}

// verifier owns the watermark.
type verifier struct {
	db    *pebble.DB // nil: the watermark is not kept across restarts
	log   *slog.Logger
	share float64     // of one core; 1 or more: no rest
	busy  func() bool // the node runs or queues tasks: the verifier waits (nil: never)

	mu     sync.Mutex
	w      watermark
	failed map[int64]bool
	stuck  bool // at maxFailed, or the store disagreed with itself
}

func newVerifier(db *pebble.DB, share float64, log *slog.Logger) *verifier {
	v := &verifier{db: db, log: log, failed: map[int64]bool{}, share: share}
	if db == nil {
		return v
	}
	raw, closer, err := db.Get([]byte(keyVerified))
	if err != nil {
		if !errors.Is(err, pebble.ErrNotFound) {
			log.Error("read the blast-radius verifier's watermark; it starts over", "err", err)
		}
		return v
	}
	defer closer.Close()
	var w watermark
	if err := json.Unmarshal(raw, &w); err != nil || w.Size < 0 || len(w.Failed) > maxFailed {
		log.Error("the blast-radius verifier's watermark is malformed; it starts over", "err", err)
		return v
	}
	v.w = w
	for _, i := range w.Failed {
		v.failed[i] = true
	}
	return v
}

// keysFingerprint names a key set: a change of keys (one removed, one
// added) is a new fingerprint.
func keysFingerprint(ks *ledger.KeySet) tlog.Hash {
	b, _ := json.Marshal(ks) // exported fields only: origin and nodes
	return sha256.Sum256(b)
}

// trusted is what a query may take from the verifier: the receipts below
// size, except failed, have verified signatures. It is checked against
// cp by a consistency proof; zero when it cannot be used.
func (vf *verifier) trusted(v *consensus.Ledger, hr tlog.HashReader, cp ledger.Checkpoint) (int64, map[int64]bool) {
	vf.mu.Lock()
	w, failed := vf.w, vf.failed
	vf.mu.Unlock()
	if w.Size == 0 || w.Keys != keysFingerprint(v.Keys) {
		return 0, nil
	}
	var err error
	size := w.Size
	if w.Size <= cp.Size { // the watermark's tree is a prefix of the checkpoint's
		var p tlog.TreeProof
		if p, err = tlog.ProveTree(cp.Size, w.Size, hr); err == nil {
			err = tlog.CheckTree(p, cp.Size, cp.Root, w.Size, w.Root)
		}
	} else { // the checkpoint is older than the watermark
		var p tlog.TreeProof
		if p, err = tlog.ProveTree(w.Size, cp.Size, hr); err == nil {
			err = tlog.CheckTree(p, w.Size, w.Root, cp.Size, cp.Root)
		}
		size = cp.Size
	}
	if err != nil {
		vf.log.Error("the blast-radius verifier's watermark is not consistent with the signed checkpoint; queries check every signature",
			"watermark", w.Size, "checkpoint", cp.Size, "err", err)
		return 0, nil
	}
	return size, failed
}

// run checks the log ahead of the queries until ctx ends; it logs when
// it has caught up with the log after a start or a burst.
func (vf *verifier) run(ctx context.Context, l Ledger) {
	var from int64 = -1 // the watermark when it fell behind
	var since time.Time
	for ctx.Err() == nil {
		if vf.isBusy() {
			select {
			case <-ctx.Done():
			case <-time.After(busyWait):
			}
			continue
		}
		at := vf.size()
		t0 := time.Now()
		more, err := vf.step(ctx, l)
		if rest := vf.rest(time.Since(t0)); more && rest > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(rest):
			}
		}
		if err != nil && ctx.Err() == nil {
			vf.log.Error("blast-radius verifier", "err", err)
		}
		if more && from < 0 {
			from, since = at, time.Now()
		}
		if !more && err == nil && from >= 0 && !vf.isStuck() {
			vf.log.Info("blast-radius verifier caught up", "records", vf.size(), "checked", vf.size()-from, "ms", time.Since(since).Milliseconds())
			from = -1
		}
		if !more || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// busyEvery is how many records the verifier checks between two looks
// at whether the node is busy; busyWait how long it waits then.
const (
	busyEvery = 64
	busyWait  = 100 * time.Millisecond
)

// isBusy reports that the node runs or queues tasks.
func (vf *verifier) isBusy() bool { return vf.busy != nil && vf.busy() }

// rest is how long to rest after working for d.
func (vf *verifier) rest(d time.Duration) time.Duration {
	if vf.share >= 1 {
		return 0
	}
	return time.Duration(float64(d) * (1 - vf.share) / vf.share)
}

// step checks the next chunk of the log; more reports that records are
// left after it.
func (vf *verifier) step(ctx context.Context, l Ledger) (more bool, err error) {
	v, err := l.View()
	if err != nil {
		return false, err
	}
	defer v.Close()
	size, err := v.Log.Size(v.Reader)
	if err != nil {
		return false, err
	}
	fp := keysFingerprint(v.Keys)
	vf.mu.Lock()
	w, stuck := vf.w, vf.stuck
	vf.mu.Unlock()
	if w.Keys != fp {
		if w.Size > 0 {
			vf.log.Info("the ledger's key set changed: the blast-radius verifier starts over", "was_at", w.Size)
		}
		w, stuck = watermark{Keys: fp}, false
		vf.set(w, map[int64]bool{}, false)
	}
	if stuck || w.Size >= size {
		return false, nil
	}
	// Two iterators, records and hashes: the chunk's reads step forward.
	recs, hs, done, err := seekReaders(v)
	if err != nil {
		return false, err
	}
	defer done()
	hr := v.Log.HashReader(hs)
	end := min(size, w.Size+verifyChunk)
	leaves := make([]int64, 0, end-w.Size)
	for i := w.Size; i < end; i++ {
		leaves = append(leaves, tlog.StoredHashIndex(0, i))
	}
	hashes, err := hr.ReadHashes(leaves)
	if err != nil {
		return false, err
	}
	failed := append([]int64(nil), w.Failed...)
	checked := w.Size
	for i := w.Size; i < end; i++ {
		rec, err := v.Log.RecordAt(recs, i)
		if err != nil {
			return false, err
		}
		if tlog.RecordHash(rec) != hashes[i-w.Size] {
			vf.log.Error("a ledger record does not hash to its stored leaf; the blast-radius verifier stops", "index", i)
			vf.mu.Lock()
			vf.stuck = true
			vf.mu.Unlock()
			break
		}
		env, err := ledger.DecodeEnvelope(rec)
		if err == nil && env.PayloadType == ledger.PayloadType { // governance entries name no task
			if _, verr := ledger.VerifyEnvelope(env, v.Keys); verr != nil {
				if len(failed) == maxFailed {
					vf.log.Error("receipts that do not verify reached the bound; the blast-radius verifier stops", "index", i, "bound", maxFailed)
					vf.mu.Lock()
					vf.stuck = true
					vf.mu.Unlock()
					break
				}
				vf.log.Error("a ledger receipt does not verify", "index", i, "err", verr)
				failed = append(failed, i)
			}
		}
		checked = i + 1
		if (i+1-w.Size)%busyEvery == 0 && vf.isBusy() {
			break // the node has tasks again: what is checked is kept
		}
	}
	if checked == w.Size {
		return false, nil
	}
	root, err := tlog.TreeHash(checked, hr)
	if err != nil {
		return false, err
	}
	// The records checked before are still the tree's prefix.
	if w.Size > 0 {
		p, err := tlog.ProveTree(checked, w.Size, hr)
		if err == nil {
			err = tlog.CheckTree(p, checked, root, w.Size, w.Root)
		}
		if err != nil {
			return false, fmt.Errorf("the log is not an extension of the tree the verifier checked: %w", err)
		}
	}
	next := watermark{Keys: fp, Size: checked, Root: root, Failed: failed}
	fm := make(map[int64]bool, len(failed))
	for _, i := range failed {
		fm[i] = true
	}
	vf.set(next, fm, vf.isStuck())
	return checked < size, nil
}

func (vf *verifier) isStuck() bool {
	vf.mu.Lock()
	defer vf.mu.Unlock()
	return vf.stuck
}

// set replaces the watermark and keeps it (unsynced: a lost one is
// only work done again).
func (vf *verifier) set(w watermark, failed map[int64]bool, stuck bool) {
	vf.mu.Lock()
	vf.w, vf.failed, vf.stuck = w, failed, stuck
	vf.mu.Unlock()
	if vf.db == nil {
		return
	}
	b, err := json.Marshal(w)
	if err == nil {
		err = vf.db.Set([]byte(keyVerified), b, pebble.NoSync)
	}
	if err != nil {
		vf.log.Error("keep the blast-radius verifier's watermark", "err", err)
	}
}

// size is the watermark's size (for the index-built log line and tests).
func (vf *verifier) size() int64 {
	vf.mu.Lock()
	defer vf.mu.Unlock()
	return vf.w.Size
}
