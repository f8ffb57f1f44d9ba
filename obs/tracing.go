package obs

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName is the instrumentation scope of leash's spans.
const TracerName = "github.com/leash-dev/leash"

// Span names.
const (
	SpanAdmission = "leash.admission"
	SpanSandbox   = "leash.sandbox.start"
	SpanExecution = "leash.execution"
	SpanOutbound  = "leash.outbound"
	SpanRaftApply = "leash.raft.apply"
)

// Environment variables that turn tracing on (either one) or off.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
)

// TracingConfig configures a Tracer.
type TracingConfig struct {
	Node    string // service.instance.id
	Version string // service.version
	// Getenv reads the environment (os.Getenv by default). Tracing is on
	// when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// is set, unless OTEL_SDK_DISABLED=true. The exporter reads the other
	// standard OTEL_EXPORTER_OTLP_* variables (headers, timeout,
	// compression) itself.
	Getenv func(string) string
	// BatchTimeout is the longest a finished span waits for export
	// (default 5s, the SDK's).
	BatchTimeout time.Duration
}

// Tracer makes leash's spans. With tracing off it is a no-op that costs
// a few nanoseconds per span and allocates nothing. Safe for concurrent
// use; a nil *Tracer is a no-op too.
type Tracer struct {
	sdk    *sdktrace.TracerProvider // nil when off
	tracer trace.Tracer
}

var propagator = propagation.TraceContext{}

// noopSpan is what the helpers return with tracing off (an interface
// value made once, so returning it allocates nothing).
var noopSpan trace.Span = noop.Span{}

// NewTracer sets up tracing: OTLP over HTTP (protobuf) to the configured
// endpoint, a batching span processor, the SDK's sampler (parent-based,
// always on, unless OTEL_TRACES_SAMPLER says otherwise), and a resource
// naming the service "leash" with its version and node. It never sets
// the global OpenTelemetry provider. Shutdown flushes and stops it.
func NewTracer(ctx context.Context, cfg TracingConfig) (*Tracer, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") ||
		(getenv(EnvEndpoint) == "" && getenv(EnvTracesEndpoint) == "") {
		return &Tracer{tracer: noop.NewTracerProvider().Tracer(TracerName)}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	return newSDKTracer(exp, cfg)
}

// newSDKTracer builds an exporting Tracer around exp.
func newSDKTracer(exp sdktrace.SpanExporter, cfg TracingConfig) (*Tracer, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "leash"),
		attribute.String("service.version", cfg.Version),
		attribute.String("service.instance.id", cfg.Node),
	))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	var bopts []sdktrace.BatchSpanProcessorOption
	if cfg.BatchTimeout > 0 {
		bopts = append(bopts, sdktrace.WithBatchTimeout(cfg.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, bopts...), sdktrace.WithResource(res))
	return &Tracer{sdk: tp, tracer: tp.Tracer(TracerName)}, nil
}

// Enabled reports whether spans are exported.
func (t *Tracer) Enabled() bool { return t != nil && t.sdk != nil }

// Provider is the tracer provider (no-op when off), for libraries that
// take one.
func (t *Tracer) Provider() trace.TracerProvider {
	if t.Enabled() {
		return t.sdk
	}
	return noop.NewTracerProvider()
}

// ForceFlush exports every finished span now.
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.sdk.ForceFlush(ctx)
}

// Shutdown flushes and stops the exporter. Spans started after it are
// dropped.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

func (t *Tracer) start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// StartAdmission starts the span of an API request (lease check,
// revocation, budget, queueing), as a child of the client's traceparent
// when it is valid, else as a new trace's root. Every other span of the
// request descends from it through the returned context.
func (t *Tracer) StartAdmission(ctx context.Context, traceparent string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noopSpan
	}
	if traceparent != "" {
		ctx = ContextWithTraceparent(ctx, traceparent)
	}
	return t.start(ctx, SpanAdmission, trace.SpanKindServer, attrs...)
}

// StartSandbox starts the span of instantiating a task's sandbox.
func (t *Tracer) StartSandbox(ctx context.Context, kind, moduleDigest string) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noopSpan
	}
	return t.start(ctx, SpanSandbox, trace.SpanKindInternal,
		attribute.String("leash.module.kind", kind), attribute.String("leash.module.digest", moduleDigest))
}

// StartExecution starts the span of running a task's guest code.
func (t *Tracer) StartExecution(ctx context.Context, taskID, tenant, profile string) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noopSpan
	}
	return t.start(ctx, SpanExecution, trace.SpanKindInternal,
		attribute.String("leash.task.id", taskID), attribute.String("leash.tenant", tenant), attribute.String("leash.profile", profile))
}

// StartOutbound starts the client span of one outbound call of a task
// (egress). Put its context on the request with Inject so the
// destination sees this span as its parent.
func (t *Tracer) StartOutbound(ctx context.Context, method, host string) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noopSpan
	}
	return t.start(ctx, SpanOutbound, trace.SpanKindClient,
		attribute.String("http.request.method", method), attribute.String("server.address", host))
}

// StartRaftApply starts the span of submitting one Raft command until it
// is applied.
func (t *Tracer) StartRaftApply(ctx context.Context, command string) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, noopSpan
	}
	return t.start(ctx, SpanRaftApply, trace.SpanKindInternal, attribute.String("leash.raft.command", command))
}

// End ends span, marking it failed when err is not nil. Use it for
// every span the helpers start: defer func() { obs.End(span, err) }().
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// ContextWithTraceparent returns ctx carrying the W3C traceparent as a
// remote parent; an invalid one leaves ctx as it is.
func ContextWithTraceparent(ctx context.Context, traceparent string) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// Traceparent returns the traceparent of ctx's current span (or remote
// parent), or "" when ctx has none.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + flags
}

// TraceparentOr returns Traceparent(ctx), or fallback when ctx has no
// span (tracing off): the node passes the request's traceparent.
func TraceparentOr(ctx context.Context, fallback string) string {
	if tp := Traceparent(ctx); tp != "" {
		return tp
	}
	return fallback
}

// Inject sets the traceparent (and tracestate) of ctx's current span on
// an outbound request's headers. With no span in ctx it leaves h alone.
func Inject(ctx context.Context, h http.Header) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		propagator.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// RecordSandbox records the span of a sandbox's start-up after the fact:
// the sandbox measures it (instantiation, before guest code runs) without
// knowing about tracing.
func (t *Tracer) RecordSandbox(ctx context.Context, kind, moduleDigest string, start time.Time, d time.Duration) {
	t.record(ctx, SpanSandbox, trace.SpanKindInternal, start, d,
		attribute.String("leash.module.kind", kind), attribute.String("leash.module.digest", moduleDigest))
}

// RecordOutbound records the client span of one outbound call after the
// gateway decided and made it.
func (t *Tracer) RecordOutbound(ctx context.Context, method, host string, status int, start time.Time, d time.Duration) {
	t.record(ctx, SpanOutbound, trace.SpanKindClient, start, d,
		attribute.String("http.request.method", method), attribute.String("server.address", host),
		attribute.Int("http.response.status_code", status))
}

func (t *Tracer) record(ctx context.Context, name string, kind trace.SpanKind, start time.Time, d time.Duration, attrs ...attribute.KeyValue) {
	if !t.Enabled() {
		return
	}
	_, span := t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...), trace.WithTimestamp(start))
	span.End(trace.WithTimestamp(start.Add(d)))
}
