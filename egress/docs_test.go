package egress

import (
	"os"
	"strings"
	"testing"

	"github.com/leash-dev/leash/policy"
)

// TestDocsExample loads the YAML example of docs/egress.md: it must be a
// valid bundle, compile, and mean what the page says.
func TestDocsExample(t *testing.T) {
	src, err := os.ReadFile("../docs/egress.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	_, rest, ok := strings.Cut(doc, "```yaml\n")
	if !ok {
		t.Fatal("docs/egress.md has no yaml block")
	}
	yaml, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("unterminated yaml block")
	}
	b, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	deny, err := CompileDeny(b.Deny)
	if err != nil {
		t.Fatal(err)
	}
	p := b.Profiles["api-caller"]
	rules, err := Compile("api-caller", p)
	if err != nil {
		t.Fatal(err)
	}
	if rules.MaxRedirects() != 3 || rules.MaxResponseBytes() != 2097152 {
		t.Errorf("redirects %d, size %d", rules.MaxRedirects(), rules.MaxResponseBytes())
	}
	for _, tc := range []struct{ method, url, clause string }{
		{"POST", "https://api.partner.example/v1", ""},
		{"DELETE", "https://api.partner.example/v1", ClauseMethod},
		{"GET", "http://api.partner.example/", ClausePort},
		{"GET", "https://a.docs.partner.example/", ""},
		{"GET", "https://docs.partner.example/", ClauseDefaultDeny},
		{"GET", "https://xn--bcher-kva.example/", ""},
		{"GET", "https://x.internal.partner.example/", ClauseGlobalDeny},
		{"GET", "http://metadata.google.internal/", ClauseGlobalDeny},
	} {
		if _, err := rules.Check(deny, tc.method, tc.url); ClauseOf(err) != tc.clause {
			t.Errorf("%s %s: %v, want %q", tc.method, tc.url, err, tc.clause)
		}
	}
	if _, ok := deny.MatchHost("a.internal.partner.example"); !ok {
		t.Error("deny wildcard")
	}
	// Every clause is documented.
	for _, c := range Clauses {
		if !strings.Contains(doc, "`"+c+"`") {
			t.Errorf("docs/egress.md does not list clause %s", c)
		}
	}
	for _, k := range LogKeys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("docs/egress.md does not list log key %s", k)
		}
	}
}
