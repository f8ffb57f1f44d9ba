package httpapi

import (
	"context"
	"strings"

	"github.com/leash-dev/leash/record"
)

// Roles is the set of callers a route accepts.
type Roles uint8

// The roles (docs/security.md says who holds which).
const (
	Anyone      Roles = 1 << iota // no credential needed
	Admin                         // the bootstrap admin token, or an admin key
	Operator                      // an operator key
	Auditor                       // an auditor key
	Tenant                        // a tenant's key (the handler scopes to that tenant)
	LeaseHolder                   // a lease token (the handler scopes to its tenant)

	// Staff sees every tenant.
	Staff = Admin | Operator | Auditor
)

var roleNames = []struct {
	r    Roles
	name string
}{{Admin, "admin"}, {Operator, "operator"}, {Auditor, "auditor"}, {Tenant, "tenant"}, {LeaseHolder, "lease"}}

// String is the roles as docs/api.md's auth column writes them.
func (rs Roles) String() string {
	if rs&Anyone != 0 {
		return "–"
	}
	return strings.Join(rs.Names(), ", ")
}

// Names lists the roles by name ("anyone" alone for a public route).
func (rs Roles) Names() []string {
	if rs&Anyone != 0 {
		return []string{"anyone"}
	}
	var out []string
	for _, rn := range roleNames {
		if rs&rn.r != 0 {
			out = append(out, rn.name)
		}
	}
	return out
}

// roleOf maps an API key's replicated role to a route role.
func roleOf(r string) Roles {
	switch r {
	case record.RoleAdmin:
		return Admin
	case record.RoleOperator:
		return Operator
	case record.RoleAuditor:
		return Auditor
	case record.RoleTenant:
		return Tenant
	}
	return 0
}

// Caller is who made a request, as the middleware found out.
type Caller struct {
	Role   Roles  // one of Admin, Operator, Auditor, Tenant, LeaseHolder; 0: nobody
	Tenant string // for a tenant key or a lease
	KeyID  string // for an API key
	Lease  *record.Lease
}

// Name is how the caller appears in records and logs ("admin",
// "key:<id>", "lease:<id>", "anonymous").
func (c *Caller) Name() string {
	switch {
	case c.KeyID != "":
		return "key:" + c.KeyID
	case c.Lease != nil:
		return "lease:" + c.Lease.ID
	case c.Role == Admin:
		return "admin"
	}
	return "anonymous"
}

// Staff reports whether the caller sees every tenant (admin, operator,
// auditor).
func (c *Caller) Staff() bool { return c.Role&Staff != 0 }

// Sees reports whether the caller may see an object of tenant t.
func (c *Caller) Sees(t string) bool { return c.Staff() || (c.Tenant != "" && c.Tenant == t) }

type callerKey struct{}

// WithCaller puts c in ctx.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerOf is the caller the middleware put in ctx (a zero Caller when
// none).
func CallerOf(ctx context.Context) *Caller {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok {
		return c
	}
	return &Caller{}
}
