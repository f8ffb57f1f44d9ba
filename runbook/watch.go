package runbook

import (
	"context"
	"fmt"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/ledger"
)

const (
	// governanceWait bounds how long an action's answer waits for its
	// governance entry's ledger index; the entry is durable in the node's
	// spool before the wait starts, so an entry still out of the ledger
	// then is appended later (after a restart too).
	governanceWait = 5 * time.Second
	overdueEvery   = 2 * time.Second // how often the leader looks for overdue steps
)

// governance signs a runbook action as a governance entry
// (ledger/governance.go) and hands it to the node, which writes it to its
// spool (fsynced) and appends it to the ledger from there, once per
// action id (node/ledger.go). It returns the entry's ledger index, or -1
// when the append has not happened within governanceWait (no leader,
// say): the action itself is in force and in the incident's timeline,
// and the spooled entry is appended once a leader is reachable, after a
// crash and a restart too.
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
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), governanceWait)
	defer cancel()
	idx, err := s.cfg.Node.AppendGovernance(ctx, g.ID, b)
	if err != nil {
		s.log.Warn("governance entry not yet appended; it waits in the node's spool", "action", kind, "id", g.ID, "by", a.By,
			"incident", a.Incident, "err", err)
		return -1
	}
	s.log.Info("governance entry appended", "action", kind, "id", g.ID, "ledger_index", idx, "by", a.By, "incident", a.Incident)
	return idx
}

// Run, until ctx ends: on the leader, raises an event once for each
// incident step past its time box.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(overdueEvery)
	defer t.Stop()
	warned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
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
