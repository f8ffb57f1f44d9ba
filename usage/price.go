package usage

import (
	"math"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/policy"
)

// Charge is one priced dimension of usage.
type Charge struct {
	// Name is the charge: cpu, egress, tool_calls or tasks.
	Name string
	// Quantity in Unit, as the price list prices it.
	Quantity float64
	Unit     string
	Price    float64 // per Unit
	Cost     float64
}

// Charges prices usage with a price list (nil: every cost 0). The
// quantities are the meter's, in the units of the list: CPU-seconds, GB
// (10^9 bytes) of egress in and out, tool calls, tasks.
func Charges(u consensus.UsageCounters, p *policy.Prices) []Charge {
	var pr policy.Prices
	if p != nil {
		pr = *p
	}
	cs := []Charge{
		{Name: "cpu", Quantity: float64(u.CPUMs) / 1000, Unit: "CPU-second", Price: pr.CPUSecond},
		{Name: "egress", Quantity: float64(satAdd(u.EgressBytesIn, u.EgressBytesOut)) / 1e9, Unit: "GB", Price: pr.EgressGB},
		{Name: "tool_calls", Quantity: float64(u.ToolCalls), Unit: "Request", Price: pr.ToolCall},
		{Name: "tasks", Quantity: float64(u.Tasks), Unit: "Task", Price: pr.Task},
	}
	for i := range cs {
		cs[i].Cost = round(cs[i].Quantity * cs[i].Price)
	}
	return cs
}

// Cost is the total of Charges.
func Cost(u consensus.UsageCounters, p *policy.Prices) float64 {
	t := 0.0
	for _, c := range Charges(u, p) {
		t += c.Cost
	}
	return round(t)
}

// round keeps 10 decimal places: costs sum the same in the API and the
// export whatever order they are added in.
func round(v float64) float64 { return math.Round(v*1e10) / 1e10 }

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
