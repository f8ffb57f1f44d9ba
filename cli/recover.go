package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/leash-dev/leash/consensus"
)

// runRecover makes a stopped node's data dir a one-voter cluster
// (docs/cluster.md, "Backup and restore").
func runRecover(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "recover", "recover --data DIR [--raft-addr HOST:PORT]")
	dir := fs.String("data", "leash-data", "data directory of a STOPPED node (or a copy of one)")
	raftAddr := fs.String("raft-addr", "127.0.0.1:8300", "the Raft address the node will serve on")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	idb, err := os.ReadFile(filepath.Join(*dir, "node.id"))
	if err != nil {
		return fmt.Errorf("%s is not a node's data dir: %w", *dir, err)
	}
	nodeID := strings.TrimSpace(string(idb))
	db, err := consensus.OpenDB(filepath.Join(*dir, "pebble"), slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("open %s (is the node still running?): %w", *dir, err)
	}
	defer db.Close()
	applied, err := consensus.Recover(*dir, db, nodeID, *raftAddr, slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "recovered %s: node %s is now the only voter (state at index %d); start it with leash serve --data %s --raft-addr %s, then join new members to it\n",
		*dir, nodeID, applied, *dir, *raftAddr)
	return nil
}
