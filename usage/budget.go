package usage

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
)

// CodeBudgetExhausted is the error code of a tenant refused for its
// envelope.
const CodeBudgetExhausted = "budget_exhausted"

// Budgets is the replicated state the decision reads.
type Budgets interface {
	Budget(tenant, day string) (*consensus.BudgetView, error)
}

// Check is the budget decision at admission: nil while the tenant's day
// is under every limit of its envelope; otherwise a 429 budget_exhausted
// whose Retry-After is the next UTC midnight. It reads only local
// replicated state (the caller decides on caught-up state).
func Check(st Budgets, tenant string, now time.Time) error {
	day := consensus.Day(now)
	v, err := st.Budget(tenant, day)
	if err != nil {
		return fmt.Errorf("budget of %s: %w", tenant, err)
	}
	if len(v.Exhausted) == 0 {
		return nil
	}
	var parts []string
	for _, dim := range v.Exhausted {
		parts = append(parts, fmt.Sprintf("%s %d of %d", dim, v.Used.Dim(dim), consensus.Limit(v.Limits, dim)))
	}
	return &api.Error{Status: http.StatusTooManyRequests, Code: CodeBudgetExhausted, RetryAfter: RetryAfter(now),
		Message: fmt.Sprintf("tenant %q used its daily budget for %s (%s); it renews at 00:00 UTC", tenant, day, strings.Join(parts, ", "))}
}

// RetryAfter is the whole seconds from now to the next UTC midnight (at
// least 1).
func RetryAfter(now time.Time) int {
	u := now.UTC()
	next := time.Date(u.Year(), u.Month(), u.Day()+1, 0, 0, 0, 0, time.UTC)
	s := int((next.Sub(u) + time.Second - 1) / time.Second)
	return max(1, s)
}
