package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/bulk"
	"github.com/leash-dev/leash/ledger"
)

// bulkHarness drives an in-process node with the bulk test bundle.
type bulkHarness struct {
	t  *testing.T
	tn *testNode
}

func (h *bulkHarness) lease(tenant, intent, class string) api.Lease {
	h.t.Helper()
	var l api.Lease
	h.tn.call(h.t, "POST", "/v1/leases", h.tn.token, api.LeaseRequest{Tenant: tenant, Intent: intent, Class: class}, &l, 201)
	return l
}

func (h *bulkHarness) submit(token, key string, env map[string]string) string {
	h.t.Helper()
	wasm := guestWasm(h.t, "bulk")
	var acc api.Accepted
	h.tn.call(h.t, "POST", "/v1/tasks", token, api.TaskRequest{Module: api.Module{WASM: &wasm}, Env: api.StringEnv(env), IdempotencyKey: key}, &acc, 202)
	return acc.TaskID
}

func (h *bulkHarness) get(id string) api.Task {
	h.t.Helper()
	var task api.Task
	h.tn.call(h.t, "GET", "/v1/tasks/"+id, h.tn.token, nil, &task, 200)
	return task
}

func (h *bulkHarness) wait(id string, timeout time.Duration, ok func(api.Task) bool) api.Task {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		task := h.get(id)
		if ok(task) {
			return task
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("task %s: %+v", id, task)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func final(task api.Task) bool {
	switch task.State {
	case api.TaskSucceeded, api.TaskFailed, api.TaskCancelled, api.TaskDead:
		return true
	}
	return false
}

func body(task api.Task) string {
	if task.Result == nil || task.Result.Response == nil {
		return ""
	}
	b, _ := task.Result.Response.Bytes()
	return string(b)
}

// TestBulkQueue runs the queue end to end on one in-process node:
// idempotency, retries the guest can see, listing, cancellation of a
// running task, a lease revoked between attempts, and the retry budget.
func TestBulkQueue(t *testing.T) {
	tn := startTestNode(t, Config{PolicyFile: "testdata/bulk-policy.yaml", Slots: 4, ClaimTTL: 3 * time.Second, RetryBudgetMin: -1, RetryBudgetRatio: 0.2})
	h := &bulkHarness{t: t, tn: tn}
	alpha := h.lease("alpha", "work", "bulk")

	t.Run("idempotent retry the guest sees", func(t *testing.T) {
		// Prime the budget: a retry needs 20% of first attempts.
		var ids []string
		for i := range 10 {
			ids = append(ids, h.submit(alpha.Token, fmt.Sprint("prime-", i), nil))
		}
		for _, id := range ids {
			h.wait(id, 20*time.Second, final)
		}
		id := h.submit(alpha.Token, "key-1", map[string]string{"FAIL_UNTIL": "2"})
		if again := h.submit(alpha.Token, "key-1", map[string]string{"FAIL_UNTIL": "2"}); again != id {
			t.Fatalf("repeat of the key made task %s, want %s", again, id)
		}
		var eb api.ErrorBody
		wasm := guestWasm(t, "bulk")
		tn.call(t, "POST", "/v1/tasks", alpha.Token, api.TaskRequest{Module: api.Module{WASM: &wasm}, IdempotencyKey: "key-1"}, &eb, 409)
		if eb.Error.Code != api.CodeIdempotencyKey {
			t.Fatalf("key reused with another request: %+v", eb.Error)
		}
		task := h.wait(id, 20*time.Second, final)
		if task.State != api.TaskSucceeded || task.Attempts != 2 || len(task.History) != 2 || task.History[0].Outcome != "error" || task.History[1].Outcome != "ok" {
			t.Fatalf("task = %+v", task)
		}
		if got := body(task); !strings.Contains(got, "attempt=2 key=key-1 task="+id) {
			t.Fatalf("the guest saw %q", got)
		}
		if task.Result.Receipt == nil {
			t.Fatalf("no receipt: %+v", task.Result)
		}
	})

	t.Run("events", func(t *testing.T) {
		var ids api.TaskList
		tn.call(t, "GET", "/v1/tasks?tenant=alpha&state=succeeded&limit=500", tn.token, nil, &ids, 200)
		var retried string
		for _, task := range ids.Tasks {
			if task.IdempotencyKey == "key-1" {
				retried = task.TaskID
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			var got struct {
				Events []struct {
					Type string `json:"type"`
					Task string `json:"leashtask"`
				} `json:"events"`
			}
			tn.call(t, "GET", "/v1/events?task="+retried+"&type=task_enqueued,task_retried", tn.token, nil, &got, 200)
			types := map[string]bool{}
			for _, e := range got.Events {
				types[e.Type] = e.Task == retried
			}
			if types["task_enqueued"] && types["task_retried"] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("events of %s: %+v", retried, got.Events)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("list", func(t *testing.T) {
		var all api.TaskList
		var ids []string
		cursor := ""
		for {
			var page api.TaskList
			tn.call(t, "GET", "/v1/tasks?tenant=alpha&limit=2&cursor="+cursor, tn.token, nil, &page, 200)
			if len(page.Tasks) > 2 {
				t.Fatalf("page of %d", len(page.Tasks))
			}
			for _, task := range page.Tasks {
				ids = append(ids, task.TaskID)
				if task.Result != nil {
					t.Fatal("a listing carries results")
				}
			}
			all.Tasks = append(all.Tasks, page.Tasks...)
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if len(ids) != 11 {
			t.Fatalf("alpha has %d tasks: %v", len(ids), ids)
		}
		var ok api.TaskList
		tn.call(t, "GET", "/v1/tasks?state=succeeded", alpha.Token, nil, &ok, 200)
		if len(ok.Tasks) != 11 {
			t.Fatalf("succeeded: %d", len(ok.Tasks))
		}
		beta := h.lease("beta", "work", "bulk")
		var eb api.ErrorBody
		tn.call(t, "GET", "/v1/tasks?tenant=alpha", beta.Token, nil, &eb, 403)
		tn.call(t, "GET", "/v1/tasks/"+ids[0], beta.Token, nil, &eb, 404)
		tn.call(t, "GET", "/v1/tasks?state=sleeping", tn.token, nil, &eb, 400)
		tn.call(t, "GET", "/v1/tasks?limit=0", tn.token, nil, &eb, 400)
	})

	t.Run("cancel a running task", func(t *testing.T) {
		id := h.submit(alpha.Token, "", map[string]string{"SLEEP_MS": "20000"})
		h.wait(id, 10*time.Second, func(task api.Task) bool { return task.State == api.TaskRunning })
		time.Sleep(100 * time.Millisecond) // into the sandbox
		start := time.Now()
		var task api.Task
		tn.call(t, "DELETE", "/v1/tasks/"+id, alpha.Token, nil, &task, 200)
		if !task.CancelRequested {
			t.Fatalf("cancel answer %+v", task)
		}
		task = h.wait(id, 5*time.Second, final)
		if task.State != api.TaskCancelled || task.Outcome != "terminated:cancelled" || task.Result == nil || task.Result.Receipt == nil {
			t.Fatalf("cancelled task = %+v", task)
		}
		t.Logf("a running task ended %v after DELETE", time.Since(start).Round(time.Millisecond))
		var eb api.ErrorBody
		tn.call(t, "DELETE", "/v1/tasks/"+id, alpha.Token, nil, &eb, 409)
		if eb.Error.Code != api.CodeTaskFinished {
			t.Fatalf("cancel a finished task: %+v", eb.Error)
		}
		tn.call(t, "DELETE", "/v1/tasks/tsk_nope", alpha.Token, nil, &eb, 404)
	})

	t.Run("lease revoked before the next attempt", func(t *testing.T) {
		l := h.lease("alpha", "patient", "bulk")
		id := h.submit(l.Token, "", map[string]string{"FAIL_UNTIL": "9"})
		h.wait(id, 10*time.Second, func(task api.Task) bool { return task.State == api.TaskQueued && task.Attempts == 1 })
		tn.call(t, "DELETE", "/v1/leases/"+l.LeaseID, tn.token, nil, nil, 204)
		task := h.wait(id, 10*time.Second, final)
		if task.State != api.TaskFailed || task.Attempts != 2 || task.Outcome != "terminated:revoked" || task.Reason != bulk.ReasonLeaseRevoked {
			t.Fatalf("task = %+v", task)
		}
	})

	t.Run("retry budget exhaustion", func(t *testing.T) {
		// Every attempt fails and would retry; without a floor, the
		// budget allows retries up to 20% of first attempts in the
		// window (the earlier subtests' first attempts count too).
		b := h.lease("beta", "work", "bulk")
		var ids []string
		for range 20 {
			ids = append(ids, h.submit(b.Token, "", map[string]string{"FAIL_UNTIL": "99"}))
		}
		exhausted, retries := 0, 0
		for _, id := range ids {
			task := h.wait(id, 30*time.Second, final)
			if task.Reason == bulk.ReasonRetryBudget {
				exhausted++
				if task.State != api.TaskFailed {
					t.Errorf("budget refusal left %s %s", id, task.State)
				}
			}
			retries += task.Attempts - 1
		}
		// 33 first attempts in all by now: at most 6 retries, and two
		// went to the earlier subtests.
		if retries > 4 || exhausted < 15 {
			t.Fatalf("%d retries, %d tasks failed with %s", retries, exhausted, bulk.ReasonRetryBudget)
		}
		t.Logf("%d retries, %d tasks refused by the budget", retries, exhausted)
	})
}

// TestInteractiveDisconnectLeavesQueue: a client that goes away while its
// interactive task waits for a slot leaves the scheduler's queue at once.
func TestInteractiveDisconnectLeavesQueue(t *testing.T) {
	// The wait limit is longer than the busy task: a waiter that stayed
	// queued would get the slot, not time out.
	tn := startTestNode(t, Config{PolicyFile: "testdata/bulk-policy.yaml", Slots: 1, MaxQueueWait: time.Minute})
	h := &bulkHarness{t: t, tn: tn}
	l := h.lease("alpha", "work", "interactive")
	wasm := guestWasm(t, "bulk")
	post := func(ctx context.Context, env map[string]string) error {
		b, _ := json.Marshal(api.TaskRequest{Module: api.Module{WASM: &wasm}, Env: api.StringEnv(env)})
		req, _ := http.NewRequestWithContext(ctx, "POST", tn.url+"/v1/tasks", strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+l.Token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}
	load := func() api.Load {
		var cl api.Cluster
		tn.call(t, "GET", "/v1/cluster", "", nil, &cl, 200)
		for _, m := range cl.Members {
			if m.ID == cl.Node && m.Load != nil {
				return *m.Load
			}
		}
		return api.Load{Running: -1, Waiting: -1}
	}
	waiting := func() int64 { return load().Waiting }
	busy := make(chan error, 1)
	go func() { busy <- post(context.Background(), map[string]string{"SLEEP_MS": "4500"}) }()
	for start := time.Now(); load().Running != 1; {
		if time.Since(start) > 15*time.Second {
			t.Fatal("the first task never ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiter := make(chan error, 1)
	go func() { waiter <- post(ctx, nil) }()
	deadline := time.Now().Add(15 * time.Second)
	for w := waiting(); w != 1; w = waiting() {
		if time.Now().After(deadline) {
			t.Fatalf("the second task never waited (waiting %d)", w)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-waiter
	// Leaving the queue at once means before the slot frees up: the
	// busy task still runs when the waiter is gone.
	left := time.Now()
	for waiting() != 0 {
		select {
		case err := <-busy:
			t.Fatalf("the slot freed up (%v) before the disconnected client's task left the queue", err)
		default:
		}
		time.Sleep(5 * time.Millisecond)
	}
	if load().Running != 1 {
		t.Fatal("the busy task ended before the waiter left; the test proves nothing")
	}
	t.Logf("left the queue %v after the client went away", time.Since(left).Round(time.Millisecond))
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
}

// TestCancelQueuedTaskReceipt: a bulk task cancelled while it waits for
// its next attempt gets a receipt for the attempt that never runs
// (terminated:cancelled, with no usage), beside the one of the attempt that ran: one
// receipt per admitted attempt.
func TestCancelQueuedTaskReceipt(t *testing.T) {
	tn := startTestNode(t, Config{PolicyFile: "testdata/bulk-policy.yaml", Slots: 4, RetryBudgetMin: 100})
	h := &bulkHarness{t: t, tn: tn}
	alpha := h.lease("alpha", "work", "bulk")
	l := h.lease("alpha", "patient", "bulk")
	id := h.submit(l.Token, "", map[string]string{"FAIL_UNTIL": "9"})
	h.wait(id, 10*time.Second, func(task api.Task) bool { return task.State == api.TaskQueued && task.Attempts == 1 })
	var task api.Task
	tn.call(t, "DELETE", "/v1/tasks/"+id, alpha.Token, nil, &task, 200)
	if task.State != api.TaskCancelled {
		t.Fatalf("a queued task cancelled: %+v", task)
	}
	// Attempt 1 ran (its receipt: error); attempt 2 never will.
	deadline := time.Now().Add(10 * time.Second)
	for {
		outcomes := receiptsOf(t, tn, id)
		if outcomes[1] != "" && outcomes[2] == "terminated:cancelled" && len(outcomes) == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipts of the cancelled task by attempt: %v", outcomes)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// receiptsOf reads the ledger's export and returns the outcome of each of
// task's receipts by attempt (a repeated attempt fails the test).
func receiptsOf(t *testing.T, tn *testNode, task string) map[int]string {
	t.Helper()
	req, _ := http.NewRequest("GET", tn.url+"/v1/ledger/export", nil)
	req.Header.Set("Authorization", "Bearer "+tn.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[int]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		var line struct {
			Envelope json.RawMessage `json:"envelope"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		env, err := ledger.DecodeEnvelope(line.Envelope)
		if err != nil {
			continue
		}
		var rc ledger.Receipt
		if json.Unmarshal(env.Payload, &rc) != nil || rc.TaskID != task {
			continue
		}
		if _, dup := out[rc.Attempt]; dup {
			t.Fatalf("two receipts for attempt %d of %s", rc.Attempt, task)
		}
		out[rc.Attempt] = rc.Outcome
	}
	return out
}
