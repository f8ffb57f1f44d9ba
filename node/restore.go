package node

import (
	"errors"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/usage"
)

// onRestore runs when a snapshot replaced this node's replicated state (a
// follower that fell behind the leader's log catches up by snapshot): it
// derives again everything the node derives from replicated state as
// commands apply (onApply), since those commands never reach it one by
// one. A command type whose listener keeps derived state must have its
// counterpart here; TestSnapshotRestoreRefreshes covers each.
func (n *Node) onRestore() {
	n.log.Info("replicated state restored from a snapshot; refreshing what derives from it")
	// The active bundle: the global deny list and the metric labels.
	if n.egress != nil {
		n.refreshDeny()
	}
	n.refreshBundleLabels()

	// Revocations and expired budgets end the tasks running under them,
	// and revoked leases' proxy tunnels close.
	now := n.now()
	n.tasks.mu.Lock()
	for id, t := range n.tasks.tasks {
		l, err := n.state.Lease(t.lease)
		switch {
		case err == nil && l.Revoked():
			t.cancel(sandbox.Terminate(sandbox.ReasonRevoked))
			n.log.Info("restored state: a revoked lease ended a running task", "lease", t.lease, "task", id)
		case err == nil && budgetExhausted(usage.Check(n.state, l.Tenant, now)):
			t.cancel(sandbox.Terminate(sandbox.ReasonBudget))
			n.log.Info("restored state: an exhausted budget ended a running task", "tenant", l.Tenant, "task", id)
		}
	}
	n.tasks.mu.Unlock()
	if n.egress != nil {
		if p := n.egress.proxy.Load(); p != nil {
			for _, id := range p.Leases() {
				if l, err := n.state.Lease(id); err == nil && l.Revoked() {
					if k := p.CloseLease(id); k > 0 {
						n.log.Info("restored state: revoked lease's proxy tunnels closed", "lease", id, "tunnels", k)
					}
				}
			}
		}
	}
	// The bulk queue: cancelled tasks running here end, new work wakes
	// the workers.
	n.bulk.Load().Restored()
}

func budgetExhausted(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Code == usage.CodeBudgetExhausted
}
