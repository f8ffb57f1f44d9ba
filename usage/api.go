package usage

// The usage, FOCUS and budget endpoints (docs/budgets.md): counters and
// cost per tenant × profile × day, the FOCUS 1.3 export, and a tenant's
// day against its envelope, which an operator sets, raises or resets.
// Everything is read from the local replicated state; a change of
// envelope is one Raft command (set_envelope), audited as budget_changed
// by the node that proposed it when it applies.

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/policy"
)

// Error codes of the usage endpoints.
const (
	CodeInvalidDate   = "invalid_date"
	CodeRangeTooLong  = "usage_range_too_long"
	CodeInvalidGroup  = "invalid_group_by"
	CodeInvalidBudget = "invalid_budget"
)

// MaxQueryDays bounds the days one usage query or export covers.
const MaxQueryDays = 92

// Node is what the usage endpoints need of the node they run on.
type Node interface {
	// Propose applies a command through Raft (forwarded to the leader
	// from a follower) and waits for it.
	Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error)
	// ProposeError maps a failed Raft write to the API's error.
	ProposeError(err error) error
}

// ServiceConfig sets the endpoints up. (Config is the meter's.)
type ServiceConfig struct {
	// NodeID is the node an envelope change names as its proposer (that
	// node emits budget_changed when it applies).
	NodeID string
	State  *consensus.State
	Node   Node
	Log    *slog.Logger
	Now    func() time.Time
}

// Service serves the usage, FOCUS and budget routes.
type Service struct {
	nodeID string
	state  *consensus.State
	node   Node
	log    *slog.Logger
	now    func() time.Time
}

// NewService returns the endpoints' service. (Open is the meter's.)
func NewService(cfg ServiceConfig) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{nodeID: cfg.NodeID, state: cfg.State, node: cfg.Node, log: cfg.Log, now: cfg.Now}
}

// Handlers binds the usage and budget operations of httpapi.Table.
func (s *Service) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"getUsage":    s.getUsage,
		"getFocus":    s.getFocus,
		"getBudget":   s.getBudget,
		"putBudget":   s.putBudget,
		"resetBudget": s.resetBudget,
	}
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// usageQuery is a parsed usage query.
type usageQuery struct {
	tenant, profile string
	from, to        string
	groupBy         []string
}

var usageGroups = []string{"tenant", "profile", "day"}

// parseQuery reads tenant, profile, from, to and group_by, and
// scopes the query to the caller's tenant unless the caller is staff.
func (s *Service) parseQuery(r *http.Request) (*usageQuery, error) {
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
	today := consensus.Day(s.now())
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
	if days := int(to.Sub(from)/(24*time.Hour)) + 1; days > MaxQueryDays {
		return nil, api.BadRequest(CodeRangeTooLong, "a usage query covers at most %d days, this one %d", MaxQueryDays, days)
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

// Costs is the cost of usage by charge, in the price list's currency.
type Costs struct {
	CPU       float64 `json:"cpu"`
	Egress    float64 `json:"egress"`
	ToolCalls float64 `json:"tool_calls"`
	Tasks     float64 `json:"tasks"`
	Total     float64 `json:"total"`
}

func costOf(u consensus.UsageCounters, p *policy.Prices) *Costs {
	if p == nil {
		return nil
	}
	cs := Charges(u, p)
	return &Costs{CPU: cs[0].Cost, Egress: cs[1].Cost, ToolCalls: cs[2].Cost, Tasks: cs[3].Cost, Total: Cost(u, p)}
}

// Row is one group of GET /v1/usage.
type Row struct {
	Tenant  string                  `json:"tenant,omitempty"`
	Profile string                  `json:"profile,omitempty"`
	Day     string                  `json:"day,omitempty"`
	Usage   consensus.UsageCounters `json:"usage"`
	Cost    *Costs                  `json:"cost,omitempty"`
}

// Report is the answer of GET /v1/usage.
type Report struct {
	From         string   `json:"from"`
	To           string   `json:"to"`
	GroupBy      []string `json:"group_by"`
	Currency     string   `json:"currency,omitempty"`
	PolicyDigest string   `json:"policy_digest"`
	Rows         []Row    `json:"rows"`
	Total        Row      `json:"total"`
}

// prices is the price list of prod's stable bundle, with its digest.
func (s *Service) prices() (*policy.Prices, string) {
	d, b, err := s.state.ActiveBundle(policy.EnvProd)
	if err != nil {
		return nil, ""
	}
	return b.Prices, d
}

// rows scans the counters of a query, grouped (nil group: every row).
func (s *Service) rows(q *usageQuery, group bool, fn func(consensus.UsageRow) error) ([]Row, error) {
	byKey := map[[3]string]*Row{}
	var order [][3]string
	err := s.state.Usage(q.from, q.to, q.tenant, func(r consensus.UsageRow) error {
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
		row := Row{}
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
	out := make([]Row, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out, nil
}

// getUsage answers GET /v1/usage: counters and cost per tenant × profile ×
// day (or coarser groups), scoped to the caller's tenant.
func (s *Service) getUsage(w http.ResponseWriter, r *http.Request) error {
	q, err := s.parseQuery(r)
	if err != nil {
		return err
	}
	rows, err := s.rows(q, true, nil)
	if err != nil {
		return err
	}
	prices, digest := s.prices()
	rep := Report{From: q.from, To: q.to, GroupBy: q.groupBy, PolicyDigest: digest, Rows: rows}
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
func (s *Service) getFocus(w http.ResponseWriter, r *http.Request) error {
	q, err := s.parseQuery(r)
	if err != nil {
		return err
	}
	prices, digest := s.prices()
	currency := "XXX" // ISO 4217: no currency
	if prices != nil {
		currency = prices.Currency
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="leash-focus-`+q.from+`-`+q.to+`.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write(FOCUSColumns)
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	_, err = s.rows(q, false, func(row consensus.UsageRow) error {
		day, _ := time.Parse(time.DateOnly, row.Day)
		bStart := time.Date(day.Year(), day.Month(), 1, 0, 0, 0, 0, time.UTC)
		bEnd := bStart.AddDate(0, 1, 0)
		for _, c := range Charges(row.Usage, prices) {
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

func chargeDescription(c Charge) string {
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

func (s *Service) budgetReport(tenant string) (*BudgetReport, error) {
	now := s.now()
	day := consensus.Day(now)
	v, err := s.state.Budget(tenant, day)
	if err != nil {
		return nil, err
	}
	rep := &BudgetReport{Tenant: tenant, Day: day, Source: v.Source, Limits: v.Limits, WarnPercent: consensus.WarnPercent,
		ResetsAt: now.UTC().Add(time.Duration(RetryAfter(now)) * time.Second).Truncate(time.Second)}
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
func (s *Service) budgetTenant(r *http.Request) (string, error) {
	tenant := r.PathValue("tenant")
	_, b, err := s.state.ActiveBundle(policy.EnvProd)
	if err != nil {
		return "", err
	}
	if _, ok := b.Tenants[tenant]; !ok || !httpapi.CallerOf(r.Context()).Sees(tenant) {
		return "", api.Errorf(http.StatusNotFound, api.CodeUnknownTenant, "no tenant %q", clipString(tenant, 64))
	}
	return tenant, nil
}

// getBudget answers GET /v1/budgets/{tenant}: today against the envelope.
func (s *Service) getBudget(w http.ResponseWriter, r *http.Request) error {
	tenant, err := s.budgetTenant(r)
	if err != nil {
		return err
	}
	rep, err := s.budgetReport(tenant)
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
func (s *Service) putBudget(w http.ResponseWriter, r *http.Request) error {
	tenant, err := s.budgetTenant(r)
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
	return s.changeEnvelope(w, r, tenant, req.Mode, l)
}

// resetBudget returns a tenant to the bundle's budget and forgives
// today's usage (for the budget; chargeback keeps it).
func (s *Service) resetBudget(w http.ResponseWriter, r *http.Request) error {
	tenant, err := s.budgetTenant(r)
	if err != nil {
		return err
	}
	return s.changeEnvelope(w, r, tenant, consensus.EnvelopeReset, policy.Budget{})
}

func (s *Service) changeEnvelope(w http.ResponseWriter, r *http.Request, tenant, mode string, l policy.Budget) error {
	now := s.now()
	c := &consensus.SetEnvelope{Tenant: tenant, Mode: mode, Limits: l, Day: consensus.Day(now), Node: s.nodeID,
		By: httpapi.CallerOf(r.Context()).Name(), At: now.UnixNano()}
	res, err := s.node.Propose(r.Context(), c)
	if err != nil {
		var re *consensus.RefusedError
		if errors.As(err, &re) {
			return api.BadRequest(re.Code, "%s", re.Message)
		}
		return s.node.ProposeError(err)
	}
	httpapi.SetIndex(w, res.Index)
	s.log.Info("budget changed", "tenant", tenant, "mode", mode, "by", c.By, "cpu_ms_per_day", l.CPUMsPerDay,
		"egress_bytes_per_day", l.EgressBytesPerDay, "tool_calls_per_day", l.ToolCallsPerDay, "tasks_per_day", l.TasksPerDay)
	rep, err := s.budgetReport(tenant)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, rep)
	return nil
}
