package ledger

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"golang.org/x/mod/sumdb/note"
)

// KeySet is the set of node public keys an auditor trusts: what the
// auditor saves from GET /v1/keys. Its JSON form is
//
//	{
//	  "origin": "leash/3f9c…",
//	  "nodes": [
//	    {
//	      "id": "node-a",
//	      "receipt_keys": [{"keyid": "sha256:…", "alg": "ed25519", "public_key": "<base64, 32 bytes>"}],
//	      "checkpoint_keys": ["node-a+1a2b3c4d+AR…"]
//	    }
//	  ]
//	}
//
// origin is the log's checkpoint origin (checkpoints naming another origin
// are refused; "" accepts any). A node lists every receipt key it has ever
// signed with and every note verifier key (golang.org/x/mod/sumdb/note
// format, named by the node id) it signs checkpoints with, so that old
// receipts stay verifiable across rotations. Unknown fields are ignored, so
// the endpoint may serve more (for example the lease JWKS).
//
// Build a KeySet with [ParseKeySet], [ReadKeySet] or [NewKeySet] and treat
// it as immutable afterwards; a KeySet built as a literal also works, at
// the cost of checking it on every call.
type KeySet struct {
	Origin string     `json:"origin"`
	Nodes  []NodeKeys `json:"nodes"`

	idx *keyIndex
}

// NodeKeys are one node's public keys.
type NodeKeys struct {
	ID             string       `json:"id"`
	ReceiptKeys    []ReceiptKey `json:"receipt_keys"`
	CheckpointKeys []string     `json:"checkpoint_keys"`
}

// ReceiptKey is an Ed25519 public key that signs receipts.
type ReceiptKey struct {
	// KeyID is KeyID(PublicKey); it must match.
	KeyID string `json:"keyid"`
	// Alg is "ed25519".
	Alg string `json:"alg"`
	// PublicKey is the standard base64 of the 32-byte public key.
	PublicKey string `json:"public_key"`
}

// NewNodeKeys builds a node's entry from its receipt and checkpoint public
// keys.
func NewNodeKeys(nodeID string, receiptKey, checkpointKey ed25519.PublicKey) (NodeKeys, error) {
	if len(receiptKey) != ed25519.PublicKeySize {
		return NodeKeys{}, fmt.Errorf("node %s: receipt key is %d bytes, want %d", nodeID, len(receiptKey), ed25519.PublicKeySize)
	}
	vkey, err := NoteVerifierKey(nodeID, checkpointKey)
	if err != nil {
		return NodeKeys{}, fmt.Errorf("node %s: checkpoint key: %w", nodeID, err)
	}
	return NodeKeys{
		ID: nodeID,
		ReceiptKeys: []ReceiptKey{{
			KeyID:     KeyID(receiptKey),
			Alg:       "ed25519",
			PublicKey: base64.StdEncoding.EncodeToString(receiptKey),
		}},
		CheckpointKeys: []string{vkey},
	}, nil
}

// NewKeySet checks and indexes a key set.
func NewKeySet(origin string, nodes ...NodeKeys) (*KeySet, error) {
	ks := &KeySet{Origin: origin, Nodes: nodes}
	idx, err := ks.build()
	if err != nil {
		return nil, err
	}
	ks.idx = idx
	return ks, nil
}

// ParseKeySet parses the JSON form of a key set and checks it.
func ParseKeySet(data []byte) (*KeySet, error) {
	var ks KeySet
	if err := json.Unmarshal(data, &ks); err != nil {
		return nil, verr("keys", ErrMalformed, "not a key set: "+err.Error())
	}
	return NewKeySet(ks.Origin, ks.Nodes...)
}

// ReadKeySet reads the JSON form of a key set (at most 4 MiB) and checks it.
func ReadKeySet(r io.Reader) (*KeySet, error) {
	const max = 4 << 20
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read key set: %w", err)
	}
	if len(data) > max {
		return nil, verr("keys", ErrTooLarge, "key set is over 4 MiB")
	}
	return ParseKeySet(data)
}

// NodeIDs returns the ids of the nodes in the set, sorted.
func (ks *KeySet) NodeIDs() []string {
	ids := make([]string, 0, len(ks.Nodes))
	for _, n := range ks.Nodes {
		ids = append(ids, n.ID)
	}
	sort.Strings(ids)
	return ids
}

type receiptKey struct {
	id   string
	node string
	pub  ed25519.PublicKey
}

// keyIndex is a checked, indexed KeySet.
type keyIndex struct {
	origin    string
	byID      map[string]*receiptKey
	all       []*receiptKey
	verifiers note.Verifiers
	noteNodes map[string]bool
}

func (ks *KeySet) compile() (*keyIndex, error) {
	if ks == nil {
		return nil, verr("keys", ErrUnknownKey, "no trusted key set given")
	}
	if ks.idx != nil {
		return ks.idx, nil
	}
	return ks.build()
}

func (ks *KeySet) build() (*keyIndex, error) {
	idx := &keyIndex{origin: ks.Origin, byID: map[string]*receiptKey{}, noteNodes: map[string]bool{}}
	if ks.Origin != "" {
		if err := checkOrigin(ks.Origin); err != nil {
			return nil, &VerifyError{Subject: "keys", Index: -1, Field: "origin", Err: ErrMalformed, Detail: err.Error()}
		}
	}
	var verifiers []note.Verifier
	seenNode := map[string]bool{}
	seenNote := map[string]string{}
	for i, n := range ks.Nodes {
		bad := func(field, detail string) error {
			e := &VerifyError{Subject: "keys", Index: -1, Node: n.ID, Field: field, Err: ErrMalformed, Detail: detail}
			if n.ID == "" {
				e.Field = fmt.Sprintf("nodes[%d].%s", i, field)
			}
			return e
		}
		if n.ID == "" {
			return nil, bad("id", "is empty")
		}
		if seenNode[n.ID] {
			return nil, bad("id", "appears twice")
		}
		seenNode[n.ID] = true
		for j, k := range n.ReceiptKeys {
			field := fmt.Sprintf("receipt_keys[%d]", j)
			if k.Alg != "ed25519" && k.Alg != "" {
				return nil, bad(field+".alg", fmt.Sprintf("%q, want ed25519", k.Alg))
			}
			pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
			if err != nil || len(pub) != ed25519.PublicKeySize {
				return nil, bad(field+".public_key", "is not the base64 of a 32-byte Ed25519 key")
			}
			id := KeyID(pub)
			if k.KeyID != id {
				return nil, bad(field+".keyid", fmt.Sprintf("%q is not the key's id %s", k.KeyID, id))
			}
			if prev, ok := idx.byID[id]; ok {
				return nil, bad(field, fmt.Sprintf("key %s is also listed for node %s", id, prev.node))
			}
			rk := &receiptKey{id: id, node: n.ID, pub: ed25519.PublicKey(pub)}
			idx.byID[id] = rk
			idx.all = append(idx.all, rk)
		}
		for j, vk := range n.CheckpointKeys {
			field := fmt.Sprintf("checkpoint_keys[%d]", j)
			v, err := note.NewVerifier(vk)
			if err != nil {
				return nil, bad(field, "is not a note verifier key: "+err.Error())
			}
			if v.Name() != n.ID {
				return nil, bad(field, fmt.Sprintf("is named %q, want the node id", v.Name()))
			}
			nh := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
			if _, dup := seenNote[nh]; dup {
				return nil, bad(field, "lists the key "+nh+" twice")
			}
			seenNote[nh] = vk
			verifiers = append(verifiers, v)
			idx.noteNodes[n.ID] = true
		}
	}
	idx.verifiers = note.VerifierList(verifiers...)
	return idx, nil
}

// receiptCandidates returns the keys to try for a signature's key id: the
// one it names, or every key when it names none.
func (idx *keyIndex) receiptCandidates(keyID string) []*receiptKey {
	if keyID == "" {
		return idx.all
	}
	if k, ok := idx.byID[keyID]; ok {
		return []*receiptKey{k}
	}
	return nil
}
