package obs

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a loopback OTLP/HTTP trace receiver: it decodes the
// protobuf export requests and keeps the spans.
type otlpReceiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	resource map[string]string
	paths    []string
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", 400)
		return
	}
	var ex coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &ex); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	for _, rs := range ex.ResourceSpans {
		r.resource = map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			r.resource[kv.Key] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (r *otlpReceiver) byName() map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]*tracepb.Span{}
	for _, s := range r.spans {
		m[s.Name] = s
	}
	return m
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

// TestTracesReachOTLPReceiver points the exporter at a loopback receiver
// through OTEL_EXPORTER_OTLP_ENDPOINT, makes the spans of one task, and
// checks names, the trace id and parent of the client's traceparent, and
// the parent links between spans.
func TestTracesReachOTLPReceiver(t *testing.T) {
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	t.Setenv(EnvEndpoint, srv.URL)
	t.Setenv(EnvTracesEndpoint, "")

	ctx := context.Background()
	tr, err := NewTracer(ctx, TracingConfig{Node: "node-a", Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracing off with an endpoint set")
	}
	const (
		clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientParent = "00f067aa0ba902b7"
	)
	actx, admission := tr.StartAdmission(ctx, "00-"+clientTrace+"-"+clientParent+"-01")
	if got := Traceparent(actx); got[3:35] != clientTrace || got[36:52] == clientParent {
		t.Errorf("traceparent in the request context: %s", got)
	}
	sctx, sandbox := tr.StartSandbox(actx, "wasi", "sha256:abc")
	End(sandbox, nil)
	_ = sctx
	ectx, exec := tr.StartExecution(actx, "task-1", "demo", "reader")
	octx, out := tr.StartOutbound(ectx, "GET", "api.example")
	h := http.Header{}
	Inject(octx, h)
	End(out, errors.New("connection refused"))
	End(exec, nil)
	_, raft := tr.StartRaftApply(actx, "usage")
	End(raft, nil)
	End(admission, nil)

	sctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(sctx2); err != nil {
		t.Fatal(err)
	}

	spans := rcv.byName()
	for _, name := range []string{SpanAdmission, SpanSandbox, SpanExecution, SpanOutbound, SpanRaftApply} {
		s := spans[name]
		if s == nil {
			t.Fatalf("span %s not exported (got %d spans)", name, len(spans))
		}
		if hexID(s.TraceId) != clientTrace {
			t.Errorf("%s: trace id %s, want the client's", name, hexID(s.TraceId))
		}
	}
	adm := spans[SpanAdmission]
	if hexID(adm.ParentSpanId) != clientParent {
		t.Errorf("admission parent %s, want the client's span %s", hexID(adm.ParentSpanId), clientParent)
	}
	if adm.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("admission kind %v", adm.Kind)
	}
	for child, parent := range map[string]string{
		SpanSandbox:   SpanAdmission,
		SpanExecution: SpanAdmission,
		SpanOutbound:  SpanExecution,
		SpanRaftApply: SpanAdmission,
	} {
		if !bytes.Equal(spans[child].ParentSpanId, spans[parent].SpanId) {
			t.Errorf("%s's parent is not %s", child, parent)
		}
	}
	o := spans[SpanOutbound]
	if o.Kind != tracepb.Span_SPAN_KIND_CLIENT || o.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("outbound span: kind %v status %v", o.Kind, o.Status)
	}
	// The outbound request carries the outbound span as its parent.
	if want := "00-" + clientTrace + "-" + hexID(o.SpanId) + "-01"; h.Get("traceparent") != want {
		t.Errorf("injected %q, want %q", h.Get("traceparent"), want)
	}
	if rcv.resource["service.name"] != "leash" || rcv.resource["service.instance.id"] != "node-a" || rcv.resource["service.version"] != "v-test" {
		t.Errorf("resource %v", rcv.resource)
	}
	for _, p := range rcv.paths {
		if p != "/v1/traces" {
			t.Errorf("posted to %s", p)
		}
	}
}

func TestTracingOffByDefault(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	tr, err := NewTracer(context.Background(), TracingConfig{Getenv: getenv})
	if err != nil || tr.Enabled() {
		t.Fatalf("%v %v", err, tr.Enabled())
	}
	env[EnvEndpoint] = "http://127.0.0.1:1"
	env[EnvSDKDisabled] = "true"
	if tr, _ := NewTracer(context.Background(), TracingConfig{Getenv: getenv}); tr.Enabled() {
		t.Error("OTEL_SDK_DISABLED=true ignored")
	}

	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		c, s := tr.StartAdmission(ctx, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		c, s2 := tr.StartOutbound(c, "GET", "x")
		End(s2, nil)
		End(s, nil)
		if c != ctx {
			t.Fatal("context changed with tracing off")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per span with tracing off", allocs)
	}
	// Off, the request's own traceparent is what goes out.
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := TraceparentOr(ctx, tp); got != tp {
		t.Errorf("got %q", got)
	}
	h := http.Header{}
	Inject(ctx, h)
	if len(h) != 0 {
		t.Errorf("injected %v with no span", h)
	}
	var nilTracer *Tracer
	_, s := nilTracer.StartExecution(ctx, "t", "x", "p")
	End(s, nil)
	if nilTracer.Shutdown(ctx) != nil || nilTracer.ForceFlush(ctx) != nil {
		t.Error("nil tracer")
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"sampled":     {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"not sampled": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
		"zero trace":  {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		"garbage":     {"hello", ""},
		"empty":       {"", ""},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Traceparent(ContextWithTraceparent(context.Background(), tc.in)); got != tc.want {
				t.Errorf("got %q", got)
			}
		})
	}
}

// FuzzTraceparent: any header value either gives no parent or one that
// comes back out unchanged (lower-case).
func FuzzTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
	f.Fuzz(func(t *testing.T, h string) {
		tp := Traceparent(ContextWithTraceparent(context.Background(), h))
		if tp == "" {
			return
		}
		if len(tp) != 55 || tp[:3] != "00-" {
			t.Fatalf("%q → %q", h, tp)
		}
		if again := Traceparent(ContextWithTraceparent(context.Background(), tp)); again != tp {
			t.Fatalf("%q → %q → %q", h, tp, again)
		}
	})
}
