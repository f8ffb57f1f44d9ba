package bulk

import (
	"time"

	"github.com/leash-dev/leash/scheduler"
)

// Stats are the scheduler's and the bulk queue's counters, for
// metrics. Counters count since the node started; Depth is replicated
// state (the same on every node, give or take replication lag).
type Stats struct {
	// Depth is the number of bulk tasks in each state, cluster-wide.
	Depth map[string]int64
	// Classes are the scheduler's counters per class on this node: slots
	// in use (Running), waiting, granted, shed (queue_full and
	// queue_timeout), and the slot wait-time histogram.
	Classes map[string]scheduler.ClassStats
	// Running is the bulk attempts this node runs; Waiting, the tenants
	// with a bulk slot request here.
	Running, Waiting int
	// QueueWait counts bulk attempts by how long the task waited in the
	// queue (from due to claim), by scheduler.WaitBuckets (last entry:
	// longer).
	QueueWait [len(scheduler.WaitBuckets) + 1]int64
	// What this node did.
	Enqueued, Claims, EmptyClaims              uint64
	Succeeded, Failed, Cancelled, Dead         uint64
	Retries, BudgetRefusals                    uint64
	ClaimExpiries, ClaimsLost                  uint64
	RetryBudget                                map[string]BudgetStats
	ClaimTTL, RetryBudgetWindow, TaskRetention time.Duration
	RetryBudgetRatio                           float64
	RetryBudgetMin                             int
}

// BudgetStats is a retry budget's window now.
type BudgetStats struct {
	FirstAttempts, Retries int64
}

// Stats returns the counters (zero values before the worker runs: b may
// be nil).
func (b *Worker) Stats() Stats {
	var s Stats
	if b == nil {
		return s
	}
	s.Classes = b.pool.Stats()
	s.Depth, _ = b.state.QueueCounts()
	b.mu.Lock()
	s.Running, s.Waiting = len(b.running), len(b.waiting)
	b.mu.Unlock()
	b.histMu.Lock()
	s.QueueWait = b.queueWait
	b.histMu.Unlock()
	c := &b.stats
	s.Enqueued, s.Claims, s.EmptyClaims = c.enqueued.Load(), c.claims.Load(), c.emptyClaims.Load()
	s.Succeeded, s.Failed, s.Cancelled, s.Dead = c.succeeded.Load(), c.failed.Load(), c.cancelled.Load(), c.dead.Load()
	s.Retries, s.BudgetRefusals = c.retries.Load(), c.budgetRefusals.Load()
	s.ClaimExpiries, s.ClaimsLost = c.claimExpiries.Load(), c.claimsLost.Load()
	s.RetryBudget = map[string]BudgetStats{}
	for class, r := range b.budget {
		f, rt := r.window()
		s.RetryBudget[class] = BudgetStats{FirstAttempts: f, Retries: rt}
	}
	bb := b.budget[scheduler.Bulk]
	s.ClaimTTL, s.RetryBudgetWindow, s.TaskRetention = b.claimTTL, bb.span, b.retention
	s.RetryBudgetRatio, s.RetryBudgetMin = bb.ratio, bb.min
	return s
}
