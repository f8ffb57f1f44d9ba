package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leash-dev/leash/policy"
)

// TestPolicyOffline runs the subcommands that need no node: check, lint
// and diff of files.
func TestPolicyOffline(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write("base.yaml", string(policy.DefaultYAML()))
	patched := write("patched.yaml", strings.Replace(string(policy.DefaultYAML()), "cpu_ms: 500", "cpu_ms: 400", 1))
	broken := write("broken.yaml", "version: 1\nprofiles:\n  p:\n    limits: {cpu_ms: 0}\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"check", []string{"policy", "check", base}, 0, []string{policy.Default().Digest()}, nil},
		{"check broken", []string{"policy", "check", broken}, 1, nil, []string{"broken.yaml:line 4: profiles.p.limits.cpu_ms", "error(s)"}},
		{"lint", []string{"policy", "lint", base}, 0, []string{"[tenant_every_profile]", "[no_response_cap]"}, []string{"2 warning(s)"}},
		{"lint strict", []string{"policy", "lint", "--strict", base}, 1, []string{"[tenant_every_profile]"}, nil},
		{"lint json", []string{"policy", "lint", "--json", base}, 0, []string{`"code": "no_response_cap"`, `"digest": "` + policy.Default().Digest()}, nil},
		{"lint broken", []string{"policy", "lint", broken}, 1, nil, []string{"error(s)"}},
		{"diff", []string{"policy", "diff", base, patched}, 0, []string{"~ profiles.docs-reader.limits.cpu_ms: 500 → 400"}, nil},
		{"diff json", []string{"policy", "diff", "--json", base, patched}, 0, []string{`"section": "limits"`, `"op": "changed"`}, nil},
		{"diff same", []string{"policy", "diff", base, base}, 0, []string{"--- " + policy.Default().Digest()}, nil},
		{"diff one arg", []string{"policy", "diff", base}, 2, nil, []string{"usage: leash policy diff"}},
		{"unknown subcommand", []string{"policy", "frobnicate"}, 2, nil, []string{"unknown subcommand"}},
		{"canary bad percent", []string{"policy", "canary", "set", "ten"}, 2, nil, []string{"not a percentage"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			env := &Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
				if k == "LEASH_URL" {
					return "http://127.0.0.1:1"
				}
				return ""
			}}
			if code := Main(context.Background(), tc.args, env); code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out.String(), errOut.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q: %s", w, out.String())
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q: %s", w, errOut.String())
				}
			}
			if strings.Contains(strings.Join(tc.args, " "), "--json") && tc.code == 0 {
				var v map[string]any
				if err := json.Unmarshal(out.Bytes(), &v); err != nil {
					t.Errorf("--json printed no JSON object: %v", err)
				}
			}
		})
	}
}
