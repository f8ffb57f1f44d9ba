package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/digest"
)

// Replicated records. They are msgpack in Pebble under PrefixState.

// Keys of replicated state.
const (
	keyApplied   = PrefixState + "meta/applied"
	prefixBundle = PrefixState + "policy/bundle/"
	prefixEnv    = PrefixState + "policy/env/"
	prefixLease  = PrefixState + "lease/"
	// prefixLeaseExp indexes leases by expiry: 8-byte big-endian unix ns,
	// then the lease id.
	prefixLeaseExp = PrefixState + "lease-exp/"
	prefixKey      = PrefixState + "key/"
	prefixNode     = PrefixState + "node/"
)

// ErrNotFound is returned by State reads for missing records.
var ErrNotFound = errors.New("not found")

// State reads replicated state. Reads are local: a follower may be
// slightly behind the leader.
type State struct {
	db      *pebble.DB
	cache   *bundleCache
	records *recordCache
}

// reader is what State reads through: the DB, a snapshot or a batch.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func getRecord(r reader, key string, v any) error {
	b, closer, err := r.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	defer closer.Close()
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

func getString(r reader, key string) (string, error) {
	b, closer, err := r.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	defer closer.Close()
	return string(b), nil
}

// AppliedIndex is the last Raft index applied to this node's state.
func (s *State) AppliedIndex() (uint64, error) { return appliedIndex(s.db) }

func appliedIndex(r reader) (uint64, error) {
	b, closer, err := r.Get([]byte(keyApplied))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(b) != 8 {
		return 0, fmt.Errorf("applied index record is %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// Digest is a SHA-256 over every replicated key and value except the
// applied index: two nodes that applied the same commands have the same
// digest.
func (s *State) Digest() (string, error) {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	h := sha256.New()
	var lenBuf [8]byte
	err := scan(snap, PrefixState, func(k, v []byte) error {
		if string(k) == keyApplied {
			return nil
		}
		for _, b := range [][]byte{k, v} {
			binary.BigEndian.PutUint64(lenBuf[:], uint64(len(b)))
			h.Write(lenBuf[:])
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return digest.Sum(h), nil
}

// iterable is what scan iterates: the DB, a snapshot or a batch.
type iterable interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func scan(r iterable, prefix string, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: PrefixEnd([]byte(prefix))})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		if err := fn(bytes.Clone(it.Key()), v); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}
