package policy

import (
	"math"
	"regexp"
	"strings"
)

// Prices is the bundle's price list for chargeback (docs/budgets.md): a
// list price per unit of what the meter counts, in one currency. Absent
// from a bundle, usage is reported without cost.
type Prices struct {
	// Currency is an ISO 4217 code (USD, EUR, …).
	Currency string `yaml:"currency" json:"currency"`
	// Per CPU-second of guest CPU time.
	CPUSecond float64 `yaml:"cpu_second,omitempty" json:"cpu_second"`
	// Per GB (10^9 bytes) of egress, in and out.
	EgressGB float64 `yaml:"egress_gb,omitempty" json:"egress_gb"`
	// Per tool call (outbound fetch attempt, allowed or blocked).
	ToolCall float64 `yaml:"tool_call,omitempty" json:"tool_call"`
	// Per task (every attempt that ran).
	Task float64 `yaml:"task,omitempty" json:"task"`
}

// MaxUnitPrice bounds one unit price.
const MaxUnitPrice = 1e6

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

func (p *Prices) validate(v *validator) {
	if !currencyPattern.MatchString(p.Currency) {
		v.add("prices.currency", "must be an ISO 4217 code such as USD, got %q", p.Currency)
	}
	for field, val := range map[string]float64{"cpu_second": p.CPUSecond, "egress_gb": p.EgressGB, "tool_call": p.ToolCall, "task": p.Task} {
		if math.IsNaN(val) || val < 0 || val > MaxUnitPrice {
			v.add("prices."+field, "must be a number from 0 to %g", float64(MaxUnitPrice))
		}
	}
}

// withFields names the field of each YAML decoding error from its line:
// the deepest key on that line ("cannot unmarshal !!str into int64" at
// tenants.demo.budget.tasks_per_day).
func withFields(errs []FieldError, lines map[string]int) []FieldError {
	for i := range errs {
		if errs[i].Field != "" || errs[i].Line == 0 {
			continue
		}
		best := ""
		for f, l := range lines {
			if l == errs[i].Line && (len(f) > len(best) || len(f) == len(best) && f < best) && !strings.HasSuffix(f, "]") {
				best = f
			}
		}
		errs[i].Field = best
	}
	return errs
}
