// Package mcp serves leash to agents over the Model Context Protocol: the
// tools run_javascript, run_wasm, get_task and list_capabilities, over
// Streamable HTTP (every node's /mcp) and over stdio (leash mcp).
//
// The server is a client of leash's own public HTTP API and of nothing
// else: a tool call issues a lease with the caller's credential (a tenant
// key, or an admin or operator credential naming a tenant), submits the
// task under it and reads the answer, exactly as any other client would,
// so every call yields a lease, a task and its receipt, and every rule of
// the API (roles, tenant scoping, budgets, freezes) holds unchanged. On a
// node the API is called in process (InProcess); leash mcp calls a node
// over HTTP (LEASH_URL).
//
// What a model can act on (a refused lease, a blocked fetch, a limit that
// ended the task, a guest error) is a tool result with isError set and the
// details in its structured content, not a protocol error; protocol
// errors are for malformed JSON-RPC, unknown tools and the like, and the
// SDK answers them with JSON-RPC error codes. docs/mcp.md is the reference.
//
// Concurrency: a Server is safe for concurrent use; Streamable HTTP is
// served stateless, so any node answers any request and a node keeps no
// per-session state.
package mcp
