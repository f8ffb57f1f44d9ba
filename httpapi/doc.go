// Package httpapi is the surface of leash's public HTTP API: the one route
// table (every route's operation name, method, path and the roles that
// may call it), the middleware that finds out who the caller is and
// enforces those roles before a handler runs, the admission bound on
// request bytes, and the helpers every handler uses to read JSON and to
// answer with a JSON error that has a stable code.
//
// The handlers are bound to the table by operation name (New): a route
// without a handler, or a handler without a route, stops the node at
// start. docs/api.md's endpoint table is checked against Table.
package httpapi
