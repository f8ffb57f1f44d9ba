package consensus

import (
	"context"
	"log/slog"
	"time"
)

// Sweep is one of the leader's housekeeping loops: every Every, while
// this node leads, it proposes the command Command makes (at that tick's
// time: ExpireLeases, ExpireKV, PurgeTaskRecords…), whose result is the
// number of records it removed, and logs that number under Unit with the
// message Done, or a failure with Failed.
type Sweep struct {
	Every   time.Duration
	Command func() Command
	Done    string
	Failed  string
	Unit    string
}

// Proposer is what a sweep needs of the node.
type Proposer interface {
	Propose(ctx context.Context, c Command) (*Result, error)
	IsLeader() bool
}

// Run sweeps until ctx ends.
func (s Sweep) Run(ctx context.Context, p Proposer, log *slog.Logger) {
	t := time.NewTicker(s.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.IsLeader() {
			s.Once(ctx, p, log)
		}
	}
}

// Once proposes one sweep and returns how many records it removed.
func (s Sweep) Once(ctx context.Context, p Proposer, log *slog.Logger) int {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := p.Propose(cctx, s.Command())
	if err != nil {
		log.Warn(s.Failed, "err", err)
		return 0
	}
	k, _ := res.Value.(int)
	if k > 0 {
		log.Info(s.Done, s.Unit, k)
	}
	return k
}
