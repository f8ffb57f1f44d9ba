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
	// Env is the policy environment the lease was issued in (empty in
	// leases issued before environments: prod).
	Env          string `msgpack:"env,omitempty" json:"env,omitempty"`
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

// Roles an API key (or the bootstrap admin token) grants.
const (
	RoleAdmin    = "admin"    // everything
	RoleOperator = "operator" // policy, tenants, budgets, runbook
	RoleAuditor  = "auditor"  // read-only: ledger, events, usage of every tenant
	RoleTenant   = "tenant"   // one tenant: its leases, modules, tasks, events, usage, receipts
)

// ValidRole reports whether r is one of the roles.
func ValidRole(r string) bool {
	return r == RoleAdmin || r == RoleOperator || r == RoleAuditor || r == RoleTenant
}

// APIKey is an API key as replicated state knows it: its public id, what
// it grants, and the SHA-256 of its secret (the secret itself is shown
// once, when the key is made, and kept nowhere). Times are unix
// nanoseconds; ExpiresAt 0 means it does not expire.
type APIKey struct {
	ID        string `msgpack:"id" json:"key_id"`
	Role      string `msgpack:"role" json:"role"`
	Tenant    string `msgpack:"tenant,omitempty" json:"tenant,omitempty"`
	Name      string `msgpack:"name,omitempty" json:"name,omitempty"`
	Hash      []byte `msgpack:"hash" json:"-"`
	CreatedAt int64  `msgpack:"created_at" json:"-"`
	CreatedBy string `msgpack:"created_by" json:"created_by"`
	ExpiresAt int64  `msgpack:"expires_at,omitempty" json:"-"`
	RevokedAt int64  `msgpack:"revoked_at,omitempty" json:"-"`
	RevokedBy string `msgpack:"revoked_by,omitempty" json:"revoked_by,omitempty"`
}

// Revoked reports whether the key has been revoked.
func (k *APIKey) Revoked() bool { return k.RevokedAt != 0 }
