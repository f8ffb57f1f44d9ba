package api

import "time"

// The policy lifecycle's API shapes (docs/policy.md, "Lifecycle").

// PolicyEnv is one environment: the digest it points at (prod: its
// stable digest), its version (changes so far; a change may name it as
// if_version), the digests a rollback returns to (most recent last) and,
// for prod, the canary.
type PolicyEnv struct {
	Env      string      `json:"env"`
	Digest   string      `json:"digest"`
	Version  uint64      `json:"version"`
	Previous []string    `json:"previous"`
	Canary   *CanaryInfo `json:"canary,omitempty"`
}

// PolicyEnvs is the answer of GET /v1/policy/envs.
type PolicyEnvs struct {
	Envs []PolicyEnv `json:"envs"`
}

// CanaryInfo is prod's canary.
type CanaryInfo struct {
	Digest        string    `json:"digest"`
	Percent       int       `json:"percent"`
	AbortAbove    int       `json:"abort_above"`
	WindowSeconds int       `json:"window_seconds"`
	MinTasks      int       `json:"min_tasks"`
	By            string    `json:"by"`
	At            time.Time `json:"at"`
	Reason        string    `json:"reason,omitempty"`
}

// PolicyChange is one entry of an environment's history, and the answer
// of every change.
type PolicyChange struct {
	Env           string    `json:"env"`
	Seq           uint64    `json:"seq"`
	Action        string    `json:"action"`
	Digest        string    `json:"digest"`
	Previous      string    `json:"previous,omitempty"`
	From          string    `json:"from,omitempty"`
	CanaryDigest  string    `json:"canary_digest,omitempty"`
	CanaryPercent int       `json:"canary_percent,omitempty"`
	Override      bool      `json:"override,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	By            string    `json:"by"`
	At            time.Time `json:"at"`
}

// PolicyHistory is the answer of GET /v1/policy/envs/{env}/history.
type PolicyHistory struct {
	Env     string         `json:"env"`
	Changes []PolicyChange `json:"changes"`
	// NextBefore, when set, pages on: pass it as before.
	NextBefore uint64 `json:"next_before,omitempty"`
}

// PolicyBundle is a stored bundle: GET /v1/policy/bundles/{digest}.
type PolicyBundle struct {
	Digest    string    `json:"digest"`
	Canonical string    `json:"canonical"`
	Source    string    `json:"source"`
	By        string    `json:"by"`
	At        time.Time `json:"at"`
}

// PromoteRequest is the body of POST /v1/policy/envs/{env}/promote.
type PromoteRequest struct {
	From      string  `json:"from,omitempty"`
	Digest    string  `json:"digest,omitempty"`
	Override  bool    `json:"override,omitempty"`
	Reason    string  `json:"reason,omitempty"`
	IfVersion *uint64 `json:"if_version,omitempty"`
}

// RollbackRequest is the body of a rollback, a canary promotion or a
// canary abort.
type RollbackRequest struct {
	Reason    string  `json:"reason,omitempty"`
	IfVersion *uint64 `json:"if_version,omitempty"`
}

// CanaryRequest is the body of PUT /v1/policy/canary.
type CanaryRequest struct {
	Digest        string  `json:"digest,omitempty"`
	Percent       int     `json:"percent"`
	AbortAbove    int     `json:"abort_above,omitempty"`
	WindowSeconds int     `json:"window_seconds,omitempty"`
	MinTasks      int     `json:"min_tasks,omitempty"`
	Override      bool    `json:"override,omitempty"`
	Reason        string  `json:"reason,omitempty"`
	IfVersion     *uint64 `json:"if_version,omitempty"`
}

// CanaryStatus is the answer of GET /v1/policy/canary.
type CanaryStatus struct {
	Stable string       `json:"stable"`
	Canary *CanaryInfo  `json:"canary"`
	Health CanaryHealth `json:"health"`
}

// CanaryHealth compares the outcomes of tasks under canary leases with
// those under stable ones over a window, as one node saw them.
type CanaryHealth struct {
	Node          string     `json:"node"`
	WindowSeconds int        `json:"window_seconds"`
	Stable        CanarySide `json:"stable"`
	Canary        CanarySide `json:"canary"`
}

// CanarySide is one side of the comparison: tasks, bad outcomes (any but
// ok), their share, outcomes by name and blocked calls by clause.
type CanarySide struct {
	Tasks      int64            `json:"tasks"`
	Bad        int64            `json:"bad"`
	BadPercent float64          `json:"bad_percent"`
	Outcomes   map[string]int64 `json:"outcomes"`
	Blocked    map[string]int64 `json:"blocked"`
}
