package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

// sim drives a Scheduler deterministically: tasks are queued without
// goroutines, and a fake sandbox completes them in order.
type sim struct {
	s       *Scheduler
	running []func()
	grants  []string // "class/tenant" in dispatch order
	pending map[*waiter]string
}

func newSim(cfg Config) *sim { return &sim{s: New(cfg), pending: map[*waiter]string{}} }

func (m *sim) submit(class, tenant string, n int) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	c := m.s.class(class)
	for i := 0; i < n; i++ {
		w := &waiter{ready: make(chan struct{}), enqueue: time.Now()}
		m.s.enqueue(c, tenant, w)
		m.pending[w] = class + "/" + tenant
	}
	m.collect()
}

// collect records newly granted waiters (call with the lock held).
func (m *sim) collect() {
	m.s.dispatch()
	for w, name := range m.pending {
		if w.granted {
			delete(m.pending, w)
			c := m.s.class(name[:indexByte(name, '/')])
			m.running = append(m.running, m.s.releaser(c))
			m.grants = append(m.grants, name)
		}
	}
}

// complete ends the oldest running task.
func (m *sim) complete() bool {
	if len(m.running) == 0 {
		return false
	}
	r := m.running[0]
	m.running = m.running[1:]
	r()
	m.s.mu.Lock()
	m.collect()
	m.s.mu.Unlock()
	return true
}

func indexByte(s string, b byte) int {
	for i := range s {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// grantsInOrder: with one slot, each complete grants exactly one task, so
// the grant order is the dispatch order.
func oneSlot() Config {
	cfg := DefaultConfig(1)
	cfg.Interactive.MaxQueue, cfg.Bulk.MaxQueue = 1<<20, 1<<20
	return cfg
}

// checkBound verifies SFQ's fairness bound on every window of the grant
// sequence in which both flows are backlogged: the normalised service
// difference stays within 1/wa + 1/wb (unit-cost tasks).
func checkBound(t *testing.T, grants []string, a, b string, wa, wb float64) {
	t.Helper()
	bound := 1/wa + 1/wb + 1e-9
	n := len(grants)
	ca, cb := make([]float64, n+1), make([]float64, n+1)
	for i, g := range grants {
		ca[i+1], cb[i+1] = ca[i], cb[i]
		switch g {
		case a:
			ca[i+1]++
		case b:
			cb[i+1]++
		}
	}
	worst := 0.0
	for i := 0; i < n; i++ {
		for j := i + 1; j <= n; j++ {
			d := math.Abs((ca[j]-ca[i])/wa - (cb[j]-cb[i])/wb)
			worst = math.Max(worst, d)
		}
	}
	if worst > bound {
		t.Errorf("fairness: worst normalised difference %.3f exceeds the SFQ bound %.3f", worst, bound)
	}
}

func TestClassWeights(t *testing.T) {
	m := newSim(oneSlot())
	m.submit(Bulk, "b", 500)
	m.submit(Interactive, "a", 500)
	// Drain 400 while both classes are backlogged.
	for i := 0; i < 400 && m.complete(); i++ {
	}
	window := m.grants[1:401] // grant 0 went to bulk before interactive arrived
	counts := map[string]int{}
	for _, g := range window {
		counts[g]++
	}
	if math.Abs(float64(counts["interactive/a"])-320) > 1 {
		t.Errorf("400 grants split %v, want 320 interactive : 80 bulk (±1)", counts)
	}
	checkBound(t, window, "interactive/a", "bulk/b", 4, 1)
}

func TestTenantWeights(t *testing.T) {
	cfg := oneSlot()
	cfg.TenantWeight = func(class, tenant string) float64 {
		if tenant == "heavy" {
			return 3
		}
		return 1
	}
	m := newSim(cfg)
	m.submit(Interactive, "heavy", 300)
	m.submit(Interactive, "light", 300)
	for i := 0; i < 400 && m.complete(); i++ {
	}
	checkBound(t, m.grants[:400], "interactive/heavy", "interactive/light", 3, 1)
	counts := map[string]int{}
	for _, g := range m.grants[:400] {
		counts[g]++
	}
	if math.Abs(float64(counts["interactive/heavy"])-300) > 2 {
		t.Errorf("split %v, want 3:1", counts)
	}
}

// TestAdversarialArrivals: a flood, a trickle that keeps one task queued,
// and a latecomer that must not be able to bank credit while idle.
func TestAdversarialArrivals(t *testing.T) {
	m := newSim(oneSlot())
	m.submit(Interactive, "flood", 2000)
	// Trickle: re-submit each time its only task is granted.
	for i := 0; i < 600; i++ {
		if i%2 == 0 {
			m.submit(Interactive, "trickle", 1)
		}
		m.complete()
	}
	counts := map[string]int{}
	for _, g := range m.grants {
		counts[g]++
	}
	if counts["interactive/trickle"] < 250 {
		t.Errorf("the trickle tenant got %d of %d grants; it was backlogged half the time", counts["interactive/trickle"], len(m.grants))
	}
	// The flood ran alone for a long time; a latecomer now gets its fair
	// share from here on, not a burst that makes up for the past, and the
	// flood is not starved either.
	start := len(m.grants)
	m.submit(Interactive, "late", 200)
	for i := 0; i < 200; i++ {
		m.complete()
	}
	window := m.grants[start:]
	checkBound(t, window, "interactive/flood", "interactive/late", 1, 1)
	run := 0
	for _, g := range window {
		if g == "interactive/late" {
			run++
			if run > 2 {
				t.Fatal("the latecomer got a burst of grants")
			}
		} else {
			run = 0
		}
	}
}

// TestBulkGivesCapacityBack: bulk may borrow idle slots, but once
// interactive work waits, bulk starts nothing while it holds its cap.
func TestBulkGivesCapacityBack(t *testing.T) {
	cfg := DefaultConfig(10)
	cfg.BulkWhileInteractiveWaits = 2
	m := newSim(cfg)
	m.submit(Bulk, "b", 100)
	if m.s.classes[1].running != 10 {
		t.Fatalf("idle slots not lent to bulk: %d running", m.s.classes[1].running)
	}
	m.submit(Interactive, "a", 100)
	// Every completion frees a bulk slot; until bulk is down to its cap,
	// each freed slot goes to interactive.
	for i := 0; i < 8; i++ {
		m.complete()
	}
	if b, in := m.s.classes[1].running, m.s.classes[0].running; b != 2 || in != 8 {
		t.Fatalf("after 8 completions: bulk %d, interactive %d running; want 2 and 8", b, in)
	}
	for i := 0; i < 50; i++ {
		m.complete()
		if b := m.s.classes[1].running; b > 2 {
			t.Fatalf("bulk holds %d slots while interactive waits", b)
		}
	}
}

func TestAcquireQueueFullAndTimeout(t *testing.T) {
	fire := make(chan time.Time)
	cfg := DefaultConfig(1)
	cfg.Interactive.MaxQueue = 2
	cfg.Interactive.MaxWait = time.Hour
	cfg.After = func(time.Duration) <-chan time.Time { return fire }
	s := New(cfg)
	rel, err := s.Acquire(context.Background(), Interactive, "a")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := s.Acquire(context.Background(), Interactive, "a")
			errs <- err
		}()
	}
	waitQueued(t, s, Interactive, 2)
	if _, err := s.Acquire(context.Background(), Interactive, "a"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: %v, want ErrQueueFull", err)
	}
	close(fire) // the fake clock: every wait runs out
	for i := 0; i < 2; i++ {
		if err := <-errs; !errors.Is(err, ErrQueueTimeout) {
			t.Fatalf("waiter: %v, want ErrQueueTimeout", err)
		}
	}
	if st := s.Stats()[Interactive]; st.Queued != 0 || st.Shed != 3 {
		t.Fatalf("stats %+v", st)
	}
	rel()
}

func TestAcquireLeavesQueueOnCancel(t *testing.T) {
	s := New(DefaultConfig(1))
	rel, _ := s.Acquire(context.Background(), Interactive, "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := s.Acquire(ctx, Interactive, "b")
		done <- err
	}()
	waitQueued(t, s, Interactive, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if q := s.Stats()[Interactive].Queued; q != 0 {
		t.Fatalf("a cancelled waiter is still queued (%d)", q)
	}
	rel()
	// The freed slot is available at once.
	r2, err := s.Acquire(context.Background(), Interactive, "c")
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

func waitQueued(t *testing.T, s *Scheduler, class string, n int) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if s.Stats()[class].Queued == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("queue never reached %d", n)
}

// TestHammer: many goroutines acquire and release; the slot count is
// never exceeded and nothing is lost.
func TestHammer(t *testing.T) {
	s := New(DefaultConfig(4))
	var mu sync.Mutex
	inUse, peak := 0, 0
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			class := Interactive
			if g%3 == 0 {
				class = Bulk
			}
			for i := 0; i < 100; i++ {
				rel, err := s.Acquire(context.Background(), class, fmt.Sprint("t", g%5))
				if err != nil {
					if errors.Is(err, ErrQueueTimeout) {
						continue
					}
					t.Error(err)
					return
				}
				mu.Lock()
				inUse++
				peak = max(peak, inUse)
				mu.Unlock()
				mu.Lock()
				inUse--
				mu.Unlock()
				rel()
			}
		}(g)
	}
	wg.Wait()
	if peak > 4 {
		t.Fatalf("%d slots in use at once, of 4", peak)
	}
	if r, w, _ := s.Load(); r != 0 || w != 0 {
		t.Fatalf("left running %d waiting %d", r, w)
	}
}

// TestActiveAndWaitHistogram: a class is in use while it runs or waits,
// and for a moment after its last task; granted waits are counted in the
// histogram.
func TestActiveAndWaitHistogram(t *testing.T) {
	s := New(DefaultConfig(1))
	if s.Active(Interactive, time.Hour) || s.Active("nope", time.Hour) {
		t.Fatal("an unused class is active")
	}
	release, err := s.Acquire(context.Background(), Interactive, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Active(Interactive, 0) || s.Active(Bulk, time.Hour) {
		t.Fatal("a running class is not active, or the idle one is")
	}
	release()
	if !s.Active(Interactive, time.Hour) || s.Active(Interactive, 0) {
		t.Fatal("activity does not last exactly the quiet period")
	}
	if s.Weight(Interactive) != 4 || s.Weight(Bulk) != 1 {
		t.Fatalf("weights %v:%v", s.Weight(Interactive), s.Weight(Bulk))
	}
	st := s.Stats()[Interactive]
	var n int64
	for _, c := range st.WaitHist {
		n += c
	}
	if n != 1 || st.WaitHist[0] != 1 {
		t.Fatalf("histogram %v", st.WaitHist)
	}
}
