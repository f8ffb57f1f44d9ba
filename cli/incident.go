package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leash-dev/leash/api"
)

// runIncident: `leash incident open|list|report|step|close` (docs/runbook.md).
func runIncident(ctx context.Context, env *Env, args []string) error {
	if stop, err := subUsage(env, args, "incident open --title T --owner O [--id ID] [--detected RFC3339] [--time-box STEP=DURATION]... [--step-owner STEP=NAME]... | list [--open] | report ID [--json] | step ID STEP [--detail TEXT] | close ID [--reason TEXT]"); stop {
		return err
	}
	c := newClient(env)
	switch args[0] {
	case "open":
		fs := flags(env, "incident open", "incident open --title T --owner O [--id ID] [--detected RFC3339] [--time-box STEP=DURATION]... [--step-owner STEP=NAME]... [--json]")
		var req api.IncidentRequest
		fs.StringVar(&req.Title, "title", "", "what happened")
		fs.StringVar(&req.Owner, "owner", "", "who leads the response (owns every step unless --step-owner)")
		fs.StringVar(&req.ID, "id", "", "the incident's id (default: made up)")
		detected := fs.String("detected", "", "when it was detected, RFC 3339 (default: now)")
		var boxes, owners multi
		fs.Var(&boxes, "time-box", "a step's time box from the opening, as STEP=DURATION (freeze, revoke, block, blast_radius, restore)")
		fs.Var(&owners, "step-owner", "a step's owner, as STEP=NAME")
		asJSON := fs.Bool("json", false, "print JSON")
		if _, err := parseN(fs, args[1:], 0); err != nil {
			return err
		}
		if *detected != "" {
			t, err := time.Parse(time.RFC3339, *detected)
			if err != nil {
				return fmt.Errorf("--detected: %w", err)
			}
			req.DetectedAt = &t
		}
		for _, b := range boxes {
			k, v, ok := strings.Cut(b, "=")
			d, err := time.ParseDuration(v)
			if !ok || err != nil {
				return fmt.Errorf("--time-box %q: want STEP=DURATION", b)
			}
			if req.TimeBoxes == nil {
				req.TimeBoxes = map[string]int64{}
			}
			req.TimeBoxes[k] = int64(d.Seconds())
		}
		for _, o := range owners {
			k, v, ok := strings.Cut(o, "=")
			if !ok {
				return fmt.Errorf("--step-owner %q: want STEP=NAME", o)
			}
			if req.Owners == nil {
				req.Owners = map[string]string{}
			}
			req.Owners[k] = v
		}
		var inc api.Incident
		if err := c.json(ctx, http.MethodPost, "/v1/incidents", c.token, req, &inc); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, inc)
		}
		fmt.Fprintln(env.Stdout, inc.ID)
		return nil
	case "list":
		fs := flags(env, "incident list", "incident list [--open] [--json]")
		open := fs.Bool("open", false, "open incidents only")
		asJSON := fs.Bool("json", false, "print JSON")
		if _, err := parseN(fs, args[1:], 0); err != nil {
			return err
		}
		var l struct {
			Incidents []api.Incident `json:"incidents"`
		}
		if err := c.json(ctx, http.MethodGet, "/v1/incidents?open="+fmt.Sprint(*open), c.token, nil, &l); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, l)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tOPEN\tOWNER\tOPENED\tCONTAINED_MS\tTITLE")
		for _, inc := range l.Incidents {
			ttc := "-"
			if inc.TimeToContainmentMs != nil {
				ttc = fmt.Sprint(*inc.TimeToContainmentMs)
			}
			fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\n", inc.ID, inc.Open, inc.Owner, inc.OpenedAt.Format(time.RFC3339), ttc, inc.Title)
		}
		return tw.Flush()
	case "report":
		fs := flags(env, "incident report", "incident report ID [--json]")
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parseN(fs, args[1:], 1)
		if err != nil {
			return err
		}
		var inc api.Incident
		if err := c.json(ctx, http.MethodGet, "/v1/incidents/"+url.PathEscape(pos[0]), c.token, nil, &inc); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, inc)
		}
		return writeReport(env.Stdout, &inc)
	case "step":
		fs := flags(env, "incident step", "incident step ID STEP [--detail TEXT] [--json]  (STEP: freeze, revoke, block, blast_radius, restore)")
		var req api.StepRequest
		fs.StringVar(&req.Detail, "detail", "", "what was done")
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parseN(fs, args[1:], 2)
		if err != nil {
			return err
		}
		var inc api.Incident
		if err := c.json(ctx, http.MethodPost, "/v1/incidents/"+url.PathEscape(pos[0])+"/steps/"+url.PathEscape(pos[1]), c.token, req, &inc); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, inc)
		}
		fmt.Fprintf(env.Stdout, "%s: %s done\n", inc.ID, pos[1])
		return nil
	case "close":
		fs := flags(env, "incident close", "incident close ID [--reason TEXT] [--json]")
		var req api.RunbookAction
		fs.StringVar(&req.Reason, "reason", "", "why it is closed")
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parseN(fs, args[1:], 1)
		if err != nil {
			return err
		}
		var inc api.Incident
		if err := c.json(ctx, http.MethodPost, "/v1/incidents/"+url.PathEscape(pos[0])+"/close", c.token, req, &inc); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, inc)
		}
		fmt.Fprintln(env.Stdout, "closed", inc.ID)
		return nil
	}
	return &exitError{code: 2, msg: fmt.Sprintf("incident: unknown subcommand %q (open, list, report, step, close)", args[0])}
}

// writeReport prints an incident's timeline: detection, each action with
// who and when, time to containment, what was affected, the steps.
func writeReport(w io.Writer, inc *api.Incident) error {
	state := "open"
	if !inc.Open {
		state = "closed " + inc.ClosedAt.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "incident %s: %s (%s)\nowner %s; opened by %s\n", inc.ID, inc.Title, state, inc.Owner, inc.OpenedBy)
	fmt.Fprintf(w, "detected   %s\n", inc.DetectedAt.Format(time.RFC3339Nano))
	if inc.TimeToContainmentMs != nil {
		fmt.Fprintf(w, "contained  %s (%d ms after detection)\n", inc.ContainedAt.Format(time.RFC3339Nano), *inc.TimeToContainmentMs)
	} else {
		fmt.Fprintln(w, "contained  not yet")
	}
	fmt.Fprintln(w, "\ntimeline:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tKIND\tBY\tDETAIL\tREASON")
	revoked := 0
	for _, e := range inc.Timeline {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339Nano), e.Kind, e.By, e.Detail, e.Reason)
		if e.Kind == "revoke" || e.Kind == "freeze" {
			revoked += e.Count
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if inc.Dropped > 0 {
		fmt.Fprintf(w, "(%d later actions not kept in the timeline)\n", inc.Dropped)
	}
	fmt.Fprintf(w, "\naffected: %d leases revoked\n", revoked)
	fmt.Fprintln(w, "\nsteps:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tOWNER\tDUE\tDONE\tBY")
	for _, s := range inc.Steps {
		done := "-"
		if s.DoneAt != nil {
			done = s.DoneAt.Format(time.RFC3339)
		} else if s.Overdue {
			done = "OVERDUE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Owner, s.Due.Format(time.RFC3339), done, s.DoneBy)
	}
	return tw.Flush()
}
