package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/leash-dev/leash/digest"
)

// LeaseRequest is the body of POST /v1/leases.
type LeaseRequest struct {
	Tenant     string `json:"tenant"`
	Intent     string `json:"intent,omitempty"`
	Profile    string `json:"profile,omitempty"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
	Class      string `json:"class,omitempty"`
	Session    string `json:"session,omitempty"`
	// Env is the policy environment: dev, stage or prod (the default).
	Env string `json:"env,omitempty"`
}

// Lease is the answer of POST /v1/leases (201) and GET /v1/leases/{id}.
type Lease struct {
	LeaseID      string    `json:"lease_id"`
	Token        string    `json:"token,omitempty"`
	Tenant       string    `json:"tenant"`
	Profile      string    `json:"profile"`
	PolicyDigest string    `json:"policy_digest"`
	Env          string    `json:"env"`
	Class        string    `json:"class"`
	Session      string    `json:"session,omitempty"`
	IssuedAt     time.Time `json:"issued_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	Revoked      bool      `json:"revoked,omitempty"`
}

// Module is how a task names its code: exactly one field is set.
type Module struct {
	JS     *string `json:"js,omitempty"`
	WASM   *string `json:"wasm,omitempty"` // base64 (standard)
	Digest *string `json:"digest,omitempty"`
}

// Body is an HTTP body in JSON: UTF-8 text in Body, or any bytes in
// BodyBase64. At most one is set.
type Body struct {
	Body       *string `json:"body,omitempty"`
	BodyBase64 *string `json:"body_base64,omitempty"`
}

// Bytes decodes the body.
func (b Body) Bytes() ([]byte, error) {
	switch {
	case b.BodyBase64 != nil:
		return base64.StdEncoding.DecodeString(*b.BodyBase64)
	case b.Body != nil:
		return []byte(*b.Body), nil
	}
	return nil, nil
}

// MakeBody encodes bytes: as text when they are valid UTF-8, else base64.
func MakeBody(p []byte) Body {
	if utf8.Valid(p) {
		s := string(p)
		return Body{Body: &s}
	}
	s := base64.StdEncoding.EncodeToString(p)
	return Body{BodyBase64: &s}
}

// TaskHTTPRequest is the HTTP request a task handles.
type TaskHTTPRequest struct {
	Method  string            `json:"method,omitempty"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body
}

// TaskRequest is the body of POST /v1/tasks.
type TaskRequest struct {
	Module         Module          `json:"module"`
	Request        TaskHTTPRequest `json:"request"`
	Env            Env             `json:"env,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	// ModelTokens are the model tokens the agent spent on this task, when
	// the client reports them: they go into the task's events.
	ModelTokens *ModelTokens `json:"model_tokens,omitempty"`
}

// ModelTokens are model tokens a client reports with a task.
type ModelTokens struct {
	Model  string `json:"model,omitempty"`
	Input  int64  `json:"input"`
	Output int64  `json:"output"`
}

// TaskResponse is the guest's HTTP response.
type TaskResponse struct {
	Status  int         `json:"status"`
	Headers http.Header `json:"headers"`
	Body
}

// LogLine is one guest log line.
type LogLine struct {
	Level   string    `json:"level"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// Usage is what a task consumed.
type Usage struct {
	CPUMs           float64  `json:"cpu_ms"`
	WallMs          float64  `json:"wall_ms"`
	MemoryPeakBytes int64    `json:"memory_peak_bytes"`
	OutputBytes     int64    `json:"output_bytes"`
	LogBytes        int64    `json:"log_bytes"`
	Subrequests     int64    `json:"subrequests"`
	EgressBytesOut  int64    `json:"egress_bytes_out"`
	EgressBytesIn   int64    `json:"egress_bytes_in"`
	Destinations    []string `json:"destinations,omitempty"`
	Blocked         int64    `json:"blocked"`
}

// ReceiptRef points at a task's receipt in the ledger.
type ReceiptRef struct {
	Index int64 `json:"index"`
}

// TaskResult is the answer of an interactive POST /v1/tasks, and the
// result inside a task record.
type TaskResult struct {
	TaskID   string        `json:"task_id"`
	Outcome  string        `json:"outcome"`
	Error    string        `json:"error,omitempty"`
	Response *TaskResponse `json:"response,omitempty"`
	Logs     []LogLine     `json:"logs"`
	Usage    Usage         `json:"usage"`
	Receipt  *ReceiptRef   `json:"receipt,omitempty"`
	// ReceiptError says why the receipt is not yet in the ledger (it is
	// spooled on the node and appended later).
	ReceiptError string    `json:"receipt_error,omitempty"`
	Node         string    `json:"node"`
	LeaseID      string    `json:"lease_id"`
	Tenant       string    `json:"tenant"`
	Profile      string    `json:"profile"`
	Module       string    `json:"module_digest"`
	Traceparent  string    `json:"traceparent"`
	StartedAt    time.Time `json:"started_at"`
	EndedAt      time.Time `json:"ended_at"`

	// ResponseElided: the response body was too large to keep in the
	// replicated task record; GET /v1/tasks/{id} on Node has it.
	ResponseElided bool `json:"response_elided,omitempty"`
}

// Task states.
const (
	TaskQueued    = "queued"
	TaskRunning   = "running"
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	TaskCancelled = "cancelled"
	TaskDead      = "dead"
)

// Task is the answer of GET /v1/tasks/{id}.
type Task struct {
	TaskID   string      `json:"task_id"`
	State    string      `json:"state"`
	Class    string      `json:"class"`
	Attempts int         `json:"attempts"`
	Result   *TaskResult `json:"result,omitempty"`

	// Bulk tasks (the replicated queue, docs/scheduling.md) also say:
	Tenant         string `json:"tenant,omitempty"`
	LeaseID        string `json:"lease_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	MaxAttempts    int    `json:"max_attempts,omitempty"`
	// Outcome is the last completed attempt's; Reason says why the task
	// is in its state when the outcome does not (retry_budget_exhausted,
	// max_attempts, claim_expired, lease_expired, lease_revoked, …).
	Outcome         string        `json:"outcome,omitempty"`
	Reason          string        `json:"reason,omitempty"`
	Node            string        `json:"node,omitempty"` // running: the node holding the claim
	CancelRequested bool          `json:"cancel_requested,omitempty"`
	EnqueuedAt      *time.Time    `json:"enqueued_at,omitempty"`
	NextAttemptAt   *time.Time    `json:"next_attempt_at,omitempty"`
	FinishedAt      *time.Time    `json:"finished_at,omitempty"`
	History         []TaskAttempt `json:"history,omitempty"`
}

// TaskAttempt is one attempt of a bulk task.
type TaskAttempt struct {
	Attempt   int        `json:"attempt"`
	Node      string     `json:"node"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Outcome   string     `json:"outcome,omitempty"`
	Reason    string     `json:"reason,omitempty"`
}

// TaskList is the answer of GET /v1/tasks: bulk tasks in enqueue order,
// without their results; NextCursor, when set, fetches the next page.
type TaskList struct {
	Tasks      []Task `json:"tasks"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Accepted is the answer of a bulk POST /v1/tasks (202).
type Accepted struct {
	TaskID string `json:"task_id"`
}

// ModuleRef is the answer of PUT /v1/modules (201).
type ModuleRef struct {
	Digest string `json:"digest"`
	Kind   string `json:"kind"`
	Size   int    `json:"size"`
}

// Member is a cluster member in GET /v1/cluster.
type Member struct {
	ID     string `json:"id"`
	API    string `json:"api"`
	Raft   string `json:"raft"`
	Gossip string `json:"gossip,omitempty"`
	// State is gossip's view: alive, suspect, dead, left, or unknown (in
	// the Raft configuration, not in gossip).
	State string `json:"state"`
	// Suffrage is voter, nonvoter or none (not in the Raft configuration).
	Suffrage string `json:"suffrage"`
	// RaftState is the member's own view: leader, follower, candidate.
	RaftState    string `json:"raft_state,omitempty"`
	AppliedIndex uint64 `json:"applied_index"`
	Version      string `json:"version,omitempty"`
	Load         *Load  `json:"load,omitempty"`
	// LastContactMs is how long ago the member heard from the leader.
	LastContactMs *int64 `json:"last_contact_ms,omitempty"`
	// StateDigest is the member's replicated state digest (?digest=1).
	StateDigest string `json:"state_digest,omitempty"`
	// Unreachable: gossip says alive but the member did not answer.
	Unreachable bool `json:"unreachable,omitempty"`
}

// Load is a node's sandbox slots in use and tasks waiting.
type Load struct {
	Running int64 `json:"running"`
	Waiting int64 `json:"waiting"`
	Slots   int   `json:"slots"`
}

// Cluster is the answer of GET /v1/cluster.
type Cluster struct {
	Leader  *Member  `json:"leader"`
	Members []Member `json:"members"`
	// Node is the member that answered.
	Node string `json:"node,omitempty"`
}

// NodeStatus is what a node says of itself to its peers (the internal
// API behind GET /v1/cluster).
type NodeStatus struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastContactMs int64  `json:"last_contact_ms"`
	Running       int64  `json:"running"`
	Waiting       int64  `json:"waiting"`
	Slots         int    `json:"slots"`
	StateDigest   string `json:"state_digest,omitempty"`
}

// Ready is the body of GET /readyz.
type Ready struct {
	Ready        bool     `json:"ready"`
	NodeID       string   `json:"node_id"`
	Leader       string   `json:"leader"`
	AppliedIndex uint64   `json:"applied_index"`
	Members      []string `json:"members"`
	Reason       string   `json:"reason,omitempty"`
}

// PolicyInfo is the answer of GET/PUT /v1/policy.
type PolicyInfo struct {
	Env    string `json:"env"`
	Digest string `json:"digest"`
	Source string `json:"source,omitempty"`
}

// PolicyErrors is the answer to an invalid bundle: every problem.
type PolicyErrors struct {
	Error  *Error       `json:"error"`
	Fields []FieldError `json:"fields"`
}

// FieldError locates one problem in a bundle.
type FieldError struct {
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// ValidDigest reports whether d has the form of every content digest in
// the API (policy bundles, modules): digest.Valid.
func ValidDigest(d string) bool { return digest.Valid(d) }

// APIKeyRequest asks for a new API key. Role is admin, operator, auditor
// or tenant; a tenant key names its Tenant. TTLSeconds 0: the key does not
// expire.
type APIKeyRequest struct {
	Role       string `json:"role"`
	Tenant     string `json:"tenant,omitempty"`
	Name       string `json:"name,omitempty"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
}

// APIKey is an API key as the API shows it. Key, the secret, is in the
// answer to the key's creation only: it is stored nowhere.
type APIKey struct {
	KeyID     string     `json:"key_id"`
	Key       string     `json:"key,omitempty"`
	Role      string     `json:"role"`
	Tenant    string     `json:"tenant,omitempty"`
	Name      string     `json:"name,omitempty"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// APIKeyList is GET /v1/apikeys.
type APIKeyList struct {
	Keys []APIKey `json:"keys"`
}

// Env is a task's variables, as workerd's vars: each a string, or any
// other JSON value, which a JavaScript worker sees parsed (a WASI guest
// sees its JSON text).
type Env map[string]EnvVar

// EnvVar is one variable: Text, or JSON when the client sent a value that
// is not a string.
type EnvVar struct {
	Text string
	JSON json.RawMessage
}

// StringEnv makes an Env of strings.
func StringEnv(m map[string]string) Env {
	if m == nil {
		return nil
	}
	e := make(Env, len(m))
	for k, v := range m {
		e[k] = EnvVar{Text: v}
	}
	return e
}

// UnmarshalJSON takes a string as Text and any other JSON value as JSON.
func (v *EnvVar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*v = EnvVar{}
		return json.Unmarshal(b, &v.Text)
	}
	if !json.Valid(b) {
		return errors.New("env value is not JSON")
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		return err
	}
	*v = EnvVar{JSON: c.Bytes()}
	return nil
}

// MarshalJSON writes the value as the client sent it.
func (v EnvVar) MarshalJSON() ([]byte, error) {
	if v.JSON != nil {
		return v.JSON, nil
	}
	return json.Marshal(v.Text)
}

// Tenant is a tenant of the active bundle as GET /v1/tenants shows it: the
// bundle's settings, with the module quota's defaults filled in, and how
// many API keys it holds.
type Tenant struct {
	Name           string   `json:"name"`
	Profiles       []string `json:"profiles"`
	Weight         int      `json:"weight"`
	ModuleMaxBytes int64    `json:"module_max_bytes"`
	ModuleMaxCount int64    `json:"module_max_count"`
	APIKeys        int      `json:"api_keys"`
}

// TenantList is GET /v1/tenants.
type TenantList struct {
	PolicyDigest string   `json:"policy_digest"`
	Tenants      []Tenant `json:"tenants"`
}
