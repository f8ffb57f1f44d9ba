package events

import "time"

// The data of each event type. Field names are the JSON keys of the
// event's data object; docs/events.md documents each. Durations are whole
// milliseconds, sizes bytes. Tenant, lease, task and traceparent are
// envelope attributes, not data.

// SandboxIssued: a lease was issued (a sandbox grant for a tenant).
type SandboxIssued struct {
	PolicyID     string    `json:"policy_id"`     // environment the bundle came from (dev, stage, prod)
	PolicyDigest string    `json:"policy_digest"` // sha256 of the bundle's canonical form
	Profile      string    `json:"profile"`
	Intent       string    `json:"intent,omitempty"`
	Class        string    `json:"class"` // interactive or bulk
	Session      string    `json:"session,omitempty"`
	TTLSeconds   int64     `json:"ttl_seconds"`
	ExpiresAt    time.Time `json:"expires_at"`
	Canary       bool      `json:"canary,omitempty"` // the canary digest was chosen
}

func (SandboxIssued) EventType() Type { return TypeSandboxIssued }

// ToolCallAttempted: a host call with a side effect was made and allowed
// (fetch, KV, ...). Bytes are what crossed the boundary.
type ToolCallAttempted struct {
	Tool          string `json:"tool"`                  // fetch, kv.get, kv.put, ...
	Destination   string `json:"destination,omitempty"` // host:port for fetch, key space for KV
	Method        string `json:"method,omitempty"`
	Status        int    `json:"status,omitempty"` // upstream HTTP status
	BytesSent     int64  `json:"bytes_sent"`
	BytesReceived int64  `json:"bytes_received"`
	DurationMS    int64  `json:"duration_ms"`
	Error         string `json:"error,omitempty"` // network failure (not a policy refusal)
}

func (ToolCallAttempted) EventType() Type { return TypeToolCallAttempted }

// ToolCallBlocked: a host call was refused; Clause names the policy
// clause (docs/egress.md lists the egress clauses).
type ToolCallBlocked struct {
	Tool         string `json:"tool"`
	Destination  string `json:"destination,omitempty"`
	Method       string `json:"method,omitempty"`
	Clause       string `json:"clause"`
	Profile      string `json:"profile,omitempty"`
	AddressRange string `json:"address_range,omitempty"` // the special-purpose range, for address.private
	SNI          string `json:"sni,omitempty"`           // the ClientHello's server name, for a refused proxy tunnel
	Message      string `json:"message,omitempty"`
}

func (ToolCallBlocked) EventType() Type { return TypeToolCallBlocked }

// ModelTokens are the model tokens a client reports with its task.
type ModelTokens struct {
	Model  string `json:"model,omitempty"`
	Input  int64  `json:"input"`
	Output int64  `json:"output"`
}

// ExecutionCompleted: a task ran to its end (outcome ok, or error when the
// guest failed).
type ExecutionCompleted struct {
	Outcome         string       `json:"outcome"` // ok or error
	Profile         string       `json:"profile"`
	Class           string       `json:"class"`
	ModuleDigest    string       `json:"module_digest"`
	DurationMS      int64        `json:"duration_ms"`
	CPUMS           int64        `json:"cpu_ms"`
	MemoryPeakBytes int64        `json:"memory_peak_bytes,omitempty"`
	EgressBytes     int64        `json:"egress_bytes"`
	Subrequests     int          `json:"subrequests"`
	Blocked         int          `json:"blocked"` // refused host calls
	Status          int          `json:"status,omitempty"`
	ModelTokens     *ModelTokens `json:"model_tokens,omitempty"`
	ReceiptIndex    *int64       `json:"receipt_index,omitempty"`
}

func (ExecutionCompleted) EventType() Type { return TypeExecutionCompleted }

// ExecutionTerminated: a bound or an operator ended a task; Reason is
// the suffix of its terminated:<reason> outcome.
type ExecutionTerminated struct {
	Reason       string       `json:"reason"` // cpu, wall, memory, output, subrequests, revoked, budget, shutdown
	Profile      string       `json:"profile"`
	Class        string       `json:"class"`
	ModuleDigest string       `json:"module_digest,omitempty"`
	DurationMS   int64        `json:"duration_ms"`
	CPUMS        int64        `json:"cpu_ms"`
	EgressBytes  int64        `json:"egress_bytes"`
	Limit        int64        `json:"limit,omitempty"` // the bound that was hit, in its unit
	Message      string       `json:"message,omitempty"`
	ModelTokens  *ModelTokens `json:"model_tokens,omitempty"`
	ReceiptIndex *int64       `json:"receipt_index,omitempty"`
}

func (ExecutionTerminated) EventType() Type { return TypeExecutionTerminated }

// Budget is the shared data of budget_warning and budget_exhausted.
type Budget struct {
	Resource string `json:"resource"` // cpu_ms, egress_bytes, tool_calls, tasks
	Day      string `json:"day"`      // UTC, YYYY-MM-DD
	Used     int64  `json:"used"`
	Limit    int64  `json:"limit"`
	Percent  int    `json:"percent"`
}

// BudgetWarning: a tenant used 70% of a daily budget (once a day per
// resource).
type BudgetWarning Budget

func (BudgetWarning) EventType() Type { return TypeBudgetWarning }

// BudgetExhausted: a tenant used all of a daily budget; admission refuses
// its tasks until the next UTC day.
type BudgetExhausted Budget

func (BudgetExhausted) EventType() Type { return TypeBudgetExhausted }

// BudgetChanged: an operator set, raised or reset a tenant's daily
// envelope at run time (the scope names the tenant).
type BudgetChanged struct {
	Mode              string `json:"mode"` // set, raise or reset
	CPUMsPerDay       int64  `json:"cpu_ms_per_day"`
	EgressBytesPerDay int64  `json:"egress_bytes_per_day"`
	ToolCallsPerDay   int64  `json:"tool_calls_per_day"`
	TasksPerDay       int64  `json:"tasks_per_day"`
	By                string `json:"by"`
}

func (BudgetChanged) EventType() Type { return TypeBudgetChanged }

// LeaseRevoked: one lease, or all of a tenant's or a profile's leases,
// or every lease a runbook selector matches, were revoked. The envelope
// names the lease when Scope is lease.
type LeaseRevoked struct {
	Scope    string `json:"scope"` // lease, tenant, profile or selector
	Profile  string `json:"profile,omitempty"`
	Selector string `json:"selector,omitempty"` // the runbook's selector, e.g. tenant=demo,session=s1
	Count    int    `json:"count"`              // leases revoked
	Reason   string `json:"reason,omitempty"`
	By       string `json:"by,omitempty"`       // the actor (admin token name, runbook)
	Incident string `json:"incident,omitempty"` // the incident the action belongs to
}

func (LeaseRevoked) EventType() Type { return TypeLeaseRevoked }

// ProfileFrozen: a profile was frozen (no new leases, running tasks end)
// or thawed.
type ProfileFrozen struct {
	Profile  string `json:"profile"`
	Frozen   bool   `json:"frozen"`
	Reason   string `json:"reason,omitempty"`
	By       string `json:"by,omitempty"`
	Incident string `json:"incident,omitempty"`
	// ThawDigest: a restore let the profile's leases issued under this
	// (canary) digest through; the profile stays frozen for the others.
	ThawDigest string `json:"thaw_digest,omitempty"`
}

func (ProfileFrozen) EventType() Type { return TypeProfileFrozen }

// DestinationBlocked: a destination (host, wildcard or CIDR) was added to
// or removed from the global deny list at run time.
type DestinationBlocked struct {
	Destination string `json:"destination"`
	Blocked     bool   `json:"blocked"`
	Reason      string `json:"reason,omitempty"`
	By          string `json:"by,omitempty"`
	Incident    string `json:"incident,omitempty"`
}

func (DestinationBlocked) EventType() Type { return TypeDestinationBlocked }

// IncidentStepOverdue: an open incident's runbook step is past its time
// box and not done (raised once by the leader that sees it).
type IncidentStepOverdue struct {
	Incident string    `json:"incident"`
	Step     string    `json:"step"`
	Owner    string    `json:"owner"`
	Due      time.Time `json:"due"`
}

func (IncidentStepOverdue) EventType() Type { return TypeIncidentStepOverdue }

// PolicyPromoted: an environment now points at another bundle (a
// promotion, a canary change, or a rollback).
type PolicyPromoted struct {
	Env            string `json:"env"`
	From           string `json:"from,omitempty"` // environment promoted from
	Digest         string `json:"digest"`
	PreviousDigest string `json:"previous_digest,omitempty"`
	CanaryDigest   string `json:"canary_digest,omitempty"`
	CanaryPercent  int    `json:"canary_percent,omitempty"`
	Rollback       bool   `json:"rollback,omitempty"`
	By             string `json:"by,omitempty"`
	// Action is the lifecycle step: push, promote, rollback, canary_set,
	// canary_promote, canary_abort or put (docs/policy.md).
	Action   string `json:"action,omitempty"`
	Override bool   `json:"override,omitempty"` // an admin skipped a gate
	Reason   string `json:"reason,omitempty"`   // why; an automatic canary abort says what it measured
	Seq      uint64 `json:"seq,omitempty"`      // the change's number in the environment's history
}

func (PolicyPromoted) EventType() Type { return TypePolicyPromoted }

// NodeJoined: a node joined the cluster (as a Raft voter or non-voter).
type NodeJoined struct {
	NodeID string `json:"node_id"`
	API    string `json:"api,omitempty"`
	Raft   string `json:"raft,omitempty"`
	Gossip string `json:"gossip,omitempty"`
	Voter  bool   `json:"voter"`
}

func (NodeJoined) EventType() Type { return TypeNodeJoined }

// NodeLeft: a node left, or was removed after staying dead too long.
type NodeLeft struct {
	NodeID string `json:"node_id"`
	Reason string `json:"reason"` // left, dead, removed
}

func (NodeLeft) EventType() Type { return TypeNodeLeft }

// LeaderChanged: the Raft leader changed, as this node observed it.
type LeaderChanged struct {
	Leader   string `json:"leader"` // node id; empty while there is none
	Previous string `json:"previous,omitempty"`
	Term     uint64 `json:"term,omitempty"`
}

func (LeaderChanged) EventType() Type { return TypeLeaderChanged }

// ReceiptSpoolStale: signed receipts have waited in a node's local spool
// for the ledger longer than they should (no leader reachable).
type ReceiptSpoolStale struct {
	Node             string `json:"node_id"`
	Receipts         int    `json:"receipts"`
	OldestAgeSeconds int64  `json:"oldest_age_seconds"`
	ThresholdSeconds int64  `json:"threshold_seconds"`
}

func (ReceiptSpoolStale) EventType() Type { return TypeReceiptSpoolStale }

// TaskEnqueued: a bulk task entered the replicated queue.
type TaskEnqueued struct {
	Class      string `json:"class"`
	Profile    string `json:"profile"`
	QueueDepth int    `json:"queue_depth,omitempty"`
}

func (TaskEnqueued) EventType() Type { return TypeTaskEnqueued }

// TaskRetried: a bulk task failed an attempt and will run again.
type TaskRetried struct {
	Attempt     int       `json:"attempt"` // the attempt that failed, from 1
	MaxAttempts int       `json:"max_attempts"`
	Reason      string    `json:"reason"`
	NextAt      time.Time `json:"next_at"`
}

func (TaskRetried) EventType() Type { return TypeTaskRetried }

// TaskDead: a bulk task used its retry budget and will not run again.
type TaskDead struct {
	Attempts int    `json:"attempts"`
	Reason   string `json:"reason"`
}

func (TaskDead) EventType() Type { return TypeTaskDead }

// dataFor returns a zero data struct of type t, for decoding and docs.
func dataFor(t Type) Data {
	switch t {
	case TypeSandboxIssued:
		return &SandboxIssued{}
	case TypeToolCallAttempted:
		return &ToolCallAttempted{}
	case TypeToolCallBlocked:
		return &ToolCallBlocked{}
	case TypeExecutionCompleted:
		return &ExecutionCompleted{}
	case TypeExecutionTerminated:
		return &ExecutionTerminated{}
	case TypeBudgetWarning:
		return &BudgetWarning{}
	case TypeBudgetExhausted:
		return &BudgetExhausted{}
	case TypeBudgetChanged:
		return &BudgetChanged{}
	case TypeLeaseRevoked:
		return &LeaseRevoked{}
	case TypeProfileFrozen:
		return &ProfileFrozen{}
	case TypeDestinationBlocked:
		return &DestinationBlocked{}
	case TypeIncidentStepOverdue:
		return &IncidentStepOverdue{}
	case TypePolicyPromoted:
		return &PolicyPromoted{}
	case TypeNodeJoined:
		return &NodeJoined{}
	case TypeNodeLeft:
		return &NodeLeft{}
	case TypeLeaderChanged:
		return &LeaderChanged{}
	case TypeTaskEnqueued:
		return &TaskEnqueued{}
	case TypeTaskRetried:
		return &TaskRetried{}
	case TypeTaskDead:
		return &TaskDead{}
	case TypeReceiptSpoolStale:
		return &ReceiptSpoolStale{}
	}
	return nil
}
