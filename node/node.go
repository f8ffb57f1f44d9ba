// Package node is leash's composition root: it opens the data dir, starts
// consensus, the sandbox and the scheduler, and serves the HTTP API. Only
// cmd/leash (through cli) and tests import it.
package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/audit"
	"github.com/leash-dev/leash/bulk"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/lease"
	"github.com/leash-dev/leash/leases"
	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/lifecycle"
	"github.com/leash-dev/leash/modules"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/runbook"
	"github.com/leash-dev/leash/sandbox"
	"github.com/leash-dev/leash/scheduler"
	"github.com/leash-dev/leash/sessions"
	"github.com/leash-dev/leash/tenants"
	"github.com/leash-dev/leash/usage"
)

// Config configures a node. Zero values take the defaults of
// DefaultConfig.
type Config struct {
	Addr       string // HTTP API listen address
	DataDir    string
	PolicyFile string // empty: the built-in example bundle
	Join       string // HOST:PORT of a member to join; empty: bootstrap
	RaftAddr   string
	GossipAddr string
	// AdminToken overrides DATA/admin.token (LEASH_ADMIN_TOKEN).
	AdminToken string
	// EnginePath is the JS engine; empty or missing: JS is refused.
	EnginePath string
	// EgressProxyAddr, when set, serves the lease-authenticated egress
	// proxy (HTTP and CONNECT) there.
	EgressProxyAddr string
	// Egress holds test seams for the gateway.
	Egress EgressOptions
	// Event sinks besides the node's own history (docs/events.md):
	// JSON lines to stdout, to a file, and batched POSTs to a URL.
	EventsStdout bool
	EventsFile   string
	EventsHTTP   string
	// EventRetention bounds the node's event history by age.
	EventRetention time.Duration
	// Unaudited turns receipts (and events) off. It exists only to
	// measure what audit costs (bench/); never run a node like this.
	Unaudited bool
	// Unmetered turns the usage meter off (no usage, so no budget ever
	// crosses). It exists only to measure what metering costs (bench/).
	Unmetered bool
	// ReceiptAck is when a task's answer goes out: ReceiptAckLedger (the
	// default) once its receipt is in the replicated ledger,
	// ReceiptAckSpool once it is fsynced in this node's receipt spool
	// and queued for the ledger (docs/ledger.md).
	ReceiptAck string
	// BlastVerifyShare is the share of one core the blast-radius
	// verifier takes (docs/runbook.md): 0 means
	// runbook.DefaultVerifyShare, a negative share turns it off.
	BlastVerifyShare float64

	// Cluster (docs/cluster.md). Secret is the cluster secret's text
	// (LEASH_CLUSTER_SECRET); SecretFile names a file holding it; with
	// neither, DATA/cluster.secret (created when bootstrapping).
	Secret     string
	SecretFile string
	// Advertise is the host peers and clients reach this node at, when
	// the addresses above bind every interface.
	Advertise string
	// VoterCount is how many Raft voters the leader keeps (3 or 5); more
	// nodes join as non-voters.
	VoterCount int
	// DeadTimeout: a member dead this long is removed from Raft.
	DeadTimeout time.Duration
	// JoinTimeout bounds --join: a node that reaches no member (or holds
	// another secret) gives up and exits.
	JoinTimeout time.Duration
	// WriteTimeout bounds how long a write waits for a leader.
	WriteTimeout time.Duration
	// MaxStaleness is the freshness window: a node admits tasks only
	// this long after the start of its last completed read barrier
	// (fresh.go).
	MaxStaleness time.Duration
	// StayOnStop keeps a stopped node in the Raft configuration (a
	// restart, not a departure); by default a graceful stop leaves.
	StayOnStop bool
	// NoOffload keeps every interactive task on the node that got it.
	NoOffload bool
	// SnapshotThreshold and TrailingLogs tune Raft snapshots (0: raft's
	// defaults).
	SnapshotThreshold uint64
	TrailingLogs      uint64

	// Bulk queue (docs/scheduling.md). ClaimTTL: how long a claim on a
	// bulk task lasts unrenewed (a dead node's tasks run elsewhere after
	// it). RetryBudgetRatio, RetryBudgetMin, RetryBudgetWindow: retries
	// per class at most max(min, ratio × first attempts) over the window
	// (0: defaults; a negative min: no floor). TaskRetention: finished
	// bulk tasks are forgotten after it.
	ClaimTTL          time.Duration
	BulkSlots         int // slots bulk tasks may hold at once (0: every slot)
	RetryBudgetRatio  float64
	RetryBudgetMin    int
	RetryBudgetWindow time.Duration
	TaskRetention     time.Duration

	ShutdownGrace time.Duration
	// BodyTimeout bounds how long a client may take to send a request
	// body, and how long a streamed answer (a ledger export) may stall.
	BodyTimeout time.Duration
	// MaxIntakeBytes and MaxTenantIntakeBytes bound the request bytes a
	// node reads, decodes and compiles at once, in all and for one
	// tenant (httpapi.Intake).
	MaxIntakeBytes       int64
	MaxTenantIntakeBytes int64
	MaxModuleBytes       int64
	MaxRequestBytes      int64
	Slots                int
	MaxQueue             int
	MaxQueueWait         time.Duration
	Version              string
	Logger               *slog.Logger
	// Ready, when set, is called with the API address once the node
	// serves and has a leader.
	Ready func(apiAddr string)
	// KVNow, when set, is the session KV's clock (TTLs, expiry): tests
	// inject one. Nil: the node's clock.
	KVNow func() time.Time
}

// DefaultConfig is what `leash serve` starts with.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		DataDir:         "leash-data",
		RaftAddr:        "127.0.0.1:8300",
		GossipAddr:      "127.0.0.1:8301",
		ShutdownGrace:   10 * time.Second,
		BodyTimeout:     30 * time.Second,
		MaxModuleBytes:  16 << 20,
		MaxRequestBytes: 10 << 20,
		Slots:           max(2, runtime.GOMAXPROCS(0)*2),
		MaxQueue:        256,
		MaxQueueWait:    2 * time.Second,
		Version:         "dev",
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.RaftAddr == "" {
		c.RaftAddr = d.RaftAddr
	}
	if c.GossipAddr == "" {
		c.GossipAddr = d.GossipAddr
		// A node on an ephemeral cluster port (tests) gossips on one too.
		if host, port, err := net.SplitHostPort(c.RaftAddr); err == nil && port == "0" {
			c.GossipAddr = net.JoinHostPort(host, "0")
		}
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	if c.MaxModuleBytes <= 0 {
		c.MaxModuleBytes = d.MaxModuleBytes
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = d.BodyTimeout
	}
	if c.MaxIntakeBytes <= 0 {
		c.MaxIntakeBytes = httpapi.DefaultMaxIntakeBytes
	}
	if c.MaxTenantIntakeBytes <= 0 {
		c.MaxTenantIntakeBytes = httpapi.DefaultMaxTenantIntakeBytes
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.Slots <= 0 {
		c.Slots = d.Slots
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = d.MaxQueue
	}
	if c.MaxQueueWait <= 0 {
		c.MaxQueueWait = d.MaxQueueWait
	}
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.VoterCount <= 0 {
		c.VoterCount = DefaultVoterCount
	}
	if c.DeadTimeout <= 0 {
		c.DeadTimeout = DefaultDeadTimeout
	}
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxStaleness <= 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ReceiptAck == "" {
		c.ReceiptAck = ReceiptAckLedger
	}
	if c.BlastVerifyShare == 0 {
		c.BlastVerifyShare = runbook.DefaultVerifyShare
	}
}

// Env is the policy environment tasks run under.
const Env = "prod"

// Node is one leash node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	id       *identity
	db       *pebble.DB
	fsm      *consensus.FSM
	state    *consensus.State
	raft     *consensus.Raft
	box      *sandbox.Runtime
	pool     *scheduler.Scheduler
	signer   *lease.Signer
	leases   *lease.Verifier
	egress   *egressState
	intake   *httpapi.Intake
	auth     *httpapi.Auth
	receipts *receipts
	metrics  *obs.Metrics
	tracer   *obs.Tracer
	bus      *events.Bus
	evstore  *events.Store
	evh      *events.Handler
	now      func() time.Time

	apiAddr  string
	mesh     *mesh
	ready    atomic.Bool
	draining atomic.Bool
	fresh    *freshness
	inflight gate // offloaded tasks: open only while the node serves
	tasks    *running
	bulk     atomic.Pointer[bulk.Worker]
	usage    *usageState // the meter (usage.go)
	// usageAPI serves the usage, FOCUS and budget endpoints (usage.go).
	usageAPI *usage.Service
	bg       sync.WaitGroup

	// lifecycle serves the policy lifecycle's API and watches prod's
	// canary (lifecycle.go).
	lifecycle *lifecycle.Service
	// blast is the blast-radius index of the receipts and its query
	// (package runbook).
	blast *runbook.Blast
	// runbook serves the security runbook's API (runbook.go).
	runbook *runbook.Service
	// sessions is session state: the KV and task history (parts.go).
	sessions *sessions.Service
	// tenants serves API keys, tenants and capabilities (parts.go).
	tenants *tenants.Service
	// leaseAPI serves the lease endpoints (parts.go).
	leaseAPI *leases.Service
	// modules is the module store and its endpoints (parts.go).
	modules *modules.Store
	// audit serves the ledger's read endpoints and the keys (parts.go).
	audit *audit.Reader
}

// Run starts the node and serves until ctx ends, then shuts down
// gracefully: running tasks get ShutdownGrace to finish, then end as
// terminated:shutdown; Raft and Pebble close cleanly.
func Run(ctx context.Context, cfg Config) error {
	cfg.fill()
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "node"), now: time.Now, tasks: newRunning(),
		intake: httpapi.NewIntake(cfg.MaxIntakeBytes, cfg.MaxTenantIntakeBytes)}
	ln, err := n.open(ctx)
	if err != nil {
		n.close()
		return err
	}
	err = n.serve(ctx, ln)
	n.leave()
	if cerr := n.close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// open starts every subsystem in order; on failure the caller closes what
// was started.
func (n *Node) open(ctx context.Context) (net.Listener, error) {
	cfg := n.cfg
	if cfg.ReceiptAck != ReceiptAckLedger && cfg.ReceiptAck != ReceiptAckSpool {
		return nil, fmt.Errorf("receipt acknowledgement %q: want %q or %q", cfg.ReceiptAck, ReceiptAckLedger, ReceiptAckSpool)
	}
	id, err := loadIdentity(cfg.DataDir, cfg.AdminToken)
	if err != nil {
		return nil, err
	}
	n.id = id
	n.auth = &httpapi.Auth{AdminToken: id.AdminToken, Creds: credentials{n}, Now: func() time.Time { return n.now() }, Log: n.log}
	n.log = n.log.With("node", id.NodeID)
	if err := n.openObservability(ctx); err != nil {
		return nil, err
	}
	if n.signer, err = lease.NewSigner(id.LeaseKey); err != nil {
		return nil, err
	}
	// The policy file is read before anything starts: a bad bundle stops
	// the node with every error listed.
	var bundle *policy.Bundle
	var bundleSrc []byte
	if cfg.PolicyFile != "" {
		f, err := os.Open(cfg.PolicyFile)
		if err != nil {
			return nil, fmt.Errorf("--policy: %w", err)
		}
		bundle, err = policy.Read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--policy %s: %w", cfg.PolicyFile, err)
		}
		bundleSrc, _ = os.ReadFile(cfg.PolicyFile)
	}

	if n.db, err = consensus.OpenDB(filepath.Join(cfg.DataDir, "pebble"), cfg.Logger.With("component", "pebble")); err != nil {
		return nil, err
	}
	n.fsm = consensus.NewFSM(n.db, cfg.Logger)
	n.state = n.fsm.State()
	n.leases = lease.NewVerifier(n.state, 16384)
	if err := n.openEvents(); err != nil {
		return nil, err
	}
	n.sessions = n.newSessions()
	n.tenants = n.newTenants()
	n.audit = audit.New(audit.Config{State: n.state, NodeID: id.NodeID, CheckpointKey: id.CheckpointKey, BodyTimeout: cfg.BodyTimeout})
	n.blast = runbook.NewBlast(runbook.BlastConfig{Ledger: n.audit, DB: n.db, VerifyShare: cfg.BlastVerifyShare, Log: n.log,
		Busy: func() bool { // n.pool is set before Run starts the verifier
			if n.pool == nil {
				return false
			}
			running, waiting, _ := n.pool.Load()
			return running+waiting > 0
		}})
	n.leaseAPI = n.newLeases()
	n.lifecycle = n.newLifecycle()
	n.usageAPI = n.newUsageAPI()
	n.runbook = n.newRunbook()
	n.fsm.OnApply(n.onApply)
	n.fsm.OnRestore(n.onRestore)
	n.fresh = newFreshness(cfg.MaxStaleness)
	if err := n.openMesh(); err != nil {
		return nil, err
	}
	if n.raft, err = consensus.Open(ctx, consensus.Config{
		NodeID:            id.NodeID,
		Dir:               cfg.DataDir,
		DB:                n.db,
		Stream:            n.mesh.mux.Raft(),
		Bootstrap:         cfg.Join == "",
		SnapshotThreshold: cfg.SnapshotThreshold,
		TrailingLogs:      cfg.TrailingLogs,
		Logger:            cfg.Logger,
	}, n.fsm); err != nil {
		return nil, err
	}
	if n.box, err = sandbox.New(ctx, sandbox.Config{
		CacheDir:   filepath.Join(cfg.DataDir, "wazero-cache"),
		EnginePath: cfg.EnginePath,
		Logger:     cfg.Logger,
	}); err != nil {
		return nil, err
	}
	n.modules = n.newModules()
	sc := scheduler.DefaultConfig(cfg.Slots)
	sc.Interactive.MaxQueue, sc.Interactive.MaxWait = cfg.MaxQueue, cfg.MaxQueueWait
	if cfg.BulkSlots > 0 {
		sc.Bulk.MaxConcurrent = cfg.BulkSlots
	}
	sc.TenantWeight = n.tenantWeight
	n.pool = scheduler.New(sc)
	if err := n.openEgress(); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	n.apiAddr = ln.Addr().String()
	if err := n.startMesh(ctx); err != nil {
		ln.Close()
		return nil, err
	}

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := n.raft.WaitLeader(wctx); err != nil {
		ln.Close()
		return nil, err
	}
	if err := n.waitCaughtUp(wctx); err != nil {
		ln.Close()
		return nil, err
	}
	if err := n.seed(wctx, bundle, bundleSrc); err != nil {
		ln.Close()
		return nil, err
	}
	n.startReceipts()
	if err := n.startUsage(); err != nil {
		ln.Close()
		return nil, err
	}
	n.startBulk(ctx)
	n.metrics.SetQueueSource(n.queueSnapshot)
	return ln, nil
}

// seed writes what a node needs in replicated state: its record, its
// public keys, and a policy bundle when there is none (or --policy names
// another one).
func (n *Node) seed(ctx context.Context, bundle *policy.Bundle, src []byte) error {
	now := n.now().UnixNano()
	pub := n.id.LeaseKey.Public().(ed25519.PublicKey)
	rpub := n.id.ReceiptKey.Public().(ed25519.PublicKey)
	cmds := []consensus.Command{
		&consensus.PutNode{Node: consensus.NodeInfo{ID: n.id.NodeID, API: n.advertisedAPI(), Raft: n.raft.Addr(), Gossip: n.mesh.members.Addr(), Version: n.cfg.Version, JoinedAt: now}},
		&consensus.PutNodeKey{Key: consensus.NodeKey{KID: n.signer.KID(), NodeID: n.id.NodeID, Use: consensus.KeyUseLease, Algorithm: "EdDSA", PublicKey: pub, AddedAt: now}},
		&consensus.PutNodeKey{Key: consensus.NodeKey{KID: ledger.KeyID(rpub), NodeID: n.id.NodeID, Use: consensus.KeyUseReceipt, Algorithm: "EdDSA", PublicKey: rpub, AddedAt: now}},
	}
	noteKey, err := n.checkpointKeyRecord(now)
	if err != nil {
		return err
	}
	cmds = append(cmds, noteKey)
	if _, err := n.state.LedgerOrigin(); errors.Is(err, consensus.ErrNotFound) {
		cmds = append(cmds, &consensus.LedgerInit{Origin: "leash/" + randomID(10)})
	}
	active, err := n.state.EnvDigest(Env)
	switch {
	case bundle != nil && active != bundle.Digest() && n.lifecycle.FileApplies(bundle.Digest()):
		cmds = append(cmds, &consensus.PutPolicy{Canonical: bundle.Canonical(), Source: src, Env: Env, By: n.id.NodeID, At: now})
	case errors.Is(err, consensus.ErrNotFound):
		def := policy.Default()
		cmds = append(cmds, &consensus.PutPolicy{Canonical: def.Canonical(), Source: policy.DefaultYAML(), Env: Env, By: n.id.NodeID, At: now})
	case err != nil:
		return err
	}
	// Each is idempotent (a put, or an init that is a no-op with the same
	// origin), so a write lost to a leader change is sent again: a node
	// that starts during an election waits it out instead of exiting.
	for _, c := range cmds {
		_, err := backoff.Retry(ctx, func() (*consensus.Result, error) {
			res, err := n.propose(ctx, c)
			if err != nil && !errors.Is(err, consensus.ErrNoLeader) && !errors.Is(err, consensus.ErrNotLeader) && !errors.Is(err, consensus.ErrOutcomeUnknown) {
				return nil, backoff.Permanent(err)
			}
			return res, err
		}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, Multiplier: 2, MaxInterval: time.Second}),
			backoff.WithMaxElapsedTime(0))
		if err != nil {
			return fmt.Errorf("seed replicated state (%s): %w", c.Op(), err)
		}
	}
	d, _ := n.state.EnvDigest(Env)
	n.refreshDeny()
	n.refreshBundleLabels()
	n.log.Info("policy active", "env", Env, "digest", d)
	return nil
}

// propose applies a command through Raft and waits for it: on the
// leader, or forwarded to it (proposeAnywhere, in cluster.go).
func (n *Node) propose(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	start := time.Now()
	ctx, span := n.tracer.StartRaftApply(ctx, c.Op().String())
	res, err := n.proposeAnywhere(ctx, c)
	obs.End(span, err)
	n.metrics.RaftApplied(c.Op().String(), time.Since(start))
	return res, err
}

func (n *Node) serve(ctx context.Context, ln net.Listener) error {
	routes, err := n.routes()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           routes,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	// Event streams never go idle: end them when shutdown starts.
	srv.RegisterOnShutdown(n.evh.Close)
	errc := make(chan error, 1)
	if n.cfg.EgressProxyAddr != "" {
		pln, err := net.Listen("tcp", n.cfg.EgressProxyAddr)
		if err != nil {
			return fmt.Errorf("listen for the egress proxy on %s: %w", n.cfg.EgressProxyAddr, err)
		}
		n.serveProxy(ctx, pln)
	}
	// Every part is running: now serve, the internal task route first,
	// the public API last.
	n.bg.Add(5)
	go func() {
		defer n.bg.Done()
		n.lifecycle.Run(ctx)
	}()
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.watchRunbook(ctx)
	}()
	go func() {
		defer n.bg.Done()
		n.cosignLoop(ctx)
	}()
	go func() {
		defer n.bg.Done()
		n.leaseAPI.Run(ctx)
	}()
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.sessions.Run(ctx)
	}()
	go func() {
		defer n.bg.Done()
		n.forgetOldTasks(ctx)
	}()
	go func() {
		defer n.bg.Done()
		n.watchLeader(ctx)
	}()
	n.inflight.setOpen(true)
	n.ready.Store(true)
	go func() { errc <- srv.Serve(ln) }()
	n.log.Info("serving", "api", n.apiAddr, "raft", n.raft.Addr(), "data", n.cfg.DataDir, "js", n.box.JSError() == nil)
	if n.cfg.Ready != nil {
		n.cfg.Ready(n.apiAddr)
	}

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	n.shutdown(srv)
	return nil
}

// shutdown drains: no new connections, running tasks get the grace
// period, then end as terminated:shutdown and are recorded.
func (n *Node) shutdown(srv *http.Server) {
	n.draining.Store(true)
	n.ready.Store(false)
	n.inflight.setOpen(false)
	n.log.Info("shutting down", "grace", n.cfg.ShutdownGrace, "running", n.tasks.count())
	graceCtx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownGrace)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(graceCtx) }()
	select {
	case <-done:
	case <-graceCtx.Done():
	}
	n.bulk.Load().Drain(graceCtx)
	if k := n.tasks.cancelAll(sandbox.Terminate(sandbox.ReasonShutdown)); k > 0 {
		n.log.Warn("grace period over; terminating running tasks", "tasks", k)
	}
	// Handlers of terminated tasks record them and answer quickly.
	finalCtx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if !n.inflight.wait(finalCtx) {
		n.log.Warn("offloaded tasks still running at shutdown")
	}
	if err := srv.Shutdown(finalCtx); err != nil {
		n.log.Warn("connections cut off at shutdown", "err", err)
		_ = srv.Close()
	}
	n.bg.Wait()
}

// close stops what open started, in reverse order.
func (n *Node) close() error {
	var errs []error
	n.bulk.Load().Stop()
	n.stopUsage()
	if n.receipts != nil {
		n.receipts.close()
	}
	if n.egress != nil {
		n.egress.gw.Close()
	}
	if n.box != nil {
		errs = append(errs, n.box.Close(context.Background()))
	}
	errs = append(errs, n.closeMesh())
	if n.raft != nil {
		errs = append(errs, n.raft.Close())
	}
	errs = append(errs, n.closeMux())
	n.closeObservability()
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error("close", "err", err)
	} else if n.db != nil {
		n.log.Info("stopped")
	}
	return err
}

// onApply reacts to replicated changes on every node: a revoked lease
// ends the tasks running under it here.
func (n *Node) onApply(a consensus.Applied) {
	if a.Result.Err() != nil {
		return
	}
	n.policyApplied(a)
	n.usageApplied(a)
	n.bulk.Load().Applied(a)
	n.runbookApplied(a)
	switch c := a.Command.(type) {
	case *consensus.RevokeLease:
		if k := n.tasks.cancelLease(c.LeaseID, sandbox.Terminate(sandbox.ReasonRevoked)); k > 0 {
			n.log.Info("revoked lease ended running tasks", "lease", c.LeaseID, "tasks", k)
		}
		if n.egress != nil {
			if p := n.egress.proxy.Load(); p != nil {
				if k := p.CloseLease(c.LeaseID); k > 0 {
					n.log.Info("revoked lease's proxy tunnels closed", "lease", c.LeaseID, "tunnels", k)
				}
			}
		}
	case *consensus.PutPolicy:
		if c.Env == Env && n.egress != nil {
			// Listeners run after the batch is committed.
			n.refreshDeny()
			n.refreshBundleLabels()
		}
	}
}

// gate admits work while open and lets shutdown wait for what it
// admitted, before the parts that work needs stop.
type gate struct {
	mu   sync.Mutex
	open bool
	wg   sync.WaitGroup
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *gate) leave() { g.wg.Done() }

func (g *gate) setOpen(open bool) {
	g.mu.Lock()
	g.open = open
	g.mu.Unlock()
}

// wait waits for what entered (call after setOpen(false)); false when
// ctx ended first.
func (g *gate) wait(ctx context.Context) bool {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// running tracks tasks in flight, by lease, so that a revocation or a
// shutdown can end them.
type running struct {
	mu    sync.Mutex
	tasks map[string]*runningTask
}

type runningTask struct {
	lease  string
	cancel context.CancelCauseFunc
	// blocked counts egress refusals by destination and clause.
	blocked map[[2]string]int
}

func newRunning() *running { return &running{tasks: map[string]*runningTask{}} }

func (r *running) add(id, leaseID string, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tasks[id] = &runningTask{lease: leaseID, cancel: cancel}
}

// addBlocked records an egress refusal for a running task.
func (r *running) addBlocked(id, destination, clause string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tasks[id]
	if t == nil {
		return
	}
	if t.blocked == nil {
		t.blocked = map[[2]string]int{}
	}
	t.blocked[[2]string{destination, clause}]++
}

// blockedOf returns a running task's egress refusals.
func (r *running) blockedOf(id string) map[[2]string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.tasks[id]; t != nil {
		return maps.Clone(t.blocked)
	}
	return nil
}

func (r *running) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.tasks, id)
}

func (r *running) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tasks)
}

func (r *running) cancelLease(leaseID string, cause error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := 0
	for _, t := range r.tasks {
		if t.lease == leaseID {
			t.cancel(cause)
			k++
		}
	}
	return k
}

func (r *running) cancelAll(cause error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tasks {
		t.cancel(cause)
	}
	return len(r.tasks)
}
