package node

import (
	"context"

	"github.com/leash-dev/leash/consensus"
)

// host is the node as its parts see it: each part (sessions, tenants, …)
// declares at home the few node methods it calls, and host has them all,
// so node has one adapter and not one per part.
type host struct{ n *Node }

func (h host) Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	return h.n.propose(ctx, c)
}
func (h host) ProposeError(err error) error { return h.n.proposeError(err) }
func (h host) WaitApplied(ctx context.Context, index uint64) error {
	return h.n.waitApplied(ctx, index)
}
func (h host) CheckFresh(ctx context.Context) error     { return h.n.checkFresh(ctx) }
func (h host) SyncWithLeader(ctx context.Context) error { return h.n.syncWithLeader(ctx) }
func (h host) CheckBudget(tenant string) error          { return h.n.checkBudget(tenant) }
func (h host) FetchModule(ctx context.Context, digest, tenant string) ([]byte, error) {
	return h.n.fetchModule(ctx, digest, tenant)
}
func (h host) DropOwnerOnPeers(ctx context.Context, digest, tenant string) int {
	return h.n.dropOwnerOnPeers(ctx, digest, tenant)
}
func (h host) Fence(ctx context.Context, index uint64) { h.n.fenceRevocation(ctx, index) }
func (h host) IsLeader() bool                          { return h.n.raft.IsLeader() }
func (h host) AppendGovernance(ctx context.Context, id string, env []byte) (int64, error) {
	return h.n.appendGovernance(ctx, id, env)
}

// MeterToolCall meters one tool call (a task's KV call) of the lease's
// tenant and profile (usage.go: the daily tool_calls envelope and
// chargeback).
func (h host) MeterToolCall(l *consensus.Lease) {
	h.n.meter().Add(l.Tenant, l.Profile, h.n.now(), consensus.UsageCounters{ToolCalls: 1})
}
