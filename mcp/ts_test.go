package mcp_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/internal/nodetest"
)

// requireNode says whether a missing Node.js or npm install fails the
// tests (the Makefile sets it, so CI cannot skip them) or skips them (a
// plain go test on a machine without Node).
func requireNode() bool { return os.Getenv("LEASH_REQUIRE_NODE") == "1" }

// nodeTestDir returns dir (under the repo) if `node` and dir's
// node_modules are there; otherwise it skips, or fails under
// LEASH_REQUIRE_NODE=1.
func nodeTestDir(t *testing.T, dir string) string {
	t.Helper()
	dir = filepath.Join(nodetest.RepoRoot(), dir)
	if _, err := exec.LookPath("node"); err != nil {
		if requireNode() {
			t.Fatal("node is not installed (make tsdeps installs it)")
		}
		t.Skip("node is not installed (make tsdeps)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		if requireNode() {
			t.Fatalf("%s has no node_modules (make tsdeps)", dir)
		}
		t.Skipf("%s has no node_modules (make tsdeps)", dir)
	}
	return dir
}

// runNodeTests runs Node's built-in test runner on files in dir with env
// and fails the test with its report when a test fails.
func runNodeTests(t *testing.T, dir string, env []string, files ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args := append([]string{"--test", "--test-reporter=spec", "--test-concurrency=1"}, files...)
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test %s:\n%s", strings.Join(files, " "), out)
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}

// TestTypeScriptSDKClient runs the official TypeScript MCP SDK client
// (@modelcontextprotocol/sdk, mcp/testdata/tsclient) against a real node
// over Streamable HTTP and stdio: every tool, a refused call and a
// terminated task.
func TestTypeScriptSDKClient(t *testing.T) {
	dir := nodeTestDir(t, "mcp/testdata/tsclient")
	f := startFixture(t)
	endpoints := []string{f.standalone(t), f.node.URL() + "/mcp"}
	runNodeTests(t, dir, []string{
		"LEASH_MCP_ENDPOINTS=" + strings.Join(endpoints, " "),
		"LEASH_URL=" + f.node.URL(),
		"LEASH_BIN=" + nodetest.Binary(t),
		"LEASH_KEY=" + f.demo,
		"LEASH_LIMITED_KEY=" + f.limited,
	}, "mcp.test.mjs")
}
