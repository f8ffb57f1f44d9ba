package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/bulk"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// The node's side of the bulk queue: wiring the worker (package bulk) to
// the node, and the task endpoints' bulk half.

// startBulk starts the bulk worker: it recovers this node's claims from
// before a restart, then claims, renews and (on the leader) reaps.
func (n *Node) startBulk(ctx context.Context) {
	emitter := events.Emitter(events.Discard)
	if n.bus != nil && !n.cfg.Unaudited {
		emitter = n.bus
	}
	b := bulk.New(bulk.Config{
		NodeID: n.id.NodeID, State: n.state, Pool: n.pool, Events: emitter, Log: n.log, Now: n.now,
		ClaimTTL: n.cfg.ClaimTTL, RetryBudgetRatio: n.cfg.RetryBudgetRatio, RetryBudgetMin: n.cfg.RetryBudgetMin,
		RetryBudgetWindow: n.cfg.RetryBudgetWindow, TaskRetention: n.cfg.TaskRetention,
	}, bulkHost{n})
	n.bulk.Store(b)
	b.Start(ctx)
}

// bulkHost is the node as the bulk worker sees it.
type bulkHost struct{ n *Node }

func (h bulkHost) Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	return h.n.propose(ctx, c)
}

func (h bulkHost) Prepare(ctx context.Context, l *consensus.Lease, p *policy.Profile, t *sandbox.Task) error {
	t.Limits = limitsOf(p)
	mod, err := h.n.modules.ByDigest(ctx, t.Module.Digest)
	if err != nil {
		return err
	}
	t.Module = mod
	tc, err := h.n.fetcherFor(l, p, t.ID, t.Traceparent)
	if err != nil {
		return err
	}
	t.Host.Fetch = tc
	t.Host.KV = h.n.sessions.KVFor(l, p)
	return nil
}

func (h bulkHost) Execute(ctx context.Context, l *consensus.Lease, t *sandbox.Task) *api.TaskResult {
	return h.n.execute(ctx, l, t)
}

func (h bulkHost) LocalTask(id string) (*api.Task, error) { return h.n.loadTask(id) }
func (h bulkHost) RecordLost(t *consensus.QueueTask, attempt int) {
	h.n.recordUnrun(t, attempt, string(sandbox.Terminated(bulk.ReasonNodeLost)))
}
func (h bulkHost) IsLeader() bool { return h.n.raft.IsLeader() }
func (h bulkHost) Draining() bool { return h.n.draining.Load() }

// QueueStats are the scheduler's and the bulk queue's counters (zero
// values before the node runs).
func (n *Node) QueueStats() bulk.Stats {
	s := n.bulk.Load().Stats()
	if s.Classes == nil && n.pool != nil {
		s.Classes = n.pool.Stats()
	}
	return s
}

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
		qt.ID = er.ID
		b.Enqueued(&qt, int(er.Queued))
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
		v, err := n.modules.Stored(mod.Digest)
		switch {
		case err == nil:
			code = v[1:]
		case errors.Is(err, pebble.ErrNotFound):
			b, err := n.modules.Fetch(ctx, mod.Digest, "") // the tenant was checked when the module was resolved
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
		// Any node's finished task, from replicated history (history.go).
		if ht, tenant, ok := n.sessions.HistoryTask(id); ok {
			return ht, tenant, nil
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
	limit, err := httpapi.QueryInt(r, "limit", 50)
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
	wasQueued := qt.State == consensus.TaskQueued
	if qt, err = n.state.QueueTask(id); err != nil {
		return err
	}
	if wasQueued && qt.State == consensus.TaskCancelled {
		// Admitted and never run: its receipt says so (a running one's
		// attempt ends terminated:cancelled with its own).
		n.recordUnrun(qt, qt.Attempts+1, string(sandbox.Terminated(sandbox.ReasonCancelled)))
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
