package runbook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/ledger"
)

// Governance entries whose append failed are kept and tried again.
const (
	maxPending    = 4096             // entries kept for a retry; past it the oldest is dropped (and logged)
	maxRetryWait  = 10 * time.Second // the retry's backoff stops doubling here
	appendTimeout = 10 * time.Second // one append attempt
	overdueEvery  = 2 * time.Second  // how often the leader looks for overdue steps
)

// pendingEntry is a signed governance entry not yet in the ledger.
type pendingEntry struct {
	kind, id, by, incident string
	envelope               []byte
	attempts               int
}

// governance signs a runbook action as a governance entry
// (ledger/governance.go) and appends it to the ledger, with MayRepeat so
// a retried append keeps one entry per action. It returns the entry's
// ledger index. When the append fails (no leader, say) the answer has
// index -1 (the action itself is in force and in the incident's
// timeline) and the signed entry is kept and appended again by Run until
// it is in the ledger.
func (s *Service) governance(ctx context.Context, kind string, a consensus.Action, index uint64, target string, count int, items []string) int64 {
	if s.cfg.Unaudited {
		return -1
	}
	g := &ledger.Governance{ID: fmt.Sprintf("raft:%d", index), Action: kind, By: a.By, At: a.When(), Reason: a.Reason, Incident: a.Incident,
		Target: target, Count: count, Items: items[:min(len(items), ledger.MaxGovernanceItems)], NodeID: s.cfg.NodeID}
	env, err := ledger.SignGovernance(s.cfg.ReceiptKey, g)
	var b []byte
	if err == nil {
		b, err = env.Canonical()
	}
	if err != nil {
		s.log.Error("governance entry not appended", "action", kind, "id", g.ID, "err", err)
		return -1
	}
	p := pendingEntry{kind: kind, id: g.ID, by: a.By, incident: a.Incident, envelope: b}
	idx, err := s.appendEntry(ctx, &p)
	if err == nil {
		return idx
	}
	s.log.Error("governance entry not appended", "action", kind, "id", g.ID, "err", err, "retry", retryable(err))
	if retryable(err) {
		s.keep(p)
	}
	return -1
}

// appendEntry proposes one governance entry.
func (s *Service) appendEntry(ctx context.Context, p *pendingEntry) (int64, error) {
	p.attempts++
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), appendTimeout)
	defer cancel()
	res, err := s.cfg.Node.Propose(ctx, &consensus.AppendReceipts{Envelopes: [][]byte{p.envelope}, MayRepeat: true})
	if err != nil {
		return -1, err
	}
	ar, ok := res.Value.(*consensus.AppendResult)
	if !ok || len(ar.Indexes) != 1 {
		return -1, fmt.Errorf("append answered %T", res.Value)
	}
	s.log.Info("governance entry appended", "action", p.kind, "id", p.id, "ledger_index", ar.Indexes[0], "by", p.by, "incident", p.incident)
	return ar.Indexes[0], nil
}

// retryable: a failure another attempt may not meet. A refusal (the
// state machine found the entry bad) will be refused again.
func retryable(err error) bool {
	var re *consensus.RefusedError
	return !errors.As(err, &re)
}

func (s *Service) keep(p pendingEntry) {
	s.mu.Lock()
	if len(s.pending) == maxPending {
		d := s.pending[0]
		s.log.Error("governance entry dropped: too many waiting for the ledger", "action", d.kind, "id", d.id, "waiting", len(s.pending))
		s.pending = s.pending[1:]
	}
	s.pending = append(s.pending, p)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Pending is how many governance entries wait for a retry.
func (s *Service) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// retryPending appends the waiting entries in order; it stops at the
// first failure (the ledger is unreachable for all of them alike).
func (s *Service) retryPending(ctx context.Context) bool {
	for {
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			return true
		}
		p := s.pending[0]
		s.mu.Unlock()
		_, err := s.appendEntry(ctx, &p)
		s.mu.Lock()
		if len(s.pending) > 0 && s.pending[0].id == p.id {
			if err == nil || !retryable(err) {
				s.pending = s.pending[1:]
			} else {
				s.pending[0].attempts = p.attempts
			}
		}
		s.mu.Unlock()
		if err != nil {
			if !retryable(err) {
				s.log.Error("governance entry refused on retry", "action", p.kind, "id", p.id, "err", err)
				continue
			}
			s.log.Warn("governance entry still not appended", "action", p.kind, "id", p.id, "attempts", p.attempts, "err", err)
			return false
		}
		s.log.Info("governance entry appended on retry", "action", p.kind, "id", p.id, "attempts", p.attempts)
	}
}

// Run, until ctx ends: appends again the governance entries whose append
// failed (backing off while it keeps failing), and on the leader raises
// an event once for each incident step past its time box.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(overdueEvery)
	defer t.Stop()
	warned := map[string]bool{}
	wait := s.cfg.RetryEvery
	retry := time.NewTimer(wait)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			retry.Reset(wait)
		case <-retry.C:
			if s.retryPending(ctx) {
				wait = s.cfg.RetryEvery
			} else {
				wait = min(2*wait, maxRetryWait)
			}
			retry.Reset(wait)
		case <-t.C:
			s.checkOverdue(ctx, warned)
		}
	}
}

// checkOverdue (leader) raises incident_step_overdue once for each open
// incident's step past its time box and not done.
func (s *Service) checkOverdue(ctx context.Context, warned map[string]bool) {
	if !s.cfg.Node.IsLeader() {
		return
	}
	incs, err := s.cfg.State.Incidents(true, 1000)
	if err != nil {
		return
	}
	now := s.now()
	for i := range incs {
		inc := &incs[i]
		for j := range inc.Steps {
			st := &inc.Steps[j]
			key := inc.ID + "/" + st.Name
			if !overdue(inc, st, now) || warned[key] {
				continue
			}
			warned[key] = true
			s.log.Warn("incident step overdue", "incident", inc.ID, "step", st.Name, "owner", st.Owner, "due", time.Unix(0, st.Due).UTC())
			s.emit(ctx, events.IncidentStepOverdue{Incident: inc.ID, Step: st.Name, Owner: st.Owner, Due: time.Unix(0, st.Due).UTC()})
		}
	}
	if len(warned) > 10000 {
		clear(warned)
	}
}
