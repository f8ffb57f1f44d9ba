package node

import (
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/policy"
)

// The node's side of the policy lifecycle (package lifecycle, built in
// parts.go): what a replicated policy change means here.

// policyApplied keeps the node in step with replicated policy changes:
// receipts feed canary health; a change of prod's stable bundle
// refreshes what is derived from it (the deny list, metric labels).
func (n *Node) policyApplied(a consensus.Applied) {
	n.lifecycle.Applied(a)
	switch a.Command.(type) {
	case *consensus.PushPolicy, *consensus.PromotePolicy, *consensus.RollbackPolicy, *consensus.EndCanary:
		if pc, _ := a.Result.Value.(*consensus.PolicyChange); pc != nil && pc.Env == policy.EnvProd && n.egress != nil {
			n.refreshDeny()
			n.refreshBundleLabels()
		}
	}
}
