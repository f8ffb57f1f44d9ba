package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestOffloadOutcomeUnknown: a saturated node offloads a task to a free
// peer, which dies while it runs. The node does not run the task again
// (it may have had effects there): it answers 503 outcome_unknown, naming
// the task's id (in Leash-Task-Id and the message) so that the client can
// look the task up.
func TestOffloadOutcomeUnknown(t *testing.T) {
	c := startCluster(t, 3, "--slots", "1")
	a := c.Nodes[0]
	var long, l api.Lease
	a.JSON("POST", "/v1/leases", a.Token, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"}, 201, &long)
	a.JSON("POST", "/v1/leases", a.Token, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"}, 201, &l)
	busy := make(chan string, 1)
	go func() {
		resp, err := a.Request(60*time.Second, "POST", "/v1/tasks", long.Token, wasmTask(guestB64(t, "sleep")))
		if err != nil {
			busy <- err.Error()
			return
		}
		var res api.TaskResult
		_ = json.Unmarshal(resp.Body, &res)
		busy <- res.Outcome
	}()
	running := func(n *nodetest.Node) int {
		cl, err := a.View()
		if err != nil {
			return -1
		}
		if m := memberByID(cl, n.ID()); m != nil && m.Load != nil {
			return int(m.Load.Running)
		}
		return -1
	}
	waitFor(t, 10*time.Second, "a busy, its peers free", func() bool {
		return running(a) == 1 && running(c.Nodes[1]) == 0 && running(c.Nodes[2]) == 0
	})
	time.Sleep(500 * time.Millisecond) // gossip of the peers' load

	type answer struct {
		resp *nodetest.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := a.Request(60*time.Second, "POST", "/v1/tasks", l.Token, wasmTask(guestB64(t, "sleep")))
		got <- answer{resp, err}
	}()
	var peer *nodetest.Node
	waitFor(t, 10*time.Second, "the task running on a peer", func() bool {
		for _, n := range c.Nodes[1:] {
			if running(n) == 1 {
				peer = n
				return true
			}
		}
		return false
	})
	peer.Kill()
	t.Logf("killed %s while it ran the offloaded task", peer.ID())
	ans := <-got
	if ans.err != nil {
		t.Fatal(ans.err)
	}
	id := ans.resp.Header.Get("Leash-Task-Id")
	if ans.resp.Status != 503 || codeOf(ans.resp.Body) != "outcome_unknown" || !regexp.MustCompile(`^tsk_[a-z2-7]{26}$`).MatchString(id) || !strings.Contains(string(ans.resp.Body), id) {
		t.Fatalf("answer after the peer died: %d %s (task id %q)", ans.resp.Status, ans.resp.Body, id)
	}
	// It did not run here: a's one slot still holds the long task alone.
	if r := running(a); r != 1 {
		t.Fatalf("a runs %d tasks after the peer died, want only the long one", r)
	}
	a.JSON("DELETE", "/v1/leases/"+long.LeaseID, a.Token, nil, 204, nil)
	if out := <-busy; out != "terminated:revoked" {
		t.Fatalf("the long task ended %q", out)
	}
}
