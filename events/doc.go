// Package events is leash's event stream: CloudEvents 1.0 in structured
// JSON, with the distributed-tracing extension's traceparent and leash's
// correlation extensions (leashtenant, leashlease, leashtask, leashnode).
// docs/events.md is the reference for the types, their data, the sinks,
// the query API and the stream.
//
// Every subsystem emits through an [Emitter]; the node's is a [Bus], which
// stamps each event (id, source, time, node, and the [Scope] of the
// context), encodes it once, and hands it to every [Sink] and live
// subscriber:
//
//	ctx = events.WithScope(ctx, events.Scope{Tenant: t, Lease: l, Task: id, Traceparent: tp})
//	bus.Emit(ctx, events.New(events.ToolCallBlocked{Tool: "fetch", Destination: "10.0.0.1:80", Clause: "address.private"}))
//
// Sinks: [Store] (the node's history in Pebble under x/ev/, queryable,
// with retention), [JSONLines] (stdout or a file) and [HTTPSink]
// (batched POSTs with retries). [Handler] serves GET /v1/events and
// GET /v1/events/stream.
//
// # Concurrency and failure
//
// Emit is safe from any goroutine and never blocks: each sink has a
// bounded queue drained by its own goroutine, and a live subscriber a
// bounded channel. A sink that is slow, dead or failing loses events
// (counted per sink in [Bus.Stats], reported through BusConfig.OnDrop
// and logged at most once per interval), never delays or fails the
// caller. A subscriber that falls behind is cut off. Query runs
// concurrently with writes and retention.
package events
