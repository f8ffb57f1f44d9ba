package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/leash-dev/leash/node"
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
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", d.GossipAddr, "gossip (memberlist) address")
	fs.StringVar(&cfg.EnginePath, "engine", "build/engine/engine.wasm", "JS engine (built by make engine)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", d.ShutdownGrace, "how long running tasks may finish at shutdown")
	fs.IntVar(&cfg.Slots, "slots", d.Slots, "sandboxes running at once")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return &exitError{code: 2, msg: "--log-level: " + err.Error()}
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(env.Stderr, &slog.HandlerOptions{Level: lv}))
	cfg.AdminToken = env.Getenv("LEASH_ADMIN_TOKEN")
	cfg.Version = Version
	if _, err := os.Stat(cfg.EnginePath); err != nil {
		cfg.Logger.Warn("JS engine not found; JavaScript tasks are refused until `make engine` builds it", "path", cfg.EnginePath)
	}
	return node.Run(ctx, cfg)
}
