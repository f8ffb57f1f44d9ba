package api

// Capabilities is the answer of GET /v1/capabilities: what a tenant may
// do under the active policy bundle, so that a client (a model) knows
// before it tries. It lists only the profiles the tenant is allowed and
// the intents that map to them.
type Capabilities struct {
	Tenant       string              `json:"tenant"`
	PolicyDigest string              `json:"policy_digest"`
	Intents      []CapabilityIntent  `json:"intents"`
	Profiles     []CapabilityProfile `json:"profiles"`
	Budget       CapabilityBudget    `json:"budget"`
}

// CapabilityIntent maps a task intent to the profile a lease for it gets.
type CapabilityIntent struct {
	Intent  string `json:"intent"`
	Profile string `json:"profile"`
}

// CapabilityProfile is one capability profile: its limits and what its
// code may reach.
type CapabilityProfile struct {
	Name               string           `json:"name"`
	Description        string           `json:"description,omitempty"`
	Limits             CapabilityLimits `json:"limits"`
	MaxLeaseTTLSeconds int64            `json:"max_lease_ttl_seconds"`
	Egress             CapabilityEgress `json:"egress"`
	KVQuotaBytes       int64            `json:"kv_quota_bytes"`
}

// CapabilityLimits are a profile's per-task limits.
type CapabilityLimits struct {
	CPUMs       int64 `json:"cpu_ms"`
	WallMs      int64 `json:"wall_ms"`
	MemoryMB    int64 `json:"memory_mb"`
	OutputBytes int64 `json:"output_bytes"`
	LogBytes    int64 `json:"log_bytes"`
	Subrequests int64 `json:"subrequests"`
}

// CapabilityEgress is a profile's egress allow-list (everything else is
// refused).
type CapabilityEgress struct {
	Allow            []CapabilityAllow `json:"allow"`
	MaxResponseBytes int64             `json:"max_response_bytes"`
}

// CapabilityAllow is one allow rule: a host (or *.suffix), and the ports
// and methods it allows (no ports: 80 and 443; no methods: GET, HEAD,
// POST, PUT, PATCH, DELETE and OPTIONS).
type CapabilityAllow struct {
	Host    string   `json:"host"`
	Ports   []int    `json:"ports,omitempty"`
	Methods []string `json:"methods,omitempty"`
}

// CapabilityBudget is the tenant's daily envelope (UTC day); 0 is no
// limit.
type CapabilityBudget struct {
	CPUMsPerDay       int64 `json:"cpu_ms_per_day"`
	EgressBytesPerDay int64 `json:"egress_bytes_per_day"`
	ToolCallsPerDay   int64 `json:"tool_calls_per_day"`
	TasksPerDay       int64 `json:"tasks_per_day"`
}
