package node

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/cluster"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/egress"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/scheduler"
)

// Observability: Prometheus metrics, OpenTelemetry traces, and events
// (docs/events.md, docs/observability.md). Every helper here is safe with
// a node whose observability is not open yet (nil metrics, tracer, bus).

// openObservability starts metrics and tracing; it needs the node id.
func (n *Node) openObservability(ctx context.Context) error {
	n.metrics = obs.NewMetrics(obs.MetricsConfig{Node: n.id.NodeID, Version: n.cfg.Version})
	t, err := obs.NewTracer(ctx, obs.TracingConfig{Node: n.id.NodeID, Version: n.cfg.Version})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	n.tracer = t
	return nil
}

// openEvents starts the event bus and its sinks; it needs the database.
func (n *Node) openEvents() error {
	cfg := n.cfg
	store, err := events.OpenStore(n.db, events.StoreConfig{Logger: cfg.Logger, MaxAge: cfg.EventRetention})
	if err != nil {
		return fmt.Errorf("open event history: %w", err)
	}
	n.evstore = store
	n.bus = events.NewBus(events.BusConfig{
		Node: n.id.NodeID, Logger: cfg.Logger, OnDrop: n.metrics.SinkDropped,
		OnEmit: func(t events.Type) { n.metrics.EventEmitted(string(t)) },
	})
	n.bus.AddSink("pebble", store, events.SinkOptions{})
	if cfg.EventsStdout {
		n.bus.AddSink("stdout", events.NewJSONLines(os.Stdout), events.SinkOptions{})
	}
	if cfg.EventsFile != "" {
		f, err := events.OpenJSONLinesFile(cfg.EventsFile)
		if err != nil {
			return fmt.Errorf("--events-file: %w", err)
		}
		n.bus.AddSink("file", f, events.SinkOptions{})
	}
	if cfg.EventsHTTP != "" {
		s, err := events.NewHTTPSink(events.HTTPSinkConfig{URL: cfg.EventsHTTP})
		if err != nil {
			return fmt.Errorf("--events-http: %w", err)
		}
		n.bus.AddSink("http", s, events.SinkOptions{})
	}
	n.evh = events.NewHandler(store, n.bus, events.HandlerConfig{Logger: cfg.Logger})
	return nil
}

// closeObservability flushes and stops the bus, the history and tracing.
func (n *Node) closeObservability() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownGrace)
	defer cancel()
	if n.evh != nil {
		n.evh.Close()
	}
	if n.bus != nil {
		if err := n.bus.Close(ctx); err != nil {
			n.log.Warn("event sinks", "err", err)
		}
	}
	if n.evstore != nil {
		_ = n.evstore.Close()
	}
	if n.tracer != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.tracer.Shutdown(sctx)
	}
}

// emit sends one event; it never blocks and never fails the caller.
func (n *Node) emit(ctx context.Context, d events.Data) {
	if n.bus != nil && !n.cfg.Unaudited {
		n.bus.Emit(ctx, events.New(d))
	}
}

// taskScope is the event scope of a task.
func taskScope(ctx context.Context, l *consensus.Lease, t *sandbox.Task) context.Context {
	return events.WithScope(ctx, events.Scope{Tenant: l.Tenant, Lease: l.ID, Task: t.ID, Traceparent: t.Traceparent})
}

// refreshBundleLabels bounds metric labels to the active bundle's tenants
// and profiles.
func (n *Node) refreshBundleLabels() {
	_, b, err := n.state.ActiveBundle(Env)
	if err != nil || n.metrics == nil {
		return
	}
	var tenants, profiles []string
	for t := range b.Tenants {
		tenants = append(tenants, t)
	}
	for p := range b.Profiles {
		profiles = append(profiles, p)
	}
	sort.Strings(tenants)
	sort.Strings(profiles)
	n.metrics.SetBundle(tenants, profiles)
}

// metricsTask records a finished task in metrics and its trace (execute
// has metered it).
func (n *Node) metricsTask(ctx context.Context, l *consensus.Lease, t *sandbox.Task, res *sandbox.Result) {
	u := res.Usage
	n.metrics.TaskFinished(l.Tenant, l.Profile, l.Class, string(res.Outcome), u.Wall)
	n.metrics.Egress(l.Tenant, l.Profile, u.EgressBytesOut, u.EgressBytesIn)
	if u.Startup > 0 {
		n.metrics.SandboxStarted(string(t.Module.Kind), u.Startup)
		n.tracer.RecordSandbox(ctx, string(t.Module.Kind), t.Module.Digest, res.Start, u.Startup)
	}
}

// emitTask emits a finished task's event, execution_completed or
// execution_terminated, with its receipt's index when out has one.
func (n *Node) emitTask(ctx context.Context, l *consensus.Lease, t *sandbox.Task, res *sandbox.Result, out *api.TaskResult) {
	if n.bus == nil || n.cfg.Unaudited {
		return
	}
	u := res.Usage
	var idx *int64
	if out.Receipt != nil {
		i := out.Receipt.Index
		idx = &i
	}
	var tokens *events.ModelTokens
	if t.ModelTokens != nil {
		tokens = &events.ModelTokens{Model: t.ModelTokens.Model, Input: t.ModelTokens.Input, Output: t.ModelTokens.Output}
	}
	egressBytes := u.EgressBytesOut + u.EgressBytesIn
	if reason := res.Reason(); reason != "" {
		n.emit(ctx, events.ExecutionTerminated{Reason: reason, Profile: l.Profile, Class: l.Class, ModuleDigest: t.Module.Digest,
			DurationMS: u.Wall.Milliseconds(), CPUMS: u.CPU.Milliseconds(), EgressBytes: egressBytes,
			Message: res.Error, ModelTokens: tokens, ReceiptIndex: idx})
		return
	}
	n.emit(ctx, events.ExecutionCompleted{Outcome: string(res.Outcome), Profile: l.Profile, Class: l.Class, ModuleDigest: t.Module.Digest,
		DurationMS: u.Wall.Milliseconds(), CPUMS: u.CPU.Milliseconds(), MemoryPeakBytes: u.MemoryPeakBytes, EgressBytes: egressBytes,
		Subrequests: int(u.Subrequests), Blocked: int(u.Blocked), Status: res.Response.Status, ModelTokens: tokens, ReceiptIndex: idx})
}

// observeDecision turns an egress decision into an event and metrics.
func (n *Node) observeDecision(ctx context.Context, d *egress.Decision) {
	n.meterCall(d)
	if d.Blocked() {
		n.metrics.CallBlocked(d.Clause)
		n.emit(ctx, events.ToolCallBlocked{Tool: "fetch", Destination: d.Destination, Method: d.Method, Clause: d.Clause,
			Profile: d.Profile, AddressRange: d.AddressRange, SNI: d.SNI, Message: d.Reason})
		return
	}
	n.tracer.RecordOutbound(ctx, d.Method, d.Host, d.Status, d.Time, d.Duration)
	n.emit(ctx, events.ToolCallAttempted{Tool: "fetch", Destination: d.Destination, Method: d.Method, Status: d.Status,
		BytesSent: d.BytesOut, BytesReceived: d.BytesIn, DurationMS: d.Duration.Milliseconds(), Error: d.Error})
}

// watchLeader reports leadership changes this node observes.
func (n *Node) watchLeader(ctx context.Context) {
	ch := make(chan raft.Observation, 16)
	obsv := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r := n.raft.Raw()
	r.RegisterObserver(obsv)
	defer r.DeregisterObserver(obsv)
	prev, _ := n.raft.Leader()
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			id := string(lo.LeaderID)
			if id == prev {
				continue
			}
			n.metrics.LeaderChanged(id == n.id.NodeID)
			n.emit(ctx, events.LeaderChanged{Leader: id, Previous: prev})
			prev = id
		}
	}
}

// onMembershipChange reports the leader's voter changes as events.
func (n *Node) onMembershipChange(a cluster.Action) {
	ctx := context.Background()
	switch a.Kind {
	case cluster.ActAddNonvoter, cluster.ActPromote:
		n.emit(ctx, events.NodeJoined{NodeID: a.ID, Raft: a.Addr, Voter: a.Kind == cluster.ActPromote})
	case cluster.ActRemove:
		reason := "removed"
		if strings.Contains(a.Reason, "dead") {
			reason = "dead"
		} else if strings.Contains(a.Reason, "left") || strings.Contains(a.Reason, "leav") {
			reason = "left"
		}
		n.emit(ctx, events.NodeLeft{NodeID: a.ID, Reason: reason})
	}
}

// queueSnapshot reports the scheduler and the bulk queue to /metrics.
func (n *Node) queueSnapshot() obs.QueueSnapshot {
	qs := n.QueueStats()
	bounds := make([]float64, len(scheduler.WaitBuckets))
	for i, b := range scheduler.WaitBuckets {
		bounds[i] = b.Seconds()
	}
	s := obs.QueueSnapshot{
		Depth:          qs.Depth,
		Classes:        map[string]obs.ClassSnapshot{},
		QueueWait:      obs.Histogram{Bounds: bounds, Counts: qs.QueueWait[:]},
		Retries:        qs.Retries,
		BudgetRefusals: qs.BudgetRefusals,
		ClaimExpiries:  qs.ClaimExpiries,
	}
	for class, cs := range qs.Classes {
		s.Classes[class] = obs.ClassSnapshot{Running: cs.Running, Queued: cs.Queued, Shed: cs.Shed,
			Wait: obs.Histogram{Bounds: bounds, Counts: append([]int64(nil), cs.WaitHist[:]...), Sum: cs.WaitTotal.Seconds()}}
	}
	return s
}
