package node

import (
	"time"

	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/sessions"
	"github.com/leash-dev/leash/tenants"
)

// The tenant-facing parts the node builds: session state (package
// sessions: the session KV and the durable task history) and the tenant
// endpoints (package tenants: API keys, tenants, capabilities).

func (n *Node) newSessions() *sessions.Service {
	emitter := events.Emitter(events.Discard)
	if n.bus != nil && !n.cfg.Unaudited {
		emitter = n.bus
	}
	return sessions.New(sessions.Config{
		State: n.state, Node: host{n}, Events: emitter, Log: n.log,
		Now: func() time.Time { return n.now() }, KVNow: n.cfg.KVNow, Env: Env,
	})
}

func (n *Node) newTenants() *tenants.Service {
	return tenants.New(tenants.Config{State: n.state, Node: host{n}, Log: n.log, Now: func() time.Time { return n.now() }, Env: Env})
}
