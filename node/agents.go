package node

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/mcp"
	"github.com/leash-dev/leash/policy"
)

// getCapabilities answers GET /v1/capabilities: what a tenant may do under
// the active (stable prod) bundle, for clients and models to read before
// they try. A tenant's key or lease reads its own tenant; staff name one.
func (n *Node) getCapabilities(w http.ResponseWriter, r *http.Request) error {
	c := httpapi.CallerOf(r.Context())
	name := r.URL.Query().Get("tenant")
	switch {
	case c.Staff() && name == "":
		return api.BadRequest(api.CodeBadRequest, "name the tenant: ?tenant=")
	case !c.Staff() && name == "":
		name = c.Tenant
	case !c.Staff() && name != c.Tenant:
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "this credential is tenant %q's; it reads that tenant's capabilities only", c.Tenant)
	}
	digest, bundle, err := n.state.ActiveBundle(Env)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusServiceUnavailable, api.CodeNoPolicy, "no policy bundle is active")
	}
	if err != nil {
		return err
	}
	t, ok := bundle.Tenants[name]
	if !ok {
		return api.Errorf(http.StatusBadRequest, api.CodeUnknownTenant, "tenant %q is not in the active policy bundle", clipString(name, 64))
	}
	httpapi.WriteJSON(w, http.StatusOK, capabilities(name, digest, bundle, t))
	return nil
}

// capabilities is a tenant's part of a bundle: the profiles it may use
// and the intents that lead to them.
func capabilities(name, digest string, b *policy.Bundle, t *policy.Tenant) api.Capabilities {
	out := api.Capabilities{Tenant: name, PolicyDigest: digest, Intents: []api.CapabilityIntent{}, Profiles: []api.CapabilityProfile{},
		Budget: api.CapabilityBudget{CPUMsPerDay: t.Budget.CPUMsPerDay, EgressBytesPerDay: t.Budget.EgressBytesPerDay,
			ToolCallsPerDay: t.Budget.ToolCallsPerDay, TasksPerDay: t.Budget.TasksPerDay}}
	for _, intent := range slices.Sorted(maps.Keys(b.Intents)) {
		if p := b.Intents[intent]; t.Allows(p) {
			out.Intents = append(out.Intents, api.CapabilityIntent{Intent: intent, Profile: p})
		}
	}
	for _, pn := range slices.Sorted(maps.Keys(b.Profiles)) {
		p := b.Profiles[pn]
		if !t.Allows(pn) {
			continue
		}
		cp := api.CapabilityProfile{Name: pn, Description: p.Description,
			Limits: api.CapabilityLimits{CPUMs: p.Limits.CPUMs, WallMs: p.Limits.WallMs, MemoryMB: p.Limits.MemoryMB,
				OutputBytes: p.Limits.OutputBytes, LogBytes: p.Limits.LogBytes, Subrequests: p.Limits.Subrequests},
			MaxLeaseTTLSeconds: int64(p.MaxLeaseTTL.D().Seconds()),
			Egress:             api.CapabilityEgress{Allow: []api.CapabilityAllow{}, MaxResponseBytes: p.Egress.MaxResponseBytes},
			KVQuotaBytes:       p.KV.QuotaBytes}
		for _, a := range p.Egress.Allow {
			cp.Egress.Allow = append(cp.Egress.Allow, api.CapabilityAllow{Host: a.Host, Ports: a.Ports, Methods: a.Methods})
		}
		out.Profiles = append(out.Profiles, cp)
	}
	return out
}

// MCPLeaseReuse is how long /mcp's tool calls reuse a lease of the same
// credential, tenant and intent before they issue a new one.
const MCPLeaseReuse = time.Minute

// mcpHandler serves POST /mcp: the MCP server (package mcp) over
// Streamable HTTP, calling this node's own API in process with the
// caller's credential. It is built on first use, from the same route
// table, so that the tools see exactly the API every client sees.
func (n *Node) mcpHandler() httpapi.HandlerFunc {
	var (
		once sync.Once
		h    http.Handler
		err  error
	)
	return func(w http.ResponseWriter, r *http.Request) error {
		once.Do(func() {
			var routes http.Handler
			if routes, err = n.routes(); err != nil {
				return
			}
			var srv *mcp.Server
			// The outer request's credential is checked by the route
			// table on every call, so a kept lease outlives no revoked
			// key (docs/mcp.md, "Why reuse a lease for a minute?").
			srv, err = mcp.New(mcp.Options{API: mcp.InProcess(routes), Logger: n.log, Version: n.cfg.Version, LeaseReuse: MCPLeaseReuse})
			if err == nil {
				h = srv.Handler()
			}
		})
		if err != nil {
			return err
		}
		h.ServeHTTP(w, r)
		return nil
	}
}
