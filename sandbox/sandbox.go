// Package sandbox runs untrusted guest code in wazero: WASI modules under
// the WAGI convention (CGI over WASI) and, through the JS engine, Workers
// modules. A node has one Runtime; every task gets a fresh instance with
// its profile's limits. The sandbox has no I/O of its own: every side
// effect is a host call in the import module "leash" that goes through the
// task's Host (fetch, logs), which checks the lease's profile and meters.
//
// Concurrency: a Runtime is safe for concurrent use; each Run owns its
// instance.
package sandbox

import (
	"context"
	"net/http"
	"time"

	"github.com/leash-dev/leash/fetch"
)

// Kind says how a module runs.
type Kind string

// Module kinds.
const (
	KindWASI Kind = "wasi" // a WASI command module, WAGI convention
	KindJS   Kind = "js"   // a Workers module run by the JS engine
)

// Outcome of a task: "ok", "error" (the guest failed), or
// "terminated:<reason>".
type Outcome string

// Outcomes and termination reasons. The strings are part of the API.
const (
	OutcomeOK    Outcome = "ok"
	OutcomeError Outcome = "error"

	ReasonCPU         = "cpu"
	ReasonWall        = "wall"
	ReasonMemory      = "memory"
	ReasonOutput      = "output"
	ReasonSubrequests = "subrequests"
	ReasonRevoked     = "revoked"
	ReasonBudget      = "budget"
	ReasonShutdown    = "shutdown"
	ReasonCancelled   = "cancelled"
)

// Terminated builds the outcome for a termination reason.
func Terminated(reason string) Outcome { return Outcome("terminated:" + reason) }

// Limits bound one task. Zero values mean "no limit" only where noted;
// the node always fills them from the lease's profile.
type Limits struct {
	CPU         time.Duration // guest CPU time
	Wall        time.Duration // whole task, including host calls
	MemoryBytes int64         // linear memory of the instance
	OutputBytes int64         // response (stdout) bytes
	LogBytes    int64         // log bytes kept; more are dropped with a marker
	Subrequests int64         // outbound fetches
}

// Request is the HTTP request handed to the guest.
type Request struct {
	Method  string
	URL     string // absolute: scheme://host/path?query
	Headers http.Header
	Body    []byte
}

// Response is what the guest answered.
type Response struct {
	Status  int
	Headers http.Header
	Body    []byte
}

// LogLine is one line a guest logged through the host (or wrote to
// stderr).
type LogLine struct {
	Level   string    `json:"level"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// Usage is what a task consumed; it feeds receipts, budgets and metrics.
type Usage struct {
	CPU             time.Duration `json:"-"`
	Wall            time.Duration `json:"-"`
	CPUMs           float64       `json:"cpu_ms"`
	WallMs          float64       `json:"wall_ms"`
	MemoryPeakBytes int64         `json:"memory_peak_bytes"`
	OutputBytes     int64         `json:"output_bytes"`
	LogBytes        int64         `json:"log_bytes"`
	Subrequests     int64         `json:"subrequests"`
	EgressBytesOut  int64         `json:"egress_bytes_out"`
	EgressBytesIn   int64         `json:"egress_bytes_in"`
	// Destinations are the host:port pairs the task reached.
	Destinations []string `json:"destinations,omitempty"`
	// Blocked counts outbound attempts the policy refused.
	Blocked int64 `json:"blocked"`
	// Startup is the time to a ready instance (instantiation), before
	// the guest's own code runs.
	Startup time.Duration `json:"-"`
}

// Host is what a task may ask of the node. The node builds one per task,
// bound to the lease's profile; nil fields mean the capability is absent.
type Host struct {
	// Fetch performs an outbound HTTP request through the egress gateway.
	// Nil: every fetch is refused (default deny).
	Fetch Fetcher
	// KV is the session key-value store (kv.go). Nil: the task has none.
	KV KV
}

// Fetcher performs one outbound request for a guest. Implementations
// check policy and meter; a refusal is a *FetchError naming the clause.
type Fetcher interface {
	Fetch(ctx context.Context, req *FetchRequest) (*FetchResponse, error)
}

// The outbound request types are the leaf package fetch's, shared with
// the egress gateway that implements Fetcher.
type (
	FetchRequest  = fetch.Request
	FetchResponse = fetch.Response
	FetchError    = fetch.Error
)

// Task is one execution request.
type Task struct {
	ID      string
	Module  *Module
	Request Request
	Env     map[string]string // guest-visible variables (the Workers env, or extra WAGI variables)
	// EnvJSON names the variables of Env whose value is JSON text (a
	// client's non-string var): a JS worker sees them parsed, a WASI guest
	// as text.
	EnvJSON     map[string]bool
	Limits      Limits
	Host        Host
	Attempt     int
	Traceparent string
	// ModelTokens are the model tokens the client reported with the task
	// (for events and chargeback); the sandbox does not use them.
	ModelTokens *ModelTokens
	// IdempotencyKey is the client's key of a bulk task (empty for other
	// tasks). With Attempt it lets a guest make its side effects
	// idempotent: delivery of bulk tasks is at least once.
	IdempotencyKey string
}

// Result is what Run returns: always non-nil, whatever happened.
type Result struct {
	Outcome  Outcome
	Error    string // the guest's error or trap message when Outcome is error
	Response Response
	Logs     []LogLine
	Usage    Usage
	Start    time.Time
	End      time.Time
}

// Reason returns the termination reason, or "" when the task was not
// terminated.
func (r *Result) Reason() string {
	const p = "terminated:"
	if len(r.Outcome) > len(p) && string(r.Outcome[:len(p)]) == p {
		return string(r.Outcome[len(p):])
	}
	return ""
}

// ModelTokens are the model tokens a client reports with its task.
type ModelTokens struct {
	Model  string
	Input  int64
	Output int64
}
