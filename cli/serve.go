package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/leash-dev/leash/bulk"
	"github.com/leash-dev/leash/engine/image"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/node"
	"github.com/leash-dev/leash/runbook"
)

func runServe(ctx context.Context, env *Env, args []string) error {
	d := node.DefaultConfig()
	fs := flags(env, "serve", "serve [--addr HOST:PORT] [--data DIR] [--policy FILE] [--join HOST:PORT] [--raft-addr HOST:PORT] [--gossip-addr HOST:PORT]")
	cfg := node.Config{}
	fs.StringVar(&cfg.Addr, "addr", d.Addr, "HTTP API address")
	fs.StringVar(&cfg.DataDir, "data", d.DataDir, "data directory (Pebble store, keys, admin token)")
	fs.StringVar(&cfg.PolicyFile, "policy", "", "policy bundle (YAML); default: the built-in example bundle")
	fs.StringVar(&cfg.Join, "join", "", "gossip address of a member to join")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", d.RaftAddr, "Raft address")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", d.GossipAddr, "gossip (memberlist) address, UDP and TCP")
	fs.StringVar(&cfg.SecretFile, "secret-file", "", "file holding the cluster secret (default: DATA/cluster.secret; LEASH_CLUSTER_SECRET overrides)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "host to advertise to peers when --addr, --raft-addr or --gossip-addr bind 0.0.0.0")
	fs.IntVar(&cfg.VoterCount, "voters", node.DefaultVoterCount, "Raft voters the leader keeps (3 or 5); further nodes are non-voters")
	fs.DurationVar(&cfg.DeadTimeout, "dead-timeout", node.DefaultDeadTimeout, "remove a member from Raft after it has been dead this long")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", node.DefaultJoinTimeout, "give up --join after this long")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", node.DefaultWriteTimeout, "how long a write waits for a leader before 503 no_leader")
	fs.DurationVar(&cfg.MaxStaleness, "max-staleness", node.DefaultMaxStaleness, "the freshness window: a node admits tasks only this long after the start of its last completed read barrier")
	fs.BoolVar(&cfg.StayOnStop, "stay-on-stop", false, "on SIGTERM stay in the Raft configuration instead of leaving the cluster")
	fs.BoolVar(&cfg.NoOffload, "no-offload", false, "never run interactive tasks on a less loaded peer")
	fs.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", 0, "Raft entries between snapshots (0: 8192)")
	fs.Uint64Var(&cfg.TrailingLogs, "trailing-logs", 0, "Raft entries kept after a snapshot for slow followers (0: 10240)")
	fs.StringVar(&cfg.EgressProxyAddr, "egress-proxy-addr", "", "serve the lease-authenticated egress proxy here (off by default)")
	fs.StringVar(&cfg.EnginePath, "engine", "", "JS engine file (default: the engine this binary carries; make build embeds it)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", d.ShutdownGrace, "how long running tasks may finish at shutdown")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", d.BodyTimeout, "a request body must arrive, and a streamed answer may stall, at most this long")
	fs.Int64Var(&cfg.MaxIntakeBytes, "max-intake-bytes", httpapi.DefaultMaxIntakeBytes, "request bytes the node reads, decodes and compiles at once (past it: 503 intake_full)")
	fs.Int64Var(&cfg.MaxTenantIntakeBytes, "max-tenant-intake-bytes", httpapi.DefaultMaxTenantIntakeBytes, "the same, for one tenant (past it: 429 tenant_intake_full)")
	fs.IntVar(&cfg.Slots, "slots", d.Slots, "sandboxes running at once")
	fs.IntVar(&cfg.BulkSlots, "bulk-slots", 0, "slots bulk tasks may hold at once (0: every slot, lent back as interactive work arrives)")
	fs.DurationVar(&cfg.ClaimTTL, "claim-ttl", bulk.DefaultClaimTTL, "how long a node's claim on a bulk task lasts unrenewed; a dead node's tasks run elsewhere after it")
	fs.Float64Var(&cfg.RetryBudgetRatio, "retry-budget", bulk.DefaultRetryBudgetRatio, "bulk retries per node at most this fraction of first attempts over --retry-budget-window")
	fs.IntVar(&cfg.RetryBudgetMin, "retry-budget-min", bulk.DefaultRetryBudgetMin, "retries always allowed per window, whatever the fraction (-1: none)")
	fs.DurationVar(&cfg.RetryBudgetWindow, "retry-budget-window", bulk.DefaultRetryBudgetWindow, "the retry budget's sliding window")
	fs.DurationVar(&cfg.TaskRetention, "task-retention", bulk.DefaultTaskRetention, "finished bulk tasks are forgotten after this long")
	fs.BoolVar(&cfg.EventsStdout, "events-stdout", false, "also write every event as a JSON line to stdout")
	fs.StringVar(&cfg.EventsFile, "events-file", "", "also append every event as a JSON line to this file")
	fs.StringVar(&cfg.EventsHTTP, "events-http", "", "also POST events in batches to this URL (retried; a dead endpoint never blocks tasks)")
	fs.DurationVar(&cfg.EventRetention, "event-retention", 0, "keep the node's event history this long (default 7 days)")
	fs.StringVar(&cfg.ReceiptAck, "receipt-ack", node.ReceiptAckLedger, "when a task's answer goes out: \"ledger\" (its receipt is in the replicated ledger) or \"spool\" (its receipt is fsynced in this node's spool; the append follows)")
	verifyShare := fs.Float64("blast-verify-share", runbook.DefaultVerifyShare, "the share of one core the blast-radius verifier takes to check receipt signatures ahead of the queries (0 turns it off: queries check every signature it has not checked)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *verifyShare < 0 || *verifyShare > 1:
		return &exitError{code: 2, msg: "serve: --blast-verify-share is between 0 and 1"}
	case *verifyShare == 0:
		cfg.BlastVerifyShare = -1
	default:
		cfg.BlastVerifyShare = *verifyShare
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return &exitError{code: 2, msg: "--log-level: " + err.Error()}
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(env.Stderr, &slog.HandlerOptions{Level: lv}))
	cfg.AdminToken = env.Getenv("LEASH_ADMIN_TOKEN")
	cfg.Secret = env.Getenv("LEASH_CLUSTER_SECRET")
	cfg.Version = Version
	if env.Getenv("LEASH_BENCH_UNAUDITED") == "1" {
		// A benchmark switch: measure what audit costs. Never in production.
		cfg.Unaudited = true
		cfg.Logger.Warn("LEASH_BENCH_UNAUDITED=1: tasks run WITHOUT receipts; for benchmarks only")
	}
	if env.Getenv("LEASH_BENCH_UNMETERED") == "1" {
		// A benchmark switch: measure what metering costs. Never in production.
		cfg.Unmetered = true
		cfg.Logger.Warn("LEASH_BENCH_UNMETERED=1: usage is NOT metered and budgets never cross; for benchmarks only")
	}
	if err := chooseEngine(&cfg); err != nil {
		cfg.Logger.Warn("no JS engine: JavaScript tasks are refused with js_engine_unavailable", "err", err)
		cfg.EnginePath = ""
	}
	return node.Run(ctx, cfg)
}

// chooseEngine settles which JS engine the node loads: the file --engine
// names, or else the engine the binary carries, installed into the data
// dir (where its snapshot and compiled code are cached beside it).
func chooseEngine(cfg *node.Config) error {
	if cfg.EnginePath != "" {
		if _, err := os.Stat(cfg.EnginePath); err != nil {
			return fmt.Errorf("--engine: %w", err)
		}
		return nil
	}
	path, err := image.Install(filepath.Join(cfg.DataDir, "engine"))
	if err != nil {
		return fmt.Errorf("%w (build it with make build, or pass --engine)", err)
	}
	cfg.EnginePath = path
	return nil
}
