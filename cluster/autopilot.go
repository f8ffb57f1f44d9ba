package cluster

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Server is one entry of the Raft configuration.
type Server struct {
	ID    string
	Addr  string
	Voter bool
}

// PlanInput is what the leader knows when it plans membership changes.
type PlanInput struct {
	Self       string
	Servers    []Server // the Raft configuration
	Members    []Member // gossip's view
	VoterCount int      // wanted voters (3 or 5; 1 is allowed)
	// DeadTimeout is how long a member stays dead (or unknown to gossip)
	// before it is removed.
	DeadTimeout time.Duration
	Now         time.Time
	// Absent is when each server of the configuration was first seen with
	// no gossip record at all (the leader keeps it across plans).
	Absent map[string]time.Time
	// LeaderApplied is the leader's applied index; a non-voter within
	// CatchUpSlack of it may be promoted.
	LeaderApplied uint64
}

// CatchUpSlack is how far behind the leader a non-voter may be and still
// be promoted.
const CatchUpSlack = 64

// Action kinds.
const (
	ActAddNonvoter = "add_nonvoter"
	ActPromote     = "promote"
	ActRemove      = "remove"
)

// Action is one change the leader makes to the Raft configuration.
type Action struct {
	Kind   string
	ID     string
	Addr   string
	Reason string
}

func quorum(n int) int { return n/2 + 1 }

// Plan decides the leader's membership changes. The rules:
//
//   - a live member that Raft does not know joins as a non-voter (so a
//     node that is far behind never counts towards quorum), and is
//     promoted to voter once it has caught up, while there are fewer than
//     VoterCount voters; further nodes stay non-voters;
//   - a member that left gracefully is removed at once;
//   - a member dead (or unknown to gossip) for DeadTimeout is removed; a
//     non-voter always, a voter only while the voters left are at least a
//     quorum of VoterCount and the dead voters removed in one plan are a
//     minority: the leader never shrinks the voters below a quorum by
//     its own action;
//   - the leader never removes itself.
func Plan(in PlanInput) []Action {
	if in.VoterCount < 1 {
		in.VoterCount = 1
	}
	byID := map[string]Member{}
	for _, m := range in.Members {
		byID[m.ID] = m
	}
	inConf := map[string]Server{}
	voters := 0
	for _, s := range in.Servers {
		inConf[s.ID] = s
		if s.Voter {
			voters++
		}
	}
	var acts []Action
	// Removals first: they may free voter places.
	startVoters := voters
	removedVoters := 0
	servers := append([]Server(nil), in.Servers...)
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	for _, s := range servers {
		if s.ID == in.Self {
			continue
		}
		m, known := byID[s.ID]
		var gone bool
		var reason string
		switch {
		case known && m.State == StateLeft:
			acts = append(acts, Action{Kind: ActRemove, ID: s.ID, Addr: s.Addr, Reason: "left the cluster"})
			if s.Voter {
				voters--
			}
			continue
		case known && m.State == StateDead:
			gone, reason = in.Now.Sub(m.Since) >= in.DeadTimeout, "dead for "+in.Now.Sub(m.Since).Round(time.Second).String()
		case !known:
			since, ok := in.Absent[s.ID]
			gone, reason = ok && in.Now.Sub(since) >= in.DeadTimeout, "unknown to gossip"
		}
		if !gone {
			continue
		}
		if s.Voter {
			if voters-1 < quorum(in.VoterCount) || removedVoters+1 > (startVoters-1)/2 {
				continue
			}
			voters--
			removedVoters++
		}
		acts = append(acts, Action{Kind: ActRemove, ID: s.ID, Addr: s.Addr, Reason: reason})
	}
	// Additions and promotions.
	members := append([]Member(nil), in.Members...)
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	for _, m := range members {
		if m.ID == "" || m.Raft == "" || (m.State != StateAlive && m.State != StateSuspect) {
			continue
		}
		s, ok := inConf[m.ID]
		switch {
		case !ok || s.Addr != m.Raft:
			if ok && s.Voter {
				// A voter came back on a new address: keep its suffrage.
				acts = append(acts, Action{Kind: ActPromote, ID: m.ID, Addr: m.Raft, Reason: "new address"})
				continue
			}
			acts = append(acts, Action{Kind: ActAddNonvoter, ID: m.ID, Addr: m.Raft, Reason: "joined"})
		case !s.Voter && voters < in.VoterCount && m.State == StateAlive && m.Applied+CatchUpSlack >= in.LeaderApplied:
			acts = append(acts, Action{Kind: ActPromote, ID: m.ID, Addr: m.Raft, Reason: "caught up"})
			voters++
		}
	}
	return acts
}

// Autopilot runs Plan on the leader and carries it out.
type Autopilot struct {
	Raft        *raft.Raft
	Members     *Membership
	Self        string
	VoterCount  int
	DeadTimeout time.Duration
	Interval    time.Duration
	Logger      *slog.Logger
	// OnChange is called after each applied action (events, logs).
	OnChange func(Action)

	absent map[string]time.Time
}

// Run reconciles until ctx ends.
func (a *Autopilot) Run(ctx context.Context) {
	if a.Interval <= 0 {
		a.Interval = 500 * time.Millisecond
	}
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	a.absent = map[string]time.Time{}
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.Members.Changed():
		}
		if a.Raft.State() != raft.Leader {
			clear(a.absent)
			continue
		}
		a.reconcile()
	}
}

func (a *Autopilot) reconcile() {
	f := a.Raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	conf := f.Configuration()
	members := a.Members.Members()
	known := map[string]bool{}
	for _, m := range members {
		known[m.ID] = true
	}
	in := PlanInput{Self: a.Self, Members: members, VoterCount: a.VoterCount, DeadTimeout: a.DeadTimeout, Now: time.Now(), Absent: a.absent, LeaderApplied: a.Raft.AppliedIndex()}
	present := map[string]bool{}
	for _, s := range conf.Servers {
		id := string(s.ID)
		present[id] = true
		in.Servers = append(in.Servers, Server{ID: id, Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
		if !known[id] {
			if _, ok := a.absent[id]; !ok {
				a.absent[id] = in.Now
			}
		} else {
			delete(a.absent, id)
		}
	}
	for id := range a.absent {
		if !present[id] {
			delete(a.absent, id)
		}
	}
	for _, act := range Plan(in) {
		var err error
		switch act.Kind {
		case ActAddNonvoter:
			err = a.Raft.AddNonvoter(raft.ServerID(act.ID), raft.ServerAddress(act.Addr), 0, 5*time.Second).Error()
		case ActPromote:
			err = a.Raft.AddVoter(raft.ServerID(act.ID), raft.ServerAddress(act.Addr), 0, 5*time.Second).Error()
		case ActRemove:
			err = a.Raft.RemoveServer(raft.ServerID(act.ID), 0, 5*time.Second).Error()
			if err == nil {
				a.Members.Forget(act.ID)
				delete(a.absent, act.ID)
			}
		}
		if err != nil {
			a.Logger.Warn("membership change failed", "action", act.Kind, "member", act.ID, "err", err)
			return
		}
		a.Logger.Info("membership changed", "action", act.Kind, "member", act.ID, "raft", act.Addr, "reason", act.Reason)
		if a.OnChange != nil {
			a.OnChange(act)
		}
	}
}
