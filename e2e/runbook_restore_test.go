package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/policy"
)

// TestRunbookRestore: the runbook's last step on three real nodes, through
// the CLI. The profile "fetcher" is frozen for an incident; `leash
// runbook restore --bundle patched.yaml --canary 50%` pushes the patched
// bundle through dev and stage, starts it as prod's canary and thaws the
// profile for the canary's leases only: on every node a new lease of the
// profile is either the patched bundle's or refused profile_frozen, and
// both happen. `--promote` is refused (canary_unhealthy) while the canary
// has run too few tasks; after a few tasks under canary leases it
// promotes, the profile thaws entirely and every new lease is the
// patched bundle's. The incident's restore step is done, its timeline
// has the thaw and the unfreeze, and both have governance entries.
func TestRunbookRestore(t *testing.T) {
	stablePath := filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "runbook-policy.yaml")
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: stablePath, Args: clusterArgs()})
	a := c.Nodes[0]
	var op api.APIKey
	a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "operator", Name: "oncall"}, 201, &op)
	src, err := os.ReadFile(stablePath)
	if err != nil {
		t.Fatal(err)
	}
	// The patch: fetcher may no longer reach the exfiltration domain.
	patchedSrc := strings.Replace(string(src), `- host: "*.exfil.test"`, `- host: "api.partner.test"`, 1)
	patched, err := policy.Parse([]byte(patchedSrc))
	if err != nil {
		t.Fatal(err)
	}
	stable, err := policy.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "patched.yaml")
	if err := os.WriteFile(bundle, []byte(patchedSrc), 0o600); err != nil {
		t.Fatal(err)
	}
	leash := func(args ...string) (string, error) {
		cmd := exec.Command(nodetest.Binary(t), args...)
		cmd.Env = append(os.Environ(), "LEASH_URL="+c.Nodes[1].URL(), "LEASH_TOKEN="+op.Key)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	a.JSON("POST", "/v1/incidents", op.Key, api.IncidentRequest{ID: "inc-restore", Title: "fetcher exfiltrates", Owner: "alice"}, 201, nil)
	if out, err := leash("freeze", "fetcher", "--incident", "inc-restore", "--reason", "exfiltration"); err != nil {
		t.Fatalf("freeze: %v\n%s", err, out)
	}
	if st, b := a.Do("POST", "/v1/leases", a.Token, api.LeaseRequest{Tenant: "victim", Intent: "fetch_task"}); st != 409 || errCode(t, b) != "profile_frozen" {
		t.Fatalf("a lease of the frozen profile: %d %s", st, b)
	}
	// --promote with no canary, and bad flags, are refused.
	if out, err := leash("runbook", "restore", "--profile", "fetcher", "--promote"); err == nil || !strings.Contains(out, "no_canary") {
		t.Fatalf("promote without a canary: %v\n%s", err, out)
	}
	if out, err := leash("runbook", "restore", "--profile", "fetcher", "--bundle", bundle); err == nil {
		t.Fatalf("a bundle without --canary: %s", out)
	}

	out, err := leash("runbook", "restore", "--profile", "fetcher", "--bundle", bundle, "--canary", "50%", "--incident", "inc-restore", "--json")
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	var rep struct {
		Digest string            `json:"digest"`
		Thaw   api.RunbookResult `json:"thaw"`
		Steps  []string          `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, out)
	}
	t.Logf("restore: %s", strings.Join(rep.Steps, "; "))
	if rep.Digest != patched.Digest() || rep.Thaw.Action != "thaw_canary" || rep.Thaw.LedgerIndex < 0 || rep.Thaw.Incident != "inc-restore" {
		t.Fatalf("restore report %+v", rep)
	}

	// The thaw is in force on every node once acknowledged: each new
	// lease of fetcher is the canary's, or refused.
	var canary []api.Lease
	refused := 0
	for i := range 30 {
		n := c.Nodes[i%3]
		var l api.Lease
		st, b := n.Do("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "victim", Intent: "fetch_task"})
		switch {
		case st == 201:
			if err := json.Unmarshal(b, &l); err != nil || l.PolicyDigest != patched.Digest() {
				t.Fatalf("node %d issued a lease of the frozen profile under %s (stable %s): %s", i%3, l.PolicyDigest, stable.Digest(), b)
			}
			canary = append(canary, l)
		case st == 409 && errCode(t, b) == "profile_frozen":
			refused++
		default:
			t.Fatalf("lease: %d %s", st, b)
		}
	}
	t.Logf("30 leases of the thawed profile at 50%%: %d canary, %d refused", len(canary), refused)
	if len(canary) == 0 || refused == 0 {
		t.Fatalf("%d canary leases, %d refused: want both", len(canary), refused)
	}
	var fr struct {
		Frozen []api.Frozen `json:"frozen"`
	}
	c.Nodes[2].JSON("GET", "/v1/runbook/frozen", op.Key, nil, 200, &fr)
	if len(fr.Frozen) != 1 || fr.Frozen[0].ThawDigest != patched.Digest() {
		t.Fatalf("frozen %+v", fr.Frozen)
	}

	// Not healthy yet: too few canary tasks.
	if out, err := leash("runbook", "restore", "--profile", "fetcher", "--promote", "--min-tasks", "3"); err == nil || !strings.Contains(out, "canary_unhealthy") {
		t.Fatalf("promote of an unproven canary: %v\n%s", err, out)
	}
	hello := `export default { async fetch() { return new Response("ok") } }`
	for i := range 4 {
		l := canary[i%len(canary)]
		if res := runTask(t, c.Nodes[i%3], l.Token, api.TaskRequest{Module: api.Module{JS: &hello}}); res.Outcome != "ok" {
			t.Fatalf("canary task: %s %s", res.Outcome, body(res))
		}
	}
	waitFor(t, 30*time.Second, "the node the CLI asks to count the canary's tasks", func() bool {
		var st api.CanaryStatus
		c.Nodes[1].JSON("GET", "/v1/policy/canary", op.Key, nil, 200, &st)
		return st.Health.Canary.Tasks >= 3
	})
	out, err = leash("runbook", "restore", "--profile", "fetcher", "--promote", "--min-tasks", "3", "--incident", "inc-restore")
	if err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	t.Logf("promote: %s", out)
	for _, n := range c.Nodes {
		l := issue(t, n, api.LeaseRequest{Tenant: "victim", Intent: "fetch_task"})
		if l.PolicyDigest != patched.Digest() {
			t.Fatalf("after the promotion: a lease under %s", l.PolicyDigest)
		}
		n.JSON("GET", "/v1/runbook/frozen", op.Key, nil, 200, &fr)
		if len(fr.Frozen) != 0 {
			t.Fatalf("still frozen: %+v", fr.Frozen)
		}
	}
	var inc api.Incident
	a.JSON("GET", "/v1/incidents/inc-restore", op.Key, nil, 200, &inc)
	var kinds []string
	for _, e := range inc.Timeline {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"open", "freeze", "restore", "unfreeze"}; !slices.Equal(kinds, want) {
		t.Fatalf("timeline %v, want %v", kinds, want)
	}
	for _, s := range inc.Steps {
		if s.Name == "restore" && s.DoneAt == nil {
			t.Fatalf("the restore step is not done: %+v", s)
		}
	}
}
