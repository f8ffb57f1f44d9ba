package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// chromium finds Debian's chromium (make unit installs it); the test
// skips only when there is none at all.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (make unit installs Debian's chromium): the dashboard's browser test cannot run")
	return ""
}

// artifactDir is where the screenshot goes: $LEASH_ARTIFACTS, else the
// test's artifact directory (kept under -artifacts' output dir).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("LEASH_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// TestDashboard opens /ui in a real headless chromium: a tenant signs in
// with its key and the page's figures (today against the envelope, the
// 30 days' totals and cost, the recent tasks with their receipts) match
// GET /v1/budgets and GET /v1/usage; the page loads nothing from
// elsewhere and raises no error (its CSP refuses anything else); staff
// switch between tenants and draw the blast-radius map, whose nodes and
// edges are GET /v1/runbook/blast-radius's. Screenshots are saved as
// artifacts.
func TestDashboard(t *testing.T) {
	exe := chromium(t)
	n := nodetest.Start(t, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "budget.yaml")})
	var key api.APIKey
	n.JSON("POST", "/v1/apikeys", n.Token, api.APIKeyRequest{Role: "tenant", Tenant: "team", Name: "dashboard"}, 201, &key)
	var l api.Lease
	n.JSON("POST", "/v1/leases", key.Key, api.LeaseRequest{Intent: "small_task"}, 201, &l)
	wasm := guestB64(t, "minimal")
	const tasks = 5
	for range tasks {
		if st, b := n.Do("POST", "/v1/tasks", l.Token, wasmTask(wasm)); st != 200 {
			t.Fatalf("task: %d %s", st, b)
		}
	}
	// The usage is replicated in batches (250 ms): wait until the API
	// counts every task, then compare the page with it.
	var usage usageReport
	deadline := time.Now().Add(20 * time.Second)
	for {
		usage = usageReport{}
		n.JSON("GET", "/v1/usage?group_by=tenant", key.Key, nil, 200, &usage)
		if usage.Total.Usage["tasks"] == tasks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage counts %d tasks, want %d", usage.Total.Usage["tasks"], tasks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var budget budgetReport
	n.JSON("GET", "/v1/budgets/team", key.Key, nil, 200, &budget)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1200, 2400), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, fmt.Sprintf("exception: %s %+v", e.ExceptionDetails.Text, e.ExceptionDetails.Exception))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, fmt.Sprintf("console.error: %v", e.Args))
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	eval := func(expr string, out any) error {
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, out)
	}
	poll := func(expr string, d time.Duration) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d))(ctx, tg)
			return err
		})
	}
	loaded := func(tenant string) chromedp.Action[chromedp.Void] {
		return poll(`document.body.dataset.loaded === `+strconv.Quote(tenant), 30*time.Second)
	}
	signIn := func(secret string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.WaitVisible(chromedp.CSS("#key")),
			chromedp.SendKeys(chromedp.CSS("#key"), secret),
			chromedp.Click(chromedp.CSS("#signin-button")))
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(n.URL()+"/ui"), signIn(key.Key), loaded("team")); err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("sign in: %v (browser: %q)", err, problems)
	}

	// The 30 days' totals and cost are GET /v1/usage's.
	tot := usage.Total.Usage
	for sel, want := range map[string]string{
		"#who":              "tenant team",
		"#total-tasks":      strconv.FormatInt(tot["tasks"], 10),
		"#total-cpu":        strconv.FormatInt(tot["cpu_ms"], 10),
		"#total-egress":     strconv.FormatInt(tot["egress_bytes_in"]+tot["egress_bytes_out"], 10),
		"#total-tool-calls": strconv.FormatInt(tot["tool_calls"], 10),
		"#total-cost":       strconv.FormatFloat(usage.Total.Cost["total"], 'f', 6, 64),
		"#currency":         usage.Currency,
	} {
		if got := text(sel); got != want {
			t.Errorf("%s shows %q, the API %q", sel, got, want)
		}
	}
	// A tenant's key is not shown the blast-radius map (staff only).
	var blastHidden bool
	if err := eval(`document.getElementById('blast').hidden`, &blastHidden); err != nil || !blastHidden {
		t.Errorf("the tenant's page shows the blast-radius panel (%v)", err)
	}
	// Today against the envelope, per dimension, as GET /v1/budgets.
	if len(budget.Dimensions) == 0 {
		t.Fatal("GET /v1/budgets/team has no dimensions")
	}
	for _, d := range budget.Dimensions {
		var cells []string
		if err := eval(fmt.Sprintf(`[...document.querySelector('#budget-table tr[data-dim=%q]').cells].map(c => c.textContent)`, d.Name), &cells); err != nil {
			t.Fatalf("budget row %s: %v", d.Name, err)
		}
		wantLimit := "unlimited"
		if d.Limit > 0 {
			wantLimit = fmtThousands(d.Limit)
		}
		if len(cells) < 3 || cells[1] != fmtThousands(d.Used) || cells[2] != wantLimit {
			t.Errorf("budget %s: page %q, API used %d limit %d", d.Name, cells, d.Used, d.Limit)
		}
	}
	// The charts were drawn by chart.js (the vendored copy, from /ui),
	// with the 70% and 100% lines on the envelope's.
	var lines []string
	if err := eval(`["chart-budget","chart-cost","chart-tasks","chart-blocked"].every(id => Chart.getChart(id) !== undefined) ? Chart.getChart("chart-budget").data.datasets.map(d => d.label) : null`, &lines); err != nil || len(lines) != 3 {
		t.Errorf("charts not drawn: %v %q", err, lines)
	}
	// ... and painted something (a canvas that was sized to nothing, or
	// cleared by a resize without a redraw, has no opaque pixel).
	for _, id := range []string{"chart-budget", "chart-cost", "chart-tasks"} {
		painted := fmt.Sprintf(`(() => { const c = document.getElementById(%q); const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; })()`, id)
		if err := chromedp.Do(ctx, poll(painted, 10*time.Second)); err != nil {
			t.Errorf("chart %s painted nothing: %v", id, err)
		}
	}
	// Recent tasks: one row per task, each with its receipt, which opens.
	var rows int
	if err := chromedp.Do(ctx, poll(`document.querySelectorAll('#tasks-table button[data-receipt]').length >= `+strconv.Itoa(tasks), 10*time.Second)); err != nil {
		_ = eval(`document.querySelectorAll('#tasks-table tbody tr').length`, &rows)
		t.Errorf("recent tasks with receipts: %v (%d rows)", err, rows)
	} else if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#tasks-table button[data-receipt]`)),
		poll(`document.getElementById('receipt').textContent.length > 0`, 10*time.Second)); err != nil {
		t.Errorf("open receipt: %v", err)
	} else if receipt := text("#receipt"); !json.Valid([]byte(receipt)) {
		t.Errorf("receipt shown is not the API's JSON: %.200s", receipt)
	}
	dir := artifactDir(t)
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", filepath.Join(dir, name), len(png))
	}
	shoot("dashboard-tenant.png")

	// Staff sign in with their token and switch between tenants.
	// Sign out forgets the key and reloads; load the page afresh so no
	// query runs against the old document.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#signout"))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	// Sign-out reloads the page; a navigation that meets that reload is
	// aborted (net::ERR_ABORTED): navigate again until one lands.
	for try := 0; ; try++ {
		err := chromedp.Do(ctx, chromedp.Navigate(n.URL()+"/ui"))
		if err == nil {
			break
		}
		if try == 5 || !strings.Contains(err.Error(), "ERR_ABORTED") {
			t.Fatalf("load the page after sign-out: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := chromedp.Do(ctx,
		poll(`sessionStorage.getItem("leash.key") === null && !document.getElementById("signin").hidden`, 10*time.Second),
		signIn(n.Token),
		chromedp.WaitVisible(chromedp.CSS("#tenant-select")),
		loaded("other"), // the first tenant by name
		chromedp.SetValue(chromedp.CSS("#tenant-select"), "team"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.getElementById('tenant-select').dispatchEvent(new Event('change'))`)(ctx, tg)
			return err
		}),
		loaded("team"),
	); err != nil {
		t.Fatalf("staff switch: %v", err)
	}
	if got := text("#total-tasks"); got != strconv.Itoa(tasks) {
		t.Errorf("staff view of team: %s tasks, want %d", got, tasks)
	}
	shoot("dashboard-staff.png")

	// The blast-radius map (staff only): the tenant's receipts drawn as
	// tenant → profile → module → destination; every node and edge the
	// page draws is one of GET /v1/runbook/blast-radius's, with its count.
	var br api.BlastRadius
	n.JSON("GET", "/v1/runbook/blast-radius?tenant=team", n.Token, nil, 200, &br)
	if br.Verified != tasks || len(br.Graph) == 0 {
		t.Fatalf("blast radius of team: %d verified, %d edges", br.Verified, len(br.Graph))
	}
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS("#blast-form")),
		chromedp.SetValue(chromedp.CSS("#blast-kind"), "tenant"),
		chromedp.SendKeys(chromedp.CSS("#blast-value"), "team"),
		chromedp.Click(chromedp.CSS("#blast-button")),
		poll(`(document.body.dataset.blast || "").endsWith("tenant=team")`, 30*time.Second),
	); err != nil {
		t.Fatalf("draw the blast radius: %v", err)
	}
	var drawn struct {
		Edges    []api.BlastEdge `json:"edges"`
		Nodes    []string        `json:"nodes"`
		Matched  string          `json:"matched"`
		Verified string          `json:"verified"`
		Summary  string          `json:"summary"`
	}
	if err := eval(`({
		edges: [...document.querySelectorAll('#blast-graph path[data-from]')].map(e => ({from: e.dataset.from, to: e.dataset.to, count: Number(e.dataset.count)})),
		nodes: [...document.querySelectorAll('#blast-graph g[data-node]')].map(g => g.dataset.node),
		matched: document.getElementById('blast-summary').dataset.matched,
		verified: document.getElementById('blast-summary').dataset.verified,
		summary: document.getElementById('blast-summary').textContent,
	})`, &drawn); err != nil {
		t.Fatalf("read the map: %v", err)
	}
	edgeSet := func(es []api.BlastEdge) []string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s -> %s (%d)", e.From, e.To, e.Count))
		}
		slices.Sort(out)
		return out
	}
	if got, want := edgeSet(drawn.Edges), edgeSet(br.Graph); !slices.Equal(got, want) {
		t.Errorf("the map draws %q, the API has %q", got, want)
	}
	var wantNodes []string
	for _, e := range br.Graph {
		wantNodes = append(wantNodes, e.From, e.To)
	}
	slices.Sort(wantNodes)
	wantNodes = slices.Compact(wantNodes)
	slices.Sort(drawn.Nodes)
	if !slices.Equal(drawn.Nodes, wantNodes) {
		t.Errorf("the map's nodes %q, the API's %q", drawn.Nodes, wantNodes)
	}
	if drawn.Matched != strconv.Itoa(br.Matched) || drawn.Verified != strconv.Itoa(br.Verified) {
		t.Errorf("summary %q: matched %s verified %s, the API %d and %d", drawn.Summary, drawn.Matched, drawn.Verified, br.Matched, br.Verified)
	}
	// A selector the API refuses shows its error and draws nothing.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#blast-kind"), ""),
		chromedp.Click(chromedp.CSS("#blast-button")),
		poll(`document.body.dataset.blast !== "" && document.querySelectorAll('#blast-graph g[data-node]').length === 0`, 30*time.Second),
	); err != nil {
		t.Errorf("an empty selector: %v", err)
	} else if s := text("#blast-summary"); !strings.HasPrefix(s, "bad_request") {
		t.Errorf("an empty selector shows %q", s)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#blast-kind"), "tenant"),
		chromedp.Click(chromedp.CSS("#blast-button")),
		poll(`document.querySelectorAll('#blast-graph g[data-node]').length > 0`, 30*time.Second),
		chromedp.ScrollIntoView(chromedp.CSS("#blast")),
	); err != nil {
		t.Errorf("redraw: %v", err)
	}
	shoot("dashboard-blast.png")
	var csp []string
	if err := eval(`window.leashProblems || []`, &csp); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range append(problems, csp...) {
		t.Errorf("browser: %s", p)
	}
}

// fmtThousands writes n as the page does (en-US grouping).
func fmtThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
