// Package policy is the policy bundle: capability profiles, the intent →
// profile map, tenants and the global deny list. A bundle is parsed from
// YAML (unknown keys refused), validated with errors that name the line and
// the field, normalised, and identified by the SHA-256 of its canonical
// JSON form. Policy is decided once, when a lease is issued; every node
// then enforces the named profile verbatim (DESIGN.md, rule 1).
package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/leash-dev/leash/digest"
)

// SchemaVersion is the bundle schema this package reads.
const SchemaVersion = 1

// Bundle is a whole policy bundle.
type Bundle struct {
	Version  int                 `yaml:"version" json:"version"`
	Profiles map[string]*Profile `yaml:"profiles" json:"profiles"`
	Intents  map[string]string   `yaml:"intents" json:"intents"`
	Tenants  map[string]*Tenant  `yaml:"tenants" json:"tenants"`
	// Deny lists hosts, *.wildcards and CIDRs that no profile may reach.
	Deny []string `yaml:"deny,omitempty" json:"deny"`
	// Prices is the price list for chargeback; nil: usage has no cost.
	// Left out of the canonical form when unset, so bundles written
	// before it keep their digest.
	Prices *Prices `yaml:"prices,omitempty" json:"prices,omitempty"`
}

// Profile is a capability profile: what a task under a lease for it may
// use.
type Profile struct {
	Description string   `yaml:"description,omitempty" json:"description,omitempty"`
	Limits      Limits   `yaml:"limits" json:"limits"`
	MaxLeaseTTL Duration `yaml:"max_lease_ttl" json:"max_lease_ttl"`
	Egress      Egress   `yaml:"egress,omitempty" json:"egress"`
	KV          KV       `yaml:"kv,omitempty" json:"kv"`
	// Retry says how bulk tasks under the profile are retried; nil means
	// the defaults of RetryPolicy. A pointer, left out of the canonical
	// form when unset, so bundles written before it keep their digest.
	Retry *Retry `yaml:"retry,omitempty" json:"retry,omitempty"`
}

// Retry is a profile's retry policy for bulk tasks (docs/scheduling.md):
// an attempt whose outcome is in On is run again after an exponential
// backoff with jitter, until MaxAttempts attempts have run.
type Retry struct {
	MaxAttempts int      `yaml:"max_attempts,omitempty" json:"max_attempts"`
	On          []string `yaml:"on,omitempty" json:"on"`
	Backoff     Duration `yaml:"backoff,omitempty" json:"backoff"`
	MaxBackoff  Duration `yaml:"max_backoff,omitempty" json:"max_backoff"`
}

// Retry defaults.
const (
	DefaultMaxAttempts = 3
	DefaultBackoff     = Duration(time.Second)
	DefaultMaxBackoff  = Duration(5 * time.Minute)
	MaxRetryAttempts   = 20
)

// DefaultRetryOn are the outcomes retried when a profile does not say:
// the guest failed, or ran out of wall time (a slow dependency). Memory
// and the other limits are properties of the task and would fail again;
// policy refusals (revoked, budget) never retry.
var DefaultRetryOn = []string{"error", "terminated:wall"}

// RetryableOutcomes are the outcomes a profile may list in retry.on.
var RetryableOutcomes = []string{"error", "terminated:cpu", "terminated:wall", "terminated:memory", "terminated:output", "terminated:subrequests"}

// RetryPolicy is the profile's retry policy with defaults filled in.
func (p *Profile) RetryPolicy() Retry {
	r := Retry{MaxAttempts: DefaultMaxAttempts, On: DefaultRetryOn, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff}
	if p == nil || p.Retry == nil {
		return r
	}
	if p.Retry.MaxAttempts > 0 {
		r.MaxAttempts = p.Retry.MaxAttempts
	}
	if p.Retry.On != nil {
		r.On = p.Retry.On
	}
	if p.Retry.Backoff > 0 {
		r.Backoff = p.Retry.Backoff
	}
	if p.Retry.MaxBackoff > 0 {
		r.MaxBackoff = p.Retry.MaxBackoff
	}
	return r
}

// Retries reports whether an attempt with outcome is retried.
func (r Retry) Retries(outcome string) bool {
	for _, o := range r.On {
		if o == outcome {
			return true
		}
	}
	return false
}

// Limits bound one task. Hitting one ends the task with the limit's name
// as the reason (terminated:cpu, …); logs over LogBytes are truncated.
type Limits struct {
	CPUMs       int64 `yaml:"cpu_ms" json:"cpu_ms"`
	WallMs      int64 `yaml:"wall_ms" json:"wall_ms"`
	MemoryMB    int64 `yaml:"memory_mb" json:"memory_mb"`
	OutputBytes int64 `yaml:"output_bytes" json:"output_bytes"`
	LogBytes    int64 `yaml:"log_bytes" json:"log_bytes"`
	Subrequests int64 `yaml:"subrequests" json:"subrequests"`
}

// CPU is the CPU limit as a duration.
func (l Limits) CPU() time.Duration { return time.Duration(l.CPUMs) * time.Millisecond }

// Wall is the wall-clock limit as a duration.
func (l Limits) Wall() time.Duration { return time.Duration(l.WallMs) * time.Millisecond }

// MemoryBytes is the memory limit in bytes.
func (l Limits) MemoryBytes() int64 { return l.MemoryMB << 20 }

// Egress is what a profile may reach on the network. Default deny: with no
// allow entries, every outbound request is refused.
type Egress struct {
	Allow            []AllowRule `yaml:"allow,omitempty" json:"allow"`
	MaxResponseBytes int64       `yaml:"max_response_bytes,omitempty" json:"max_response_bytes"`
	MaxRedirects     *int        `yaml:"max_redirects,omitempty" json:"max_redirects"`
	Timeouts         Timeouts    `yaml:"timeouts,omitempty" json:"timeouts"`
}

// AllowRule allows one host (exact, or *.suffix for subdomains only).
type AllowRule struct {
	Host           string   `yaml:"host" json:"host"`
	Ports          []int    `yaml:"ports,omitempty" json:"ports,omitempty"`
	Methods        []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	Rate           *Rate    `yaml:"rate,omitempty" json:"rate,omitempty"`
	BytesPerMinute int64    `yaml:"bytes_per_minute,omitempty" json:"bytes_per_minute,omitempty"`
}

// Rate is a token bucket: PerSecond requests refill, Burst at most at once.
type Rate struct {
	PerSecond float64 `yaml:"per_second" json:"per_second"`
	Burst     int     `yaml:"burst,omitempty" json:"burst"`
}

// Timeouts bound each outbound request; all of them also end at the task's
// wall limit.
type Timeouts struct {
	ConnectMs int64 `yaml:"connect_ms,omitempty" json:"connect_ms"`
	HeaderMs  int64 `yaml:"header_ms,omitempty" json:"header_ms"`
	TotalMs   int64 `yaml:"total_ms,omitempty" json:"total_ms"`
}

// KV bounds the session key-value store (docs/sessions.md). A profile
// with no quota grants no session KV. The fields after TTL are left out
// of the canonical form when unset, so bundles written before them keep
// their digest.
type KV struct {
	// QuotaBytes bounds what one session holds (keys, values, metadata).
	QuotaBytes int64 `yaml:"quota_bytes,omitempty" json:"quota_bytes"`
	// TTL is the longest an entry lives: a put's TTL is capped to it, and
	// a put without one gets it. 0: DefaultKVTTL.
	TTL           Duration `yaml:"ttl,omitempty" json:"ttl"`
	MaxKeyBytes   int64    `yaml:"max_key_bytes,omitempty" json:"max_key_bytes,omitempty"`
	MaxValueBytes int64    `yaml:"max_value_bytes,omitempty" json:"max_value_bytes,omitempty"`
	// OpsPerTask bounds the KV calls (get, put, delete, list) of one task.
	OpsPerTask int64 `yaml:"ops_per_task,omitempty" json:"ops_per_task,omitempty"`
	// Binding is the name of the JS binding in env (default SESSION).
	Binding string `yaml:"binding,omitempty" json:"binding,omitempty"`
}

// Session KV defaults and caps (the caps are also the state machine's).
const (
	DefaultKVTTL           = Duration(time.Hour)
	MaxKVTTL               = Duration(30 * 24 * time.Hour)
	DefaultKVMaxValueBytes = 64 << 10
	KVKeyBytesCap          = 512
	KVValueBytesCap        = 1 << 20
	DefaultKVOpsPerTask    = 1000
	KVOpsPerTaskCap        = 100000
	DefaultKVBinding       = "SESSION"
)

// Enabled reports whether the profile grants session KV at all.
func (k KV) Enabled() bool { return k.QuotaBytes > 0 }

// WithDefaults is k with every unset limit at its default.
func (k KV) WithDefaults() KV {
	if k.TTL <= 0 {
		k.TTL = DefaultKVTTL
	}
	if k.MaxKeyBytes <= 0 {
		k.MaxKeyBytes = KVKeyBytesCap
	}
	if k.MaxValueBytes <= 0 {
		k.MaxValueBytes = DefaultKVMaxValueBytes
	}
	if k.OpsPerTask <= 0 {
		k.OpsPerTask = DefaultKVOpsPerTask
	}
	if k.Binding == "" {
		k.Binding = DefaultKVBinding
	}
	return k
}

// Tenant is who may hold leases, for which profiles, within which budget.
type Tenant struct {
	Profiles []string `yaml:"profiles" json:"profiles"`
	Weight   int      `yaml:"weight,omitempty" json:"weight"`
	Budget   Budget   `yaml:"budget,omitempty" json:"budget"`
	// Modules bounds what the tenant stores on each node (omitzero: a
	// bundle without it keeps its canonical form and digest).
	Modules ModuleQuota `yaml:"modules,omitempty" json:"modules,omitzero"`
	// Environments are the policy environments (dev, stage, prod) the
	// tenant may issue leases in; unset means prod only. Left out of the
	// canonical form when unset, so bundles written before it keep their
	// digest.
	Environments []string `yaml:"environments,omitempty" json:"environments,omitempty"`
	// Retention says how long the cluster keeps the tenant's history
	// (docs/sessions.md). Left out of the canonical form when unset.
	Retention *Retention `yaml:"retention,omitempty" json:"retention,omitempty"`
}

// Retention is a tenant's history retention.
type Retention struct {
	// Tasks: how long a finished task's record stays readable on every
	// node (GET /v1/tasks/{id}). 0: DefaultTaskRetention.
	Tasks Duration `yaml:"tasks,omitempty" json:"tasks,omitempty"`
}

// Task history retention: the default and the bounds.
const (
	DefaultTaskRetention = Duration(7 * 24 * time.Hour)
	MinTaskRetention     = Duration(time.Hour)
	MaxTaskRetention     = Duration(365 * 24 * time.Hour)
)

// TaskRetention is how long the tenant's task records are kept.
func (t *Tenant) TaskRetention() time.Duration {
	if t == nil || t.Retention == nil || t.Retention.Tasks <= 0 {
		return DefaultTaskRetention.D()
	}
	return t.Retention.Tasks.D()
}

// Policy environments, in promotion order.
const (
	EnvDev   = "dev"
	EnvStage = "stage"
	EnvProd  = "prod"
)

// Environments lists the environments in promotion order.
var Environments = []string{EnvDev, EnvStage, EnvProd}

// ValidEnv reports whether e names an environment.
func ValidEnv(e string) bool { return e == EnvDev || e == EnvStage || e == EnvProd }

// MayUse reports whether the tenant may issue leases in env: the
// environments it lists, or prod alone when it lists none.
func (t *Tenant) MayUse(env string) bool {
	if len(t.Environments) == 0 {
		return env == EnvProd
	}
	for _, e := range t.Environments {
		if e == env {
			return true
		}
	}
	return false
}

// ModuleQuota bounds a tenant's stored modules on one node; a zero field
// takes its default.
type ModuleQuota struct {
	MaxBytes int64 `yaml:"max_bytes,omitempty" json:"max_bytes,omitzero"`
	MaxCount int64 `yaml:"max_count,omitempty" json:"max_count,omitzero"`
}

// Module quota defaults, per tenant per node.
const (
	DefaultModuleBytes = 256 << 20
	DefaultModuleCount = 1000
)

// Bytes is the quota's byte bound, its default when unset.
func (q ModuleQuota) Bytes() int64 {
	if q.MaxBytes > 0 {
		return q.MaxBytes
	}
	return DefaultModuleBytes
}

// Count is the quota's bound on modules, its default when unset.
func (q ModuleQuota) Count() int64 {
	if q.MaxCount > 0 {
		return q.MaxCount
	}
	return DefaultModuleCount
}

// Budget is a tenant's daily envelope (UTC day); zero means unlimited.
type Budget struct {
	CPUMsPerDay       int64 `yaml:"cpu_ms_per_day,omitempty" json:"cpu_ms_per_day"`
	EgressBytesPerDay int64 `yaml:"egress_bytes_per_day,omitempty" json:"egress_bytes_per_day"`
	ToolCallsPerDay   int64 `yaml:"tool_calls_per_day,omitempty" json:"tool_calls_per_day"`
	TasksPerDay       int64 `yaml:"tasks_per_day,omitempty" json:"tasks_per_day"`
}

// Duration is a time.Duration written as a Go duration string ("15m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the canonical duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalText reads a duration string (used by the YAML decoder).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("not a duration such as 30s or 15m: %q", b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a duration string and names the line of a bad one.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// MarshalText writes a duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Canonical returns the canonical JSON form of a normalised bundle: the
// bytes its digest is taken over and the bytes replicated through Raft.
// encoding/json writes map keys sorted, so equal bundles give equal bytes.
func (b *Bundle) Canonical() []byte {
	out, err := json.Marshal(b)
	if err != nil {
		// Every field is a plain value; this cannot fail.
		panic(fmt.Sprintf("policy: canonical form: %v", err))
	}
	return out
}

// Digest is "sha256:<hex>" of the canonical form.
func (b *Bundle) Digest() string { return DigestOf(b.Canonical()) }

// DigestOf names canonical bytes.
func DigestOf(canonical []byte) string { return digest.Of(canonical) }

// FromCanonical decodes a bundle replicated in canonical form. It
// re-validates: replicated bytes are trusted no more than a file.
func FromCanonical(b []byte) (*Bundle, error) {
	var bundle Bundle
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bundle); err != nil {
		return nil, fmt.Errorf("decode canonical bundle: %w", err)
	}
	if errs := bundle.validate(nil); len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	bundle.normalize()
	return &bundle, nil
}

// ProfileFor resolves a lease request: an explicit profile, or the profile
// an intent maps to. It reports which refusal applies when neither works.
func (b *Bundle) ProfileFor(intent, profile string) (string, *Profile, error) {
	if profile == "" {
		if intent == "" {
			return "", nil, ErrUnknownIntent
		}
		p, ok := b.Intents[intent]
		if !ok {
			return "", nil, ErrUnknownIntent
		}
		profile = p
	}
	p, ok := b.Profiles[profile]
	if !ok {
		return "", nil, ErrUnknownProfile
	}
	return profile, p, nil
}

// Allows reports whether tenant may hold leases for profile.
func (t *Tenant) Allows(profile string) bool {
	for _, p := range t.Profiles {
		if p == profile {
			return true
		}
	}
	return false
}
