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

// errStopScan ends a scan early.
var errStopScan = errors.New("stop scan")
