package ledger

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds on what one receipt and one append may hold. The node keeps its
// receipts inside them (aggregating repeated blocked attempts into one entry
// with a count, and keeping the first MaxDestinations destinations).
const (
	// MaxEnvelopeBytes bounds one canonical envelope, and so one record.
	MaxEnvelopeBytes = 128 << 10
	// MaxBatchRecords bounds the envelopes of one Append call.
	MaxBatchRecords = 4096
	// MaxDestinations bounds Receipt.Destinations.
	MaxDestinations = 256
	// MaxBlockedAttempts bounds Receipt.BlockedAttempts.
	MaxBlockedAttempts = 256
	// MaxFieldBytes bounds every string field of a receipt.
	MaxFieldBytes = 1024
)

// Receipt records one task execution, whatever its outcome. It is the
// payload of a DSSE envelope of type [PayloadType]; the JSON names below are
// the v1 schema and never change meaning (a new schema gets a new payload
// type).
type Receipt struct {
	// LeaseID is the id of the lease the task ran under.
	LeaseID string `json:"lease_id"`
	// Tenant owns the lease.
	Tenant string `json:"tenant"`
	// Profile is the capability profile the lease grants.
	Profile string `json:"profile"`
	// PolicyDigest is the policy bundle digest the lease names, "sha256:<hex>".
	PolicyDigest string `json:"policy_digest"`
	// ModuleDigest is the digest of the module that ran, "sha256:<hex>", or
	// "" when the task ended before a module was resolved.
	ModuleDigest string `json:"module_digest"`
	// TaskID is the id of the task.
	TaskID string `json:"task_id"`
	// RequestSHA256 is the lowercase hex SHA-256 of the request body.
	RequestSHA256 string `json:"request_sha256"`
	// ResponseSHA256 is the lowercase hex SHA-256 of the response body, or
	// "" when no response was produced.
	ResponseSHA256 string `json:"response_sha256"`
	// NodeID is the node that executed the task and signed this receipt.
	NodeID string `json:"node_id"`
	// Start and End bound the execution; RFC 3339 with nanoseconds, UTC.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// CPUMillis is the guest CPU time used.
	CPUMillis int64 `json:"cpu_ms"`
	// MemoryPeakBytes is the guest's peak linear memory.
	MemoryPeakBytes int64 `json:"memory_peak_bytes"`
	// EgressBytesOut and EgressBytesIn count bytes through the egress
	// gateway, request bodies out and response bodies in.
	EgressBytesOut int64 `json:"egress_bytes_out"`
	EgressBytesIn  int64 `json:"egress_bytes_in"`
	// Destinations are the destinations contacted ("host:port"), in first
	// contact order, without repeats.
	Destinations []string `json:"destinations"`
	// BlockedAttempts are the side effects the profile refused.
	BlockedAttempts []BlockedAttempt `json:"blocked_attempts"`
	// Outcome is "ok", "error" or "terminated:<reason>".
	Outcome string `json:"outcome"`
	// Reason is a short human explanation of the outcome, or "".
	Reason string `json:"reason"`
	// Traceparent is the W3C trace context the task ran under.
	Traceparent string `json:"traceparent"`
	// Attempt counts executions of this task, from 1 (bulk retries add one).
	Attempt int `json:"attempt"`
}

// BlockedAttempt is one refused side effect, or several identical ones.
type BlockedAttempt struct {
	// Tool is the host call refused: "fetch", "kv", ….
	Tool string `json:"tool"`
	// Destination is what it tried to reach ("host:port", a KV key prefix…).
	Destination string `json:"destination"`
	// Clause names the policy clause that refused it.
	Clause string `json:"clause"`
	// Count is how many identical attempts this entry stands for (≥ 1).
	Count int `json:"count"`
}

// normalize returns a copy of r in the form that is signed: times in UTC
// and empty lists as [] rather than null.
func (r *Receipt) normalize() Receipt {
	c := *r
	c.Start = c.Start.UTC()
	c.End = c.End.UTC()
	if c.Destinations == nil {
		c.Destinations = []string{}
	}
	if c.BlockedAttempts == nil {
		c.BlockedAttempts = []BlockedAttempt{}
	}
	return c
}

// Validate checks every field. The error is a *VerifyError naming the field.
func (r *Receipt) Validate() error {
	required := []struct{ name, v string }{
		{"lease_id", r.LeaseID},
		{"tenant", r.Tenant},
		{"profile", r.Profile},
		{"policy_digest", r.PolicyDigest},
		{"task_id", r.TaskID},
		{"node_id", r.NodeID},
		{"outcome", r.Outcome},
		{"traceparent", r.Traceparent},
	}
	for _, f := range required {
		if f.v == "" {
			return fieldErr(f.name, "is empty")
		}
	}
	strs := []struct{ name, v string }{
		{"lease_id", r.LeaseID}, {"tenant", r.Tenant}, {"profile", r.Profile},
		{"policy_digest", r.PolicyDigest}, {"module_digest", r.ModuleDigest},
		{"task_id", r.TaskID}, {"request_sha256", r.RequestSHA256},
		{"response_sha256", r.ResponseSHA256}, {"node_id", r.NodeID},
		{"outcome", r.Outcome}, {"reason", r.Reason}, {"traceparent", r.Traceparent},
	}
	for _, f := range strs {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
	}
	if !isDigest(r.PolicyDigest) {
		return fieldErr("policy_digest", fmt.Sprintf("%q is not sha256:<64 lowercase hex>", r.PolicyDigest))
	}
	if r.ModuleDigest != "" && !isDigest(r.ModuleDigest) {
		return fieldErr("module_digest", fmt.Sprintf("%q is not sha256:<64 lowercase hex>", r.ModuleDigest))
	}
	if r.RequestSHA256 != "" && !isHex(r.RequestSHA256, 64) {
		return fieldErr("request_sha256", "is not 64 lowercase hex digits")
	}
	if r.ResponseSHA256 != "" && !isHex(r.ResponseSHA256, 64) {
		return fieldErr("response_sha256", "is not 64 lowercase hex digits")
	}
	if r.Start.IsZero() {
		return fieldErr("start", "is missing")
	}
	if r.End.IsZero() {
		return fieldErr("end", "is missing")
	}
	if r.Start.Location() != time.UTC {
		return fieldErr("start", "is not in UTC")
	}
	if r.End.Location() != time.UTC {
		return fieldErr("end", "is not in UTC")
	}
	if r.End.Before(r.Start) {
		return fieldErr("end", "is before start")
	}
	nums := []struct {
		name string
		v    int64
	}{
		{"cpu_ms", r.CPUMillis}, {"memory_peak_bytes", r.MemoryPeakBytes},
		{"egress_bytes_out", r.EgressBytesOut}, {"egress_bytes_in", r.EgressBytesIn},
	}
	for _, f := range nums {
		if f.v < 0 {
			return fieldErr(f.name, "is negative")
		}
	}
	if len(r.Destinations) > MaxDestinations {
		return fieldErr("destinations", fmt.Sprintf("has %d entries, more than %d", len(r.Destinations), MaxDestinations))
	}
	for i, d := range r.Destinations {
		name := fmt.Sprintf("destinations[%d]", i)
		if d == "" {
			return fieldErr(name, "is empty")
		}
		if err := checkString(name, d); err != nil {
			return err
		}
	}
	if len(r.BlockedAttempts) > MaxBlockedAttempts {
		return fieldErr("blocked_attempts", fmt.Sprintf("has %d entries, more than %d", len(r.BlockedAttempts), MaxBlockedAttempts))
	}
	for i, b := range r.BlockedAttempts {
		prefix := fmt.Sprintf("blocked_attempts[%d].", i)
		if b.Clause == "" {
			return fieldErr(prefix+"clause", "is empty")
		}
		if b.Count < 1 {
			return fieldErr(prefix+"count", "is less than 1")
		}
		for _, f := range []struct{ name, v string }{{"tool", b.Tool}, {"destination", b.Destination}, {"clause", b.Clause}} {
			if err := checkString(prefix+f.name, f.v); err != nil {
				return err
			}
		}
	}
	if !validOutcome(r.Outcome) {
		return fieldErr("outcome", fmt.Sprintf("%q is not ok, error or terminated:<reason>", r.Outcome))
	}
	if !validTraceparent(r.Traceparent) {
		return fieldErr("traceparent", fmt.Sprintf("%q is not a W3C traceparent", r.Traceparent))
	}
	if r.Attempt < 1 {
		return fieldErr("attempt", "is less than 1")
	}
	return nil
}

func checkString(name, v string) error {
	if len(v) > MaxFieldBytes {
		return fieldErr(name, fmt.Sprintf("is %d bytes, more than %d", len(v), MaxFieldBytes))
	}
	if !utf8.ValidString(v) {
		return fieldErr(name, "is not valid UTF-8")
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	return ok && isHex(h, 64)
}

func validOutcome(s string) bool {
	switch s {
	case "ok", "error":
		return true
	}
	reason, ok := strings.CutPrefix(s, "terminated:")
	if !ok || reason == "" {
		return false
	}
	for i := 0; i < len(reason); i++ {
		c := reason[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validTraceparent checks the W3C trace-context version-00 shape:
// 2 hex, '-', 32 hex (not all zero), '-', 16 hex (not all zero), '-', 2 hex.
func validTraceparent(s string) bool {
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if !isHex(s[0:2], 2) || s[0:2] == "ff" || !isHex(s[3:35], 32) || !isHex(s[36:52], 16) || !isHex(s[53:55], 2) {
		return false
	}
	return strings.Trim(s[3:35], "0") != "" && strings.Trim(s[36:52], "0") != ""
}
