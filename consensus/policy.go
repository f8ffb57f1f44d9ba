// Policy bundles in replicated state: stored by digest, the environments
// dev, stage and prod each pointing at one, prod's canary, every
// environment's history and rollback stack, the commands that change
// them, and the reads. docs/policy.md describes the lifecycle.
//
// Keys (all under PrefixState):
//
//	policy/bundle/<digest>        PolicyRecord
//	policy/bundles                count of stored bundles (8-byte counter)
//	policy/env/<env>              the environment's (stable) digest, as text
//	policy/envstate/<env>         EnvState: version and rollback stack
//	policy/seen/<env>/<digest>    empty: digest has been in env (the gates)
//	policy/history/<env>/<seq>    PolicyChange, seq 8-byte big-endian from 1
//	policy/canary                 Canary (prod only); absent: no canary

package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/policy"
)

// Keys of the policy area beyond prefixBundle and prefixEnv (state.go).
const (
	keyBundleCount   = PrefixState + "policy/bundles"
	prefixEnvState   = PrefixState + "policy/envstate/"
	prefixSeen       = PrefixState + "policy/seen/"
	prefixHistory    = PrefixState + "policy/history/"
	keyCanary        = PrefixState + "policy/canary"
	maxReasonBytes   = 512
	maxSourceBytes   = policy.MaxBundleBytes
	maxCanonicalSize = 2 * policy.MaxBundleBytes
)

// Retention of the policy area (docs/policy.md, "Retention").
const (
	// MaxBundles bounds the bundles stored by digest. Bundles are kept:
	// a lease names its bundle's digest for its whole life, and history
	// and rollback name older ones. Past the bound a new digest is
	// refused (too_many_bundles); pushing a stored digest again is not.
	MaxBundles = 256
	// MaxRollbackDepth bounds an environment's rollback stack: the
	// digests one rollback after another returns to.
	MaxRollbackDepth = 32
)

// Policy change actions, as history records them.
const (
	ActionPut           = "put"     // PUT /v1/policy, or a node's --policy at start
	ActionPush          = "push"    // leash policy push
	ActionPromote       = "promote" // copied forward from another environment
	ActionRollback      = "rollback"
	ActionCanarySet     = "canary_set"
	ActionCanaryPromote = "canary_promote"
	ActionCanaryAbort   = "canary_abort"
)

// Refusal codes of the policy lifecycle.
const (
	CodeUnknownEnv      = "unknown_environment"
	CodeGateNotPassed   = "gate_not_passed"
	CodePolicyConflict  = "policy_conflict"
	CodeInvalidPercent  = "invalid_canary_percent"
	CodeNoCanary        = "no_canary"
	CodeCanaryIsStable  = "canary_is_stable"
	CodeNothingToRollBk = "nothing_to_roll_back"
	CodeTooManyBundles  = "too_many_bundles"
	CodeReasonRequired  = "reason_required"
	CodeUnchanged       = "policy_unchanged"
	CodeEnvNotAllowed   = "environment_not_allowed"
)

// PolicyRecord is a stored bundle.
type PolicyRecord struct {
	Digest    string `msgpack:"digest"`
	Canonical []byte `msgpack:"canonical"`
	Source    []byte `msgpack:"source"`
	By        string `msgpack:"by"`
	At        int64  `msgpack:"at"`
}

// EnvState is an environment's version (how many changes it has had;
// a change may name the version it expects, so that of two concurrent
// changes the second is refused) and its rollback stack.
type EnvState struct {
	Version uint64 `msgpack:"version"`
	// Previous are the digests the environment pointed at before,
	// most recent last, at most MaxRollbackDepth.
	Previous []string `msgpack:"previous,omitempty"`
}

// Canary is prod's canary: a share of new leases is issued against
// Digest instead of the stable digest.
type Canary struct {
	Digest  string `msgpack:"digest"`
	Percent int    `msgpack:"percent"`
	// AbortAbove turns on the automatic abort: when the canary's share
	// of bad outcomes exceeds the stable leases' share by more than
	// AbortAbove percentage points (over WindowSeconds, with at least
	// MinTasks canary tasks), the canary is aborted. 0: off.
	AbortAbove    int    `msgpack:"abort_above,omitempty"`
	WindowSeconds int    `msgpack:"window_seconds,omitempty"`
	MinTasks      int    `msgpack:"min_tasks,omitempty"`
	By            string `msgpack:"by"`
	At            int64  `msgpack:"at"`
	Reason        string `msgpack:"reason,omitempty"`
}

// PolicyChange is one entry of an environment's history. History is
// append-only: no command rewrites or deletes an entry.
type PolicyChange struct {
	Seq      uint64 `msgpack:"seq" json:"seq"`
	Env      string `msgpack:"env" json:"env"`
	Action   string `msgpack:"action" json:"action"`
	Digest   string `msgpack:"digest" json:"digest"` // the stable digest after the change
	Previous string `msgpack:"previous,omitempty" json:"previous,omitempty"`
	From     string `msgpack:"from,omitempty" json:"from,omitempty"` // promoted from
	// CanaryDigest and CanaryPercent are prod's canary after the change.
	CanaryDigest  string `msgpack:"canary_digest,omitempty" json:"canary_digest,omitempty"`
	CanaryPercent int    `msgpack:"canary_percent,omitempty" json:"canary_percent,omitempty"`
	Override      bool   `msgpack:"override,omitempty" json:"override,omitempty"`
	Reason        string `msgpack:"reason,omitempty" json:"reason,omitempty"`
	By            string `msgpack:"by" json:"by"` // the caller: admin, or key:<id>, or a node id
	At            int64  `msgpack:"at" json:"-"`
}

// EnvDigest is the digest of the bundle an environment points at (prod:
// its stable digest).
func (s *State) EnvDigest(env string) (string, error) { return getString(s.db, prefixEnv+env) }

// EnvState returns an environment's version and rollback stack (zero
// for an environment never set).
func (s *State) EnvState(env string) (EnvState, error) { return envState(s.db, env) }

func envState(r reader, env string) (EnvState, error) {
	var st EnvState
	if err := getRecord(r, prefixEnvState+env, &st); err != nil && !errors.Is(err, ErrNotFound) {
		return st, err
	}
	return st, nil
}

// Canary returns prod's canary, or ErrNotFound.
func (s *State) Canary() (*Canary, error) {
	var c Canary
	if err := getRecord(s.db, keyCanary, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Seen reports whether digest has ever been in env.
func (s *State) Seen(env, digest string) (bool, error) { return seen(s.db, env, digest) }

func seen(r reader, env, digest string) (bool, error) {
	_, closer, err := r.Get([]byte(prefixSeen + env + "/" + digest))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	closer.Close()
	return true, nil
}

// History returns env's changes, newest first: at most limit of them
// with a sequence number below before (0: from the newest).
func (s *State) History(env string, before uint64, limit int) ([]PolicyChange, error) {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	var out []PolicyChange
	lower := prefixHistory + env + "/"
	upper := string(PrefixEnd([]byte(lower)))
	if before > 0 {
		upper = historyKey(env, before)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte(lower), UpperBound: []byte(upper)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.Last(); it.Valid() && len(out) < limit; it.Prev() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		var c PolicyChange
		if err := msgpack.Unmarshal(v, &c); err != nil {
			return nil, fmt.Errorf("decode %s: %w", it.Key(), err)
		}
		out = append(out, c)
	}
	return out, nil
}

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

// ActiveBundle is the bundle an environment points at (prod: its stable
// bundle), with its digest.
func (s *State) ActiveBundle(env string) (string, *policy.Bundle, error) {
	d, err := s.EnvDigest(env)
	if err != nil {
		return "", nil, err
	}
	b, err := s.Bundle(d)
	return d, b, err
}

// LeaseDigest is the digest a new lease with id leaseID is issued
// against in env: prod's canary digest for the canary's share of lease
// ids (CanaryPicks), else the environment's stable digest.
func (s *State) LeaseDigest(env, leaseID string) (digest string, canary bool, err error) {
	d, err := s.EnvDigest(env)
	if err != nil {
		return "", false, err
	}
	if env != policy.EnvProd {
		return d, false, nil
	}
	c, err := s.Canary()
	switch {
	case errors.Is(err, ErrNotFound):
		return d, false, nil
	case err != nil:
		return "", false, err
	}
	if CanaryPicks(leaseID, c.Percent) {
		return c.Digest, true, nil
	}
	return d, false, nil
}

// CanaryPicks reports whether a lease id falls in a canary of percent:
// the first 8 bytes of SHA-256(lease id), as a number, mod 10000, below
// percent × 100. The same id gives the same answer on every node, and
// random ids split in the ratio asked for.
func CanaryPicks(leaseID string, percent int) bool {
	if percent <= 0 {
		return false
	}
	if percent >= 100 {
		return true
	}
	h := sha256.Sum256([]byte(leaseID))
	return binary.BigEndian.Uint64(h[:8])%10000 < uint64(percent)*100
}

func historyKey(env string, seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return prefixHistory + env + "/" + string(b[:])
}

// storeBundle validates canonical bytes and stores them under their
// digest (once), within MaxBundles.
func storeBundle(tx *Tx, canonicalIn, source []byte, by string, at int64) (string, error) {
	if len(canonicalIn) > maxCanonicalSize || len(source) > maxSourceBytes {
		return "", refuse(CodeInvalidPolicy, "bundle is too large")
	}
	b, err := policy.FromCanonical(canonicalIn)
	if err != nil {
		return "", refuse(CodeInvalidPolicy, "%v", err)
	}
	// Re-derive the canonical form: replicated bytes are stored only in
	// the form this build would have written.
	canonical := b.Canonical()
	digest := policy.DigestOf(canonical)
	var existing PolicyRecord
	switch err := getRecord(tx, prefixBundle+digest, &existing); {
	case errors.Is(err, ErrNotFound):
		n, err := getCount(tx, keyBundleCount)
		if err != nil {
			return "", err
		}
		if n >= MaxBundles {
			return "", refuse(CodeTooManyBundles, "%d bundles are stored, at most %d", n, MaxBundles)
		}
		if err := put(tx, prefixBundle+digest, &PolicyRecord{Digest: digest, Canonical: canonical, Source: source, By: by, At: at}); err != nil {
			return "", err
		}
		if err := addCount(tx, keyBundleCount, 1); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	}
	return digest, nil
}

// storedBundle reads and re-validates a stored bundle: the gate every
// node that applies a promotion passes.
func storedBundle(tx *Tx, digest string) (*policy.Bundle, error) {
	var rec PolicyRecord
	if err := getRecord(tx, prefixBundle+digest, &rec); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(CodeUnknownPolicy, "no bundle %s is stored", digest)
		}
		return nil, err
	}
	b, err := policy.FromCanonical(rec.Canonical)
	if err != nil {
		return nil, refuse(CodeInvalidPolicy, "bundle %s does not validate on this node: %v", digest, err)
	}
	return b, nil
}

// change is one change to an environment, as the appliers below make it.
type change struct {
	env, action, digest string
	from                string
	override            bool
	reason, by          string
	at                  int64
	ifVersion           *uint64
	// rollback: pop the stack instead of pushing onto it.
	rollback bool
	// keepCanary leaves prod's canary as it is (canary set); otherwise
	// a change of prod's stable digest ends the canary.
	keepCanary bool
}

// commit applies c: checks the expected version, moves the stable
// digest (pushing the old one on the rollback stack, or popping it),
// marks the digest seen, and appends the history entry.
func commit(tx *Tx, c change) (*PolicyChange, error) {
	if !policy.ValidEnv(c.env) {
		return nil, refuse(CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", c.env)
	}
	if len(c.reason) > maxReasonBytes {
		return nil, refuse(CodeInvalid, "reason is longer than %d bytes", maxReasonBytes)
	}
	st, err := envState(tx, c.env)
	if err != nil {
		return nil, err
	}
	if c.ifVersion != nil && *c.ifVersion != st.Version {
		return nil, refuse(CodePolicyConflict, "%s is at version %d, not %d: another change came first; read it and retry", c.env, st.Version, *c.ifVersion)
	}
	prev, err := getString(tx, prefixEnv+c.env)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if c.rollback {
		st.Previous = st.Previous[:len(st.Previous)-1]
	}
	if c.digest != prev {
		switch {
		case c.rollback:
		case prev != "":
			st.Previous = append(st.Previous, prev)
			if len(st.Previous) > MaxRollbackDepth {
				st.Previous = append([]string(nil), st.Previous[len(st.Previous)-MaxRollbackDepth:]...)
			}
		}
		tx.Set(prefixEnv+c.env, []byte(c.digest))
	}
	tx.Set(prefixSeen+c.env+"/"+c.digest, emptyValue)
	st.Version++
	if err := put(tx, prefixEnvState+c.env, &st); err != nil {
		return nil, err
	}
	pc := &PolicyChange{Seq: st.Version, Env: c.env, Action: c.action, Digest: c.digest, Previous: prev, From: c.from,
		Override: c.override, Reason: c.reason, By: c.by, At: c.at}
	if c.env == policy.EnvProd {
		var can Canary
		switch err := getRecord(tx, keyCanary, &can); {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		case c.keepCanary:
			pc.CanaryDigest, pc.CanaryPercent = can.Digest, can.Percent
		default:
			tx.Delete(keyCanary)
		}
	}
	if err := put(tx, historyKey(c.env, st.Version), pc); err != nil {
		return nil, err
	}
	return pc, nil
}

func applyPutPolicy(tx *Tx, c *PutPolicy) (string, error) {
	if c.Env != "" && !policy.ValidEnv(c.Env) {
		return "", refuse(CodeInvalid, "unknown environment %q (dev, stage, prod)", c.Env)
	}
	digest, err := storeBundle(tx, c.Canonical, c.Source, c.By, c.At)
	if err != nil {
		return "", err
	}
	if c.Env == "" {
		return digest, nil
	}
	if cur, _ := getString(tx, prefixEnv+c.Env); cur == digest {
		return digest, nil
	}
	if _, err := commit(tx, change{env: c.Env, action: ActionPut, digest: digest, by: c.By, at: c.At}); err != nil {
		return "", err
	}
	return digest, nil
}

func applyPushPolicy(tx *Tx, c *PushPolicy) (*PolicyChange, error) {
	if !policy.ValidEnv(c.Env) {
		return nil, refuse(CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", c.Env)
	}
	if c.Env != policy.EnvDev && !c.Override {
		return nil, refuse(CodeGateNotPassed, "a bundle is pushed to dev and promoted from there; pushing to %s directly needs an admin override with a reason", c.Env)
	}
	if c.Override && c.Reason == "" {
		return nil, refuse(CodeReasonRequired, "an override needs a reason")
	}
	digest, err := storeBundle(tx, c.Canonical, c.Source, c.By, c.At)
	if err != nil {
		return nil, err
	}
	return commit(tx, change{env: c.Env, action: ActionPush, digest: digest, override: c.Override, reason: c.Reason,
		by: c.By, at: c.At, ifVersion: c.IfVersion})
}

// gateFor is the environment a digest must have been in before it may
// enter env: dev before stage, stage before prod.
func gateFor(env string) string {
	switch env {
	case policy.EnvStage:
		return policy.EnvDev
	case policy.EnvProd:
		return policy.EnvStage
	}
	return ""
}

func applyPromotePolicy(tx *Tx, c *PromotePolicy) (*PolicyChange, error) {
	if !policy.ValidEnv(c.To) {
		return nil, refuse(CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", c.To)
	}
	gate := gateFor(c.To)
	if gate == "" {
		return nil, refuse(CodeInvalid, "nothing is promoted to dev: push to it")
	}
	from := c.From
	if from == "" {
		from = gate
	}
	if !policy.ValidEnv(from) {
		return nil, refuse(CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", from)
	}
	digest := c.Digest
	if digest == "" {
		d, err := getString(tx, prefixEnv+from)
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(CodeUnknownPolicy, "%s points at no bundle", from)
		}
		if err != nil {
			return nil, err
		}
		digest = d
	}
	if _, err := storedBundle(tx, digest); err != nil {
		return nil, err
	}
	if c.Override && c.Reason == "" {
		return nil, refuse(CodeReasonRequired, "an override needs a reason")
	}
	ok, err := seen(tx, gate, digest)
	if err != nil {
		return nil, err
	}
	if !ok && !c.Override {
		return nil, refuse(CodeGateNotPassed, "%s has never been in %s; promote it there first (or override, as an admin, with a reason)", digest, gate)
	}
	if cur, _ := getString(tx, prefixEnv+c.To); cur == digest {
		return nil, refuse(CodeUnchanged, "%s already points at %s", c.To, digest)
	}
	return commit(tx, change{env: c.To, action: ActionPromote, digest: digest, from: from, override: c.Override && !ok,
		reason: c.Reason, by: c.By, at: c.At, ifVersion: c.IfVersion})
}

func applyRollbackPolicy(tx *Tx, c *RollbackPolicy) (*PolicyChange, error) {
	if !policy.ValidEnv(c.Env) {
		return nil, refuse(CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", c.Env)
	}
	st, err := envState(tx, c.Env)
	if err != nil {
		return nil, err
	}
	if len(st.Previous) == 0 {
		return nil, refuse(CodeNothingToRollBk, "%s has no previous digest to return to", c.Env)
	}
	digest := st.Previous[len(st.Previous)-1]
	if _, err := storedBundle(tx, digest); err != nil {
		return nil, err
	}
	return commit(tx, change{env: c.Env, action: ActionRollback, digest: digest, rollback: true, reason: c.Reason,
		by: c.By, at: c.At, ifVersion: c.IfVersion})
}

// Canary bounds.
const (
	DefaultCanaryWindow   = 300 // seconds
	MaxCanaryWindow       = 86400
	DefaultCanaryMinTasks = 20
)

func applySetCanary(tx *Tx, c *SetCanary) (*PolicyChange, error) {
	if c.Percent < 0 || c.Percent > 100 {
		return nil, refuse(CodeInvalidPercent, "canary percentage %d is outside 0–100", c.Percent)
	}
	if c.AbortAbove < 0 || c.AbortAbove > 100 {
		return nil, refuse(CodeInvalid, "abort_above %d is outside 0–100 percentage points", c.AbortAbove)
	}
	if c.WindowSeconds < 0 || c.WindowSeconds > MaxCanaryWindow {
		return nil, refuse(CodeInvalid, "window_seconds %d is outside 0–%d", c.WindowSeconds, MaxCanaryWindow)
	}
	if c.MinTasks < 0 || c.MinTasks > 1_000_000 {
		return nil, refuse(CodeInvalid, "min_tasks %d is outside 0–1000000", c.MinTasks)
	}
	stable, err := getString(tx, prefixEnv+policy.EnvProd)
	if errors.Is(err, ErrNotFound) {
		return nil, refuse(CodeUnknownPolicy, "prod points at no bundle")
	}
	if err != nil {
		return nil, err
	}
	var cur Canary
	hasCur := true
	if err := getRecord(tx, keyCanary, &cur); errors.Is(err, ErrNotFound) {
		hasCur = false
	} else if err != nil {
		return nil, err
	}
	digest := c.Digest
	if digest == "" && hasCur {
		digest = cur.Digest // a new percentage for the running canary
	}
	if digest == "" {
		d, err := getString(tx, prefixEnv+policy.EnvStage)
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(CodeUnknownPolicy, "stage points at no bundle")
		}
		if err != nil {
			return nil, err
		}
		digest = d
	}
	if digest == stable {
		return nil, refuse(CodeCanaryIsStable, "%s is prod's stable digest already", digest)
	}
	if _, err := storedBundle(tx, digest); err != nil {
		return nil, err
	}
	if c.Override && c.Reason == "" {
		return nil, refuse(CodeReasonRequired, "an override needs a reason")
	}
	ok, err := seen(tx, policy.EnvStage, digest)
	if err != nil {
		return nil, err
	}
	// The running canary passed its gate (or was let through) when it
	// was set: a new percentage for it is not a new promotion.
	ok = ok || (hasCur && digest == cur.Digest)
	if !ok && !c.Override {
		return nil, refuse(CodeGateNotPassed, "%s has never been in stage; a canary in prod must have been (or override, as an admin, with a reason)", digest)
	}
	can := Canary{Digest: digest, Percent: c.Percent, AbortAbove: c.AbortAbove, WindowSeconds: c.WindowSeconds, MinTasks: c.MinTasks,
		By: c.By, At: c.At, Reason: c.Reason}
	if can.WindowSeconds == 0 {
		can.WindowSeconds = DefaultCanaryWindow
	}
	if can.MinTasks == 0 {
		can.MinTasks = DefaultCanaryMinTasks
	}
	// The version check comes before any write; commit makes it.
	st, err := envState(tx, policy.EnvProd)
	if err != nil {
		return nil, err
	}
	if c.IfVersion != nil && *c.IfVersion != st.Version {
		return nil, refuse(CodePolicyConflict, "prod is at version %d, not %d: another change came first; read it and retry", st.Version, *c.IfVersion)
	}
	if err := put(tx, keyCanary, &can); err != nil {
		return nil, err
	}
	return commit(tx, change{env: policy.EnvProd, action: ActionCanarySet, digest: stable, override: c.Override && !ok,
		reason: c.Reason, by: c.By, at: c.At, keepCanary: true})
}

func applyEndCanary(tx *Tx, c *EndCanary) (*PolicyChange, error) {
	var can Canary
	if err := getRecord(tx, keyCanary, &can); errors.Is(err, ErrNotFound) {
		return nil, refuse(CodeNoCanary, "prod runs no canary")
	} else if err != nil {
		return nil, err
	}
	if c.IfDigest != "" && c.IfDigest != can.Digest {
		return nil, refuse(CodePolicyConflict, "the canary is %s now, not %s", can.Digest, c.IfDigest)
	}
	stable, err := getString(tx, prefixEnv+policy.EnvProd)
	if err != nil {
		return nil, err
	}
	ch := change{env: policy.EnvProd, reason: c.Reason, by: c.By, at: c.At, ifVersion: c.IfVersion}
	if c.Promote {
		if _, err := storedBundle(tx, can.Digest); err != nil {
			return nil, err
		}
		ch.action, ch.digest = ActionCanaryPromote, can.Digest
	} else {
		ch.action, ch.digest = ActionCanaryAbort, stable
	}
	// commit ends the canary (keepCanary false).
	return commit(tx, ch)
}

// PutPolicy stores a bundle (its canonical JSON; the digest is recomputed
// on apply) and points Env at it when Env is set, with no gate: the path
// of PUT /v1/policy and of a node's --policy at start. History records it
// as a put.
type PutPolicy struct {
	Canonical []byte `msgpack:"canonical"`
	Source    []byte `msgpack:"source"` // the YAML as written, for people
	Env       string `msgpack:"env"`
	By        string `msgpack:"by"`
	At        int64  `msgpack:"at"` // unix nanoseconds, set by the proposer
}

// PushPolicy stores a bundle and points Env at it: dev, or (with an
// override and a reason) stage or prod.
type PushPolicy struct {
	Canonical []byte  `msgpack:"canonical"`
	Source    []byte  `msgpack:"source"`
	Env       string  `msgpack:"env"`
	Override  bool    `msgpack:"override,omitempty"`
	Reason    string  `msgpack:"reason,omitempty"`
	IfVersion *uint64 `msgpack:"if_version,omitempty"`
	By        string  `msgpack:"by"`
	At        int64   `msgpack:"at"`
}

// PromotePolicy points To at Digest (empty: the digest From points at;
// From empty: the environment before To). The digest must have been in
// the environment before To, unless Override (an admin's, with Reason).
type PromotePolicy struct {
	From      string  `msgpack:"from,omitempty"`
	To        string  `msgpack:"to"`
	Digest    string  `msgpack:"digest,omitempty"`
	Override  bool    `msgpack:"override,omitempty"`
	Reason    string  `msgpack:"reason,omitempty"`
	IfVersion *uint64 `msgpack:"if_version,omitempty"`
	By        string  `msgpack:"by"`
	At        int64   `msgpack:"at"`
}

// RollbackPolicy returns Env to the digest it pointed at before.
type RollbackPolicy struct {
	Env       string  `msgpack:"env"`
	Reason    string  `msgpack:"reason,omitempty"`
	IfVersion *uint64 `msgpack:"if_version,omitempty"`
	By        string  `msgpack:"by"`
	At        int64   `msgpack:"at"`
}

// SetCanary starts prod's canary, or changes its percentage: Digest
// (empty: the running canary's, else stage's) for Percent of new leases.
type SetCanary struct {
	Digest        string  `msgpack:"digest,omitempty"`
	Percent       int     `msgpack:"percent"`
	AbortAbove    int     `msgpack:"abort_above,omitempty"`
	WindowSeconds int     `msgpack:"window_seconds,omitempty"`
	MinTasks      int     `msgpack:"min_tasks,omitempty"`
	Override      bool    `msgpack:"override,omitempty"`
	Reason        string  `msgpack:"reason,omitempty"`
	IfVersion     *uint64 `msgpack:"if_version,omitempty"`
	By            string  `msgpack:"by"`
	At            int64   `msgpack:"at"`
}

// EndCanary ends prod's canary: Promote makes its digest prod's stable
// one, else it is aborted. IfDigest (the automatic abort sets it) makes
// it apply only to that canary.
type EndCanary struct {
	Promote   bool    `msgpack:"promote,omitempty"`
	IfDigest  string  `msgpack:"if_digest,omitempty"`
	Reason    string  `msgpack:"reason,omitempty"`
	IfVersion *uint64 `msgpack:"if_version,omitempty"`
	By        string  `msgpack:"by"`
	At        int64   `msgpack:"at"`
}

func (PutPolicy) Op() Op      { return OpPutPolicy }
func (PushPolicy) Op() Op     { return OpPushPolicy }
func (PromotePolicy) Op() Op  { return OpPromotePolicy }
func (RollbackPolicy) Op() Op { return OpRollbackPolicy }
func (SetCanary) Op() Op      { return OpSetCanary }
func (EndCanary) Op() Op      { return OpEndCanary }
