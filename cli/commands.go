package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/policy"
)

func runLease(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "lease", "lease --tenant T (--intent I | --profile P) [--ttl SECONDS] [--class interactive|bulk] [--session S] [--json]")
	var req api.LeaseRequest
	fs.StringVar(&req.Tenant, "tenant", "demo", "tenant")
	fs.StringVar(&req.Intent, "intent", "", "task intent (read_docs, transform_content, call_api, …)")
	fs.StringVar(&req.Profile, "profile", "", "profile (instead of an intent)")
	fs.Int64Var(&req.TTLSeconds, "ttl", 0, "lease TTL in seconds (default: the profile's max, at most 15 minutes)")
	fs.StringVar(&req.Class, "class", "interactive", "interactive or bulk")
	fs.StringVar(&req.Session, "session", "", "session id for session KV")
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

// runPolicy: `leash policy check FILE` validates offline.
func runPolicy(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy", "policy check FILE")
	pos, err := parseN(fs, args, 2)
	if err != nil {
		return err
	}
	if pos[0] != "check" {
		fs.Usage()
		return &exitError{code: 2}
	}
	f, err := os.Open(pos[1])
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := policy.Read(f)
	if err != nil {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			for _, fe := range ve.Errors {
				fmt.Fprintf(env.Stderr, "%s:%s\n", pos[1], fe.String())
			}
			return &exitError{code: 1, msg: fmt.Sprintf("%s: %d error(s)", pos[1], len(ve.Errors))}
		}
		return err
	}
	fmt.Fprintln(env.Stdout, b.Digest())
	return nil
}

func printJSON(env *Env, v any) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
