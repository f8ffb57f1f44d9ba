package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/leash-dev/leash/api"
)

// CodeCanaryUnhealthy is the error `leash runbook restore --promote`
// stops with when the canary is not healthy (docs/runbook.md, "Restore").
const CodeCanaryUnhealthy = "canary_unhealthy"

// restoreReport is what `leash runbook restore` did, for --json.
type restoreReport struct {
	Profile  string             `json:"profile"`
	Digest   string             `json:"digest"`
	Steps    []string           `json:"steps"`
	Thaw     *api.RunbookResult `json:"thaw,omitempty"`
	Unfreeze *api.RunbookResult `json:"unfreeze,omitempty"`
	Canary   api.CanaryStatus   `json:"canary"`
	Healthy  bool               `json:"healthy"`
	Health   string             `json:"health"`
	Promoted bool               `json:"promoted"`
}

// runRestore: `leash runbook restore --profile P --bundle FILE --canary
// 10%` pushes the patched bundle to dev, promotes it to stage, starts it
// as prod's canary at that share, thaws the frozen profile for the
// leases under the canary's digest and reports the canary's health.
// `leash runbook restore --profile P --promote` promotes a healthy
// canary and thaws the profile entirely; an unhealthy one is refused
// (canary_unhealthy).
func runRestore(ctx context.Context, env *Env, args []string) error {
	const use = "runbook restore --profile P (--bundle FILE --canary PERCENT | --promote) [--min-tasks N] [--max-bad-delta POINTS] [--abort-above POINTS] [--reason TEXT] [--incident ID] [--json]"
	fs := flags(env, "runbook restore", use)
	var a api.RunbookAction
	actionFlags(fs, &a)
	profile := fs.String("profile", "", "the frozen profile to restore")
	bundle := fs.String("bundle", "", "the patched policy bundle (YAML)")
	share := fs.String("canary", "", "the canary's share of new prod leases, e.g. 10%")
	promote := fs.Bool("promote", false, "promote the running canary when healthy and thaw the profile entirely")
	minTasks := fs.Int64("min-tasks", 5, "healthy: at least this many canary tasks in the health window")
	maxDelta := fs.Float64("max-bad-delta", 5, "healthy: the canary's bad-outcome share at most this many points above stable's")
	abortAbove := fs.Int("abort-above", 0, "abort the canary automatically above this many points (0: off)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	if *profile == "" || *promote == (*bundle != "") || (*bundle != "") != (*share != "") {
		fs.Usage()
		return &exitError{code: 2}
	}
	c := newClient(env)
	rep := restoreReport{Profile: *profile}
	step := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		rep.Steps = append(rep.Steps, s)
		if !*asJSON {
			fmt.Fprintln(env.Stdout, s)
		}
	}
	q := url.Values{}
	if a.Reason != "" {
		q.Set("reason", a.Reason)
	}
	if a.Incident != "" {
		q.Set("incident", a.Incident)
	}
	health := func() error {
		if err := c.json(ctx, http.MethodGet, "/v1/policy/canary", c.token, nil, &rep.Canary); err != nil {
			return err
		}
		rep.Healthy, rep.Health = canaryHealthy(rep.Canary, *minTasks, *maxDelta)
		return nil
	}
	if !*promote {
		pct, err := strconv.Atoi(strings.TrimSuffix(*share, "%"))
		if err != nil || pct < 1 || pct > 100 {
			return &exitError{code: 2, msg: fmt.Sprintf("runbook restore: --canary %q is not a percentage from 1 to 100", *share)}
		}
		src, err := readSource(*bundle)
		if err != nil {
			return err
		}
		b, err := readBundleFile(env, *bundle)
		if err != nil {
			return err
		}
		rep.Digest = b.Digest()
		reason := a.Reason
		if reason == "" {
			reason = "restore " + *profile
		}
		// dev, then stage: the lifecycle's gates, no override.
		var ch api.PolicyChange
		err = c.do(ctx, http.MethodPut, "/v1/policy/envs/dev?"+url.Values{"reason": {reason}}.Encode(), c.token, "application/yaml", bytes.NewReader(src), &ch)
		if err := unlessUnchanged(err); err != nil {
			return err
		}
		step("pushed %s to dev", rep.Digest)
		err = c.json(ctx, http.MethodPost, "/v1/policy/envs/stage/promote", c.token, api.PromoteRequest{Digest: rep.Digest, Reason: reason}, &ch)
		if err := unlessUnchanged(err); err != nil {
			return err
		}
		step("promoted %s to stage", rep.Digest)
		if err := c.json(ctx, http.MethodPut, "/v1/policy/canary", c.token, api.CanaryRequest{Digest: rep.Digest, Percent: pct, AbortAbove: *abortAbove, Reason: reason}, &ch); err != nil {
			return err
		}
		step("prod's canary is %s at %d%%", rep.Digest, pct)
		q.Set("canary", rep.Digest)
		var th api.RunbookResult
		if err := c.json(ctx, http.MethodDelete, "/v1/runbook/frozen/"+url.PathEscape(*profile)+"?"+q.Encode(), c.token, nil, &th); err != nil {
			return err
		}
		rep.Thaw = &th
		step("profile %s thawed for the canary's leases (index %d, ledger %d, by %s)", *profile, th.Index, th.LedgerIndex, th.By)
		if err := health(); err != nil {
			return err
		}
		step("canary health: %s", rep.Health)
		if *asJSON {
			return printJSON(env, rep)
		}
		return nil
	}
	if err := health(); err != nil {
		return err
	}
	if rep.Canary.Canary == nil {
		return &exitError{code: 1, msg: "runbook restore --promote: no_canary: prod runs no canary"}
	}
	rep.Digest = rep.Canary.Canary.Digest
	if !rep.Healthy {
		if *asJSON {
			_ = printJSON(env, rep)
		}
		return &exitError{code: 1, msg: fmt.Sprintf("runbook restore --promote: %s: %s; not promoted", CodeCanaryUnhealthy, rep.Health)}
	}
	step("canary health: %s", rep.Health)
	var ch api.PolicyChange
	reason := a.Reason
	if reason == "" {
		reason = "restore " + *profile
	}
	if err := c.json(ctx, http.MethodPost, "/v1/policy/canary/promote", c.token, api.RollbackRequest{Reason: reason}, &ch); err != nil {
		return err
	}
	rep.Promoted = true
	step("promoted the canary %s: prod is %s", rep.Digest, ch.Digest)
	var uf api.RunbookResult
	err := c.json(ctx, http.MethodDelete, "/v1/runbook/frozen/"+url.PathEscape(*profile)+"?"+q.Encode(), c.token, nil, &uf)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.e.Code == api.CodeNotFound:
		step("profile %s was not frozen", *profile)
	case err != nil:
		return err
	default:
		rep.Unfreeze = &uf
		step("profile %s thawed (index %d, ledger %d, by %s)", *profile, uf.Index, uf.LedgerIndex, uf.By)
	}
	if *asJSON {
		return printJSON(env, rep)
	}
	return nil
}

// unlessUnchanged: a restore run again finds dev or stage already at
// the bundle (409 policy_unchanged), which is no failure.
func unlessUnchanged(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.e.Code == "policy_unchanged" {
		return nil
	}
	return err
}

// canaryHealthy: the canary has at least minTasks tasks in the window and
// its bad-outcome share is at most maxDelta points above stable's.
func canaryHealthy(st api.CanaryStatus, minTasks int64, maxDelta float64) (bool, string) {
	h := st.Health
	desc := fmt.Sprintf("canary %d tasks, %.1f%% bad; stable %d tasks, %.1f%% bad (over %ds on %s)",
		h.Canary.Tasks, h.Canary.BadPercent, h.Stable.Tasks, h.Stable.BadPercent, h.WindowSeconds, h.Node)
	switch {
	case st.Canary == nil:
		return false, "no canary runs"
	case h.Canary.Tasks < minTasks:
		return false, fmt.Sprintf("%s: fewer than %d canary tasks", desc, minTasks)
	case h.Canary.BadPercent > h.Stable.BadPercent+maxDelta:
		return false, fmt.Sprintf("%s: more than %.1f points above stable", desc, maxDelta)
	}
	return true, desc + ": healthy"
}
