package httpapi

// Route is one row of the route table: the operation's name (its
// OpenAPI operationId, and the key its handler is bound by), its method
// and path, and who may call it.
type Route struct {
	Op, Method, Path string
	Roles            Roles
}

// Table is every route of the public API, each with the callers it
// accepts. New serves exactly these and enforces the roles before a
// handler runs; docs/api.md's endpoint table is checked against it
// (TestRouteTableIsDocumented), and tests outside walk it for the
// cross-tenant matrix. A route added here without roles, or without a
// handler, stops the node at start.
var Table = []Route{
	{"healthz", "GET", "/healthz", Anyone},
	{"readyz", "GET", "/readyz", Anyone},
	// Metrics carry tenant names (as labels): a credential reads them.
	{"metrics", "GET", "/metrics", Staff},
	{"getKeys", "GET", "/v1/keys", Anyone},
	{"getCluster", "GET", "/v1/cluster", Anyone},
	// The usage dashboard (ui/, docs/budgets.md): static assets only; the
	// page reads its figures from the routes below with the caller's key.
	{"getUI", "GET", "/ui", Anyone},
	{"getUIAsset", "GET", "/ui/{asset}", Anyone},
	{"postSnapshot", "POST", "/v1/cluster/snapshot", Admin},

	{"getPolicy", "GET", "/v1/policy", Staff},
	{"putPolicy", "PUT", "/v1/policy", Admin | Operator},
	// The policy lifecycle (docs/policy.md): changes for admins and
	// operators (an override is an admin's, checked by the handler),
	// reads for staff.
	{"listPolicyEnvs", "GET", "/v1/policy/envs", Staff},
	{"getPolicyEnv", "GET", "/v1/policy/envs/{env}", Staff},
	{"pushPolicy", "PUT", "/v1/policy/envs/{env}", Admin | Operator},
	{"promotePolicy", "POST", "/v1/policy/envs/{env}/promote", Admin | Operator},
	{"rollbackPolicy", "POST", "/v1/policy/envs/{env}/rollback", Admin | Operator},
	{"policyHistory", "GET", "/v1/policy/envs/{env}/history", Staff},
	{"getPolicyBundle", "GET", "/v1/policy/bundles/{digest}", Staff},
	{"getCanary", "GET", "/v1/policy/canary", Staff},
	{"setCanary", "PUT", "/v1/policy/canary", Admin | Operator},
	{"promoteCanary", "POST", "/v1/policy/canary/promote", Admin | Operator},
	{"abortCanary", "POST", "/v1/policy/canary/abort", Admin | Operator},

	{"listTenants", "GET", "/v1/tenants", Staff},

	// Usage and budgets (docs/budgets.md): a tenant's credential reads its
	// own; staff every tenant's; envelopes are set by admins and operators.
	{"getUsage", "GET", "/v1/usage", Staff | Tenant},
	{"getFocus", "GET", "/v1/usage/focus", Staff | Tenant},
	{"getBudget", "GET", "/v1/budgets/{tenant}", Staff | Tenant},
	{"putBudget", "PUT", "/v1/budgets/{tenant}", Admin | Operator},
	{"resetBudget", "DELETE", "/v1/budgets/{tenant}", Admin | Operator},
	// What a tenant may do (intents, profiles, egress allow-lists,
	// budget): its own for a tenant's credential, any for staff.
	{"getCapabilities", "GET", "/v1/capabilities", Staff | Tenant | LeaseHolder},

	{"createAPIKey", "POST", "/v1/apikeys", Admin | Operator},
	{"listAPIKeys", "GET", "/v1/apikeys", Admin | Operator},
	{"revokeAPIKey", "DELETE", "/v1/apikeys/{id}", Admin | Operator},

	{"issueLease", "POST", "/v1/leases", Admin | Operator | Tenant},
	{"getLease", "GET", "/v1/leases/{id}", Staff | Tenant},
	{"revokeLease", "DELETE", "/v1/leases/{id}", Admin | Operator | Tenant},

	// The security runbook (docs/runbook.md): containment and incidents
	// for admins and operators, reads for staff.
	{"freezeProfile", "PUT", "/v1/runbook/frozen/{profile}", Admin | Operator},
	{"unfreezeProfile", "DELETE", "/v1/runbook/frozen/{profile}", Admin | Operator},
	{"listFrozen", "GET", "/v1/runbook/frozen", Staff},
	{"revokeLeases", "POST", "/v1/runbook/revoke", Admin | Operator},
	{"blockDestinations", "POST", "/v1/runbook/blocks", Admin | Operator},
	{"unblockDestinations", "POST", "/v1/runbook/unblock", Admin | Operator},
	{"listBlocks", "GET", "/v1/runbook/blocks", Staff},
	{"openIncident", "POST", "/v1/incidents", Admin | Operator},
	{"listIncidents", "GET", "/v1/incidents", Staff},
	{"getIncident", "GET", "/v1/incidents/{id}", Staff},
	{"completeStep", "POST", "/v1/incidents/{id}/steps/{step}", Admin | Operator},
	{"closeIncident", "POST", "/v1/incidents/{id}/close", Admin | Operator},
	{"blastRadius", "GET", "/v1/runbook/blast-radius", Staff},

	{"putModule", "PUT", "/v1/modules", Admin | Tenant | LeaseHolder},
	{"deleteModule", "DELETE", "/v1/modules/{digest}", Admin | Tenant | LeaseHolder},
	{"submitTask", "POST", "/v1/tasks", LeaseHolder},
	{"listTasks", "GET", "/v1/tasks", Staff | Tenant | LeaseHolder},
	{"getTask", "GET", "/v1/tasks/{id}", Staff | Tenant | LeaseHolder},
	{"cancelTask", "DELETE", "/v1/tasks/{id}", Admin | Operator | Tenant | LeaseHolder},

	// Session state (docs/sessions.md): a tenant's own sessions, a
	// lease's own session, or the admin's with ?tenant=.
	{"listSessionKeys", "GET", "/v1/sessions/{session}/kv", Admin | Tenant | LeaseHolder},
	{"getSessionKey", "GET", "/v1/sessions/{session}/kv/{key}", Admin | Tenant | LeaseHolder},
	{"putSessionKey", "PUT", "/v1/sessions/{session}/kv/{key}", Admin | Tenant | LeaseHolder},
	{"deleteSessionKey", "DELETE", "/v1/sessions/{session}/kv/{key}", Admin | Tenant | LeaseHolder},
	{"endSession", "DELETE", "/v1/sessions/{session}", Admin | Tenant | LeaseHolder},

	{"getCheckpoint", "GET", "/v1/ledger/checkpoint", Anyone},
	{"getReceipt", "GET", "/v1/ledger/receipts/{index}", Staff | Tenant | LeaseHolder},
	{"getExport", "GET", "/v1/ledger/export", Staff},
	{"getConsistency", "GET", "/v1/ledger/consistency", Anyone},

	// Events carry tenant data: a tenant's credential reads its own.
	{"listEvents", "GET", "/v1/events", Staff | Tenant | LeaseHolder},
	{"streamEvents", "GET", "/v1/events/stream", Staff | Tenant | LeaseHolder},

	// The Model Context Protocol (docs/mcp.md): its tools issue leases
	// with the caller's credential, so a caller that may issue leases.
	{"mcp", "POST", "/mcp", Admin | Operator | Tenant},

	{"pprofIndex", "GET", "/debug/pprof/", Admin},
	{"pprofProfile", "GET", "/debug/pprof/profile", Admin},
}
