package policy

import (
	"fmt"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Lint warning codes: stable, for scripts and CI (docs/policy.md, "Lint").
const (
	LintWildcardEgress   = "wildcard_egress"      // an allow rule for *.domain: every subdomain, present and future
	LintUnlimitedEgress  = "unlimited_egress"     // an allow rule with neither a rate nor a byte limit
	LintNoResponseCap    = "no_response_cap"      // egress allowed with no max_response_bytes chosen (the 10 MiB default applies)
	LintLongLeaseTTL     = "long_lease_ttl"       // max_lease_ttl above LongLeaseTTL
	LintEveryProfile     = "tenant_every_profile" // a tenant allowed every profile of a bundle with more than one
	LintUnlimitedBudget  = "unlimited_budget"     // a tenant with no daily budget at all
	LintEveryEnvironment = "tenant_every_env"     // a tenant allowed dev and stage as well as prod
)

// LongLeaseTTL is the lease TTL above which lint warns.
const LongLeaseTTL = time.Hour

// Warning is one risk lint found: valid, but worth a second look.
type Warning struct {
	Code    string `json:"code"`
	Field   string `json:"field"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (w Warning) String() string {
	s := ""
	if w.Line > 0 {
		s = fmt.Sprintf("line %d: ", w.Line)
	}
	return s + w.Field + ": " + w.Message + " [" + w.Code + "]"
}

// LintSource lints a bundle's YAML: warnings name their lines, and the
// checks that depend on what the file leaves out (no_response_cap) run.
// The bundle must be valid (Parse it first).
func LintSource(src []byte) ([]Warning, error) {
	b, err := Parse(src)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, err
	}
	lines := map[string]int{}
	if len(root.Content) > 0 {
		walkLines(root.Content[0], "", lines)
	}
	return lint(b, lines), nil
}

// Lint lints a parsed bundle (a stored one has no source lines, and
// no_response_cap is not checked: the canonical form has the default
// filled in).
func Lint(b *Bundle) []Warning { return lint(b, nil) }

func lint(b *Bundle, lines map[string]int) []Warning {
	var out []Warning
	add := func(code, field, format string, args ...any) {
		out = append(out, Warning{Code: code, Field: field, Line: lines[field], Message: fmt.Sprintf(format, args...)})
	}
	for _, name := range sortedKeys(b.Profiles) {
		p := b.Profiles[name]
		f := "profiles." + name
		for i, r := range p.Egress.Allow {
			rf := fmt.Sprintf("%s.egress.allow[%d]", f, i)
			if len(r.Host) > 2 && r.Host[:2] == "*." {
				add(LintWildcardEgress, rf+".host", "%s allows every subdomain of %s, present and future", r.Host, r.Host[2:])
			}
			if r.Rate == nil && r.BytesPerMinute == 0 {
				add(LintUnlimitedEgress, rf, "rule for %s has neither a rate nor bytes_per_minute", r.Host)
			}
		}
		if lines != nil && len(p.Egress.Allow) > 0 {
			if _, set := lines[f+".egress.max_response_bytes"]; !set {
				add(LintNoResponseCap, f+".egress", "egress is allowed but max_response_bytes is not chosen (the %d-byte default applies)", DefaultMaxResponseBytes)
			}
		}
		if p.MaxLeaseTTL.D() > LongLeaseTTL {
			add(LintLongLeaseTTL, f+".max_lease_ttl", "leases may live %s, above %s", p.MaxLeaseTTL.D(), LongLeaseTTL)
		}
	}
	for _, name := range sortedKeys(b.Tenants) {
		t := b.Tenants[name]
		f := "tenants." + name
		if len(b.Profiles) > 1 && len(t.Profiles) == len(b.Profiles) {
			add(LintEveryProfile, f+".profiles", "tenant %s may use every profile (%d)", name, len(b.Profiles))
		}
		if t.Budget == (Budget{}) {
			add(LintUnlimitedBudget, f+".budget", "tenant %s has no daily budget", name)
		}
		if slices.Contains(t.Environments, EnvDev) && slices.Contains(t.Environments, EnvStage) && slices.Contains(t.Environments, EnvProd) {
			add(LintEveryEnvironment, f+".environments", "tenant %s may issue leases against dev and stage bundles as well as prod", name)
		}
	}
	return out
}
