// Policy bundles in replicated state: stored by digest, environments
// pointing at one, the command that stores them, and the reads.

package consensus

import (
	"errors"
	"fmt"

	"github.com/leash-dev/leash/policy"
)

// PolicyRecord is a stored bundle.
type PolicyRecord struct {
	Digest    string `msgpack:"digest"`
	Canonical []byte `msgpack:"canonical"`
	Source    []byte `msgpack:"source"`
	By        string `msgpack:"by"`
	At        int64  `msgpack:"at"`
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

// PutPolicy stores a bundle (its canonical JSON; the digest is recomputed
// on apply) and points Env at it when Env is set.
type PutPolicy struct {
	Canonical []byte `msgpack:"canonical"`
	Source    []byte `msgpack:"source"` // the YAML as written, for people
	Env       string `msgpack:"env"`
	By        string `msgpack:"by"`
	At        int64  `msgpack:"at"` // unix nanoseconds, set by the proposer
}

func (PutPolicy) Op() Op { return OpPutPolicy }
