package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/scheduler"
)

// Bulk tasks: the node side of the replicated queue (consensus/queue.go,
// docs/scheduling.md). A bulk POST /v1/tasks enqueues through Raft and
// answers 202. On every node, workers claim due tasks when the scheduler
// grants the bulk class a slot (one slot request per tenant with due
// work, so the scheduler's tenant fairness decides whose task runs next),
// run each attempt through execute (so it gets its receipt), renew their
// claims while it runs, and complete it: succeeded, failed, dead,
// cancelled, or queued again after a backoff. The leader reclaims expired
// claims, so the tasks of a node that died run elsewhere.

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
	// ReasonModuleUnavailable ends an attempt this node could not start:
	// its module does not compile here (no JS engine, say).
	ReasonModuleUnavailable = "module_unavailable"
)

// taskEmitter is where the bulk queue's events (task_enqueued,
// task_retried, task_dead) go: the hook for the node's event bus. Until
// the bus is wired into the node, return it here; events are dropped.
func (n *Node) taskEmitter() events.Emitter {
	if n.bus == nil || n.cfg.Unaudited {
		return events.Discard
	}
	return n.bus
}

// bulkQueue is a node's bulk workers and their counters.
type bulkQueue struct {
	n          *Node
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

func newBulk(n *Node) *bulkQueue {
	cfg := n.cfg
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
	b := &bulkQueue{
		n: n, log: n.log.With("component", "bulk"),
		claimTTL: ttl, renewEvery: ttl / 3, margin: max(ttl/5, minFenceMargin), retention: retention,
		budget: map[string]*retryBudget{
			scheduler.Bulk:        newRetryBudget(ratio, minRetries, window, n.now),
			scheduler.Interactive: newRetryBudget(ratio, minRetries, window, n.now),
		},
		ctx: ctx, cancel: cancel,
		wake:    make(chan struct{}, 1),
		waiting: map[string]bool{},
		running: map[string]*bulkRun{},
	}
	return b
}

// startBulk recovers this node's claims from before a restart and starts
// the workers, the claim renewals and (on the leader) the reaper.
func (n *Node) startBulk(ctx context.Context) {
	b := newBulk(n)
	n.bulk.Store(b)
	b.recoverClaims(ctx)
	b.loops.Add(3)
	go func() { defer b.loops.Done(); b.claimLoop() }()
	go func() { defer b.loops.Done(); b.renewLoop() }()
	go func() { defer b.loops.Done(); b.reapLoop() }()
}

// drain stops claiming and gives the attempts running here until ctx
// ends to finish; then it ends the rest (terminated:shutdown: they are
// queued again, for another node or this one after its restart) and
// waits until every attempt is completed, so that a node leaving the
// cluster leaves no claim behind.
func (b *bulkQueue) drain(ctx context.Context) {
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

// stop ends the loops and every attempt (terminated:shutdown), and waits
// until each is completed.
func (b *bulkQueue) stop() {
	if b == nil {
		return
	}
	b.cancel()
	b.endRunning()
	b.work.Wait()
	b.loops.Wait()
}

func (b *bulkQueue) endRunning() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.running {
		r.cancel(sandbox.Terminate(sandbox.ReasonShutdown))
	}
}

func (b *bulkQueue) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// bulkApplied reacts to queue commands applied on this node (on raft's
// FSM goroutine: quick): new or requeued work wakes the workers, and a
// cancelled task running here ends as terminated:cancelled.
func (n *Node) bulkApplied(a consensus.Applied) {
	b := n.bulk.Load()
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

func (b *bulkQueue) cancelRunning(id string, cause error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.running[id]; r != nil {
		r.cancel(cause)
		return true
	}
	return false
}

// Claiming.

func (b *bulkQueue) claimLoop() {
	t := time.NewTicker(bulkPoll)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		case <-t.C:
		}
		if b.n.draining.Load() {
			continue
		}
		b.fill()
	}
}

// fill asks the scheduler for a bulk slot for each tenant with due work
// that has no request waiting yet.
func (b *bulkQueue) fill() {
	tenants, err := b.n.state.ReadyTenants(b.n.now().UnixNano(), maxBulkWaiters)
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

func (b *bulkQueue) doneWaiting(tenant string) {
	b.mu.Lock()
	delete(b.waiting, tenant)
	b.mu.Unlock()
	b.poke()
}

// claimFor waits for a bulk slot for tenant, claims the tenant's next due
// task and runs it in that slot.
func (b *bulkQueue) claimFor(tenant string) {
	defer b.work.Done()
	if !b.yield() {
		b.doneWaiting(tenant)
		return
	}
	release, err := b.n.pool.Acquire(b.ctx, scheduler.Bulk, tenant)
	if err != nil {
		b.doneWaiting(tenant)
		if !errors.Is(err, context.Canceled) {
			b.log.Warn("no bulk slot", "tenant", tenant, "err", err)
		}
		return
	}
	now := b.n.now()
	res, err := b.n.propose(b.ctx, &consensus.ClaimTask{Tenant: tenant, Node: b.n.id.NodeID, Now: now.UnixNano(), Until: now.Add(b.claimTTL).UnixNano()})
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
func (b *bulkQueue) yield() bool {
	for {
		b.yieldMu.Lock()
		wait := time.Until(b.yieldUntil)
		b.yieldMu.Unlock()
		if wait <= 0 || !b.n.pool.Active(scheduler.Interactive, interactiveQuiet) {
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
func (b *bulkQueue) charge(d time.Duration) time.Duration {
	if !b.n.pool.Active(scheduler.Interactive, interactiveQuiet) {
		return 0
	}
	wb := b.n.pool.Weight(scheduler.Bulk)
	if wb <= 0 {
		return 0
	}
	pause := min(time.Duration(float64(d)*b.n.pool.Weight(scheduler.Interactive)/wb), maxYield)
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
func (b *bulkQueue) claimed(cr *consensus.ClaimResult) (*consensus.QueueTask, error) {
	for i := 0; ; i++ {
		t, err := b.n.state.QueueTask(cr.ID)
		if err == nil && t.Attempts >= cr.Attempt {
			if t.Attempts != cr.Attempt || t.State != consensus.TaskRunning || t.ClaimedBy != b.n.id.NodeID {
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
func (b *bulkQueue) run(t *consensus.QueueTask, until time.Time, release func()) {
	defer release()
	n := b.n
	b.stats.claims.Add(1)
	if t.Attempts == 1 {
		b.budgetOf(t.Class).first()
	}
	b.observeQueueWait(n.now().Sub(time.Unix(0, t.DueAt)))

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
	if cur, err := n.state.QueueTask(t.ID); err == nil && cur.CancelRequested {
		cancel(sandbox.Terminate(sandbox.ReasonCancelled))
	}

	// A lease that expired or was revoked before the attempt started
	// ends it as terminated:revoked, with the reason in the task record:
	// an expired lease no longer grants anything, exactly like a
	// revoked one, and neither is retried.
	preset := ""
	l, err := n.state.Lease(t.LeaseID)
	switch {
	case errors.Is(err, consensus.ErrNotFound):
		l, preset = stubLease(t), ReasonLeaseExpired
	case err != nil:
		b.log.Error("read lease", "task", t.ID, "lease", t.LeaseID, "err", err)
		l, preset = stubLease(t), ReasonLeaseExpired
	case l.Revoked():
		preset = ReasonLeaseRevoked
	case !n.now().Before(l.Expires()):
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
	out := n.execute(ctx, l, st)
	b.complete(t, out, preset)
}

// sandboxDoneKey carries a func execute calls once the sandbox has ended:
// a bulk attempt gives its slot back then, not after its receipt and
// completion are written, so that it holds a sandbox slot no longer than
// it uses one (an interactive task that arrives meanwhile gets it).
type sandboxDoneKey struct{}

func withSandboxDone(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, sandboxDoneKey{}, f)
}

func sandboxDone(ctx context.Context) {
	if f, ok := ctx.Value(sandboxDoneKey{}).(func()); ok {
		f()
	}
}

func stubLease(t *consensus.QueueTask) *consensus.Lease {
	return &consensus.Lease{ID: t.LeaseID, Tenant: t.Tenant, Profile: t.Profile, PolicyDigest: t.PolicyDigest, Class: t.Class}
}

// sandboxTask builds the sandbox task of an attempt. On error it still
// returns a task execute can record (a stand-in module).
func (b *bulkQueue) sandboxTask(ctx context.Context, t *consensus.QueueTask, l *consensus.Lease) (*sandbox.Task, error) {
	n := b.n
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
	bundle, err := n.state.Bundle(t.PolicyDigest)
	if err != nil {
		return st, fmt.Errorf("bundle %s: %w", t.PolicyDigest, err)
	}
	profile, ok := bundle.Profiles[t.Profile]
	if !ok {
		return st, fmt.Errorf("profile %q missing from bundle %s", t.Profile, t.PolicyDigest)
	}
	st.Limits = limitsOf(profile)
	mod, err := n.moduleByDigest(ctx, t.Spec.ModuleDigest)
	if err != nil {
		return st, err
	}
	st.Module = mod
	tc, err := n.fetcherFor(l, profile, st.ID, st.Traceparent)
	if err != nil {
		return st, err
	}
	st.Host.Fetch = tc
	return st, nil
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
func (b *bulkQueue) complete(t *consensus.QueueTask, out *api.TaskResult, preset string) {
	n := b.n
	if cur, err := n.state.QueueTask(t.ID); err == nil {
		t.CancelRequested = cur.CancelRequested
	}
	rp := policy.Retry{}
	if bundle, err := n.state.Bundle(t.PolicyDigest); err == nil {
		rp = bundle.Profiles[t.Profile].RetryPolicy()
	} else {
		rp = (*policy.Profile)(nil).RetryPolicy()
	}
	now := n.now()
	d := decide(t, out.Outcome, preset, rp, now, b.budgetOf(t.Class).tryRetry, func(k int64) int64 { return rand.Int64N(max(k, 1)) })
	if d.reason == ReasonRetryBudget {
		b.stats.budgetRefusals.Add(1)
	}
	result, err := boundedResult(out)
	if err != nil {
		b.log.Error("encode result", "task", t.ID, "err", err)
	}
	cmd := &consensus.CompleteTask{ID: t.ID, Attempt: t.Attempts, Node: n.id.NodeID, At: now.UnixNano(),
		Outcome: out.Outcome, Reason: d.reason, Next: d.next, Result: result}
	if d.next == consensus.NextRetry {
		cmd.RetryAt = d.retryAt.UnixNano()
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeWait)
	defer cancel()
	var res *consensus.Result
	for delay := 50 * time.Millisecond; ; delay = min(delay*2, time.Second) {
		res, err = n.propose(ctx, cmd)
		if err == nil || !(errors.Is(err, consensus.ErrNoLeader) || errors.Is(err, consensus.ErrNotLeader)) || ctx.Err() != nil {
			break
		}
		time.Sleep(delay)
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
func (b *bulkQueue) renewLoop() {
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
		now := b.n.now()
		if now.Sub(last) >= b.renewEvery {
			last = now
			b.renew(now)
		}
		b.fence(b.n.now())
	}
}

func (b *bulkQueue) runningCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.running)
}

func (b *bulkQueue) renew(now time.Time) {
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
	res, err := b.n.propose(ctx, &consensus.RenewClaims{Node: b.n.id.NodeID, Now: now.UnixNano(), Until: until.UnixNano(), Tasks: tasks})
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
func (b *bulkQueue) fence(now time.Time) {
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
func (b *bulkQueue) reapLoop() {
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
		if !b.n.raft.IsLeader() {
			continue
		}
		now := b.n.now()
		if due, err := b.n.state.ExpiredClaims(now.UnixNano()); err == nil && due {
			b.reclaim(&consensus.ReclaimTasks{Now: now.UnixNano(), Max: reclaimBatch})
		}
		if now.Sub(lastPurge) >= purgeEvery {
			lastPurge = now
			before := now.Add(-b.retention).UnixNano()
			if due, err := b.n.state.PurgeDue(before); err == nil && due {
				ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
				res, err := b.n.propose(ctx, &consensus.PurgeTasks{Before: before, Max: purgeBatch})
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

func (b *bulkQueue) reclaim(c *consensus.ReclaimTasks) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.n.propose(ctx, c)
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
	for _, id := range rr.Dead {
		if t, err := b.n.state.QueueTask(id); err == nil {
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
func (b *bulkQueue) recoverClaims(ctx context.Context) {
	n := b.n
	claims, err := n.state.ClaimsOf(n.id.NodeID)
	if err != nil || len(claims) == 0 {
		return
	}
	abandoned := 0
	for _, t := range claims {
		local, err := n.loadTask(t.ID)
		if err == nil && local.Attempts == t.Attempts && local.Result != nil && (local.State == api.TaskSucceeded || local.State == api.TaskFailed) {
			b.log.Info("completing an attempt that ended before the restart", "task", t.ID, "attempt", t.Attempts, "outcome", local.Result.Outcome)
			b.complete(t, local.Result, "")
			continue
		}
		abandoned++
	}
	if abandoned > 0 {
		b.reclaim(&consensus.ReclaimTasks{Now: n.now().UnixNano(), Node: n.id.NodeID, Max: reclaimBatch})
	}
}

// Events and counters.

// emit reports task_enqueued, task_retried and task_dead through the
// node's event bus (observe.go), scoped to the task.
func (b *bulkQueue) emit(t *consensus.QueueTask, d events.Data) {
	ctx := events.WithScope(context.Background(), events.Scope{Tenant: t.Tenant, Lease: t.LeaseID, Task: t.ID, Traceparent: t.Spec.Traceparent})
	b.n.emit(ctx, d)
}

func (b *bulkQueue) budgetOf(class string) *retryBudget {
	if r, ok := b.budget[class]; ok {
		return r
	}
	return b.budget[scheduler.Bulk]
}

func (b *bulkQueue) observeQueueWait(d time.Duration) {
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

// QueueStats are the scheduler's and the bulk queue's counters, for
// metrics. Counters count since the node started; Depth is replicated
// state (the same on every node, give or take replication lag).
type QueueStats struct {
	// Depth is the number of bulk tasks in each state, cluster-wide.
	Depth map[string]int64
	// Classes are the scheduler's counters per class on this node: slots
	// in use (Running), waiting, granted, shed (queue_full and
	// queue_timeout), and the slot wait-time histogram.
	Classes map[string]scheduler.ClassStats
	// Running is the bulk attempts this node runs; Waiting, the tenants
	// with a bulk slot request here.
	Running, Waiting int
	// QueueWait counts bulk attempts by how long the task waited in the
	// queue (from due to claim), by scheduler.WaitBuckets (last entry:
	// longer).
	QueueWait [len(scheduler.WaitBuckets) + 1]int64
	// What this node did.
	Enqueued, Claims, EmptyClaims              uint64
	Succeeded, Failed, Cancelled, Dead         uint64
	Retries, BudgetRefusals                    uint64
	ClaimExpiries, ClaimsLost                  uint64
	RetryBudget                                map[string]BudgetStats
	ClaimTTL, RetryBudgetWindow, TaskRetention time.Duration
	RetryBudgetRatio                           float64
	RetryBudgetMin                             int
}

// BudgetStats is a retry budget's window now.
type BudgetStats struct {
	FirstAttempts, Retries int64
}

// QueueStats returns the counters (zero values before the node runs).
func (n *Node) QueueStats() QueueStats {
	var s QueueStats
	if n.pool != nil {
		s.Classes = n.pool.Stats()
	}
	if n.state != nil {
		s.Depth, _ = n.state.QueueCounts()
	}
	b := n.bulk.Load()
	if b == nil {
		return s
	}
	b.mu.Lock()
	s.Running, s.Waiting = len(b.running), len(b.waiting)
	b.mu.Unlock()
	b.histMu.Lock()
	s.QueueWait = b.queueWait
	b.histMu.Unlock()
	c := &b.stats
	s.Enqueued, s.Claims, s.EmptyClaims = c.enqueued.Load(), c.claims.Load(), c.emptyClaims.Load()
	s.Succeeded, s.Failed, s.Cancelled, s.Dead = c.succeeded.Load(), c.failed.Load(), c.cancelled.Load(), c.dead.Load()
	s.Retries, s.BudgetRefusals = c.retries.Load(), c.budgetRefusals.Load()
	s.ClaimExpiries, s.ClaimsLost = c.claimExpiries.Load(), c.claimsLost.Load()
	s.RetryBudget = map[string]BudgetStats{}
	for class, r := range b.budget {
		f, rt := r.window()
		s.RetryBudget[class] = BudgetStats{FirstAttempts: f, Retries: rt}
	}
	bb := b.budget[scheduler.Bulk]
	s.ClaimTTL, s.RetryBudgetWindow, s.TaskRetention = b.claimTTL, bb.span, b.retention
	s.RetryBudgetRatio, s.RetryBudgetMin = bb.ratio, bb.min
	return s
}

// retryBudget caps retries at a fraction of first attempts over a sliding
// window (the retry budget of Finagle and gRPC's retry throttling): a
// retry is allowed while retries in the window stay at most
// max(min, ratio × first attempts in the window). Each node keeps its own,
// per class, over the attempts it runs: a bad deploy that fails every
// task turns into at most ratio more load, not a retry storm.
type retryBudget struct {
	ratio float64
	min   int
	span  time.Duration
	now   func() time.Time

	mu    sync.Mutex
	slots [budgetSlots]budgetSlot
}

type budgetSlot struct {
	epoch          int64
	first, retries int64
}

func newRetryBudget(ratio float64, minRetries int, window time.Duration, now func() time.Time) *retryBudget {
	return &retryBudget{ratio: ratio, min: minRetries, span: window, now: now}
}

func (r *retryBudget) width() int64 { return max(int64(r.span)/budgetSlots, 1) }

// slot returns the current slot, cleared when it held an older epoch.
func (r *retryBudget) slot() *budgetSlot {
	epoch := r.now().UnixNano() / r.width()
	s := &r.slots[epoch%budgetSlots]
	if s.epoch != epoch {
		*s = budgetSlot{epoch: epoch}
	}
	return s
}

func (r *retryBudget) sums() (first, retries int64) {
	epoch := r.now().UnixNano() / r.width()
	for _, s := range r.slots {
		if s.epoch > epoch-budgetSlots && s.epoch <= epoch {
			first += s.first
			retries += s.retries
		}
	}
	return first, retries
}

func (r *retryBudget) first() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slot().first++
}

// tryRetry takes one retry from the budget, or reports there is none.
func (r *retryBudget) tryRetry() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, retries := r.sums()
	if float64(retries+1) > max(float64(r.min), r.ratio*float64(first)) {
		return false
	}
	r.slot().retries++
	return true
}

func (r *retryBudget) window() (first, retries int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sums()
}

// API.

// submitBulk enqueues a bulk task through Raft and answers 202. The
// module is replicated with it (so any node can run it), and its
// idempotency key, when given, makes a repeat return the same task.
func (n *Node) submitBulk(w http.ResponseWriter, r *http.Request, l *consensus.Lease, t *sandbox.Task, req *api.TaskRequest) error {
	ctx := r.Context()
	key := req.IdempotencyKey
	if len(key) > consensus.MaxIdempotencyKeyBytes || strings.ContainsRune(key, 0) {
		return api.BadRequest(api.CodeBadRequest, "idempotency_key is longer than %d bytes or has a NUL byte", consensus.MaxIdempotencyKeyBytes)
	}
	if len(t.Request.Body) > consensus.MaxQueueBodyBytes {
		return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "a bulk task's request body is at most %d bytes: it is replicated through Raft", consensus.MaxQueueBodyBytes)
	}
	b := n.bulk.Load()
	if b == nil {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "the bulk queue is not running on this node yet; retry", RetryAfter: 1}
	}
	if err := n.replicateModule(ctx, &req.Module, t.Module); err != nil {
		return err
	}
	bundle, err := n.state.Bundle(l.PolicyDigest)
	if err != nil {
		return err
	}
	spec := consensus.TaskSpec{Kind: string(t.Module.Kind), ModuleDigest: t.Module.Digest, Method: t.Request.Method, URL: t.Request.URL,
		Body: t.Request.Body, Traceparent: t.Traceparent}
	for k, vs := range t.Request.Headers {
		spec.Headers = append(spec.Headers, consensus.Pair{K: k, V: strings.Join(vs, ", ")})
	}
	for k, v := range t.Env {
		spec.Env = append(spec.Env, consensus.Pair{K: k, V: v})
		if t.EnvJSON[k] {
			spec.EnvJSON = append(spec.EnvJSON, k)
		}
	}
	slices.Sort(spec.EnvJSON)
	consensus.SortPairs(spec.Headers)
	consensus.SortPairs(spec.Env)
	qt := consensus.QueueTask{ID: t.ID, Tenant: l.Tenant, LeaseID: l.ID, Profile: l.Profile, PolicyDigest: l.PolicyDigest, Class: l.Class,
		IdempotencyKey: key, Spec: spec, MaxAttempts: bundle.Profiles[l.Profile].RetryPolicy().MaxAttempts,
		EnqueuedAt: n.now().UnixNano(), EnqueuedBy: n.id.NodeID}
	res, err := n.propose(ctx, &consensus.EnqueueTask{Task: qt})
	var re *consensus.RefusedError
	if errors.As(err, &re) && re.Code == consensus.CodeModuleNotFound {
		// Purged between the two writes (it had no task yet): again.
		if err = n.replicateModule(ctx, &req.Module, t.Module); err == nil {
			res, err = n.propose(ctx, &consensus.EnqueueTask{Task: qt})
		}
	}
	if err != nil {
		return n.queueError(err)
	}
	er, ok := res.Value.(*consensus.EnqueueResult)
	if !ok {
		return fmt.Errorf("enqueue: unexpected result %T", res.Value)
	}
	if er.Created {
		b.stats.enqueued.Add(1)
		qt.ID = er.ID
		b.emit(&qt, events.TaskEnqueued{Class: qt.Class, Profile: qt.Profile, QueueDepth: int(er.Queued)})
		n.log.Info("bulk task enqueued", "task", er.ID, "tenant", l.Tenant, "lease", l.ID, "idempotency_key", key != "", "traceparent", t.Traceparent)
	}
	setIndex(w, res)
	httpapi.WriteJSON(w, http.StatusAccepted, api.Accepted{TaskID: er.ID})
	return nil
}

// replicateModule makes sure a bulk task's module is in replicated state.
func (n *Node) replicateModule(ctx context.Context, m *api.Module, mod *sandbox.Module) error {
	if n.state.HasQueueModule(mod.Digest) {
		return nil
	}
	var code []byte
	switch {
	case m.JS != nil:
		code = []byte(*m.JS)
	case m.WASM != nil:
		var err error
		if code, err = base64.StdEncoding.DecodeString(*m.WASM); err != nil {
			return api.BadRequest(api.CodeInvalidModule, "module.wasm is not valid base64")
		}
	default:
		v, closer, err := n.db.Get([]byte(prefixModule + mod.Digest))
		switch {
		case err == nil:
			code = append([]byte(nil), v[1:]...)
			closer.Close()
		case errors.Is(err, pebble.ErrNotFound):
			b, err := n.fetchModule(ctx, mod.Digest, "") // the tenant was checked when the module was resolved
			if err != nil {
				return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "module %s is on no reachable node; PUT /v1/modules first", mod.Digest)
			}
			code = b[1:]
		default:
			return fmt.Errorf("read module: %w", err)
		}
	}
	if len(code) > consensus.MaxQueueModuleBytes {
		return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "a bulk task's module is at most %d bytes: it is replicated through Raft so that any node can run it", consensus.MaxQueueModuleBytes)
	}
	// In chunks, one Raft entry each (entries are capped at 4 MiB).
	at := n.now().UnixNano()
	for off := 0; off < len(code); {
		end := min(off+consensus.MaxQueueModuleChunk, len(code))
		res, err := n.propose(ctx, &consensus.PutQueueModule{Digest: mod.Digest, Kind: string(mod.Kind), Size: len(code), Offset: off, Code: code[off:end], At: at})
		if err != nil {
			return n.queueError(err)
		}
		mp, ok := res.Value.(*consensus.ModulePut)
		switch {
		case !ok:
			return fmt.Errorf("replicate module: unexpected result %T", res.Value)
		case mp.Reset:
			return fmt.Errorf("replicate module %s: its bytes do not hash to its digest", mod.Digest)
		case mp.Complete:
			return nil
		}
		// Another node may be sending the same module: go on from
		// what is there.
		off = max(end, mp.Have)
	}
	return nil
}

// queueError maps queue refusals to the API.
func (n *Node) queueError(err error) error {
	var re *consensus.RefusedError
	if !errors.As(err, &re) {
		return n.proposeError(err)
	}
	switch re.Code {
	case consensus.CodeQueueFull:
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeQueueFull, Message: re.Message, RetryAfter: 5}
	case consensus.CodeTaskNotFound:
		return api.Errorf(http.StatusNotFound, api.CodeTaskNotFound, "%s", re.Message)
	case consensus.CodeTaskFinished:
		return api.Errorf(http.StatusConflict, api.CodeTaskFinished, "%s", re.Message)
	case consensus.CodeIdempotencyConflict:
		return api.Errorf(http.StatusConflict, api.CodeIdempotencyKey, "%s", re.Message)
	case consensus.CodeModuleNotFound:
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "%s", re.Message)
	case consensus.CodeLeaseRevoked:
		return api.Errorf(http.StatusForbidden, api.CodeLeaseRevoked, "%s", re.Message)
	}
	return n.proposeError(err)
}

func timePtr(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

// bulkView is a bulk task as the API shows it. With result, the last
// attempt's result is included: from this node's full record when this
// node ran it and the replicated copy left the response body out.
func (n *Node) bulkView(t *consensus.QueueTask, result bool) api.Task {
	v := api.Task{
		TaskID: t.ID, State: t.State, Class: t.Class, Attempts: t.Attempts, MaxAttempts: t.MaxAttempts,
		Tenant: t.Tenant, LeaseID: t.LeaseID, IdempotencyKey: t.IdempotencyKey,
		Outcome: t.Outcome, Reason: t.Reason, CancelRequested: t.CancelRequested,
		EnqueuedAt: timePtr(t.EnqueuedAt), FinishedAt: timePtr(t.FinishedAt),
	}
	if t.State == consensus.TaskRunning {
		v.Node = t.ClaimedBy
	}
	if t.State == consensus.TaskQueued && t.Attempts > 0 {
		v.NextAttemptAt = timePtr(t.DueAt)
	}
	for _, a := range t.History {
		v.History = append(v.History, api.TaskAttempt{Attempt: a.N, Node: a.Node, StartedAt: time.Unix(0, a.ClaimedAt).UTC(), EndedAt: timePtr(a.EndedAt), Outcome: a.Outcome, Reason: a.Reason})
	}
	if result && len(t.Result) > 0 {
		var res api.TaskResult
		if err := json.Unmarshal(t.Result, &res); err == nil {
			v.Result = &res
			if res.ResponseElided && t.ResultNode == n.id.NodeID {
				if local, err := n.loadTask(t.ID); err == nil && local.Result != nil && local.Attempts == t.Attempts {
					v.Result = local.Result
				}
			}
		}
	}
	return v
}

// findTask finds a task for the API: a bulk task in the replicated queue
// (any node), else an interactive task in this node's history. A follower
// that knows neither catches up with the leader once and looks again.
func (n *Node) findTask(ctx context.Context, id string) (*api.Task, string, error) {
	for try := 0; ; try++ {
		if qt, err := n.state.QueueTask(id); err == nil {
			v := n.bulkView(qt, true)
			return &v, qt.Tenant, nil
		} else if !errors.Is(err, consensus.ErrNotFound) {
			return nil, "", err
		}
		t, err := n.loadTask(id)
		if err == nil {
			tenant := ""
			if t.Result != nil {
				tenant = t.Result.Tenant
			}
			return t, tenant, nil
		}
		if try > 0 || n.syncWithLeader(ctx) != nil {
			return nil, "", err
		}
	}
}

// taskAuth is the caller of a task endpoint: staff (every tenant), or a
// tenant's key or lease.
func (n *Node) taskAuth(r *http.Request) (admin bool, tenant string, leaseID string, err error) {
	c := httpapi.CallerOf(r.Context())
	if c.Lease != nil {
		leaseID = c.Lease.ID
	}
	return c.Staff(), c.Tenant, leaseID, nil
}

// listTasks answers GET /v1/tasks?state=&tenant=&limit=&cursor=: bulk
// tasks in enqueue order. A lease lists its own tenant's tasks only.
func (n *Node) listTasks(w http.ResponseWriter, r *http.Request) error {
	admin, own, _, err := n.taskAuth(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := consensus.TaskFilter{State: q.Get("state"), Tenant: q.Get("tenant")}
	if f.State != "" && !consensus.ValidTaskState(f.State) {
		return api.BadRequest(api.CodeBadRequest, "state must be one of %s", strings.Join(consensus.TaskStates, ", "))
	}
	if !admin {
		if f.Tenant != "" && f.Tenant != own {
			return api.Errorf(http.StatusForbidden, api.CodeForbidden, "a lease lists only its own tenant's tasks")
		}
		f.Tenant = own
	}
	if strings.ContainsAny(f.Tenant, "/\x00") {
		return api.BadRequest(api.CodeBadRequest, "tenant is not a tenant name")
	}
	limit, err := queryInt(r, "limit", 50)
	if err != nil {
		return err
	}
	if limit < 1 || limit > 500 {
		return api.BadRequest(api.CodeBadRequest, "limit must be 1 to 500")
	}
	f.Limit = int(limit)
	if c := q.Get("cursor"); c != "" {
		after, err := strconv.ParseUint(c, 10, 64)
		if err != nil {
			return api.BadRequest(api.CodeBadRequest, "cursor is not one this API gave out")
		}
		f.After = after
	}
	tasks, next, err := n.state.ListTasks(f)
	if err != nil {
		return err
	}
	out := api.TaskList{Tasks: make([]api.Task, 0, len(tasks))}
	for _, t := range tasks {
		out.Tasks = append(out.Tasks, n.bulkView(t, false))
	}
	if next > 0 {
		out.NextCursor = strconv.FormatUint(next, 10)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// cancelTask answers DELETE /v1/tasks/{id}: a queued bulk task is
// cancelled at once; a running one ends as terminated:cancelled on the
// node that runs it. An interactive task running on this node ends the
// same way.
func (n *Node) cancelTask(w http.ResponseWriter, r *http.Request) error {
	admin, tenant, leaseID, err := n.taskAuth(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	notFound := api.Errorf(http.StatusNotFound, api.CodeTaskNotFound, "no task %q", id)
	qt, err := n.state.QueueTask(id)
	if errors.Is(err, consensus.ErrNotFound) && n.syncWithLeader(r.Context()) == nil {
		qt, err = n.state.QueueTask(id)
	}
	if errors.Is(err, consensus.ErrNotFound) {
		// An interactive task running here.
		if lid, ok := n.tasks.leaseOf(id); ok {
			if l, lerr := n.state.Lease(lid); admin || (lerr == nil && l.Tenant == tenant) {
				n.tasks.cancelTask(id, sandbox.Terminate(sandbox.ReasonCancelled))
				httpapi.WriteJSON(w, http.StatusAccepted, api.Task{TaskID: id, State: api.TaskRunning, Class: consensus.ClassInteractive, CancelRequested: true})
				return nil
			}
		}
		return notFound
	}
	if err != nil {
		return err
	}
	if !admin && qt.Tenant != tenant {
		return notFound
	}
	by := "admin"
	if !admin {
		by = "lease:" + leaseID
	}
	res, err := n.propose(r.Context(), &consensus.CancelTask{ID: id, By: by, At: n.now().UnixNano()})
	if err != nil {
		return n.queueError(err)
	}
	setIndex(w, res)
	n.log.Info("bulk task cancel", "task", id, "by", by, "traceparent", obs.RequestTraceparent(r.Context()))
	if qt, err = n.state.QueueTask(id); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, n.bulkView(qt, true))
	return nil
}

// leaseOf returns the lease of a task running here.
func (r *running) leaseOf(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tasks[id]
	if !ok {
		return "", false
	}
	return t.lease, true
}

// cancelTask ends one task running here.
func (r *running) cancelTask(id string, cause error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tasks[id]
	if ok {
		t.cancel(cause)
	}
	return ok
}
