package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/policy"
)

// TestDrills runs `leash drill timeout` and `leash drill egress` against
// three real nodes whose bundle has the drill profile
// (e2e/testdata/drill-policy.yaml), with an operator's key: every check
// passes (outcome, event, metric or a skip when another node ran the
// task, receipt), among them a fetch of the gateway's stalling drill
// destination ending terminated:wall, the echo destination inside the
// allow-list answering with its bytes counted in the receipt, and the
// loopback address refused and not among the receipt's destinations.
// Then the
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
	// The checks each drill must have passed (the rest may be a skip:
	// a metric of a task another node ran).
	required := map[string][]string{
		"timeout": {"cpu outcome", "wall outcome", "stall outcome", "stall event", "stall receipt", "stall destination"},
		"egress": {"private outcome", "private event", "private destination", "outside event", "blocked event",
			"inside outcome", "inside body", "inside blocked", "inside receipt", "inside destination", "inside egress"},
	}
	for _, kind := range []string{"timeout", "egress"} {
		out, code := leash("drill", kind, "--json")
		var rep report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("drill %s (exit %d): %v\n%s", kind, code, err, out)
		}
		passed := 0
		results := map[string]string{}
		for _, ch := range rep.Checks {
			t.Logf("drill %s: %s %s: want %q got %q: %s", kind, ch.Case, ch.Check, ch.Want, ch.Got, ch.Result)
			if ch.Result == "pass" {
				passed++
			}
			results[ch.Case+" "+ch.Check] = ch.Result
		}
		for _, want := range required[kind] {
			if results[want] != "pass" {
				t.Errorf("drill %s: check %q is %q, want pass", kind, want, results[want])
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

// TestDrillProfileDocumented: the drill profile docs/runbook.md shows
// an operator ("Drills") is the one TestDrills runs, and its tenant may
// use it.
func TestDrillProfileDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "## Drills\n")
	_, rest, ok := strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/runbook.md's Drills section has no yaml block")
	}
	shown, err := policy.Parse([]byte("version: 1\n" + block))
	if err != nil {
		t.Fatalf("the documented drill profile does not parse: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "drill-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tested, err := policy.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(shown.Profiles["drill"])
	b, _ := json.Marshal(tested.Profiles["drill"])
	if string(a) != string(b) || shown.Profiles["drill"] == nil {
		t.Fatalf("docs/runbook.md shows the drill profile\n%s\ne2e/testdata/drill-policy.yaml has\n%s", a, b)
	}
	if tn := shown.Tenants["drill"]; tn == nil || !slices.Contains(tn.Profiles, "drill") {
		t.Fatalf("the documented drill tenant: %+v", tn)
	}
}
