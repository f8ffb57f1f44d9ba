package obs

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every leash metric.
const Namespace = "leash"

// Label values that stand for many.
const (
	// Other is the value of a label whose real value is not in its
	// bounded set (a tenant outside the bundle, an unexpected code).
	Other = "other"
	// None is the value of a tenant or profile label when there is none.
	None = "none"
)

// MetricsConfig configures Metrics.
type MetricsConfig struct {
	Node    string // the leash_build_info node label
	Version string // the leash_build_info version label
	// MaxTenants caps the tenant label values (default 50); MaxProfiles
	// the profile label values (default 100). See SetBundle.
	MaxTenants  int
	MaxProfiles int
	// MaxValues caps every other free-form label (clause, code, command,
	// kind, sink): the first MaxValues distinct values are kept, later
	// ones count as "other" (default 64).
	MaxValues int
	// NoRuntime leaves out the Go and process collectors (tests).
	NoRuntime bool
}

// Metrics is the node's Prometheus registry (not the global one) and the
// typed helpers the node calls. Every method is safe for concurrent use,
// and a nil *Metrics does nothing, so code paths need no checks.
type Metrics struct {
	reg *prometheus.Registry

	tenants  atomic.Pointer[map[string]bool]
	profiles atomic.Pointer[map[string]bool]
	maxT     int
	maxP     int

	clauses, codes, commands, kinds, sinks *boundedSet

	tasks         *prometheus.CounterVec
	taskDuration  *prometheus.HistogramVec
	sandboxStart  *prometheus.HistogramVec
	egressBytes   *prometheus.CounterVec
	blocked       *prometheus.CounterVec
	leasesIssued  *prometheus.CounterVec
	leasesRefused *prometheus.CounterVec
	raftApply     *prometheus.HistogramVec
	leaderChanges prometheus.Counter
	isLeader      prometheus.Gauge
	ledgerSize    prometheus.Gauge
	ledgerBatch   prometheus.Observer
	ledgerBatchN  prometheus.Observer
	spoolDepth    prometheus.Gauge
	spoolOldest   prometheus.Gauge
	events        *prometheus.CounterVec
	sinkDrops     *prometheus.CounterVec
	buildInfo     *prometheus.GaugeVec
}

// Bucket layouts, in seconds.
var (
	taskBuckets    = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	startBuckets   = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	applyBuckets   = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	batchNBuckets  = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000}
	ledgerBBuckets = applyBuckets
)

// NewMetrics builds the registry with every leash metric registered.
func NewMetrics(cfg MetricsConfig) *Metrics {
	if cfg.MaxTenants <= 0 {
		cfg.MaxTenants = 50
	}
	if cfg.MaxProfiles <= 0 {
		cfg.MaxProfiles = 100
	}
	if cfg.MaxValues <= 0 {
		cfg.MaxValues = 64
	}
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		maxT: cfg.MaxTenants, maxP: cfg.MaxProfiles,
		clauses: newBoundedSet(cfg.MaxValues), codes: newBoundedSet(cfg.MaxValues),
		commands: newBoundedSet(cfg.MaxValues), kinds: newBoundedSet(cfg.MaxValues),
		sinks: newBoundedSet(cfg.MaxValues),
	}
	m.tenants.Store(&map[string]bool{})
	m.profiles.Store(&map[string]bool{})

	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
		m.reg.MustRegister(h)
		return h
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}

	m.tasks = counter("tasks_total", "Tasks finished, by tenant, profile and outcome (ok, error, terminated:<reason>).", "tenant", "profile", "outcome")
	m.taskDuration = histogram("task_duration_seconds", "Wall time of finished tasks, from admission to result.", taskBuckets, "profile", "class")
	m.sandboxStart = histogram("sandbox_start_seconds", "Time to instantiate a task's sandbox, by module kind (wasi, js).", startBuckets, "kind")
	m.egressBytes = counter("egress_bytes_total", "Bytes through the egress gateway, by tenant, profile and direction (out, in).", "tenant", "profile", "direction")
	m.blocked = counter("blocked_calls_total", "Host calls refused, by policy clause.", "clause")
	m.leasesIssued = counter("leases_issued_total", "Leases issued, by profile and class.", "profile", "class")
	m.leasesRefused = counter("leases_refused_total", "Lease requests refused, by error code.", "code")
	m.raftApply = histogram("raft_apply_seconds", "Time from submitting a Raft command to its application, by command.", applyBuckets, "command")
	m.leaderChanges = counter("raft_leader_changes_total", "Raft leader changes this node observed.").WithLabelValues()
	m.isLeader = gauge("raft_is_leader", "1 when this node is the Raft leader, else 0.")
	m.ledgerSize = gauge("ledger_receipts", "Receipts in the replicated ledger (its tree size).")
	m.ledgerBatch = histogram("ledger_batch_seconds", "Time to append one batch of receipts to the ledger through Raft.", ledgerBBuckets).WithLabelValues()
	m.ledgerBatchN = histogram("ledger_batch_receipts", "Receipts per ledger batch.", batchNBuckets).WithLabelValues()
	m.spoolDepth = gauge("receipt_spool_receipts", "Signed receipts waiting in this node's spool for the ledger.")
	m.spoolOldest = gauge("receipt_spool_oldest_seconds", "Age of the oldest receipt in this node's spool (0: empty).")
	m.events = counter("events_emitted_total", "Events emitted, by type.", "type")
	m.sinkDrops = counter("event_sink_dropped_total", "Events a sink lost (queue full, write failed, or shutdown), by sink.", "sink")
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info", Help: "Always 1; the labels name the version and node."}, []string{"version", "node"})
	m.reg.MustRegister(m.buildInfo)
	m.buildInfo.WithLabelValues(cfg.Version, cfg.Node).Set(1)
	if !cfg.NoRuntime {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is the node's registry, for anything else to register.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves GET /metrics in the Prometheus text format (or
// OpenMetrics when asked), at most 4 scrapes at once.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
		EnableOpenMetrics:   true,
	})
}

// SetBundle sets the tenants and profiles that get their own label value:
// those of the active policy bundle, at most MaxTenants and MaxProfiles
// (the first in sorted order). Any other tenant or profile is counted as
// "other"; an empty one as "none". Call it when the bundle changes.
func (m *Metrics) SetBundle(tenants, profiles []string) {
	if m == nil {
		return
	}
	m.tenants.Store(capSet(tenants, m.maxT))
	m.profiles.Store(capSet(profiles, m.maxP))
}

func capSet(names []string, max int) *map[string]bool {
	s := slices.Clone(names)
	slices.Sort(s)
	s = slices.Compact(s)
	set := make(map[string]bool, min(len(s), max))
	for _, n := range s {
		if len(set) == max {
			break
		}
		if n != "" && n != Other && n != None {
			set[n] = true
		}
	}
	return &set
}

// TenantLabel is the tenant label value for t.
func (m *Metrics) TenantLabel(t string) string { return bounded(*m.tenants.Load(), t) }

// ProfileLabel is the profile label value for p.
func (m *Metrics) ProfileLabel(p string) string { return bounded(*m.profiles.Load(), p) }

func bounded(set map[string]bool, v string) string {
	switch {
	case v == "":
		return None
	case set[v]:
		return v
	}
	return Other
}

// Known outcomes and classes; anything else is "other".
var (
	outcomes = map[string]bool{
		"ok": true, "error": true,
		"terminated:cpu": true, "terminated:wall": true, "terminated:memory": true,
		"terminated:output": true, "terminated:subrequests": true, "terminated:revoked": true,
		"terminated:budget": true, "terminated:shutdown": true, "terminated:cancelled": true,
	}
	classes = map[string]bool{"interactive": true, "bulk": true}
)

func oneOf(set map[string]bool, v string) string {
	if set[v] {
		return v
	}
	return Other
}

// TaskFinished counts a finished task and observes its duration.
func (m *Metrics) TaskFinished(tenant, profile, class, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	p := m.ProfileLabel(profile)
	m.tasks.WithLabelValues(m.TenantLabel(tenant), p, oneOf(outcomes, outcome)).Inc()
	m.taskDuration.WithLabelValues(p, oneOf(classes, class)).Observe(d.Seconds())
}

// SandboxStarted observes the time to instantiate a sandbox of a kind
// (wasi, js).
func (m *Metrics) SandboxStarted(kind string, d time.Duration) {
	if m == nil {
		return
	}
	m.sandboxStart.WithLabelValues(m.kinds.label(kind)).Observe(d.Seconds())
}

// Egress counts bytes out (requests) and in (responses) through the
// egress gateway.
func (m *Metrics) Egress(tenant, profile string, out, in int64) {
	if m == nil {
		return
	}
	t, p := m.TenantLabel(tenant), m.ProfileLabel(profile)
	if out > 0 {
		m.egressBytes.WithLabelValues(t, p, "out").Add(float64(out))
	}
	if in > 0 {
		m.egressBytes.WithLabelValues(t, p, "in").Add(float64(in))
	}
}

// CallBlocked counts a refused host call by its policy clause.
func (m *Metrics) CallBlocked(clause string) {
	if m == nil {
		return
	}
	m.blocked.WithLabelValues(m.clauses.label(clause)).Inc()
}

// LeaseIssued counts an issued lease.
func (m *Metrics) LeaseIssued(profile, class string) {
	if m == nil {
		return
	}
	m.leasesIssued.WithLabelValues(m.ProfileLabel(profile), oneOf(classes, class)).Inc()
}

// LeaseRefused counts a refused lease request by its API error code.
func (m *Metrics) LeaseRefused(code string) {
	if m == nil {
		return
	}
	m.leasesRefused.WithLabelValues(m.codes.label(code)).Inc()
}

// RaftApplied observes the latency of one Raft command (submit to
// applied), by command name.
func (m *Metrics) RaftApplied(command string, d time.Duration) {
	if m == nil {
		return
	}
	m.raftApply.WithLabelValues(m.commands.label(command)).Observe(d.Seconds())
}

// LeaderChanged counts a leader change and records whether this node now
// leads.
func (m *Metrics) LeaderChanged(isLeader bool) {
	if m == nil {
		return
	}
	m.leaderChanges.Inc()
	if isLeader {
		m.isLeader.Set(1)
	} else {
		m.isLeader.Set(0)
	}
}

// LedgerSize sets the number of receipts in the ledger.
func (m *Metrics) LedgerSize(n uint64) {
	if m == nil {
		return
	}
	m.ledgerSize.Set(float64(n))
}

// LedgerBatch observes one appended batch: its receipts and the time it
// took.
func (m *Metrics) LedgerBatch(receipts int, d time.Duration) {
	if m == nil {
		return
	}
	m.ledgerBatch.Observe(d.Seconds())
	m.ledgerBatchN.Observe(float64(receipts))
}

// ReceiptSpool sets the receipts waiting in the local spool and the age
// of the oldest.
func (m *Metrics) ReceiptSpool(receipts int, oldest time.Duration) {
	if m == nil {
		return
	}
	m.spoolDepth.Set(float64(receipts))
	m.spoolOldest.Set(oldest.Seconds())
}

// EventEmitted counts an emitted event by type (events.BusConfig.OnEmit).
func (m *Metrics) EventEmitted(eventType string) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(oneOf(eventTypes, eventType)).Inc()
}

// SinkDropped counts events a sink lost (events.BusConfig.OnDrop).
func (m *Metrics) SinkDropped(sink string, n int) {
	if m == nil {
		return
	}
	m.sinkDrops.WithLabelValues(m.sinks.label(sink)).Add(float64(n))
}

// eventTypes are the event types (events.Types); obs does not import
// events, so the list is repeated and a test keeps the two equal.
var eventTypes = map[string]bool{
	"sandbox_issued": true, "tool_call_attempted": true, "tool_call_blocked": true,
	"execution_completed": true, "execution_terminated": true,
	"budget_warning": true, "budget_exhausted": true, "budget_changed": true, "receipt_spool_stale": true, "incident_step_overdue": true,
	"lease_revoked": true, "profile_frozen": true, "destination_blocked": true, "policy_promoted": true,
	"node_joined": true, "node_left": true, "leader_changed": true,
	"task_enqueued": true, "task_retried": true, "task_dead": true,
}

// boundedSet admits the first max distinct well-formed values of a label;
// the rest become "other". A well-formed value is 1 to 64 bytes of
// lower-case letters, digits, '_', '.', ':' and '-'.
type boundedSet struct {
	max  int
	mu   sync.RWMutex
	seen map[string]bool
}

func newBoundedSet(max int) *boundedSet { return &boundedSet{max: max, seen: map[string]bool{}} }

func (b *boundedSet) label(v string) string {
	b.mu.RLock()
	ok := b.seen[v]
	b.mu.RUnlock()
	if ok {
		return v
	}
	if !wellFormed(v) {
		return Other
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[v] {
		return v
	}
	if len(b.seen) >= b.max {
		return Other
	}
	b.seen[v] = true
	return v
}

func wellFormed(v string) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
