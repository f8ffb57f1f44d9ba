package policy

import (
	"strings"
	"testing"
)

func mustParse(t testing.TB, src string) *Bundle {
	t.Helper()
	b, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDiff(t *testing.T) {
	base := string(DefaultYAML())
	for name, tc := range map[string]struct {
		edit func(string) string
		want []string // "op section path"
	}{
		"same bundle":                         {func(s string) string { return s }, nil},
		"reordered and commented is the same": {func(s string) string { return "# a comment\n" + s }, nil},
		"a limit": {func(s string) string { return strings.Replace(s, "cpu_ms: 500", "cpu_ms: 400", 1) },
			[]string{"changed limits profiles.docs-reader.limits.cpu_ms"}},
		"an egress rule's rate, matched by host": {func(s string) string {
			return strings.Replace(s, "rate: {per_second: 5, burst: 10}", "rate: {per_second: 50, burst: 10}", 1)
		}, []string{"changed egress profiles.docs-reader.egress.allow[docs.example.com].rate.per_second"}},
		"a new egress rule": {func(s string) string {
			return strings.Replace(s, "        - host: docs.example.com\n", "        - host: cdn.example.com\n          rate: {per_second: 1}\n        - host: docs.example.com\n", 1)
		}, []string{"added egress profiles.docs-reader.egress.allow[cdn.example.com]"}},
		"a tenant budget": {func(s string) string { return strings.Replace(s, "tasks_per_day: 100000", "tasks_per_day: 10", 1) },
			[]string{"changed budgets tenants.demo.budget.tasks_per_day"}},
		"a new tenant and a removed deny entry": {func(s string) string {
			s = strings.Replace(s, "\ndeny:", "  acme:\n    profiles: [docs-reader]\n\ndeny:", 1)
			return strings.Replace(s, "  - metadata.google.internal\n", "", 1)
		}, []string{"changed deny deny", "added tenants tenants.acme"}},
		"a removed profile": {func(s string) string {
			s = strings.Replace(s, "  call_api: api-caller\n", "", 1)
			s = strings.Replace(s, ", api-caller]", "]", 1)
			i := strings.Index(s, "  api-caller:\n")
			j := strings.Index(s, "\nintents:")
			return s[:i] + s[j+1:]
		}, []string{"removed profiles profiles.api-caller", "removed intents intents.call_api", "changed tenants tenants.demo.profiles"}},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := mustParse(t, base), mustParse(t, tc.edit(base))
			var got []string
			for _, c := range Diff(a, b) {
				got = append(got, c.Op+" "+c.Section+" "+c.Path)
			}
			if strings.Join(got, "\n") != strings.Join(sorted(tc.want), "\n") {
				t.Fatalf("diff:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(sorted(tc.want), "\n"), FormatDiff(Diff(a, b)))
			}
			if len(Diff(b, a)) != len(got) {
				t.Errorf("diff b→a has %d changes, a→b %d", len(Diff(b, a)), len(got))
			}
		})
	}
}

// sorted orders "op section path" lines by path, as Diff does.
func sorted(lines []string) []string {
	out := append([]string(nil), lines...)
	path := func(s string) string { return s[strings.LastIndexByte(s, ' ')+1:] }
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if path(out[j]) < path(out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestFormatDiff(t *testing.T) {
	a := mustParse(t, string(DefaultYAML()))
	b := mustParse(t, strings.Replace(string(DefaultYAML()), "cpu_ms: 500", "cpu_ms: 400", 1))
	if got, want := FormatDiff(Diff(a, b)), "~ profiles.docs-reader.limits.cpu_ms: 500 → 400\n"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
