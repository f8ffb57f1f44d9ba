package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/policy"
)

// policyVariant is the end-to-end bundle with profile small's cpu_ms
// set: a distinct valid bundle per value, and its digest.
func policyVariant(t *testing.T, cpu int) ([]byte, string) {
	t.Helper()
	src, err := os.ReadFile(policyPath())
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(src), "cpu_ms: 100,", fmt.Sprintf("cpu_ms: %d,", cpu), 1)
	b, err := policy.Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(out), b.Digest()
}

func envOf(t *testing.T, n *nodetest.Node, env string) api.PolicyEnv {
	t.Helper()
	var e api.PolicyEnv
	n.JSON("GET", "/v1/policy/envs/"+env, n.Token, nil, 200, &e)
	return e
}

func historyOf(t *testing.T, n *nodetest.Node, env string) string {
	t.Helper()
	var h api.PolicyHistory
	n.JSON("GET", "/v1/policy/envs/"+env+"/history?limit=1000", n.Token, nil, 200, &h)
	b, _ := json.Marshal(h)
	return string(b)
}

// receiptDigest is the policy digest the receipt at index names.
func receiptDigest(t *testing.T, n *nodetest.Node, index int64) string {
	t.Helper()
	var rv struct {
		Envelope json.RawMessage `json:"envelope"`
	}
	n.JSON("GET", fmt.Sprintf("/v1/ledger/receipts/%d", index), n.Token, nil, 200, &rv)
	env, err := ledger.DecodeEnvelope(rv.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	var r ledger.Receipt
	if err := json.Unmarshal(env.Payload, &r); err != nil {
		t.Fatal(err)
	}
	return r.PolicyDigest
}

// TestPolicyLifecycleCluster runs the lifecycle on three real nodes, each
// step through a different node: a promotion is in force on every node
// (measured; the issue's bar is a second), a lease issued before a change
// keeps its bundle, rollback restores the exact previous digest, a
// canary's leases get the digest their id picks on every node, and the
// history is the same everywhere and survives a restart and a snapshot
// install.
func TestPolicyLifecycleCluster(t *testing.T) {
	c := startCluster(t, 3, "--trailing-logs", "16")
	n := c.Nodes
	base := envOf(t, n[0], "prod").Digest
	if base == "" {
		t.Fatal("prod points at nothing")
	}
	before := issue(t, n[2], api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})

	src, patched := policyVariant(t, 150)
	var pc api.PolicyChange
	n[0].JSON("PUT", "/v1/policy/envs/dev", n[0].Token, src, 200, &pc)
	if pc.Digest != patched {
		t.Fatalf("pushed %s, want %s", pc.Digest, patched)
	}
	n[1].JSON("POST", "/v1/policy/envs/stage/promote", n[1].Token, api.PromoteRequest{Reason: "tested in dev"}, 200, nil)
	start := time.Now()
	n[2].JSON("POST", "/v1/policy/envs/prod/promote", n[2].Token, api.PromoteRequest{Reason: "tested in stage"}, 200, &pc)
	answered := time.Since(start)
	// In force on every node: each serves the new digest and issues
	// leases against it.
	var slowest time.Duration
	for _, m := range n {
		waitFor(t, 10*time.Second, "the promotion on "+m.ID(), func() bool { return envOf(t, m, "prod").Digest == patched })
		slowest = max(slowest, time.Since(start))
		if l := issue(t, m, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}); l.PolicyDigest != patched {
			t.Fatalf("%s issued a lease against %s after the promotion", m.ID(), l.PolicyDigest)
		}
	}
	t.Logf("promotion answered in %v, in force on all 3 nodes %v after it was sent (the issue's bar: 1s)", answered.Round(time.Millisecond), slowest.Round(time.Millisecond))

	// A lease issued before keeps its bundle: on every node, and for a
	// task run under it now.
	for _, m := range n {
		var l api.Lease
		m.JSON("GET", "/v1/leases/"+before.LeaseID, m.Token, nil, 200, &l)
		if l.PolicyDigest != base || l.Env != "prod" {
			t.Fatalf("%s: the old lease names %s in %s", m.ID(), l.PolicyDigest, l.Env)
		}
	}
	res := runTask(t, n[1], before.Token, wasmTask(guestB64(t, "minimal")))
	if res.Outcome != "ok" || res.Receipt == nil {
		t.Fatalf("task under the old lease: %+v", res)
	}
	if d := receiptDigest(t, n[0], res.Receipt.Index); d != base {
		t.Fatalf("the old lease's task ran under %s, want %s", d, base)
	}

	// Rollback restores the exact previous digest everywhere.
	n[0].JSON("POST", "/v1/policy/envs/prod/rollback", n[0].Token, api.RollbackRequest{Reason: "e2e"}, 200, &pc)
	if pc.Digest != base || pc.Previous != patched {
		t.Fatalf("rollback: %+v", pc)
	}
	for _, m := range n {
		waitFor(t, 10*time.Second, "the rollback on "+m.ID(), func() bool { return envOf(t, m, "prod").Digest == base })
	}

	// A 10% canary of stage's digest: every lease, issued on any node,
	// gets the digest its id picks, and every node agrees.
	n[1].JSON("PUT", "/v1/policy/canary", n[1].Token, api.CanaryRequest{Percent: 10, Reason: "e2e"}, 200, &pc)
	if pc.CanaryDigest != patched {
		t.Fatalf("canary: %+v", pc)
	}
	for _, m := range n {
		waitFor(t, 10*time.Second, "the canary on "+m.ID(), func() bool {
			e := envOf(t, m, "prod")
			return e.Canary != nil && e.Canary.Digest == patched
		})
	}
	var ids []string
	canary := 0
	for i := range 90 {
		m := n[i%3]
		l := issue(t, m, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
		want := base
		if consensus.CanaryPicks(l.LeaseID, 10) {
			want, canary = patched, canary+1
		}
		if l.PolicyDigest != want {
			t.Fatalf("lease %s from %s: %s, want %s", l.LeaseID, m.ID(), l.PolicyDigest, want)
		}
		ids = append(ids, l.LeaseID+" "+l.PolicyDigest)
	}
	c.Converged(30 * time.Second)
	for _, m := range n {
		for _, s := range ids {
			id, d, _ := strings.Cut(s, " ")
			var l api.Lease
			m.JSON("GET", "/v1/leases/"+id, m.Token, nil, 200, &l)
			if l.PolicyDigest != d {
				t.Fatalf("%s says lease %s names %s; its issuer said %s", m.ID(), id, l.PolicyDigest, d)
			}
		}
	}
	t.Logf("%d of 90 real leases took the 10%% canary", canary)

	// History: the same on every node, after a restart, and on a node
	// re-seeded from a snapshot.
	want := historyOf(t, n[0], "prod")
	if !strings.Contains(want, `"action":"canary_set"`) || !strings.Contains(want, `"action":"rollback"`) {
		t.Fatalf("prod history: %s", want)
	}
	for _, m := range n[1:] {
		if got := historyOf(t, m, "prod"); got != want {
			t.Fatalf("%s's history differs:\n%s\nwant\n%s", m.ID(), got, want)
		}
	}
	leader := c.Leader(10 * time.Second)
	f := follower(t, c, leader)
	if err := f.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	f.Restart()
	c.WaitMembers(30*time.Second, 3)
	if got := historyOf(t, f, "prod"); got != want {
		t.Fatalf("history after a restart:\n%s\nwant\n%s", got, want)
	}
	for range 40 {
		issue(t, leader, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
	}
	leader.JSON("POST", "/v1/cluster/snapshot", leader.Token, nil, 200, nil)
	f = follower(t, c, leader)
	f.Kill()
	f.Wipe()
	f.Restart()
	c.Converged(60 * time.Second)
	if !strings.Contains(f.Logs(), "Installed remote snapshot") {
		t.Fatalf("the wiped node did not install a snapshot:\n%s", tail(f.Logs(), 3000))
	}
	if got := historyOf(t, f, "prod"); got != want {
		t.Fatalf("history after a snapshot install:\n%s\nwant\n%s", got, want)
	}
	if e := envOf(t, f, "prod"); e.Digest != base || e.Canary == nil || e.Canary.Digest != patched {
		t.Fatalf("prod after a snapshot install: %+v", e)
	}
}

// TestPolicyDocExample runs docs/policy.md's worked example against a
// real node with the leash binary.
func TestPolicyDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "docs", "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- worked example -->\n```sh\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/policy.md has no worked example")
	}
	n := nodetest.Start(t, nodetest.Options{})
	dir := t.TempDir()
	def, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "policy", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.yaml"), def, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", string(m[1]))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(nodetest.Binary(t))+":"+os.Getenv("PATH"),
		"LEASH_URL="+n.URL(), "LEASH_TOKEN="+n.Token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("worked example failed: %v\n%s", err, out)
	}
	patched := strings.Replace(string(def), "cpu_ms: 500", "cpu_ms: 400", 1)
	pb, err := policy.Parse([]byte(patched))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"[tenant_every_profile]",
		"~ profiles.docs-reader.limits.cpu_ms: 500 → 400",
		"dev push #1: " + pb.Digest(),
		"gate_not_passed",
		"stage promote #1: " + pb.Digest(),
		"canary " + pb.Digest() + " at 10%",
		"prod canary_promote #3: " + pb.Digest(),
		"prod rollback #4: " + policy.Default().Digest(),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the example's output lacks %q:\n%s", want, out)
		}
	}
	if e := envOf(t, n, "prod"); e.Digest != policy.Default().Digest() {
		t.Errorf("prod after the example: %+v", e)
	}
}
