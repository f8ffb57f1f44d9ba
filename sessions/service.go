// Package sessions is a session's state (docs/sessions.md): the session
// KV, scoped by a lease's tenant and session, written through Raft and
// read from this node's replicated state, for tasks (a sandbox.KV per
// task) and for clients (the /v1/sessions routes); and the durable task
// history that lets GET /v1/tasks/{id} answer on any node. The state
// machine's part is consensus/kv.go and consensus/history.go; this
// package is the node's side of it, and sees the node through Node.
package sessions

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
)

// Node is what session state needs of the node it runs in.
type Node interface {
	// Propose applies a command through Raft (forwarded to the leader
	// from a follower) and waits for it.
	Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error)
	// WaitApplied waits until this node applied index (read-your-writes).
	WaitApplied(ctx context.Context, index uint64) error
	// CheckFresh refuses when this node's state may be stale.
	CheckFresh(ctx context.Context) error
	IsLeader() bool
	// MeterToolCall meters one KV call of a task as a tool call of the
	// lease's tenant and profile.
	MeterToolCall(l *consensus.Lease)
}

// Config sets the service up.
type Config struct {
	State *consensus.State
	Node  Node
	// Events receives each task KV call's tool_call_attempted.
	Events events.Emitter
	Log    *slog.Logger
	// Now is the node's clock; KVNow the KV's (TTLs, expiry), Now when
	// nil: tests inject one.
	Now, KVNow func() time.Time
	// Env is the policy environment whose active bundle sets a key's or
	// the admin's limits.
	Env string
}

// Service is the node's session state.
type Service struct {
	cfg     Config
	history historyQueue
}

// New returns the service; Run starts its housekeeping.
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
	if cfg.KVNow == nil {
		cfg.KVNow = cfg.Now
	}
	return &Service{cfg: cfg, history: historyQueue{ch: make(chan consensus.TaskRecord, historyQueueLen)}}
}

// Handlers are the /v1/sessions routes, by operation name of
// httpapi.Table.
func (s *Service) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"listSessionKeys":  s.listSessionKeys,
		"getSessionKey":    s.getSessionKey,
		"putSessionKey":    s.putSessionKey,
		"deleteSessionKey": s.deleteSessionKey,
		"endSession":       s.endSession,
	}
}

// Run is the housekeeping until ctx ends: the leader forgets KV entries
// past their TTL in bounded batches (consensus.ExpireKV), as leases are
// forgotten; beside it run the task history's batcher and purge
// (history.go).
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.historyLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		// The leader forgets task records past their retention.
		consensus.Sweep{Every: historyPurgeEvery, Done: "purged task history", Failed: "purge task history", Unit: "records",
			Command: func() consensus.Command { return &consensus.PurgeTaskRecords{Before: s.cfg.Now().UnixNano()} },
		}.Run(ctx, s.cfg.Node, s.cfg.Log)
	}()
	s.expireKV().Run(ctx, s.cfg.Node, s.cfg.Log)
}

// expireKV is the leader's sweep of KV entries past their TTL, at the KV
// clock's time.
func (s *Service) expireKV() consensus.Sweep {
	return consensus.Sweep{Every: kvExpireEvery, Done: "forgot expired kv entries", Failed: "forget expired kv entries", Unit: "entries",
		Command: func() consensus.Command { return &consensus.ExpireKV{Before: s.cfg.KVNow().UnixNano() + 1} }}
}
