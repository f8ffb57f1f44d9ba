package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/egress"
	"github.com/leash-dev/leash/ledger"
)

// The chaos drills of the security runbook (docs/runbook.md, "Drills"):
// canary workloads run against the cluster under a drill profile, each
// checked for its outcome, its event, its metric and its receipt. The
// report lists every check; any failure makes the exit status 1.

// drillCheck is one line of a drill's report.
type drillCheck struct {
	Case  string `json:"case"`
	Check string `json:"check"` // outcome, blocked, body, event, metric, receipt, destination, egress
	Want  string `json:"want"`
	Got   string `json:"got"`
	// Result is pass, fail or skip (a metric of a task another node ran).
	Result string `json:"result"`
}

type drillReport struct {
	Drill  string       `json:"drill"`
	Passed bool         `json:"passed"`
	Checks []drillCheck `json:"checks"`
}

// drillCase is one canary task and what must come of it.
type drillCase struct {
	name    string
	js      string
	outcome string // the task's outcome
	reason  string // execution_terminated's reason, when terminated
	clause  string // tool_call_blocked's clause, when a fetch must be refused
	// dest is the host:port the task fetches: in the receipt's blocked
	// attempts with the clause (and not among its destinations) when
	// refused, among its destinations otherwise.
	dest string
	// body is the task's response body, when it must be checked.
	body string
	// egressOut and egressIn, when egress is set, are the receipt's
	// egress bytes.
	egress              bool
	egressOut, egressIn int64
}

// runDrill: `leash drill timeout|egress`.
func runDrill(ctx context.Context, env *Env, args []string) error {
	if stop, err := subUsage(env, args, "drill timeout|egress [--tenant T] [--profile P] [--loopback-port N] [--json]"); stop {
		return err
	}
	kind := args[0]
	if kind != "timeout" && kind != "egress" {
		return &exitError{code: 2, msg: fmt.Sprintf("drill: unknown drill %q (timeout, egress)", kind)}
	}
	fs := flags(env, "drill "+kind, "drill "+kind+" [--tenant T] [--profile P] [--loopback-port N] [--json]")
	tenant := fs.String("tenant", "drill", "the tenant the drill's leases are issued for")
	profile := fs.String("profile", "drill", "the drill profile (docs/runbook.md, \"Drills\")")
	port := fs.Int("loopback-port", 18080, "egress: the port of the loopback destination the gateway must refuse (the drill profile allows 127.0.0.1 on it; nothing listens)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if _, err := parseN(fs, args[1:], 0); err != nil {
		return err
	}
	d := &drill{c: newClient(env), tenant: *tenant, profile: *profile, port: *port, rep: drillReport{Drill: kind, Passed: true}}
	var err error
	if kind == "timeout" {
		err = d.timeout(ctx)
	} else {
		err = d.egress(ctx)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(env, d.rep); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CASE\tCHECK\tWANT\tGOT\tRESULT")
		for _, c := range d.rep.Checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Case, c.Check, c.Want, c.Got, c.Result)
		}
		_ = tw.Flush()
		verdict := "PASS"
		if !d.rep.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(env.Stdout, "drill %s: %s\n", kind, verdict)
	}
	if !d.rep.Passed {
		return &exitError{code: 1, msg: "drill " + kind + " failed"}
	}
	return nil
}

type drill struct {
	c               *client
	tenant, profile string
	port            int
	nodeID          string // the node LEASH_URL names
	rep             drillReport
}

func (d *drill) check(c drillCheck) {
	if c.Result == "" {
		c.Result = "pass"
		if c.Want != c.Got {
			c.Result = "fail"
		}
	}
	if c.Result == "fail" {
		d.rep.Passed = false
	}
	d.rep.Checks = append(d.rep.Checks, c)
}

// timeout: a task that spins ends terminated:cpu; one that waits past
// its wall-clock limit ends terminated:wall; one whose fetch of the
// gateway's stalling drill destination never gets an answer ends
// terminated:wall too (the profile's header_ms, 10 s by default, is
// longer than the drill profile's wall_ms).
func (d *drill) timeout(ctx context.Context) error {
	return d.run(ctx, []drillCase{
		{name: "cpu", js: `export default { async fetch() { for (;;) {} } }`, outcome: "terminated:cpu", reason: "cpu"},
		{name: "wall", js: `export default { async fetch() { await new Promise(r => setTimeout(r, 3600000)); return new Response("woke") } }`,
			outcome: "terminated:wall", reason: "wall"},
		{name: "stall", js: `export default { async fetch() { const r = await fetch("http://` + egress.DrillStall + `/"); return new Response("answered " + r.status) } }`,
			outcome: "terminated:wall", reason: "wall", dest: egress.DrillStall + ":80"},
	})
}

// drillEchoBody is what the egress drill sends the echo destination.
const drillEchoBody = "leash drill egress: bytes out"

// egress: a loopback destination (a private address, refused before any
// connection), a host outside the allow-list, a host the drill blocks at
// run time, and the gateway's echo destination inside the allow-list,
// which answers and whose bytes the receipt counts.
func (d *drill) egress(ctx context.Context) error {
	fetch := func(u string) string {
		return `export default { async fetch() {
			try { const r = await fetch(` + strconv.Quote(u) + `); return new Response("fetched " + r.status) }
			catch (e) { return new Response("refused: " + e.message) } } }`
	}
	blocked := "blocked.drill.test"
	var br api.RunbookResult
	if err := d.c.json(ctx, http.MethodPost, "/v1/runbook/blocks", d.c.token, api.BlockRequest{Destinations: []string{blocked},
		RunbookAction: api.RunbookAction{Reason: "drill egress"}}, &br); err != nil {
		return fmt.Errorf("block %s for the drill: %w", blocked, err)
	}
	defer func() {
		_ = d.c.json(context.WithoutCancel(ctx), http.MethodPost, "/v1/runbook/unblock", d.c.token, api.BlockRequest{Destinations: []string{blocked},
			RunbookAction: api.RunbookAction{Reason: "drill egress done"}}, nil)
	}()
	echo := `export default { async fetch() {
		const r = await fetch("https://` + egress.DrillEcho + `/", { method: "POST", body: ` + strconv.Quote(drillEchoBody) + ` });
		return new Response(r.status + " " + await r.text()) } }`
	loopback := "127.0.0.1:" + strconv.Itoa(d.port)
	return d.run(ctx, []drillCase{
		{name: "private", js: fetch("http://" + loopback + "/"), outcome: "ok", clause: "address.private", dest: loopback},
		{name: "outside", js: fetch("http://outside.drill.invalid/"), outcome: "ok", clause: "profile.default_deny", dest: "outside.drill.invalid:80"},
		{name: "blocked", js: fetch("http://" + blocked + "/"), outcome: "ok", clause: "global.deny", dest: blocked + ":80"},
		{name: "inside", js: echo, outcome: "ok", dest: egress.DrillEcho + ":443", body: "200 " + egress.DrillEchoBody,
			egress: true, egressOut: int64(len(drillEchoBody)), egressIn: int64(len(egress.DrillEchoBody))},
	})
}

// run runs each case as a task under a fresh lease of the drill
// profile and checks outcome, event, metric and receipt.
func (d *drill) run(ctx context.Context, cases []drillCase) error {
	var hz struct {
		NodeID string `json:"node_id"`
	}
	if err := d.c.json(ctx, http.MethodGet, "/healthz", "", nil, &hz); err != nil {
		return err
	}
	d.nodeID = hz.NodeID
	for _, tc := range cases {
		var l api.Lease
		if err := d.c.json(ctx, http.MethodPost, "/v1/leases", d.c.token, api.LeaseRequest{Tenant: d.tenant, Profile: d.profile}, &l); err != nil {
			return fmt.Errorf("a lease of the drill profile %q for tenant %q: %w", d.profile, d.tenant, err)
		}
		before, err := d.metrics(ctx)
		if err != nil {
			return err
		}
		js := tc.js
		var res api.TaskResult
		if err := d.c.json(ctx, http.MethodPost, "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{JS: &js}}, &res); err != nil {
			return fmt.Errorf("drill task %s: %w", tc.name, err)
		}
		d.check(drillCheck{Case: tc.name, Check: "outcome", Want: tc.outcome, Got: res.Outcome})
		if tc.body != "" {
			got := ""
			if res.Response != nil && res.Response.Body.Body != nil {
				got = *res.Response.Body.Body
			}
			d.check(drillCheck{Case: tc.name, Check: "body", Want: strconv.Quote(tc.body), Got: strconv.Quote(got)})
		}
		if tc.clause != "" {
			d.check(drillCheck{Case: tc.name, Check: "blocked", Want: "1", Got: strconv.FormatInt(res.Usage.Blocked, 10)})
		} else if tc.reason == "" {
			d.check(drillCheck{Case: tc.name, Check: "blocked", Want: "0", Got: strconv.FormatInt(res.Usage.Blocked, 10)})
		}
		d.checkEvent(ctx, tc, &res)
		d.checkMetric(ctx, tc, &res, before)
		d.checkReceipt(ctx, tc, &res)
	}
	return nil
}

// checkEvent: execution_terminated with the reason, or tool_call_blocked
// with the clause, names the task.
func (d *drill) checkEvent(ctx context.Context, tc drillCase, res *api.TaskResult) {
	typ, field, want := "execution_terminated", "reason", tc.reason
	if tc.reason == "" {
		if tc.clause == "" {
			return
		}
		typ, field, want = "tool_call_blocked", "clause", tc.clause
	}
	got := "none"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var out struct {
			Events []struct {
				Data map[string]any `json:"data"`
			} `json:"events"`
		}
		q := url.Values{"task": {res.TaskID}, "type": {typ}}
		if err := d.c.json(ctx, http.MethodGet, "/v1/events?"+q.Encode(), d.c.token, nil, &out); err != nil {
			got = err.Error()
			break
		}
		if len(out.Events) > 0 {
			got = fmt.Sprint(out.Events[0].Data[field])
			break
		}
	}
	d.check(drillCheck{Case: tc.name, Check: "event", Want: typ + " " + field + "=" + want, Got: typ + " " + field + "=" + got})
}

// checkMetric: leash_tasks_total for the outcome (and, for a refused
// fetch, leash_blocked_calls_total for the clause) rose on the node that
// ran the task; skipped when another node ran it (the CLI reads one
// node's metrics).
func (d *drill) checkMetric(ctx context.Context, tc drillCase, res *api.TaskResult, before map[string]float64) {
	keys := []string{`leash_tasks_total|outcome="` + tc.outcome + `"`}
	if tc.clause != "" {
		keys = append(keys, `leash_blocked_calls_total|clause="`+tc.clause+`"`)
	}
	if res.Node != d.nodeID {
		for _, k := range keys {
			d.check(drillCheck{Case: tc.name, Check: "metric", Want: k + " +1", Got: "ran on " + res.Node, Result: "skip"})
		}
		return
	}
	after, err := d.metrics(ctx)
	for _, k := range keys {
		got := fmt.Sprintf("%+g", after[k]-before[k])
		if err != nil {
			got = err.Error()
		} else if after[k]-before[k] >= 1 {
			got = "+1"
		}
		d.check(drillCheck{Case: tc.name, Check: "metric", Want: k + " +1", Got: k + " " + got})
	}
}

// metrics sums the two counters the drills read by outcome and clause.
func (d *drill) metrics(ctx context.Context) (map[string]float64, error) {
	var b strings.Builder
	if err := d.c.do(ctx, http.MethodGet, "/metrics", d.c.token, "", nil, rawOut{&b}); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(b.String(), "\n") {
		for _, m := range []struct{ name, label string }{{"leash_tasks_total{", "outcome="}, {"leash_blocked_calls_total{", "clause="}} {
			if !strings.HasPrefix(line, m.name) {
				continue
			}
			i := strings.Index(line, m.label)
			j := strings.LastIndex(line, " ")
			if i < 0 || j < 0 {
				continue
			}
			lv := line[i:]
			lv = lv[:strings.IndexAny(lv[len(m.label)+1:], `"`)+len(m.label)+2]
			v, err := strconv.ParseFloat(line[j+1:], 64)
			if err == nil {
				out[strings.TrimSuffix(m.name, "{")+"|"+lv] += v
			}
		}
	}
	return out, nil
}

// checkReceipt: the task's receipt is in the ledger with its outcome,
// the case's destination among its destinations or its blocked attempts,
// and its egress bytes.
func (d *drill) checkReceipt(ctx context.Context, tc drillCase, res *api.TaskResult) {
	got := "no receipt"
	if res.Receipt == nil {
		// Spooled: the task record gets the index once appended.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && res.Receipt == nil; time.Sleep(200 * time.Millisecond) {
			var t api.Task
			if d.c.json(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(res.TaskID), d.c.token, nil, &t) == nil && t.Result != nil {
				res.Receipt = t.Result.Receipt
			}
		}
	}
	var r *ledger.Receipt
	if res.Receipt != nil {
		var p ledger.ReceiptProof
		if err := d.c.json(ctx, http.MethodGet, fmt.Sprintf("/v1/ledger/receipts/%d", res.Receipt.Index), d.c.token, nil, &p); err != nil {
			got = err.Error()
		} else if env, err := ledger.DecodeEnvelope(p.Envelope); err != nil {
			got = err.Error()
		} else {
			var rc ledger.Receipt
			if err := json.Unmarshal(env.Payload, &rc); err != nil || rc.TaskID != res.TaskID {
				got = fmt.Sprintf("receipt %d is task %s's", res.Receipt.Index, rc.TaskID)
			} else {
				got, r = rc.Outcome, &rc
			}
		}
	}
	d.check(drillCheck{Case: tc.name, Check: "receipt", Want: tc.outcome, Got: got})
	if r == nil {
		return
	}
	if tc.dest != "" {
		contacted := slices.Contains(r.Destinations, tc.dest)
		want, got := "contacted "+tc.dest, "not contacted"
		if tc.clause != "" {
			want, got = "refused "+tc.dest+" by "+tc.clause+", not contacted", "not in blocked_attempts"
			for _, b := range r.BlockedAttempts {
				if b.Destination == tc.dest && b.Clause == tc.clause {
					got = "refused " + tc.dest + " by " + tc.clause + ", not contacted"
				}
			}
			if contacted {
				got = "contacted " + tc.dest
			}
		} else if contacted {
			got = want
		}
		d.check(drillCheck{Case: tc.name, Check: "destination", Want: want, Got: got})
	}
	if tc.egress {
		d.check(drillCheck{Case: tc.name, Check: "egress", Want: fmt.Sprintf("out=%d in=%d", tc.egressOut, tc.egressIn),
			Got: fmt.Sprintf("out=%d in=%d", r.EgressBytesOut, r.EgressBytesIn)})
	}
}
