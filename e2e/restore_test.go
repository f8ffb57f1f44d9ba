package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// restoreBundle lets tenant demo run long tasks and fetch from
// api.example.com; restoreBundleDenied is the same bundle with that host
// on the global deny list.
const restoreBundle = `version: 1
profiles:
  long:
    limits: {cpu_ms: 5000, wall_ms: 60000, memory_mb: 64, output_bytes: 65536, log_bytes: 4096, subrequests: 5}
    max_lease_ttl: 1h
    egress:
      allow:
        - host: api.example.com
intents:
  long_task: long
tenants:
  demo:
    profiles: [long]
`

var restoreBundleDenied = restoreBundle + "deny: [api.example.com]\n"

// TestSnapshotRestoreRefreshes: a follower that falls behind across a
// revocation and a policy change, and catches up by installing the
// leader's snapshot rather than the commands, derives from the restored
// state what it would have from the commands: the task it runs under the
// revoked lease ends terminated:revoked, and it refuses the destination
// the new bundle denies everywhere.
func TestSnapshotRestoreRefreshes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(restoreBundle), 0o600); err != nil {
		t.Fatal(err)
	}
	// 16 trailing entries: the follower misses more than that, so the
	// leader must send it a snapshot. A long dead timeout: the paused
	// follower stays a member.
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: path,
		Args: []string{"--trailing-logs", "16", "--snapshot-threshold", "100000", "--dead-timeout", "2m"}})
	l := c.Leader(10 * time.Second)
	f := follower(t, c, l)

	probe := `export default { async fetch() {
  try { await fetch("https://api.example.com/x"); return new Response("fetched") }
  catch (e) { return new Response(String(e.message)) } } }`
	var probeLease api.Lease
	l.JSON("POST", "/v1/leases", l.Token, api.LeaseRequest{Tenant: "demo", Intent: "long_task"}, 201, &probeLease)
	probeOn := func(n *nodetest.Node) string {
		var res api.TaskResult
		waitFor(t, 30*time.Second, "a probe task on "+n.ID(), func() bool {
			resp, err := n.Request(30*time.Second, "POST", "/v1/tasks", probeLease.Token, jsTask(probe))
			if err != nil || resp.Status != 200 {
				return false // not caught up yet: 503
			}
			return json.Unmarshal(resp.Body, &res) == nil
		})
		b, _ := res.Response.Bytes()
		return string(b)
	}
	if got := probeOn(f); strings.Contains(got, "global.deny") {
		t.Fatalf("before the change the probe is already denied: %s", got)
	}

	// A task runs on the follower under a lease about to be revoked.
	var doomed api.Lease
	l.JSON("POST", "/v1/leases", l.Token, api.LeaseRequest{Tenant: "demo", Intent: "long_task"}, 201, &doomed)
	done := make(chan api.TaskResult, 1)
	go func() {
		var res api.TaskResult
		resp, err := f.Request(2*time.Minute, "POST", "/v1/tasks", doomed.Token, wasmTask(guestB64(t, "sleep")))
		if err == nil && resp.Status == 200 {
			_ = json.Unmarshal(resp.Body, &res)
		}
		done <- res
	}()
	waitFor(t, 20*time.Second, "the task running on the follower", func() bool {
		cl, err := f.View()
		if err != nil {
			return false
		}
		for _, m := range cl.Members {
			if m.ID == f.ID() && m.Load != nil && m.Load.Running == 1 {
				return true
			}
		}
		return false
	})

	// The follower stops hearing the log: revoke, change the bundle, and
	// write enough after them that the leader's snapshot replaces them.
	f.Pause()
	resumed := false
	defer func() {
		if !resumed {
			f.Resume()
		}
	}()
	l.JSON("DELETE", "/v1/leases/"+doomed.LeaseID, l.Token, nil, 204, nil)
	if st, body := l.Do("PUT", "/v1/policy", l.Token, []byte(restoreBundleDenied), "Content-Type", "application/yaml"); st != 200 {
		t.Fatalf("put policy: %d %s", st, body)
	}
	for range 40 {
		l.JSON("POST", "/v1/leases", l.Token, api.LeaseRequest{Tenant: "demo", Intent: "long_task"}, 201, nil)
	}
	l.JSON("POST", "/v1/cluster/snapshot", l.Token, nil, 200, nil)
	f.Resume()
	resumed = true

	select {
	case res := <-done:
		if res.Outcome != "terminated:revoked" {
			t.Fatalf("the task under the revoked lease ended %q, want terminated:revoked", res.Outcome)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the task under the revoked lease still runs on the restored follower")
	}
	if got := probeOn(f); !strings.Contains(got, "global.deny") {
		t.Fatalf("after the restore the follower does not apply the new deny list: %s", got)
	}
	logs := f.Logs()
	if !strings.Contains(logs, "Installed remote snapshot") || !strings.Contains(logs, "restored from a snapshot") {
		t.Fatalf("the follower did not catch up by snapshot; the test proves nothing:\n%s", tail(logs, 4000))
	}
}
