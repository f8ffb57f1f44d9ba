package consensus

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/ledger"
)

// The receipt ledger in replicated state: a Merkle log (package ledger)
// under s/ledger/log/, its origin, an index from task attempt to ledger
// index (so a re-submitted receipt is never appended twice), and the
// newest co-signed checkpoint.
const (
	keyLedgerOrigin = PrefixState + "ledger/origin"
	keyLedgerCP     = PrefixState + "ledger/checkpoint"
	prefixLedgerLog = PrefixState + "ledger/log/"
	prefixLedgerTsk = PrefixState + "ledger/task/"
)

// Refusal codes of the ledger commands.
const (
	CodeLedgerNotReady = "ledger_not_ready"
	CodeBadReceipt     = "invalid_receipt"
	CodeBadCheckpoint  = "invalid_checkpoint"
)

// LedgerInit names the ledger once; later inits with the same origin are
// no-ops, others are refused.
type LedgerInit struct {
	Origin string `msgpack:"origin"`
}

// AppendReceipts appends signed receipt envelopes (canonical DSSE JSON).
// Each must be a valid receipt signed (by key id) with a published receipt
// key of the node it names. A receipt whose
// task attempt is already in the ledger is skipped, not appended again.
type AppendReceipts struct {
	Envelopes [][]byte `msgpack:"envelopes"`
	// MayRepeat says some receipts may already be in the ledger (a
	// re-submitted spool, a retry after an unknown outcome): only then
	// does the FSM look each task attempt up.
	MayRepeat bool `msgpack:"may_repeat,omitempty"`
}

// CosignCheckpoint carries a checkpoint note signed by one node over its
// own copy of the log. The FSM checks it against this replica's copy and
// merges the signature into the stored checkpoint of that size.
type CosignCheckpoint struct {
	Note []byte `msgpack:"note"`
}

func (LedgerInit) Op() Op       { return OpLedgerInit }
func (AppendReceipts) Op() Op   { return OpAppendReceipts }
func (CosignCheckpoint) Op() Op { return OpCosignCheckpoint }

// AppendResult says where each envelope of a batch is in the ledger, in
// the order given (a skipped duplicate reports its existing index).
type AppendResult struct {
	Indexes []int64 `msgpack:"indexes"`
	Size    int64   `msgpack:"size"`
	// Receipts are the batch's receipts as the FSM decoded and checked
	// them, in the order given (nil for a governance entry), for the
	// listeners of applied batches (the canary tracker, the blast-radius
	// index), so they do not decode every receipt again. Only on the
	// replica that applied the batch: never encoded. Read-only.
	Receipts []*ledger.Receipt `msgpack:"-"`
}

// ledgerStore adapts a Tx to ledger.Store.
type ledgerStore struct{ tx *Tx }

func (s ledgerStore) Get(key []byte) ([]byte, error) { return getCopy(s.tx, key) }

func (s ledgerStore) Set(key, value []byte) error {
	s.tx.Set(string(key), value)
	return nil
}

// dbReader adapts a Pebble reader (DB, snapshot) to ledger.Reader.
type dbReader struct{ r reader }

func (d dbReader) Get(key []byte) ([]byte, error) { return getCopy(d.r, key) }

// getCopy reads a value the ledger may keep, with its not-found error.
func getCopy(r reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ledger.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

func ledgerLog(r reader) (*ledger.Log, error) {
	origin, err := getString(r, keyLedgerOrigin)
	if errors.Is(err, ErrNotFound) {
		return nil, refuse(CodeLedgerNotReady, "the ledger has no origin yet")
	}
	if err != nil {
		return nil, err
	}
	return ledger.NewLog(origin, []byte(prefixLedgerLog))
}

func applyLedgerInit(tx *Tx, c *LedgerInit) error {
	cur, err := getString(tx, keyLedgerOrigin)
	switch {
	case err == nil && cur == c.Origin:
		return nil
	case err == nil:
		return refuse(CodeInvalid, "the ledger is already named %q", cur)
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if _, err := ledger.NewLog(c.Origin, []byte(prefixLedgerLog)); err != nil {
		return refuse(CodeInvalid, "%v", err)
	}
	tx.Set(keyLedgerOrigin, []byte(c.Origin))
	return nil
}

// keySet builds the ledger key set from the node keys in state: receipt
// keys and checkpoint (note) keys, grouped by node.
func keySet(r iterable, origin string) (*ledger.KeySet, error) {
	byNode := map[string]*ledger.NodeKeys{}
	err := scan(r, prefixKey, func(k, v []byte) error {
		var nk NodeKey
		if err := msgpack.Unmarshal(v, &nk); err != nil {
			return fmt.Errorf("decode %s: %w", k, err)
		}
		if nk.Use != KeyUseReceipt && nk.Use != KeyUseNote {
			return nil
		}
		n := byNode[nk.NodeID]
		if n == nil {
			n = &ledger.NodeKeys{ID: nk.NodeID}
			byNode[nk.NodeID] = n
		}
		switch nk.Use {
		case KeyUseReceipt:
			pub := ed25519.PublicKey(nk.PublicKey)
			n.ReceiptKeys = append(n.ReceiptKeys, ledger.ReceiptKey{KeyID: ledger.KeyID(pub), Alg: "ed25519", PublicKey: base64.StdEncoding.EncodeToString(pub)})
		case KeyUseNote:
			n.CheckpointKeys = append(n.CheckpointKeys, nk.Text)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(byNode))
	for id := range byNode {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	nodes := make([]ledger.NodeKeys, 0, len(ids))
	for _, id := range ids {
		nodes = append(nodes, *byNode[id])
	}
	return ledger.NewKeySet(origin, nodes...)
}

// ledgerLogKeys is ledgerLog and its keySet, from the FSM's cache when
// tx has one (FSM.ledgerKeys: reset by every write of the origin or of a
// node key, and by a restore). Reading both for every batch of receipts
// was 2.6% of an audited node's CPU.
func ledgerLogKeys(tx *Tx) (*ledger.Log, *ledger.KeySet, error) {
	if c := tx.ledgerKeys; c != nil && c.log != nil {
		return c.log, c.keys, nil
	}
	log, err := ledgerLog(tx)
	if err != nil {
		return nil, nil, err
	}
	keys, err := keySet(tx, log.Origin())
	if err != nil {
		return nil, nil, err
	}
	if c := tx.ledgerKeys; c != nil {
		*c = ledgerKeys{log: log, keys: keys}
	}
	return log, keys, nil
}

func applyAppendReceipts(tx *Tx, c *AppendReceipts) (*AppendResult, error) {
	if len(c.Envelopes) == 0 || len(c.Envelopes) > ledger.MaxBatchRecords {
		return nil, refuse(CodeInvalid, "a batch has 1 to %d receipts", ledger.MaxBatchRecords)
	}
	log, keys, err := ledgerLogKeys(tx)
	if err != nil {
		return nil, err
	}
	size, err := log.Size(ledgerStore{tx})
	if err != nil {
		return nil, err
	}
	// Each envelope is checked in parallel (the result does not depend on
	// how), then the batch is applied in order. The check is structural
	// (ledger.CheckEnvelope): the signing node checked its own signature,
	// and auditors verify every one; an Ed25519 verification per receipt
	// on every replica would cost more than the rest of the audit.
	envs := make([]*ledger.Envelope, len(c.Envelopes))
	receipts := make([]*ledger.Receipt, len(c.Envelopes))
	// A governance entry (a runbook action, ledger/governance.go) shares
	// the log; it is appended once per action id, as a receipt once per
	// task attempt.
	govIDs := make([]string, len(c.Envelopes))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, b := range c.Envelopes {
		g.Go(func() error {
			env, err := ledger.DecodeEnvelope(b)
			if err != nil {
				return refuse(CodeBadReceipt, "receipt %d: %v", i, err)
			}
			if env.PayloadType == ledger.GovernancePayloadType {
				g, err := ledger.CheckGovernance(env, keys)
				if err != nil {
					return refuse(CodeBadReceipt, "governance entry %d: %v", i, err)
				}
				envs[i], govIDs[i] = env, g.ID
				return nil
			}
			r, err := ledger.CheckEnvelope(env, keys)
			if err != nil {
				return refuse(CodeBadReceipt, "receipt %d: %v", i, err)
			}
			envs[i], receipts[i] = env, r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res := &AppendResult{Indexes: make([]int64, len(c.Envelopes)), Receipts: receipts}
	var fresh [][]byte
	seen := map[string]int64{}
	var taskKeys []string
	for i, env := range envs {
		var tk string
		if r := receipts[i]; r != nil {
			tk = fmt.Sprintf("%s%s/%d", prefixLedgerTsk, r.TaskID, r.Attempt)
		} else {
			tk = prefixLedgerTsk + govIDs[i] + "/0"
		}
		if idx, ok := seen[tk]; ok {
			res.Indexes[i] = idx
			continue
		}
		if c.MayRepeat {
			if v, err := getString(tx, tk); err == nil {
				res.Indexes[i] = int64(binary.BigEndian.Uint64([]byte(v)))
				continue
			} else if !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
		canonical, err := env.Canonical()
		if err != nil {
			return nil, refuse(CodeBadReceipt, "receipt %d: %v", i, err)
		}
		idx := size + int64(len(fresh))
		res.Indexes[i], seen[tk] = idx, idx
		fresh = append(fresh, canonical)
		taskKeys = append(taskKeys, tk)
	}
	res.Size = size
	if len(fresh) == 0 {
		return res, nil
	}
	// Append checks and hashes everything before its first write.
	if _, res.Size, _, err = log.Append(ledgerStore{tx}, fresh); err != nil {
		return nil, refuse(CodeBadReceipt, "%v", err)
	}
	for i, tk := range taskKeys {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(size+int64(i)))
		tx.Set(tk, b[:])
	}
	return res, nil
}

func applyCosignCheckpoint(tx *Tx, c *CosignCheckpoint) (int64, error) {
	log, keys, err := ledgerLogKeys(tx)
	if err != nil {
		return 0, err
	}
	sc, err := ledger.VerifyCheckpoint(c.Note, keys, 1)
	if err != nil {
		return 0, refuse(CodeBadCheckpoint, "%v", err)
	}
	// The checkpoint must describe this replica's log.
	if err := log.CheckCheckpoint(ledgerStore{tx}, sc.Checkpoint); err != nil {
		return 0, refuse(CodeBadCheckpoint, "%v", err)
	}
	stored, err := getString(tx, keyLedgerCP)
	switch {
	case errors.Is(err, ErrNotFound):
		tx.Set(keyLedgerCP, c.Note)
		return sc.Checkpoint.Size, nil
	case err != nil:
		return 0, err
	}
	prev, err := ledger.VerifyCheckpoint([]byte(stored), keys, 1)
	if err != nil {
		// A stored note no longer verifies (keys changed): replace it.
		tx.Set(keyLedgerCP, c.Note)
		return sc.Checkpoint.Size, nil
	}
	switch {
	case sc.Checkpoint.Size < prev.Checkpoint.Size:
		return prev.Checkpoint.Size, nil // stale: keep the newer one
	case sc.Checkpoint.Size > prev.Checkpoint.Size:
		tx.Set(keyLedgerCP, c.Note)
		return sc.Checkpoint.Size, nil
	}
	merged, err := ledger.MergeCheckpoints(keys, []byte(stored), c.Note)
	if err != nil {
		return 0, refuse(CodeBadCheckpoint, "%v", err)
	}
	tx.Set(keyLedgerCP, merged)
	return sc.Checkpoint.Size, nil
}

// Ledger is the read side of the replicated ledger, for the API.
type Ledger struct {
	Log  *ledger.Log
	Keys *ledger.KeySet
	// Reader reads a consistent snapshot; Close releases it.
	Reader ledger.Reader
	snap   *pebble.Snapshot
}

// Close releases the snapshot.
func (l *Ledger) Close() error { return l.snap.Close() }

// SeekReader returns a reader of the same snapshot that keeps one
// iterator open: a Get seeks it, and Gets in ascending key order (a
// query's records and their proofs' hashes) step it forward rather than
// each opening an iterator as a point Get does. It is not safe for
// concurrent use; Close it before the Ledger.
func (l *Ledger) SeekReader() (*SeekReader, error) {
	it, err := l.snap.NewIter(nil)
	if err != nil {
		return nil, err
	}
	return &SeekReader{it: it}, nil
}

// SeekReader is a ledger.Reader over one iterator (Ledger.SeekReader).
type SeekReader struct{ it *pebble.Iterator }

// Get returns a copy of key's value, or ledger.ErrNotFound.
func (r *SeekReader) Get(key []byte) ([]byte, error) {
	if !r.it.SeekGE(key) || !bytes.Equal(r.it.Key(), key) {
		if err := r.it.Error(); err != nil {
			return nil, err
		}
		return nil, ledger.ErrNotFound
	}
	v, err := r.it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(v), nil
}

// Close releases the iterator.
func (r *SeekReader) Close() error { return r.it.Close() }

// Checkpoint is the newest co-signed checkpoint note, if any.
func (l *Ledger) Checkpoint() ([]byte, error) {
	v, err := l.Reader.Get([]byte(keyLedgerCP))
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, ErrNotFound
	}
	return v, err
}

// Ledger opens a consistent read view of the ledger.
func (s *State) Ledger() (*Ledger, error) {
	snap := s.db.NewSnapshot()
	log, err := ledgerLog(snap)
	if err != nil {
		snap.Close()
		return nil, err
	}
	keys, err := keySet(snap, log.Origin())
	if err != nil {
		snap.Close()
		return nil, err
	}
	return &Ledger{Log: log, Keys: keys, Reader: dbReader{snap}, snap: snap}, nil
}

// LedgerOrigin is the ledger's name, or ErrNotFound before LedgerInit.
func (s *State) LedgerOrigin() (string, error) { return getString(s.db, keyLedgerOrigin) }
