package node

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/apikey"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/record"
)

// roles is the set of callers a route accepts.
type roles uint8

const (
	anyone   roles = 1 << iota // no credential needed
	admin                      // the bootstrap admin token, or an admin key
	operator                   // an operator key
	auditor                    // an auditor key
	tenant                     // a tenant's key (the handler scopes to that tenant)
	leaseTok                   // a lease token (the handler scopes to its tenant)

	staff = admin | operator | auditor
)

var roleNames = []struct {
	r    roles
	name string
}{{admin, "admin"}, {operator, "operator"}, {auditor, "auditor"}, {tenant, "tenant"}, {leaseTok, "lease"}}

// String is the roles as docs/api.md's auth column writes them.
func (rs roles) String() string {
	if rs&anyone != 0 {
		return "–"
	}
	var out []string
	for _, rn := range roleNames {
		if rs&rn.r != 0 {
			out = append(out, rn.name)
		}
	}
	return strings.Join(out, ", ")
}

// route is one row of the route table: a method and path, who may call
// it, and its handler.
type route struct {
	method, path string
	roles        roles
	h            handlerFunc
}

// routeTable is every route of the public API, each with the callers it
// accepts; routes() serves exactly these, and authorize enforces the
// roles before a handler runs. docs/api.md's endpoint table is checked
// against it (TestRouteTableIsDocumented).
func (n *Node) routeTable() []route {
	return []route{
		{"GET", "/healthz", anyone, n.healthz},
		{"GET", "/readyz", anyone, n.readyz},
		// Metrics carry tenant names (as labels): a credential reads them.
		{"GET", "/metrics", staff, func(w http.ResponseWriter, r *http.Request) error {
			n.metrics.Handler().ServeHTTP(w, r)
			return nil
		}},
		{"GET", "/v1/keys", anyone, n.getKeys},
		{"GET", "/v1/cluster", anyone, n.getCluster},
		{"POST", "/v1/cluster/snapshot", admin, n.postSnapshot},

		{"GET", "/v1/policy", staff, n.getPolicy},
		{"PUT", "/v1/policy", admin | operator, n.putPolicy},

		{"GET", "/v1/tenants", staff, n.listTenants},

		{"POST", "/v1/apikeys", admin | operator, n.createAPIKey},
		{"GET", "/v1/apikeys", admin | operator, n.listAPIKeys},
		{"DELETE", "/v1/apikeys/{id}", admin | operator, n.revokeAPIKey},

		{"POST", "/v1/leases", admin | operator | tenant, n.issueLease},
		{"GET", "/v1/leases/{id}", staff | tenant, n.getLease},
		{"DELETE", "/v1/leases/{id}", admin | operator | tenant, n.revokeLease},

		{"PUT", "/v1/modules", admin | tenant | leaseTok, n.putModule},
		{"DELETE", "/v1/modules/{digest}", admin | tenant | leaseTok, n.deleteModule},
		{"POST", "/v1/tasks", leaseTok, n.submitTask},
		{"GET", "/v1/tasks", staff | tenant | leaseTok, n.listTasks},
		{"GET", "/v1/tasks/{id}", staff | tenant | leaseTok, n.getTask},
		{"DELETE", "/v1/tasks/{id}", admin | operator | tenant | leaseTok, n.cancelTask},

		{"GET", "/v1/ledger/checkpoint", anyone, n.getCheckpoint},
		{"GET", "/v1/ledger/receipts/{index}", staff | tenant | leaseTok, n.getReceipt},
		{"GET", "/v1/ledger/export", staff, n.getExport},
		{"GET", "/v1/ledger/consistency", anyone, n.getConsistency},

		// Events carry tenant data: a tenant's credential reads its own.
		{"GET", "/v1/events", staff | tenant | leaseTok, func(w http.ResponseWriter, r *http.Request) error {
			return n.evh.List(w, scopeEvents(r))
		}},
		{"GET", "/v1/events/stream", staff | tenant | leaseTok, func(w http.ResponseWriter, r *http.Request) error {
			return n.evh.Stream(w, scopeEvents(r))
		}},

		{"GET", "/debug/pprof/", admin, func(w http.ResponseWriter, r *http.Request) error {
			pprof.Index(w, r)
			return nil
		}},
		{"GET", "/debug/pprof/profile", admin, func(w http.ResponseWriter, r *http.Request) error {
			pprof.Profile(w, r)
			return nil
		}},
	}
}

// routes builds the API from the route table. Paths are registered
// without methods so that a wrong method gets a JSON 405 with Allow, and
// unknown paths a JSON 404.
func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	byPath := map[string]map[string]handlerFunc{}
	var paths []string
	for _, rt := range n.routeTable() {
		if rt.roles == 0 {
			panic("route " + rt.method + " " + rt.path + " declares no roles")
		}
		if byPath[rt.path] == nil {
			byPath[rt.path] = map[string]handlerFunc{}
			paths = append(paths, rt.path)
		}
		byPath[rt.path][rt.method] = n.authorize(rt.roles, rt.h)
	}
	for _, path := range paths {
		methods := byPath[path]
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		mux.Handle(path, n.wrap(func(w http.ResponseWriter, r *http.Request) error {
			h, ok := methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				h, ok = methods[http.MethodGet]
			}
			if !ok {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				return api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
			}
			return h(w, r)
		}))
	}
	mux.Handle("/", n.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "no such endpoint: %s", r.URL.Path)
	}))
	return mux
}

// caller is who made a request, as authorize found out.
type caller struct {
	role   roles  // one of admin, operator, auditor, tenant, leaseTok; 0: nobody
	tenant string // for a tenant key or a lease
	keyID  string // for an API key
	lease  *consensus.Lease
}

// name is how the caller appears in records and logs ("admin", "key:<id>",
// "lease:<id>").
func (c *caller) name() string {
	switch {
	case c.keyID != "":
		return "key:" + c.keyID
	case c.lease != nil:
		return "lease:" + c.lease.ID
	case c.role == admin:
		return "admin"
	}
	return "anonymous"
}

// staff reports whether the caller sees every tenant (admin, operator,
// auditor).
func (c *caller) staff() bool { return c.role&staff != 0 }

// sees reports whether the caller may see an object of tenant t.
func (c *caller) sees(t string) bool { return c.staff() || (c.tenant != "" && c.tenant == t) }

type callerKey struct{}

// callerOf is the caller authorize put in ctx (a zero caller when none).
func callerOf(ctx context.Context) *caller {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c
	}
	return &caller{}
}

// authorize finds out who the caller is from the bearer credential and
// runs h only if its role is one the route accepts. A credential is the
// admin token, an API key (lsk_…) or a lease token; on a route anyone may
// call, a credential that proves nothing is ignored.
func (n *Node) authorize(rs roles, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := n.authenticate(r, rs)
		if err != nil {
			if rs&anyone != 0 {
				return h(w, r)
			}
			return err
		}
		if rs&anyone != 0 {
			// Anyone may call; a handler may still give a known caller
			// more (GET /v1/cluster?digest=1).
			return h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
		}
		if c.role&rs == 0 {
			return api.Errorf(http.StatusForbidden, api.CodeForbidden, "%s needs the role %s", r.URL.Path, rs)
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	}
}

// authenticate checks the bearer credential. Lease tokens are verified
// only for routes that take them (verification may wait for the leader).
func (n *Node) authenticate(r *http.Request, rs roles) (*caller, error) {
	tok := bearer(r)
	switch {
	case tok == "" && rs&leaseTok != 0:
		return nil, api.Errorf(http.StatusUnauthorized, api.CodeLeaseMissing, "a lease token is required (Authorization: Bearer <token>), or a key of the role %s", rs)
	case tok == "":
		return nil, api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "%s needs a credential (Authorization: Bearer <admin token or API key>)", r.URL.Path)
	case tokenEqual(tok, n.id.AdminToken):
		return &caller{role: admin}, nil
	case apikey.Looks(tok):
		// A key, like a lease, is honoured only on caught-up state: a
		// revoked key is refused everywhere within the freshness window.
		if err := n.checkFresh(r.Context()); err != nil {
			return nil, err
		}
		return n.checkAPIKey(r, tok)
	case rs&leaseTok != 0:
		// A lease is honoured only on caught-up state (fresh.go).
		if err := n.checkFresh(r.Context()); err != nil {
			return nil, err
		}
		l, err := n.verifyLease(r)
		if err != nil {
			return nil, err
		}
		return &caller{role: leaseTok, tenant: l.Tenant, lease: l}, nil
	}
	return nil, api.Errorf(http.StatusForbidden, api.CodeForbidden, "the credential is not the admin token or an API key; %s needs the role %s", r.URL.Path, rs)
}

// checkAPIKey checks an API key against its replicated record.
func (n *Node) checkAPIKey(r *http.Request, tok string) (*caller, error) {
	unauth := func(why string) error {
		n.log.Info("api key refused", "reason", why, "path", r.URL.Path, "traceparent", traceFrom(r.Context()))
		return api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "the API key is not valid: %s", why)
	}
	id, secret, err := apikey.Parse(tok)
	if err != nil {
		return nil, unauth("malformed")
	}
	k, err := n.state.APIKey(id)
	if errors.Is(err, consensus.ErrNotFound) {
		// A key made a moment ago through another node may not have
		// reached this one: catch up with the leader once.
		if n.syncWithLeader(r.Context()) == nil {
			k, err = n.state.APIKey(id)
		}
	}
	if errors.Is(err, consensus.ErrNotFound) {
		return nil, unauth("unknown key")
	}
	if err != nil {
		return nil, err
	}
	if err := apikey.Check(k, secret, n.now()); err != nil {
		switch {
		case errors.Is(err, apikey.ErrRevoked):
			return nil, unauth("revoked")
		case errors.Is(err, apikey.ErrExpired):
			return nil, unauth("expired")
		}
		return nil, unauth("unknown key") // a wrong secret says no more than an unknown id
	}
	c := &caller{tenant: k.Tenant, keyID: k.ID}
	switch k.Role {
	case record.RoleAdmin:
		c.role = admin
	case record.RoleOperator:
		c.role = operator
	case record.RoleAuditor:
		c.role = auditor
	case record.RoleTenant:
		c.role = tenant
	default:
		return nil, unauth("unknown role")
	}
	return c, nil
}

// scopeEvents narrows an event query to the caller's tenant unless the
// caller is staff.
func scopeEvents(r *http.Request) *http.Request {
	if c := callerOf(r.Context()); !c.staff() {
		return r.WithContext(events.ForTenant(r.Context(), c.tenant))
	}
	return r
}

// Route is a route of the public API as the table declares it: its method,
// path and the roles that may call it ("anyone", or role names). Tests
// outside the package walk it (the cross-tenant matrix on a cluster).
type Route struct {
	Method, Path string
	Roles        []string
}

// Routes lists the route table.
func Routes() []Route {
	var out []Route
	for _, rt := range (&Node{}).routeTable() {
		r := Route{Method: rt.method, Path: rt.path}
		if rt.roles&anyone != 0 {
			r.Roles = []string{"anyone"}
		}
		for _, rn := range roleNames {
			if rt.roles&rn.r != 0 {
				r.Roles = append(r.Roles, rn.name)
			}
		}
		out = append(out, r)
	}
	return out
}
