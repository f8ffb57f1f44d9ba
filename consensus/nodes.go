// Nodes in replicated state: their identities and published public
// keys, the commands that record them, and the reads.

package consensus

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/record"
)

// NodeInfo is a node's identity and addresses.
type NodeInfo struct {
	ID       string `msgpack:"id" json:"id"`
	API      string `msgpack:"api" json:"api"`
	Raft     string `msgpack:"raft" json:"raft"`
	Gossip   string `msgpack:"gossip,omitempty" json:"gossip,omitempty"`
	Version  string `msgpack:"version" json:"version"`
	JoinedAt int64  `msgpack:"joined_at" json:"-"`
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

func applyPutNodeKey(tx *Tx, c *PutNodeKey) error {
	k := c.Key
	if k.KID == "" || k.NodeID == "" || len(k.PublicKey) != 32 || k.Algorithm != "EdDSA" {
		return refuse(CodeInvalid, "a node key needs a kid, a node id and a 32-byte Ed25519 public key")
	}
	switch k.Use {
	case KeyUseLease, KeyUseReceipt, KeyUseNote:
	default:
		return refuse(CodeInvalid, "unknown key use %q", k.Use)
	}
	var existing NodeKey
	switch err := getRecord(tx, prefixKey+k.KID, &existing); {
	case err == nil:
		if string(existing.PublicKey) != string(k.PublicKey) || existing.NodeID != k.NodeID {
			return refuse(CodeKeyConflict, "kid %s is already bound to another key", k.KID)
		}
		return nil
	case !errors.Is(err, ErrNotFound):
		return err
	}
	return put(tx, prefixKey+k.KID, &k)
}

func applyPutNode(tx *Tx, c *PutNode) error {
	if c.Node.ID == "" {
		return refuse(CodeInvalid, "a node needs an id")
	}
	return put(tx, prefixNode+c.Node.ID, &c.Node)
}

// The node key record is package record's (see Lease).
type NodeKey = record.NodeKey

// Key uses.
const (
	KeyUseLease   = record.KeyUseLease
	KeyUseReceipt = record.KeyUseReceipt
	KeyUseNote    = record.KeyUseNote
)

// PutNodeKey publishes a node's Ed25519 public key.
type PutNodeKey struct {
	Key NodeKey `msgpack:"key"`
}

// PutNode records a node's identity and addresses.
type PutNode struct {
	Node NodeInfo `msgpack:"node"`
}

func (PutNodeKey) Op() Op { return OpPutNodeKey }
func (PutNode) Op() Op    { return OpPutNode }
