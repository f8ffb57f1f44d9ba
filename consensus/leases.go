// Leases in replicated state: the record, its expiry index, the
// commands that issue, revoke and forget leases, and the reads.

package consensus

import (
	"encoding/binary"
	"errors"

	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/record"
)

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

func applyIssueLease(tx *Tx, c *IssueLease) (*Lease, error) {
	l := c.Lease
	if l.ID == "" || l.Tenant == "" || l.Profile == "" || l.KID == "" {
		return nil, refuse(CodeInvalid, "lease needs id, tenant, profile and kid")
	}
	if l.Class != ClassInteractive && l.Class != ClassBulk {
		return nil, refuse(CodeInvalid, "unknown class %q", l.Class)
	}
	if l.ExpiresAt <= l.IssuedAt || l.NotBefore > l.ExpiresAt {
		return nil, refuse(CodeInvalid, "lease expires before it is issued")
	}
	if l.RevokedAt != 0 {
		return nil, refuse(CodeInvalid, "a new lease cannot be revoked")
	}
	var prev Lease
	if err := getRecord(tx, prefixLease+l.ID, &prev); err == nil {
		return nil, refuse(CodeLeaseExists, "lease %s exists", l.ID)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	var rec PolicyRecord
	if err := getRecord(tx, prefixBundle+l.PolicyDigest, &rec); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(CodeUnknownPolicy, "no bundle %s", l.PolicyDigest)
		}
		return nil, err
	}
	b, err := policy.FromCanonical(rec.Canonical)
	if err != nil {
		return nil, err
	}
	t, ok := b.Tenants[l.Tenant]
	if !ok {
		return nil, refuse(CodeUnknownTenant, "tenant %q is not in the bundle", l.Tenant)
	}
	p, ok := b.Profiles[l.Profile]
	if !ok {
		return nil, refuse(CodeUnknownProf, "profile %q is not in the bundle", l.Profile)
	}
	if err := checkNotFrozen(tx, l.Profile, l.PolicyDigest); err != nil {
		return nil, err
	}
	if !t.Allows(l.Profile) {
		return nil, refuse(CodeNotAllowed, "tenant %q may not use profile %q", l.Tenant, l.Profile)
	}
	if env := l.Env; env != "" || !t.MayUse(policy.EnvProd) {
		if env == "" {
			env = policy.EnvProd
		}
		if !policy.ValidEnv(env) {
			return nil, refuse(CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", l.Env)
		}
		if !t.MayUse(env) {
			return nil, refuse(CodeEnvNotAllowed, "tenant %q may not issue leases in %s", l.Tenant, env)
		}
	}
	if l.ExpiresAt-l.IssuedAt > int64(p.MaxLeaseTTL) {
		return nil, refuse(CodeTTLTooLong, "ttl is above the profile's max_lease_ttl of %s", p.MaxLeaseTTL.D())
	}
	var key NodeKey
	if err := getRecord(tx, prefixKey+l.KID, &key); err != nil || key.Use != KeyUseLease {
		return nil, refuse(CodeInvalid, "kid %q is not a published lease key", l.KID)
	}
	if err := leases.insert(tx, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// leases is the lease record and its expiry index: the only writer of the
// keys under lease/ and lease-exp/.
var leases = &table[Lease]{
	name: "lease",
	key:  func(l *Lease) string { return prefixLease + l.ID },
	indexes: []index[Lease]{
		{"expiry", always(func(l *Lease) string { return leaseExpiryKey(l.ExpiresAt, l.ID) }), func(*Lease) []byte { return emptyValue }},
	},
}

// emptyValue is an empty value (a nil value means delete to Tx).
var emptyValue = []byte{}

// leaseExpiryKey indexes leases by expiry, so forgetting expired ones is
// a range read, not a scan of every lease.
func leaseExpiryKey(expiresAt int64, id string) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(expiresAt, 0)))
	return prefixLeaseExp + string(b[:]) + id
}

func applyRevokeLease(tx *Tx, c *RevokeLease) (*Lease, error) {
	var l Lease
	if err := getRecord(tx, prefixLease+c.LeaseID, &l); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(CodeLeaseNotFound, "no lease %s", c.LeaseID)
		}
		return nil, err
	}
	if l.Revoked() {
		// Revoking twice is not an error: the lease stays revoked as of
		// the first revocation.
		return &l, nil
	}
	if c.At == 0 {
		return nil, refuse(CodeInvalid, "revocation needs a time")
	}
	old := l
	l.RevokedAt, l.RevokeReason, l.RevokedBy = c.At, c.Reason, c.By
	if err := leases.put(tx, &old, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// maxExpirePerCommand bounds the work of one ExpireLeases.
const maxExpirePerCommand = 10000

// applyExpireLeases forgets leases that expired before c.Before, oldest
// first, at most maxExpirePerCommand of them, through the expiry index.
func applyExpireLeases(tx *Tx, c *ExpireLeases) (int, error) {
	return leases.expireBefore(tx, prefixLeaseExp, prefixLease, c.Before, maxExpirePerCommand)
}

// The lease record and its classes are package record's, so that package
// lease reads them without importing the state machine.
type Lease = record.Lease

// Lease classes.
const (
	ClassInteractive = record.ClassInteractive
	ClassBulk        = record.ClassBulk
)

// IssueLease records a lease. The proposer validated it against the
// bundle; apply checks again against replicated state.
type IssueLease struct {
	Lease Lease `msgpack:"lease"`
}

// RevokeLease revokes one lease.
type RevokeLease struct {
	LeaseID string `msgpack:"lease_id"`
	Reason  string `msgpack:"reason"`
	By      string `msgpack:"by"`
	At      int64  `msgpack:"at"`
}

// ExpireLeases forgets leases that expired before Before (unix ns).
type ExpireLeases struct {
	Before int64 `msgpack:"before"`
}

func (IssueLease) Op() Op   { return OpIssueLease }
func (RevokeLease) Op() Op  { return OpRevokeLease }
func (ExpireLeases) Op() Op { return OpExpireLeases }
