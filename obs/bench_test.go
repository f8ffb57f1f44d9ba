package obs

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkTaskFinished: the helper a node calls once per task (a counter
// and a histogram, tenant and profile bounded).
func BenchmarkTaskFinished(b *testing.B) {
	m := NewMetrics(MetricsConfig{NoRuntime: true})
	m.SetBundle([]string{"demo", "acme"}, []string{"reader", "api-caller"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.TaskFinished("demo", "reader", "interactive", "ok", 20*time.Millisecond)
		}
	})
}

// BenchmarkCallBlocked: a counter with a free-form (capped) label.
func BenchmarkCallBlocked(b *testing.B) {
	m := NewMetrics(MetricsConfig{NoRuntime: true})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.CallBlocked("address.private")
	}
}

// BenchmarkEgress: two counters per call.
func BenchmarkEgress(b *testing.B) {
	m := NewMetrics(MetricsConfig{NoRuntime: true})
	m.SetBundle([]string{"demo"}, []string{"reader"})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Egress("demo", "reader", 512, 4096)
	}
}

const benchTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// BenchmarkSpansOff: a task's spans (admission, execution, one outbound
// call) with tracing off.
func BenchmarkSpansOff(b *testing.B) {
	tr, _ := NewTracer(context.Background(), TracingConfig{Getenv: func(string) string { return "" }})
	benchSpans(b, tr)
}

// BenchmarkSpansOn: the same with the SDK recording and a batch exporter
// that discards.
func BenchmarkSpansOn(b *testing.B) {
	tr, err := newSDKTracer(discard{}, TracingConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	benchSpans(b, tr)
}

func benchSpans(b *testing.B, tr *Tracer) {
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		actx, a := tr.StartAdmission(ctx, benchTP)
		ectx, e := tr.StartExecution(actx, "task", "demo", "reader")
		_, o := tr.StartOutbound(ectx, "GET", "api.example")
		End(o, nil)
		End(e, nil)
		End(a, nil)
	}
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
