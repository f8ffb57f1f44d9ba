package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Errors of Apply.
var (
	// ErrNoLeader means the write could not be applied because there is
	// no leader right now (an election); it is safe to retry.
	ErrNoLeader = errors.New("no leader")
	// ErrNotLeader means this node is not the leader; the write must go
	// to the leader. It was not applied.
	ErrNotLeader = errors.New("not the leader")
	// ErrOutcomeUnknown comes with ErrNoLeader when leadership was lost
	// after the write entered the log: it may or may not be applied.
	ErrOutcomeUnknown = errors.New("outcome unknown")
)

// Config configures a Raft node.
type Config struct {
	NodeID string
	// Dir is the node's data dir; snapshots go to Dir/raft-snapshots.
	Dir string
	// DB is the node's Pebble database (log, stable store and state).
	DB *pebble.DB
	// BindAddr is the TCP address Raft listens on; AdvertiseAddr is what
	// peers dial (defaults to the bound address).
	BindAddr      string
	AdvertiseAddr string
	// Bootstrap makes a node with no state a one-node cluster.
	Bootstrap bool
	// ApplyTimeout bounds a write that waits for a leader or quorum.
	ApplyTimeout time.Duration
	Logger       *slog.Logger
	// Stream, when set, carries Raft traffic instead of plain TCP on
	// BindAddr (the cluster's authenticated transport); its Addr is the
	// address peers dial.
	Stream raft.StreamLayer
	// SnapshotThreshold and TrailingLogs override raft's defaults when
	// not zero: a snapshot is taken after SnapshotThreshold new entries,
	// and TrailingLogs entries are kept behind it for slow followers.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// Tune is for tests and benchmarks that need other timings.
	Tune func(*raft.Config)
}

// Raft is a node's consensus: hashicorp/raft over Pebble, with the FSM.
type Raft struct {
	raft    *raft.Raft
	fsm     *FSM
	trans   *raft.NetworkTransport
	log     *slog.Logger
	id      string
	addr    string
	timeout time.Duration
	logs    *LogStore
}

// Open starts Raft on the node's database. It restores the FSM from the
// newest snapshot only when the persisted state is older than it (state
// normally survives restarts in Pebble and needs no restore).
func Open(ctx context.Context, cfg Config, fsm *FSM) (*Raft, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 5 * time.Second
	}
	log := cfg.Logger.With("component", "raft")
	hlog := newHCLog(log, "raft", hclog.Info)

	logs, err := NewLogStore(cfg.DB)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "raft-snapshots"), 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if err := catchUpFromSnapshot(snaps, fsm, log); err != nil {
		return nil, err
	}

	var advertise net.Addr
	if cfg.AdvertiseAddr != "" {
		a, err := net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		advertise = a
	}
	var trans *raft.NetworkTransport
	if cfg.Stream != nil {
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: cfg.Stream, MaxPool: 5, Timeout: 10 * time.Second, Logger: hlog})
	} else if trans, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, advertise, 5, 10*time.Second, hlog); err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", cfg.BindAddr, err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.NoSnapshotRestoreOnStart = true
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	// A node removed from the configuration (declared dead, then back)
	// stays up as a follower until the leader adds it again.
	rc.ShutdownOnRemove = false
	// Followers learn that an entry committed from the leader's next
	// AppendEntries; with no new writes that comes after CommitTimeout.
	// 10ms (raft's default is 50ms) keeps a write forwarded by a follower,
	// and a revocation, in force on every node within a few milliseconds
	// of the leader applying it.
	rc.CommitTimeout = 10 * time.Millisecond
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.Tune != nil {
		cfg.Tune(rc)
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, logs, snaps)
		if err != nil {
			_ = trans.Close()
			return nil, fmt.Errorf("check raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter}}}
			if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, conf); err != nil {
				_ = trans.Close()
				return nil, fmt.Errorf("bootstrap: %w", err)
			}
			log.Info("bootstrapped a one-node cluster", "node", cfg.NodeID, "raft", trans.LocalAddr())
		}
	}
	r, err := raft.NewRaft(rc, fsm, logs, logs, snaps, trans)
	if err != nil {
		_ = trans.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	return &Raft{raft: r, fsm: fsm, trans: trans, log: log, id: cfg.NodeID, addr: string(trans.LocalAddr()), timeout: cfg.ApplyTimeout, logs: logs}, nil
}

// catchUpFromSnapshot restores the FSM from the newest snapshot when its
// persisted state is older (it lost unsynced writes in a crash after the
// snapshot was taken, or the data dir holds only a snapshot).
func catchUpFromSnapshot(snaps raft.SnapshotStore, fsm *FSM, log *slog.Logger) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	applied, err := fsm.State().AppliedIndex()
	if err != nil {
		return err
	}
	newest := list[0]
	if applied >= newest.Index {
		return nil
	}
	_, rc, err := snaps.Open(newest.ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", newest.ID, err)
	}
	log.Warn("state is older than the newest snapshot; restoring it", "applied", applied, "snapshot_index", newest.Index)
	return fsm.Restore(rc)
}

// Addr is the Raft address peers dial.
func (r *Raft) Addr() string { return r.addr }

// ID is this node's Raft server id.
func (r *Raft) ID() string { return r.id }

// IsLeader reports whether this node leads.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Leader returns the current leader's id and Raft address, empty when
// there is none.
func (r *Raft) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderCh reports leadership changes of this node.
func (r *Raft) LeaderCh() <-chan bool { return r.raft.LeaderCh() }

// Stats are raft's own counters, for /readyz and /v1/cluster.
func (r *Raft) Stats() map[string]string { return r.raft.Stats() }

// AppliedIndex is the last index applied to the FSM.
func (r *Raft) AppliedIndex() uint64 { return r.raft.AppliedIndex() }

// LastContact is when this node last heard from the leader (now, on the
// leader itself).
func (r *Raft) LastContact() time.Time {
	if r.IsLeader() {
		return time.Now()
	}
	return r.raft.LastContact()
}

// WaitLeader blocks until the cluster has a leader or ctx ends.
func (r *Raft) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := r.Leader(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Apply proposes a command on this node, which must be the leader, and
// waits until it is applied. A refusal by the FSM is a *RefusedError.
// ErrNotLeader means the command was not applied; ErrNoLeader alone that
// it was not applied and there is no leader; ErrNoLeader with
// ErrOutcomeUnknown that it may have been.
func (r *Raft) Apply(ctx context.Context, c Command) (*Result, error) {
	b, err := Encode(c)
	if err != nil {
		return nil, err
	}
	return r.ApplyEncoded(ctx, c.Op(), b)
}

// ApplyEncoded is Apply for a command already in its log form (a write
// forwarded by a follower).
func (r *Raft) ApplyEncoded(ctx context.Context, op Op, b []byte) (*Result, error) {
	if r.raft.State() != raft.Leader {
		if id, _ := r.Leader(); id == "" {
			return nil, ErrNoLeader
		}
		return nil, ErrNotLeader
	}
	timeout := r.timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	f := r.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			// Refused before it entered the log.
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
			return nil, fmt.Errorf("%w: %w: %v", ErrNoLeader, ErrOutcomeUnknown, err)
		}
		return nil, fmt.Errorf("apply %s: %w", op, err)
	}
	res, ok := f.Response().(*Result)
	if !ok {
		return nil, fmt.Errorf("apply %s: unexpected response %T", op, f.Response())
	}
	return res, res.Err()
}

// Barrier waits until every entry committed before it is applied here.
func (r *Raft) Barrier(ctx context.Context) error {
	timeout := r.timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	return r.raft.Barrier(timeout).Error()
}

// Snapshot takes a snapshot now (tests, backups).
func (r *Raft) Snapshot() error { return r.raft.Snapshot().Error() }

// Raw exposes hashicorp/raft for membership changes (cluster management).
func (r *Raft) Raw() *raft.Raft { return r.raft }

// Close shuts Raft down and closes its transport. The caller closes the
// database afterwards.
func (r *Raft) Close() error {
	err := r.raft.Shutdown().Error()
	if cerr := r.trans.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}
