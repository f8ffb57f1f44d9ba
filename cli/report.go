package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/ledger"
)

const reportLine = "report --from YYYY-MM-DD --to YYYY-MM-DD [--out report.html] [--pdf report.pdf] [--top N] [--json]"

// Report is what `leash report` finds for a window of UTC days, every
// figure read from the public API. It is written into the HTML as a
// <script type="application/json" id="leash-report"> block, so a
// program can read the figures the page shows.
type Report struct {
	From        string    `json:"from"` // first UTC day, YYYY-MM-DD
	To          string    `json:"to"`   // last UTC day, inclusive
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"` // exclusive: the day after To
	GeneratedAt time.Time `json:"generated_at"`
	Node        string    `json:"node"` // the API the report read
	Currency    string    `json:"currency"`

	// Usage and cost (GET /v1/usage): the window's total, by tenant, by
	// profile and by tenant × profile.
	Total          ReportUsage   `json:"total"`
	Tenants        []ReportUsage `json:"tenants"`
	Profiles       []ReportUsage `json:"profiles"`
	TenantProfiles []ReportUsage `json:"tenant_profiles"`

	// From the ledger's receipts of tasks that ended in the window (GET
	// /v1/ledger/export).
	LedgerRecords   int64         `json:"ledger_records"` // records read
	Receipts        int64         `json:"receipts"`       // in the window
	Outcomes        []ReportCount `json:"outcomes"`
	Terminations    []ReportCount `json:"terminations"` // by reason
	Blocked         int64         `json:"blocked"`
	BlockedByClause []ReportCount `json:"blocked_by_clause"`
	BlockedByDest   []ReportCount `json:"blocked_by_destination"`
	TopDestinations []ReportCount `json:"top_destinations"` // tasks that contacted each

	// Budget exhaustions (the budget_exhausted events of every member).
	BudgetExhaustions []ReportExhaustion `json:"budget_exhaustions"`
	// Incidents detected in the window (GET /v1/incidents).
	Incidents []ReportIncident `json:"incidents"`
	// MedianContainmentMs is the median time to containment of the
	// contained incidents (nil: none contained).
	MedianContainmentMs *int64 `json:"median_containment_ms"`
	// Policy changes in the window, every environment, oldest first.
	PolicyChanges []api.PolicyChange `json:"policy_changes"`
}

// ReportUsage is one row of usage and cost.
type ReportUsage struct {
	Tenant       string  `json:"tenant,omitempty"`
	Profile      string  `json:"profile,omitempty"`
	Tasks        int64   `json:"tasks"`
	CPUMs        int64   `json:"cpu_ms"`
	EgressBytes  int64   `json:"egress_bytes"`
	ToolCalls    int64   `json:"tool_calls"`
	BlockedCalls int64   `json:"blocked_calls"`
	Cost         float64 `json:"cost"`
}

// ReportCount is a name and how often it occurred.
type ReportCount struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// ReportExhaustion is one tenant's budget running out on one day.
type ReportExhaustion struct {
	Tenant   string    `json:"tenant"`
	Resource string    `json:"resource"`
	Day      string    `json:"day"`
	Used     int64     `json:"used"`
	Limit    int64     `json:"limit"`
	Node     string    `json:"node"`
	Time     time.Time `json:"time"`
}

// ReportIncident is one incident and its time to containment.
type ReportIncident struct {
	ID                  string     `json:"incident_id"`
	Title               string     `json:"title"`
	Owner               string     `json:"owner"`
	DetectedAt          time.Time  `json:"detected_at"`
	ContainedAt         *time.Time `json:"contained_at,omitempty"`
	TimeToContainmentMs *int64     `json:"time_to_containment_ms,omitempty"`
	Open                bool       `json:"open"`
	Actions             int        `json:"actions"`
}

// maxReportDays bounds the window (a year and a day).
const maxReportDays = 366

// runReport: `leash report` writes the risk and cost report of a window
// of UTC days as one self-contained HTML file (docs/runbook.md, "The
// quarterly report"), and a PDF through headless Chromium with --pdf.
func runReport(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "report", reportLine)
	from := fs.String("from", "", "first UTC day, YYYY-MM-DD (required)")
	to := fs.String("to", "", "last UTC day, YYYY-MM-DD, inclusive (default: today)")
	out := fs.String("out", "report.html", "the HTML file to write ('-': standard output)")
	pdf := fs.String("pdf", "", "also print the report to this PDF file with headless Chromium")
	top := fs.Int("top", 20, "rows of the top-N tables (destinations, blocked destinations)")
	asJSON := fs.Bool("json", false, "print the report's figures as JSON instead of writing HTML")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	if *to == "" {
		*to = time.Now().UTC().Format(time.DateOnly)
	}
	since, err := time.Parse(time.DateOnly, *from)
	if err != nil {
		return &exitError{code: 2, msg: "--from: want YYYY-MM-DD"}
	}
	last, err := time.Parse(time.DateOnly, *to)
	if err != nil {
		return &exitError{code: 2, msg: "--to: want YYYY-MM-DD"}
	}
	if last.Before(since) || last.Sub(since) > maxReportDays*24*time.Hour {
		return &exitError{code: 2, msg: fmt.Sprintf("--from must not be after --to, and the window at most %d days", maxReportDays)}
	}
	if *top < 1 || *top > 1000 {
		return &exitError{code: 2, msg: "--top: 1 to 1000"}
	}
	c := newClient(env)
	if err := c.needAdmin(); err != nil {
		return err
	}
	rep, err := collectReport(ctx, c, since, last, *top)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, rep)
	}
	var page bytes.Buffer
	if err := renderReport(&page, rep); err != nil {
		return err
	}
	if *out == "-" {
		_, err := env.Stdout.Write(page.Bytes())
		return err
	}
	if err := os.WriteFile(*out, page.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s (%d bytes): %d receipts, %d tasks, %d incidents, %d policy changes\n", *out, page.Len(),
		rep.Receipts, rep.Total.Tasks, len(rep.Incidents), len(rep.PolicyChanges))
	if *pdf != "" {
		if err := printPDF(ctx, *out, *pdf); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "wrote %s\n", *pdf)
	}
	return nil
}

// collectReport reads every figure of the window [since, last+1 day).
func collectReport(ctx context.Context, c *client, since, last time.Time, top int) (*Report, error) {
	until := last.AddDate(0, 0, 1)
	rep := &Report{From: since.Format(time.DateOnly), To: last.Format(time.DateOnly), Since: since, Until: until,
		GeneratedAt: time.Now().UTC().Truncate(time.Second), Node: c.base}
	if err := rep.usage(ctx, c); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	if err := rep.receipts(ctx, c, top); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if err := rep.exhaustions(ctx, c); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if err := rep.incidents(ctx, c); err != nil {
		return nil, fmt.Errorf("incidents: %w", err)
	}
	if err := rep.policyChanges(ctx, c); err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	return rep, nil
}

// usage sums GET /v1/usage by tenant × profile, 92 days (the route's
// bound) at a time.
func (rep *Report) usage(ctx context.Context, c *client) error {
	rows := map[[2]string]*ReportUsage{}
	for d := rep.Since; d.Before(rep.Until); d = d.AddDate(0, 0, 92) {
		end := d.AddDate(0, 0, 91)
		if lastDay := rep.Until.AddDate(0, 0, -1); end.After(lastDay) {
			end = lastDay
		}
		q := url.Values{"from": {d.Format(time.DateOnly)}, "to": {end.Format(time.DateOnly)}, "group_by": {"tenant,profile"}}
		var u usageReport
		if err := c.json(ctx, http.MethodGet, "/v1/usage?"+q.Encode(), c.token, nil, &u); err != nil {
			return err
		}
		if u.Currency != "" {
			rep.Currency = u.Currency
		}
		for _, r := range u.Rows {
			k := [2]string{r.Tenant, r.Profile}
			row := rows[k]
			if row == nil {
				row = &ReportUsage{Tenant: r.Tenant, Profile: r.Profile}
				rows[k] = row
			}
			row.add(ReportUsage{Tasks: r.Usage["tasks"], CPUMs: r.Usage["cpu_ms"], EgressBytes: r.Usage["egress_bytes_in"] + r.Usage["egress_bytes_out"],
				ToolCalls: r.Usage["tool_calls"], BlockedCalls: r.Usage["blocked_calls"], Cost: r.Cost["total"]})
		}
	}
	byT, byP := map[string]*ReportUsage{}, map[string]*ReportUsage{}
	for _, r := range rows {
		rep.TenantProfiles = append(rep.TenantProfiles, *r)
		rep.Total.add(*r)
		for _, g := range []struct {
			m map[string]*ReportUsage
			k string
		}{{byT, r.Tenant}, {byP, r.Profile}} {
			if g.m[g.k] == nil {
				g.m[g.k] = &ReportUsage{}
			}
			g.m[g.k].add(*r)
		}
	}
	for t, r := range byT {
		r.Tenant = t
		rep.Tenants = append(rep.Tenants, *r)
	}
	for p, r := range byP {
		r.Profile = p
		rep.Profiles = append(rep.Profiles, *r)
	}
	for _, l := range [][]ReportUsage{rep.TenantProfiles, rep.Tenants, rep.Profiles} {
		sort.Slice(l, func(i, j int) bool {
			if l[i].Cost != l[j].Cost {
				return l[i].Cost > l[j].Cost
			}
			if l[i].Tasks != l[j].Tasks {
				return l[i].Tasks > l[j].Tasks
			}
			return l[i].Tenant+"\x00"+l[i].Profile < l[j].Tenant+"\x00"+l[j].Profile
		})
	}
	rep.Total.Cost = round6(rep.Total.Cost)
	return nil
}

func (u *ReportUsage) add(o ReportUsage) {
	u.Tasks += o.Tasks
	u.CPUMs += o.CPUMs
	u.EgressBytes += o.EgressBytes
	u.ToolCalls += o.ToolCalls
	u.BlockedCalls += o.BlockedCalls
	u.Cost = round6(u.Cost + o.Cost)
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

// receipts reads the ledger's export and counts the receipts of the
// tasks that ended in the window: outcomes, terminations by reason,
// blocked attempts by clause and destination, destinations contacted.
func (rep *Report) receipts(ctx context.Context, c *client, top int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/ledger/export", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	hc := *c.http
	hc.Timeout = 0 // a long export streams; the node cuts a stalled reader
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET /v1/ledger/export: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	outcomes, terms, clauses, blockedDests, dests := map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	x := ledger.NewExportReader(resp.Body)
	for {
		rec, err := x.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("export line %d: %w", x.Line(), err)
		}
		rep.LedgerRecords++
		env, err := ledger.DecodeEnvelope(rec.Envelope)
		if err != nil {
			return fmt.Errorf("record %d: %w", rec.Index, err)
		}
		if env.PayloadType != ledger.PayloadType {
			continue // a governance entry
		}
		var r ledger.Receipt
		if err := json.Unmarshal(env.Payload, &r); err != nil {
			return fmt.Errorf("record %d: %w", rec.Index, err)
		}
		if r.End.Before(rep.Since) || !r.End.Before(rep.Until) {
			continue
		}
		rep.Receipts++
		outcomes[r.Outcome]++
		if reason, ok := strings.CutPrefix(r.Outcome, "terminated:"); ok {
			terms[reason]++
		}
		for _, b := range r.BlockedAttempts {
			rep.Blocked += int64(b.Count)
			clauses[b.Clause] += int64(b.Count)
			blockedDests[b.Destination] += int64(b.Count)
		}
		for _, d := range r.Destinations {
			dests[d]++
		}
	}
	rep.Outcomes = tally(outcomes, 0)
	rep.Terminations = tally(terms, 0)
	rep.BlockedByClause = tally(clauses, 0)
	rep.BlockedByDest = tally(blockedDests, top)
	rep.TopDestinations = tally(dests, top)
	return nil
}

// tally orders a tally by count, then name; top > 0 keeps that many.
func tally(m map[string]int64, top int) []ReportCount {
	out := make([]ReportCount, 0, len(m))
	for k, v := range m {
		out = append(out, ReportCount{Key: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

// exhaustions reads the budget_exhausted events of every member (only
// the node whose usage batch crossed the limit emits one).
func (rep *Report) exhaustions(ctx context.Context, c *client) error {
	var cl api.Cluster
	if err := c.json(ctx, http.MethodGet, "/v1/cluster", c.token, nil, &cl); err != nil {
		return err
	}
	bases := []string{c.base}
	for _, m := range cl.Members {
		if b := "http://" + m.API; m.API != "" && !strings.EqualFold(b, c.base) {
			bases = append(bases, b)
		}
	}
	q := url.Values{"type": {"budget_exhausted"}, "since": {rep.Since.Format(time.RFC3339)}, "until": {rep.Until.Format(time.RFC3339)}}
	seen := map[string]bool{}
	rep.BudgetExhaustions = []ReportExhaustion{}
	for _, base := range bases {
		evs, err := c.listEvents(ctx, base, q, 100000)
		if err != nil {
			if base == c.base {
				return err
			}
			continue // a member that is down: its events are not counted
		}
		for _, e := range evs {
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			var d struct {
				Resource string `json:"resource"`
				Day      string `json:"day"`
				Used     int64  `json:"used"`
				Limit    int64  `json:"limit"`
			}
			_ = json.Unmarshal(e.Data, &d)
			rep.BudgetExhaustions = append(rep.BudgetExhaustions, ReportExhaustion{Tenant: e.Tenant, Resource: d.Resource, Day: d.Day,
				Used: d.Used, Limit: d.Limit, Node: e.Node, Time: e.Time})
		}
	}
	sort.Slice(rep.BudgetExhaustions, func(i, j int) bool { return rep.BudgetExhaustions[i].Time.Before(rep.BudgetExhaustions[j].Time) })
	return nil
}

// incidents lists the incidents detected in the window.
func (rep *Report) incidents(ctx context.Context, c *client) error {
	var l struct {
		Incidents []api.Incident `json:"incidents"`
	}
	if err := c.json(ctx, http.MethodGet, "/v1/incidents", c.token, nil, &l); err != nil {
		return err
	}
	rep.Incidents = []ReportIncident{}
	var ttc []int64
	for _, in := range l.Incidents {
		if in.DetectedAt.Before(rep.Since) || !in.DetectedAt.Before(rep.Until) {
			continue
		}
		actions := 0
		for _, e := range in.Timeline {
			if e.Kind != "open" && e.Kind != "close" {
				actions++
			}
		}
		rep.Incidents = append(rep.Incidents, ReportIncident{ID: in.ID, Title: in.Title, Owner: in.Owner, DetectedAt: in.DetectedAt,
			ContainedAt: in.ContainedAt, TimeToContainmentMs: in.TimeToContainmentMs, Open: in.Open, Actions: actions + in.Dropped})
		if in.TimeToContainmentMs != nil {
			ttc = append(ttc, *in.TimeToContainmentMs)
		}
	}
	sort.Slice(rep.Incidents, func(i, j int) bool { return rep.Incidents[i].DetectedAt.Before(rep.Incidents[j].DetectedAt) })
	if len(ttc) > 0 {
		sort.Slice(ttc, func(i, j int) bool { return ttc[i] < ttc[j] })
		m := ttc[len(ttc)/2]
		if len(ttc)%2 == 0 {
			m = (ttc[len(ttc)/2-1] + ttc[len(ttc)/2]) / 2
		}
		rep.MedianContainmentMs = &m
	}
	return nil
}

// policyChanges pages back through every environment's history to the
// start of the window.
func (rep *Report) policyChanges(ctx context.Context, c *client) error {
	var envs api.PolicyEnvs
	if err := c.json(ctx, http.MethodGet, "/v1/policy/envs", c.token, nil, &envs); err != nil {
		return err
	}
	rep.PolicyChanges = []api.PolicyChange{}
	for _, e := range envs.Envs {
		before := uint64(0)
		for {
			q := url.Values{"limit": {"1000"}}
			if before > 0 {
				q.Set("before", fmt.Sprint(before))
			}
			var h api.PolicyHistory
			if err := c.json(ctx, http.MethodGet, "/v1/policy/envs/"+url.PathEscape(e.Env)+"/history?"+q.Encode(), c.token, nil, &h); err != nil {
				return err
			}
			older := false
			for _, ch := range h.Changes {
				if ch.At.Before(rep.Since) {
					older = true
					continue
				}
				if ch.At.Before(rep.Until) {
					rep.PolicyChanges = append(rep.PolicyChanges, ch)
				}
			}
			if older || h.NextBefore == 0 || len(h.Changes) == 0 {
				break
			}
			before = h.NextBefore
		}
	}
	sort.SliceStable(rep.PolicyChanges, func(i, j int) bool { return rep.PolicyChanges[i].At.Before(rep.PolicyChanges[j].At) })
	return nil
}

// printPDF prints the HTML file to a PDF with headless Chromium.
func printPDF(ctx context.Context, htmlPath, pdfPath string) error {
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		return errors.New("--pdf needs chromium on PATH (make browser installs it)")
	}
	abs, err := filepath.Abs(htmlPath)
	if err != nil {
		return err
	}
	out, err := filepath.Abs(pdfPath)
	if err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "leash-report-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--user-data-dir="+profile,
		"--no-pdf-header-footer", "--print-to-pdf="+out, (&url.URL{Scheme: "file", Path: abs}).String())
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chromium --print-to-pdf: %w: %s", err, bytes.TrimSpace(b))
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		return fmt.Errorf("chromium wrote no PDF to %s", out)
	}
	return nil
}

// bar is one bar of a chart.
type bar struct {
	Label, Value string
	Raw          float64
	Y, Width     int
	LabelY       int
}

// chart is an inline SVG bar chart (horizontal bars).
type chart struct {
	ID, Title string
	Height    int
	Bars      []bar
}

const chartWidth, barArea, barH = 720, 430, 18

func newChart(id, title string, labels []string, values []float64, format func(float64) string) chart {
	c := chart{ID: id, Title: title}
	hi := 0.0
	for _, v := range values {
		hi = math.Max(hi, v)
	}
	for i, l := range labels {
		w := 0
		if hi > 0 {
			w = int(math.Round(values[i] / hi * barArea))
		}
		if values[i] > 0 && w < 1 {
			w = 1
		}
		y := 8 + i*(barH+6)
		c.Bars = append(c.Bars, bar{Label: clipLabel(l), Value: format(values[i]), Raw: values[i], Y: y, Width: w, LabelY: y + 13})
	}
	c.Height = 16 + len(labels)*(barH+6)
	return c
}

func clipLabel(s string) string {
	if r := []rune(s); len(r) > 34 {
		return string(r[:33]) + "…"
	}
	return s
}

func fmtInt(v float64) string { return groupThousands(int64(v)) }

func groupThousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func renderReport(w io.Writer, rep *Report) error {
	money := func(v float64) string { return fmt.Sprintf("%.6f", v) }
	usageChart := func(id, title string, rows []ReportUsage, name func(ReportUsage) string, val func(ReportUsage) float64, f func(float64) string) chart {
		var ls []string
		var vs []float64
		for _, r := range rows {
			ls, vs = append(ls, name(r)), append(vs, val(r))
		}
		return newChart(id, title, ls, vs, f)
	}
	countChart := func(id, title string, rows []ReportCount) chart {
		var ls []string
		var vs []float64
		for _, r := range rows {
			ls, vs = append(ls, r.Key), append(vs, float64(r.Count))
		}
		return newChart(id, title, ls, vs, fmtInt)
	}
	tenant := func(r ReportUsage) string { return r.Tenant }
	profile := func(r ReportUsage) string { return r.Profile }
	cost := func(r ReportUsage) float64 { return r.Cost }
	tasks := func(r ReportUsage) float64 { return float64(r.Tasks) }
	cur := rep.Currency
	if cur == "" {
		cur = "no price list"
	}
	charts := []chart{
		usageChart("chart-cost-tenant", "Cost by tenant ("+cur+")", rep.Tenants, tenant, cost, money),
		usageChart("chart-tasks-tenant", "Tasks by tenant", rep.Tenants, tenant, tasks, fmtInt),
		usageChart("chart-cost-profile", "Cost by profile ("+cur+")", rep.Profiles, profile, cost, money),
		usageChart("chart-tasks-profile", "Tasks by profile", rep.Profiles, profile, tasks, fmtInt),
		countChart("chart-terminations", "Terminations by reason", rep.Terminations),
		countChart("chart-blocked-clause", "Blocked calls by policy clause", rep.BlockedByClause),
		countChart("chart-top-destinations", "Top destinations (tasks that contacted each)", rep.TopDestinations),
	}
	byID := map[string]chart{}
	for _, c := range charts {
		byID[c.ID] = c
	}
	t, err := template.New("report").Funcs(template.FuncMap{
		"n":     groupThousands,
		"money": money,
		"chart": func(id string) chart { return byID[id] },
		"time":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ptime": func(t *time.Time) string {
			if t == nil {
				return "–"
			}
			return t.UTC().Format(time.RFC3339)
		},
		"ms": func(v *int64) string {
			if v == nil {
				return "not contained"
			}
			return (time.Duration(*v) * time.Millisecond).String()
		},
		"rawms": func(v *int64) string {
			if v == nil {
				return ""
			}
			return fmt.Sprint(*v)
		},
		"short": func(s string) string {
			if len(s) > 19 && strings.HasPrefix(s, "sha256:") {
				return s[:19] + "…"
			}
			return s
		},
	}).Parse(reportTemplate)
	if err != nil {
		return err
	}
	return t.Execute(w, struct {
		R      *Report
		Charts []chart
	}{rep, charts})
}

const reportTemplate = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>leash · sandbox risk and cost report {{.R.From}} – {{.R.To}}</title>
<style>
body { font: 13px/1.45 system-ui, sans-serif; color: #1d2330; margin: 2em auto; max-width: 900px; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin: 1.6em 0 .4em; border-bottom: 1px solid #dde1e7; padding-bottom: .2em; }
.note { color: #5a6475; } table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; }
th, td { text-align: left; padding: .2em .5em; border-bottom: 1px solid #eef0f3; font-variant-numeric: tabular-nums; }
td.num, th.num { text-align: right; } .kpis { display: grid; grid-template-columns: repeat(4, 1fr); gap: .6em; }
.kpi { border: 1px solid #dde1e7; border-radius: 6px; padding: .5em .7em; } .kpi b { display: block; font-size: 1.4em; }
svg text { font: 11px system-ui, sans-serif; fill: #1d2330; } svg rect.bar { fill: #1a56db; }
#chart-terminations rect.bar, #chart-blocked-clause rect.bar { fill: #e02424; }
@media print { body { margin: 0; } h2 { break-after: avoid; } svg, table { break-inside: avoid; } }
</style>
</head>
<body>
<h1>Sandbox risk and cost report</h1>
<p class="note">UTC days {{.R.From}} to {{.R.To}} (from {{time .R.Since}} to {{time .R.Until}}, exclusive). Generated {{time .R.GeneratedAt}} from {{.R.Node}}: usage and cost from <code>GET /v1/usage</code>, tasks from the ledger's receipts (<code>GET /v1/ledger/export</code>, {{n .R.LedgerRecords}} records read), budget exhaustions from every member's events, incidents from <code>GET /v1/incidents</code>, policy changes from each environment's history.</p>

<div class="kpis">
<div class="kpi">tasks<b data-figure="total-tasks">{{n .R.Total.Tasks}}</b></div>
<div class="kpi">cost ({{if .R.Currency}}{{.R.Currency}}{{else}}no price list{{end}})<b data-figure="total-cost">{{money .R.Total.Cost}}</b></div>
<div class="kpi">blocked calls<b data-figure="blocked">{{n .R.Blocked}}</b></div>
<div class="kpi">incidents<b data-figure="incidents">{{len .R.Incidents}}</b></div>
</div>

<h2>Tasks and cost by tenant</h2>
{{template "chart" chart "chart-cost-tenant"}}{{template "chart" chart "chart-tasks-tenant"}}
<table id="tenants"><thead><tr><th>tenant</th><th class="num">tasks</th><th class="num">CPU ms</th><th class="num">egress bytes</th><th class="num">tool calls</th><th class="num">blocked</th><th class="num">cost</th></tr></thead><tbody>
{{range .R.Tenants}}<tr data-tenant="{{.Tenant}}" data-tasks="{{.Tasks}}" data-cost="{{money .Cost}}"><td>{{.Tenant}}</td><td class="num">{{n .Tasks}}</td><td class="num">{{n .CPUMs}}</td><td class="num">{{n .EgressBytes}}</td><td class="num">{{n .ToolCalls}}</td><td class="num">{{n .BlockedCalls}}</td><td class="num">{{money .Cost}}</td></tr>
{{else}}<tr><td colspan="7">no usage</td></tr>{{end}}</tbody></table>

<h2>Tasks and cost by profile</h2>
{{template "chart" chart "chart-cost-profile"}}{{template "chart" chart "chart-tasks-profile"}}
<table id="tenant-profiles"><thead><tr><th>tenant</th><th>profile</th><th class="num">tasks</th><th class="num">CPU ms</th><th class="num">egress bytes</th><th class="num">cost</th></tr></thead><tbody>
{{range .R.TenantProfiles}}<tr data-tenant="{{.Tenant}}" data-profile="{{.Profile}}" data-tasks="{{.Tasks}}" data-cost="{{money .Cost}}"><td>{{.Tenant}}</td><td>{{.Profile}}</td><td class="num">{{n .Tasks}}</td><td class="num">{{n .CPUMs}}</td><td class="num">{{n .EgressBytes}}</td><td class="num">{{money .Cost}}</td></tr>
{{else}}<tr><td colspan="6">no usage</td></tr>{{end}}</tbody></table>

<h2>Outcomes and terminations</h2>
<p class="note">{{n .R.Receipts}} receipts of tasks that ended in the window.</p>
<table id="outcomes"><thead><tr><th>outcome</th><th class="num">tasks</th></tr></thead><tbody>
{{range .R.Outcomes}}<tr data-key="{{.Key}}" data-count="{{.Count}}"><td>{{.Key}}</td><td class="num">{{n .Count}}</td></tr>
{{else}}<tr><td colspan="2">no receipts</td></tr>{{end}}</tbody></table>
{{template "chart" chart "chart-terminations"}}

<h2>Blocked calls</h2>
{{template "chart" chart "chart-blocked-clause"}}
<table id="blocked-destinations"><thead><tr><th>destination refused</th><th class="num">attempts</th></tr></thead><tbody>
{{range .R.BlockedByDest}}<tr data-key="{{.Key}}" data-count="{{.Count}}"><td>{{.Key}}</td><td class="num">{{n .Count}}</td></tr>
{{else}}<tr><td colspan="2">no blocked calls</td></tr>{{end}}</tbody></table>

<h2>Top destinations</h2>
{{template "chart" chart "chart-top-destinations"}}

<h2>Budget exhaustions</h2>
<table id="exhaustions"><thead><tr><th>time</th><th>tenant</th><th>resource</th><th>day</th><th class="num">used</th><th class="num">limit</th><th>node</th></tr></thead><tbody>
{{range .R.BudgetExhaustions}}<tr data-tenant="{{.Tenant}}" data-resource="{{.Resource}}"><td>{{time .Time}}</td><td>{{.Tenant}}</td><td>{{.Resource}}</td><td>{{.Day}}</td><td class="num">{{n .Used}}</td><td class="num">{{n .Limit}}</td><td>{{.Node}}</td></tr>
{{else}}<tr><td colspan="7">no budget ran out</td></tr>{{end}}</tbody></table>

<h2>Incidents and time to containment</h2>
<p class="note">Median time from detection to the first containment action: <span data-figure="median-containment-ms" data-value="{{rawms .R.MedianContainmentMs}}">{{ms .R.MedianContainmentMs}}</span>.</p>
<table id="incidents"><thead><tr><th>incident</th><th>title</th><th>owner</th><th>detected</th><th>contained</th><th class="num">to containment</th><th class="num">actions</th><th>state</th></tr></thead><tbody>
{{range .R.Incidents}}<tr data-incident="{{.ID}}" data-ttc-ms="{{rawms .TimeToContainmentMs}}"><td>{{.ID}}</td><td>{{.Title}}</td><td>{{.Owner}}</td><td>{{time .DetectedAt}}</td><td>{{ptime .ContainedAt}}</td><td class="num">{{ms .TimeToContainmentMs}}</td><td class="num">{{.Actions}}</td><td>{{if .Open}}open{{else}}closed{{end}}</td></tr>
{{else}}<tr><td colspan="8">no incidents</td></tr>{{end}}</tbody></table>

<h2>Policy changes</h2>
<table id="policy-changes"><thead><tr><th>time</th><th>env</th><th>action</th><th>digest</th><th>by</th><th>reason</th></tr></thead><tbody>
{{range .R.PolicyChanges}}<tr data-env="{{.Env}}" data-seq="{{.Seq}}" data-action="{{.Action}}"><td>{{time .At}}</td><td>{{.Env}}</td><td>{{.Action}}</td><td title="{{.Digest}}">{{short .Digest}}</td><td>{{.By}}</td><td>{{.Reason}}</td></tr>
{{else}}<tr><td colspan="6">no policy changes</td></tr>{{end}}</tbody></table>

<script type="application/json" id="leash-report">{{.R}}</script>
</body>
</html>
{{define "chart"}}<figure><figcaption><b>{{.Title}}</b></figcaption>{{if .Bars}}<svg id="{{.ID}}" xmlns="http://www.w3.org/2000/svg" width="720" height="{{.Height}}" viewBox="0 0 720 {{.Height}}" role="img" aria-label="{{.Title}}">
{{range .Bars}}<g data-label="{{.Label}}" data-value="{{.Raw}}"><text x="0" y="{{.LabelY}}">{{.Label}}</text><rect class="bar" x="200" y="{{.Y}}" width="{{.Width}}" height="18"></rect><text x="{{.Width}}" dx="206" y="{{.LabelY}}">{{.Value}}</text></g>
{{end}}</svg>{{else}}<p class="note">nothing to chart</p>{{end}}</figure>
{{end}}`
