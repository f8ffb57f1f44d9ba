package node

import (
	"context"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/sessions"
)

// Session state (package sessions): the session KV and the durable task
// history. The node builds the service and answers what it asks.

func (n *Node) newSessions() *sessions.Service {
	emitter := events.Emitter(events.Discard)
	if n.bus != nil && !n.cfg.Unaudited {
		emitter = n.bus
	}
	return sessions.New(sessions.Config{
		State: n.state, Node: sessionHost{n}, Events: emitter, Log: n.log,
		Now: func() time.Time { return n.now() }, KVNow: n.cfg.KVNow, Env: Env,
	})
}

// sessionHost is the node as session state sees it.
type sessionHost struct{ n *Node }

func (h sessionHost) Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	return h.n.propose(ctx, c)
}
func (h sessionHost) WaitApplied(ctx context.Context, index uint64) error {
	return h.n.waitApplied(ctx, index)
}
func (h sessionHost) CheckFresh(ctx context.Context) error { return h.n.checkFresh(ctx) }
func (h sessionHost) IsLeader() bool                       { return h.n.raft.IsLeader() }

// MeterToolCall meters a task's KV call as one tool call of its tenant
// and profile (usage.go: the daily tool_calls envelope and chargeback).
func (h sessionHost) MeterToolCall(l *consensus.Lease) {
	h.n.meter().Add(l.Tenant, l.Profile, h.n.now(), consensus.UsageCounters{ToolCalls: 1})
}
