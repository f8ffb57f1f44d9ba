package obs

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func docExample(t *testing.T, doc, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "<!-- example: "+name+" -->\n```\n")
	if !ok {
		t.Fatalf("docs/observability.md has no example %q", name)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("example %q unterminated", name)
	}
	return block
}

// everyHelper calls each helper once, so every series exists.
func everyHelper(m *Metrics) {
	m.SetBundle([]string{"demo"}, []string{"reader"})
	m.TaskFinished("demo", "reader", "interactive", "ok", 20*time.Millisecond)
	m.SandboxStarted("wasi", time.Millisecond)
	m.Egress("demo", "reader", 512, 0)
	m.CallBlocked("address.private")
	m.LeaseIssued("reader", "interactive")
	m.LeaseRefused("unknown_tenant")
	m.RaftApplied("usage", time.Millisecond)
	m.LeaderChanged(false)
	m.LedgerSize(1)
	m.LedgerBatch(1, time.Millisecond)
	m.ReceiptSpool(1, time.Second)
	m.EventEmitted("tool_call_blocked")
	m.SinkDropped("http", 1)
	wait := Histogram{Bounds: []float64{0.001, 0.01}, Counts: []int64{3, 1, 0}, Sum: 0.012}
	m.SetQueueSource(func() QueueSnapshot {
		return QueueSnapshot{Depth: map[string]int64{"queued": 2}, Classes: map[string]ClassSnapshot{"interactive": {Running: 1, Wait: wait}},
			QueueWait: wait, Retries: 1}
	})
}

// TestDocsMetricTable: the table lists exactly the registered leash_
// metrics, each with its type and labels.
func TestDocsMetricTable(t *testing.T) {
	doc := readDoc(t)
	m := NewMetrics(MetricsConfig{NoRuntime: true})
	everyHelper(m)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(leash_[a-z_]+)` \\| (counter|gauge|histogram) \\|([^|]*)\\|")
	documented := map[string][2]string{}
	for _, mm := range row.FindAllStringSubmatch(doc, -1) {
		documented[mm[1]] = [2]string{mm[2], strings.TrimSpace(mm[3])}
	}
	for _, f := range fams {
		name := f.GetName()
		d, ok := documented[name]
		if !ok {
			t.Errorf("%s is not in docs/observability.md", name)
			continue
		}
		delete(documented, name)
		if typ := strings.ToLower(f.GetType().String()); typ != d[0] {
			t.Errorf("%s: type %s, doc says %s", name, typ, d[0])
		}
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, "`"+l.GetName()+"`")
		}
		var docLabels []string
		for _, l := range strings.Split(d[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				docLabels = append(docLabels, l)
			}
		}
		slices.Sort(labels)
		slices.Sort(docLabels)
		if !slices.Equal(labels, docLabels) {
			t.Errorf("%s: labels %v, doc says %v", name, labels, docLabels)
		}
	}
	for name := range documented {
		t.Errorf("docs/observability.md lists %s, which is not registered", name)
	}
}

// TestDocsMetricsExample: the excerpt is what /metrics shows after the
// helpers record one task.
func TestDocsMetricsExample(t *testing.T) {
	doc := readDoc(t)
	m := NewMetrics(MetricsConfig{NoRuntime: true})
	everyHelper(m)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(strings.TrimSpace(docExample(t, doc, "metrics")), "\n") {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics has no line %q", line)
		}
	}
}

// TestDocsPromQL: every metric and label the example queries use exists.
func TestDocsPromQL(t *testing.T) {
	doc := readDoc(t)
	m := NewMetrics(MetricsConfig{NoRuntime: true})
	everyHelper(m)
	fams, _ := m.Registry().Gather()
	labels := map[string]map[string]bool{}
	for _, f := range fams {
		set := map[string]bool{}
		for _, l := range f.GetMetric()[0].GetLabel() {
			set[l.GetName()] = true
		}
		labels[f.GetName()] = set
		if f.GetType().String() == "HISTOGRAM" {
			set["le"] = true
			labels[f.GetName()+"_bucket"] = set
		}
	}
	q := docExample(t, doc, "promql")
	metric := regexp.MustCompile(`leash_[a-z_]+`)
	by := regexp.MustCompile(`by \(([^)]*)\)`)
	sel := regexp.MustCompile(`\{([a-z_]+)=`)
	for _, line := range strings.Split(strings.TrimSpace(q), "\n") {
		name := metric.FindString(line)
		set, ok := labels[name]
		if !ok {
			t.Errorf("%q: no metric %s", line, name)
			continue
		}
		var used []string
		for _, mm := range by.FindAllStringSubmatch(line, -1) {
			for _, l := range strings.Split(mm[1], ",") {
				used = append(used, strings.TrimSpace(l))
			}
		}
		for _, mm := range sel.FindAllStringSubmatch(line, -1) {
			used = append(used, mm[1])
		}
		for _, l := range used {
			if !set[l] {
				t.Errorf("%q: %s has no label %s", line, name, l)
			}
		}
	}
}

// TestDocsTracingExample: the documented variables turn tracing on.
func TestDocsTracingExample(t *testing.T) {
	doc := readDoc(t)
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(docExample(t, doc, "tracing")), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("line %q", line)
		}
		env[k] = v
		t.Setenv(k, v) // the exporter reads the other variables itself
	}
	if env[EnvEndpoint] == "" {
		t.Fatal("the example does not set " + EnvEndpoint)
	}
	tr, err := NewTracer(context.Background(), TracingConfig{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	if !tr.Enabled() {
		t.Error("the documented setup leaves tracing off")
	}
	for _, s := range []string{SpanAdmission, SpanSandbox, SpanExecution, SpanOutbound, SpanRaftApply} {
		if !strings.Contains(doc, "`"+s+"`") {
			t.Errorf("span %s is not documented", s)
		}
	}
}
