package httpapi

import (
	"net/http"
	"sync"

	"github.com/leash-dev/leash/api"
)

// Intake bounds the work a node does for requests before they wait for a
// sandbox slot: the bytes of the bodies being read, decoded and compiled
// (a task request, a module upload), on the node and per tenant. A
// request reserves its body's declared length (or the endpoint's limit
// when it declares none) before it reads a byte, and releases it when the
// handler is done; past a bound it is refused at once, so a flood of big
// requests costs the node a constant amount of work each.
type Intake struct {
	maxNode, maxTenant int64

	mu       sync.Mutex
	held     int64
	byTenant map[string]int64
}

// Intake bounds by default (node.Config.MaxIntakeBytes, MaxTenantIntakeBytes).
const (
	DefaultMaxIntakeBytes       = 256 << 20
	DefaultMaxTenantIntakeBytes = 64 << 20
)

// Codes of intake refusals.
const (
	CodeIntakeFull       = "intake_full"        // the node is reading as much as it will
	CodeTenantIntakeFull = "tenant_intake_full" // the tenant is
)

// NewIntake bounds the bytes held on the node and by one tenant.
func NewIntake(maxNode, maxTenant int64) *Intake {
	return &Intake{maxNode: maxNode, maxTenant: maxTenant, byTenant: map[string]int64{}}
}

// Admit reserves the bytes r's body may hold, up to limit, for tenant;
// past a bound it answers 503 intake_full or 429 tenant_intake_full.
func (in *Intake) Admit(r *http.Request, tenant string, limit int64) (release func(), err error) {
	size := limit
	if r.ContentLength >= 0 && r.ContentLength < limit {
		size = r.ContentLength
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.held+size > in.maxNode:
		return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: CodeIntakeFull, RetryAfter: 1,
			Message: "this node is reading as many request bytes as it will at once; retry, or use another node"}
	case in.byTenant[tenant]+size > in.maxTenant:
		return nil, &api.Error{Status: http.StatusTooManyRequests, Code: CodeTenantIntakeFull, RetryAfter: 1,
			Message: "this tenant's requests already hold as many bytes as this node reads for one tenant at once; retry"}
	}
	in.held += size
	in.byTenant[tenant] += size
	var once sync.Once
	return func() {
		once.Do(func() {
			in.mu.Lock()
			defer in.mu.Unlock()
			in.held -= size
			if in.byTenant[tenant] -= size; in.byTenant[tenant] <= 0 {
				delete(in.byTenant, tenant)
			}
		})
	}, nil
}
