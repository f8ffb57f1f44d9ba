// Package obs is leash's metrics and traces: a Prometheus registry of its
// own with typed helpers ([Metrics]) and OpenTelemetry tracing over
// OTLP/HTTP ([Tracer]). docs/observability.md lists every metric with its
// labels, the rule that keeps label cardinality bounded, and how to turn
// tracing on.
//
// Both are cheap enough for the task path: a helper call is a label
// lookup and an atomic add; with tracing off (no
// OTEL_EXPORTER_OTLP_ENDPOINT) a span helper returns its context as is
// and a no-op span, without allocating. A nil *Metrics and a nil *Tracer
// do nothing, so tests and tools can leave them out.
//
// # Concurrency
//
// Every method of Metrics and Tracer is safe for concurrent use.
// SetBundle swaps the bounded label sets atomically.
package obs
