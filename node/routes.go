package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/pprof"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/record"
	"github.com/leash-dev/leash/ui"
)

// handlers binds every operation of httpapi.Table to the node's handler
// for it. The table (method, path, roles) is in httpapi; this is only
// which function serves each row.
func (n *Node) handlers() map[string]httpapi.HandlerFunc {
	h := map[string]httpapi.HandlerFunc{
		"healthz": n.healthz,
		"readyz":  n.readyz,
		"metrics": func(w http.ResponseWriter, r *http.Request) error {
			n.metrics.Handler().ServeHTTP(w, r)
			return nil
		},
		"getCluster":   n.getCluster,
		"postSnapshot": n.postSnapshot,

		"getPolicy": n.getPolicy,
		"putPolicy": n.putPolicy,

		"getUI":      ui.Index,
		"getUIAsset": ui.Asset,

		"submitTask": n.submitTask,
		"listTasks":  n.listTasks,
		"getTask":    n.getTask,
		"cancelTask": n.cancelTask,

		"listEvents": func(w http.ResponseWriter, r *http.Request) error {
			return n.evh.List(w, scopeEvents(r))
		},
		"streamEvents": func(w http.ResponseWriter, r *http.Request) error {
			// A client that stops reading is cut off, like an export.
			return n.evh.Stream(httpapi.NewStallWriter(w, n.cfg.BodyTimeout), scopeEvents(r))
		},

		"mcp": n.mcpHandler(),

		"pprofIndex": func(w http.ResponseWriter, r *http.Request) error {
			pprof.Index(w, r)
			return nil
		},
		"pprofProfile": func(w http.ResponseWriter, r *http.Request) error {
			pprof.Profile(w, r)
			return nil
		},
	}
	maps.Copy(h, n.lifecycle.Handlers())
	maps.Copy(h, n.usageAPI.Handlers())
	maps.Copy(h, n.sessions.Handlers())
	maps.Copy(h, n.tenants.Handlers())
	maps.Copy(h, n.leaseAPI.Handlers())
	maps.Copy(h, n.modules.Handlers())
	maps.Copy(h, n.audit.Handlers())
	maps.Copy(h, n.blast.Handlers())
	maps.Copy(h, n.runbook.Handlers())
	return h
}

// routes is the public API: httpapi's route table with the node's
// handlers, behind its authentication.
func (n *Node) routes() (http.Handler, error) {
	h, err := httpapi.New(httpapi.Config{
		Routes:      httpapi.Table,
		Handlers:    n.handlers(),
		Auth:        n.auth,
		Log:         n.log,
		BodyTimeout: n.cfg.BodyTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("route table: %w", err)
	}
	return h, nil
}

// wrap is the API middleware for the cluster port's internal routes.
func (n *Node) wrap(h httpapi.HandlerFunc) http.Handler {
	return httpapi.Wrap(n.log, n.cfg.BodyTimeout, h)
}

// credentials answers httpapi.Auth's questions from replicated state.
type credentials struct{ n *Node }

func (c credentials) Fresh(ctx context.Context) error { return c.n.checkFresh(ctx) }

func (c credentials) VerifyLease(r *http.Request) (*record.Lease, error) { return c.n.verifyLease(r) }

func (c credentials) APIKey(ctx context.Context, id string) (*record.APIKey, error) {
	k, err := c.n.state.APIKey(id)
	if errors.Is(err, consensus.ErrNotFound) {
		// A key made a moment ago through another node may not have
		// reached this one: catch up with the leader once.
		if c.n.syncWithLeader(ctx) == nil {
			k, err = c.n.state.APIKey(id)
		}
	}
	if errors.Is(err, consensus.ErrNotFound) {
		return nil, nil
	}
	return k, err
}

// scopeEvents narrows an event query to the caller's tenant unless the
// caller is staff.
func scopeEvents(r *http.Request) *http.Request {
	if c := httpapi.CallerOf(r.Context()); !c.Staff() {
		return r.WithContext(events.ForTenant(r.Context(), c.Tenant))
	}
	return r
}
