package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/leash-dev/leash/api"
)

// runKeys: `leash keys create|list|revoke` manage API keys, with
// LEASH_TOKEN an admin's or operator's credential.
func runKeys(ctx context.Context, env *Env, args []string) error {
	if stop, err := subUsage(env, args, "keys create --role admin|operator|auditor|tenant [--tenant T] [--name N] [--ttl DURATION] | list [--tenant T] | revoke KEY_ID"); stop {
		return err
	}
	c := newClient(env)
	switch args[0] {
	case "create":
		fs := flags(env, "keys create", "keys create --role ROLE [--tenant T] [--name N] [--ttl DURATION] [--json]")
		var req api.APIKeyRequest
		fs.StringVar(&req.Role, "role", "tenant", "admin, operator, auditor or tenant")
		fs.StringVar(&req.Tenant, "tenant", "", "the tenant of a tenant key")
		fs.StringVar(&req.Name, "name", "", "a label for people")
		ttl := fs.Duration("ttl", 0, "expire after this long (default: never)")
		asJSON := fs.Bool("json", false, "print the whole answer as JSON")
		if _, err := parseN(fs, args[1:], 0); err != nil {
			return err
		}
		req.TTLSeconds = int64(ttl.Seconds())
		var k api.APIKey
		if err := c.json(ctx, http.MethodPost, "/v1/apikeys", c.token, req, &k); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, k)
		}
		fmt.Fprintln(env.Stdout, k.Key)
		fmt.Fprintf(env.Stderr, "key %s (%s%s): the secret above is shown once\n", k.KeyID, k.Role, tenantSuffix(k.Tenant))
		return nil
	case "list":
		fs := flags(env, "keys list", "keys list [--tenant T] [--json]")
		tenant := fs.String("tenant", "", "a tenant's keys (default: the keys of admins, operators and auditors)")
		asJSON := fs.Bool("json", false, "print JSON")
		if _, err := parseN(fs, args[1:], 0); err != nil {
			return err
		}
		var l api.APIKeyList
		if err := c.json(ctx, http.MethodGet, "/v1/apikeys?tenant="+url.QueryEscape(*tenant), c.token, nil, &l); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, l)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY_ID\tROLE\tTENANT\tNAME\tCREATED\tEXPIRES")
		for _, k := range l.Keys {
			exp := "never"
			if k.ExpiresAt != nil {
				exp = k.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.KeyID, k.Role, k.Tenant, k.Name, k.CreatedAt.Format(time.RFC3339), exp)
		}
		return tw.Flush()
	case "revoke":
		fs := flags(env, "keys revoke", "keys revoke KEY_ID")
		pos, err := parseN(fs, args[1:], 1)
		if err != nil {
			return err
		}
		if err := c.do(ctx, http.MethodDelete, "/v1/apikeys/"+url.PathEscape(pos[0]), c.token, "", nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "revoked", pos[0])
		return nil
	}
	return &exitError{code: 2, msg: fmt.Sprintf("keys: unknown subcommand %q (create, list, revoke)", args[0])}
}

func tenantSuffix(t string) string {
	if t == "" {
		return ""
	}
	return " of tenant " + t
}
