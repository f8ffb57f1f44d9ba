package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/ledger"
)

// The bulk queue on the real binary: durable across kill -9, and taken
// over by the other nodes when the node running the tasks dies
// (docs/scheduling.md).

// submitBulk enqueues n bulk tasks of the bulk guest through node (from 8
// clients), with idempotency keys keyPrefix0…, and returns their ids.
func submitBulk(t *testing.T, node *nodetest.Node, token, keyPrefix string, n int, env map[string]string) []string {
	t.Helper()
	wasm := guestB64(t, "bulk")
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				req := api.TaskRequest{Module: api.Module{WASM: &wasm}, Env: api.StringEnv(env), IdempotencyKey: fmt.Sprint(keyPrefix, i)}
				var acc api.Accepted
				if err := node.TryJSON("POST", "/v1/tasks", token, req, 202, &acc); err != nil {
					errs <- err
					return
				}
				ids[i] = acc.TaskID
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// bulkTasks lists every bulk task through node, page by page.
func bulkTasks(node *nodetest.Node, state string) ([]api.Task, error) {
	var out []api.Task
	cursor := ""
	for {
		var page api.TaskList
		if err := node.TryJSON("GET", "/v1/tasks?limit=200&state="+state+"&cursor="+cursor, node.Token, nil, 200, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Tasks...)
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

func countState(node *nodetest.Node, state string) int {
	tasks, err := bulkTasks(node, state)
	if err != nil {
		return -1
	}
	return len(tasks)
}

// allFinal reports whether every bulk task is in a final state, from one
// listing (two, one per state, can miss a task that moves from running to
// queued between them: a reclaim).
func allFinal(node *nodetest.Node) bool {
	tasks, err := bulkTasks(node, "")
	if err != nil {
		return false
	}
	for _, task := range tasks {
		if task.State == api.TaskQueued || task.State == api.TaskRunning {
			return false
		}
	}
	return true
}

// checkFinished checks every task reached a final state with at most one
// successful attempt, and returns how many attempts were abandoned.
func checkFinished(t *testing.T, node *nodetest.Node, ids []string, want int) (abandoned map[string]int) {
	t.Helper()
	abandoned = map[string]int{}
	tasks, err := bulkTasks(node, "")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]api.Task{}
	for _, task := range tasks {
		byID[task.TaskID] = task
	}
	for _, id := range ids {
		task, ok := byID[id]
		if !ok {
			t.Fatalf("task %s is gone", id)
		}
		oks := 0
		for _, a := range task.History {
			switch a.Outcome {
			case "ok":
				oks++
			case "abandoned":
				abandoned[a.Node+" "+a.Reason]++
			}
		}
		if oks > 1 {
			t.Errorf("task %s succeeded %d times: %+v", id, oks, task.History)
		}
		if task.State != api.TaskSucceeded || oks != 1 {
			t.Errorf("task %s: %s after %d attempts: %+v", id, task.State, task.Attempts, task.History)
		}
	}
	if len(ids) != want {
		t.Fatalf("%d tasks, want %d", len(ids), want)
	}
	return abandoned
}

// TestBulkSurvivesKill: 100 bulk tasks, kill -9 the node mid-run,
// restart it: every task reaches a final state, none succeeds twice.
func TestBulkSurvivesKill(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath(), Args: []string{"--slots", "4", "--claim-ttl", "2s", "--shutdown-grace", "300ms"}})
	var l api.Lease
	n.JSON("POST", "/v1/leases", n.Token, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task", Class: "bulk"}, 201, &l)
	start := time.Now()
	ids := submitBulk(t, n, l.Token, "job-", 100, map[string]string{"SLEEP_MS": "100"})
	// A repeat of a key is the same task.
	again := submitBulk(t, n, l.Token, "job-", 1, map[string]string{"SLEEP_MS": "100"})
	if again[0] != ids[0] {
		t.Fatalf("job-0 again is %s, want %s", again[0], ids[0])
	}
	t.Logf("100 tasks enqueued in %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, 60*time.Second, "a quarter of the tasks done", func() bool { return countState(n, "succeeded") >= 25 })
	running := countState(n, "running")
	n.Kill()
	t.Logf("killed with %d tasks running", running)
	n.Restart()
	waitFor(t, 90*time.Second, "every task finished", func() bool {
		return allFinal(n)
	})
	abandoned := checkFinished(t, n, ids, 100)
	t.Logf("all done %v after the start; abandoned attempts: %v", time.Since(start).Round(time.Millisecond), abandoned)
	// Every attempt that ran to its end left a receipt: each task's
	// successful attempt is in the ledger.
	okReceipts := receiptsByTask(t, n)
	twice := 0
	for _, id := range ids {
		switch k := okReceipts[id]; {
		case k == 0:
			t.Errorf("no ok receipt for %s in the ledger", id)
		case k > 1:
			// At least once: an attempt that ended just before the kill,
			// whose completion never reached Raft, ran again.
			twice++
		}
	}
	t.Logf("%d tasks have two ok receipts (ran again after the kill)", twice)

	t.Run("a graceful stop queues the running attempt again", func(t *testing.T) {
		ids := submitBulk(t, n, l.Token, "stop-", 1, map[string]string{"SLEEP_MS": "3000"})
		waitFor(t, 10*time.Second, "the task running", func() bool { return countState(n, "running") == 1 })
		time.Sleep(200 * time.Millisecond)
		if err := n.Stop(20 * time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		n.Restart()
		var task api.Task
		waitFor(t, 30*time.Second, "the task finished", func() bool {
			return n.TryJSON("GET", "/v1/tasks/"+ids[0], n.Token, nil, 200, &task) == nil && task.State == api.TaskSucceeded
		})
		if len(task.History) != 2 || task.History[0].Outcome != "terminated:shutdown" || task.History[1].Outcome != "ok" {
			t.Fatalf("history %+v", task.History)
		}
	})

	t.Run("cli", func(t *testing.T) {
		leash := func(args ...string) (string, error) {
			cmd := exec.Command(nodetest.Binary(t), args...)
			cmd.Env = append(os.Environ(), "LEASH_URL="+n.URL(), "LEASH_TOKEN="+n.Token)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		guest := filepath.Join(nodetest.RepoRoot(), "build", "guests", "bulk.wasm")
		out, err := leash("tasks", "submit", guest, "--intent", "roomy_task", "--idempotency-key", "cli-1", "--wait")
		if err != nil || !strings.Contains(out, "attempt=1 key=cli-1") {
			t.Fatalf("tasks submit --wait: %v\n%s", err, out)
		}
		id, err := leash("tasks", "submit", guest, "--intent", "roomy_task", "--idempotency-key", "cli-1")
		id = strings.TrimSpace(id)
		if err != nil || !strings.HasPrefix(id, "tsk_") {
			t.Fatalf("tasks submit: %v %s", err, id)
		}
		if out, err := leash("tasks", "get", id); err != nil || !strings.Contains(out, `"state": "succeeded"`) {
			t.Fatalf("tasks get: %v\n%s", err, out)
		}
		if out, err := leash("tasks", "list", "--state", "succeeded", "--limit", "3"); err != nil || strings.Count(out, "succeeded") != 3 || !strings.Contains(out, "more: --cursor") {
			t.Fatalf("tasks list: %v\n%s", err, out)
		}
		if out, err := leash("tasks", "cancel", id); err == nil || !strings.Contains(out, "task_finished") {
			t.Fatalf("tasks cancel of a finished task: %v\n%s", err, out)
		}
	})
}

// receiptsByTask counts the ledger's ok receipts per task.
func receiptsByTask(t *testing.T, n *nodetest.Node) map[string]int {
	t.Helper()
	st, b := n.Do("GET", "/v1/ledger/export", n.Token, nil)
	if st != 200 {
		t.Fatalf("export: %d", st)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Envelope struct {
				Payload string `json:"payload"`
			} `json:"envelope"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		payload, err := base64.StdEncoding.DecodeString(rec.Envelope.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			TaskID  string `json:"task_id"`
			Outcome string `json:"outcome"`
		}
		if err := json.Unmarshal(payload, &r); err != nil {
			t.Fatal(err)
		}
		if r.Outcome == "ok" {
			out[r.TaskID]++
		}
	}
	return out
}

// TestBulkClusterFailover: three nodes; kill -9 a node running bulk
// tasks, and the other two finish them once its claims expire.
func TestBulkClusterFailover(t *testing.T) {
	c := startCluster(t, 3, "--claim-ttl", "2s")
	a := c.Nodes[0]
	var l api.Lease
	a.JSON("POST", "/v1/leases", a.Token, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task", Class: "bulk"}, 201, &l)
	ids := submitBulk(t, a, l.Token, "job-", 36, map[string]string{"SLEEP_MS": "400"})

	// Find a node running tasks now, and kill it.
	var victim *nodetest.Node
	waitFor(t, 30*time.Second, "a node running bulk tasks", func() bool {
		tasks, err := bulkTasks(a, "running")
		if err != nil || len(tasks) == 0 {
			return false
		}
		for _, node := range c.Nodes {
			if node.ID() == tasks[0].Node {
				victim = node
			}
		}
		return victim != nil
	})
	victimID := victim.ID()
	victim.Kill()
	t.Logf("killed %s", victimID)
	var live *nodetest.Node
	for _, node := range c.Live() {
		live = node
	}
	waitFor(t, 60*time.Second, "the live nodes finish every task", func() bool {
		return allFinal(live)
	})
	abandoned := checkFinished(t, live, ids, 36)
	if abandoned[victimID+" claim_expired"] == 0 {
		t.Errorf("no attempt of %s was reclaimed: %v", victimID, abandoned)
	}
	// Every attempt of every task has exactly one receipt; an attempt lost
	// with the victim got its receipt from the node that reclaimed it
	// (terminated:node_lost), unless the victim's own made it first.
	waitFor(t, 30*time.Second, "a receipt for every attempt", func() bool {
		byTask := ledgerReceipts(t, live)
		lost := 0
		for _, id := range ids {
			var task api.Task
			if live.TryJSON("GET", "/v1/tasks/"+id, live.Token, nil, 200, &task) != nil {
				return false
			}
			for _, a := range task.History {
				outs := byTask[id][a.Attempt]
				if len(outs) > 1 {
					t.Fatalf("task %s attempt %d has %d receipts: %v", id, a.Attempt, len(outs), outs)
				}
				if len(outs) == 0 {
					return false
				}
				if outs[0] == "terminated:node_lost" {
					lost++
				}
			}
		}
		t.Logf("%d lost attempts' receipts appended by the reclaiming node", lost)
		return true
	})
	ran := map[string]int{}
	tasks, _ := bulkTasks(live, "succeeded")
	for _, task := range tasks {
		ran[task.History[len(task.History)-1].Node]++
	}
	if ran[victimID] == len(ids) {
		t.Error("the dead node finished every task")
	}
	t.Logf("reclaimed: %v; succeeded by node: %v", abandoned, ran)
	// A module of several MiB is replicated in chunks and runs on any
	// node (a guest with a 5 MiB custom section: big, quick to compile).
	big := base64.StdEncoding.EncodeToString(nodetest.WithCustomSection(guestBytes(t, "bulk"), make([]byte, 5<<20)))
	var acc api.Accepted
	if err := live.TryJSON("POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{WASM: &big}}, 202, &acc); err != nil {
		t.Fatal(err)
	}
	var bt api.Task
	waitFor(t, 30*time.Second, "the big module's task finished", func() bool {
		return live.TryJSON("GET", "/v1/tasks/"+acc.TaskID, live.Token, nil, 200, &bt) == nil && bt.State != api.TaskQueued && bt.State != api.TaskRunning
	})
	if b, _ := bt.Result.Response.Bytes(); bt.State != api.TaskSucceeded || !strings.Contains(string(b), "attempt=1") {
		t.Fatalf("a 5 MiB module: %s %s %q", bt.State, bt.Outcome, b)
	}

	// Any node answers for any task.
	var task api.Task
	if err := live.TryJSON("GET", "/v1/tasks/"+ids[0], live.Token, nil, 200, &task); err != nil || task.State != api.TaskSucceeded {
		t.Fatalf("task on %s: %v %+v", live.ID(), err, task)
	}
	if b, _ := json.Marshal(task); !strings.Contains(string(b), `"history"`) {
		t.Fatalf("no history: %s", b)
	}
}

// ledgerReceipts reads n's ledger export: the outcomes of every receipt,
// by task and attempt.
func ledgerReceipts(t *testing.T, n *nodetest.Node) map[string]map[int][]string {
	t.Helper()
	st, body := n.Do("GET", "/v1/ledger/export", n.Token, nil)
	if st != 200 {
		t.Fatalf("export: %d %s", st, body)
	}
	out := map[string]map[int][]string{}
	for _, line := range bytes.Split(body, []byte("\n")) {
		var rec struct {
			Envelope json.RawMessage `json:"envelope"`
		}
		if len(line) == 0 || json.Unmarshal(line, &rec) != nil {
			continue
		}
		env, err := ledger.DecodeEnvelope(rec.Envelope)
		if err != nil {
			t.Fatalf("export line: %v", err)
		}
		var rc ledger.Receipt
		if json.Unmarshal(env.Payload, &rc) != nil {
			continue
		}
		if out[rc.TaskID] == nil {
			out[rc.TaskID] = map[int][]string{}
		}
		out[rc.TaskID][rc.Attempt] = append(out[rc.TaskID][rc.Attempt], rc.Outcome)
	}
	return out
}
