package obs

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leash-dev/leash/events"
)

func TestHelpersRecord(t *testing.T) {
	m := NewMetrics(MetricsConfig{Node: "node-a", Version: "v1", NoRuntime: true})
	m.SetBundle([]string{"demo", "acme"}, []string{"reader", "api-caller"})

	m.TaskFinished("demo", "reader", "interactive", "ok", 20*time.Millisecond)
	m.TaskFinished("demo", "reader", "interactive", "terminated:cpu", time.Second)
	m.TaskFinished("stranger", "secret-profile", "interactive", "ok", time.Millisecond)
	m.TaskFinished("", "", "weird", "exploded", time.Millisecond)
	m.SandboxStarted("wasi", 3*time.Millisecond)
	m.Egress("acme", "api-caller", 100, 2000)
	m.CallBlocked("address.private")
	m.CallBlocked("address.private")
	m.CallBlocked("Bad Clause!")
	m.LeaseIssued("reader", "bulk")
	m.LeaseRefused("unknown_tenant")
	m.RaftApplied("lease.issue", 4*time.Millisecond)
	m.LeaderChanged(true)
	m.LedgerSize(12345)
	m.LedgerBatch(64, 30*time.Millisecond)
	m.EventEmitted("tool_call_blocked")
	m.EventEmitted("made_up")
	m.SinkDropped("http", 7)

	for _, tc := range []struct {
		got  float64
		want float64
		what string
	}{
		{toFloat64(t, m.tasks.WithLabelValues("demo", "reader", "ok")), 1, "tasks ok"},
		{toFloat64(t, m.tasks.WithLabelValues("demo", "reader", "terminated:cpu")), 1, "tasks cpu"},
		{toFloat64(t, m.tasks.WithLabelValues(Other, Other, "ok")), 1, "unknown tenant and profile fold into other"},
		{toFloat64(t, m.tasks.WithLabelValues(None, None, Other)), 1, "empty and unknown outcome"},
		{toFloat64(t, m.egressBytes.WithLabelValues("acme", "api-caller", "out")), 100, "egress out"},
		{toFloat64(t, m.egressBytes.WithLabelValues("acme", "api-caller", "in")), 2000, "egress in"},
		{toFloat64(t, m.blocked.WithLabelValues("address.private")), 2, "blocked"},
		{toFloat64(t, m.blocked.WithLabelValues(Other)), 1, "malformed clause"},
		{toFloat64(t, m.leasesIssued.WithLabelValues("reader", "bulk")), 1, "leases issued"},
		{toFloat64(t, m.leasesRefused.WithLabelValues("unknown_tenant")), 1, "leases refused"},
		{toFloat64(t, m.leaderChanges), 1, "leader changes"},
		{toFloat64(t, m.isLeader), 1, "is leader"},
		{toFloat64(t, m.ledgerSize), 12345, "ledger size"},
		{toFloat64(t, m.events.WithLabelValues("tool_call_blocked")), 1, "events"},
		{toFloat64(t, m.events.WithLabelValues(Other)), 1, "unknown event type"},
		{toFloat64(t, m.sinkDrops.WithLabelValues("http")), 7, "sink drops"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if n := collectAndCount(m.taskDuration); n != 3 {
		t.Errorf("%d task duration series", n)
	}
}

func TestTenantCap(t *testing.T) {
	m := NewMetrics(MetricsConfig{MaxTenants: 2, MaxProfiles: 1, NoRuntime: true})
	m.SetBundle([]string{"c", "a", "b", "a", ""}, []string{"p2", "p1"})
	for in, want := range map[string]string{"a": "a", "b": "b", "c": Other, "": None, "other": Other} {
		if got := m.TenantLabel(in); got != want {
			t.Errorf("tenant %q → %q, want %q", in, got, want)
		}
	}
	if m.ProfileLabel("p1") != "p1" || m.ProfileLabel("p2") != Other {
		t.Error("profile cap")
	}
	// A new bundle replaces the set.
	m.SetBundle([]string{"c"}, nil)
	if m.TenantLabel("a") != Other || m.TenantLabel("c") != "c" {
		t.Error("bundle change")
	}
}

func TestFreeFormLabelsAreCapped(t *testing.T) {
	m := NewMetrics(MetricsConfig{MaxValues: 3, NoRuntime: true})
	for i := 0; i < 100; i++ {
		m.CallBlocked(fmt.Sprintf("clause.%d", i))
		m.LeaseRefused(strings.Repeat("x", 65)) // too long
	}
	if n := collectAndCount(m.blocked); n != 4 { // three clauses and other
		t.Errorf("%d clause series", n)
	}
	if n := collectAndCount(m.leasesRefused); n != 1 {
		t.Errorf("%d code series", n)
	}
	// Concurrent use is safe.
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				m.RaftApplied(fmt.Sprintf("c%d", i%10), time.Millisecond)
				m.SetBundle([]string{"a"}, []string{"p"})
				m.TaskFinished("a", "p", "bulk", "ok", time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.TaskFinished("a", "b", "c", "d", 0)
	m.SandboxStarted("wasi", 0)
	m.Egress("a", "b", 1, 1)
	m.CallBlocked("x")
	m.LeaseIssued("a", "b")
	m.LeaseRefused("x")
	m.RaftApplied("x", 0)
	m.LeaderChanged(false)
	m.LedgerSize(1)
	m.LedgerBatch(1, 0)
	m.EventEmitted("x")
	m.SinkDropped("x", 1)
	m.SetBundle(nil, nil)
}

func TestMetricsHandler(t *testing.T) {
	m := NewMetrics(MetricsConfig{Node: "node-a", Version: "v1"})
	m.TaskFinished("", "", "bulk", "ok", time.Second)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`leash_tasks_total{outcome="ok",profile="none",tenant="none"} 1`,
		`leash_build_info{node="node-a",version="v1"} 1`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestEventTypesMatch keeps obs's copy of the event types equal to
// events.Types.
func TestEventTypesMatch(t *testing.T) {
	var want, got []string
	for _, ty := range events.Types {
		want = append(want, string(ty))
	}
	for ty := range eventTypes {
		got = append(got, ty)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("obs event types %v, events.Types %v", got, want)
	}
}

// collect gathers what c exports.
func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric, 100)
	go func() { c.Collect(ch); close(ch) }()
	var out []*dto.Metric
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err == nil {
			out = append(out, &d)
		}
	}
	return out
}

func collectAndCount(c prometheus.Collector) int { return len(collect(c)) }

// toFloat64 is the value of a single counter or gauge.
func toFloat64(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ms := collect(c)
	if len(ms) != 1 {
		t.Fatalf("%d metrics", len(ms))
	}
	switch {
	case ms[0].Counter != nil:
		return ms[0].Counter.GetValue()
	case ms[0].Gauge != nil:
		return ms[0].Gauge.GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}
