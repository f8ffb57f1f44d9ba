package node

import (
	"time"

	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/leases"
	"github.com/leash-dev/leash/lifecycle"
	"github.com/leash-dev/leash/modules"
	"github.com/leash-dev/leash/runbook"
	"github.com/leash-dev/leash/sessions"
	"github.com/leash-dev/leash/tenants"
	"github.com/leash-dev/leash/usage"
)

// The parts the node builds from their packages: session state
// (sessions: the session KV and the durable task history), the lease
// endpoints (leases), the tenant endpoints (tenants: API keys,
// tenants, capabilities), the policy lifecycle (lifecycle: its API and
// prod's canary watch), the usage, FOCUS and budget endpoints (usage)
// and the security runbook's API (runbook).
// Each sees the node through host (host.go).

// emitter is where the parts send events: the node's bus, or nowhere
// when audit is off (bench/ only).
func (n *Node) emitter() events.Emitter {
	if n.bus != nil && !n.cfg.Unaudited {
		return n.bus
	}
	return events.Discard
}

func (n *Node) newSessions() *sessions.Service {
	return sessions.New(sessions.Config{
		State: n.state, Node: host{n}, Events: n.emitter(), Log: n.log,
		Now: func() time.Time { return n.now() }, KVNow: n.cfg.KVNow, Env: Env,
	})
}

func (n *Node) newLeases() *leases.Service {
	return leases.New(leases.Config{
		NodeID: n.id.NodeID, State: n.state, Node: host{n}, Signer: n.signer, Events: n.emitter(), Metrics: n.metrics,
		Log: n.log, Now: func() time.Time { return n.now() },
	})
}

func (n *Node) newModules() *modules.Store {
	return modules.New(modules.Config{DB: n.db, State: n.state, Box: n.box, Peers: host{n}, Intake: n.intake,
		MaxBytes: n.cfg.MaxModuleBytes, Log: n.log, Env: Env})
}

func (n *Node) newTenants() *tenants.Service {
	return tenants.New(tenants.Config{State: n.state, Node: host{n}, Log: n.log, Now: func() time.Time { return n.now() }, Env: Env})
}

// newLifecycle is built after the event bus and before the FSM applies
// anything: it counts the receipts applied from the start.
func (n *Node) newLifecycle() *lifecycle.Service {
	return lifecycle.New(lifecycle.Config{
		NodeID: n.id.NodeID, State: n.state, Node: host{n}, Events: n.emitter(), Log: n.log,
		Now: func() time.Time { return n.now() },
	})
}

func (n *Node) newUsageAPI() *usage.Service {
	return usage.NewService(usage.ServiceConfig{
		NodeID: n.id.NodeID, State: n.state, Node: host{n}, Log: n.log, Now: func() time.Time { return n.now() },
	})
}

// newRunbook builds the security runbook's API; what every node does
// when its commands apply stays in node (runbook.go:runbookApplied).
func (n *Node) newRunbook() *runbook.Service {
	return runbook.NewService(runbook.Config{
		State: n.state, Node: host{n}, Events: n.emitter(), Log: n.log, Now: func() time.Time { return n.now() },
		NodeID: n.id.NodeID, ReceiptKey: n.id.ReceiptKey, Unaudited: n.cfg.Unaudited,
	})
}
