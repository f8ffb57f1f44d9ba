package bulk

import (
	"context"
	"encoding/json"
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

// TestBulkYieldsToInteractive: while interactive work is in use, a bulk
// attempt that took d holds the next claim back by 4d (the class
// weights); otherwise not at all. No clock is read for the verdicts:
// the pauses are what charge books, and yield must return (the guard
// only catches a hang).
func TestBulkYieldsToInteractive(t *testing.T) {
	pool := scheduler.New(scheduler.DefaultConfig(2))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &Worker{pool: pool, ctx: ctx}
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

	release, err := pool.Acquire(ctx, scheduler.Interactive, "a")
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

	release, _ = pool.Acquire(context.Background(), scheduler.Interactive, "a")
	defer release()
	b.charge(time.Hour)
	cancel()
	returns(false)
}
