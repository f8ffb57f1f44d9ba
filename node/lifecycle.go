package node

import (
	"context"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/lifecycle"
	"github.com/leash-dev/leash/policy"
)

// The node's side of the policy lifecycle (package lifecycle): building
// the service, and what a replicated policy change means here.

// newLifecycle builds the lifecycle's service (after the event bus, before
// the FSM applies anything: it counts the receipts applied from the start).
func (n *Node) newLifecycle() *lifecycle.Service {
	emitter := events.Emitter(events.Discard)
	if n.bus != nil && !n.cfg.Unaudited {
		emitter = n.bus
	}
	return lifecycle.New(lifecycle.Config{
		NodeID: n.id.NodeID, State: n.state, Node: lifecycleHost{n}, Events: emitter, Log: n.log,
		Now: func() time.Time { return n.now() },
	})
}

// lifecycleHost is the node as the lifecycle sees it.
type lifecycleHost struct{ n *Node }

func (h lifecycleHost) Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	return h.n.propose(ctx, c)
}
func (h lifecycleHost) ProposeError(err error) error             { return h.n.proposeError(err) }
func (h lifecycleHost) SyncWithLeader(ctx context.Context) error { return h.n.syncWithLeader(ctx) }
func (h lifecycleHost) IsLeader() bool                           { return h.n.raft.IsLeader() }

// policyProposeError maps a lease refused for its environment as the
// lifecycle does; other failures as proposeError does.
func (n *Node) policyProposeError(err error) error {
	if ae := lifecycle.Refusal(err); ae != nil {
		return ae
	}
	return n.proposeError(err)
}

// policyApplied keeps the node in step with replicated policy changes:
// receipts feed canary health; a change of prod's stable bundle
// refreshes what is derived from it (the deny list, metric labels).
func (n *Node) policyApplied(a consensus.Applied) {
	n.lifecycle.Applied(a)
	switch a.Command.(type) {
	case *consensus.PushPolicy, *consensus.PromotePolicy, *consensus.RollbackPolicy, *consensus.EndCanary:
		if pc, _ := a.Result.Value.(*consensus.PolicyChange); pc != nil && pc.Env == policy.EnvProd && n.egress != nil {
			n.refreshDeny()
			n.refreshBundleLabels()
		}
	}
}
