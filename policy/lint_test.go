package policy

import (
	"os"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	base := string(DefaultYAML())
	for name, tc := range map[string]struct {
		edit func(string) string
		want []string // "code field"
	}{
		// The built-in bundle: demo may use every profile; two rules
		// set no response cap.
		"built-in": {func(s string) string { return s }, []string{
			"no_response_cap profiles.api-caller.egress",
			"tenant_every_profile tenants.demo.profiles",
		}},
		"wildcard, unlimited, long ttl, no budget, every env": {func(s string) string {
			s = strings.Replace(s, "        - host: docs.example.com\n", "        - host: \"*.example.com\"\n        - host: docs.example.com\n", 1)
			s = strings.Replace(s, "max_lease_ttl: 1h", "max_lease_ttl: 12h", 1)
			s = strings.Replace(s, "    budget:\n      cpu_ms_per_day: 3600000\n      tasks_per_day: 100000\n", "    environments: [prod, stage, dev]\n", 1)
			return s
		}, []string{
			"wildcard_egress profiles.docs-reader.egress.allow[0].host",
			"unlimited_egress profiles.docs-reader.egress.allow[0]",
			"long_lease_ttl profiles.content-transformer.max_lease_ttl",
			"no_response_cap profiles.api-caller.egress",
			"tenant_every_profile tenants.demo.profiles",
			"unlimited_budget tenants.demo.budget",
			"tenant_every_env tenants.demo.environments",
		}},
	} {
		t.Run(name, func(t *testing.T) {
			ws, err := LintSource([]byte(tc.edit(base)))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, w := range ws {
				got[w.Code+" "+w.Field] = true
				if w.Message == "" {
					t.Errorf("%s: no message", w.Code)
				}
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("missing warning %q; got %v", w, ws)
				}
				delete(got, w)
			}
			for w := range got {
				t.Errorf("unexpected warning %q", w)
			}
		})
	}
	if _, err := LintSource([]byte("version: 2")); err == nil {
		t.Error("an invalid bundle linted")
	}
}

// TestLintCodesAreDocumented: every warning code is in docs/policy.md.
func TestLintCodesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{LintWildcardEgress, LintUnlimitedEgress, LintNoResponseCap, LintLongLeaseTTL, LintEveryProfile, LintUnlimitedBudget, LintEveryEnvironment} {
		if !strings.Contains(string(doc), "| `"+c+"` |") {
			t.Errorf("lint code %s is not in docs/policy.md", c)
		}
	}
}

func FuzzLintSource(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("version: 1\nprofiles: {}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		ws, err := LintSource(src)
		if err != nil {
			return
		}
		b, _ := Parse(src)
		if d := Diff(b, b); len(d) != 0 {
			t.Fatalf("a bundle differs from itself: %v", d)
		}
		_ = ws
	})
}
