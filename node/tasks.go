package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/net/http/httpguts"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/bulk"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/scheduler"
	"github.com/leash-dev/leash/weburl"
)

// Task records live in the node-local part of Pebble: x/task/<id>, with
// x/task-t/<8-byte big-endian unix ns><id> ordering them by when they were
// written, for retention.
const (
	prefixTask     = consensus.PrefixLocal + "task/"
	prefixTaskTime = consensus.PrefixLocal + "task-t/"
)

// taskRetention is how long a node keeps its local task records.
const taskRetention = 7 * 24 * time.Hour

// Bounds on a task request besides the body sizes of Config.
const (
	maxHeaders        = 100
	maxHeaderBytes    = 16 << 10
	maxURLBytes       = 8 << 10
	defaultRequestURL = "https://task.leash.local/"
)

// submitTask runs a task under a lease: interactive leases run it now and
// answer with the result; bulk leases answer 202 and run it in the
// background.
func (n *Node) submitTask(w http.ResponseWriter, r *http.Request) (err error) {
	ctx, span := n.tracer.StartAdmission(r.Context(), obs.RequestTraceparent(r.Context()))
	defer func() { obs.End(span, err) }()
	r = r.WithContext(ctx)
	if n.draining.Load() {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeShuttingDown, Message: "this node is shutting down; send the task to another node", RetryAfter: 1}
	}
	if !n.ready.Load() {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: CodeNotReady, Message: "this node is starting; send the task to another node", RetryAfter: 1}
	}
	// Decide on caught-up state only (fresh.go).
	if err := n.checkFresh(r.Context()); err != nil {
		return err
	}
	l := httpapi.CallerOf(r.Context()).Lease // verified by authorize, on caught-up state
	if err := n.checkBudget(l.Tenant); err != nil {
		return err
	}
	bundle, err := n.state.Bundle(l.PolicyDigest)
	if err != nil {
		return fmt.Errorf("bundle %s of lease %s: %w", l.PolicyDigest, l.ID, err)
	}
	profile, ok := bundle.Profiles[l.Profile]
	if !ok {
		return fmt.Errorf("profile %q missing from bundle %s", l.Profile, l.PolicyDigest)
	}
	// An inline wasm module is base64: allow for it on top of the request
	// body limit.
	limit := n.cfg.MaxModuleBytes*4/3 + n.cfg.MaxRequestBytes*4/3 + 256<<10
	// Bound the bytes requests hold (httpapi.Intake), from before the body is
	// read until the answer is written.
	release, err := n.intake.Admit(r, l.Tenant, limit)
	if err != nil {
		return err
	}
	defer release()
	var req api.TaskRequest
	if err := httpapi.DecodeJSON(w, r, limit, &req); err != nil {
		return err
	}
	sreq, err := n.taskRequest(&req.Request)
	if err != nil {
		return err
	}
	if err := validateEnv(req.Env); err != nil {
		return err
	}
	env, envJSON := splitEnv(req.Env)
	if l.Class != consensus.ClassBulk && n.offload(w, r, &req) {
		return nil
	}
	mod, err := n.resolveModule(r.Context(), l.Tenant, &req.Module)
	if err != nil {
		return err
	}
	t := &sandbox.Task{
		ID:          newTaskID(r.Context()),
		Module:      mod,
		Request:     *sreq,
		Env:         env,
		EnvJSON:     envJSON,
		Limits:      limitsOf(profile),
		Attempt:     1,
		Traceparent: obs.RequestTraceparent(r.Context()),
	}
	if mt := req.ModelTokens; mt != nil {
		if mt.Input < 0 || mt.Output < 0 || len(mt.Model) > 128 {
			return api.BadRequest(api.CodeBadRequest, "model_tokens: counts must not be negative, model at most 128 bytes")
		}
		t.ModelTokens = &sandbox.ModelTokens{Model: mt.Model, Input: mt.Input, Output: mt.Output}
	}
	tc, err := n.fetcherFor(l, profile, t.ID, t.Traceparent)
	if err != nil {
		return err
	}
	t.Host.Fetch = tc
	t.Host.KV = n.sessions.KVFor(l, profile)
	if l.Class == consensus.ClassBulk {
		return n.submitBulk(w, r, l, t, &req)
	}
	releaseSlot, err := n.pool.Acquire(r.Context(), l.Class, l.Tenant)
	if err != nil {
		return schedError(err)
	}
	defer releaseSlot()
	res := n.execute(r.Context(), l, t)
	httpapi.WriteJSON(w, http.StatusOK, res)
	return nil
}

func schedError(err error) error {
	switch {
	case errors.Is(err, scheduler.ErrQueueFull):
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeQueueFull, Message: "every sandbox slot is busy and the queue is full; retry", RetryAfter: 1}
	case errors.Is(err, scheduler.ErrQueueTimeout):
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeQueueTimeout, Message: "no sandbox slot freed up in time; retry", RetryAfter: 1}
	}
	return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "request ended while waiting for a slot", Err: err}
}

// limitsOf maps a profile to sandbox limits.
func limitsOf(p *policy.Profile) sandbox.Limits {
	return sandbox.Limits{
		CPU:         p.Limits.CPU(),
		Wall:        p.Limits.Wall(),
		MemoryBytes: p.Limits.MemoryBytes(),
		OutputBytes: p.Limits.OutputBytes,
		LogBytes:    p.Limits.LogBytes,
		Subrequests: p.Limits.Subrequests,
	}
}

// execute runs a task and records it: the per-task hook that meters and
// records every task exactly once, whatever its outcome.
func (n *Node) execute(parent context.Context, l *consensus.Lease, t *sandbox.Task) *api.TaskResult {
	parent = taskScope(parent, l, t)
	parent, span := n.tracer.StartExecution(parent, t.ID, l.Tenant, l.Profile)
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	n.tasks.add(t.ID, l.ID, cancel)
	defer n.tasks.remove(t.ID)
	markStarted(parent) // an offloader may no longer run it itself
	// A revocation applied between the lease check and the registration
	// above would have missed this task: look again.
	if cur, err := n.state.Lease(l.ID); err == nil && cur.Revoked() {
		cancel(sandbox.Terminate(sandbox.ReasonRevoked))
	}
	// A queued bulk task, or one admitted just before the crossing,
	// does not start once its tenant's day is exhausted (usage.go).
	if ctx.Err() == nil && n.budgetExhausted(l.Tenant) {
		cancel(sandbox.Terminate(sandbox.ReasonBudget))
	}
	var res *sandbox.Result
	if ctx.Err() != nil {
		now := time.Now()
		res = &sandbox.Result{Outcome: sandbox.Terminated(sandbox.ReasonOf(ctx)), Start: now, End: now, Response: sandbox.Response{Status: 500}}
	} else {
		res = n.box.Run(ctx, t)
	}
	bulk.SandboxDone(parent)
	obs.End(span, nil)
	addEgressUsage(t, &res.Usage)
	out := n.resultView(l, t, res)
	// The usage is journalled (synced) while the receipt is appended, so
	// the meter's fsync hides behind the receipt's wait (docs/budgets.md).
	metered := make(chan struct{})
	go func() {
		defer close(metered)
		n.meterTask(l, t, res)
	}()
	state := api.TaskSucceeded
	if out.Outcome != string(sandbox.OutcomeOK) {
		state = api.TaskFailed
	}
	rec := &api.Task{TaskID: t.ID, State: state, Class: l.Class, Attempts: t.Attempt, Result: out}
	// The result goes out once its receipt is in the ledger (or, with
	// --receipt-ack spool, fsynced in the spool); a client that went
	// away does not stop that. The task record is written in the
	// receipt batcher's Pebble batch, with the receipt's index (ledger.go).
	recorded, spooled := false, false
	if !n.cfg.Unaudited {
		snap := *out // what the batcher records; out itself is the answer's
		spoolMode := n.cfg.ReceiptAck == ReceiptAckSpool
		written := n.now()
		appended := func(wb *pebble.Batch, index int64, err error) {
			r := snap
			if err == nil {
				r.Receipt = &api.ReceiptRef{Index: index}
			} else {
				r.ReceiptError = err.Error()
			}
			rt := *rec
			rt.Result = &r
			if werr := n.writeTask(wb, &rt, written); werr != nil {
				n.log.Error("record task", "task", t.ID, "err", werr)
			}
			if spoolMode {
				// Answered already: history and the event follow the
				// append, with the receipt's index.
				n.sessions.RecordHistory(l, &rt)
				n.emitTask(context.WithoutCancel(parent), l, t, res, &r)
			}
		}
		var with func(*pebble.Batch)
		if spoolMode {
			// The record as of the answer, for a reader who asks before
			// the append, in the spool's batch (so before the batcher's,
			// which replaces it).
			first := *rec
			first.Result = &snap
			with = func(wb *pebble.Batch) {
				if werr := n.writeTask(wb, &first, written); werr != nil {
					n.log.Error("record task", "task", t.ID, "err", werr)
				}
			}
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(parent), receiptWait)
		ref, acked, err := n.record(rctx, l, t, res, spoolMode, with, appended)
		rcancel()
		switch {
		case acked:
			spooled, recorded = true, true
		case err != nil:
			n.log.Error("receipt", "task", t.ID, "err", err)
			out.ReceiptError = err.Error()
		default:
			recorded = true
		}
		out.Receipt = ref
	}
	<-metered
	n.metricsTask(parent, l, t, res)
	if !spooled {
		n.emitTask(parent, l, t, res, out)
	}
	n.log.Info("task finished", "task", t.ID, "lease", l.ID, "tenant", l.Tenant, "profile", l.Profile,
		"module", t.Module.Digest, "outcome", out.Outcome, "cpu_ms", out.Usage.CPUMs, "wall_ms", out.Usage.WallMs,
		"memory_peak", out.Usage.MemoryPeakBytes, "traceparent", t.Traceparent)
	if !recorded {
		if err := n.saveTask(rec); err != nil {
			n.log.Error("record task", "task", t.ID, "err", err)
		}
	}
	if !spooled {
		n.sessions.RecordHistory(l, rec) // replicated, bounded (sessions/history.go)
	}
	return out
}

func (n *Node) resultView(l *consensus.Lease, t *sandbox.Task, res *sandbox.Result) *api.TaskResult {
	out := &api.TaskResult{
		TaskID:      t.ID,
		Outcome:     string(res.Outcome),
		Error:       res.Error,
		Logs:        make([]api.LogLine, 0, len(res.Logs)),
		Node:        n.id.NodeID,
		LeaseID:     l.ID,
		Tenant:      l.Tenant,
		Profile:     l.Profile,
		Module:      t.Module.Digest,
		Traceparent: t.Traceparent,
		StartedAt:   res.Start.UTC(),
		EndedAt:     res.End.UTC(),
		Usage: api.Usage{
			CPUMs: res.Usage.CPUMs, WallMs: res.Usage.WallMs, MemoryPeakBytes: res.Usage.MemoryPeakBytes,
			OutputBytes: res.Usage.OutputBytes, LogBytes: res.Usage.LogBytes, Subrequests: res.Usage.Subrequests,
			EgressBytesOut: res.Usage.EgressBytesOut, EgressBytesIn: res.Usage.EgressBytesIn,
			Destinations: res.Usage.Destinations, Blocked: res.Usage.Blocked,
		},
	}
	for _, ll := range res.Logs {
		out.Logs = append(out.Logs, api.LogLine{Level: ll.Level, Message: ll.Message, Time: ll.Time.UTC()})
	}
	hdr := res.Response.Headers
	if hdr == nil {
		hdr = http.Header{}
	}
	out.Response = &api.TaskResponse{Status: res.Response.Status, Headers: hdr, Body: api.MakeBody(res.Response.Body)}
	return out
}

func (n *Node) saveTask(t *api.Task) error {
	wb := n.db.NewBatch()
	defer wb.Close()
	if err := n.writeTask(wb, t, n.now()); err != nil {
		return err
	}
	// NoSync: task records are local history; the receipt ledger is the
	// durable account of every task.
	return wb.Commit(pebble.NoSync)
}

// writeTask puts a task record (and its retention index entry, at when)
// in wb. A record written again keeps its first when: one index entry.
func (n *Node) writeTask(wb *pebble.Batch, t *api.Task, when time.Time) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	var at [8]byte
	binary.BigEndian.PutUint64(at[:], uint64(when.UnixNano()))
	_ = wb.Set([]byte(prefixTask+t.TaskID), b, nil)
	_ = wb.Set([]byte(prefixTaskTime+string(at[:])+t.TaskID), nil, nil)
	return nil
}

// forgetOldTasks deletes this node's task records older than
// taskRetention, in bounded batches, once a minute.
func (n *Node) forgetOldTasks(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if k, err := n.purgeTasks(n.now().Add(-taskRetention), 10000); err != nil {
			n.log.Warn("forget old task records", "err", err)
		} else if k > 0 {
			n.log.Info("forgot old task records", "tasks", k)
		}
	}
}

// purgeTasks deletes up to max task records written before cutoff.
func (n *Node) purgeTasks(cutoff time.Time, max int) (int, error) {
	var upper [8]byte
	binary.BigEndian.PutUint64(upper[:], uint64(cutoff.UnixNano()))
	it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixTaskTime), UpperBound: []byte(prefixTaskTime + string(upper[:]))})
	if err != nil {
		return 0, err
	}
	wb := n.db.NewBatch()
	defer wb.Close()
	k := 0
	for it.First(); it.Valid() && k < max; it.Next() {
		key := it.Key()
		_ = wb.Delete(append([]byte(nil), key...), nil)
		_ = wb.Delete([]byte(prefixTask+string(key[len(prefixTaskTime)+8:])), nil)
		k++
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	return k, wb.Commit(pebble.NoSync)
}

func (n *Node) loadTask(id string) (*api.Task, error) {
	v, closer, err := n.db.Get([]byte(prefixTask + id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, api.Errorf(http.StatusNotFound, api.CodeTaskNotFound, "no task %q on this node", id)
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	var t api.Task
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, fmt.Errorf("decode task %s: %w", id, err)
	}
	return &t, nil
}

// getTask returns a task record to staff, or to a key or lease of the
// task's tenant.
func (n *Node) getTask(w http.ResponseWriter, r *http.Request) error {
	c := httpapi.CallerOf(r.Context())
	// Bulk tasks are replicated (any node answers); interactive ones
	// are this node's history (bulk.go).
	t, tenant, err := n.findTask(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if !c.Staff() && tenant != c.Tenant {
		return api.Errorf(http.StatusNotFound, api.CodeTaskNotFound, "no task %q on this node", r.PathValue("id"))
	}
	httpapi.WriteJSON(w, http.StatusOK, t)
	return nil
}

// taskRequest validates the HTTP request a task is given.
func (n *Node) taskRequest(in *api.TaskHTTPRequest) (*sandbox.Request, error) {
	method := in.Method
	if method == "" {
		method = http.MethodGet
	}
	if len(method) > 16 || strings.IndexFunc(method, func(c rune) bool { return c < 'A' || c > 'Z' }) >= 0 {
		return nil, api.BadRequest(api.CodeBadRequest, "request.method %q is not an HTTP method", method)
	}
	raw := in.URL
	if raw == "" {
		raw = defaultRequestURL
	}
	if len(raw) > maxURLBytes {
		return nil, api.BadRequest(api.CodeBadRequest, "request.url is longer than %d bytes", maxURLBytes)
	}
	u, err := weburl.Parse(raw, "")
	if err != nil || (u.Protocol != "http:" && u.Protocol != "https:") {
		return nil, api.BadRequest(api.CodeBadRequest, "request.url must be an absolute http or https URL")
	}
	if len(in.Headers) > maxHeaders {
		return nil, api.BadRequest(api.CodeBadRequest, "request.headers has more than %d entries", maxHeaders)
	}
	hdr := http.Header{}
	size := 0
	for k, v := range in.Headers {
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return nil, api.BadRequest(api.CodeBadRequest, "request.headers: invalid header %q", k)
		}
		size += len(k) + len(v)
		hdr.Set(textproto.CanonicalMIMEHeaderKey(k), v)
	}
	if size > maxHeaderBytes {
		return nil, api.BadRequest(api.CodeBadRequest, "request.headers are larger than %d bytes", maxHeaderBytes)
	}
	if in.Body.Body != nil && in.Body.BodyBase64 != nil {
		return nil, api.BadRequest(api.CodeBadRequest, "request: set body or body_base64, not both")
	}
	body, err := in.Bytes()
	if err != nil {
		return nil, api.BadRequest(api.CodeBadRequest, "request.body_base64 is not valid base64")
	}
	if int64(len(body)) > n.cfg.MaxRequestBytes {
		return nil, api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "request body is larger than %d bytes", n.cfg.MaxRequestBytes)
	}
	return &sandbox.Request{Method: method, URL: u.Href, Headers: hdr, Body: body}, nil
}

func validateEnv(env api.Env) error {
	if len(env) > 256 {
		return api.BadRequest(api.CodeBadRequest, "env has more than 256 entries")
	}
	size := 0
	for k, v := range env {
		size += len(k) + len(v.Text) + len(v.JSON)
		if k == "" || len(k) > 128 || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v.Text, 0) || bytes.IndexByte(v.JSON, 0) >= 0 {
			return api.BadRequest(api.CodeBadRequest, "env: invalid variable %q", k)
		}
	}
	if size > 256<<10 {
		return api.BadRequest(api.CodeBadRequest, "env is larger than 256 KiB")
	}
	return nil
}

// resolveModule compiles or finds the task's module.
func (n *Node) resolveModule(ctx context.Context, tenant string, m *api.Module) (*sandbox.Module, error) {
	set := 0
	for _, p := range []*string{m.JS, m.WASM, m.Digest} {
		if p != nil {
			set++
		}
	}
	if set != 1 {
		return nil, api.BadRequest(api.CodeBadRequest, `module must have exactly one of "js", "wasm" (base64) or "digest"`)
	}
	switch {
	case m.JS != nil:
		if int64(len(*m.JS)) > n.cfg.MaxModuleBytes {
			return nil, api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "module is larger than %d bytes", n.cfg.MaxModuleBytes)
		}
		return n.modules.Compile(ctx, sandbox.KindJS, []byte(*m.JS))
	case m.WASM != nil:
		code, err := base64.StdEncoding.DecodeString(*m.WASM)
		if err != nil {
			return nil, api.BadRequest(api.CodeInvalidModule, "module.wasm is not valid base64")
		}
		if int64(len(code)) > n.cfg.MaxModuleBytes {
			return nil, api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "module is larger than %d bytes", n.cfg.MaxModuleBytes)
		}
		return n.modules.Compile(ctx, sandbox.KindWASI, code)
	default:
		if !api.ValidDigest(*m.Digest) {
			return nil, api.BadRequest(api.CodeBadRequest, "module.digest must be sha256:<64 hex digits>")
		}
		return n.modules.ForTenant(ctx, tenant, *m.Digest)
	}
}

// tenantWeight is a tenant's scheduling weight in the active bundle.
func (n *Node) tenantWeight(class, tenant string) float64 {
	if _, b, err := n.state.ActiveBundle(Env); err == nil {
		if t, ok := b.Tenants[tenant]; ok && t.Weight > 0 {
			return float64(t.Weight)
		}
	}
	return 1
}

// splitEnv turns a client's env into the sandbox's: every value as text,
// and which of them are JSON.
func splitEnv(e api.Env) (map[string]string, map[string]bool) {
	if len(e) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(e))
	var js map[string]bool
	for k, v := range e {
		if v.JSON != nil {
			env[k] = string(v.JSON)
			if js == nil {
				js = map[string]bool{}
			}
			js[k] = true
			continue
		}
		env[k] = v.Text
	}
	return env, js
}
