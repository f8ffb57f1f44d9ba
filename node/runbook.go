package node

// The node's side of the security runbook (docs/runbook.md). The API
// lives in package runbook (runbook/api.go), built here with the small
// interface it needs of the node; what stays here touches the node's
// insides: on apply, every node ends the tasks running under the leases
// revoked, closes their proxy tunnels and recompiles its deny list.

import (
	"context"
	"strings"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/sandbox"
)

// runbookApplied runs on every node for every applied command: the
// leases a freeze or revocation revoked end their running tasks
// (terminated:revoked) and proxy tunnels; a block or unblock recompiles
// the deny list, which in-flight fetches read at their next hop.
func (n *Node) runbookApplied(a consensus.Applied) {
	switch c := a.Command.(type) {
	case *consensus.FreezeProfile, *consensus.RevokeLeases:
		rv, ok := a.Result.Value.(*consensus.Revoked)
		if !ok || len(rv.Leases) == 0 {
			return
		}
		set := make(map[string]bool, len(rv.Leases))
		for _, id := range rv.Leases {
			set[id] = true
		}
		k := n.tasks.cancelLeases(set, sandbox.Terminate(sandbox.ReasonRevoked))
		tunnels := 0
		if n.egress != nil {
			if p := n.egress.proxy.Load(); p != nil {
				for id := range set {
					tunnels += p.CloseLease(id)
				}
			}
		}
		n.log.Info("runbook revocation applied", "index", a.Index, "leases", len(set), "tasks_ended", k, "tunnels_closed", tunnels)
	case *consensus.BlockDestinations:
		if n.egress != nil {
			n.refreshDeny()
		}
	case *consensus.AppendReceipts:
		if ar, ok := a.Result.Value.(*consensus.AppendResult); ok && n.blast != nil {
			n.blast.Offer(c, ar)
		}
	}
}

// cancelLeases ends every task running under one of the leases.
func (r *running) cancelLeases(leases map[string]bool, cause error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := 0
	for _, t := range r.tasks {
		if leases[t.lease] {
			t.cancel(cause)
			k++
		}
	}
	return k
}

// runbookDeny is the destinations blocked at run time, for the deny
// list (egress.go refreshDeny).
func (n *Node) runbookDeny() []string {
	bl, err := n.state.Blocks()
	if err != nil {
		n.log.Error("read blocked destinations", "err", err)
		return nil
	}
	out := make([]string, 0, len(bl))
	for _, b := range bl {
		out = append(out, b.Entry)
	}
	return out
}

// watchRunbook: every node re-derives its deny list when the blocks in
// state differ from those compiled (a snapshot restore replaces state
// without applying commands); the runbook service retries governance
// entries and, on the leader, raises an event once for each incident
// step past its time box (runbook/watch.go:Run).
func (n *Node) watchRunbook(ctx context.Context) {
	n.bg.Add(2)
	go func() {
		defer n.bg.Done()
		n.blast.Run(ctx)
	}()
	go func() {
		defer n.bg.Done()
		n.runbook.Run(ctx)
	}()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.egress != nil {
			cur := strings.Join(n.runbookDeny(), "\n")
			if cur != last {
				n.refreshDeny()
				last = cur
			}
		}
	}
}
