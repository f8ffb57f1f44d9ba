// Package record holds the records that replicated state stores and that
// packages beside the state machine read: the lease (which package lease
// verifies tokens against) and a node's published key. It is a leaf: the
// state machine (consensus) owns how they are stored and changed, lease
// and node read them, and none of them need each other for it.
package record

import "time"

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

// Lease classes.
const (
	ClassInteractive = "interactive"
	ClassBulk        = "bulk"
)

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
