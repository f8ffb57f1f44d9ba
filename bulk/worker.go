// Package bulk is the worker side of the replicated bulk queue (its
// state machine part is consensus/queue.go; docs/scheduling.md). A bulk
// POST /v1/tasks enqueues through Raft and answers 202. On every node,
// the workers claim due tasks when the scheduler grants the bulk class a
// slot (one slot request per tenant with due work, so the scheduler's
// tenant fairness decides whose task runs next), run each attempt
// through the node (so it gets its receipt), renew their claims while it
// runs, and complete it: succeeded, failed, dead, cancelled, or queued
// again after a backoff, within a retry budget. The leader's reaper
// reclaims expired claims, so the tasks of a node that died run
// elsewhere, and forgets finished tasks after their retention.
package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/scheduler"
)

// Defaults of the bulk queue's node settings.
const (
	DefaultClaimTTL          = 15 * time.Second
	DefaultRetryBudgetRatio  = 0.2
	DefaultRetryBudgetMin    = 10
	DefaultRetryBudgetWindow = time.Minute
	DefaultTaskRetention     = 24 * time.Hour
)

const (
	bulkPoll        = 200 * time.Millisecond // how often workers look for due tasks without a nudge
	maxBulkWaiters  = 256                    // tenants waiting for a bulk slot on this node at once
	completeWait    = 30 * time.Second       // how long a completion keeps trying to reach a leader
	budgetSlots     = 12                     // sliding window resolution of the retry budget
	reclaimBatch    = 1000
	purgeBatch      = 1000
	purgeEvery      = time.Minute
	minFenceMargin  = 300 * time.Millisecond
	fenceCheckEvery = 100 * time.Millisecond
	// While interactive work is in use here (a task running or waiting,
	// or one ended within interactiveQuiet), bulk yields: after an
	// attempt that took d, the next bulk claim waits d × (interactive
	// weight / bulk weight), at most maxYield.
	interactiveQuiet = 100 * time.Millisecond
	maxYield         = time.Second
)

// Reasons the node records on bulk tasks, and termination reasons of
// bulk attempts.
const (
	ReasonRetryBudget  = "retry_budget_exhausted"
	ReasonLeaseExpired = "lease_expired"
	ReasonLeaseRevoked = "lease_revoked"
	// ReasonClaimLost ends an attempt whose claim this node could not
	// keep (no leader to renew it, or it was reclaimed): another node may
	// run the task now, so this one stops.
	ReasonClaimLost = "claim_lost"
	// ReasonNodeLost ends, in its receipt, an attempt whose node died
	// or restarted before it completed: the node that reclaims the claim
	// appends it.
	ReasonNodeLost = "node_lost"
	// ReasonModuleUnavailable ends an attempt this node could not start:
	// its module does not compile here (no JS engine, say).
	ReasonModuleUnavailable = "module_unavailable"
)

// Node is what the worker needs of the node it runs on.
type Node interface {
	// Propose applies a command through Raft (forwarded to the leader
	// from a follower) and waits for it.
	Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error)
	// Prepare completes an attempt's sandbox task for its lease and
	// profile: limits, module (fetched from a peer when not here) and
	// the egress client.
	Prepare(ctx context.Context, l *consensus.Lease, p *policy.Profile, t *sandbox.Task) error
	// Execute runs an attempt in a sandbox slot of the bulk class and
	// records it (its receipt, its task record); it calls SandboxDone(ctx)
	// once the sandbox has ended.
	Execute(ctx context.Context, l *consensus.Lease, t *sandbox.Task) *api.TaskResult
	// LocalTask is this node's own record of a task it ran.
	LocalTask(id string) (*api.Task, error)
	// RecordLost appends the receipt (terminated:node_lost) of an attempt
	// whose node was lost with its claim.
	RecordLost(t *consensus.QueueTask, attempt int)
	IsLeader() bool
	// Draining reports that the node is shutting down: no new claims.
	Draining() bool
}

// Config sets a worker up. Zero durations and ratios take the defaults.
type Config struct {
	NodeID string
	State  *consensus.State
	Pool   *scheduler.Scheduler
	// Events receives task_enqueued, task_retried and task_dead.
	Events events.Emitter
	Log    *slog.Logger
	Now    func() time.Time

	ClaimTTL time.Duration
	// Retries per class at most max(RetryBudgetMin, RetryBudgetRatio ×
	// first attempts) over RetryBudgetWindow; a negative min: no floor.
	RetryBudgetRatio  float64
	RetryBudgetMin    int
	RetryBudgetWindow time.Duration
	// TaskRetention: finished tasks are forgotten after it.
	TaskRetention time.Duration
}

// Worker is a node's bulk workers and their counters.
type Worker struct {
	node       Node
	nodeID     string
	state      *consensus.State
	pool       *scheduler.Scheduler
	events     events.Emitter
	now        func() time.Time
	log        *slog.Logger
	claimTTL   time.Duration
	renewEvery time.Duration
	margin     time.Duration
	retention  time.Duration
	budget     map[string]*retryBudget // by class; only bulk retries here

	// ctx ends the loops and the slot requests; running attempts are not
	// derived from it (a drain gives them their grace period).
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	loops  sync.WaitGroup
	work   sync.WaitGroup // slot requests and running attempts

	mu      sync.Mutex
	waiting map[string]bool // tenants with a bulk slot request here
	running map[string]*bulkRun

	// yieldUntil: no bulk claim starts before it while interactive work
	// is in use.
	yieldMu    sync.Mutex
	yieldUntil time.Time

	stats     bulkCounters
	histMu    sync.Mutex
	queueWait [len(scheduler.WaitBuckets) + 1]int64
}

type bulkRun struct {
	attempt int
	until   time.Time // the claim's expiry as last confirmed
	cancel  context.CancelCauseFunc
}

type bulkCounters struct {
	enqueued, claims, emptyClaims, succeeded, failed, cancelled, dead atomic.Uint64
	retries, budgetRefusals, claimExpiries, claimsLost                atomic.Uint64
}

// New makes the worker of node; Start starts it.
func New(cfg Config, node Node) *Worker {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Events == nil {
		cfg.Events = events.Discard
	}
	ttl := cfg.ClaimTTL
	if ttl <= 0 {
		ttl = DefaultClaimTTL
	}
	ratio, minRetries, window := cfg.RetryBudgetRatio, cfg.RetryBudgetMin, cfg.RetryBudgetWindow
	if ratio <= 0 {
		ratio = DefaultRetryBudgetRatio
	}
	switch {
	case minRetries < 0:
		minRetries = 0
	case minRetries == 0:
		minRetries = DefaultRetryBudgetMin
	}
	if window <= 0 {
		window = DefaultRetryBudgetWindow
	}
	retention := cfg.TaskRetention
	if retention <= 0 {
		retention = DefaultTaskRetention
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Worker{
		node: node, nodeID: cfg.NodeID, state: cfg.State, pool: cfg.Pool, events: cfg.Events, now: cfg.Now,
		log:      cfg.Log.With("component", "bulk"),
		claimTTL: ttl, renewEvery: ttl / 3, margin: max(ttl/5, minFenceMargin), retention: retention,
		budget: map[string]*retryBudget{
			scheduler.Bulk:        newRetryBudget(ratio, minRetries, window, cfg.Now),
			scheduler.Interactive: newRetryBudget(ratio, minRetries, window, cfg.Now),
		},
		ctx: ctx, cancel: cancel,
		wake:    make(chan struct{}, 1),
		waiting: map[string]bool{},
		running: map[string]*bulkRun{},
	}
	return b
}

// Start recovers this node's claims from before a restart and starts
// the workers, the claim renewals and (on the leader) the reaper.
func (b *Worker) Start(ctx context.Context) {
	b.recoverClaims(ctx)
	b.loops.Add(3)
	go func() { defer b.loops.Done(); b.claimLoop() }()
	go func() { defer b.loops.Done(); b.renewLoop() }()
	go func() { defer b.loops.Done(); b.reapLoop() }()
}

// Drain stops claiming and gives the attempts running here until ctx
// ends to finish; then it ends the rest (terminated:shutdown: they are
// queued again, for another node or this one after its restart) and
// waits until every attempt is completed, so that a node leaving the
// cluster leaves no claim behind.
func (b *Worker) Drain(ctx context.Context) {
	if b == nil {
		return
	}
	b.cancel()
	for b.runningCount() > 0 {
		select {
		case <-ctx.Done():
			b.endRunning()
			b.work.Wait()
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.work.Wait()
}

// Stop ends the loops and every attempt (terminated:shutdown), and waits
// until each is completed.
func (b *Worker) Stop() {
	if b == nil {
		return
	}
	b.cancel()
	b.endRunning()
	b.work.Wait()
	b.loops.Wait()
}

func (b *Worker) endRunning() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.running {
		r.cancel(sandbox.Terminate(sandbox.ReasonShutdown))
	}
}

func (b *Worker) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Applied reacts to queue commands applied on this node (on raft's
// FSM goroutine: quick): new or requeued work wakes the workers, and a
// cancelled task running here ends as terminated:cancelled.
func (b *Worker) Applied(a consensus.Applied) {
	if b == nil {
		return
	}
	switch c := a.Command.(type) {
	case *consensus.EnqueueTask, *consensus.ReclaimTasks:
		b.poke()
	case *consensus.CompleteTask:
		if st, ok := a.Result.Value.(*consensus.TaskStatus); ok && st.State == consensus.TaskQueued {
			b.poke()
		}
	case *consensus.CancelTask:
		if b.cancelRunning(c.ID, sandbox.Terminate(sandbox.ReasonCancelled)) {
			b.log.Info("cancelled task ended here", "task", c.ID)
		}
	}
}

// Restored reacts to a snapshot that replaced the replicated state: the
// queue commands it stands for were never applied here one by one, so
// attempts running here of tasks cancelled meanwhile end, and the workers
// look for work.
func (b *Worker) Restored() {
	if b == nil {
		return
	}
	b.mu.Lock()
	ids := make([]string, 0, len(b.running))
	for id := range b.running {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	for _, id := range ids {
		if t, err := b.state.QueueTask(id); err == nil && t.CancelRequested {
			if b.cancelRunning(id, sandbox.Terminate(sandbox.ReasonCancelled)) {
				b.log.Info("restored state: a cancelled task ended here", "task", id)
			}
		}
	}
	b.poke()
}

func (b *Worker) cancelRunning(id string, cause error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.running[id]; r != nil {
		r.cancel(cause)
		return true
	}
	return false
}

// Claiming.

func (b *Worker) claimLoop() {
	t := time.NewTicker(bulkPoll)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		case <-t.C:
		}
		if b.node.Draining() {
			continue
		}
		b.fill()
	}
}

// fill asks the scheduler for a bulk slot for each tenant with due work
// that has no request waiting yet.
func (b *Worker) fill() {
	tenants, err := b.state.ReadyTenants(b.now().UnixNano(), maxBulkWaiters)
	if err != nil {
		b.log.Error("read the queue", "err", err)
		return
	}
	for _, tenant := range tenants {
		b.mu.Lock()
		if b.waiting[tenant] || len(b.waiting) >= maxBulkWaiters {
			b.mu.Unlock()
			continue
		}
		b.waiting[tenant] = true
		b.mu.Unlock()
		b.work.Add(1)
		go b.claimFor(tenant)
	}
}

func (b *Worker) doneWaiting(tenant string) {
	b.mu.Lock()
	delete(b.waiting, tenant)
	b.mu.Unlock()
	b.poke()
}

// claimFor waits for a bulk slot for tenant, claims the tenant's next due
// task and runs it in that slot.
func (b *Worker) claimFor(tenant string) {
	defer b.work.Done()
	if !b.yield() {
		b.doneWaiting(tenant)
		return
	}
	release, err := b.pool.Acquire(b.ctx, scheduler.Bulk, tenant)
	if err != nil {
		b.doneWaiting(tenant)
		if !errors.Is(err, context.Canceled) {
			b.log.Warn("no bulk slot", "tenant", tenant, "err", err)
		}
		return
	}
	now := b.now()
	res, err := b.node.Propose(b.ctx, &consensus.ClaimTask{Tenant: tenant, Node: b.nodeID, Now: now.UnixNano(), Until: now.Add(b.claimTTL).UnixNano()})
	var cr *consensus.ClaimResult
	if err == nil {
		cr, _ = res.Value.(*consensus.ClaimResult)
	}
	if cr == nil || cr.ID == "" {
		release()
		if err != nil && b.ctx.Err() == nil {
			// An unknown outcome leaves at worst a claim nobody runs:
			// it expires and the task runs again.
			b.log.Warn("claim", "tenant", tenant, "err", err)
			time.Sleep(100 * time.Millisecond)
		} else {
			b.stats.emptyClaims.Add(1)
		}
		b.doneWaiting(tenant)
		return
	}
	b.doneWaiting(tenant)
	t, err := b.claimed(cr)
	if err != nil {
		release()
		b.log.Error("claimed task", "task", cr.ID, "err", err)
		return
	}
	b.run(t, now.Add(b.claimTTL), release)
	b.charge(time.Since(now))
}

// yield waits while bulk owes interactive work its share of this node's
// time (see charge). The scheduler shares sandbox slots; this shares the
// rest of a bulk attempt — its claim, receipt and completion go through
// Raft and take CPU outside any slot, which for short tasks is most of
// their cost. It reports false when the workers are stopping.
func (b *Worker) yield() bool {
	for {
		b.yieldMu.Lock()
		wait := time.Until(b.yieldUntil)
		b.yieldMu.Unlock()
		if wait <= 0 || !b.pool.Active(scheduler.Interactive, interactiveQuiet) {
			return true
		}
		select {
		case <-b.ctx.Done():
			return false
		case <-time.After(min(wait, 10*time.Millisecond)):
		}
	}
}

// charge books an attempt that took d (claim to completion): while
// interactive work is in use, bulk gets its weight's share of the time,
// so the next claim waits d × (interactive weight / bulk weight). It
// returns the pause it added.
func (b *Worker) charge(d time.Duration) time.Duration {
	if !b.pool.Active(scheduler.Interactive, interactiveQuiet) {
		return 0
	}
	wb := b.pool.Weight(scheduler.Bulk)
	if wb <= 0 {
		return 0
	}
	pause := min(time.Duration(float64(d)*b.pool.Weight(scheduler.Interactive)/wb), maxYield)
	b.yieldMu.Lock()
	defer b.yieldMu.Unlock()
	from := time.Now()
	if b.yieldUntil.After(from) {
		from = b.yieldUntil
	}
	b.yieldUntil = from.Add(pause)
	return pause
}

// claimed reads the task just claimed from local state (a forwarded
// write is applied here before propose returns; wait a little if not).
func (b *Worker) claimed(cr *consensus.ClaimResult) (*consensus.QueueTask, error) {
	for i := 0; ; i++ {
		t, err := b.state.QueueTask(cr.ID)
		if err == nil && t.Attempts >= cr.Attempt {
			if t.Attempts != cr.Attempt || t.State != consensus.TaskRunning || t.ClaimedBy != b.nodeID {
				return nil, fmt.Errorf("claim of attempt %d already gone: %s attempt %d", cr.Attempt, t.State, t.Attempts)
			}
			return t, nil
		}
		if i == 100 {
			return nil, fmt.Errorf("task not in local state after its claim: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Running.

// run runs one attempt in the slot release frees (as soon as the sandbox
// ends), and completes it.
func (b *Worker) run(t *consensus.QueueTask, until time.Time, release func()) {
	defer release()
	b.stats.claims.Add(1)
	if t.Attempts == 1 {
		b.budgetOf(t.Class).first()
	}
	b.observeQueueWait(b.now().Sub(time.Unix(0, t.DueAt)))

	ctx, cancel := context.WithCancelCause(withSandboxDone(obs.WithRequestTraceparent(context.Background(), t.Spec.Traceparent), release))
	defer cancel(nil)
	b.mu.Lock()
	b.running[t.ID] = &bulkRun{attempt: t.Attempts, until: until, cancel: cancel}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.running, t.ID)
		b.mu.Unlock()
	}()
	// A cancel applied between the claim and the registration above
	// would have missed this attempt: look again.
	if cur, err := b.state.QueueTask(t.ID); err == nil && cur.CancelRequested {
		cancel(sandbox.Terminate(sandbox.ReasonCancelled))
	}

	// A lease that expired or was revoked before the attempt started
	// ends it as terminated:revoked, with the reason in the task record:
	// an expired lease no longer grants anything, exactly like a
	// revoked one, and neither is retried.
	preset := ""
	l, err := b.state.Lease(t.LeaseID)
	switch {
	case errors.Is(err, consensus.ErrNotFound):
		l, preset = stubLease(t), ReasonLeaseExpired
	case err != nil:
		b.log.Error("read lease", "task", t.ID, "lease", t.LeaseID, "err", err)
		l, preset = stubLease(t), ReasonLeaseExpired
	case l.Revoked():
		preset = ReasonLeaseRevoked
	case !b.now().Before(l.Expires()):
		preset = ReasonLeaseExpired
	}
	if preset != "" {
		cancel(sandbox.Terminate(sandbox.ReasonRevoked))
	}

	st, err := b.sandboxTask(ctx, t, l)
	if err != nil {
		b.log.Warn("bulk attempt cannot start here", "task", t.ID, "attempt", t.Attempts, "err", err)
		cancel(sandbox.Terminate(ReasonModuleUnavailable))
	}
	out := b.node.Execute(ctx, l, st)
	b.complete(t, out, preset)
}

// sandboxDoneKey carries a func Execute calls once the sandbox has ended:
// a bulk attempt gives its slot back then, not after its receipt and
// completion are written, so that it holds a sandbox slot no longer than
// it uses one (an interactive task that arrives meanwhile gets it).
type sandboxDoneKey struct{}

func withSandboxDone(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, sandboxDoneKey{}, f)
}

// SandboxDone calls the func a bulk attempt put in ctx to give its slot
// back; the node's Execute calls it once the sandbox has ended.
func SandboxDone(ctx context.Context) {
	if f, ok := ctx.Value(sandboxDoneKey{}).(func()); ok {
		f()
	}
}

func stubLease(t *consensus.QueueTask) *consensus.Lease {
	return &consensus.Lease{ID: t.LeaseID, Tenant: t.Tenant, Profile: t.Profile, PolicyDigest: t.PolicyDigest, Class: t.Class}
}

// sandboxTask builds the sandbox task of an attempt. On error it still
// returns a task execute can record (a stand-in module).
func (b *Worker) sandboxTask(ctx context.Context, t *consensus.QueueTask, l *consensus.Lease) (*sandbox.Task, error) {
	hdr := http.Header{}
	for _, p := range t.Spec.Headers {
		hdr.Set(p.K, p.V)
	}
	var env map[string]string
	if len(t.Spec.Env) > 0 {
		env = make(map[string]string, len(t.Spec.Env))
		for _, p := range t.Spec.Env {
			env[p.K] = p.V
		}
	}
	var envJSON map[string]bool
	for _, k := range t.Spec.EnvJSON {
		if envJSON == nil {
			envJSON = map[string]bool{}
		}
		envJSON[k] = true
	}
	st := &sandbox.Task{
		ID:             t.ID,
		Module:         &sandbox.Module{Digest: t.Spec.ModuleDigest, Kind: sandbox.Kind(t.Spec.Kind)},
		Request:        sandbox.Request{Method: t.Spec.Method, URL: t.Spec.URL, Headers: hdr, Body: t.Spec.Body},
		Env:            env,
		EnvJSON:        envJSON,
		Attempt:        t.Attempts,
		IdempotencyKey: t.IdempotencyKey,
		Traceparent:    t.Spec.Traceparent,
	}
	bundle, err := b.state.Bundle(t.PolicyDigest)
	if err != nil {
		return st, fmt.Errorf("bundle %s: %w", t.PolicyDigest, err)
	}
	profile, ok := bundle.Profiles[t.Profile]
	if !ok {
		return st, fmt.Errorf("profile %q missing from bundle %s", t.Profile, t.PolicyDigest)
	}
	return st, b.node.Prepare(ctx, l, profile, st)
}

// decision is what becomes of a task after an attempt.
type decision struct {
	next    string // a consensus.Next* value
	reason  string
	retryAt time.Time
}

// decide applies the retry rules of docs/scheduling.md. budget is asked
// only when a retry is otherwise due; jitter(n) returns [0, n).
func decide(t *consensus.QueueTask, outcome, preset string, rp policy.Retry, now time.Time, budget func() bool, jitter func(int64) int64) decision {
	left := t.Attempts < t.MaxAttempts
	switch {
	case outcome == string(sandbox.OutcomeOK):
		return decision{next: consensus.NextSucceeded}
	case t.CancelRequested || outcome == string(sandbox.Terminated(sandbox.ReasonCancelled)):
		return decision{next: consensus.NextCancelled, reason: "cancelled"}
	case preset == ReasonLeaseExpired || preset == ReasonLeaseRevoked:
		// A policy refusal: never retried.
		return decision{next: consensus.NextFailed, reason: preset}
	case outcome == string(sandbox.Terminated(sandbox.ReasonShutdown)) || outcome == string(sandbox.Terminated(ReasonClaimLost)):
		// The node's doing, not the task's: run it again at once,
		// outside the retry budget (the attempt still counts).
		if !left {
			return decision{next: consensus.NextDead, reason: consensus.ReasonMaxAttempts}
		}
		return decision{next: consensus.NextRetry, retryAt: now}
	case outcome == string(sandbox.Terminated(ReasonModuleUnavailable)):
		if !left {
			return decision{next: consensus.NextDead, reason: ReasonModuleUnavailable}
		}
		return decision{next: consensus.NextRetry, reason: ReasonModuleUnavailable, retryAt: now.Add(retryDelay(rp, t.Attempts, jitter))}
	case !rp.Retries(outcome):
		return decision{next: consensus.NextFailed}
	case !left:
		return decision{next: consensus.NextDead, reason: consensus.ReasonMaxAttempts}
	case !budget():
		return decision{next: consensus.NextFailed, reason: ReasonRetryBudget}
	}
	return decision{next: consensus.NextRetry, retryAt: now.Add(retryDelay(rp, t.Attempts, jitter))}
}

// retryDelay is the delay before the attempt after attempt: exponential
// (backoff × 2^(attempt-1), at most max_backoff) with "equal jitter"
// (half of it fixed, half uniformly random), so that tasks that failed
// together do not all come back together.
func retryDelay(rp policy.Retry, attempt int, jitter func(int64) int64) time.Duration {
	d := rp.Backoff.D()
	for i := 1; i < attempt && d < rp.MaxBackoff.D(); i++ {
		d *= 2
	}
	d = min(d, rp.MaxBackoff.D())
	if d <= 0 {
		return 0
	}
	half := int64(d / 2)
	return time.Duration(half + jitter(int64(d)-half+1))
}

// complete decides what becomes of the task and records it through Raft.
func (b *Worker) complete(t *consensus.QueueTask, out *api.TaskResult, preset string) {
	if cur, err := b.state.QueueTask(t.ID); err == nil {
		t.CancelRequested = cur.CancelRequested
	}
	rp := policy.Retry{}
	if bundle, err := b.state.Bundle(t.PolicyDigest); err == nil {
		rp = bundle.Profiles[t.Profile].RetryPolicy()
	} else {
		rp = (*policy.Profile)(nil).RetryPolicy()
	}
	now := b.now()
	d := decide(t, out.Outcome, preset, rp, now, b.budgetOf(t.Class).tryRetry, func(k int64) int64 { return rand.Int64N(max(k, 1)) })
	if d.reason == ReasonRetryBudget {
		b.stats.budgetRefusals.Add(1)
	}
	result, err := boundedResult(out)
	if err != nil {
		b.log.Error("encode result", "task", t.ID, "err", err)
	}
	cmd := &consensus.CompleteTask{ID: t.ID, Attempt: t.Attempts, Node: b.nodeID, At: now.UnixNano(),
		Outcome: out.Outcome, Reason: d.reason, Next: d.next, Result: result}
	if d.next == consensus.NextRetry {
		cmd.RetryAt = d.retryAt.UnixNano()
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeWait)
	defer cancel()
	// Retry while there is no leader (an election); any other error is
	// final.
	var last error
	res, err := backoff.Retry(ctx, func() (*consensus.Result, error) {
		res, err := b.node.Propose(ctx, cmd)
		if err != nil && !errors.Is(err, consensus.ErrNoLeader) && !errors.Is(err, consensus.ErrNotLeader) {
			return nil, backoff.Permanent(err)
		}
		last = err
		return res, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: time.Second,
	}), backoff.WithMaxElapsedTime(0))
	if err != nil && ctx.Err() != nil && last != nil {
		err = last // what kept the completion out, not the deadline
	}
	var re *consensus.RefusedError
	switch {
	case errors.As(err, &re) && re.Code == consensus.CodeClaimLost:
		b.stats.claimsLost.Add(1)
		b.log.Warn("attempt ended after its claim was lost; another node runs the task", "task", t.ID, "attempt", t.Attempts, "outcome", out.Outcome)
		return
	case err != nil:
		// The claim expires and the task runs again elsewhere.
		b.log.Error("complete task", "task", t.ID, "attempt", t.Attempts, "err", err)
		return
	}
	st, _ := res.Value.(*consensus.TaskStatus)
	state := d.next
	if st != nil {
		state = st.State
	}
	b.log.Info("bulk attempt done", "task", t.ID, "tenant", t.Tenant, "attempt", t.Attempts, "outcome", out.Outcome, "state", state, "reason", d.reason, "traceparent", t.Spec.Traceparent)
	switch state {
	case consensus.TaskSucceeded:
		b.stats.succeeded.Add(1)
	case consensus.TaskFailed:
		b.stats.failed.Add(1)
	case consensus.TaskCancelled:
		b.stats.cancelled.Add(1)
	case consensus.TaskDead:
		b.stats.dead.Add(1)
		b.emit(t, events.TaskDead{Attempts: t.Attempts, Reason: firstOf(d.reason, out.Outcome)})
	case consensus.TaskQueued:
		b.stats.retries.Add(1)
		b.emit(t, events.TaskRetried{Attempt: t.Attempts, MaxAttempts: t.MaxAttempts, Reason: firstOf(d.reason, out.Outcome), NextAt: d.retryAt.UTC()})
		b.poke()
	}
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// boundedResult encodes a result for the task record, within
// consensus.MaxQueueResultBytes: a response body too large to replicate
// is left out (the node keeps it), then logs, then headers.
func boundedResult(out *api.TaskResult) ([]byte, error) {
	b, err := json.Marshal(out)
	if err != nil || len(b) <= consensus.MaxQueueResultBytes {
		return b, err
	}
	r := *out
	if r.Response != nil {
		resp := *r.Response
		resp.Body = api.Body{}
		r.Response = &resp
	}
	r.ResponseElided = true
	for _, trim := range []func(){
		func() {},
		func() {
			r.Logs = append(r.Logs[:0:0], api.LogLine{Level: "warn", Message: "logs left out of the replicated record; the node that ran the task has them"})
		},
		func() {
			if r.Response != nil {
				r.Response.Headers = http.Header{}
			}
		},
	} {
		trim()
		if b, err = json.Marshal(&r); err != nil || len(b) <= consensus.MaxQueueResultBytes {
			return b, err
		}
	}
	return nil, fmt.Errorf("result is %d bytes even without its body, logs and headers", len(b))
}

// Claims.

// renewLoop renews this node's claims every third of the claim TTL, and
// ends attempts whose claim it could not keep before they could be
// reclaimed (the fence): no task runs on two nodes at once, as long as
// the nodes' clocks agree to within the fence margin (a fifth of the
// TTL, at least 300 ms).
func (b *Worker) renewLoop() {
	t := time.NewTicker(fenceCheckEvery)
	defer t.Stop()
	var last time.Time
	done := b.ctx.Done()
	stopping := false
	for {
		select {
		case <-done:
			// Attempts still running after a drain keep their claims
			// until shutdown ends them; go on renewing until then.
			done, stopping = nil, true
		case <-t.C:
		}
		if stopping && b.runningCount() == 0 {
			return
		}
		now := b.now()
		if now.Sub(last) >= b.renewEvery {
			last = now
			b.renew(now)
		}
		b.fence(b.now())
	}
}

func (b *Worker) runningCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.running)
}

func (b *Worker) renew(now time.Time) {
	b.mu.Lock()
	tasks := make([]consensus.TaskAttempt, 0, len(b.running))
	for id, r := range b.running {
		tasks = append(tasks, consensus.TaskAttempt{ID: id, Attempt: r.attempt})
	}
	b.mu.Unlock()
	if len(tasks) == 0 {
		return
	}
	until := now.Add(b.claimTTL)
	ctx, cancel := context.WithTimeout(context.Background(), b.renewEvery)
	defer cancel()
	res, err := b.node.Propose(ctx, &consensus.RenewClaims{Node: b.nodeID, Now: now.UnixNano(), Until: until.UnixNano(), Tasks: tasks})
	if err != nil {
		b.log.Warn("renew claims", "tasks", len(tasks), "err", err)
		return
	}
	rr, _ := res.Value.(*consensus.RenewResult)
	if rr == nil {
		return
	}
	lost := map[string]bool{}
	for _, id := range rr.Lost {
		lost[id] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ta := range tasks {
		r := b.running[ta.ID]
		if r == nil || r.attempt != ta.Attempt {
			continue
		}
		if lost[ta.ID] {
			b.stats.claimsLost.Add(1)
			r.cancel(sandbox.Terminate(ReasonClaimLost))
			continue
		}
		r.until = until
	}
	for _, id := range rr.Cancelled {
		if r := b.running[id]; r != nil {
			r.cancel(sandbox.Terminate(sandbox.ReasonCancelled))
		}
	}
}

// fence ends attempts whose claim is about to expire unrenewed.
func (b *Worker) fence(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, r := range b.running {
		if now.Add(b.margin).After(r.until) {
			b.log.Warn("claim about to expire unrenewed; ending the attempt", "task", id, "attempt", r.attempt)
			r.cancel(sandbox.Terminate(ReasonClaimLost))
		}
	}
}

// reapLoop runs on every node but acts on the leader: it reclaims expired
// claims and purges finished tasks past their retention.
func (b *Worker) reapLoop() {
	every := max(b.claimTTL/5, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var lastPurge time.Time
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		if !b.node.IsLeader() {
			continue
		}
		now := b.now()
		if due, err := b.state.ExpiredClaims(now.UnixNano()); err == nil && due {
			b.reclaim(&consensus.ReclaimTasks{Now: now.UnixNano(), Max: reclaimBatch})
		}
		if now.Sub(lastPurge) >= purgeEvery {
			lastPurge = now
			before := now.Add(-b.retention).UnixNano()
			if due, err := b.state.PurgeDue(before); err == nil && due {
				ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
				res, err := b.node.Propose(ctx, &consensus.PurgeTasks{Before: before, Max: purgeBatch})
				cancel()
				if err != nil {
					b.log.Warn("purge finished tasks", "err", err)
				} else {
					b.log.Info("purged finished bulk tasks", "tasks", res.Value)
				}
			}
		}
	}
}

func (b *Worker) reclaim(c *consensus.ReclaimTasks) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.node.Propose(ctx, c)
	if err != nil {
		b.log.Warn("reclaim claims", "node", c.Node, "err", err)
		return
	}
	rr, _ := res.Value.(*consensus.ReclaimResult)
	if rr == nil {
		return
	}
	k := len(rr.Requeued) + len(rr.Dead) + len(rr.Cancelled)
	if k == 0 {
		return
	}
	b.stats.claimExpiries.Add(uint64(k))
	b.log.Info("claims reclaimed", "node", c.Node, "requeued", len(rr.Requeued), "dead", len(rr.Dead), "cancelled", len(rr.Cancelled))
	// Each lost attempt still gets its one receipt.
	for _, ids := range [][]string{rr.Requeued, rr.Dead, rr.Cancelled} {
		for _, id := range ids {
			t, err := b.state.QueueTask(id)
			if err != nil {
				continue
			}
			for i := len(t.History) - 1; i >= 0; i-- {
				if t.History[i].Outcome == consensus.OutcomeAbandoned {
					b.node.RecordLost(t, t.History[i].N)
					break
				}
			}
		}
	}
	for _, id := range rr.Dead {
		if t, err := b.state.QueueTask(id); err == nil {
			b.stats.dead.Add(1)
			b.emit(t, events.TaskDead{Attempts: t.Attempts, Reason: t.Reason})
		}
	}
	b.poke()
}

// recoverClaims settles the claims this node held when it stopped: an
// attempt that ran to its end here (its record is in the local store) is
// completed now; the others are reclaimed at once rather than left to
// expire.
func (b *Worker) recoverClaims(ctx context.Context) {
	claims, err := b.state.ClaimsOf(b.nodeID)
	if err != nil || len(claims) == 0 {
		return
	}
	abandoned := 0
	for _, t := range claims {
		local, err := b.node.LocalTask(t.ID)
		if err == nil && local.Attempts == t.Attempts && local.Result != nil && (local.State == api.TaskSucceeded || local.State == api.TaskFailed) {
			b.log.Info("completing an attempt that ended before the restart", "task", t.ID, "attempt", t.Attempts, "outcome", local.Result.Outcome)
			b.complete(t, local.Result, "")
			continue
		}
		abandoned++
	}
	if abandoned > 0 {
		b.reclaim(&consensus.ReclaimTasks{Now: b.now().UnixNano(), Node: b.nodeID, Max: reclaimBatch})
	}
}

// Events and counters.

// emit reports task_enqueued, task_retried and task_dead through the
// node's event bus (observe.go), scoped to the task.
func (b *Worker) emit(t *consensus.QueueTask, d events.Data) {
	ctx := events.WithScope(context.Background(), events.Scope{Tenant: t.Tenant, Lease: t.LeaseID, Task: t.ID, Traceparent: t.Spec.Traceparent})
	b.events.Emit(ctx, events.New(d))
}

func (b *Worker) budgetOf(class string) *retryBudget {
	if r, ok := b.budget[class]; ok {
		return r
	}
	return b.budget[scheduler.Bulk]
}

func (b *Worker) observeQueueWait(d time.Duration) {
	b.histMu.Lock()
	defer b.histMu.Unlock()
	for i, ub := range scheduler.WaitBuckets {
		if d <= ub {
			b.queueWait[i]++
			return
		}
	}
	b.queueWait[len(scheduler.WaitBuckets)]++
}

// Enqueued counts and reports (task_enqueued) a task this node enqueued.
func (b *Worker) Enqueued(t *consensus.QueueTask, queued int) {
	b.stats.enqueued.Add(1)
	b.emit(t, events.TaskEnqueued{Class: t.Class, Profile: t.Profile, QueueDepth: queued})
}
