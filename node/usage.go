package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/egress"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/usage"
)

// Metering and budgets on the node (docs/budgets.md): the node's meter,
// the budget decision at admission, the crossings' events and
// terminations. The usage, budget and FOCUS endpoints are package
// usage's (usage/api.go).

type usageState struct {
	meter   *usage.Meter
	cancel  context.CancelFunc
	done    chan struct{}
	budgets budgetCache
}

// budgetCache keeps each tenant's budget view of the day between changes
// of the replicated state it is read from, so admission (checkBudget)
// and the task's start (budgetExhausted) do not read Pebble for every
// task. Every applied command but the task path's own (receipts, task
// records, checkpoint signatures), and every restore from a snapshot,
// bumps gen; a view is used only under the gen it was read after, so it
// is never older than the state was when that gen began.
type budgetCache struct {
	gen atomic.Uint64
	mu  sync.Mutex
	m   map[string]budgetEntry // by tenant
}

type budgetEntry struct {
	day string
	gen uint64
	v   *consensus.BudgetView
}

// maxBudgetEntries bounds the cache (views of an older gen are dropped
// first: all of them).
const maxBudgetEntries = 4096

func (c *budgetCache) applied(a consensus.Applied) {
	switch a.Command.(type) {
	case *consensus.AppendReceipts, *consensus.PutTaskRecords, *consensus.CosignCheckpoint:
		return // they change no budget, envelope or policy
	}
	c.gen.Add(1)
}

func (c *budgetCache) invalidate() { c.gen.Add(1) }

// budgets is the replicated budget state through the cache.
type budgets struct {
	c  *budgetCache
	st *consensus.State
}

// Budget is st.Budget, cached (the view is shared: callers only read it).
func (b budgets) Budget(tenant, day string) (*consensus.BudgetView, error) {
	gen := b.c.gen.Load() // before the read: a change after it bumps gen
	b.c.mu.Lock()
	e, ok := b.c.m[tenant]
	b.c.mu.Unlock()
	if ok && e.gen == gen && e.day == day {
		return e.v, nil
	}
	v, err := b.st.Budget(tenant, day)
	if err != nil {
		return nil, err
	}
	b.c.mu.Lock()
	if b.c.m == nil || len(b.c.m) >= maxBudgetEntries {
		b.c.m = map[string]budgetEntry{}
	}
	b.c.m[tenant] = budgetEntry{day: day, gen: gen, v: v}
	b.c.mu.Unlock()
	return v, nil
}

// budgetState is what the budget decisions read: the cache once the
// meter runs, the replicated state itself before.
func (n *Node) budgetState() usage.Budgets {
	if n.usage == nil {
		return n.state
	}
	return budgets{c: &n.usage.budgets, st: n.state}
}

// startUsage opens the meter over its journal and starts sending.
func (n *Node) startUsage() error {
	m, err := usage.Open(usage.Config{
		DB: n.db, Node: n.id.NodeID, Logger: n.cfg.Logger,
		Propose: n.propose,
		LastSeq: func() (uint64, error) { return n.state.UsageSeq(n.id.NodeID) },
	})
	if err != nil {
		return fmt.Errorf("usage meter: %w", err)
	}
	if e, b := m.Pending(); e+b > 0 {
		n.log.Info("usage journal replayed", "entries", e, "batches", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &usageState{meter: m, cancel: cancel, done: make(chan struct{})}
	n.fsm.OnApply(u.budgets.applied)
	n.fsm.OnRestore(u.budgets.invalidate)
	go func() {
		defer close(u.done)
		m.Run(ctx)
	}()
	n.usage = u
	return nil
}

// stopUsage sends what the meter holds (the journal keeps what it cannot
// send) and stops it; Raft must still be open.
func (n *Node) stopUsage() {
	if n.usage == nil {
		return
	}
	n.usage.cancel()
	<-n.usage.done
}

func (n *Node) meter() *usage.Meter {
	if n.usage == nil || n.cfg.Unmetered {
		return nil
	}
	return n.usage.meter
}

// meterTask meters a finished task attempt; its outbound calls were
// metered as they ended (meterCall). An attempt refused before it ran
// (exhausted, revoked) counts no task.
func (n *Node) meterTask(l *consensus.Lease, t *sandbox.Task, res *sandbox.Result) {
	u := res.Usage
	ran := u.Startup > 0 || u.Wall > 0 || res.Outcome == sandbox.OutcomeOK
	c := consensus.UsageCounters{
		CPUMs:           int64(math.Round(u.CPUMs)),
		WallMs:          int64(math.Round(u.WallMs)),
		MemoryPeakBytes: max(0, u.MemoryPeakBytes),
		MemoryMiBs:      int64(math.Round(float64(max(0, u.MemoryPeakBytes)) / (1 << 20) * u.Wall.Seconds())),
		Subrequests:     max(0, u.Subrequests),
	}
	if ran {
		c.Tasks = 1
	}
	if mt := t.ModelTokens; mt != nil {
		c.TokensIn, c.TokensOut = max(0, mt.Input), max(0, mt.Output)
	}
	if c == (consensus.UsageCounters{}) {
		return
	}
	n.meter().Add(l.Tenant, l.Profile, res.Start, c)
}

// meterCall meters one outbound call (a hop), allowed or blocked, of a
// task or of the egress proxy.
func (n *Node) meterCall(d *egress.Decision) {
	c := consensus.UsageCounters{ToolCalls: 1, EgressBytesIn: max(0, d.BytesIn), EgressBytesOut: max(0, d.BytesOut)}
	if d.Blocked() {
		c.Blocked = 1
	}
	at := d.Time
	if at.IsZero() {
		at = n.now()
	}
	n.meter().Add(d.Tenant, d.Profile, at, c)
}

// checkBudget is the budget decision at admission, on local replicated
// state: 429 budget_exhausted with Retry-After to the next UTC midnight.
func (n *Node) checkBudget(tenant string) error {
	err := usage.Check(n.budgetState(), tenant, n.now())
	var ae *api.Error
	if errors.As(err, &ae) {
		n.log.Info("budget refused", "tenant", tenant, "code", ae.Code, "retry_after", ae.RetryAfter, "message", ae.Message)
	}
	return err
}

// budgetExhausted reports whether a task about to run must end
// terminated:budget instead.
func (n *Node) budgetExhausted(tenant string) bool {
	v, err := n.budgetState().Budget(tenant, consensus.Day(n.now()))
	return err == nil && len(v.Exhausted) > 0
}

// usageApplied reacts to the budget decisions of the state machine on
// every node: an exhaustion ends the tenant's running tasks here as
// terminated:budget. The node that proposed the batch or the change
// emits the day's one event per crossing.
func (n *Node) usageApplied(a consensus.Applied) {
	var proposer string
	switch c := a.Command.(type) {
	case *consensus.UsageBatch:
		proposer = c.Node
	case *consensus.SetEnvelope:
		proposer = c.Node
		if c.Node == n.id.NodeID {
			n.emit(events.WithScope(context.Background(), events.Scope{Tenant: c.Tenant}), events.BudgetChanged{
				Mode: c.Mode, CPUMsPerDay: c.Limits.CPUMsPerDay, EgressBytesPerDay: c.Limits.EgressBytesPerDay,
				ToolCallsPerDay: c.Limits.ToolCallsPerDay, TasksPerDay: c.Limits.TasksPerDay, By: c.By})
		}
	default:
		return
	}
	v, ok := a.Result.Value.(*consensus.UsageApplied)
	if !ok || v == nil {
		return
	}
	for _, x := range v.Crossings {
		if x.Level == consensus.LevelExhausted && x.Day == consensus.Day(n.now()) {
			if k := n.cancelTenant(x.Tenant, sandbox.Terminate(sandbox.ReasonBudget)); k > 0 {
				n.log.Info("budget exhausted ended running tasks", "tenant", x.Tenant, "dimension", x.Dim, "tasks", k)
			}
		}
		if proposer != n.id.NodeID {
			continue
		}
		pct := 0
		if x.Limit > 0 {
			pct = int(min(float64(x.Used)*100/float64(x.Limit), 1e6))
		}
		b := events.Budget{Resource: x.Dim, Day: x.Day, Used: x.Used, Limit: x.Limit, Percent: pct}
		ctx := events.WithScope(context.Background(), events.Scope{Tenant: x.Tenant})
		n.log.Info("budget crossed", "tenant", x.Tenant, "dimension", x.Dim, "level", x.Level, "day", x.Day, "used", x.Used, "limit", x.Limit)
		if x.Level == consensus.LevelWarning {
			n.emit(ctx, events.BudgetWarning(b))
		} else {
			n.emit(ctx, events.BudgetExhausted(b))
		}
	}
}

// cancelTenant ends the running tasks of a tenant's leases.
func (n *Node) cancelTenant(tenant string, cause error) int {
	n.tasks.mu.Lock()
	defer n.tasks.mu.Unlock()
	k := 0
	for _, t := range n.tasks.tasks {
		if l, err := n.state.Lease(t.lease); err == nil && l.Tenant == tenant {
			t.cancel(cause)
			k++
		}
	}
	return k
}
