package node

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/egress"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/usage"
)

// Metering, budgets and chargeback (docs/budgets.md): the node's meter,
// the budget decision at admission, the crossings' events and
// terminations, and the usage, budget and FOCUS endpoints.

// Error codes of the usage endpoints.
const (
	CodeInvalidDate   = "invalid_date"
	CodeRangeTooLong  = "usage_range_too_long"
	CodeInvalidGroup  = "invalid_group_by"
	CodeInvalidBudget = "invalid_budget"
)

// MaxUsageDays bounds the days one usage query or export covers.
const MaxUsageDays = 92

type usageState struct {
	meter  *usage.Meter
	cancel context.CancelFunc
	done   chan struct{}
}

// startUsage opens the meter over its journal and starts sending.
func (n *Node) startUsage() error {
	m, err := usage.Open(usage.Config{
		DB: n.db, Node: n.id.NodeID, Logger: n.cfg.Logger,
		Propose: n.propose,
		LastSeq: func() (uint64, error) { return n.state.UsageSeq(n.id.NodeID) },
	})
	if err != nil {
		return fmt.Errorf("usage meter: %w", err)
	}
	if e, b := m.Pending(); e+b > 0 {
		n.log.Info("usage journal replayed", "entries", e, "batches", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &usageState{meter: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		m.Run(ctx)
	}()
	n.usage = u
	return nil
}

// stopUsage sends what the meter holds (the journal keeps what it cannot
// send) and stops it; Raft must still be open.
func (n *Node) stopUsage() {
	if n.usage == nil {
		return
	}
	n.usage.cancel()
	<-n.usage.done
}

func (n *Node) meter() *usage.Meter {
	if n.usage == nil || n.cfg.Unmetered {
		return nil
	}
	return n.usage.meter
}

// meterTask meters a finished task attempt; its outbound calls were
// metered as they ended (meterCall). An attempt refused before it ran
// (exhausted, revoked) counts no task.
func (n *Node) meterTask(l *consensus.Lease, t *sandbox.Task, res *sandbox.Result) {
	u := res.Usage
	ran := u.Startup > 0 || u.Wall > 0 || res.Outcome == sandbox.OutcomeOK
	c := consensus.UsageCounters{
		CPUMs:           int64(math.Round(u.CPUMs)),
		WallMs:          int64(math.Round(u.WallMs)),
		MemoryPeakBytes: max(0, u.MemoryPeakBytes),
		MemoryMiBs:      int64(math.Round(float64(max(0, u.MemoryPeakBytes)) / (1 << 20) * u.Wall.Seconds())),
		Subrequests:     max(0, u.Subrequests),
	}
	if ran {
		c.Tasks = 1
	}
	if mt := t.ModelTokens; mt != nil {
		c.TokensIn, c.TokensOut = max(0, mt.Input), max(0, mt.Output)
	}
	if c == (consensus.UsageCounters{}) {
		return
	}
	n.meter().Add(l.Tenant, l.Profile, res.Start, c)
}

// meterCall meters one outbound call (a hop), allowed or blocked, of a
// task or of the egress proxy.
func (n *Node) meterCall(d *egress.Decision) {
	c := consensus.UsageCounters{ToolCalls: 1, EgressBytesIn: max(0, d.BytesIn), EgressBytesOut: max(0, d.BytesOut)}
	if d.Blocked() {
		c.Blocked = 1
	}
	at := d.Time
	if at.IsZero() {
		at = n.now()
	}
	n.meter().Add(d.Tenant, d.Profile, at, c)
}

// checkBudget is the budget decision at admission, on local replicated
// state: 429 budget_exhausted with Retry-After to the next UTC midnight.
func (n *Node) checkBudget(tenant string) error {
	err := usage.Check(n.state, tenant, n.now())
	var ae *api.Error
	if errors.As(err, &ae) {
		n.log.Info("budget refused", "tenant", tenant, "code", ae.Code, "retry_after", ae.RetryAfter, "message", ae.Message)
	}
	return err
}

// budgetExhausted reports whether a task about to run must end
// terminated:budget instead.
func (n *Node) budgetExhausted(tenant string) bool {
	v, err := n.state.Budget(tenant, consensus.Day(n.now()))
	return err == nil && len(v.Exhausted) > 0
}

// usageApplied reacts to the budget decisions of the state machine on
// every node: an exhaustion ends the tenant's running tasks here as
// terminated:budget. The node that proposed the batch or the change
// emits the day's one event per crossing.
func (n *Node) usageApplied(a consensus.Applied) {
	var proposer string
	switch c := a.Command.(type) {
	case *consensus.UsageBatch:
		proposer = c.Node
	case *consensus.SetEnvelope:
		proposer = c.Node
		if c.Node == n.id.NodeID {
			n.emit(events.WithScope(context.Background(), events.Scope{Tenant: c.Tenant}), events.BudgetChanged{
				Mode: c.Mode, CPUMsPerDay: c.Limits.CPUMsPerDay, EgressBytesPerDay: c.Limits.EgressBytesPerDay,
				ToolCallsPerDay: c.Limits.ToolCallsPerDay, TasksPerDay: c.Limits.TasksPerDay, By: c.By})
		}
	default:
		return
	}
	v, ok := a.Result.Value.(*consensus.UsageApplied)
	if !ok || v == nil {
		return
	}
	for _, x := range v.Crossings {
		if x.Level == consensus.LevelExhausted && x.Day == consensus.Day(n.now()) {
			if k := n.cancelTenant(x.Tenant, sandbox.Terminate(sandbox.ReasonBudget)); k > 0 {
				n.log.Info("budget exhausted ended running tasks", "tenant", x.Tenant, "dimension", x.Dim, "tasks", k)
			}
		}
		if proposer != n.id.NodeID {
			continue
		}
		pct := 0
		if x.Limit > 0 {
			pct = int(min(float64(x.Used)*100/float64(x.Limit), 1e6))
		}
		b := events.Budget{Resource: x.Dim, Day: x.Day, Used: x.Used, Limit: x.Limit, Percent: pct}
		ctx := events.WithScope(context.Background(), events.Scope{Tenant: x.Tenant})
		n.log.Info("budget crossed", "tenant", x.Tenant, "dimension", x.Dim, "level", x.Level, "day", x.Day, "used", x.Used, "limit", x.Limit)
		if x.Level == consensus.LevelWarning {
			n.emit(ctx, events.BudgetWarning(b))
		} else {
			n.emit(ctx, events.BudgetExhausted(b))
		}
	}
}

// cancelTenant ends the running tasks of a tenant's leases.
func (n *Node) cancelTenant(tenant string, cause error) int {
	n.tasks.mu.Lock()
	defer n.tasks.mu.Unlock()
	k := 0
	for _, t := range n.tasks.tasks {
		if l, err := n.state.Lease(t.lease); err == nil && l.Tenant == tenant {
			t.cancel(cause)
			k++
		}
	}
	return k
}

// usageQuery is a parsed usage query.
type usageQuery struct {
	tenant, profile string
	from, to        string
	groupBy         []string
}

var usageGroups = []string{"tenant", "profile", "day"}

// parseUsageQuery reads tenant, profile, from, to and group_by, and
// scopes the query to the caller's tenant unless the caller is staff.
func (n *Node) parseUsageQuery(r *http.Request) (*usageQuery, error) {
	c := httpapi.CallerOf(r.Context())
	q := r.URL.Query()
	uq := &usageQuery{tenant: q.Get("tenant"), profile: q.Get("profile")}
	if !c.Staff() {
		if uq.tenant == "" {
			uq.tenant = c.Tenant
		}
		if uq.tenant != c.Tenant {
			return nil, api.Errorf(http.StatusForbidden, api.CodeForbidden, "this credential reads tenant %q's usage only", c.Tenant)
		}
	}
	if len(uq.tenant) > 128 || len(uq.profile) > 128 {
		return nil, api.BadRequest(api.CodeBadRequest, "tenant and profile are at most 128 bytes")
	}
	today := consensus.Day(n.now())
	uq.to = q.Get("to")
	if uq.to == "" {
		uq.to = today
	}
	uq.from = q.Get("from")
	if !consensus.ValidDay(uq.to) || uq.from != "" && !consensus.ValidDay(uq.from) {
		return nil, api.BadRequest(CodeInvalidDate, "from and to are UTC days written YYYY-MM-DD")
	}
	to, _ := time.Parse(time.DateOnly, uq.to)
	if uq.from == "" {
		uq.from = consensus.Day(to.AddDate(0, 0, -29))
	}
	from, _ := time.Parse(time.DateOnly, uq.from)
	if from.After(to) {
		return nil, api.BadRequest(CodeInvalidDate, "from %s is after to %s", uq.from, uq.to)
	}
	if days := int(to.Sub(from)/(24*time.Hour)) + 1; days > MaxUsageDays {
		return nil, api.BadRequest(CodeRangeTooLong, "a usage query covers at most %d days, this one %d", MaxUsageDays, days)
	}
	if g := q.Get("group_by"); g != "" {
		for _, f := range strings.Split(g, ",") {
			if !slices.Contains(usageGroups, f) || slices.Contains(uq.groupBy, f) {
				return nil, api.BadRequest(CodeInvalidGroup, "group_by is a list of tenant, profile and day, each once")
			}
			uq.groupBy = append(uq.groupBy, f)
		}
	} else {
		uq.groupBy = usageGroups
	}
	return uq, nil
}

// UsageCost is the cost of usage by charge, in the price list's currency.
type UsageCost struct {
	CPU       float64 `json:"cpu"`
	Egress    float64 `json:"egress"`
	ToolCalls float64 `json:"tool_calls"`
	Tasks     float64 `json:"tasks"`
	Total     float64 `json:"total"`
}

func costOf(u consensus.UsageCounters, p *policy.Prices) *UsageCost {
	if p == nil {
		return nil
	}
	cs := usage.Charges(u, p)
	return &UsageCost{CPU: cs[0].Cost, Egress: cs[1].Cost, ToolCalls: cs[2].Cost, Tasks: cs[3].Cost, Total: usage.Cost(u, p)}
}

// UsageRow is one group of GET /v1/usage.
type UsageRow struct {
	Tenant  string                  `json:"tenant,omitempty"`
	Profile string                  `json:"profile,omitempty"`
	Day     string                  `json:"day,omitempty"`
	Usage   consensus.UsageCounters `json:"usage"`
	Cost    *UsageCost              `json:"cost,omitempty"`
}

// UsageReport is the answer of GET /v1/usage.
type UsageReport struct {
	From         string     `json:"from"`
	To           string     `json:"to"`
	GroupBy      []string   `json:"group_by"`
	Currency     string     `json:"currency,omitempty"`
	PolicyDigest string     `json:"policy_digest"`
	Rows         []UsageRow `json:"rows"`
	Total        UsageRow   `json:"total"`
}

// prices is the price list of prod's stable bundle, with its digest.
func (n *Node) prices() (*policy.Prices, string) {
	d, b, err := n.state.ActiveBundle(Env)
	if err != nil {
		return nil, ""
	}
	return b.Prices, d
}

// rows scans the counters of a query, grouped (nil group: every row).
func (n *Node) usageRows(q *usageQuery, group bool, fn func(consensus.UsageRow) error) ([]UsageRow, error) {
	byKey := map[[3]string]*UsageRow{}
	var order [][3]string
	err := n.state.Usage(q.from, q.to, q.tenant, func(r consensus.UsageRow) error {
		if q.profile != "" && r.Profile != q.profile {
			return nil
		}
		if fn != nil {
			if err := fn(r); err != nil {
				return err
			}
		}
		if !group {
			return nil
		}
		var k [3]string
		row := UsageRow{}
		for _, g := range q.groupBy {
			switch g {
			case "tenant":
				k[0], row.Tenant = r.Tenant, r.Tenant
			case "profile":
				k[1], row.Profile = r.Profile, r.Profile
			case "day":
				k[2], row.Day = r.Day, r.Day
			}
		}
		cur := byKey[k]
		if cur == nil {
			if len(byKey) >= 1_000_000 {
				return api.BadRequest(CodeRangeTooLong, "the query has over a million groups; narrow it")
			}
			cur = &row
			byKey[k] = cur
			order = append(order, k)
		}
		cur.Usage.Add(&r.Usage)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(order, func(a, b [3]string) int {
		for i := range a {
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	out := make([]UsageRow, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out, nil
}

// getUsage answers GET /v1/usage: counters and cost per tenant × profile ×
// day (or coarser groups), scoped to the caller's tenant.
func (n *Node) getUsage(w http.ResponseWriter, r *http.Request) error {
	q, err := n.parseUsageQuery(r)
	if err != nil {
		return err
	}
	rows, err := n.usageRows(q, true, nil)
	if err != nil {
		return err
	}
	prices, digest := n.prices()
	rep := UsageReport{From: q.from, To: q.to, GroupBy: q.groupBy, PolicyDigest: digest, Rows: rows}
	if prices != nil {
		rep.Currency = prices.Currency
	}
	for i := range rep.Rows {
		rep.Rows[i].Cost = costOf(rep.Rows[i].Usage, prices)
		rep.Total.Usage.Add(&rep.Rows[i].Usage)
	}
	rep.Total.Cost = costOf(rep.Total.Usage, prices)
	httpapi.WriteJSON(w, http.StatusOK, rep)
	return nil
}

// FOCUSColumns are the columns of the FOCUS export, in order: the
// specification's (FOCUS 1.3) and leash's own, x_-prefixed.
var FOCUSColumns = []string{
	"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency",
	"BillingAccountId", "BillingAccountName", "BillingPeriodStart", "BillingPeriodEnd",
	"ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
	"ServiceName", "ServiceCategory", "ServiceProviderName", "SubAccountId", "SubAccountName",
	"ResourceId", "ResourceName", "ResourceType", "ConsumedQuantity", "ConsumedUnit",
	"PricingQuantity", "PricingUnit", "ListUnitPrice", "ContractedUnitPrice", "Tags",
	"x_Profile", "x_PolicyDigest", "x_Charge",
}

// getFocus answers GET /v1/usage/focus: the usage of a query as a FOCUS
// 1.3 cost and usage dataset in CSV, one row per tenant × profile × day ×
// charge, priced with prod's stable price list.
func (n *Node) getFocus(w http.ResponseWriter, r *http.Request) error {
	q, err := n.parseUsageQuery(r)
	if err != nil {
		return err
	}
	prices, digest := n.prices()
	currency := "XXX" // ISO 4217: no currency
	if prices != nil {
		currency = prices.Currency
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="leash-focus-`+q.from+`-`+q.to+`.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write(FOCUSColumns)
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	_, err = n.usageRows(q, false, func(row consensus.UsageRow) error {
		day, _ := time.Parse(time.DateOnly, row.Day)
		bStart := time.Date(day.Year(), day.Month(), 1, 0, 0, 0, 0, time.UTC)
		bEnd := bStart.AddDate(0, 1, 0)
		for _, c := range usage.Charges(row.Usage, prices) {
			if c.Quantity == 0 {
				continue
			}
			tags := fmt.Sprintf(`{"leash/tenant":%q,"leash/profile":%q}`, row.Tenant, row.Profile)
			rec := []string{
				num(c.Cost), num(c.Cost), num(c.Cost), num(c.Cost), currency,
				"leash", "leash", bStart.Format(time.RFC3339), bEnd.Format(time.RFC3339),
				day.Format(time.RFC3339), day.AddDate(0, 0, 1).Format(time.RFC3339), "Usage", "", chargeDescription(c), "Usage-Based",
				"leash " + c.Name, "Compute", "leash", row.Tenant, row.Tenant,
				row.Tenant + "/" + row.Profile, row.Profile, "Capability Profile", num(c.Quantity), c.Unit,
				num(c.Quantity), c.Unit, num(c.Price), num(c.Price), tags,
				row.Profile, digest, c.Name,
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		return nil
	})
	cw.Flush()
	if err != nil {
		return err
	}
	return cw.Error()
}

func chargeDescription(c usage.Charge) string {
	switch c.Name {
	case "cpu":
		return "guest CPU time"
	case "egress":
		return "outbound bytes, in and out"
	case "tool_calls":
		return "outbound calls, allowed or blocked"
	}
	return "task attempts that ran"
}

// BudgetDimension is one dimension of a tenant's day.
type BudgetDimension struct {
	Name      string `json:"name"`
	Used      int64  `json:"used"`
	Limit     int64  `json:"limit"` // 0: unlimited
	Percent   int    `json:"percent"`
	Warned    bool   `json:"warned"`
	Exhausted bool   `json:"exhausted"`
}

// BudgetReport is the answer of the budget endpoints.
type BudgetReport struct {
	Tenant      string            `json:"tenant"`
	Day         string            `json:"day"`
	Source      string            `json:"source"` // override, bundle or none
	Limits      policy.Budget     `json:"limits"`
	WarnPercent int               `json:"warn_percent"`
	Dimensions  []BudgetDimension `json:"dimensions"`
	ResetsAt    time.Time         `json:"resets_at"`
}

func (n *Node) budgetReport(tenant string) (*BudgetReport, error) {
	now := n.now()
	day := consensus.Day(now)
	v, err := n.state.Budget(tenant, day)
	if err != nil {
		return nil, err
	}
	rep := &BudgetReport{Tenant: tenant, Day: day, Source: v.Source, Limits: v.Limits, WarnPercent: consensus.WarnPercent,
		ResetsAt: now.UTC().Add(time.Duration(usage.RetryAfter(now)) * time.Second).Truncate(time.Second)}
	for _, dim := range consensus.Dimensions {
		d := BudgetDimension{Name: dim, Used: v.Used.Dim(dim), Limit: consensus.Limit(v.Limits, dim),
			Warned: slices.Contains(v.Warned, dim), Exhausted: slices.Contains(v.Exhausted, dim)}
		if d.Limit > 0 {
			d.Percent = int(min(float64(d.Used)*100/float64(d.Limit), 1e6))
		}
		rep.Dimensions = append(rep.Dimensions, d)
	}
	return rep, nil
}

// budgetTenant reads {tenant} and checks the caller may see it and the
// active bundle has it.
func (n *Node) budgetTenant(r *http.Request) (string, error) {
	tenant := r.PathValue("tenant")
	_, b, err := n.state.ActiveBundle(Env)
	if err != nil {
		return "", err
	}
	if _, ok := b.Tenants[tenant]; !ok || !httpapi.CallerOf(r.Context()).Sees(tenant) {
		return "", api.Errorf(http.StatusNotFound, api.CodeUnknownTenant, "no tenant %q", clipString(tenant, 64))
	}
	return tenant, nil
}

// getBudget answers GET /v1/budgets/{tenant}: today against the envelope.
func (n *Node) getBudget(w http.ResponseWriter, r *http.Request) error {
	tenant, err := n.budgetTenant(r)
	if err != nil {
		return err
	}
	rep, err := n.budgetReport(tenant)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, rep)
	return nil
}

// BudgetRequest is the body of PUT /v1/budgets/{tenant}.
type BudgetRequest struct {
	Mode   string        `json:"mode"` // set (default) or raise
	Limits policy.Budget `json:"limits"`
}

// putBudget sets or raises a tenant's envelope (a Raft command, audited
// as budget_changed).
func (n *Node) putBudget(w http.ResponseWriter, r *http.Request) error {
	tenant, err := n.budgetTenant(r)
	if err != nil {
		return err
	}
	var req BudgetRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	if req.Mode == "" {
		req.Mode = consensus.EnvelopeSet
	}
	if req.Mode != consensus.EnvelopeSet && req.Mode != consensus.EnvelopeRaise {
		return api.BadRequest(CodeInvalidBudget, "mode is set or raise (DELETE resets)")
	}
	l := req.Limits
	for _, v := range []int64{l.CPUMsPerDay, l.EgressBytesPerDay, l.ToolCallsPerDay, l.TasksPerDay} {
		if v < 0 || v > consensus.MaxBudgetLimit {
			return api.BadRequest(CodeInvalidBudget, "every limit is from 0 (unlimited) to %d", int64(consensus.MaxBudgetLimit))
		}
	}
	return n.changeEnvelope(w, r, tenant, req.Mode, l)
}

// resetBudget returns a tenant to the bundle's budget and forgives
// today's usage (for the budget; chargeback keeps it).
func (n *Node) resetBudget(w http.ResponseWriter, r *http.Request) error {
	tenant, err := n.budgetTenant(r)
	if err != nil {
		return err
	}
	return n.changeEnvelope(w, r, tenant, consensus.EnvelopeReset, policy.Budget{})
}

func (n *Node) changeEnvelope(w http.ResponseWriter, r *http.Request, tenant, mode string, l policy.Budget) error {
	now := n.now()
	c := &consensus.SetEnvelope{Tenant: tenant, Mode: mode, Limits: l, Day: consensus.Day(now), Node: n.id.NodeID,
		By: httpapi.CallerOf(r.Context()).Name(), At: now.UnixNano()}
	res, err := n.propose(r.Context(), c)
	if err != nil {
		var re *consensus.RefusedError
		if errors.As(err, &re) {
			return api.BadRequest(re.Code, "%s", re.Message)
		}
		return n.proposeError(err)
	}
	setIndex(w, res)
	n.log.Info("budget changed", "tenant", tenant, "mode", mode, "by", c.By, "cpu_ms_per_day", l.CPUMsPerDay,
		"egress_bytes_per_day", l.EgressBytesPerDay, "tool_calls_per_day", l.ToolCallsPerDay, "tasks_per_day", l.TasksPerDay)
	rep, err := n.budgetReport(tenant)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, rep)
	return nil
}
