// The bulk queue's appliers and reads; queue.go declares its records,
// commands, key layout and the task table.

package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/digest"
)

func getTask(r reader, id string) (*QueueTask, error) {
	t, err := queueTasks.get(r, qTaskKey(id))
	if errors.Is(err, ErrNotFound) {
		return nil, refuse(CodeTaskNotFound, "no task %s", id)
	}
	return t, err
}

func status(t *QueueTask) *TaskStatus {
	return &TaskStatus{ID: t.ID, State: t.State, Attempts: t.Attempts, CancelRequested: t.CancelRequested, ClaimedBy: t.ClaimedBy}
}

// deleteModule drops a module's header and chunks.
func deleteModule(tx *Tx, digest string) error {
	prefix := prefixQModChunk + digest + "/"
	var keys []string
	if err := scan(tx, prefix, func(k, _ []byte) error {
		keys = append(keys, string(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		tx.Delete(k)
	}
	tx.Delete(prefixQModule + digest)
	return nil
}

func applyPutQueueModule(tx *Tx, c *PutQueueModule) (*ModulePut, error) {
	if c.Kind != "wasi" && c.Kind != "js" {
		return nil, refuse(CodeInvalid, "module kind %q (wasi or js)", c.Kind)
	}
	if !digest.Valid(c.Digest) {
		return nil, refuse(CodeInvalid, "module digest must be sha256:<64 hex digits>")
	}
	if c.Size < 1 || c.Size > MaxQueueModuleBytes || len(c.Code) == 0 || len(c.Code) > MaxQueueModuleChunk || c.Offset < 0 || c.Offset+len(c.Code) > c.Size {
		return nil, refuse(CodeInvalid, "a replicated module has 1 to %d bytes, in chunks of at most %d", MaxQueueModuleBytes, MaxQueueModuleChunk)
	}
	var m queueModule
	switch err := getRecord(tx, prefixQModule+c.Digest, &m); {
	case errors.Is(err, ErrNotFound):
		if c.Offset != 0 {
			return nil, refuse(CodeInvalid, "module %s: chunk at %d before the first", c.Digest, c.Offset)
		}
		m = queueModule{Kind: c.Kind, Size: c.Size, AddedAt: c.At}
	case err != nil:
		return nil, err
	case m.Kind != c.Kind || m.Size != c.Size:
		return nil, refuse(CodeInvalid, "module %s is a %s module of %d bytes", c.Digest, m.Kind, m.Size)
	case m.Complete:
		// Already here. A module no task refers to is purged once it is
		// older than the retention: restart its clock, since a task is
		// about to refer to it.
		refs, err := getCount(tx, prefixQModRefs+c.Digest)
		if err != nil {
			return nil, err
		}
		if refs == 0 && c.At > m.AddedAt {
			m.AddedAt = c.At
			if err := put(tx, prefixQModule+c.Digest, &m); err != nil {
				return nil, err
			}
		}
		return &ModulePut{Have: m.Have, Complete: true}, nil
	case c.Offset < m.Have:
		return &ModulePut{Have: m.Have}, nil // a chunk already here
	case c.Offset > m.Have:
		return nil, refuse(CodeInvalid, "module %s: chunk at %d, expected %d", c.Digest, c.Offset, m.Have)
	}
	m.Have += len(c.Code)
	if m.Have == m.Size {
		// The last chunk: the bytes must hash to the digest.
		h := sha256.New()
		if err := scan(tx, prefixQModChunk+c.Digest+"/", func(_, v []byte) error {
			h.Write(v)
			return nil
		}); err != nil {
			return nil, err
		}
		h.Write(c.Code)
		if digest.Sum(h) != c.Digest {
			if err := deleteModule(tx, c.Digest); err != nil {
				return nil, err
			}
			return &ModulePut{Reset: true}, nil
		}
		m.Complete = true
	}
	tx.Set(qChunkKey(c.Digest, c.Offset), append([]byte(nil), c.Code...))
	if err := put(tx, prefixQModule+c.Digest, &m); err != nil {
		return nil, err
	}
	return &ModulePut{Have: m.Have, Complete: m.Complete}, nil
}

func validPairs(field string, ps []Pair) error {
	for i, p := range ps {
		if p.K == "" {
			return refuse(CodeInvalid, "%s: empty name", field)
		}
		if i > 0 && ps[i-1].K >= p.K {
			return refuse(CodeInvalid, "%s: names must be sorted and unique", field)
		}
	}
	return nil
}

func applyEnqueueTask(tx *Tx, c *EnqueueTask) (*EnqueueResult, error) {
	t := c.Task
	switch {
	case t.ID == "" || len(t.ID) > 128 || strings.ContainsAny(t.ID, "/\x00"):
		return nil, refuse(CodeInvalid, "a task needs an id without '/'")
	case t.Tenant == "" || strings.ContainsAny(t.Tenant, "/\x00"):
		return nil, refuse(CodeInvalid, "a task needs a tenant")
	case t.LeaseID == "" || t.EnqueuedAt <= 0 || t.EnqueuedBy == "":
		return nil, refuse(CodeInvalid, "a task needs a lease, an enqueue time and a node")
	case t.MaxAttempts < 1 || t.MaxAttempts > MaxTaskAttempts:
		return nil, refuse(CodeInvalid, "max_attempts must be 1 to %d", MaxTaskAttempts)
	case len(t.IdempotencyKey) > MaxIdempotencyKeyBytes:
		return nil, refuse(CodeInvalid, "idempotency key is longer than %d bytes", MaxIdempotencyKeyBytes)
	case t.Spec.Kind != "wasi" && t.Spec.Kind != "js":
		return nil, refuse(CodeInvalid, "module kind %q (wasi or js)", t.Spec.Kind)
	case !digest.Valid(t.Spec.ModuleDigest):
		return nil, refuse(CodeInvalid, "module digest must be sha256:<64 hex digits>")
	case t.Spec.Method == "" || t.Spec.URL == "":
		return nil, refuse(CodeInvalid, "a task needs a request method and URL")
	case len(t.Spec.Body) > MaxQueueBodyBytes:
		return nil, refuse(CodeInvalid, "request body is larger than %d bytes", MaxQueueBodyBytes)
	}
	if err := validPairs("headers", t.Spec.Headers); err != nil {
		return nil, err
	}
	if err := validPairs("env", t.Spec.Env); err != nil {
		return nil, err
	}
	specBytes, err := msgpack.Marshal(&t.Spec)
	if err != nil {
		return nil, err
	}
	if len(specBytes) > MaxQueueSpecBytes {
		return nil, refuse(CodeInvalid, "task spec is %d bytes, at most %d", len(specBytes), MaxQueueSpecBytes)
	}
	// The spec's identity leaves out the traceparent: a client repeating
	// a request with its idempotency key may well trace it anew.
	idSpec := t.Spec
	idSpec.Traceparent = ""
	idBytes, err := msgpack.Marshal(&idSpec)
	if err != nil {
		return nil, err
	}
	specDigest := digest.Of(idBytes)

	// The lease, as replicated state knows it, must grant this.
	var l Lease
	if err := getRecord(tx, prefixLease+t.LeaseID, &l); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(CodeLeaseNotFound, "no lease %s", t.LeaseID)
		}
		return nil, err
	}
	if l.Tenant != t.Tenant || l.Profile != t.Profile || l.PolicyDigest != t.PolicyDigest || l.Class != ClassBulk || t.Class != ClassBulk {
		return nil, refuse(CodeInvalid, "the task does not match its lease (tenant, profile, policy, bulk class)")
	}
	if l.Revoked() {
		return nil, refuse(CodeLeaseRevoked, "lease %s is revoked", l.ID)
	}

	// An idempotency key the tenant used before names that task.
	if t.IdempotencyKey != "" {
		id, err := getString(tx, qIdemKey(t.Tenant, t.IdempotencyKey))
		switch {
		case err == nil:
			prev, err := getTask(tx, id)
			if err != nil {
				return nil, err
			}
			if prev.SpecDigest != specDigest {
				return nil, refuse(CodeIdempotencyConflict, "idempotency key %q was used for another task (%s) with another request", t.IdempotencyKey, prev.ID)
			}
			queued, err := getCount(tx, prefixQCount+TaskQueued)
			if err != nil {
				return nil, err
			}
			return &EnqueueResult{ID: prev.ID, Created: false, State: prev.State, Queued: queued}, nil
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	if _, closer, err := tx.Get([]byte(qTaskKey(t.ID))); err == nil {
		closer.Close()
		return nil, refuse(CodeInvalid, "task %s exists", t.ID)
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	var mod queueModule
	if err := getRecord(tx, prefixQModule+t.Spec.ModuleDigest, &mod); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	} else if err != nil || !mod.Complete {
		return nil, refuse(CodeModuleNotFound, "module %s is not replicated for bulk tasks", t.Spec.ModuleDigest)
	}
	active, err := getCount(tx, prefixQActive+t.Tenant)
	if err != nil {
		return nil, err
	}
	if active >= int64(activePerTenantLimit) {
		return nil, refuse(CodeQueueFull, "tenant %q has %d unfinished bulk tasks, the most the queue holds per tenant", t.Tenant, active)
	}
	var total int64
	for _, s := range []string{TaskQueued, TaskRunning} {
		n, err := getCount(tx, prefixQCount+s)
		if err != nil {
			return nil, err
		}
		total += n
	}
	if total >= MaxActiveTasks {
		return nil, refuse(CodeQueueFull, "the queue holds %d unfinished tasks, its bound", total)
	}

	seq, err := getCount(tx, keyQSeq)
	if err != nil {
		return nil, err
	}
	seq++
	var sb [8]byte
	binary.BigEndian.PutUint64(sb[:], uint64(seq))
	tx.Set(keyQSeq, sb[:])

	t.Seq = uint64(seq)
	t.SpecDigest = specDigest
	t.Attempts = 0
	t.DueAt = t.EnqueuedAt
	t.ClaimedBy, t.ClaimExpires = "", 0
	t.CancelRequested, t.CancelledBy = false, ""
	t.UpdatedAt, t.FinishedAt = t.EnqueuedAt, 0
	t.Outcome, t.Reason, t.Result, t.ResultNode, t.History = "", "", nil, "", nil
	t.State = TaskQueued
	if err := queueTasks.insert(tx, &t); err != nil {
		return nil, err
	}
	queued, err := getCount(tx, prefixQCount+TaskQueued)
	if err != nil {
		return nil, err
	}
	return &EnqueueResult{ID: t.ID, Created: true, State: t.State, Queued: queued}, nil
}

func validClaimWindow(now, until int64) error {
	if now <= 0 || until <= now || until-now > MaxClaimTTL {
		return refuse(CodeInvalid, "a claim runs from now to a later time, at most %s ahead", strconv.FormatInt(MaxClaimTTL/1e9, 10)+"s")
	}
	return nil
}

func applyClaimTask(tx *Tx, c *ClaimTask) (*ClaimResult, error) {
	if c.Tenant == "" || strings.ContainsAny(c.Tenant, "/\x00") || c.Node == "" {
		return nil, refuse(CodeInvalid, "a claim names a tenant and a node")
	}
	if err := validClaimWindow(c.Now, c.Until); err != nil {
		return nil, err
	}
	prefix := prefixQReady + c.Tenant + "/"
	it, err := tx.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: PrefixEnd([]byte(prefix))})
	if err != nil {
		return nil, err
	}
	var id string
	if it.First() {
		due, perr := keyTime(it.Key(), len(prefix))
		if perr == nil && int64(due) <= c.Now {
			v, verr := it.ValueAndErr()
			if verr != nil {
				_ = it.Close()
				return nil, verr
			}
			id = string(v)
		}
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	if id == "" {
		return &ClaimResult{}, nil
	}
	t, err := getTask(tx, id)
	if err != nil {
		return nil, err
	}
	if t.State != TaskQueued {
		return nil, fmt.Errorf("ready index names task %s in state %s", id, t.State)
	}
	old := *t
	t.State = TaskRunning
	t.Attempts++
	t.ClaimedBy, t.ClaimExpires, t.UpdatedAt = c.Node, c.Until, c.Now
	t.History = append(t.History, Attempt{N: t.Attempts, Node: c.Node, ClaimedAt: c.Now})
	if err := queueTasks.put(tx, &old, t); err != nil {
		return nil, err
	}
	return &ClaimResult{ID: t.ID, Attempt: t.Attempts}, nil
}

func applyRenewClaims(tx *Tx, c *RenewClaims) (*RenewResult, error) {
	if c.Node == "" || len(c.Tasks) > maxQueueBatch {
		return nil, refuse(CodeInvalid, "a renewal names a node and at most %d tasks", maxQueueBatch)
	}
	if err := validClaimWindow(c.Now, c.Until); err != nil {
		return nil, err
	}
	res := &RenewResult{}
	for _, ta := range c.Tasks {
		t, err := getTask(tx, ta.ID)
		if isRefusal(err) {
			res.Lost = append(res.Lost, ta.ID)
			continue
		}
		if err != nil {
			return nil, err
		}
		if t.State != TaskRunning || t.ClaimedBy != c.Node || t.Attempts != ta.Attempt {
			res.Lost = append(res.Lost, ta.ID)
			continue
		}
		if t.CancelRequested {
			res.Cancelled = append(res.Cancelled, ta.ID)
		}
		if c.Until <= t.ClaimExpires {
			continue
		}
		old := *t
		t.ClaimExpires, t.UpdatedAt = c.Until, c.Now
		if err := queueTasks.put(tx, &old, t); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func isRefusal(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

// endAttempt closes the open attempt of the history.
func endAttempt(t *QueueTask, at int64, outcome, reason string) {
	if n := len(t.History); n > 0 && t.History[n-1].N == t.Attempts && t.History[n-1].EndedAt == 0 {
		t.History[n-1].EndedAt, t.History[n-1].Outcome, t.History[n-1].Reason = at, outcome, reason
	}
}

// requeue puts a running task back in the queue (its tenant's ready
// index, once written), due at due.
func requeue(t *QueueTask, due int64) {
	t.ClaimedBy, t.ClaimExpires, t.DueAt, t.State = "", 0, due, TaskQueued
}

// finish ends a task in a final state.
func finish(t *QueueTask, state string, at int64) {
	t.ClaimedBy, t.ClaimExpires, t.FinishedAt, t.State = "", 0, at, state
}

func applyCompleteTask(tx *Tx, c *CompleteTask) (*TaskStatus, error) {
	if c.ID == "" || c.Node == "" || c.At <= 0 || c.Outcome == "" || len(c.Outcome) > 64 || len(c.Reason) > 64 {
		return nil, refuse(CodeInvalid, "a completion names the task, node, time and outcome")
	}
	if len(c.Result) > MaxQueueResultBytes {
		return nil, refuse(CodeInvalid, "result is %d bytes, at most %d", len(c.Result), MaxQueueResultBytes)
	}
	t, err := getTask(tx, c.ID)
	if err != nil {
		return nil, err
	}
	if t.State != TaskRunning || t.ClaimedBy != c.Node || t.Attempts != c.Attempt {
		return nil, refuse(CodeClaimLost, "%s does not hold attempt %d of task %s (state %s, attempt %d, claimed by %q)", c.Node, c.Attempt, c.ID, t.State, t.Attempts, t.ClaimedBy)
	}
	next := c.Next
	switch {
	case c.Outcome == "ok" && next != NextSucceeded:
		return nil, refuse(CodeInvalid, "an attempt that succeeded completes as succeeded")
	case c.Outcome != "ok" && next == NextSucceeded:
		return nil, refuse(CodeInvalid, "an attempt with outcome %s cannot succeed", c.Outcome)
	case next == NextRetry && (t.Attempts >= t.MaxAttempts || c.RetryAt < c.At):
		return nil, refuse(CodeInvalid, "a retry needs attempts left and a retry time not before the completion")
	case next == NextDead && t.Attempts < t.MaxAttempts:
		return nil, refuse(CodeInvalid, "a task is dead only after its last attempt")
	case next == NextCancelled && !t.CancelRequested && c.Outcome != "terminated:cancelled":
		return nil, refuse(CodeInvalid, "a task is cancelled only when a cancel was asked for")
	case next != NextSucceeded && next != NextFailed && next != NextDead && next != NextCancelled && next != NextRetry:
		return nil, refuse(CodeInvalid, "unknown decision %q", next)
	}
	// A cancel asked for while the attempt ran wins over a retry or a
	// failure: the client said it wants no more of this task.
	if t.CancelRequested && c.Outcome != "ok" {
		next = NextCancelled
	}
	old := *t
	endAttempt(t, c.At, c.Outcome, c.Reason)
	t.Outcome, t.Reason, t.Result, t.ResultNode, t.UpdatedAt = c.Outcome, c.Reason, c.Result, c.Node, c.At
	if next == NextRetry {
		requeue(t, c.RetryAt)
	} else {
		finish(t, next, c.At)
	}
	if err := queueTasks.put(tx, &old, t); err != nil {
		return nil, err
	}
	return status(t), nil
}

func applyCancelTask(tx *Tx, c *CancelTask) (*TaskStatus, error) {
	if c.ID == "" || c.At <= 0 {
		return nil, refuse(CodeInvalid, "a cancel names the task and a time")
	}
	t, err := getTask(tx, c.ID)
	if err != nil {
		return nil, err
	}
	switch {
	case t.Final():
		return nil, refuse(CodeTaskFinished, "task %s is already %s", t.ID, t.State)
	case t.CancelRequested:
		return status(t), nil
	}
	old := *t
	t.CancelRequested, t.CancelledBy, t.UpdatedAt = true, c.By, c.At
	if t.State == TaskQueued {
		t.Reason = "cancelled"
		finish(t, TaskCancelled, c.At)
	}
	if err := queueTasks.put(tx, &old, t); err != nil {
		return nil, err
	}
	return status(t), nil
}

func applyReclaimTasks(tx *Tx, c *ReclaimTasks) (*ReclaimResult, error) {
	if c.Now <= 0 || c.Max < 1 || c.Max > maxQueueBatch {
		return nil, refuse(CodeInvalid, "a reclaim needs a time and a batch of 1 to %d", maxQueueBatch)
	}
	// Collect first, then write: the iterator does not see this
	// command's own writes.
	var ids []string
	it, err := tx.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQClaim), UpperBound: PrefixEnd([]byte(prefixQClaim))})
	if err != nil {
		return nil, err
	}
	for it.First(); it.Valid() && len(ids) < c.Max; it.Next() {
		exp, perr := keyTime(it.Key(), len(prefixQClaim))
		if perr != nil {
			continue
		}
		if c.Node == "" && int64(exp) >= c.Now {
			break
		}
		v, verr := it.ValueAndErr()
		if verr != nil {
			_ = it.Close()
			return nil, verr
		}
		if c.Node != "" {
			t, err := getTask(tx, string(v))
			if err != nil {
				_ = it.Close()
				return nil, err
			}
			if t.ClaimedBy != c.Node {
				continue
			}
		}
		ids = append(ids, string(v))
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	reason := ReasonClaimExpired
	if c.Node != "" {
		reason = ReasonNodeRestarted
	}
	res := &ReclaimResult{}
	for _, id := range ids {
		t, err := getTask(tx, id)
		if err != nil {
			return nil, err
		}
		if t.State != TaskRunning || (c.Node != "" && t.ClaimedBy != c.Node) {
			continue
		}
		old := *t
		endAttempt(t, c.Now, OutcomeAbandoned, reason)
		t.UpdatedAt = c.Now
		switch {
		case t.CancelRequested:
			t.Outcome, t.Reason = OutcomeAbandoned, "cancelled"
			finish(t, TaskCancelled, c.Now)
			res.Cancelled = append(res.Cancelled, id)
		case t.Attempts >= t.MaxAttempts:
			t.Outcome, t.Reason = OutcomeAbandoned, reason
			finish(t, TaskDead, c.Now)
			res.Dead = append(res.Dead, id)
		default:
			requeue(t, c.Now)
			res.Requeued = append(res.Requeued, id)
		}
		if err := queueTasks.put(tx, &old, t); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func applyPurgeTasks(tx *Tx, c *PurgeTasks) (int, error) {
	if c.Before <= 0 || c.Max < 1 || c.Max > maxQueueBatch {
		return 0, refuse(CodeInvalid, "a purge needs a time and a batch of 1 to %d", maxQueueBatch)
	}
	var ids []string
	it, err := tx.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQFinished), UpperBound: PrefixEnd([]byte(prefixQFinished))})
	if err != nil {
		return 0, err
	}
	for it.First(); it.Valid() && len(ids) < c.Max; it.Next() {
		at, perr := keyTime(it.Key(), len(prefixQFinished))
		if perr != nil || int64(at) >= c.Before {
			break
		}
		v, verr := it.ValueAndErr()
		if verr != nil {
			_ = it.Close()
			return 0, verr
		}
		ids = append(ids, string(v))
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	for _, id := range ids {
		t, err := getTask(tx, id)
		if err != nil {
			return 0, err
		}
		if err := queueTasks.remove(tx, t); err != nil {
			return 0, err
		}
	}
	// Modules no task refers to any more, added before the cut-off.
	var unused []string
	mit, err := tx.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQModule), UpperBound: PrefixEnd([]byte(prefixQModule))})
	if err != nil {
		return 0, err
	}
	for mit.First(); mit.Valid(); mit.Next() {
		d := string(mit.Key()[len(prefixQModule):])
		v, verr := mit.ValueAndErr()
		if verr != nil {
			_ = mit.Close()
			return 0, verr
		}
		var m queueModule
		if err := msgpack.Unmarshal(v, &m); err != nil {
			_ = mit.Close()
			return 0, fmt.Errorf("decode module %s: %w", d, err)
		}
		if m.AddedAt < c.Before {
			unused = append(unused, d)
		}
	}
	if err := mit.Close(); err != nil {
		return 0, err
	}
	for _, d := range unused {
		refs, err := getCount(tx, prefixQModRefs+d)
		if err != nil {
			return 0, err
		}
		if refs == 0 {
			if err := deleteModule(tx, d); err != nil {
				return 0, err
			}
		}
	}
	return len(ids), nil
}

// QueueTask returns a bulk task by id.
func (s *State) QueueTask(id string) (*QueueTask, error) {
	var t QueueTask
	if err := getRecord(s.db, qTaskKey(id), &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// QueueModule returns a replicated module's kind ("wasi" or "js") and
// bytes; ErrNotFound until it is complete.
func (s *State) QueueModule(digest string) (kind string, code []byte, err error) {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	var m queueModule
	if err := getRecord(snap, prefixQModule+digest, &m); err != nil {
		return "", nil, err
	}
	if !m.Complete {
		return "", nil, ErrNotFound
	}
	code = make([]byte, 0, m.Size)
	if err := scan(snap, prefixQModChunk+digest+"/", func(_, v []byte) error {
		code = append(code, v...)
		return nil
	}); err != nil {
		return "", nil, err
	}
	if len(code) != m.Size {
		return "", nil, fmt.Errorf("module %s has %d of its %d bytes", digest, len(code), m.Size)
	}
	return m.Kind, code, nil
}

// HasQueueModule reports whether a module is replicated (complete).
func (s *State) HasQueueModule(digest string) bool {
	var m queueModule
	return getRecord(s.db, prefixQModule+digest, &m) == nil && m.Complete
}

// ReadyTenants lists tenants (at most max, in name order) with a queued
// task due at now: one seek per tenant.
func (s *State) ReadyTenants(now int64, max int) ([]string, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQReady), UpperBound: PrefixEnd([]byte(prefixQReady))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok && len(out) < max; {
		rest := string(it.Key()[len(prefixQReady):])
		i := strings.IndexByte(rest, '/')
		if i < 0 || len(rest) < i+17 {
			ok = it.Next()
			continue
		}
		tenant := rest[:i]
		if due, err := strconv.ParseUint(rest[i+1:i+17], 16, 64); err == nil && int64(due) <= now {
			out = append(out, tenant)
		}
		ok = it.SeekGE(PrefixEnd([]byte(prefixQReady + tenant + "/")))
	}
	return out, it.Error()
}

// NextDue is the earliest due time of any queued task (0 when none).
func (s *State) NextDue() (int64, error) {
	var next int64
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQReady), UpperBound: PrefixEnd([]byte(prefixQReady))})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		rest := string(it.Key()[len(prefixQReady):])
		i := strings.IndexByte(rest, '/')
		if i < 0 || len(rest) < i+17 {
			ok = it.Next()
			continue
		}
		if due, err := strconv.ParseUint(rest[i+1:i+17], 16, 64); err == nil && (next == 0 || int64(due) < next) {
			next = int64(due)
		}
		ok = it.SeekGE(PrefixEnd([]byte(prefixQReady + rest[:i] + "/")))
	}
	return next, it.Error()
}

// ExpiredClaims reports whether some claim expired before now.
func (s *State) ExpiredClaims(now int64) (bool, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQClaim), UpperBound: PrefixEnd([]byte(prefixQClaim))})
	if err != nil {
		return false, err
	}
	defer it.Close()
	if !it.First() {
		return false, it.Error()
	}
	exp, err := keyTime(it.Key(), len(prefixQClaim))
	return err == nil && int64(exp) < now, nil
}

// ClaimsOf lists the running tasks node holds a claim on.
func (s *State) ClaimsOf(node string) ([]*QueueTask, error) {
	var out []*QueueTask
	err := scan(s.db, prefixQClaim, func(k, v []byte) error {
		t, err := s.QueueTask(string(v))
		if err != nil {
			return err
		}
		if t.ClaimedBy == node && t.State == TaskRunning {
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// PurgeDue reports whether some task finished before before.
func (s *State) PurgeDue(before int64) (bool, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQFinished), UpperBound: PrefixEnd([]byte(prefixQFinished))})
	if err != nil {
		return false, err
	}
	defer it.Close()
	if !it.First() {
		return false, it.Error()
	}
	at, err := keyTime(it.Key(), len(prefixQFinished))
	return err == nil && int64(at) < before, nil
}

// QueueCounts are the numbers of bulk tasks in each state.
func (s *State) QueueCounts() (map[string]int64, error) {
	out := make(map[string]int64, len(TaskStates))
	for _, st := range TaskStates {
		n, err := getCount(s.db, prefixQCount+st)
		if err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, nil
}

// TaskFilter selects tasks to list.
type TaskFilter struct {
	State  string // empty: every state
	Tenant string // empty: every tenant
	// After is a cursor: list tasks enqueued after the one with this
	// sequence number (0: from the first).
	After uint64
	Limit int
	// MaxScan bounds the index entries one call reads when it filters
	// on both state and tenant (default 10,000).
	MaxScan int
}

// ListTasks lists tasks in enqueue order. next is the cursor of the page
// that follows (0 when the listing is complete).
func (s *State) ListTasks(f TaskFilter) (tasks []*QueueTask, next uint64, err error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	if f.MaxScan <= 0 {
		f.MaxScan = 10_000
	}
	var prefix string
	switch {
	case f.Tenant != "":
		prefix = prefixQListTen + f.Tenant + "/"
	case f.State != "":
		prefix = prefixQListState + f.State + "/"
	default:
		prefix = prefixQListAll
	}
	lower := []byte(prefix)
	if f.After > 0 {
		lower = []byte(prefix + hex16(f.After+1))
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: PrefixEnd([]byte(prefix))})
	if err != nil {
		return nil, 0, err
	}
	defer it.Close()
	scanned := 0
	var last uint64
	for ok := it.First(); ok; ok = it.Next() {
		seq, perr := strconv.ParseUint(string(it.Key()[len(prefix):]), 16, 64)
		if perr != nil {
			continue
		}
		if len(tasks) == f.Limit || scanned >= f.MaxScan {
			// There is more: the next page starts after the last entry
			// looked at.
			return tasks, last, nil
		}
		scanned++
		last = seq
		t, err := s.QueueTask(string(it.Value()))
		if err != nil {
			return nil, 0, err
		}
		if f.State != "" && t.State != f.State {
			continue
		}
		tasks = append(tasks, t)
	}
	return tasks, 0, it.Error()
}

// SortPairs sorts pairs by name (for proposers building specs).
func SortPairs(ps []Pair) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].K < ps[j].K })
}
