package cli

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/leash-dev/leash/api"
)

// runTenants: `leash tenants list` shows the active bundle's tenants (an
// admin's, operator's or auditor's credential in LEASH_TOKEN).
func runTenants(ctx context.Context, env *Env, args []string) error {
	if stop, err := subUsage(env, args, "tenants list [--json]  (tenants are defined in the policy bundle; their keys: leash keys)"); stop {
		return err
	}
	if args[0] != "list" {
		return &exitError{code: 2, msg: fmt.Sprintf("tenants: unknown subcommand %q (list)", args[0])}
	}
	fs := flags(env, "tenants list", "tenants list [--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseN(fs, args[1:], 0); err != nil {
		return err
	}
	c := newClient(env)
	var l api.TenantList
	if err := c.json(ctx, http.MethodGet, "/v1/tenants", c.token, nil, &l); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, l)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tPROFILES\tWEIGHT\tMODULES (MAX)\tMODULE BYTES (MAX)\tAPI KEYS")
	for _, t := range l.Tenants {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", t.Name, strings.Join(t.Profiles, ","), t.Weight, t.ModuleMaxCount, t.ModuleMaxBytes, t.APIKeys)
	}
	return tw.Flush()
}
