package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestRecoverFromOneNode: a whole cluster is lost (kill -9 of every
// node); a copy of one node's data dir becomes a new one-voter cluster
// with `leash recover`, keeping leases, receipts and the ledger.
func TestRecoverFromOneNode(t *testing.T) {
	c := nodetest.StartCluster(t, nodetest.ClusterOptions{N: 3, Policy: policyPath()})
	leader := c.Leader(10 * time.Second)
	l := issue(t, leader, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})
	res := runTask(t, leader, l.Token, wasmTask(guestB64(t, "minimal")))
	if res.Receipt == nil {
		t.Fatal("no receipt")
	}
	c.Converged(10 * time.Second)
	survivor := c.Nodes[1]
	for _, n := range c.Nodes {
		n.Kill()
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if out, err := exec.Command("cp", "-a", survivor.DataDir, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	_ = os.Remove(filepath.Join(dir, "node.log"))
	ip := nodetest.RandomLoopbackIP()
	raftAddr := nodetest.FreePortOn(t, ip)
	out, err := exec.Command(nodetest.Binary(t), "recover", "--data", dir, "--raft-addr", raftAddr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is now the only voter") {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	n := nodetest.Start(t, nodetest.Options{DataDir: dir, IP: ip, Policy: policyPath(),
		Args: []string{"--raft-addr", raftAddr}, Env: []string{"LEASH_CLUSTER_SECRET=" + c.Secret}})

	// The old lease works and the old receipts are in the ledger.
	if again := runTask(t, n, l.Token, wasmTask(guestB64(t, "minimal"))); again.Outcome != "ok" || again.Receipt == nil || again.Receipt.Index <= res.Receipt.Index {
		t.Fatalf("after recovery: %+v", again)
	}
	st, b := n.Do("GET", "/v1/ledger/receipts/0", n.Token, nil)
	if st != 200 || !strings.Contains(string(b), `"index":0`) {
		t.Fatalf("receipt 0: %d %s", st, b)
	}
}
