package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/leash-dev/leash/internal/nodetest"
)

// TestReadmeTour runs the README's tour against a real node.
func TestReadmeTour(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## A short tour.*?```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no tour")
	}
	script := string(m[1])
	n := nodetest.Start(t, nodetest.Options{})
	// The tour assumes the defaults; point it at the test node.
	script = strings.ReplaceAll(script, "export LEASH_URL=http://127.0.0.1:8080", "export LEASH_URL="+n.URL())
	script = strings.ReplaceAll(script, "export LEASH_TOKEN=$(cat leash-data/admin.token)", "export LEASH_TOKEN="+n.Token)
	if !strings.Contains(script, "export LEASH_TOKEN=$DEMO_KEY") {
		t.Fatal("the tour no longer hands the agent a tenant key")
	}
	bin := filepath.Dir(nodetest.Binary(t))
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = nodetest.RepoRoot()
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tour failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"hello, you, from a leash sandbox",
		`"outcome":"ok"`,
		"hello, curl, from a leash sandbox",
		"outcome terminated:cpu",
		"exit status 1",
		"sha256:",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tour output lacks %q:\n%s", want, out)
		}
	}
}
