package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/policy"
)

// Refusal codes of apply. They reach API clients as error codes.
const (
	CodeInvalidPolicy = "invalid_policy"
	CodeUnknownPolicy = "unknown_policy"
	CodeLeaseExists   = "lease_exists"
	CodeLeaseNotFound = "lease_not_found"
	CodeLeaseRevoked  = "lease_revoked"
	CodeUnknownTenant = "unknown_tenant"
	CodeUnknownProf   = "unknown_profile"
	CodeNotAllowed    = "profile_not_allowed"
	CodeTTLTooLong    = "ttl_too_long"
	CodeInvalid       = "invalid_command"
	CodeKeyConflict   = "key_conflict"
)

// apply dispatches one command. Every handler validates before it writes:
// a refusal leaves the Tx empty. Handlers are deterministic: they read only
// state and the command, never clocks or randomness.
func apply(tx *Tx, c Command) (any, error) {
	switch c := c.(type) {
	case *PutPolicy:
		return applyPutPolicy(tx, c)
	case *IssueLease:
		return applyIssueLease(tx, c)
	case *RevokeLease:
		return applyRevokeLease(tx, c)
	case *PutNodeKey:
		return nil, applyPutNodeKey(tx, c)
	case *PutNode:
		return nil, applyPutNode(tx, c)
	case *ExpireLeases:
		return applyExpireLeases(tx, c)
	case *LedgerInit:
		return nil, applyLedgerInit(tx, c)
	case *AppendReceipts:
		return applyAppendReceipts(tx, c)
	case *CosignCheckpoint:
		return applyCosignCheckpoint(tx, c)
	case *PutQueueModule:
		return applyPutQueueModule(tx, c)
	case *EnqueueTask:
		return applyEnqueueTask(tx, c)
	case *ClaimTask:
		return applyClaimTask(tx, c)
	case *RenewClaims:
		return applyRenewClaims(tx, c)
	case *CompleteTask:
		return applyCompleteTask(tx, c)
	case *CancelTask:
		return applyCancelTask(tx, c)
	case *ReclaimTasks:
		return applyReclaimTasks(tx, c)
	case *PurgeTasks:
		return applyPurgeTasks(tx, c)
	}
	return nil, fmt.Errorf("no handler for %s", c.Op())
}

func put(tx *Tx, key string, v any) error {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	tx.Set(key, b)
	return nil
}

func applyPutPolicy(tx *Tx, c *PutPolicy) (string, error) {
	b, err := policy.FromCanonical(c.Canonical)
	if err != nil {
		return "", refuse(CodeInvalidPolicy, "%v", err)
	}
	// Re-derive the canonical form: replicated bytes are stored only in
	// the form this build would have written.
	canonical := b.Canonical()
	digest := policy.DigestOf(canonical)
	if c.Env != "" && !validEnv(c.Env) {
		return "", refuse(CodeInvalid, "unknown environment %q (dev, stage, prod)", c.Env)
	}
	var existing PolicyRecord
	switch err := getRecord(tx, prefixBundle+digest, &existing); {
	case errors.Is(err, ErrNotFound):
		if err := put(tx, prefixBundle+digest, &PolicyRecord{Digest: digest, Canonical: canonical, Source: c.Source, By: c.By, At: c.At}); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	}
	if c.Env != "" {
		tx.Set(prefixEnv+c.Env, []byte(digest))
	}
	return digest, nil
}

func validEnv(e string) bool { return e == "dev" || e == "stage" || e == "prod" }

// Lease classes.
const (
	ClassInteractive = "interactive"
	ClassBulk        = "bulk"
)

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
	if !t.Allows(l.Profile) {
		return nil, refuse(CodeNotAllowed, "tenant %q may not use profile %q", l.Tenant, l.Profile)
	}
	if l.ExpiresAt-l.IssuedAt > int64(p.MaxLeaseTTL) {
		return nil, refuse(CodeTTLTooLong, "ttl is above the profile's max_lease_ttl of %s", p.MaxLeaseTTL.D())
	}
	var key NodeKey
	if err := getRecord(tx, prefixKey+l.KID, &key); err != nil || key.Use != KeyUseLease {
		return nil, refuse(CodeInvalid, "kid %q is not a published lease key", l.KID)
	}
	if err := put(tx, prefixLease+l.ID, &l); err != nil {
		return nil, err
	}
	tx.Set(leaseExpiryKey(l.ExpiresAt, l.ID), emptyValue)
	return &l, nil
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
	l.RevokedAt, l.RevokeReason, l.RevokedBy = c.At, c.Reason, c.By
	if l.RevokedAt == 0 {
		return nil, refuse(CodeInvalid, "revocation needs a time")
	}
	if err := put(tx, prefixLease+l.ID, &l); err != nil {
		return nil, err
	}
	return &l, nil
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

// maxExpirePerCommand bounds the work of one ExpireLeases.
const maxExpirePerCommand = 10000

// applyExpireLeases forgets leases that expired before c.Before, oldest
// first, at most maxExpirePerCommand of them, through the expiry index.
func applyExpireLeases(tx *Tx, c *ExpireLeases) (int, error) {
	var gone []string
	upper := leaseExpiryKey(c.Before, "")
	err := scan(tx, prefixLeaseExp, func(k, _ []byte) error {
		if len(gone) >= maxExpirePerCommand || string(k) >= upper {
			return errStopScan
		}
		gone = append(gone, string(k))
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return 0, err
	}
	for _, k := range gone {
		tx.Delete(k)
		tx.Delete(prefixLease + k[len(prefixLeaseExp)+8:])
	}
	return len(gone), nil
}

// errStopScan ends a scan early.
var errStopScan = errors.New("stop scan")
