package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestDrills runs `leash drill timeout` and `leash drill egress` against
// three real nodes whose bundle has the drill profile
// (e2e/testdata/drill-policy.yaml), with an operator's key: every check
// passes (outcome, event, metric or a skip when another node ran the
// task, receipt; the loopback destination is never reached). Then the
// timeout drill against "drill-lax", whose CPU limit lets the spinning
// task run on to its wall-clock limit, fails: exit status 1, the cpu
// case's outcome is terminated:wall.
func TestDrills(t *testing.T) {
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "drill-policy.yaml"), Args: clusterArgs()})
	a := c.Nodes[0]
	var op api.APIKey
	a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "operator", Name: "drills"}, 201, &op)
	leash := func(args ...string) (string, int) {
		cmd := exec.Command(nodetest.Binary(t), args...)
		cmd.Env = append(os.Environ(), "LEASH_URL="+c.Nodes[1].URL(), "LEASH_TOKEN="+op.Key)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
			out = append(out, ee.Stderr...)
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	type report struct {
		Passed bool `json:"passed"`
		Checks []struct {
			Case, Check, Want, Got, Result string
		} `json:"checks"`
	}
	for _, kind := range []string{"timeout", "egress"} {
		out, code := leash("drill", kind, "--json")
		var rep report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("drill %s (exit %d): %v\n%s", kind, code, err, out)
		}
		passed := 0
		for _, ch := range rep.Checks {
			t.Logf("drill %s: %s %s: want %q got %q: %s", kind, ch.Case, ch.Check, ch.Want, ch.Got, ch.Result)
			if ch.Result == "pass" {
				passed++
			}
		}
		if code != 0 || !rep.Passed || passed < 2*len(rep.Checks)/3 {
			t.Fatalf("drill %s: exit %d, passed %v (%d of %d checks)", kind, code, rep.Passed, passed, len(rep.Checks))
		}
	}
	if st, b := a.Do("GET", "/v1/runbook/blocks", op.Key, nil); st != 200 || strings.Contains(string(b), "drill.test") {
		t.Fatalf("the egress drill left its block: %d %s", st, b)
	}

	out, code := leash("drill", "timeout", "--profile", "drill-lax")
	t.Logf("the drill against drill-lax:\n%s", out)
	if code != 1 || !strings.Contains(out, "drill timeout: FAIL") || !strings.Contains(out, "terminated:wall") {
		t.Fatalf("a drill against a profile that lets the task run on: exit %d\n%s", code, out)
	}
}
