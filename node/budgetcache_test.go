package node

import (
	"net/http"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

// TestBudgetCacheFollowsChanges: the task path's cached budget view
// (usage.go, budgetCache) follows every change a budget rests on: an
// envelope set at run time under the day's usage refuses the next task
// with budget_exhausted at once, and a reset admits the next one at once.
func TestBudgetCacheFollowsChanges(t *testing.T) {
	tn := startTestNode(t, Config{})
	var l api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "read_docs"}, &l, 201)
	wasm := guestWasm(t, "minimal")
	task := api.TaskRequest{Module: api.Module{WASM: &wasm}}
	for i := 0; i < 3; i++ { // admitted: the view is cached, not exhausted
		tn.call(t, "POST", "/v1/tasks", l.Token, task, nil, http.StatusOK)
	}
	// Wait for the tasks' usage to be replicated, then set an envelope
	// below it.
	var b struct {
		Dimensions []struct {
			Name      string `json:"name"`
			Used      int64  `json:"used"`
			Exhausted bool   `json:"exhausted"`
		} `json:"dimensions"`
	}
	used := func() int64 {
		tn.call(t, "GET", "/v1/budgets/demo", tn.token, nil, &b, 200)
		for _, d := range b.Dimensions {
			if d.Name == "tasks" {
				return d.Used
			}
		}
		return 0
	}
	deadline := time.Now().Add(30 * time.Second)
	for used() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the tasks' usage never reached the budget: %+v", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tn.call(t, "PUT", "/v1/budgets/demo", tn.token, map[string]any{"mode": "set", "limits": map[string]any{"tasks_per_day": 2}}, nil, 200)
	var e api.ErrorBody
	tn.call(t, "POST", "/v1/tasks", l.Token, task, &e, http.StatusTooManyRequests)
	if e.Error == nil || e.Error.Code != "budget_exhausted" {
		t.Fatalf("refused with %+v, want budget_exhausted", e.Error)
	}
	tn.call(t, "DELETE", "/v1/budgets/demo", tn.token, nil, nil, 200)
	tn.call(t, "POST", "/v1/tasks", l.Token, task, nil, http.StatusOK)
}
