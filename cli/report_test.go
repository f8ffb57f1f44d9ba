package cli

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

// reportJSON is the machine-readable block of a report page.
var reportJSON = regexp.MustCompile(`(?s)<script type="application/json" id="leash-report">(.*?)</script>`)

// TestReportPage: the page carries the figures it shows as JSON (read back
// equal), in its tables' data attributes and as SVG bars, escapes what the
// API said (a tenant named like markup stays text), and loads nothing:
// no script, style sheet, image or font from anywhere.
func TestReportPage(t *testing.T) {
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	ttc := int64(90_000)
	contained := t0.Add(time.Hour)
	rep := &Report{From: "2026-10-01", To: "2026-12-31", Since: t0, Until: t0.AddDate(0, 3, 0), GeneratedAt: t0.AddDate(0, 3, 1), Node: "http://127.0.0.1:8080",
		Currency: "EUR",
		Total:    ReportUsage{Tasks: 12345, CPUMs: 99, Cost: 1.5},
		Tenants:  []ReportUsage{{Tenant: "acme", Tasks: 12000, Cost: 1.25}, {Tenant: "<b>evil</b>", Tasks: 345, Cost: 0.25}},
		Profiles: []ReportUsage{{Profile: "small", Tasks: 12345, Cost: 1.5}},
		TenantProfiles: []ReportUsage{{Tenant: "acme", Profile: "small", Tasks: 12000, Cost: 1.25},
			{Tenant: "<b>evil</b>", Profile: "small", Tasks: 345, Cost: 0.25}},
		Receipts: 12345, LedgerRecords: 12400,
		Outcomes:        []ReportCount{{"ok", 12300}, {"terminated:cpu", 45}},
		Terminations:    []ReportCount{{"cpu", 45}},
		Blocked:         7,
		BlockedByClause: []ReportCount{{"egress.allow", 7}},
		BlockedByDest:   []ReportCount{{"evil.example:443", 7}},
		TopDestinations: []ReportCount{{"api.example.com:443", 12000}},
		BudgetExhaustions: []ReportExhaustion{{Tenant: "acme", Resource: "tasks", Day: "2026-11-02", Used: 3, Limit: 3, Node: "n1",
			Time: t0.AddDate(0, 1, 1)}},
		Incidents: []ReportIncident{{ID: "inc-1", Title: "exfiltration </script>", Owner: "alice", DetectedAt: t0.Add(time.Minute),
			ContainedAt: &contained, TimeToContainmentMs: &ttc, Actions: 3}},
		MedianContainmentMs: &ttc,
		PolicyChanges:       []api.PolicyChange{{Env: "prod", Seq: 2, Action: "push", Digest: "sha256:" + strings.Repeat("ab", 32), By: "key:op", At: t0.Add(2 * time.Hour)}},
	}
	var b bytes.Buffer
	if err := renderReport(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	m := reportJSON.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no JSON block")
	}
	var got Report
	if err := json.Unmarshal([]byte(m[1]), &got); err != nil {
		t.Fatalf("JSON block: %v", err)
	}
	if !reflect.DeepEqual(&got, rep) {
		t.Errorf("JSON block differs:\n got %+v\nwant %+v", got, *rep)
	}
	for _, bad := range []string{"<b>evil</b>", "exfiltration </script>", "<link", " src=", "@import", "url(", "<img"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q", bad)
		}
	}
	for _, want := range []string{
		`data-figure="total-tasks">12,345<`, `data-figure="total-cost">1.500000<`, `data-tenant="acme" data-tasks="12000" data-cost="1.250000"`,
		`<svg id="chart-cost-tenant"`, `<svg id="chart-terminations"`, `data-incident="inc-1" data-ttc-ms="90000"`, `data-env="prod" data-seq="2"`,
		`data-figure="median-containment-ms" data-value="90000">1m30s<`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(page, `<rect class="bar"`); n != 2+2+1+1+1+1+1 {
		t.Errorf("%d bars, want 9", n)
	}
}
