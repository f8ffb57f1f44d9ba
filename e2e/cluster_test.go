package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// The cluster suite: real processes on their own loopback addresses,
// killed (-9), paused (SIGSTOP), cut off (iptables) and restarted, under
// a steady load of lease issues, revocations and tasks spread over every
// node. docs/cluster.md lists which test backs which guarantee.

// clusterArgs are the timings every cluster test uses: short enough for
// a quick suite, long enough not to flap on two busy cores.
func clusterArgs(extra ...string) []string {
	return append([]string{"--write-timeout", "3s", "--join-timeout", "10s", "--dead-timeout", "10s", "--slots", "4"}, extra...)
}

func startCluster(t *testing.T, n int, extra ...string) *nodetest.Cluster {
	t.Helper()
	return nodetest.StartCluster(t, nodetest.ClusterOptions{N: n, Policy: policyPath(), Args: clusterArgs(extra...)})
}

func memberByID(cl api.Cluster, id string) *api.Member {
	for i := range cl.Members {
		if cl.Members[i].ID == id {
			return &cl.Members[i]
		}
	}
	return nil
}

// TestClusterMembership: joining with and without the secret, the
// cluster view and `leash members`, a graceful leave removed at once, a
// dead node removed after the timeout, and both coming back.
func TestClusterMembership(t *testing.T) {
	c := startCluster(t, 3, "--dead-timeout", "3s")
	leader := c.Leader(10 * time.Second)

	t.Run("view", func(t *testing.T) {
		// A member joins as a non-voter and is promoted once caught up:
		// wait for the promotions first.
		waitFor(t, 20*time.Second, "three voters", func() bool {
			cl, err := leader.View()
			if err != nil {
				return false
			}
			voters := 0
			for _, m := range cl.Members {
				if m.Suffrage == "voter" {
					voters++
				}
			}
			return voters == 3
		})
		for _, n := range c.Nodes {
			cl, err := n.View()
			if err != nil {
				t.Fatal(err)
			}
			if cl.Leader == nil || cl.Leader.ID != leader.ID() || cl.Node != n.ID() {
				t.Fatalf("%s: leader %+v, node %q", n.ID(), cl.Leader, cl.Node)
			}
			voters := 0
			for _, m := range cl.Members {
				if m.Suffrage == "voter" && m.State == "alive" && m.AppliedIndex > 0 && m.Load != nil && m.Load.Slots == 4 && m.StateDigest != "" {
					voters++
				}
			}
			if voters != 3 {
				t.Fatalf("%s sees %d healthy voters: %+v", n.ID(), voters, cl.Members)
			}
		}
		cmd := exec.Command(nodetest.Binary(t), "members")
		cmd.Env = append(cmd.Environ(), "LEASH_URL="+c.Nodes[1].URL())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("leash members: %v\n%s", err, out)
		}
		for _, n := range c.Nodes {
			if !strings.Contains(string(out), n.ID()) {
				t.Fatalf("leash members does not list %s:\n%s", n.ID(), out)
			}
		}
		if !strings.Contains(string(out), "leader: "+leader.ID()) {
			t.Fatalf("leash members does not name the leader:\n%s", out)
		}
	})

	t.Run("a node without the secret cannot join", func(t *testing.T) {
		for name, env := range map[string]string{
			"wrong secret": "LEASH_CLUSTER_SECRET=" + strings.Repeat("0", 64),
			"no secret":    "LEASH_CLUSTER_SECRET=",
		} {
			n := c.Join(nodetest.Options{NoWait: true, Env: []string{env}, Args: []string{"--join-timeout", "3s"}})
			err, exited := n.Exited(30 * time.Second)
			if !exited || err == nil {
				t.Fatalf("%s: node still running or exited 0 (%v)", name, err)
			}
			if !strings.Contains(n.Logs(), "no member answered") && !strings.Contains(n.Logs(), "no cluster secret") {
				t.Fatalf("%s: exit without a clear reason:\n%s", name, tail(n.Logs(), 2000))
			}
			cl, err := leader.View()
			if err != nil {
				t.Fatal(err)
			}
			if memberByID(cl, n.ID()) != nil || len(cl.Members) != 3 {
				t.Fatalf("%s: the outsider is a member: %+v", name, cl.Members)
			}
		}
	})

	t.Run("graceful leave is removed at once", func(t *testing.T) {
		f := follower(t, c, leader)
		id := f.ID()
		start := time.Now()
		if err := f.Stop(20 * time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		waitFor(t, 5*time.Second, "the leaving node removed from raft", func() bool {
			cl, err := leader.View()
			if err != nil {
				return false
			}
			m := memberByID(cl, id)
			return m == nil || m.Suffrage == "none"
		})
		t.Logf("left node removed %v after SIGTERM", time.Since(start).Round(time.Millisecond))
		f.Restart()
		c.WaitMembers(30*time.Second, 3)
	})

	t.Run("dead node is removed after the timeout", func(t *testing.T) {
		f := follower(t, c, leader)
		id := f.ID()
		f.Kill()
		killed := time.Now()
		waitFor(t, 30*time.Second, "the dead node removed from raft", func() bool {
			cl, err := leader.View()
			if err != nil {
				return false
			}
			m := memberByID(cl, id)
			return m == nil || m.Suffrage == "none"
		})
		took := time.Since(killed)
		if took < 3*time.Second {
			t.Fatalf("removed after %v, before the dead timeout", took)
		}
		t.Logf("dead node removed %v after kill -9", took.Round(time.Millisecond))
		// Two voters left: quorum of 3 is 2, so the leader may not remove
		// another voter by itself; it brings the node back on restart.
		f.Restart()
		c.WaitMembers(30*time.Second, 3)
	})
}

func follower(t *testing.T, c *nodetest.Cluster, leader *nodetest.Node) *nodetest.Node {
	t.Helper()
	for _, n := range c.Live() {
		if n != leader && n.ID() != leader.ID() {
			return n
		}
	}
	t.Fatal("no follower")
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// history is the record of every operation the load clients made.
type history struct {
	mu  sync.Mutex
	ops []op
}

type op struct {
	client int
	kind   string // issue, revoke, task
	node   string
	lease  string
	start  time.Time
	end    time.Time
	status int // 0: transport error
	code   string
	index  uint64
	detail string
}

func (h *history) add(o op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

type clientLease struct {
	id, token string
	revoking  bool
}

// load runs clients that issue, revoke and run tasks on random nodes
// until stop is closed.
func load(t *testing.T, c *nodetest.Cluster, clients int, h *history, stop <-chan struct{}) *sync.WaitGroup {
	minimal := guestB64(t, "minimal")
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var leases []*clientLease
			for {
				select {
				case <-stop:
					return
				default:
				}
				nodes := c.Nodes
				n := nodes[rand.IntN(len(nodes))]
				if n.Paused() {
					continue
				}
				o := op{client: i, node: n.IP(), start: time.Now()}
				r := rand.IntN(4)
				switch {
				case r <= 1 || len(leases) == 0:
					o.kind = "issue"
					resp, err := n.Request(10*time.Second, "POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task", TTLSeconds: 600})
					o.end = time.Now()
					if err == nil {
						o.status, o.code = resp.Status, codeOf(resp.Body)
						o.index, _ = strconv.ParseUint(resp.Header.Get("Leash-Index"), 10, 64)
						if resp.Status == 201 {
							var l api.Lease
							_ = json.Unmarshal(resp.Body, &l)
							o.lease = l.LeaseID
							leases = append(leases, &clientLease{id: l.LeaseID, token: l.Token})
						}
					} else {
						o.detail = err.Error()
					}
				case r == 2:
					l := leases[rand.IntN(len(leases))]
					o.kind, o.lease = "revoke", l.id
					l.revoking = true
					resp, err := n.Request(10*time.Second, "DELETE", "/v1/leases/"+l.id, n.Token, nil)
					o.end = time.Now()
					if err == nil {
						o.status, o.code = resp.Status, codeOf(resp.Body)
						o.index, _ = strconv.ParseUint(resp.Header.Get("Leash-Index"), 10, 64)
					} else {
						o.detail = err.Error()
					}
				default:
					l := leases[rand.IntN(len(leases))]
					o.kind, o.lease = "task", l.id
					resp, err := n.Request(10*time.Second, "POST", "/v1/tasks", l.token, wasmTask(minimal))
					o.end = time.Now()
					if err == nil {
						o.status, o.code = resp.Status, codeOf(resp.Body)
						if resp.Status == 200 {
							var res api.TaskResult
							_ = json.Unmarshal(resp.Body, &res)
							o.detail = res.Outcome
						}
					} else {
						o.detail = err.Error()
					}
				}
				h.add(o)
				time.Sleep(time.Duration(10+rand.IntN(30)) * time.Millisecond)
			}
		}()
	}
	return &wg
}

func codeOf(b []byte) string {
	var eb struct {
		Error api.Error `json:"error"`
	}
	if json.Unmarshal(b, &eb) == nil {
		return eb.Error.Code
	}
	return ""
}

// check verifies the history against the final state on node n:
//   - every client-visible error is retryable (503 no_leader, queue
//     full, or a node that is down);
//   - acknowledged writes have distinct indexes, and a write acknowledged
//     before another started has the smaller index (linearizable order);
//   - no acknowledged write is lost: every acknowledged lease exists,
//     every acknowledged revocation holds;
//   - a task that started more than 1 s after its lease's revocation was
//     acknowledged was refused.
func (h *history) check(t *testing.T, n *nodetest.Node) {
	t.Helper()
	h.mu.Lock()
	ops := append([]op(nil), h.ops...)
	h.mu.Unlock()
	counts := map[string]int{}
	var acked []op
	revokedAt := map[string]time.Time{}
	revokeTried := map[string]bool{}
	issuedAt := map[string]time.Time{}
	for _, o := range ops {
		key := fmt.Sprintf("%s %d %s", o.kind, o.status, o.code)
		counts[key]++
		switch {
		case o.status == 0, o.status == 503:
			// Retryable: the node is down or cut off, or there is no leader.
			if o.status == 503 && !slices.Contains(allowed503, o.code) {
				t.Errorf("503 with code %q: %+v", o.code, o)
			}
		case o.kind == "issue" && o.status == 201, o.kind == "revoke" && o.status == 204:
			if o.index == 0 {
				t.Errorf("acknowledged write without an index: %+v", o)
			}
			acked = append(acked, o)
			if o.kind == "revoke" {
				if prev, ok := revokedAt[o.lease]; !ok || o.end.Before(prev) {
					revokedAt[o.lease] = o.end
				}
			} else {
				issuedAt[o.lease] = o.end
			}
		case o.kind == "task" && (o.status == 200 || o.status == 403 || o.status == 401):
		default:
			t.Errorf("unexpected answer: %+v", o)
		}
		if o.kind == "revoke" {
			revokeTried[o.lease] = true
		}
	}
	t.Logf("history: %d operations: %v", len(ops), counts)
	for _, o := range ops {
		if o.kind != "task" {
			continue
		}
		rev, revoked := revokedAt[o.lease]
		switch o.status {
		case 200:
			if revoked && o.start.After(rev.Add(time.Second)) {
				t.Errorf("task ran %v after its lease's revocation was acknowledged: %+v", o.start.Sub(rev), o)
			}
		case 403:
			if !revokeTried[o.lease] {
				t.Errorf("task refused for a lease nobody revoked: %+v", o)
			}
		case 401:
			// A node a few milliseconds behind may not know a brand-new
			// lease yet; never later than a second.
			if o.code != api.CodeLeaseUnknown || o.start.After(issuedAt[o.lease].Add(time.Second)) {
				t.Errorf("task on %s refused with %s %v after the lease was issued: %+v", o.node, o.code, o.start.Sub(issuedAt[o.lease]), o)
			}
		}
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i].index < acked[j].index })
	for i := 1; i < len(acked); i++ {
		if acked[i].index == acked[i-1].index {
			t.Errorf("two acknowledged writes at index %d: %+v %+v", acked[i].index, acked[i-1], acked[i])
		}
	}
	// Real-time order: if a ended before b started, a.index < b.index.
	for i := range acked {
		for j := i + 1; j < len(acked); j++ {
			if acked[j].end.Before(acked[i].start) {
				t.Errorf("order violated: %s %s (index %d) was acknowledged before %s %s (index %d) started",
					acked[j].kind, acked[j].lease, acked[j].index, acked[i].kind, acked[i].lease, acked[i].index)
			}
		}
	}
	// Nothing acknowledged is lost.
	for _, o := range acked {
		var l api.Lease
		st, b, err := n.Try("GET", "/v1/leases/"+o.lease, n.Token, nil)
		if err != nil || st != 200 || json.Unmarshal(b, &l) != nil {
			t.Errorf("acknowledged %s of %s lost: %d %s %v", o.kind, o.lease, st, b, err)
			continue
		}
		if o.kind == "revoke" && !l.Revoked {
			t.Errorf("acknowledged revocation of %s lost", o.lease)
		}
	}
	t.Logf("history: %d acknowledged writes checked", len(acked))
}

// TestClusterFaults runs three nodes under load and, in turn, kills the
// leader, restarts it, cuts the leader off in a minority, pauses a
// follower, then checks the history and convergence; finally it wipes a
// follower and checks it is re-seeded by a snapshot.
func TestClusterFaults(t *testing.T) {
	nodetest.RequirePacketFilter(t)
	c := startCluster(t, 3, "--trailing-logs", "16")
	h := &history{}
	stop := make(chan struct{})
	wg := load(t, c, 4, h, stop)
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	time.Sleep(2 * time.Second)

	t.Run("kill the leader", func(t *testing.T) {
		old := c.Leader(10 * time.Second)
		oldID := old.ID()
		old.Kill()
		killed := time.Now()
		nl := c.Leader(10*time.Second, old)
		took := time.Since(killed)
		t.Logf("new leader %s %v after kill -9 of %s", nl.ID(), took.Round(time.Millisecond), oldID)
		if nl.ID() == oldID || took > 5*time.Second {
			t.Fatalf("failover took %v (leader %s)", took, nl.ID())
		}
		time.Sleep(time.Second)
		old.Restart()
		c.WaitMembers(30*time.Second, 3)
	})

	t.Run("partition the leader into a minority", func(t *testing.T) {
		old := c.Leader(10 * time.Second)
		var majority []*nodetest.Node
		for _, n := range c.Nodes {
			if n != old {
				majority = append(majority, n)
			}
		}
		c.Partition([]*nodetest.Node{old}, majority)
		cut := time.Now()
		nl := c.Leader(10*time.Second, old)
		t.Logf("majority elected %s %v after the partition", nl.ID(), time.Since(cut).Round(time.Millisecond))
		// The minority refuses writes with a retryable error…
		resp, err := old.Request(15*time.Second, "POST", "/v1/leases", old.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
		if err != nil || resp.Status != 503 || codeOf(resp.Body) != api.CodeNoLeader || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("write on the minority: %v %+v", err, resp)
		}
		// …and tasks, since its revocations may be stale.
		var l api.Lease
		nl.JSON("POST", "/v1/leases", nl.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, 201, &l)
		resp, err = old.Request(15*time.Second, "POST", "/v1/tasks", l.Token, wasmTask(guestB64(t, "minimal")))
		if err != nil || resp.Status != 503 {
			t.Fatalf("task on the minority: %v %+v", err, resp)
		}
		// The majority goes on.
		for _, n := range majority {
			n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, 201, nil)
		}
		time.Sleep(2 * time.Second)
		c.Heal()
		c.WaitMembers(30*time.Second, 3)
	})

	t.Run("pause a follower", func(t *testing.T) {
		l := c.Leader(10 * time.Second)
		f := follower(t, c, l)
		f.Pause()
		time.Sleep(3 * time.Second)
		f.Resume()
		c.WaitMembers(30*time.Second, 3)
	})

	t.Run("history and convergence", func(t *testing.T) {
		time.Sleep(time.Second)
		stopLoad()
		idx, digest := c.Converged(30 * time.Second)
		t.Logf("converged at index %d, state %s", idx, digest)
		h.check(t, c.Leader(10*time.Second))
	})

	t.Run("restarted node catches up", func(t *testing.T) {
		l := c.Leader(10 * time.Second)
		f := follower(t, c, l)
		if err := f.Stop(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			l.JSON("POST", "/v1/leases", l.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, 201, nil)
		}
		f.Restart()
		c.WaitMembers(30*time.Second, 3)
		c.Converged(30 * time.Second)
	})

	t.Run("wiped node is re-seeded by snapshot", func(t *testing.T) {
		l := c.Leader(10 * time.Second)
		for range 40 {
			l.JSON("POST", "/v1/leases", l.Token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, 201, nil)
		}
		// Snapshot and compact the leader's log (16 trailing entries), so
		// a new member cannot be sent the log from the start.
		l.JSON("POST", "/v1/cluster/snapshot", l.Token, nil, 200, nil)
		f := follower(t, c, l)
		oldID := f.ID()
		f.Kill()
		f.Wipe()
		start := time.Now()
		f.Restart()
		_, digest := c.Converged(60 * time.Second)
		t.Logf("wiped node %s (was %s) ready and converged in %v", f.ID(), oldID, time.Since(start).Round(time.Millisecond))
		if f.ID() == oldID {
			t.Fatal("the wiped node kept its id")
		}
		if !strings.Contains(f.Logs(), "Installed remote snapshot") {
			t.Fatalf("the wiped node did not install a snapshot:\n%s", tail(f.Logs(), 3000))
		}
		t.Logf("wiped node %s re-seeded; state %s", f.ID(), digest)
		// Its old identity is dead and removed after the timeout.
		waitFor(t, 60*time.Second, "the old identity removed", func() bool {
			cl, err := l.View()
			if err != nil {
				return false
			}
			m := memberByID(cl, oldID)
			return m == nil || m.Suffrage == "none"
		})
		c.WaitMembers(60*time.Second, 3)
	})
}

// TestClusterTasks: modules stored on one node run on another, a
// saturated node runs an interactive task on a free peer, and a
// revocation ends running tasks and is refused on every node within 1 s.
func TestClusterTasks(t *testing.T) {
	c := startCluster(t, 3, "--slots", "1")
	a, b, cn := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	lease := func(n *nodetest.Node, intent string) api.Lease {
		t.Helper()
		resp, err := n.Request(10*time.Second, "POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: intent})
		if err != nil || resp.Status != 201 {
			t.Fatalf("lease on %s: %v %+v", n.ID(), err, resp)
		}
		var l api.Lease
		if err := json.Unmarshal(resp.Body, &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	task := func(n *nodetest.Node, token string, req api.TaskRequest) (int, api.TaskResult, []byte) {
		t.Helper()
		resp, err := n.Request(30*time.Second, "POST", "/v1/tasks", token, req)
		if err != nil {
			t.Fatalf("task on %s: %v", n.ID(), err)
		}
		var res api.TaskResult
		if resp.Status == 200 {
			_ = json.Unmarshal(resp.Body, &res)
		}
		return resp.Status, res, resp.Body
	}

	t.Run("module stored on one node runs on another", func(t *testing.T) {
		l := lease(a, "small_task")
		wasm := guestBytes(t, "minimal")
		resp, err := a.Request(10*time.Second, "PUT", "/v1/modules", a.Token, wasm, "Content-Type", "application/wasm")
		if err != nil || resp.Status != 201 {
			t.Fatalf("put module: %v %+v", err, resp)
		}
		var ref api.ModuleRef
		_ = json.Unmarshal(resp.Body, &ref)
		st, res, body := task(b, l.Token, api.TaskRequest{Module: api.Module{Digest: &ref.Digest}})
		if st != 200 || res.Outcome != "ok" || res.Node != b.ID() {
			t.Fatalf("task by digest on another node: %d %s", st, body)
		}
		missing := "sha256:" + strings.Repeat("0", 64)
		if st, _, body := task(cn, l.Token, api.TaskRequest{Module: api.Module{Digest: &missing}}); st != 404 || codeOf(body) != api.CodeModuleNotFound {
			t.Fatalf("unknown digest: %d %s", st, body)
		}
	})

	t.Run("a saturated node runs the task on a free peer", func(t *testing.T) {
		long := lease(a, "roomy_task")
		done := make(chan api.TaskResult, 1)
		go func() {
			resp, err := a.Request(30*time.Second, "POST", "/v1/tasks", long.Token, wasmTask(guestB64(t, "sleep")))
			var res api.TaskResult
			if err == nil && resp.Status == 200 {
				_ = json.Unmarshal(resp.Body, &res)
			}
			done <- res
		}()
		// Wait until a's only slot is taken and its peers know they are free.
		waitFor(t, 10*time.Second, "a busy, its peers free", func() bool {
			cl, err := a.View()
			if err != nil {
				return false
			}
			busy, free := false, 0
			for _, m := range cl.Members {
				if m.Load == nil {
					continue
				}
				if m.ID == a.ID() && m.Load.Running == 1 {
					busy = true
				} else if m.ID != a.ID() && m.Load.Running == 0 {
					free++
				}
			}
			return busy && free == 2
		})
		time.Sleep(500 * time.Millisecond) // gossip of the peers' load
		l := lease(a, "small_task")
		st, res, body := task(a, l.Token, wasmTask(guestB64(t, "minimal")))
		if st != 200 || res.Outcome != "ok" || res.Node == a.ID() || res.Node == "" {
			for _, n := range c.Nodes {
				for _, line := range strings.Split(n.Logs(), "\n") {
					if strings.Contains(line, "offload") || strings.Contains(line, "lease refused") || strings.Contains(line, "/internal/tasks") {
						t.Log(n.ID(), line)
					}
				}
			}
			t.Fatalf("task on a saturated node: %d %s", st, body)
		}
		t.Logf("a (busy) ran the task on %s", res.Node)
		a.JSON("DELETE", "/v1/leases/"+long.LeaseID, a.Token, nil, 204, nil)
		if r := <-done; r.Outcome != "terminated:revoked" {
			t.Fatalf("long task: %+v", r)
		}
	})

	t.Run("revocation is in force on every node within 1s", func(t *testing.T) {
		l := lease(a, "roomy_task")
		type ended struct {
			node string
			res  api.TaskResult
			at   time.Time
		}
		endc := make(chan ended, 2)
		for _, n := range []*nodetest.Node{b, cn} {
			go func() {
				resp, err := n.Request(30*time.Second, "POST", "/v1/tasks", l.Token, wasmTask(guestB64(t, "sleep")))
				var res api.TaskResult
				if err == nil && resp.Status == 200 {
					_ = json.Unmarshal(resp.Body, &res)
				}
				endc <- ended{n.ID(), res, time.Now()}
			}()
		}
		waitFor(t, 10*time.Second, "both tasks running", func() bool {
			for _, n := range []*nodetest.Node{b, cn} {
				cl, err := n.View()
				if err != nil {
					return false
				}
				m := memberByID(cl, n.ID())
				if m == nil || m.Load == nil || m.Load.Running != 1 {
					return false
				}
			}
			return true
		})
		resp, err := a.Request(10*time.Second, "DELETE", "/v1/leases/"+l.LeaseID, a.Token, nil)
		if err != nil || resp.Status != 204 {
			t.Fatalf("revoke: %v %+v", err, resp)
		}
		acked := time.Now()
		// Every node refuses the lease…
		var wg sync.WaitGroup
		for _, n := range c.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					r, err := n.Request(5*time.Second, "POST", "/v1/tasks", l.Token, wasmTask(guestB64(t, "minimal")))
					if err == nil && r.Status == 403 && codeOf(r.Body) == api.CodeLeaseRevoked {
						if d := time.Since(acked); d > time.Second {
							t.Errorf("%s refused the revoked lease only after %v", n.ID(), d)
						} else {
							t.Logf("%s refuses the revoked lease %v after the acknowledgement", n.ID(), d.Round(time.Microsecond))
						}
						return
					}
					if time.Since(acked) > 5*time.Second {
						t.Errorf("%s still accepts the revoked lease", n.ID())
						return
					}
				}
			}()
		}
		// …and the running tasks end as terminated:revoked.
		for range 2 {
			select {
			case e := <-endc:
				if e.res.Outcome != "terminated:revoked" {
					t.Errorf("task on %s: %+v", e.node, e.res)
				}
				if d := e.at.Sub(acked); d > time.Second {
					t.Errorf("task on %s ended %v after the revocation", e.node, d)
				} else {
					t.Logf("running task on %s ended %v after the acknowledgement", e.node, d.Round(time.Microsecond))
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a running task outlived its lease's revocation")
			}
		}
		wg.Wait()
	})
}

func guestBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(guestB64(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
