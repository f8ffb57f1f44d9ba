package events

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"time"
)

// SpecVersion is the CloudEvents version of every event.
const SpecVersion = "1.0"

// ContentType is the datacontenttype of every event: data is a JSON object.
const ContentType = "application/json"

// Type is an event's CloudEvents type attribute. The values are the names
// of DESIGN.md and issue 5, exactly, without a reverse-DNS prefix (the
// source attribute names the producer; docs/events.md says why).
type Type string

// Every event type leash emits. docs/events.md lists them with their data.
const (
	TypeSandboxIssued       Type = "sandbox_issued"
	TypeToolCallAttempted   Type = "tool_call_attempted"
	TypeToolCallBlocked     Type = "tool_call_blocked"
	TypeExecutionCompleted  Type = "execution_completed"
	TypeExecutionTerminated Type = "execution_terminated"
	TypeBudgetWarning       Type = "budget_warning"
	TypeBudgetExhausted     Type = "budget_exhausted"
	TypeBudgetChanged       Type = "budget_changed"
	TypeLeaseRevoked        Type = "lease_revoked"
	TypeProfileFrozen       Type = "profile_frozen"
	TypeDestinationBlocked  Type = "destination_blocked"
	TypeIncidentStepOverdue Type = "incident_step_overdue"
	TypePolicyPromoted      Type = "policy_promoted"
	TypeNodeJoined          Type = "node_joined"
	TypeNodeLeft            Type = "node_left"
	TypeLeaderChanged       Type = "leader_changed"
	TypeTaskEnqueued        Type = "task_enqueued"
	TypeTaskRetried         Type = "task_retried"
	TypeTaskDead            Type = "task_dead"
	TypeReceiptSpoolStale   Type = "receipt_spool_stale"
)

// Types lists every type, in the order docs/events.md gives them.
var Types = []Type{
	TypeSandboxIssued, TypeToolCallAttempted, TypeToolCallBlocked,
	TypeExecutionCompleted, TypeExecutionTerminated,
	TypeBudgetWarning, TypeBudgetExhausted, TypeBudgetChanged,
	TypeLeaseRevoked, TypeProfileFrozen, TypeDestinationBlocked, TypeIncidentStepOverdue, TypePolicyPromoted,
	TypeNodeJoined, TypeNodeLeft, TypeLeaderChanged,
	TypeTaskEnqueued, TypeTaskRetried, TypeTaskDead,
	TypeReceiptSpoolStale,
}

var knownTypes = func() map[Type]bool {
	m := make(map[Type]bool, len(Types))
	for _, t := range Types {
		m[t] = true
	}
	return m
}()

// Known reports whether t is one of Types.
func (t Type) Known() bool { return knownTypes[t] }

// Extension attribute names. CloudEvents attribute names are lower-case
// ASCII letters and digits only, at most 20 characters; the leash prefix
// keeps them apart from other producers' extensions.
const (
	AttrTraceparent = "traceparent" // distributed-tracing extension
	AttrTenant      = "leashtenant"
	AttrLease       = "leashlease"
	AttrTask        = "leashtask"
	AttrNode        = "leashnode"
)

// Event is one CloudEvent in the structured JSON format: the envelope,
// the traceparent of the distributed-tracing extension, leash's
// correlation extensions, and the type's data as a JSON object.
//
// Build one with [New]; the [Bus] fills ID, Source, Time, the
// correlation attributes it finds in the context ([WithScope]) and Node.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            Type            `json:"type"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Traceparent     string          `json:"traceparent,omitempty"`
	Tenant          string          `json:"leashtenant,omitempty"`
	Lease           string          `json:"leashlease,omitempty"`
	Task            string          `json:"leashtask,omitempty"`
	Node            string          `json:"leashnode,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// Data is the payload of one event type: each type's struct below.
type Data interface {
	EventType() Type
}

// New builds an event of d's type carrying d as its data. Tenant, lease,
// task and traceparent come from the context when the event is emitted
// (see [WithScope]); set them on the result to override.
func New(d Data) Event {
	raw, err := json.Marshal(d)
	if err != nil {
		// The data types below always marshal; keep the event, say why
		// its data is missing.
		raw, _ = json.Marshal(map[string]string{"encode_error": err.Error()})
	}
	return Event{Type: d.EventType(), Data: raw}
}

// DecodeData decodes e's data into v (a pointer to the type's struct).
func (e Event) DecodeData(v any) error { return json.Unmarshal(e.Data, v) }

// TraceID returns the trace id of e's traceparent (32 hex digits), or "".
func (e Event) TraceID() string { return traceIDOf(e.Traceparent) }

// traceIDOf returns the trace id of a well-formed version-00 traceparent.
func traceIDOf(tp string) string {
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	id := tp[3:35]
	if !isTraceID(id) {
		return ""
	}
	return id
}

// isTraceID: 32 lower-case hex digits, not all zero.
func isTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	zero := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return false
		}
		if c != '0' {
			zero = false
		}
	}
	return !zero
}

// Scope is the correlation a context carries into every event emitted
// under it: the node sets it once per request or task.
type Scope struct {
	Tenant      string
	Lease       string
	Task        string
	Traceparent string
}

type scopeKey struct{}

// WithScope returns ctx carrying s. Fields left empty in s keep the value
// of an enclosing scope, so a task can add its id to a lease's scope.
func WithScope(ctx context.Context, s Scope) context.Context {
	if prev, ok := ctx.Value(scopeKey{}).(Scope); ok {
		if s.Tenant == "" {
			s.Tenant = prev.Tenant
		}
		if s.Lease == "" {
			s.Lease = prev.Lease
		}
		if s.Task == "" {
			s.Task = prev.Task
		}
		if s.Traceparent == "" {
			s.Traceparent = prev.Traceparent
		}
	}
	return context.WithValue(ctx, scopeKey{}, s)
}

// ScopeFrom returns the scope of ctx (zero when none).
func ScopeFrom(ctx context.Context) Scope {
	s, _ := ctx.Value(scopeKey{}).(Scope)
	return s
}

// Emitter is what every subsystem emits through. Emit never blocks on a
// sink and never fails: a full queue or a dead sink drops the event for
// that sink and counts it.
type Emitter interface {
	Emit(ctx context.Context, e Event)
}

// EmitterFunc adapts a function to Emitter (handy in tests).
type EmitterFunc func(ctx context.Context, e Event)

// Emit calls f.
func (f EmitterFunc) Emit(ctx context.Context, e Event) { f(ctx, e) }

// Discard is an Emitter that drops every event.
var Discard Emitter = EmitterFunc(func(context.Context, Event) {})

// eventKey is an event's 16-byte storage and ordering key: the event time
// in Unix nanoseconds, then a sequence, both big-endian. The ID of an
// event made by a Bus is the hex of this key, so the two convert.
type eventKey [16]byte

func (k eventKey) String() string { return hex.EncodeToString(k[:]) }

func parseEventKey(id string) (eventKey, bool) {
	var k eventKey
	if len(id) != 32 {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(id)); err != nil {
		return k, false
	}
	return k, true
}
