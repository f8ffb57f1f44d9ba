package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/scheduler"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rp := policy.Retry{MaxAttempts: 3, On: policy.DefaultRetryOn, Backoff: policy.Duration(time.Second), MaxBackoff: policy.Duration(time.Minute)}
	noJitter := func(int64) int64 { return 0 }
	yes := func() bool { return true }
	no := func() bool { return false }
	tests := map[string]struct {
		attempts int
		cancel   bool
		outcome  string
		preset   string
		budget   func() bool
		want     decision
	}{
		"ok":                          {1, false, "ok", "", yes, decision{next: consensus.NextSucceeded}},
		"ok despite a cancel":         {1, true, "ok", "", yes, decision{next: consensus.NextSucceeded}},
		"error retries":               {1, false, "error", "", yes, decision{next: consensus.NextRetry, retryAt: now.Add(500 * time.Millisecond)}},
		"wall retries, backoff grows": {2, false, "terminated:wall", "", yes, decision{next: consensus.NextRetry, retryAt: now.Add(time.Second)}},
		"memory does not retry":       {1, false, "terminated:memory", "", yes, decision{next: consensus.NextFailed}},
		"revoked does not retry":      {1, false, "terminated:revoked", "", yes, decision{next: consensus.NextFailed}},
		"lease expired before start":  {1, false, "terminated:revoked", ReasonLeaseExpired, yes, decision{next: consensus.NextFailed, reason: ReasonLeaseExpired}},
		"last attempt: dead":          {3, false, "error", "", yes, decision{next: consensus.NextDead, reason: consensus.ReasonMaxAttempts}},
		"budget exhausted":            {1, false, "error", "", no, decision{next: consensus.NextFailed, reason: ReasonRetryBudget}},
		"cancel asked":                {1, true, "error", "", yes, decision{next: consensus.NextCancelled, reason: "cancelled"}},
		"cancelled outcome":           {1, false, "terminated:cancelled", "", yes, decision{next: consensus.NextCancelled, reason: "cancelled"}},
		"shutdown: again at once":     {1, false, "terminated:shutdown", "", no, decision{next: consensus.NextRetry, retryAt: now}},
		"claim lost, last attempt":    {3, false, "terminated:claim_lost", "", yes, decision{next: consensus.NextDead, reason: consensus.ReasonMaxAttempts}},
		"module unavailable":          {1, false, "terminated:module_unavailable", "", no, decision{next: consensus.NextRetry, reason: ReasonModuleUnavailable, retryAt: now.Add(500 * time.Millisecond)}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			task := &consensus.QueueTask{Attempts: tc.attempts, MaxAttempts: 3, CancelRequested: tc.cancel}
			got := decide(task, tc.outcome, tc.preset, rp, now, tc.budget, noJitter)
			if got != tc.want {
				t.Fatalf("decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	rp := policy.Retry{Backoff: policy.Duration(100 * time.Millisecond), MaxBackoff: policy.Duration(time.Second)}
	lo := func(int64) int64 { return 0 }
	hi := func(n int64) int64 { return n - 1 }
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		if got := retryDelay(rp, attempt, lo); got != want/2 {
			t.Errorf("attempt %d: least %v, want %v", attempt, got, want/2)
		}
		if got := retryDelay(rp, attempt, hi); got != want {
			t.Errorf("attempt %d: most %v, want %v", attempt, got, want)
		}
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRetryBudget: retries stay within max(min, ratio × first attempts)
// over the sliding window, and the window forgets.
func TestRetryBudget(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	b := newRetryBudget(0.2, 2, time.Minute, clk.now)
	take := func() int {
		k := 0
		for b.tryRetry() {
			k++
		}
		return k
	}
	if k := take(); k != 2 {
		t.Fatalf("with no first attempts: %d retries, want the floor of 2", k)
	}
	for range 50 {
		b.first()
	}
	if k := take(); k != 8 { // 20% of 50 = 10, 2 already taken
		t.Fatalf("after 50 first attempts: %d more retries, want 8", k)
	}
	// Half a window later the old attempts still count.
	clk.add(30 * time.Second)
	for range 50 {
		b.first()
	}
	if k := take(); k != 10 {
		t.Fatalf("after 100 first attempts: %d more retries, want 10", k)
	}
	// The first 50 and their 10 retries leave the window; the rest stay.
	clk.add(35 * time.Second)
	if f, r := b.window(); f != 50 || r != 10 {
		t.Fatalf("window holds %d first attempts and %d retries, want 50 and 10", f, r)
	}
	if b.tryRetry() {
		t.Fatal("a retry past 20% of the window's first attempts")
	}
	clk.add(time.Minute)
	if f, r := b.window(); f != 0 || r != 0 {
		t.Fatalf("an empty window holds %d and %d", f, r)
	}
	none := newRetryBudget(0.2, 0, time.Minute, clk.now)
	if none.tryRetry() {
		t.Fatal("a budget without a floor allowed a retry with no first attempts")
	}
}

func TestBoundedResult(t *testing.T) {
	big := strings.Repeat("x", consensus.MaxQueueResultBytes)
	out := &api.TaskResult{TaskID: "t", Outcome: "ok", Response: &api.TaskResponse{Status: 200, Headers: http.Header{"A": {"b"}}, Body: api.MakeBody([]byte(big))},
		Logs: []api.LogLine{{Level: "info", Message: "hello"}}}
	b, err := boundedResult(out)
	if err != nil || len(b) > consensus.MaxQueueResultBytes {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	var back api.TaskResult
	if err := json.Unmarshal(b, &back); err != nil || !back.ResponseElided || back.Response.Status != 200 || back.Response.Body.Body != nil || len(back.Logs) != 1 {
		t.Fatalf("elided result %+v, %v", back, err)
	}
	small := &api.TaskResult{TaskID: "t", Outcome: "ok"}
	var smallBack api.TaskResult
	if b, _ := boundedResult(small); json.Unmarshal(b, &smallBack) != nil || smallBack.ResponseElided {
		t.Fatal("a small result was elided")
	}
}

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
		if task.State != api.TaskFailed || task.Attempts != 2 || task.Outcome != "terminated:revoked" || task.Reason != ReasonLeaseRevoked {
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
			if task.Reason == ReasonRetryBudget {
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
			t.Fatalf("%d retries, %d tasks failed with %s", retries, exhausted, ReasonRetryBudget)
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

// TestBulkYieldsToInteractive: while interactive work is in use, a bulk
// attempt that took d holds the next claim back by 4d (the class
// weights); otherwise not at all. No clock is read for the verdicts:
// the pauses are what charge books, and yield must return (the guard
// only catches a hang).
func TestBulkYieldsToInteractive(t *testing.T) {
	n := &Node{pool: scheduler.New(scheduler.DefaultConfig(2))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &bulkQueue{n: n, ctx: ctx}
	returns := func(want bool) {
		t.Helper()
		got := make(chan bool, 1)
		go func() { got <- b.yield() }()
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("yield returned %v, want %v", g, want)
			}
		case <-time.After(time.Minute):
			t.Fatal("yield never returned")
		}
	}
	if p := b.charge(50 * time.Millisecond); p != 0 {
		t.Fatalf("with no interactive work, charge booked a %v pause", p)
	}
	returns(true)

	release, err := n.pool.Acquire(ctx, scheduler.Interactive, "a")
	if err != nil {
		t.Fatal(err)
	}
	if p := b.charge(20 * time.Millisecond); p != 80*time.Millisecond {
		t.Fatalf("after a 20ms attempt, charge booked %v, want 80ms (4:1)", p)
	}
	if p := b.charge(time.Hour); p != maxYield {
		t.Fatalf("a long attempt booked %v, want the cap %v", p, maxYield)
	}
	release()
	// Interactive work goes quiet: the booked pause no longer holds bulk.
	returns(true)

	release, _ = n.pool.Acquire(context.Background(), scheduler.Interactive, "a")
	defer release()
	b.charge(time.Hour)
	cancel()
	returns(false)
}
