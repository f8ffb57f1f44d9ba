package typescript_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// dir is the npm package, with its node_modules (make tsdeps). Without
// Node or node_modules the test skips, unless LEASH_REQUIRE_NODE=1 (the
// Makefile sets it, so CI cannot skip).
func dir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(nodetest.RepoRoot(), "clients", "typescript")
	_, nodeErr := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(d, "node_modules"))
	if nodeErr != nil || modErr != nil {
		if os.Getenv("LEASH_REQUIRE_NODE") == "1" {
			t.Fatalf("node or clients/typescript/node_modules missing (make tsdeps): %v %v", nodeErr, modErr)
		}
		t.Skip("node or clients/typescript/node_modules missing (make tsdeps)")
	}
	return d
}

func npm(t *testing.T, d string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", args...)
	cmd.Dir = d
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("npm %v:\n%s", args, out)
	if err != nil {
		t.Fatalf("npm %v: %v", args, err)
	}
}

// TestGeneratedTypesAreCurrent: src/schema.d.ts is what openapi-typescript
// makes of docs/openapi.yaml now.
func TestGeneratedTypesAreCurrent(t *testing.T) {
	npm(t, dir(t), nil, "run", "--silent", "check-generated")
}

// TestClientAgainstARealNode builds the client and runs its tests
// (test/*.test.mjs, Node's test runner) against a leash serve process.
func TestClientAgainstARealNode(t *testing.T) {
	d := dir(t)
	n := nodetest.Start(t, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "mcp", "testdata", "policy.yaml")})
	var key api.APIKey
	n.JSON("POST", "/v1/apikeys", n.Token, api.APIKeyRequest{Role: "tenant", Tenant: "demo", Name: "ts-client"}, 201, &key)
	npm(t, d, []string{"LEASH_URL=" + n.URL(), "LEASH_ADMIN_TOKEN=" + n.Token, "LEASH_KEY=" + key.Key}, "test")
}
