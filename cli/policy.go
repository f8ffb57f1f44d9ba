package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/policy"
)

// The policy lifecycle on the command line (docs/policy.md,
// "Lifecycle"): check, lint and diff work on files (and stored
// digests); push, promote, canary and rollback change an environment
// through a node; envs and history read them.

const policyUsage = "policy check FILE | lint FILE|DIGEST | diff A B | push FILE [--env dev] | promote ENV | canary set PERCENT|promote|abort|status | rollback ENV | history [ENV] | envs"

var policySubs = map[string]func(context.Context, *Env, []string) error{
	"check":    policyCheck,
	"lint":     policyLint,
	"diff":     policyDiff,
	"push":     policyPush,
	"promote":  policyPromote,
	"canary":   policyCanary,
	"rollback": policyRollback,
	"history":  policyHistory,
	"envs":     policyEnvs,
}

func runPolicy(ctx context.Context, env *Env, args []string) error {
	if stop, err := subUsage(env, args, policyUsage); stop {
		return err
	}
	sub, ok := policySubs[args[0]]
	if !ok {
		return &exitError{code: 2, msg: fmt.Sprintf("policy: unknown subcommand %q (%s)", args[0], policyUsage)}
	}
	return sub(ctx, env, args[1:])
}

// policyCheck: `leash policy check FILE` validates offline.
func policyCheck(_ context.Context, env *Env, args []string) error {
	fs := flags(env, "policy check", "policy check FILE")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	b, err := readBundleFile(env, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, b.Digest())
	return nil
}

// readBundleFile parses a bundle file, printing every validation error
// as FILE:line N: field: message.
func readBundleFile(env *Env, path string) (*policy.Bundle, error) {
	src, err := readSource(path)
	if err != nil {
		return nil, err
	}
	b, err := policy.Parse(src)
	if err != nil {
		return nil, fieldErrors(env, path, err)
	}
	return b, nil
}

func readSource(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, policy.MaxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(src) > policy.MaxBundleBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, policy.MaxBundleBytes)
	}
	return src, nil
}

func fieldErrors(env *Env, path string, err error) error {
	var ve *policy.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			fmt.Fprintf(env.Stderr, "%s:%s\n", path, fe.String())
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %d error(s)", path, len(ve.Errors))}
	}
	return err
}

// bundleArg resolves a diff or lint argument: a file, a digest
// (sha256:…) stored in the cluster, or an environment's digest (dev,
// stage, prod) when no file has that name.
func bundleArg(ctx context.Context, env *Env, arg string) (b *policy.Bundle, src []byte, err error) {
	if _, serr := os.Stat(arg); serr == nil || (!strings.HasPrefix(arg, "sha256:") && !policy.ValidEnv(arg)) {
		src, err := readSource(arg)
		if err != nil {
			return nil, nil, err
		}
		b, err := policy.Parse(src)
		if err != nil {
			return nil, nil, fieldErrors(env, arg, err)
		}
		return b, src, nil
	}
	c := newClient(env)
	d := arg
	if policy.ValidEnv(arg) {
		var e api.PolicyEnv
		if err := c.json(ctx, http.MethodGet, "/v1/policy/envs/"+arg, c.token, nil, &e); err != nil {
			return nil, nil, err
		}
		d = e.Digest
	}
	var pb api.PolicyBundle
	if err := c.json(ctx, http.MethodGet, "/v1/policy/bundles/"+url.PathEscape(d), c.token, nil, &pb); err != nil {
		return nil, nil, err
	}
	b, err = policy.FromCanonical([]byte(pb.Canonical))
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", d, err)
	}
	if b.Digest() != d {
		return nil, nil, fmt.Errorf("the node answered a bundle with digest %s for %s", b.Digest(), d)
	}
	return b, []byte(pb.Source), nil
}

// policyLint: `leash policy lint FILE|DIGEST` prints warnings about
// risky but valid bundles; --strict exits 1 when there are any.
func policyLint(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy lint", "policy lint FILE|DIGEST|ENV [--json] [--strict]")
	asJSON := fs.Bool("json", false, "print the warnings as JSON")
	strict := fs.Bool("strict", false, "exit 1 when there are warnings")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	b, src, err := bundleArg(ctx, env, pos[0])
	if err != nil {
		return err
	}
	ws := policy.Lint(b)
	if src != nil {
		if w, err := policy.LintSource(src); err == nil {
			ws = w
		}
	}
	if *asJSON {
		if ws == nil {
			ws = []policy.Warning{}
		}
		if err := printJSON(env, map[string]any{"digest": b.Digest(), "warnings": ws}); err != nil {
			return err
		}
	} else {
		for _, w := range ws {
			fmt.Fprintf(env.Stdout, "%s:%s\n", pos[0], w.String())
		}
		fmt.Fprintf(env.Stderr, "%s: %d warning(s)\n", pos[0], len(ws))
	}
	if *strict && len(ws) > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// policyDiff: `leash policy diff A B` prints what changes from A to B.
func policyDiff(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy diff", "policy diff A B [--json]  (each a file, a digest, or dev|stage|prod)")
	asJSON := fs.Bool("json", false, "print the changes as JSON")
	pos, err := parseN(fs, args, 2)
	if err != nil {
		return err
	}
	a, _, err := bundleArg(ctx, env, pos[0])
	if err != nil {
		return err
	}
	b, _, err := bundleArg(ctx, env, pos[1])
	if err != nil {
		return err
	}
	changes := policy.Diff(a, b)
	if *asJSON {
		if changes == nil {
			changes = []policy.Change{}
		}
		return printJSON(env, map[string]any{"from": a.Digest(), "to": b.Digest(), "changes": changes})
	}
	fmt.Fprintf(env.Stdout, "--- %s\n+++ %s\n%s", a.Digest(), b.Digest(), policy.FormatDiff(changes))
	return nil
}

// changeFlags are the flags every change shares.
type changeFlags struct {
	override  bool
	reason    string
	ifVersion int64
	asJSON    bool
}

func (cf *changeFlags) add(fs *flag.FlagSet, override bool) {
	if override {
		fs.BoolVar(&cf.override, "override", false, "skip the gate (admin only; needs --reason, which is recorded)")
	}
	fs.StringVar(&cf.reason, "reason", "", "why (kept in the history)")
	fs.Int64Var(&cf.ifVersion, "if-version", -1, "apply only if the environment is at this version (refused with policy_conflict otherwise)")
	fs.BoolVar(&cf.asJSON, "json", false, "print the change as JSON")
}

func (cf *changeFlags) version() *uint64 {
	if cf.ifVersion < 0 {
		return nil
	}
	v := uint64(cf.ifVersion)
	return &v
}

func printChange(env *Env, asJSON bool, c *api.PolicyChange) error {
	if asJSON {
		return printJSON(env, c)
	}
	line := fmt.Sprintf("%s %s #%d: %s", c.Env, c.Action, c.Seq, c.Digest)
	if c.Previous != "" && c.Previous != c.Digest {
		line += " (was " + c.Previous + ")"
	}
	if c.CanaryDigest != "" {
		line += fmt.Sprintf(", canary %s at %d%%", c.CanaryDigest, c.CanaryPercent)
	}
	fmt.Fprintln(env.Stdout, line)
	return nil
}

// policyPush: `leash policy push FILE --env dev`.
func policyPush(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy push", "policy push FILE [--env dev] [--override --reason TEXT] [--if-version N] [--json]")
	envName := fs.String("env", "dev", "environment (stage and prod need --override)")
	var cf changeFlags
	cf.add(fs, true)
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	if _, err := readBundleFile(env, pos[0]); err != nil {
		return err
	}
	src, err := readSource(pos[0])
	if err != nil {
		return err
	}
	q := url.Values{}
	if cf.override {
		q.Set("override", "true")
	}
	if cf.reason != "" {
		q.Set("reason", cf.reason)
	}
	if v := cf.version(); v != nil {
		q.Set("if_version", strconv.FormatUint(*v, 10))
	}
	path := "/v1/policy/envs/" + url.PathEscape(*envName)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	c := newClient(env)
	var out api.PolicyChange
	if err := c.do(ctx, http.MethodPut, path, c.token, "application/yaml", bytes.NewReader(src), &out); err != nil {
		return err
	}
	return printChange(env, cf.asJSON, &out)
}

// policyPromote: `leash policy promote stage|prod`.
func policyPromote(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy promote", "policy promote stage|prod [--from ENV] [--digest D] [--override --reason TEXT] [--if-version N] [--json]")
	var req api.PromoteRequest
	fs.StringVar(&req.From, "from", "", "environment to copy from (default: the one before)")
	fs.StringVar(&req.Digest, "digest", "", "digest to promote (default: the one --from points at)")
	var cf changeFlags
	cf.add(fs, true)
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	req.Override, req.Reason, req.IfVersion = cf.override, cf.reason, cf.version()
	c := newClient(env)
	var out api.PolicyChange
	if err := c.json(ctx, http.MethodPost, "/v1/policy/envs/"+url.PathEscape(pos[0])+"/promote", c.token, req, &out); err != nil {
		return err
	}
	return printChange(env, cf.asJSON, &out)
}

// policyRollback: `leash policy rollback prod`.
func policyRollback(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy rollback", "policy rollback ENV [--reason TEXT] [--if-version N] [--json]")
	var cf changeFlags
	cf.add(fs, false)
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	c := newClient(env)
	var out api.PolicyChange
	req := api.RollbackRequest{Reason: cf.reason, IfVersion: cf.version()}
	if err := c.json(ctx, http.MethodPost, "/v1/policy/envs/"+url.PathEscape(pos[0])+"/rollback", c.token, req, &out); err != nil {
		return err
	}
	return printChange(env, cf.asJSON, &out)
}

// policyCanary: `leash policy canary set N | promote | abort | status`.
func policyCanary(ctx context.Context, env *Env, args []string) error {
	const usage = "policy canary set PERCENT [--digest D] [--abort-above POINTS] [--window SECONDS] [--min-tasks N] | promote | abort [--reason TEXT] | status [--json]"
	if stop, err := subUsage(env, args, usage); stop {
		return err
	}
	c := newClient(env)
	var cf changeFlags
	switch args[0] {
	case "set":
		fs := flags(env, "policy canary set", "policy canary set PERCENT [--digest D] [--abort-above POINTS] [--window SECONDS] [--min-tasks N] [--override --reason TEXT] [--json]")
		var req api.CanaryRequest
		fs.StringVar(&req.Digest, "digest", "", "canary digest (default: the running canary's, else stage's)")
		fs.IntVar(&req.AbortAbove, "abort-above", 0, "abort automatically when the canary's bad-outcome rate exceeds stable's by this many percentage points (0: off)")
		fs.IntVar(&req.WindowSeconds, "window", 0, "health window in seconds (default 300)")
		fs.IntVar(&req.MinTasks, "min-tasks", 0, "canary tasks in the window before the automatic abort may fire (default 20)")
		cf.add(fs, true)
		pos, err := parseN(fs, args[1:], 1)
		if err != nil {
			return err
		}
		pct, err := strconv.Atoi(strings.TrimSuffix(pos[0], "%"))
		if err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("policy canary set: %q is not a percentage", pos[0])}
		}
		req.Percent = pct
		req.Override, req.Reason, req.IfVersion = cf.override, cf.reason, cf.version()
		var out api.PolicyChange
		if err := c.json(ctx, http.MethodPut, "/v1/policy/canary", c.token, req, &out); err != nil {
			return err
		}
		return printChange(env, cf.asJSON, &out)
	case "promote", "abort":
		fs := flags(env, "policy canary "+args[0], "policy canary "+args[0]+" [--reason TEXT] [--if-version N] [--json]")
		cf.add(fs, false)
		if _, err := parseN(fs, args[1:], 0); err != nil {
			return err
		}
		var out api.PolicyChange
		req := api.RollbackRequest{Reason: cf.reason, IfVersion: cf.version()}
		if err := c.json(ctx, http.MethodPost, "/v1/policy/canary/"+args[0], c.token, req, &out); err != nil {
			return err
		}
		return printChange(env, cf.asJSON, &out)
	case "status":
		fs := flags(env, "policy canary status", "policy canary status [--json]")
		asJSON := fs.Bool("json", false, "print JSON")
		if _, err := parseN(fs, args[1:], 0); err != nil {
			return err
		}
		var st api.CanaryStatus
		if err := c.json(ctx, http.MethodGet, "/v1/policy/canary", c.token, nil, &st); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, st)
		}
		if st.Canary == nil {
			fmt.Fprintf(env.Stdout, "no canary; prod is %s\n", st.Stable)
			return nil
		}
		fmt.Fprintf(env.Stdout, "prod stable %s, canary %s at %d%%", st.Stable, st.Canary.Digest, st.Canary.Percent)
		if st.Canary.AbortAbove > 0 {
			fmt.Fprintf(env.Stdout, ", automatic abort above +%d points", st.Canary.AbortAbove)
		}
		fmt.Fprintf(env.Stdout, "\nhealth over the last %ds on %s:\n", st.Health.WindowSeconds, st.Health.Node)
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\tTASKS\tBAD\tBAD %\tOUTCOMES\tBLOCKED")
		for _, s := range []struct {
			name string
			h    api.CanarySide
		}{{"stable", st.Health.Stable}, {"canary", st.Health.Canary}} {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%s\t%s\n", s.name, s.h.Tasks, s.h.Bad, s.h.BadPercent, counts(s.h.Outcomes), counts(s.h.Blocked))
		}
		return tw.Flush()
	}
	return &exitError{code: 2, msg: fmt.Sprintf("policy canary: unknown subcommand %q (set, promote, abort, status)", args[0])}
}

func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

// policyHistory: `leash policy history [ENV]`.
func policyHistory(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy history", "policy history [ENV] [--limit N] [--json]  (ENV default prod)")
	limit := fs.Int("limit", 50, "entries, newest first (at most 1000)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	e := policy.EnvProd
	switch len(pos) {
	case 0:
	case 1:
		e = pos[0]
	default:
		fs.Usage()
		return &exitError{code: 2}
	}
	c := newClient(env)
	var h api.PolicyHistory
	if err := c.json(ctx, http.MethodGet, fmt.Sprintf("/v1/policy/envs/%s/history?limit=%d", url.PathEscape(e), *limit), c.token, nil, &h); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, h)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tACTION\tDIGEST\tPREVIOUS\tCANARY\tBY\tREASON")
	for _, c := range h.Changes {
		canary := "-"
		if c.CanaryDigest != "" {
			canary = fmt.Sprintf("%s@%d%%", short(c.CanaryDigest), c.CanaryPercent)
		}
		reason := c.Reason
		if c.Override {
			reason = "[override] " + reason
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Seq, c.At.Format(time.RFC3339), c.Action, short(c.Digest), short(c.Previous), canary, c.By, reason)
	}
	return tw.Flush()
}

// policyEnvs: `leash policy envs` shows where each environment points.
func policyEnvs(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "policy envs", "policy envs [--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	c := newClient(env)
	var l api.PolicyEnvs
	if err := c.json(ctx, http.MethodGet, "/v1/policy/envs", c.token, nil, &l); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, l)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENV\tDIGEST\tVERSION\tROLLBACK TO\tCANARY")
	for _, e := range l.Envs {
		prev, canary := "-", "-"
		if n := len(e.Previous); n > 0 {
			prev = short(e.Previous[n-1])
		}
		if e.Canary != nil {
			canary = fmt.Sprintf("%s@%d%%", short(e.Canary.Digest), e.Canary.Percent)
		}
		d := e.Digest
		if d == "" {
			d = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Env, d, e.Version, prev, canary)
	}
	return tw.Flush()
}

// short is a digest's first 12 hex digits, for tables.
func short(d string) string {
	if d == "" {
		return "-"
	}
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return d
}
