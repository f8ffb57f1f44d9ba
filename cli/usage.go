package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
)

type usageReport struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Currency string `json:"currency"`
	Rows     []struct {
		Tenant  string             `json:"tenant"`
		Profile string             `json:"profile"`
		Day     string             `json:"day"`
		Usage   map[string]int64   `json:"usage"`
		Cost    map[string]float64 `json:"cost"`
	} `json:"rows"`
}

type budgetReport struct {
	Tenant     string `json:"tenant"`
	Day        string `json:"day"`
	Source     string `json:"source"`
	Dimensions []struct {
		Name      string `json:"name"`
		Used      int64  `json:"used"`
		Limit     int64  `json:"limit"`
		Percent   int    `json:"percent"`
		Warned    bool   `json:"warned"`
		Exhausted bool   `json:"exhausted"`
	} `json:"dimensions"`
}

const usageLine = "usage [--tenant T] [--profile P] [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--group-by tenant,profile,day] [--json]\n       leash usage budget TENANT [--json] | budget set|raise TENANT [--cpu-ms N] [--egress-bytes N] [--tool-calls N] [--tasks N] | budget reset TENANT"

// runUsage: `leash usage` prints the replicated usage counters and cost
// (GET /v1/usage); `leash usage budget` reads or changes a tenant's
// envelope (docs/budgets.md).
func runUsage(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
		fmt.Fprintln(env.Stderr, "usage: leash "+usageLine)
		return nil
	}
	if len(args) > 0 && args[0] == "budget" {
		return runBudget(ctx, env, args[1:])
	}
	fs := flags(env, "usage", usageLine)
	tenant := fs.String("tenant", "", "one tenant (a tenant's key: its own)")
	profile := fs.String("profile", "", "one profile")
	from := fs.String("from", "", "first UTC day (default: 29 days before --to)")
	to := fs.String("to", "", "last UTC day (default: today)")
	group := fs.String("group-by", "", "sum over these: tenant, profile, day (default all)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"tenant": *tenant, "profile": *profile, "from": *from, "to": *to, "group_by": *group} {
		if v != "" {
			q.Set(k, v)
		}
	}
	c := newClient(env)
	var rep usageReport
	if err := c.json(ctx, http.MethodGet, "/v1/usage?"+q.Encode(), c.token, nil, &rep); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, rep)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "DAY\tTENANT\tPROFILE\tTASKS\tCPU MS\tEGRESS BYTES\tTOOL CALLS\tCOST %s\n", rep.Currency)
	for _, r := range rep.Rows {
		cost := "-"
		if r.Cost != nil {
			cost = fmt.Sprintf("%.6f", r.Cost["total"])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", dash(r.Day), dash(r.Tenant), dash(r.Profile), r.Usage["tasks"], r.Usage["cpu_ms"],
			r.Usage["egress_bytes_in"]+r.Usage["egress_bytes_out"], r.Usage["tool_calls"], cost)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

func runBudget(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, "usage: leash "+usageLine)
		return &exitError{code: 2}
	}
	c := newClient(env)
	var rep budgetReport
	switch args[0] {
	case "set", "raise":
		fs := flags(env, "usage budget "+args[0], usageLine)
		cpu := fs.Int64("cpu-ms", 0, "CPU ms a day (0: unlimited)")
		eg := fs.Int64("egress-bytes", 0, "egress bytes a day (0: unlimited)")
		tools := fs.Int64("tool-calls", 0, "tool calls a day (0: unlimited)")
		tasks := fs.Int64("tasks", 0, "tasks a day (0: unlimited)")
		pos, err := parseN(fs, args[1:], 1)
		if err != nil {
			return err
		}
		body := map[string]any{"mode": args[0], "limits": map[string]int64{"cpu_ms_per_day": *cpu, "egress_bytes_per_day": *eg, "tool_calls_per_day": *tools, "tasks_per_day": *tasks}}
		if err := c.json(ctx, http.MethodPut, "/v1/budgets/"+url.PathEscape(pos[0]), c.token, body, &rep); err != nil {
			return err
		}
	case "reset":
		fs := flags(env, "usage budget reset", usageLine)
		pos, err := parseN(fs, args[1:], 1)
		if err != nil {
			return err
		}
		if err := c.json(ctx, http.MethodDelete, "/v1/budgets/"+url.PathEscape(pos[0]), c.token, nil, &rep); err != nil {
			return err
		}
	default:
		fs := flags(env, "usage budget", usageLine)
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parseN(fs, args, 1)
		if err != nil {
			return err
		}
		if err := c.json(ctx, http.MethodGet, "/v1/budgets/"+url.PathEscape(pos[0]), c.token, nil, &rep); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, rep)
		}
	}
	fmt.Fprintf(env.Stdout, "tenant %s, %s (UTC), envelope from %s\n", rep.Tenant, rep.Day, rep.Source)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIMENSION\tUSED\tLIMIT\tPERCENT\tSTATE")
	for _, d := range rep.Dimensions {
		state, limit := "ok", fmt.Sprint(d.Limit)
		if d.Limit == 0 {
			limit = "unlimited"
		}
		if d.Warned {
			state = "warned"
		}
		if d.Exhausted {
			state = "exhausted"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d%%\t%s\n", d.Name, d.Used, limit, d.Percent, state)
	}
	return tw.Flush()
}
