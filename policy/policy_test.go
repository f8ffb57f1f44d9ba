package policy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestDefaultBundle(t *testing.T) {
	b := Default()
	for intent, profile := range map[string]string{"read_docs": "docs-reader", "transform_content": "content-transformer", "call_api": "api-caller"} {
		if b.Intents[intent] != profile {
			t.Errorf("intent %s → %q, want %s", intent, b.Intents[intent], profile)
		}
		if !b.Tenants["demo"].Allows(profile) {
			t.Errorf("demo may not use %s", profile)
		}
	}
	// The three profiles differ in their limits.
	seen := map[Limits]bool{}
	for _, p := range b.Profiles {
		seen[p.Limits] = true
	}
	if len(seen) != 3 {
		t.Errorf("profiles share limits: %d distinct", len(seen))
	}
}

// TestInvalidBundles loads every bad fixture and checks each error names
// its line and field.
func TestInvalidBundles(t *testing.T) {
	tests := map[string][]FieldError{
		"unknown_key.yaml":   {{Line: 6, Message: "field colour not found"}},
		"bad_limits.yaml":    {{Line: 5, Field: "profiles.p.limits.cpu_ms"}, {Line: 7, Field: "profiles.p.limits.memory_mb"}, {Line: 11, Field: "profiles.p.max_lease_ttl"}},
		"dangling.yaml":      {{Line: 7, Field: "intents.i", Message: `unknown profile "nope"`}, {Line: 10, Field: "tenants.t.profiles[1]", Message: `unknown profile "ghost"`}},
		"bad_duration.yaml":  {{Line: 5, Message: "not a duration"}},
		"bad_egress.yaml":    {{Line: 8, Field: "profiles.p.egress.allow[0].host"}, {Line: 10, Field: "profiles.p.egress.allow[1].ports[0]"}, {Line: 11, Field: "profiles.p.egress.allow[1].methods[0]"}, {Line: 16, Field: "deny[0]"}},
		"wrong_version.yaml": {{Line: 1, Field: "version"}},
		"not_yaml.yaml":      {{Line: 1}},
		"bad_retry.yaml":     {{Line: 7, Field: "profiles.p.retry.max_attempts"}, {Line: 8, Field: "profiles.p.retry.on[1]", Message: "never retry"}, {Line: 9, Field: "profiles.p.retry.backoff"}, {Line: 10, Field: "profiles.p.retry.max_backoff"}},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(src)
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("Parse error = %v, want a *ValidationError", err)
			}
			for _, w := range want {
				found := false
				for _, got := range ve.Errors {
					if got.Line == w.Line && (w.Field == "" || got.Field == w.Field) && strings.Contains(got.Message, w.Message) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error like %+v in %+v", w, ve.Errors)
				}
			}
		})
	}
}

// TestDigestIsCanonical: order, case, duplicates, trailing dots and
// spelled-out defaults do not change the digest.
func TestDigestIsCanonical(t *testing.T) {
	src, err := os.ReadFile("testdata/reordered.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Digest(), Default().Digest(); got != want {
		t.Fatalf("digest %s, want the built-in bundle's %s\n%s\n%s", got, want, b.Canonical(), Default().Canonical())
	}
	// And a real change does change it.
	b.Profiles["docs-reader"].Limits.CPUMs++
	if b.Digest() == Default().Digest() {
		t.Fatal("a changed limit kept the digest")
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	d := Default()
	back, err := FromCanonical(d.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if back.Digest() != d.Digest() {
		t.Fatal("canonical form does not round-trip")
	}
	if _, err := FromCanonical([]byte(`{"version":1,"surprise":true}`)); err == nil {
		t.Fatal("unknown canonical field accepted")
	}
}

// TestDocsExample loads the example bundle of docs/policy.md.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("docs/policy.md has no yaml example")
	}
	b, err := Parse(blocks[0][1])
	if err != nil {
		t.Fatalf("docs/policy.md example: %v", err)
	}
	if b.Digest() != Default().Digest() {
		t.Error("docs/policy.md's first example is not the built-in bundle; keep them the same")
	}
}

func TestNormalizeHostPattern(t *testing.T) {
	tests := map[string]string{
		"Example.COM.":          "example.com",
		"*.Example.com":         "*.example.com",
		"bücher.example":        "xn--bcher-kva.example",
		"[::1]":                 "::1",
		"192.0.2.1":             "192.0.2.1",
		"0x7f.1":                "",
		"*.com":                 "",
		"a*.example.com":        "",
		"user@example.com":      "",
		"example.com:443":       "",
		"exa mple.com":          "",
		"":                      "",
		"a\\b.example":          "",
		"*.*.example.com":       "",
		"1.2.3":                 "",
		"example.com/path":      "",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
	}
	for in, want := range tests {
		got, err := NormalizeHostPattern(in)
		if want == "" {
			if err == nil {
				t.Errorf("NormalizeHostPattern(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("NormalizeHostPattern(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"reordered.yaml", "bad_egress.yaml", "dangling.yaml", "unknown_key.yaml"} {
		b, _ := os.ReadFile(filepath.Join("testdata", name))
		f.Add(b)
	}
	f.Add(DefaultYAML())
	f.Fuzz(func(t *testing.T, src []byte) {
		b, err := Parse(src)
		if err != nil {
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("error is %T, want *ValidationError", err)
			}
			return
		}
		// A valid bundle's canonical form parses back to the same digest.
		back, err := FromCanonical(b.Canonical())
		if err != nil {
			t.Fatalf("canonical form of a valid bundle refused: %v", err)
		}
		if back.Digest() != b.Digest() {
			t.Fatal("digest changed through the canonical form")
		}
	})
}

// TestRetryPolicy: defaults when a profile says nothing (and no change to
// the digest of such a bundle), a written section stored complete, and
// an empty retry.on meaning "retry nothing" through the canonical form.
func TestRetryPolicy(t *testing.T) {
	d := Default()
	r := d.Profiles["docs-reader"].RetryPolicy()
	if r.MaxAttempts != DefaultMaxAttempts || !r.Retries("error") || !r.Retries("terminated:wall") || r.Retries("terminated:memory") || r.Retries("terminated:revoked") {
		t.Fatalf("default retry policy %+v", r)
	}
	if strings.Contains(string(d.Canonical()), "retry") {
		t.Fatal("a bundle without retry sections mentions retry in its canonical form")
	}
	src := strings.Replace(string(DefaultYAML()), "    max_lease_ttl: 15m\n", "    max_lease_ttl: 15m\n    retry: {max_attempts: 5, on: [terminated:memory, error, error]}\n", 1)
	src = strings.Replace(src, "    max_lease_ttl: 1h\n", "    max_lease_ttl: 1h\n    retry: {on: []}\n", 1)
	b, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromCanonical(b.Canonical())
	if err != nil || back.Digest() != b.Digest() {
		t.Fatalf("round trip: %v", err)
	}
	got := back.Profiles["docs-reader"].RetryPolicy()
	if got.MaxAttempts != 5 || strings.Join(got.On, ",") != "error,terminated:memory" || got.Backoff != DefaultBackoff || got.MaxBackoff != DefaultMaxBackoff {
		t.Fatalf("written retry policy %+v", got)
	}
	if none := back.Profiles["content-transformer"].RetryPolicy(); len(none.On) != 0 || none.Retries("error") {
		t.Fatalf("retry.on: [] = %+v", none)
	}
}
