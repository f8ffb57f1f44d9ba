package api

import "time"

// The security runbook's wire types (docs/runbook.md).

// RunbookAction is what every runbook request may carry: why, and the
// incident the action belongs to.
type RunbookAction struct {
	Reason   string `json:"reason,omitempty"`
	Incident string `json:"incident,omitempty"`
}

// FreezeRequest freezes a profile; RevokeLive also revokes its live
// leases.
type FreezeRequest struct {
	RunbookAction
	RevokeLive bool `json:"revoke_live,omitempty"`
}

// RevokeRequest revokes every live lease matching all the fields set.
type RevokeRequest struct {
	RunbookAction
	Tenant       string `json:"tenant,omitempty"`
	Profile      string `json:"profile,omitempty"`
	Session      string `json:"session,omitempty"`
	PolicyDigest string `json:"policy_digest,omitempty"`
}

// BlockRequest blocks (or unblocks) destinations: hosts, *.wildcards,
// IP literals, CIDR prefixes.
type BlockRequest struct {
	RunbookAction
	Destinations []string `json:"destinations"`
}

// MaxListedLeases bounds the lease ids a revocation's answer lists.
const MaxListedLeases = 1000

// RunbookResult is the answer to a freeze, thaw, revocation, block or
// unblock: what changed, and the log index it is in force from (on
// every node once the answer arrives).
type RunbookResult struct {
	Action   string    `json:"action"` // freeze, unfreeze, thaw_canary, revoke, block, unblock
	Profile  string    `json:"profile,omitempty"`
	Revoked  int       `json:"revoked"`
	Leases   []string  `json:"leases,omitempty"` // at most MaxListedLeases
	Changed  []string  `json:"changed,omitempty"`
	By       string    `json:"by"`
	At       time.Time `json:"at"`
	Incident string    `json:"incident,omitempty"`
	Index    uint64    `json:"index"`
	// LedgerIndex is the ledger index of the action's signed governance
	// entry (-1 if it was not appended within 5 s: the action is in
	// force, the entry waits in the node's spool and is appended later).
	LedgerIndex int64 `json:"ledger_index"`
}

// Frozen is a frozen profile. ThawDigest, when set, is the patched
// bundle a restore let through: leases issued under it pass the freeze.
type Frozen struct {
	Profile    string    `json:"profile"`
	By         string    `json:"by"`
	At         time.Time `json:"at"`
	Reason     string    `json:"reason,omitempty"`
	Incident   string    `json:"incident,omitempty"`
	ThawDigest string    `json:"thaw_digest,omitempty"`
}

// Block is a destination blocked at run time.
type Block struct {
	Destination string    `json:"destination"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
	Reason      string    `json:"reason,omitempty"`
	Incident    string    `json:"incident,omitempty"`
}

// IncidentRequest opens an incident. TimeBoxes and Owners set a step's
// time box (seconds from the opening) and owner; unset ones take the
// defaults (docs/runbook.md) and the incident's owner.
type IncidentRequest struct {
	ID         string            `json:"incident_id,omitempty"`
	Title      string            `json:"title"`
	Owner      string            `json:"owner"`
	DetectedAt *time.Time        `json:"detected_at,omitempty"`
	TimeBoxes  map[string]int64  `json:"time_boxes,omitempty"`
	Owners     map[string]string `json:"owners,omitempty"`
}

// StepRequest records a step as done.
type StepRequest struct {
	Detail string `json:"detail,omitempty"`
}

// IncidentStep is one of an incident's steps.
type IncidentStep struct {
	Name    string     `json:"name"`
	Owner   string     `json:"owner"`
	Due     time.Time  `json:"due"`
	DoneAt  *time.Time `json:"done_at,omitempty"`
	DoneBy  string     `json:"done_by,omitempty"`
	Overdue bool       `json:"overdue"`
}

// TimelineEntry is one action of an incident.
type TimelineEntry struct {
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
	Count  int       `json:"count,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Incident is an incident with its steps and timeline.
type Incident struct {
	ID          string     `json:"incident_id"`
	Title       string     `json:"title"`
	Owner       string     `json:"owner"`
	DetectedAt  time.Time  `json:"detected_at"`
	OpenedAt    time.Time  `json:"opened_at"`
	OpenedBy    string     `json:"opened_by"`
	Open        bool       `json:"open"`
	ContainedAt *time.Time `json:"contained_at,omitempty"`
	// TimeToContainmentMs is from detection to the first containment
	// action (freeze, revoke or block) that named the incident.
	TimeToContainmentMs *int64          `json:"time_to_containment_ms,omitempty"`
	ClosedAt            *time.Time      `json:"closed_at,omitempty"`
	Steps               []IncidentStep  `json:"steps"`
	Timeline            []TimelineEntry `json:"timeline"`
	// Dropped counts actions past the timeline's bound.
	Dropped int `json:"dropped,omitempty"`
}

// BlastRadius is what a blast-radius query found in the ledger's
// receipts: every matched receipt below Checkpoint was verified
// (signature, inclusion); Pending counts matches appended after it.
type BlastRadius struct {
	Matched        int            `json:"matched"`
	Verified       int            `json:"verified"`
	VerifiedAhead  int            `json:"verified_ahead"` // of verified: signatures the node's verifier had checked
	Pending        int            `json:"pending"`
	Checkpoint     int64          `json:"checkpoint_size"`
	Tasks          []BlastTask    `json:"tasks"` // by end time, at most 1,000
	Tenants        map[string]int `json:"tenants"`
	Leases         map[string]int `json:"leases"`
	Profiles       map[string]int `json:"profiles"`
	Modules        map[string]int `json:"modules"`
	Destinations   map[string]int `json:"destinations"`
	EgressBytesOut int64          `json:"egress_bytes_out"`
	EgressBytesIn  int64          `json:"egress_bytes_in"`
	Blocked        int            `json:"blocked_attempts"`
	Graph          []BlastEdge    `json:"graph"`
	Ms             int64          `json:"ms"`
}

// BlastTask is one matched task.
type BlastTask struct {
	Index          int64     `json:"index"`
	TaskID         string    `json:"task_id"`
	Tenant         string    `json:"tenant"`
	Lease          string    `json:"lease_id"`
	Profile        string    `json:"profile"`
	Module         string    `json:"module_digest"`
	Outcome        string    `json:"outcome"`
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	Destinations   []string  `json:"destinations"`
	EgressBytesOut int64     `json:"egress_bytes_out"`
	EgressBytesIn  int64     `json:"egress_bytes_in"`
	Blocked        int       `json:"blocked_attempts"`
}

// BlastEdge is one edge of the map tenant → profile → module →
// destination, with how many receipts it carries.
type BlastEdge struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int    `json:"count"`
}
