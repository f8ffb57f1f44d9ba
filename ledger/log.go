package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// Reader is the read side of the ledger's storage: a key-value view, such
// as a Pebble snapshot, batch or the database itself.
//
// Get returns the value stored under key, or an error matching ErrNotFound
// (errors.Is) when there is none. The ledger copies what it keeps, so the
// returned slice need only stay valid until the next call on the Reader.
type Reader interface {
	Get(key []byte) ([]byte, error)
}

// Store is the read-write storage one [Log.Append] runs against. Inside a
// Raft FSM apply it is the apply's write batch: Get must see the values of
// earlier Set calls on the same Store (a Pebble indexed batch does), and
// Append's writes become durable, all or nothing, when the caller commits
// the batch. Append never changes a key or value after passing it to Set,
// so an implementation may keep them without copying.
type Store interface {
	Reader
	Set(key, value []byte) error
}

// Key layout, under the Log's prefix:
//
//	prefix "n"                → tree size, 8 bytes big-endian
//	prefix "r" <8-byte index> → record: canonical envelope bytes
//	prefix "h" <8-byte index> → tlog stored hash (tlog.StoredHashIndex order)
const (
	keySize   = 'n'
	keyRecord = 'r'
	keyHash   = 'h'
)

// Log is a Merkle log of receipt envelopes (golang.org/x/mod/sumdb/tlog)
// kept in a key-value store under a key prefix. A Log holds no state of its
// own: every method reads or writes the Store it is given, so it is safe
// for concurrent use, and replicas that apply the same appends in the same
// order hold byte-identical keys and values.
type Log struct {
	origin string
	prefix []byte
}

// NewLog returns the log named origin (the first line of its checkpoints,
// for example "leash/<cluster-id>") stored under keyPrefix.
func NewLog(origin string, keyPrefix []byte) (*Log, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, fmt.Errorf("new log: origin: %w", err)
	}
	return &Log{origin: origin, prefix: bytes.Clone(keyPrefix)}, nil
}

// Origin returns the log's checkpoint origin.
func (l *Log) Origin() string { return l.origin }

func (l *Log) key(kind byte, n int64) []byte {
	k := make([]byte, len(l.prefix)+1+8)
	copy(k, l.prefix)
	k[len(l.prefix)] = kind
	binary.BigEndian.PutUint64(k[len(l.prefix)+1:], uint64(n))
	return k
}

func (l *Log) sizeKey() []byte {
	k := make([]byte, len(l.prefix)+1)
	copy(k, l.prefix)
	k[len(l.prefix)] = keySize
	return k
}

// Size returns the number of records in the log.
func (l *Log) Size(r Reader) (int64, error) {
	v, err := r.Get(l.sizeKey())
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: read size: %w", err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("ledger: stored size is %d bytes, want 8: %w", len(v), ErrMalformed)
	}
	n := int64(binary.BigEndian.Uint64(v))
	if n < 0 {
		return 0, fmt.Errorf("ledger: stored size %d is negative: %w", n, ErrMalformed)
	}
	return n, nil
}

// Append adds envelopes, in order, as records at the end of the log, storing
// each record and its tlog stored hashes, and the new size. It returns the
// index of the first new record, the new size and the new tree hash.
//
// Every envelope must be the canonical encoding (Envelope.Canonical) of a
// decodable DSSE envelope of at most MaxEnvelopeBytes; at most
// MaxBatchRecords per call. Append checks all of that, and reads all it
// needs, before its first Set: a rejected batch writes nothing. (If Set
// itself fails, the caller must discard the batch.) Append does not check
// signatures: that needs the replicated key set, see VerifyEnvelope.
//
// The same envelopes appended to the same log state give the same writes
// and the same result on every replica.
func (l *Log) Append(s Store, envelopes [][]byte) (first, size int64, root tlog.Hash, err error) {
	n, err := l.Size(s)
	if err != nil {
		return 0, 0, tlog.Hash{}, err
	}
	if len(envelopes) > MaxBatchRecords {
		return 0, 0, tlog.Hash{}, verr("append", ErrTooLarge, fmt.Sprintf("%d envelopes in one batch, more than %d", len(envelopes), MaxBatchRecords))
	}
	for i, e := range envelopes {
		if err := checkCanonical(e); err != nil {
			ve := relabel(err, "append", -1)
			field := ""
			if ve.Field != "" {
				field = "field " + ve.Field + ": "
				ve.Field = ""
			}
			ve.Detail = fmt.Sprintf("envelope %d of the batch: %s%s", i, field, ve.Detail)
			return 0, 0, tlog.Hash{}, ve
		}
	}
	hr := &overlayReader{log: l, r: s, m: make(map[int64]tlog.Hash, 3*len(envelopes))}
	for i, e := range envelopes {
		hs, err := tlog.StoredHashes(n+int64(i), e, hr)
		if err != nil {
			return 0, 0, tlog.Hash{}, fmt.Errorf("ledger: hash record %d: %w", n+int64(i), err)
		}
		base := tlog.StoredHashCount(n + int64(i))
		for j, h := range hs {
			hr.m[base+int64(j)] = h
		}
	}
	size = n + int64(len(envelopes))
	root, err = tlog.TreeHash(size, hr)
	if err != nil {
		return 0, 0, tlog.Hash{}, fmt.Errorf("ledger: tree hash at size %d: %w", size, err)
	}
	if len(envelopes) == 0 {
		return n, n, root, nil
	}

	for i, e := range envelopes {
		if err := s.Set(l.key(keyRecord, n+int64(i)), bytes.Clone(e)); err != nil {
			return 0, 0, tlog.Hash{}, fmt.Errorf("ledger: store record %d: %w", n+int64(i), err)
		}
	}
	idxs := make([]int64, 0, len(hr.m))
	for k := range hr.m {
		idxs = append(idxs, k)
	}
	sort.Slice(idxs, func(a, b int) bool { return idxs[a] < idxs[b] })
	for _, k := range idxs {
		h := hr.m[k]
		if err := s.Set(l.key(keyHash, k), h[:]); err != nil {
			return 0, 0, tlog.Hash{}, fmt.Errorf("ledger: store hash %d: %w", k, err)
		}
	}
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(size))
	if err := s.Set(l.sizeKey(), sz[:]); err != nil {
		return 0, 0, tlog.Hash{}, fmt.Errorf("ledger: store size: %w", err)
	}
	return n, size, root, nil
}

// checkCanonical reports whether b is a canonical, decodable envelope.
func checkCanonical(b []byte) error {
	if len(b) <= MaxEnvelopeBytes {
		if _, ok := parseCanonical(b); ok {
			return nil
		}
	}
	env, err := DecodeEnvelope(b)
	if err != nil {
		return err
	}
	c, err := env.Canonical()
	if err != nil {
		return verr("envelope", ErrMalformed, err.Error())
	}
	if !bytes.Equal(c, b) {
		return verr("envelope", ErrMalformed, "not in canonical form (use Envelope.Canonical)")
	}
	return nil
}

// overlayReader reads stored hashes from an in-memory overlay first, then
// from the store.
type overlayReader struct {
	log *Log
	r   Reader
	m   map[int64]tlog.Hash
}

func (o *overlayReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if h, ok := o.m[x]; ok {
			out[i] = h
			continue
		}
		h, err := o.log.readHash(o.r, x)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func (l *Log) readHash(r Reader, index int64) (tlog.Hash, error) {
	v, err := r.Get(l.key(keyHash, index))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return tlog.Hash{}, fmt.Errorf("ledger: stored hash %d: %w", index, ErrNotFound)
		}
		return tlog.Hash{}, fmt.Errorf("ledger: read stored hash %d: %w", index, err)
	}
	if len(v) != tlog.HashSize {
		return tlog.Hash{}, fmt.Errorf("ledger: stored hash %d is %d bytes: %w", index, len(v), ErrMalformed)
	}
	var h tlog.Hash
	copy(h[:], v)
	return h, nil
}

// HashReader returns a tlog.HashReader over the log's stored hashes.
func (l *Log) HashReader(r Reader) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			h, err := l.readHash(r, x)
			if err != nil {
				return nil, err
			}
			out[i] = h
		}
		return out, nil
	})
}

// checkSize checks 0 ≤ size ≤ the log's size.
func (l *Log) checkSize(r Reader, size int64) error {
	n, err := l.Size(r)
	if err != nil {
		return err
	}
	if size < 0 || size > n {
		return fmt.Errorf("ledger: tree size %d is beyond the log's size %d: %w", size, n, ErrNotFound)
	}
	return nil
}

// Record returns the canonical envelope bytes of the record at index.
func (l *Log) Record(r Reader, index int64) ([]byte, error) {
	if index < 0 {
		return nil, fmt.Errorf("ledger: record %d: %w", index, ErrNotFound)
	}
	if err := l.checkSize(r, index+1); err != nil {
		return nil, fmt.Errorf("ledger: record %d: %w", index, err)
	}
	return l.readRecord(r, index)
}

// RecordAt returns the record at index without reading the log's size
// first: for a caller that knows index is below it (a record of a
// checkpoint already read); a record past the end is ErrMissingRecord.
func (l *Log) RecordAt(r Reader, index int64) ([]byte, error) {
	if index < 0 {
		return nil, fmt.Errorf("ledger: record %d: %w", index, ErrNotFound)
	}
	return l.readRecord(r, index)
}

func (l *Log) readRecord(r Reader, index int64) ([]byte, error) {
	v, err := r.Get(l.key(keyRecord, index))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("ledger: record %d is missing from the store: %w", index, ErrMissingRecord)
		}
		return nil, fmt.Errorf("ledger: read record %d: %w", index, err)
	}
	return bytes.Clone(v), nil
}

// RecordHash returns the logged hash of the record at index.
func (l *Log) RecordHash(r Reader, index int64) (tlog.Hash, error) {
	if index < 0 {
		return tlog.Hash{}, fmt.Errorf("ledger: record %d: %w", index, ErrNotFound)
	}
	if err := l.checkSize(r, index+1); err != nil {
		return tlog.Hash{}, err
	}
	return l.readHash(r, tlog.StoredHashIndex(0, index))
}

// TreeHash returns the tree hash of the log's first size records.
func (l *Log) TreeHash(r Reader, size int64) (tlog.Hash, error) {
	if err := l.checkSize(r, size); err != nil {
		return tlog.Hash{}, err
	}
	return tlog.TreeHash(size, l.HashReader(r))
}

// Checkpoint returns the unsigned checkpoint of the log as it is now.
func (l *Log) Checkpoint(r Reader) (Checkpoint, error) {
	n, err := l.Size(r)
	if err != nil {
		return Checkpoint{}, err
	}
	h, err := tlog.TreeHash(n, l.HashReader(r))
	if err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Origin: l.origin, Size: n, Root: h}, nil
}

// ProveRecord returns the proof that the tree of size treeSize contains the
// record at index.
func (l *Log) ProveRecord(r Reader, index, treeSize int64) (tlog.RecordProof, error) {
	if index < 0 || index >= treeSize {
		return nil, fmt.Errorf("ledger: record %d is not in a tree of size %d: %w", index, treeSize, ErrNotFound)
	}
	if err := l.checkSize(r, treeSize); err != nil {
		return nil, err
	}
	return tlog.ProveRecord(treeSize, index, l.HashReader(r))
}

// ProveTree returns the proof that the tree of size newSize contains the
// tree of size oldSize as a prefix (0 < oldSize ≤ newSize; oldSize 0 needs
// no proof and gets an empty one).
func (l *Log) ProveTree(r Reader, oldSize, newSize int64) (tlog.TreeProof, error) {
	if oldSize < 0 || oldSize > newSize {
		return nil, fmt.Errorf("ledger: no consistency proof from size %d to size %d: %w", oldSize, newSize, ErrSizeMismatch)
	}
	if err := l.checkSize(r, newSize); err != nil {
		return nil, err
	}
	if oldSize == 0 {
		return tlog.TreeProof{}, nil
	}
	return tlog.ProveTree(newSize, oldSize, l.HashReader(r))
}

// ReceiptProof returns what GET /v1/ledger/receipts/{index} serves: the
// record at index with its inclusion proof to signedCheckpoint (a signed
// note as made by SignCheckpoint; its signatures are not checked here).
func (l *Log) ReceiptProof(r Reader, index int64, signedCheckpoint []byte) (*ReceiptProof, error) {
	n, err := openUnverified(signedCheckpoint)
	if err != nil {
		return nil, fmt.Errorf("ledger: receipt proof: %w", err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, fmt.Errorf("ledger: receipt proof: %w", err)
	}
	rec, err := l.Record(r, index)
	if err != nil {
		return nil, err
	}
	p, err := l.ProveRecord(r, index, c.Size)
	if err != nil {
		return nil, err
	}
	return &ReceiptProof{Index: index, Envelope: rec, TreeSize: c.Size, Proof: p, Checkpoint: string(signedCheckpoint)}, nil
}

// ConsistencyProof returns the proof between two tree sizes in the form the
// auditor's tools read.
func (l *Log) ConsistencyProof(r Reader, oldSize, newSize int64) (*ConsistencyProof, error) {
	p, err := l.ProveTree(r, oldSize, newSize)
	if err != nil {
		return nil, err
	}
	return &ConsistencyProof{OldSize: oldSize, NewSize: newSize, Proof: p}, nil
}

// MemStore is a Store in memory, safe for concurrent use: for tests, tools
// and single-process use.
type MemStore struct {
	mu sync.RWMutex
	m  map[string][]byte
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: map[string][]byte{}} }

// Get returns the value under key or an error matching ErrNotFound.
func (s *MemStore) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

// Set stores value under key; it keeps value without copying.
func (s *MemStore) Set(key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[string(key)] = value
	return nil
}

// Delete removes key.
func (s *MemStore) Delete(key []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, string(key))
}

// Len returns the number of keys.
func (s *MemStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}
