package consensus

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
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
	s, ok := commands[c.Op()]
	if !ok {
		return nil, fmt.Errorf("no handler for %s", c.Op())
	}
	return s.apply(tx, c)
}

func put(tx *Tx, key string, v any) error {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	tx.Set(key, b)
	return nil
}

// errStopScan ends a scan early.
var errStopScan = errors.New("stop scan")
