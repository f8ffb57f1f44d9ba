package e2e

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestSpooledReceiptsSurviveCrash: with --receipt-ack spool a task's
// answer goes out once its receipt is fsynced in the node's spool, before
// it is in the ledger. Tasks run under load while the node is killed with
// SIGKILL; after a restart every acknowledged task's receipt is in the
// replicated ledger, exactly once.
func TestSpooledReceiptsSurviveCrash(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath(), Args: []string{"--receipt-ack", "spool"}})
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})
	wasm := guestB64(t, "minimal")

	// One task first: its answer has no receipt index (it is not in the
	// ledger yet, by contract); its record gets the index once appended.
	var first api.TaskResult
	n.JSON("POST", "/v1/tasks", l.Token, wasmTask(wasm), 200, &first)
	if first.Outcome != "ok" || first.Receipt != nil || first.ReceiptError != "" {
		t.Fatalf("spooled answer: outcome %q receipt %+v receipt_error %q", first.Outcome, first.Receipt, first.ReceiptError)
	}
	var rec api.Task
	deadline := time.Now().Add(30 * time.Second)
	for {
		n.JSON("GET", "/v1/tasks/"+first.TaskID, l.Token, nil, 200, &rec)
		if rec.Result != nil && rec.Result.Receipt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s's record never got its receipt index: %+v", first.TaskID, rec.Result)
		}
		time.Sleep(20 * time.Millisecond)
	}

	acks := make(chan string, 100000)
	acks <- first.TaskID
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for w := 0; w < 8; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var res api.TaskResult
				if err := n.TryJSON("POST", "/v1/tasks", l.Token, wasmTask(wasm), 200, &res); err != nil {
					return // the node died under us
				}
				acks <- res.TaskID
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	n.Kill()
	close(stop)
	workers.Wait()
	close(acks)
	want := map[string]bool{}
	for id := range acks {
		want[id] = true
	}
	if len(want) < 2 {
		t.Fatal("no task was acknowledged under load before the kill")
	}
	n.Restart()

	// The restarted node appends its spool (at start, and every few
	// seconds while a leader is reachable).
	var seen map[string]int
	var size int
	deadline = time.Now().Add(60 * time.Second)
	for {
		seen, size = ledgerTasks(t, n)
		missing := 0
		for id := range want {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged tasks have no receipt in the ledger after the restart", missing, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("task %s has %d receipts in the ledger, want 1", id, k)
		}
	}
	if got := seen[first.TaskID]; got != 1 {
		t.Errorf("first task: %d receipts", got)
	}
	t.Logf("%d acknowledged tasks, %d receipts in the ledger after the crash", len(want), size)
}

// ledgerTasks reads the ledger's export: how many receipts name each
// task, and the ledger's size.
func ledgerTasks(t *testing.T, n *nodetest.Node) (map[string]int, int) {
	t.Helper()
	st, exp := n.Do("GET", "/v1/ledger/export", n.Token, nil)
	if st != 200 {
		t.Fatalf("export: %d %s", st, exp)
	}
	seen := map[string]int{}
	lines := strings.Split(strings.TrimSpace(string(exp)), "\n")
	for i, line := range lines {
		if line == "" {
			continue
		}
		var rec struct {
			Index    int64 `json:"index"`
			Envelope struct {
				Payload []byte `json:"payload"`
			} `json:"envelope"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Index != int64(i) {
			t.Fatalf("export line %d: %v", i, err)
		}
		var r struct {
			TaskID string `json:"task_id"`
		}
		_ = json.Unmarshal(rec.Envelope.Payload, &r)
		if r.TaskID != "" {
			seen[r.TaskID]++
		}
	}
	return seen, len(lines)
}
