package usage

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/policy"
)

// cluster is one node's Pebble with the state machine on it: the meter's
// journal and the replicated state share the DB as they do in a node.
// Commands go to the FSM as committed log entries.
type cluster struct {
	t   *testing.T
	dir string
	db  *pebble.DB
	fsm *consensus.FSM

	mu  sync.Mutex
	idx uint64
	// lose, when set, makes the next proposal apply but report an
	// error (a leader lost mid-write: the outcome is unknown).
	lose bool
	// refuse makes proposals fail before they apply.
	refuse bool
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, dir: t.TempDir()}
	c.open()
	t.Cleanup(func() { _ = c.db.Close() })
	if _, err := c.propose(context.Background(), &consensus.PutPolicy{Canonical: policy.Default().Canonical(), Env: "prod", By: "test", At: 1}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) open() {
	db, err := consensus.OpenDB(filepath.Join(c.dir, "pebble"), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.db, c.fsm = db, consensus.NewFSM(db, nil)
	c.idx, _ = c.fsm.State().AppliedIndex()
}

// crash closes the DB without the meter flushing (what kill -9 leaves:
// Pebble's WAL, written without fsync, survives a process kill) and
// opens it again.
func (c *cluster) crash() {
	if err := c.db.Close(); err != nil {
		c.t.Fatal(err)
	}
	c.open()
}

func (c *cluster) propose(_ context.Context, cmd consensus.Command) (*consensus.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return nil, consensus.ErrNoLeader
	}
	b, err := consensus.Encode(cmd)
	if err != nil {
		return nil, err
	}
	c.idx++
	r := c.fsm.Apply(&raft.Log{Index: c.idx, Term: 1, Type: raft.LogCommand, Data: b}).(*consensus.Result)
	if c.lose {
		c.lose = false
		return nil, consensus.ErrOutcomeUnknown
	}
	return r, r.Err()
}

func (c *cluster) meter(node string) *Meter {
	m, err := Open(Config{DB: c.db, Node: node, Propose: c.propose, LastSeq: func() (uint64, error) { return c.fsm.State().UsageSeq(node) }})
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *cluster) used(day string) consensus.UsageCounters {
	c.t.Helper()
	v, err := c.fsm.State().Budget("demo", day)
	if err != nil {
		c.t.Fatal(err)
	}
	return v.Used
}

var (
	t0  = time.Date(2026, 12, 2, 23, 59, 58, 0, time.UTC)
	day = "2026-12-02"
)

// TestMeterCountsOnce: deltas add up into batches; a batch applied whose
// answer was lost, and a batch refused for want of a leader, are sent
// again and count once.
func TestMeterCountsOnce(t *testing.T) {
	c := newCluster(t)
	m := c.meter("n1")
	ctx := context.Background()
	for range 10 {
		m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 1, CPUMs: 7})
	}
	m.Add("demo", "api-caller", t0, consensus.UsageCounters{ToolCalls: 3})
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := c.used(day); u.Tasks != 10 || u.CPUMs != 70 || u.ToolCalls != 3 {
		t.Fatalf("used %+v", u)
	}
	c.lose = true
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 1})
	if err := m.Flush(ctx); !errors.Is(err, consensus.ErrOutcomeUnknown) {
		t.Fatalf("lost answer: %v", err)
	}
	c.refuse = true
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 1})
	if err := m.Flush(ctx); err == nil {
		t.Fatal("no leader: flushed")
	}
	c.refuse = false
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := c.used(day); u.Tasks != 12 {
		t.Fatalf("tasks %d after a lost answer and a refusal, want 12", u.Tasks)
	}
	if e, b := m.Pending(); e != 0 || b != 0 {
		t.Fatalf("pending %d entries, %d batches", e, b)
	}
}

// TestMeterSurvivesCrash: deltas metered but not cut, and batches cut but
// not sent, are in the journal after a crash; the restarted meter sends
// them, and each counts once.
func TestMeterSurvivesCrash(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	m := c.meter("n1")
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 1})
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A batch cut and applied, its answer lost; one cut, never sent;
	// then deltas not cut.
	c.lose = true
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 10})
	_ = m.Flush(ctx)
	c.refuse = true
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 100})
	_ = m.Flush(ctx)
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 1000})
	m.Add("demo", "api-caller", t0.Add(3*time.Second), consensus.UsageCounters{Tasks: 10000}) // the next day
	c.refuse = false
	c.crash()

	m = c.meter("n1")
	if e, b := m.Pending(); e != 2 || b != 2 {
		t.Fatalf("after the crash: %d entries, %d batches pending; want 2 and 2", e, b)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := c.used(day); u.Tasks != 1111 {
		t.Fatalf("day 1: %d tasks, want 1111", u.Tasks)
	}
	if u := c.used("2026-12-03"); u.Tasks != 10000 {
		t.Fatalf("day 2: %d tasks, want 10000", u.Tasks)
	}
	// Sequences go on past the crash: a new batch is not a duplicate.
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 1})
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := c.used(day); u.Tasks != 1112 {
		t.Fatalf("after the crash: %d tasks, want 1112", u.Tasks)
	}
}

// TestMeterConcurrentAdds hammers Add from many goroutines while batches
// are cut and sent: every delta counts once, in the sums sent and after a
// crash (a delta journalled below a cut would be replayed twice, one
// deleted before it was written would be lost).
func TestMeterConcurrentAdds(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	m := c.meter("n1")
	const workers, each = 8, 150
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := m.Flush(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.Add("demo", []string{"docs-reader", "api-caller"}[(w+i)%2], t0, consensus.UsageCounters{Tasks: 1, CPUMs: 3})
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flushed
	c.crash() // what was not sent yet is in the journal, once
	m = c.meter("n1")
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := c.used(day); u.Tasks != workers*each || u.CPUMs != 3*workers*each {
		t.Fatalf("used %d tasks, %d cpu ms; want %d and %d", u.Tasks, u.CPUMs, workers*each, 3*workers*each)
	}
}

// TestMeterBatchesOnCount: Run sends once MaxPending entries wait, well
// before the interval.
func TestMeterBatchesOnCount(t *testing.T) {
	c := newCluster(t)
	m, err := Open(Config{DB: c.db, Node: "n1", Propose: c.propose, Interval: time.Hour, MaxPending: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	for _, p := range []string{"a", "b", "c", "d"} {
		m.Add("demo", p, t0, consensus.UsageCounters{Tasks: 1})
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.usedLocked(day).Tasks != 4 {
		if time.Now().After(deadline) {
			t.Fatal("no batch after MaxPending entries")
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.Add("demo", "a", t0, consensus.UsageCounters{Tasks: 1})
	cancel()
	<-done // Run sends what is left when it stops
	if u := c.usedLocked(day); u.Tasks != 5 {
		t.Fatalf("after stop: %d tasks", u.Tasks)
	}
}

func (c *cluster) usedLocked(day string) consensus.UsageCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used(day)
}

// TestCheck: the decision refuses an exhausted tenant with 429 and a
// Retry-After to the next UTC midnight, and admits it again once the day
// rolls over (an injected clock).
func TestCheck(t *testing.T) {
	c := newCluster(t)
	m := c.meter("n1")
	st := c.fsm.State()
	if err := Check(st, "demo", t0); err != nil {
		t.Fatal(err)
	}
	m.Add("demo", "docs-reader", t0, consensus.UsageCounters{Tasks: 100000})
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := Check(st, "demo", t0)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != CodeBudgetExhausted || ae.RetryAfter != 2 {
		t.Fatalf("exhausted: %#v", err)
	}
	if err := Check(st, "other", t0); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	if err := Check(st, "demo", t0.Add(2*time.Second)); err != nil {
		t.Fatalf("at midnight: %v", err)
	}
}

func TestRetryAfter(t *testing.T) {
	for name, c := range map[string]struct {
		now  time.Time
		want int
	}{
		"a second before":  {time.Date(2026, 12, 2, 23, 59, 59, 0, time.UTC), 1},
		"a moment before":  {time.Date(2026, 12, 2, 23, 59, 59, 999, time.UTC), 1},
		"at midnight":      {time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), 86400},
		"noon":             {time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC), 43200},
		"in another zone":  {time.Date(2026, 12, 2, 1, 0, 0, 0, time.FixedZone("x", 3600)), 86400},
		"half a second in": {time.Date(2026, 12, 2, 0, 0, 0, 5e8, time.UTC), 86400},
		"end of the year":  {time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), 3600},
	} {
		if got := RetryAfter(c.now); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
}
