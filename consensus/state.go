package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/policy"
)

// Replicated records. They are msgpack in Pebble under PrefixState.

// Lease is a lease as replicated state knows it. Times are unix
// nanoseconds.
type Lease struct {
	ID           string `msgpack:"id" json:"lease_id"`
	Tenant       string `msgpack:"tenant" json:"tenant"`
	Profile      string `msgpack:"profile" json:"profile"`
	Intent       string `msgpack:"intent,omitempty" json:"intent,omitempty"`
	PolicyDigest string `msgpack:"policy_digest" json:"policy_digest"`
	Class        string `msgpack:"class" json:"class"`
	Session      string `msgpack:"session,omitempty" json:"session,omitempty"`
	IssuedAt     int64  `msgpack:"issued_at" json:"-"`
	NotBefore    int64  `msgpack:"not_before" json:"-"`
	ExpiresAt    int64  `msgpack:"expires_at" json:"-"`
	IssuedBy     string `msgpack:"issued_by" json:"issued_by"` // node id
	KID          string `msgpack:"kid" json:"kid"`
	RevokedAt    int64  `msgpack:"revoked_at,omitempty" json:"-"`
	RevokeReason string `msgpack:"revoke_reason,omitempty" json:"revoke_reason,omitempty"`
	RevokedBy    string `msgpack:"revoked_by,omitempty" json:"revoked_by,omitempty"`
}

// Revoked reports whether the lease has been revoked.
func (l *Lease) Revoked() bool { return l.RevokedAt != 0 }

// Expires is the expiry as a time.
func (l *Lease) Expires() time.Time { return time.Unix(0, l.ExpiresAt).UTC() }

// Key uses.
const (
	KeyUseLease   = "lease"
	KeyUseReceipt = "receipt"
	KeyUseNote    = "note"
)

// NodeKey is a node's public key, by key id.
type NodeKey struct {
	KID       string `msgpack:"kid" json:"kid"`
	NodeID    string `msgpack:"node_id" json:"node_id"`
	Use       string `msgpack:"use" json:"use"`
	Algorithm string `msgpack:"alg" json:"alg"` // "EdDSA" (Ed25519)
	PublicKey []byte `msgpack:"public_key" json:"public_key"`
	// Text is a key's text form where its format has one (a note
	// verifier key).
	Text    string `msgpack:"text,omitempty" json:"text,omitempty"`
	AddedAt int64  `msgpack:"added_at" json:"-"`
}

// NodeInfo is a node's identity and addresses.
type NodeInfo struct {
	ID       string `msgpack:"id" json:"id"`
	API      string `msgpack:"api" json:"api"`
	Raft     string `msgpack:"raft" json:"raft"`
	Gossip   string `msgpack:"gossip,omitempty" json:"gossip,omitempty"`
	Version  string `msgpack:"version" json:"version"`
	JoinedAt int64  `msgpack:"joined_at" json:"-"`
}

// PolicyRecord is a stored bundle.
type PolicyRecord struct {
	Digest    string `msgpack:"digest"`
	Canonical []byte `msgpack:"canonical"`
	Source    []byte `msgpack:"source"`
	By        string `msgpack:"by"`
	At        int64  `msgpack:"at"`
}

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

// Lease returns a lease by id. The caller may keep but not change it.
func (s *State) Lease(id string) (*Lease, error) {
	key := prefixLease + id
	if v, ok := s.records.get(key); ok {
		c := *v.(*Lease)
		return &c, nil
	}
	g := s.records.gen.Load()
	var l Lease
	if err := getRecord(s.db, key, &l); err != nil {
		return nil, err
	}
	c := l
	s.records.put(g, key, &c)
	return &l, nil
}

// NodeKey returns a public key by key id.
func (s *State) NodeKey(kid string) (*NodeKey, error) {
	key := prefixKey + kid
	if v, ok := s.records.get(key); ok {
		c := *v.(*NodeKey)
		return &c, nil
	}
	g := s.records.gen.Load()
	var k NodeKey
	if err := getRecord(s.db, key, &k); err != nil {
		return nil, err
	}
	c := k
	s.records.put(g, key, &c)
	return &k, nil
}

// NodeKeys lists every published key.
func (s *State) NodeKeys() ([]NodeKey, error) {
	var out []NodeKey
	err := scan(s.db, prefixKey, func(k, v []byte) error {
		var nk NodeKey
		if err := msgpack.Unmarshal(v, &nk); err != nil {
			return fmt.Errorf("decode %s: %w", k, err)
		}
		out = append(out, nk)
		return nil
	})
	return out, err
}

// Nodes lists every recorded node.
func (s *State) Nodes() ([]NodeInfo, error) {
	var out []NodeInfo
	err := scan(s.db, prefixNode, func(k, v []byte) error {
		var n NodeInfo
		if err := msgpack.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("decode %s: %w", k, err)
		}
		out = append(out, n)
		return nil
	})
	return out, err
}

// EnvDigest is the digest of the bundle an environment points at.
func (s *State) EnvDigest(env string) (string, error) { return getString(s.db, prefixEnv+env) }

// PolicyRecord returns a stored bundle record by digest.
func (s *State) PolicyRecord(digest string) (*PolicyRecord, error) {
	var rec PolicyRecord
	if err := getRecord(s.db, prefixBundle+digest, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Bundle returns the parsed bundle with digest. Parsed bundles are cached:
// a digest names immutable bytes.
func (s *State) Bundle(digest string) (*policy.Bundle, error) {
	if b, ok := s.cache.get(digest); ok {
		return b, nil
	}
	rec, err := s.PolicyRecord(digest)
	if err != nil {
		return nil, err
	}
	b, err := policy.FromCanonical(rec.Canonical)
	if err != nil {
		return nil, fmt.Errorf("stored bundle %s: %w", digest, err)
	}
	s.cache.put(digest, b)
	return b, nil
}

// ActiveBundle is the bundle an environment points at, with its digest.
func (s *State) ActiveBundle(env string) (string, *policy.Bundle, error) {
	d, err := s.EnvDigest(env)
	if err != nil {
		return "", nil, err
	}
	b, err := s.Bundle(d)
	return d, b, err
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
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
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
