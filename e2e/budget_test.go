package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

type budgetReport struct {
	Source     string `json:"source"`
	Dimensions []struct {
		Name      string `json:"name"`
		Used      int64  `json:"used"`
		Limit     int64  `json:"limit"`
		Warned    bool   `json:"warned"`
		Exhausted bool   `json:"exhausted"`
	} `json:"dimensions"`
}

type usageReport struct {
	Currency string `json:"currency"`
	Rows     []struct {
		Tenant, Profile, Day string
		Usage                map[string]int64   `json:"usage"`
		Cost                 map[string]float64 `json:"cost"`
	} `json:"rows"`
	Total struct {
		Usage map[string]int64   `json:"usage"`
		Cost  map[string]float64 `json:"cost"`
	} `json:"total"`
}

func countEvents(t *testing.T, c *nodetest.Cluster, typ string) int {
	t.Helper()
	k := 0
	for _, n := range c.Live() {
		var page struct {
			Events []json.RawMessage `json:"events"`
		}
		n.JSON("GET", "/v1/events?tenant=team&type="+typ+"&limit=1000", n.Token, nil, 200, &page)
		k += len(page.Events)
	}
	return k
}

func usedTasks(t *testing.T, n *nodetest.Node) int64 {
	t.Helper()
	var u usageReport
	n.JSON("GET", "/v1/usage?tenant=team&group_by=tenant", n.Token, nil, 200, &u)
	return u.Total.Usage["tasks"]
}

// TestBudgetAcrossCluster: a tenant's load spread over three nodes
// reaches 70% (one budget_warning in the whole cluster) and 100% (every
// node refuses its leases and tasks with 429 budget_exhausted and a
// Retry-After to midnight, soon after the crossing; the overshoot stays
// within the bound of docs/budgets.md); metering survives a kill -9 of a
// node with unsent deltas; a raise and a reset admit the tenant again.
func TestBudgetAcrossCluster(t *testing.T) {
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "budget.yaml"), Args: clusterArgs()})
	wasm := guestB64(t, "minimal")
	leases := make([]api.Lease, len(c.Nodes))
	for i, n := range c.Nodes {
		leases[i] = issue(t, n, api.LeaseRequest{Tenant: "team", Intent: "small_task"})
	}
	const limit = 30
	ran := 0
	run := func(i int) (int, []byte) {
		n := c.Nodes[i%len(c.Nodes)]
		st, b := n.Do("POST", "/v1/tasks", leases[i%len(c.Nodes)].Token, wasmTask(wasm))
		if st == 200 {
			ran++
		}
		return st, b
	}

	// 70%: 21 tasks over three nodes; one warning, cluster-wide.
	for i := range 21 {
		if st, b := run(i); st != 200 {
			t.Fatalf("task %d: %d %s", i, st, b)
		}
	}
	waitFor(t, 20*time.Second, "the warning", func() bool { return countEvents(t, c, "budget_warning") >= 1 })
	time.Sleep(time.Second) // a second warning would show by now
	if k := countEvents(t, c, "budget_warning"); k != 1 {
		t.Fatalf("%d budget_warning events in the cluster, want 1", k)
	}

	// 100%: tasks from three clients at once until one is refused.
	var mu sync.Mutex
	var crossed time.Time
	// Each task that ran in this phase: when it was sent and answered.
	type span struct{ sent, done time.Time }
	var spans []span
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, tok := c.Nodes[w], leases[w].Token
			for {
				sent := time.Now()
				st, b := n.Do("POST", "/v1/tasks", tok, wasmTask(wasm))
				done := time.Now()
				mu.Lock()
				if st == 200 {
					// A task admitted just before the crossing that the
					// node then ends before it starts (terminated:budget,
					// no time used) did not run and is not metered.
					var res api.TaskResult
					if json.Unmarshal(b, &res) != nil || res.Outcome != "terminated:budget" || res.Usage.WallMs > 0 {
						ran++
						spans = append(spans, span{sent, done})
					}
				}
				if st == 429 {
					if crossed.IsZero() {
						crossed = time.Now()
					}
					mu.Unlock()
					if code := errCode(t, b); code != "budget_exhausted" {
						t.Errorf("429 %s", code)
					}
					return
				}
				mu.Unlock()
				if st != 200 {
					t.Errorf("task: %d %s", st, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Every node refuses leases and tasks, with Retry-After to midnight.
	var spread time.Duration
	for i, n := range c.Nodes {
		waitFor(t, 10*time.Second, "refusal on "+n.ID(), func() bool {
			st, _ := n.Do("POST", "/v1/tasks", leases[i].Token, wasmTask(wasm))
			return st == 429
		})
		spread = max(spread, time.Since(crossed))
		resp, err := n.Request(10*time.Second, "POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "team", Intent: "small_task"})
		if err != nil {
			t.Fatal(err)
		}
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		now := time.Now().UTC()
		midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
		if resp.Status != 429 || errCode(t, resp.Body) != "budget_exhausted" || ra < 1 || time.Duration(ra)*time.Second > time.Until(midnight)+5*time.Second {
			t.Fatalf("lease on %s: %d %s, Retry-After %q", n.ID(), resp.Status, resp.Body, resp.Header.Get("Retry-After"))
		}
	}
	t.Logf("refused on every node %v after the first refusal", spread)
	// Another tenant is not affected.
	other := issue(t, c.Nodes[1], api.LeaseRequest{Tenant: "other", Intent: "small_task"})
	runTask(t, c.Nodes[1], other.Token, wasmTask(wasm))

	// Every task that ran is counted once, on every node; the overshoot
	// is within the bound: at most the tasks admitted while the crossing
	// batch was on its way, MaxPending-or-interval per node.
	var counted []int64
	converged := func() bool {
		counted = counted[:0]
		for _, n := range c.Nodes {
			counted = append(counted, usedTasks(t, n))
		}
		for _, k := range counted {
			if k != int64(ran) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !converged(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("usage not converged: %d tasks answered 200, the nodes count %v", ran, counted)
		}
	}
	// The overshoot is bounded in time, not in tasks (how many fit
	// depends on how fast tasks run): no task that ran was sent later
	// than one batch interval plus one commit after the task that
	// crossed the cap was answered; 2 s stands for the commit on a
	// loaded machine (docs/budgets.md, "Staleness and overshoot").
	overshoot := ran - limit
	t.Logf("%d tasks ran against a limit of %d: overshoot %d", ran, limit, overshoot)
	if overshoot < 0 {
		t.Fatalf("overshoot %d: the meter lost tasks", overshoot)
	}
	slices.SortFunc(spans, func(a, b span) int { return a.done.Compare(b.done) })
	crossing := spans[limit-21-1].done // the 30th task; 21 ran before this phase
	const window = 250*time.Millisecond + 2*time.Second
	late := 0
	for _, sp := range spans {
		if sp.sent.After(crossing.Add(window)) {
			late++
		}
	}
	if late > 0 {
		t.Fatalf("%d tasks were admitted more than %v after the cap was crossed", late, window)
	}
	if k := countEvents(t, c, "budget_exhausted"); k != 1 {
		t.Fatalf("%d budget_exhausted events, want 1", k)
	}

	// kill -9 with unsent deltas: raise the envelope, run tasks on one
	// node, kill it at once; after a restart its journal sends them.
	var rep budgetReport
	c.Nodes[0].JSON("PUT", "/v1/budgets/team", c.Nodes[0].Token, map[string]any{"mode": "raise", "limits": map[string]int64{"tasks_per_day": 1000}}, 200, &rep)
	if rep.Source != "override" || rep.Dimensions[3].Exhausted {
		t.Fatalf("after the raise: %+v", rep)
	}
	victim := c.Nodes[2]
	waitFor(t, 10*time.Second, "the raise on "+victim.ID(), func() bool {
		st, _ := victim.Do("POST", "/v1/tasks", leases[2].Token, wasmTask(wasm))
		if st == 200 {
			ran++
		}
		return st == 200
	})
	for range 5 {
		if res := runTask(t, victim, leases[2].Token, wasmTask(wasm)); res.Outcome != "ok" {
			t.Fatalf("task after the raise: %s on %s", res.Outcome, res.Node)
		}
		ran++
	}
	victim.Kill()
	victim.Restart()
	victim.WaitReady(60 * time.Second)
	if !strings.Contains(victim.Logs(), "usage journal") {
		t.Logf("note: the victim sent its deltas before the kill")
	}
	if !waitUntil(20*time.Second, func() bool { return usedTasks(t, c.Nodes[0]) == int64(ran) }) {
		t.Fatalf("after the kill: %d tasks counted, %d ran; victim's log:\n%s", usedTasks(t, c.Nodes[0]), ran, grepLines(victim.Logs(), "usage"))
	}

	// A reset forgives today's usage and returns to the bundle's budget.
	c.Nodes[1].JSON("DELETE", "/v1/budgets/team", c.Nodes[1].Token, nil, 200, &rep)
	if rep.Source != "bundle" || rep.Dimensions[3].Used != 0 {
		t.Fatalf("after the reset: %+v", rep)
	}
	for i, n := range c.Nodes {
		waitFor(t, 10*time.Second, "the reset on "+n.ID(), func() bool {
			st, _ := n.Do("POST", "/v1/tasks", leases[i].Token, wasmTask(wasm))
			if st == 200 {
				ran++
			}
			return st == 200
		})
	}
	if k := countEvents(t, c, "budget_changed"); k != 2 {
		t.Fatalf("%d budget_changed events, want 2", k)
	}

	// A tenant's key sees its own usage, not another's; bad queries are
	// 400s with stable codes.
	var key api.APIKey
	c.Nodes[0].JSON("POST", "/v1/apikeys", c.Nodes[0].Token, api.APIKeyRequest{Role: "tenant", Tenant: "other"}, 201, &key)
	var u usageReport
	c.Nodes[1].JSON("GET", "/v1/usage", key.Key, nil, 200, &u)
	for _, r := range u.Rows {
		if r.Tenant != "other" {
			t.Fatalf("tenant other's key sees %q's usage", r.Tenant)
		}
	}
	if st, _ := c.Nodes[1].Do("GET", "/v1/usage?tenant=team", key.Key, nil); st != 403 {
		t.Fatalf("other reads team's usage: %d", st)
	}
	if st, _ := c.Nodes[1].Do("GET", "/v1/budgets/team", key.Key, nil); st != 404 {
		t.Fatalf("other reads team's budget: %d", st)
	}
	for q, code := range map[string]string{
		"from=2026-01-01&to=2026-12-01": "usage_range_too_long",
		"from=yesterday":                "invalid_date",
		"from=2026-12-02&to=2026-12-01": "invalid_date",
		"group_by=tenant,colour":        "invalid_group_by",
		"group_by=day,day":              "invalid_group_by",
	} {
		st, b := c.Nodes[0].Do("GET", "/v1/usage?"+q, c.Nodes[0].Token, nil)
		if st != 400 || errCode(t, b) != code {
			t.Errorf("?%s: %d %s, want 400 %s", q, st, b, code)
		}
	}

	// The FOCUS export sums to the API's cost.
	focusMatchesUsage(t, c.Nodes[0])
}

// focusMatchesUsage checks the export's columns and their types against
// FOCUS 1.3 and that its cost and quantities sum to GET /v1/usage's.
func focusMatchesUsage(t *testing.T, n *nodetest.Node) {
	t.Helper()
	var u usageReport
	n.JSON("GET", "/v1/usage", n.Token, nil, 200, &u)
	st, b := n.Do("GET", "/v1/usage/focus", n.Token, nil)
	if st != 200 {
		t.Fatalf("focus: %d %s", st, b)
	}
	recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("focus csv: %v, %d records", err, len(recs))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	// Every column the issue names, and leash's own x_ columns.
	for _, h := range []string{"BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd",
		"ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "ChargeDescription", "ServiceName", "SubAccountId", "ResourceId",
		"ConsumedQuantity", "ConsumedUnit", "PricingQuantity", "PricingUnit", "Tags", "x_Profile", "x_PolicyDigest"} {
		if _, ok := col[h]; !ok {
			t.Errorf("FOCUS column %s missing", h)
		}
	}
	for h := range col {
		if strings.HasPrefix(h, "x_") {
			continue
		}
		if !focusColumns[h] {
			t.Errorf("column %s is not a FOCUS 1.3 column and not x_-prefixed", h)
		}
	}
	var total float64
	var tasks float64
	for _, r := range recs[1:] {
		get := func(h string) string { return r[col[h]] }
		for _, h := range []string{"BilledCost", "EffectiveCost", "ListCost", "ConsumedQuantity", "PricingQuantity"} {
			if _, err := strconv.ParseFloat(get(h), 64); err != nil {
				t.Fatalf("%s %q is not a decimal", h, get(h))
			}
		}
		for _, h := range []string{"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"} {
			if _, err := time.Parse("2006-01-02T15:04:05Z", get(h)); err != nil {
				t.Fatalf("%s %q is not an ISO 8601 UTC date-time", h, get(h))
			}
		}
		if get("BillingCurrency") != "EUR" || get("ChargeCategory") != "Usage" || get("SubAccountId") == "" {
			t.Fatalf("row %v", r)
		}
		var tags map[string]string
		if err := json.Unmarshal([]byte(get("Tags")), &tags); err != nil {
			t.Fatalf("Tags %q is not a JSON object: %v", get("Tags"), err)
		}
		cost, _ := strconv.ParseFloat(get("BilledCost"), 64)
		total += cost
		if get("x_Charge") == "tasks" {
			q, _ := strconv.ParseFloat(get("ConsumedQuantity"), 64)
			tasks += q
		}
	}
	if fmt.Sprintf("%.6f", total) != fmt.Sprintf("%.6f", u.Total.Cost["total"]) || int64(tasks) != u.Total.Usage["tasks"] {
		t.Fatalf("FOCUS sums to %f and %v tasks, /v1/usage to %v and %d", total, tasks, u.Total.Cost["total"], u.Total.Usage["tasks"])
	}
}

// focusColumns are FOCUS 1.3's column ids the export may use.
var focusColumns = map[string]bool{}

func init() {
	for _, c := range strings.Fields(`AvailabilityZone BilledCost BillingAccountId BillingAccountName BillingAccountType
		BillingCurrency BillingPeriodEnd BillingPeriodStart CapacityReservationId CapacityReservationStatus ChargeCategory
		ChargeClass ChargeDescription ChargeFrequency ChargePeriodEnd ChargePeriodStart CommitmentDiscountCategory
		CommitmentDiscountId CommitmentDiscountName CommitmentDiscountQuantity CommitmentDiscountStatus CommitmentDiscountType
		CommitmentDiscountUnit ConsumedQuantity ConsumedUnit ContractedCost ContractedUnitPrice EffectiveCost
		InvoiceId InvoiceIssuerName ListCost ListUnitPrice PricingCategory PricingCurrency PricingQuantity PricingUnit
		HostProviderName RegionId RegionName ResourceId ResourceName ResourceType ServiceCategory ServiceName
		ServiceProviderName ServiceSubcategory SkuId SkuMeter SkuPriceDetails SkuPriceId SubAccountId SubAccountName
		SubAccountType Tags`) {
		focusColumns[c] = true
	}
}

func waitUntil(timeout time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
