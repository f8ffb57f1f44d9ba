package consensus

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Recover rewrites a stopped node's Raft configuration so that it alone is
// the cluster's voter, keeping all its state: the way back when a quorum
// is lost for good, or to start a new cluster from a copy of one node's
// data dir. It uses raft.RecoverCluster, which treats every entry in the
// node's log as committed (the last ones may not have been). Start the
// node afterwards and join new members to it.
func Recover(dir string, db *pebble.DB, nodeID, raftAddr string, logger *slog.Logger) (uint64, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hlog := newHCLog(logger, "raft", hclog.Warn)
	logs, err := NewLogStore(db)
	if err != nil {
		return 0, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "raft-snapshots"), 2, hlog)
	if err != nil {
		return 0, fmt.Errorf("open snapshot store: %w", err)
	}
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return 0, err
	}
	if !has {
		return 0, fmt.Errorf("%s holds no Raft state to recover", dir)
	}
	fsm := NewFSM(db, logger)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(nodeID)
	rc.Logger = hlog
	_, trans := raft.NewInmemTransport(raft.ServerAddress(raftAddr))
	conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(raftAddr), Suffrage: raft.Voter}}}
	if err := raft.RecoverCluster(rc, fsm, logs, logs, snaps, trans, conf); err != nil {
		return 0, fmt.Errorf("recover: %w", err)
	}
	return fsm.State().AppliedIndex()
}
