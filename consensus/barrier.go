package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// WaitApplied waits until this node's FSM has applied every command at or
// below index: the second half of a read barrier (the first asks the
// leader for index). Raft's own applied index counts entries handed to
// the FSM, and entries that never reach it (no-ops, configuration), so
// the FSM's persisted index alone may never reach a leader's last index;
// this waits for raft to have handed everything up to index over, then
// for the FSM to have applied the last command among them.
func (r *Raft) WaitApplied(ctx context.Context, index uint64) error {
	need := uint64(0) // the last command at or below index, once known
	known := false
	for {
		fsmIndex, err := r.fsm.State().AppliedIndex()
		if err != nil {
			return err
		}
		if fsmIndex >= index {
			return nil
		}
		if r.raft.AppliedIndex() >= index {
			if !known {
				need, known = r.lastCommandAtOrBelow(index, fsmIndex), true
			}
			if fsmIndex >= need {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, fsmIndex, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// lastCommandAtOrBelow walks the log back from index to the newest
// command entry above floor (the FSM's index); floor when there is none
// or the log no longer holds the entries (a snapshot covers them).
func (r *Raft) lastCommandAtOrBelow(index, floor uint64) uint64 {
	for i := index; i > floor; i-- {
		var l raft.Log
		if err := r.logs.GetLog(i, &l); err != nil {
			return floor
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return floor
}
