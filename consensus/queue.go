package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
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
	// EnvJSON names the vars of Env whose value is JSON text.
	EnvJSON     []string `msgpack:"env_json,omitempty"`
	Traceparent string   `msgpack:"traceparent,omitempty"`
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

// queueTasks is the task record with its indexes and counts: the only
// writer of the keys under r/, c/, f/, i/, la/, ls/, lt/, n/, a/ and mr/.
var queueTasks = &table[QueueTask]{
	name: "queue task",
	key:  func(t *QueueTask) string { return qTaskKey(t.ID) },
	indexes: []index[QueueTask]{
		{"ready", func(t *QueueTask) (string, bool) { return qReadyKey(t), t.State == TaskQueued }, taskID},
		{"claim", func(t *QueueTask) (string, bool) { return qClaimKey(t), t.State == TaskRunning }, taskID},
		{"finished", func(t *QueueTask) (string, bool) { return qFinishedKey(t), taskFinal(t.State) }, taskID},
		{"idempotency", func(t *QueueTask) (string, bool) {
			return qIdemKey(t.Tenant, t.IdempotencyKey), t.IdempotencyKey != ""
		}, taskID},
		{"by state", always(qStateKey), taskID},
		{"all", always(func(t *QueueTask) string { return prefixQListAll + hex16(t.Seq) }), taskID},
		{"by tenant", always(func(t *QueueTask) string { return prefixQListTen + t.Tenant + "/" + hex16(t.Seq) }), taskID},
	},
	counters: []counter[QueueTask]{
		{"tasks per state", always(func(t *QueueTask) string { return prefixQCount + t.State })},
		{"unfinished tasks per tenant", func(t *QueueTask) (string, bool) { return prefixQActive + t.Tenant, !taskFinal(t.State) }},
		{"tasks per module", always(func(t *QueueTask) string { return prefixQModRefs + t.Spec.ModuleDigest })},
	},
}

func taskID(t *QueueTask) []byte { return []byte(t.ID) }

func qChunkKey(digest string, off int) string {
	return prefixQModChunk + digest + "/" + hex16(uint64(off))
}
