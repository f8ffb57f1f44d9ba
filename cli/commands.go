package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/leash-dev/leash/api"
)

func runLease(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "lease", "lease --tenant T (--intent I | --profile P) [--ttl SECONDS] [--class interactive|bulk] [--session S] [--env dev|stage|prod] [--json]")
	var req api.LeaseRequest
	fs.StringVar(&req.Tenant, "tenant", "demo", "tenant")
	fs.StringVar(&req.Intent, "intent", "", "task intent (read_docs, transform_content, call_api, …)")
	fs.StringVar(&req.Profile, "profile", "", "profile (instead of an intent)")
	fs.Int64Var(&req.TTLSeconds, "ttl", 0, "lease TTL in seconds (default: the profile's max, at most 15 minutes)")
	fs.StringVar(&req.Class, "class", "interactive", "interactive or bulk")
	fs.StringVar(&req.Session, "session", "", "session id for session KV")
	fs.StringVar(&req.Env, "env", "", "policy environment: dev, stage or prod (default prod)")
	asJSON := fs.Bool("json", false, "print the whole lease as JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if req.Intent == "" && req.Profile == "" {
		req.Intent = "read_docs"
	}
	l, err := newClient(env).lease(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, l)
	}
	fmt.Fprintln(env.Stdout, l.Token)
	return nil
}

func runRevoke(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "revoke", "revoke LEASE_ID [--reason TEXT]")
	reason := fs.String("reason", "", "why (kept in the lease record)")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	c := newClient(env)
	if err := c.needAdmin(); err != nil {
		return err
	}
	path := "/v1/leases/" + url.PathEscape(pos[0])
	if *reason != "" {
		path += "?reason=" + url.QueryEscape(*reason)
	}
	if err := c.do(ctx, http.MethodDelete, path, c.token, "", nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "revoked", pos[0])
	return nil
}

func printJSON(env *Env, v any) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
