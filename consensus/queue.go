package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/api"
)

// The bulk task queue (docs/scheduling.md, "Bulk tasks"). A bulk task is a
// replicated record that moves through its states only by the commands
// below: enqueue, claim by a node with an expiry the node renews while it
// runs the task, complete (succeeded, failed, dead, cancelled, or queued
// again for a retry at a time the proposer chose), cancel, reclaim of
// claims that expired (or of every claim of a node that restarted), and
// purge of finished tasks after their retention. Times are unix
// nanoseconds and always come in the command: apply never reads a clock.
//
// Keys, all under s/q/:
//
//	t/<id>                          the task record
//	r/<tenant>/<due>/<seq>   → id   queued tasks, by tenant, by due time
//	c/<expires>/<seq>        → id   running tasks, by claim expiry
//	f/<finished>/<seq>       → id   finished tasks, by finish time (purge)
//	i/<tenant>/<sha256(key)> → id   idempotency keys
//	la/<seq>, ls/<state>/<seq>, lt/<tenant>/<seq> → id   listing indexes
//	m/<digest>, mc/<digest>/<offset>, mr/<digest>   replicated modules (a header, chunks), reference counts
//	n/<state>, a/<tenant>           counts: tasks per state, unfinished tasks per tenant
//	seq                             the last sequence number given out
//
// <due>, <expires>, <finished> and <seq> are 16 hex digits (big-endian
// uint64), so keys sort by time and then by enqueue order. Claiming reads
// the first key of one tenant's ready index; reclaiming reads the claim
// index up to the present; neither scans the queue.
const (
	prefixQueue      = PrefixState + "q/"
	prefixQTask      = prefixQueue + "t/"
	prefixQReady     = prefixQueue + "r/"
	prefixQClaim     = prefixQueue + "c/"
	prefixQFinished  = prefixQueue + "f/"
	prefixQIdem      = prefixQueue + "i/"
	prefixQListAll   = prefixQueue + "la/"
	prefixQListState = prefixQueue + "ls/"
	prefixQListTen   = prefixQueue + "lt/"
	prefixQModule    = prefixQueue + "m/"
	prefixQModChunk  = prefixQueue + "mc/"
	prefixQModRefs   = prefixQueue + "mr/"
	prefixQCount     = prefixQueue + "n/"
	prefixQActive    = prefixQueue + "a/"
	keyQSeq          = prefixQueue + "seq"
)

// Task states. The strings are part of the API.
const (
	TaskQueued    = "queued"
	TaskRunning   = "running"
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	TaskCancelled = "cancelled"
	TaskDead      = "dead"
)

// TaskStates lists every state, in the order of a task's life.
var TaskStates = []string{TaskQueued, TaskRunning, TaskSucceeded, TaskFailed, TaskCancelled, TaskDead}

// ValidTaskState reports whether s is a task state.
func ValidTaskState(s string) bool {
	for _, x := range TaskStates {
		if x == s {
			return true
		}
	}
	return false
}

// taskFinal reports whether a state is final.
func taskFinal(s string) bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskCancelled || s == TaskDead
}

// Reasons the queue itself records (the proposer may record others, such
// as retry_budget_exhausted).
const (
	ReasonClaimExpired  = "claim_expired"
	ReasonNodeRestarted = "node_restarted"
	ReasonMaxAttempts   = "max_attempts"
	// OutcomeAbandoned is the outcome of an attempt whose node stopped
	// holding the claim (it died, or restarted) before it completed.
	OutcomeAbandoned = "abandoned"
)

// Bounds of the replicated queue. They keep every command well under
// MaxCommandBytes (4 MiB) and the state of one tenant bounded.
const (
	// MaxQueueBodyBytes bounds a bulk task's request body.
	MaxQueueBodyBytes = 1 << 20
	// MaxQueueSpecBytes bounds a task's whole spec (body, headers, env,
	// URL) as encoded.
	MaxQueueSpecBytes = MaxQueueBodyBytes + 512<<10
	// MaxQueueModuleBytes bounds a module replicated for bulk tasks; it is
	// replicated in chunks of at most MaxQueueModuleChunk, one per
	// command.
	MaxQueueModuleBytes = 16 << 20
	MaxQueueModuleChunk = 2 << 20
	// MaxQueueResultBytes bounds the result kept in a task record (the
	// node that ran the task keeps the full result locally).
	MaxQueueResultBytes = 256 << 10
	// MaxActivePerTenant bounds a tenant's unfinished (queued or running)
	// tasks; MaxActiveTasks all tenants'.
	MaxActivePerTenant = 100_000
	MaxActiveTasks     = 1_000_000
	// MaxTaskAttempts bounds a task's attempts (and its history).
	MaxTaskAttempts = 20
	// MaxClaimTTL bounds how far ahead one claim or renewal may reach.
	MaxClaimTTL = int64(10 * 60 * 1e9)
	// MaxIdempotencyKeyBytes bounds an idempotency key.
	MaxIdempotencyKeyBytes = 256
	// maxQueueBatch bounds the tasks one renew, reclaim or purge touches.
	maxQueueBatch = 10_000
)

// activePerTenantLimit is MaxActivePerTenant; tests lower it.
var activePerTenantLimit = MaxActivePerTenant

// Refusal codes of the queue commands.
const (
	CodeQueueFull           = "queue_full"
	CodeTaskNotFound        = "task_not_found"
	CodeTaskFinished        = "task_finished"
	CodeClaimLost           = "claim_lost"
	CodeIdempotencyConflict = "idempotency_key_conflict"
	CodeModuleNotFound      = "module_not_found"
)

// Pair is one name and value (headers, env). Task specs hold pairs, sorted
// by name, never maps: maps have no stable encoding, and replicated bytes
// must be the same on every node.
type Pair struct {
	_msgpack struct{} `msgpack:",as_array"`
	K        string
	V        string
}

// TaskSpec is what a bulk task runs: everything a node needs, so that any
// node can run it.
type TaskSpec struct {
	Kind         string `msgpack:"kind"` // "wasi" or "js"
	ModuleDigest string `msgpack:"module"`
	Method       string `msgpack:"method"`
	URL          string `msgpack:"url"`
	Headers      []Pair `msgpack:"headers,omitempty"`
	Body         []byte `msgpack:"body,omitempty"`
	Env          []Pair `msgpack:"env,omitempty"`
	Traceparent  string `msgpack:"traceparent,omitempty"`
}

// Attempt is one run of a task, as the queue knows it.
type Attempt struct {
	N         int    `msgpack:"n"`
	Node      string `msgpack:"node"`
	ClaimedAt int64  `msgpack:"claimed_at"`
	EndedAt   int64  `msgpack:"ended_at,omitempty"`
	Outcome   string `msgpack:"outcome,omitempty"`
	Reason    string `msgpack:"reason,omitempty"`
}

// QueueTask is a bulk task record.
type QueueTask struct {
	ID             string   `msgpack:"id"`
	Seq            uint64   `msgpack:"seq"`
	Tenant         string   `msgpack:"tenant"`
	LeaseID        string   `msgpack:"lease_id"`
	Profile        string   `msgpack:"profile"`
	PolicyDigest   string   `msgpack:"policy_digest"`
	Class          string   `msgpack:"class"`
	IdempotencyKey string   `msgpack:"idempotency_key,omitempty"`
	SpecDigest     string   `msgpack:"spec_digest"`
	Spec           TaskSpec `msgpack:"spec"`
	MaxAttempts    int      `msgpack:"max_attempts"`

	State    string `msgpack:"state"`
	Attempts int    `msgpack:"attempts"` // attempts started
	// DueAt: a queued task may be claimed from this time on.
	DueAt           int64  `msgpack:"due_at"`
	ClaimedBy       string `msgpack:"claimed_by,omitempty"`
	ClaimExpires    int64  `msgpack:"claim_expires,omitempty"`
	CancelRequested bool   `msgpack:"cancel_requested,omitempty"`
	CancelledBy     string `msgpack:"cancelled_by,omitempty"`

	EnqueuedAt int64  `msgpack:"enqueued_at"`
	EnqueuedBy string `msgpack:"enqueued_by"` // node
	UpdatedAt  int64  `msgpack:"updated_at"`
	FinishedAt int64  `msgpack:"finished_at,omitempty"`

	// Outcome and Result are those of the last attempt that completed;
	// Reason says why the task is in its state when the outcome alone
	// does not (retry_budget_exhausted, max_attempts, lease_expired, …).
	Outcome    string    `msgpack:"outcome,omitempty"`
	Reason     string    `msgpack:"reason,omitempty"`
	Result     []byte    `msgpack:"result,omitempty"` // JSON, for the API
	ResultNode string    `msgpack:"result_node,omitempty"`
	History    []Attempt `msgpack:"history,omitempty"`
}

// Final reports whether the task will not change again (but for purge).
func (t *QueueTask) Final() bool { return taskFinal(t.State) }

// Commands of the queue.

// PutQueueModule replicates a module that bulk tasks run, so that every
// node has it: one chunk of it, Code, at Offset of Size bytes. Chunks are
// accepted in order (a chunk already here is a no-op, so two proposers
// sending the same module interleave safely); with the last one, the
// module is complete once its bytes hash to Digest.
type PutQueueModule struct {
	Digest string `msgpack:"digest"`
	Kind   string `msgpack:"kind"`
	Size   int    `msgpack:"size"`
	Offset int    `msgpack:"offset"`
	Code   []byte `msgpack:"code"`
	At     int64  `msgpack:"at"`
}

// queueModule is a replicated module's header; its bytes are chunks.
type queueModule struct {
	Kind     string `msgpack:"kind"`
	Size     int    `msgpack:"size"`
	Have     int    `msgpack:"have"` // bytes received, in order
	Complete bool   `msgpack:"complete"`
	AddedAt  int64  `msgpack:"added_at"`
}

// ModulePut is the state of a module after a PutQueueModule. Reset: the
// bytes did not hash to the digest, and what had arrived was dropped.
type ModulePut struct {
	Have     int  `msgpack:"have"`
	Complete bool `msgpack:"complete"`
	Reset    bool `msgpack:"reset,omitempty"`
}

// EnqueueTask adds a task. The proposer fills the task's identity, lease,
// spec, MaxAttempts and EnqueuedAt/EnqueuedBy; apply sets the rest. With
// an idempotency key the tenant already used, the existing task is the
// result (or a refusal, when the spec differs).
type EnqueueTask struct {
	Task QueueTask `msgpack:"task"`
}

// ClaimTask claims the tenant's earliest due task for Node until Until.
// The result names no task when none is due at Now.
type ClaimTask struct {
	Tenant string `msgpack:"tenant"`
	Node   string `msgpack:"node"`
	Now    int64  `msgpack:"now"`
	Until  int64  `msgpack:"until"`
}

// TaskAttempt names one attempt of a task.
type TaskAttempt struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       string
	Attempt  int
}

// RenewClaims extends Node's claims on the attempts it still runs.
type RenewClaims struct {
	Node  string        `msgpack:"node"`
	Now   int64         `msgpack:"now"`
	Until int64         `msgpack:"until"`
	Tasks []TaskAttempt `msgpack:"tasks"`
}

// Completion decisions: what becomes of a task after an attempt.
const (
	NextSucceeded = TaskSucceeded
	NextFailed    = TaskFailed
	NextDead      = TaskDead
	NextCancelled = TaskCancelled
	NextRetry     = "retry"
)

// CompleteTask records the end of an attempt and what the proposer
// decided: succeeded, failed, dead, cancelled, or retry at RetryAt. The
// proposer decides (retryable outcome, attempts left, retry budget,
// backoff with jitter); apply checks that the decision is consistent and
// that Node still holds the claim on that attempt.
type CompleteTask struct {
	ID      string `msgpack:"id"`
	Attempt int    `msgpack:"attempt"`
	Node    string `msgpack:"node"`
	At      int64  `msgpack:"at"`
	Outcome string `msgpack:"outcome"`
	Reason  string `msgpack:"reason,omitempty"`
	Next    string `msgpack:"next"`
	RetryAt int64  `msgpack:"retry_at,omitempty"`
	Result  []byte `msgpack:"result,omitempty"`
}

// CancelTask cancels a task: a queued one at once; a running one is
// marked, and the node running it ends it (terminated:cancelled).
type CancelTask struct {
	ID string `msgpack:"id"`
	By string `msgpack:"by"`
	At int64  `msgpack:"at"`
}

// ReclaimTasks takes back claims: with Node empty, every claim that
// expired before Now; with Node set, every claim Node holds (the node
// restarted, so it runs none of them). Each such attempt is abandoned;
// the task is queued again at Now, or dead when it used its attempts,
// or cancelled when a cancel was asked for.
type ReclaimTasks struct {
	Now  int64  `msgpack:"now"`
	Node string `msgpack:"node,omitempty"`
	Max  int    `msgpack:"max"`
}

// PurgeTasks forgets finished tasks that finished before Before, and
// replicated modules no task refers to that were added before Before.
type PurgeTasks struct {
	Before int64 `msgpack:"before"`
	Max    int   `msgpack:"max"`
}

func (PutQueueModule) Op() Op { return OpPutQueueModule }
func (EnqueueTask) Op() Op    { return OpEnqueueTask }
func (ClaimTask) Op() Op      { return OpClaimTask }
func (RenewClaims) Op() Op    { return OpRenewClaims }
func (CompleteTask) Op() Op   { return OpCompleteTask }
func (CancelTask) Op() Op     { return OpCancelTask }
func (ReclaimTasks) Op() Op   { return OpReclaimTasks }
func (PurgeTasks) Op() Op     { return OpPurgeTasks }

// Results.

// EnqueueResult names the task; Created is false for a repeat of an
// idempotency key.
type EnqueueResult struct {
	ID      string `msgpack:"id"`
	Created bool   `msgpack:"created"`
	State   string `msgpack:"state"`
	// Queued is the number of queued tasks after the command.
	Queued int64 `msgpack:"queued"`
}

// ClaimResult names the claimed task and attempt; ID is empty when no
// task was due.
type ClaimResult struct {
	ID      string `msgpack:"id"`
	Attempt int    `msgpack:"attempt"`
}

// RenewResult lists attempts the node no longer holds (stop them), and
// attempts it holds that were cancelled (end them).
type RenewResult struct {
	Lost      []string `msgpack:"lost,omitempty"`
	Cancelled []string `msgpack:"cancelled,omitempty"`
}

// TaskStatus is a task's state after a command.
type TaskStatus struct {
	ID              string `msgpack:"id"`
	State           string `msgpack:"state"`
	Attempts        int    `msgpack:"attempts"`
	CancelRequested bool   `msgpack:"cancel_requested,omitempty"`
	ClaimedBy       string `msgpack:"claimed_by,omitempty"`
}

// ReclaimResult lists what became of each reclaimed task.
type ReclaimResult struct {
	Requeued  []string `msgpack:"requeued,omitempty"`
	Dead      []string `msgpack:"dead,omitempty"`
	Cancelled []string `msgpack:"cancelled,omitempty"`
}

// Key helpers.

func hex16(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.EncodeToString(b[:])
}

func qTaskKey(id string) string { return prefixQTask + id }
func qReadyKey(t *QueueTask) string {
	return prefixQReady + t.Tenant + "/" + hex16(uint64(t.DueAt)) + "/" + hex16(t.Seq)
}
func qClaimKey(t *QueueTask) string {
	return prefixQClaim + hex16(uint64(t.ClaimExpires)) + "/" + hex16(t.Seq)
}
func qFinishedKey(t *QueueTask) string {
	return prefixQFinished + hex16(uint64(t.FinishedAt)) + "/" + hex16(t.Seq)
}
func qIdemKey(tenant, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefixQIdem + tenant + "/" + hex.EncodeToString(sum[:])
}
func qStateKey(t *QueueTask) string { return prefixQListState + t.State + "/" + hex16(t.Seq) }

// keyTime reads the 16 hex digits at off in an index key.
func keyTime(key []byte, off int) (uint64, error) {
	if len(key) < off+16 {
		return 0, fmt.Errorf("index key %q is too short", key)
	}
	return strconv.ParseUint(string(key[off:off+16]), 16, 64)
}

// Counters.

func getCount(r reader, key string) (int64, error) {
	b, closer, err := r.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(b) != 8 {
		return 0, fmt.Errorf("counter %s is %d bytes", key, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func addCount(tx *Tx, key string, delta int64) error {
	v, err := getCount(tx, key)
	if err != nil {
		return err
	}
	v += delta
	if v <= 0 {
		tx.Delete(key)
		return nil
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	tx.Set(key, b[:])
	return nil
}

// setState moves a task to state, keeping the state index and counts.
func setState(tx *Tx, t *QueueTask, state string) error {
	if t.State != "" {
		tx.Delete(qStateKey(t))
		if err := addCount(tx, prefixQCount+t.State, -1); err != nil {
			return err
		}
	}
	wasFinal := taskFinal(t.State)
	t.State = state
	tx.Set(qStateKey(t), []byte(t.ID))
	if err := addCount(tx, prefixQCount+state, 1); err != nil {
		return err
	}
	if taskFinal(state) && !wasFinal {
		if err := addCount(tx, prefixQActive+t.Tenant, -1); err != nil {
			return err
		}
		tx.Set(qFinishedKey(t), []byte(t.ID))
	}
	return nil
}

func getTask(r reader, id string) (*QueueTask, error) {
	var t QueueTask
	if err := getRecord(r, qTaskKey(id), &t); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(CodeTaskNotFound, "no task %s", id)
		}
		return nil, err
	}
	return &t, nil
}

func status(t *QueueTask) *TaskStatus {
	return &TaskStatus{ID: t.ID, State: t.State, Attempts: t.Attempts, CancelRequested: t.CancelRequested, ClaimedBy: t.ClaimedBy}
}

// Handlers.

func qChunkKey(digest string, off int) string {
	return prefixQModChunk + digest + "/" + hex16(uint64(off))
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
	if !api.ValidDigest(c.Digest) {
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
		if "sha256:"+hex.EncodeToString(h.Sum(nil)) != c.Digest {
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
	case !api.ValidDigest(t.Spec.ModuleDigest):
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
	sum := sha256.Sum256(idBytes)
	specDigest := "sha256:" + hex.EncodeToString(sum[:])

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
	t.State = ""
	t.Attempts = 0
	t.DueAt = t.EnqueuedAt
	t.ClaimedBy, t.ClaimExpires = "", 0
	t.CancelRequested, t.CancelledBy = false, ""
	t.UpdatedAt, t.FinishedAt = t.EnqueuedAt, 0
	t.Outcome, t.Reason, t.Result, t.ResultNode, t.History = "", "", nil, "", nil
	if err := addCount(tx, prefixQActive+t.Tenant, 1); err != nil {
		return nil, err
	}
	if err := setState(tx, &t, TaskQueued); err != nil {
		return nil, err
	}
	tx.Set(qReadyKey(&t), []byte(t.ID))
	tx.Set(prefixQListAll+hex16(t.Seq), []byte(t.ID))
	tx.Set(prefixQListTen+t.Tenant+"/"+hex16(t.Seq), []byte(t.ID))
	if t.IdempotencyKey != "" {
		tx.Set(qIdemKey(t.Tenant, t.IdempotencyKey), []byte(t.ID))
	}
	if err := addCount(tx, prefixQModRefs+t.Spec.ModuleDigest, 1); err != nil {
		return nil, err
	}
	if err := put(tx, qTaskKey(t.ID), &t); err != nil {
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
	tx.Delete(qReadyKey(t))
	if err := setState(tx, t, TaskRunning); err != nil {
		return nil, err
	}
	t.Attempts++
	t.ClaimedBy, t.ClaimExpires, t.UpdatedAt = c.Node, c.Until, c.Now
	t.History = append(t.History, Attempt{N: t.Attempts, Node: c.Node, ClaimedAt: c.Now})
	tx.Set(qClaimKey(t), []byte(t.ID))
	if err := put(tx, qTaskKey(t.ID), t); err != nil {
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
		tx.Delete(qClaimKey(t))
		t.ClaimExpires, t.UpdatedAt = c.Until, c.Now
		tx.Set(qClaimKey(t), []byte(t.ID))
		if err := put(tx, qTaskKey(t.ID), t); err != nil {
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

// requeue puts a running or new task back in its tenant's ready index.
func requeue(tx *Tx, t *QueueTask, due int64) error {
	t.ClaimedBy, t.ClaimExpires, t.DueAt = "", 0, due
	if err := setState(tx, t, TaskQueued); err != nil {
		return err
	}
	tx.Set(qReadyKey(t), []byte(t.ID))
	return nil
}

// finish ends a running task in a final state.
func finish(tx *Tx, t *QueueTask, state string, at int64) error {
	t.ClaimedBy, t.ClaimExpires, t.FinishedAt = "", 0, at
	return setState(tx, t, state)
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
	tx.Delete(qClaimKey(t))
	endAttempt(t, c.At, c.Outcome, c.Reason)
	t.Outcome, t.Reason, t.Result, t.ResultNode, t.UpdatedAt = c.Outcome, c.Reason, c.Result, c.Node, c.At
	if next == NextRetry {
		err = requeue(tx, t, c.RetryAt)
	} else {
		err = finish(tx, t, next, c.At)
	}
	if err != nil {
		return nil, err
	}
	if err := put(tx, qTaskKey(t.ID), t); err != nil {
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
	t.CancelRequested, t.CancelledBy, t.UpdatedAt = true, c.By, c.At
	if t.State == TaskQueued {
		tx.Delete(qReadyKey(t))
		t.Reason = "cancelled"
		if err := finish(tx, t, TaskCancelled, c.At); err != nil {
			return nil, err
		}
	}
	if err := put(tx, qTaskKey(t.ID), t); err != nil {
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
		tx.Delete(qClaimKey(t))
		endAttempt(t, c.Now, OutcomeAbandoned, reason)
		t.UpdatedAt = c.Now
		switch {
		case t.CancelRequested:
			t.Outcome, t.Reason = OutcomeAbandoned, "cancelled"
			err = finish(tx, t, TaskCancelled, c.Now)
			res.Cancelled = append(res.Cancelled, id)
		case t.Attempts >= t.MaxAttempts:
			t.Outcome, t.Reason = OutcomeAbandoned, reason
			err = finish(tx, t, TaskDead, c.Now)
			res.Dead = append(res.Dead, id)
		default:
			err = requeue(tx, t, c.Now)
			res.Requeued = append(res.Requeued, id)
		}
		if err != nil {
			return nil, err
		}
		if err := put(tx, qTaskKey(t.ID), t); err != nil {
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
		tx.Delete(qTaskKey(id))
		tx.Delete(qFinishedKey(t))
		tx.Delete(qStateKey(t))
		tx.Delete(prefixQListAll + hex16(t.Seq))
		tx.Delete(prefixQListTen + t.Tenant + "/" + hex16(t.Seq))
		if t.IdempotencyKey != "" {
			tx.Delete(qIdemKey(t.Tenant, t.IdempotencyKey))
		}
		if err := addCount(tx, prefixQCount+t.State, -1); err != nil {
			return 0, err
		}
		if err := addCount(tx, prefixQModRefs+t.Spec.ModuleDigest, -1); err != nil {
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

// Reads.

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
