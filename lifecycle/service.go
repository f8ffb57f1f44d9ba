// Package lifecycle is the policy lifecycle's API (docs/policy.md,
// "Lifecycle"): pushing a bundle to an environment, promoting it dev →
// stage → prod through the gates, rolling back, the history and the
// stored bundles, and prod's canary with its health and the automatic
// abort. The lifecycle's state and its checks are the state machine's
// (consensus/policy.go); this package translates between the API and
// those commands and watches the canary. Canary health is counted from
// the replicated receipts, which every node applies, so every node sees
// the whole cluster's tasks. The node builds a Service, binds its
// Handlers, feeds it what it applies (Applied) and runs its watcher
// (Run).
package lifecycle

import (
	"context"
	"log/slog"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
)

// Node is what the lifecycle needs of the node it runs on.
type Node interface {
	// Propose applies a command through Raft (forwarded to the leader
	// from a follower) and waits for it.
	Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error)
	// ProposeError maps a failed Raft write to the API's error.
	ProposeError(err error) error
	// SyncWithLeader waits (briefly) until this node has applied what the
	// leader had applied when asked: a read barrier.
	SyncWithLeader(ctx context.Context) error
	IsLeader() bool
}

// Config sets the service up.
type Config struct {
	// NodeID names this node in the canary health it reports.
	NodeID string
	State  *consensus.State
	Node   Node
	// Events receives policy_promoted for every change.
	Events events.Emitter
	Log    *slog.Logger
	Now    func() time.Time
}

// Service serves the lifecycle's routes and watches prod's canary.
type Service struct {
	nodeID string
	state  *consensus.State
	node   Node
	events events.Emitter
	log    *slog.Logger
	now    func() time.Time
	// health counts receipts by policy digest (canary.go).
	health *canaryTracker
}

// New returns the service; Run starts its watcher.
func New(cfg Config) *Service {
	if cfg.Events == nil {
		cfg.Events = events.Discard
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{nodeID: cfg.NodeID, state: cfg.State, node: cfg.Node, events: cfg.Events, log: cfg.Log, now: cfg.Now,
		health: newCanaryTracker()}
}

// Handlers binds the lifecycle's operations of httpapi.Table.
func (s *Service) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"listPolicyEnvs":  s.listPolicyEnvs,
		"getPolicyEnv":    s.getPolicyEnv,
		"pushPolicy":      s.pushPolicy,
		"promotePolicy":   s.promotePolicy,
		"rollbackPolicy":  s.rollbackPolicy,
		"policyHistory":   s.policyHistory,
		"getPolicyBundle": s.getPolicyBundle,
		"getCanary":       s.getCanary,
		"setCanary":       s.setCanary,
		"promoteCanary":   s.endCanary(true),
		"abortCanary":     s.endCanary(false),
	}
}

func (s *Service) emit(ctx context.Context, d events.Data) { s.events.Emit(ctx, events.New(d)) }
