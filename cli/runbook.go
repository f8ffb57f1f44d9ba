package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leash-dev/leash/api"
)

// The security runbook's containment commands (docs/runbook.md), with
// LEASH_TOKEN an admin's or operator's credential. Each answers once the
// change is in force on every node.

// actionFlags are the flags every runbook action takes.
func actionFlags(fs interface {
	StringVar(*string, string, string, string)
}, a *api.RunbookAction) {
	fs.StringVar(&a.Reason, "reason", "", "why (kept in the record, the event and the incident's timeline)")
	fs.StringVar(&a.Incident, "incident", "", "the incident this action belongs to")
}

func printResult(env *Env, r api.RunbookResult, asJSON bool) error {
	if asJSON {
		return printJSON(env, r)
	}
	switch r.Action {
	case "freeze", "unfreeze":
		fmt.Fprintf(env.Stdout, "%s %s", r.Action, r.Profile)
		if r.Revoked > 0 {
			fmt.Fprintf(env.Stdout, ", %d leases revoked", r.Revoked)
		}
	case "revoke":
		fmt.Fprintf(env.Stdout, "revoked %d leases", r.Revoked)
	default:
		fmt.Fprintf(env.Stdout, "%s: %s", r.Action, strings.Join(r.Changed, " "))
		if len(r.Changed) == 0 {
			fmt.Fprint(env.Stdout, "nothing changed")
		}
	}
	fmt.Fprintf(env.Stdout, " (index %d, by %s", r.Index, r.By)
	if r.Incident != "" {
		fmt.Fprintf(env.Stdout, ", incident %s", r.Incident)
	}
	fmt.Fprintln(env.Stdout, ")")
	return nil
}

// runFreeze: `leash freeze PROFILE [--revoke-live]`.
func runFreeze(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "freeze", "freeze PROFILE [--revoke-live] [--reason TEXT] [--incident ID] [--json]")
	var req api.FreezeRequest
	actionFlags(fs, &req.RunbookAction)
	fs.BoolVar(&req.RevokeLive, "revoke-live", false, "also revoke the profile's live leases (their running tasks end terminated:revoked)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	c := newClient(env)
	var r api.RunbookResult
	if err := c.json(ctx, http.MethodPut, "/v1/runbook/frozen/"+url.PathEscape(pos[0]), c.token, req, &r); err != nil {
		return err
	}
	return printResult(env, r, *asJSON)
}

// runUnfreeze: `leash unfreeze PROFILE`.
func runUnfreeze(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "unfreeze", "unfreeze PROFILE [--reason TEXT] [--incident ID] [--json]")
	var a api.RunbookAction
	actionFlags(fs, &a)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	q := url.Values{}
	if a.Reason != "" {
		q.Set("reason", a.Reason)
	}
	if a.Incident != "" {
		q.Set("incident", a.Incident)
	}
	c := newClient(env)
	var r api.RunbookResult
	if err := c.json(ctx, http.MethodDelete, "/v1/runbook/frozen/"+url.PathEscape(pos[0])+"?"+q.Encode(), c.token, nil, &r); err != nil {
		return err
	}
	return printResult(env, r, *asJSON)
}

// runRevokeAny: `leash revoke LEASE_ID` revokes one lease;
// `leash revoke --tenant/--profile/--session/--digest` every live lease
// the selector matches.
func runRevokeAny(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "revoke", "revoke LEASE_ID [--reason TEXT] | revoke [--tenant T] [--profile P] [--session S] [--digest D] [--reason TEXT] [--incident ID] [--json]")
	var req api.RevokeRequest
	actionFlags(fs, &req.RunbookAction)
	fs.StringVar(&req.Tenant, "tenant", "", "every live lease of this tenant")
	fs.StringVar(&req.Profile, "profile", "", "every live lease of this profile")
	fs.StringVar(&req.Session, "session", "", "every live lease of this session")
	fs.StringVar(&req.PolicyDigest, "digest", "", "every live lease issued under this policy digest")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	selector := req.Tenant != "" || req.Profile != "" || req.Session != "" || req.PolicyDigest != ""
	switch {
	case len(pos) == 1 && !selector && req.Incident == "":
		return runRevoke(ctx, env, args)
	case len(pos) != 0 || !selector:
		fs.Usage()
		return &exitError{code: 2}
	}
	c := newClient(env)
	var r api.RunbookResult
	if err := c.json(ctx, http.MethodPost, "/v1/runbook/revoke", c.token, req, &r); err != nil {
		return err
	}
	return printResult(env, r, *asJSON)
}

// runBlock: `leash block DEST...`; runUnblock: `leash unblock DEST...`.
func runBlock(ctx context.Context, env *Env, args []string) error {
	return changeBlocks(ctx, env, args, "block", "/v1/runbook/blocks")
}

func runUnblock(ctx context.Context, env *Env, args []string) error {
	return changeBlocks(ctx, env, args, "unblock", "/v1/runbook/unblock")
}

func changeBlocks(ctx context.Context, env *Env, args []string, name, path string) error {
	fs := flags(env, name, name+" DESTINATION... [--reason TEXT] [--incident ID] [--json]  (hosts, *.wildcards, IPs, CIDRs)")
	var req api.BlockRequest
	actionFlags(fs, &req.RunbookAction)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return &exitError{code: 2}
	}
	req.Destinations = pos
	c := newClient(env)
	var r api.RunbookResult
	if err := c.json(ctx, http.MethodPost, path, c.token, req, &r); err != nil {
		return err
	}
	return printResult(env, r, *asJSON)
}

// runRunbook: `leash runbook status` lists what is frozen and blocked.
func runRunbook(ctx context.Context, env *Env, args []string) error {
	if stop, err := subUsage(env, args, "runbook status [--json] | blast-radius [--destination D] [--tenant T] [--profile P] [--module M] [--digest D] [--lease L] [--since T] [--until T] [--json|--dot] | restore --profile P (--bundle FILE --canary PERCENT | --promote)"); stop {
		return err
	}
	switch args[0] {
	case "restore":
		return runRestore(ctx, env, args[1:])
	case "blast-radius":
		return runBlastRadius(ctx, env, args[1:])
	case "status":
		fs := flags(env, "runbook status", "runbook status [--json]")
		asJSON := fs.Bool("json", false, "print JSON")
		if _, err := parseN(fs, args[1:], 0); err != nil {
			return err
		}
		c := newClient(env)
		var fr struct {
			Frozen []api.Frozen `json:"frozen"`
		}
		var bl struct {
			Blocks []api.Block `json:"blocks"`
		}
		if err := c.json(ctx, http.MethodGet, "/v1/runbook/frozen", c.token, nil, &fr); err != nil {
			return err
		}
		if err := c.json(ctx, http.MethodGet, "/v1/runbook/blocks", c.token, nil, &bl); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, map[string]any{"frozen": fr.Frozen, "blocks": bl.Blocks})
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tWHAT\tBY\tAT\tINCIDENT\tREASON")
		for _, f := range fr.Frozen {
			what := f.Profile
			if f.ThawDigest != "" {
				what += " (thawed for " + f.ThawDigest + ")"
			}
			fmt.Fprintf(tw, "frozen\t%s\t%s\t%s\t%s\t%s\n", what, f.By, f.At.Format(time.RFC3339), f.Incident, f.Reason)
		}
		for _, b := range bl.Blocks {
			fmt.Fprintf(tw, "blocked\t%s\t%s\t%s\t%s\t%s\n", b.Destination, b.By, b.At.Format(time.RFC3339), b.Incident, b.Reason)
		}
		return tw.Flush()
	}
	return &exitError{code: 2, msg: fmt.Sprintf("runbook: unknown subcommand %q (status, blast-radius, restore)", args[0])}
}

// runBlastRadius: `leash runbook blast-radius` prints what the filter's
// verified receipts touched.
func runBlastRadius(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "runbook blast-radius", "runbook blast-radius [--destination D] [--tenant T] [--profile P] [--module M] [--digest D] [--lease L] [--since RFC3339] [--until RFC3339] [--json|--dot]")
	q := url.Values{}
	for _, f := range [][2]string{{"destination", "a host, host:port, IP or CIDR the tasks contacted"}, {"tenant", "a tenant"}, {"profile", "a profile"},
		{"module", "a module digest"}, {"digest", "a policy digest"}, {"lease", "a lease id"}, {"since", "tasks that ended at or after (RFC 3339)"}, {"until", "tasks that ended at or before (RFC 3339)"}} {
		name := f[0]
		fs.Func(name, f[1], func(v string) error {
			key := name
			if key == "digest" {
				key = "policy_digest"
			}
			q.Set(key, v)
			return nil
		})
	}
	asJSON := fs.Bool("json", false, "print the whole answer as JSON")
	asDOT := fs.Bool("dot", false, "print the map tenant → profile → module → destination as Graphviz DOT")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	c := newClient(env)
	if *asDOT {
		q.Set("format", "dot")
		return c.do(ctx, http.MethodGet, "/v1/runbook/blast-radius?"+q.Encode(), c.token, "", nil, rawOut{env.Stdout})
	}
	var br api.BlastRadius
	if err := c.json(ctx, http.MethodGet, "/v1/runbook/blast-radius?"+q.Encode(), c.token, nil, &br); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, br)
	}
	fmt.Fprintf(env.Stdout, "%d receipts matched, %d verified against the checkpoint of size %d, %d pending; egress %d B out, %d B in; %d blocked attempts\n",
		br.Matched, br.Verified, br.Checkpoint, br.Pending, br.EgressBytesOut, br.EgressBytesIn, br.Blocked)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "END\tTASK\tTENANT\tLEASE\tPROFILE\tOUTCOME\tDESTINATIONS")
	for _, t := range br.Tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.End.Format(time.RFC3339), t.TaskID, t.Tenant, t.Lease, t.Profile, t.Outcome, strings.Join(t.Destinations, " "))
	}
	return tw.Flush()
}
