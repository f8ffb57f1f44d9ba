package consensus

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fsmProposer applies commands to a real FSM in log order, as the leader
// would after commit; leader says whether it leads.
type fsmProposer struct {
	f        *FSM
	index    atomic.Uint64
	leader   atomic.Bool
	proposed atomic.Int64
}

func (p *fsmProposer) Propose(_ context.Context, c Command) (*Result, error) {
	p.proposed.Add(1)
	b, err := Encode(c)
	if err != nil {
		return nil, err
	}
	return p.f.Apply(&raft.Log{Index: p.index.Add(1), Term: 1, Type: raft.LogCommand, Data: b}).(*Result), nil
}
func (p *fsmProposer) IsLeader() bool { return p.leader.Load() }

// TestSweep: a sweep removes what its command removes and logs the
// count under its unit; a node that does not lead proposes nothing.
func TestSweep(t *testing.T) {
	p := &fsmProposer{f: NewFSM(newStateDB(t), nil)}
	p.index.Store(100)
	for _, c := range script(t)[:5] { // node, key, bundle, leases l1 and l2
		p.f.Apply(&raft.Log{Index: p.index.Add(1), Term: 1, Type: raft.LogCommand, Data: c})
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	far := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() // past both leases' expiry
	s := Sweep{Every: 5 * time.Millisecond, Done: "forgot expired leases", Failed: "forget expired leases", Unit: "leases",
		Command: func() Command { return &ExpireLeases{Before: far} }}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	s.Run(ctx, p, log) // not the leader: nothing proposed
	cancel()
	if n := p.proposed.Load(); n != 0 {
		t.Fatalf("a follower proposed %d sweeps", n)
	}
	p.leader.Store(true)
	if k := s.Once(context.Background(), p, log); k != 2 {
		t.Fatalf("the sweep removed %d leases, want 2", k)
	}
	if !strings.Contains(logs.String(), "forgot expired leases") || !strings.Contains(logs.String(), "leases=2") {
		t.Fatalf("log: %s", logs.String())
	}
	if _, err := p.f.State().Lease("l1"); err == nil {
		t.Fatal("l1 is still in state after the sweep")
	}
	if k := s.Once(context.Background(), p, log); k != 0 {
		t.Fatalf("a second sweep removed %d", k)
	}
}
