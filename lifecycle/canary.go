package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/policy"
)

// Canary health: the outcomes of tasks under canary leases against those
// under stable leases, over a window, and the automatic abort.
//
// The source is the replicated receipt ledger: every task yields one
// receipt naming its lease's policy digest, its outcome and its blocked
// attempts by clause, and every node applies every receipt. So each
// node counts the whole cluster's tasks, not only its own, with no new
// replicated state and nothing added to the task path. The FSM listener
// only hands the batch's receipts, as the FSM decoded them, to a
// goroutine (dropping them, and counting the drop, when it falls
// behind); counting happens there.

// canaryBucket is the resolution of the health window.
const canaryBucket = 10 * time.Second

// canaryKeep is how far back counts are kept: the longest window.
const canaryKeep = consensus.MaxCanaryWindow * time.Second

// canaryCheckEvery is how often the leader checks the automatic abort.
const canaryCheckEvery = 5 * time.Second

// notBad are outcomes that say nothing about the bundle: an operator or
// the node ended the task.
var notBad = map[string]bool{"ok": true, "terminated:revoked": true, "terminated:shutdown": true, "terminated:cancelled": true}

type sideCounts struct {
	tasks, bad int64
	outcomes   map[string]int64
	blocked    map[string]int64
}

// canaryTracker counts receipts by policy digest in time buckets.
type canaryTracker struct {
	in      chan []*ledger.Receipt
	dropped atomic.Int64

	mu      sync.Mutex
	buckets map[int64]map[string]*sideCounts // bucket start (unix s) → digest → counts
}

func newCanaryTracker() *canaryTracker {
	return &canaryTracker{in: make(chan []*ledger.Receipt, 1024), buckets: map[int64]map[string]*sideCounts{}}
}

// offer hands a batch of applied receipts (as the FSM decoded them:
// consensus.AppendResult.Receipts) over without blocking the FSM.
func (t *canaryTracker) offer(rs []*ledger.Receipt) {
	select {
	case t.in <- rs:
	default:
		t.dropped.Add(int64(len(rs)))
	}
}

// count counts a batch of offered receipts (nil: a governance entry,
// nothing to count).
func (t *canaryTracker) count(rs []*ledger.Receipt) {
	for _, r := range rs {
		if r != nil {
			t.record(r)
		}
	}
}

func (t *canaryTracker) record(r *ledger.Receipt) {
	if r.PolicyDigest == "" || len(r.Outcome) > 64 {
		return
	}
	at := r.End.Unix() / int64(canaryBucket/time.Second) * int64(canaryBucket/time.Second)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[at]
	if b == nil {
		b = map[string]*sideCounts{}
		t.buckets[at] = b
		t.pruneLocked(at)
	}
	s := b[r.PolicyDigest]
	if s == nil {
		if len(b) >= 16 {
			return // bounded: at most 16 digests per bucket (two matter)
		}
		s = &sideCounts{outcomes: map[string]int64{}, blocked: map[string]int64{}}
		b[r.PolicyDigest] = s
	}
	s.tasks++
	if !notBad[r.Outcome] {
		s.bad++
	}
	if len(s.outcomes) < 32 || s.outcomes[r.Outcome] > 0 {
		s.outcomes[r.Outcome]++
	}
	for _, ba := range r.BlockedAttempts {
		if len(ba.Clause) <= 64 && (len(s.blocked) < 32 || s.blocked[ba.Clause] > 0) {
			s.blocked[ba.Clause] += int64(max(ba.Count, 1))
		}
	}
}

// pruneLocked forgets buckets older than canaryKeep before newest.
func (t *canaryTracker) pruneLocked(newest int64) {
	for at := range t.buckets {
		if at < newest-int64(canaryKeep/time.Second) {
			delete(t.buckets, at)
		}
	}
}

// health sums the window ending at now for the stable and canary
// digests.
func (t *canaryTracker) health(now time.Time, window time.Duration, stable, canary string) api.CanaryHealth {
	h := api.CanaryHealth{WindowSeconds: int(window / time.Second)}
	from := now.Add(-window).Unix()
	sum := func(digest string) api.CanarySide {
		out := api.CanarySide{Outcomes: map[string]int64{}, Blocked: map[string]int64{}}
		if digest == "" {
			return out
		}
		for at, b := range t.buckets {
			if at+int64(canaryBucket/time.Second) <= from {
				continue
			}
			s := b[digest]
			if s == nil {
				continue
			}
			out.Tasks += s.tasks
			out.Bad += s.bad
			for k, v := range s.outcomes {
				out.Outcomes[k] += v
			}
			for k, v := range s.blocked {
				out.Blocked[k] += v
			}
		}
		if out.Tasks > 0 {
			out.BadPercent = float64(out.Bad) * 100 / float64(out.Tasks)
		}
		return out
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h.Stable, h.Canary = sum(stable), sum(canary)
	return h
}

// abortReason says why a canary should be aborted, or "" when it should
// not: its bad share exceeds the stable one's by more than AbortAbove
// points, with at least MinTasks canary tasks in the window.
func abortReason(c *consensus.Canary, h api.CanaryHealth) string {
	if c.AbortAbove <= 0 || h.Canary.Tasks < int64(max(c.MinTasks, 1)) {
		return ""
	}
	diff := h.Canary.BadPercent - h.Stable.BadPercent
	if diff <= float64(c.AbortAbove) {
		return ""
	}
	return fmt.Sprintf("automatic abort: canary bad outcomes %.1f%% (%d of %d) vs stable %.1f%% (%d of %d) over %ds, %.1f points above, threshold %d",
		h.Canary.BadPercent, h.Canary.Bad, h.Canary.Tasks, h.Stable.BadPercent, h.Stable.Bad, h.Stable.Tasks, h.WindowSeconds, diff, c.AbortAbove)
}

// Run is the automatic abort, until ctx ends: on the leader, every
// canaryCheckEvery, a canary with a threshold whose health crosses it is
// aborted (only that canary: EndCanary names its digest). It also
// decodes the receipts the FSM hands over (Applied), between checks.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(canaryCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case rs := <-s.health.in:
			s.health.count(rs)
			continue
		case <-t.C:
		}
		if !s.node.IsLeader() {
			continue
		}
		c, err := s.state.Canary()
		if err != nil || c.AbortAbove <= 0 {
			continue
		}
		stable, err := s.state.EnvDigest(policy.EnvProd)
		if err != nil {
			continue
		}
		h := s.health.health(s.now(), time.Duration(c.WindowSeconds)*time.Second, stable, c.Digest)
		reason := abortReason(c, h)
		if reason == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := s.node.Propose(cctx, &consensus.EndCanary{IfDigest: c.Digest, Reason: reason, By: "auto", At: s.now().UnixNano()})
		cancel()
		var re *consensus.RefusedError
		switch {
		case errors.As(err, &re):
			continue // the canary changed meanwhile
		case err != nil:
			s.log.Warn("automatic canary abort", "canary_digest", c.Digest, "err", err)
			continue
		}
		if pc, _ := res.Value.(*consensus.PolicyChange); pc != nil {
			s.policyChanged(ctx, pc)
		}
	}
}

// Applied feeds canary health from the receipts applied on this node
// (on raft's FSM goroutine: it only hands the envelopes over).
func (s *Service) Applied(a consensus.Applied) {
	if _, ok := a.Command.(*consensus.AppendReceipts); ok {
		if ar, ok := a.Result.Value.(*consensus.AppendResult); ok {
			s.health.offer(ar.Receipts)
		}
	}
}
