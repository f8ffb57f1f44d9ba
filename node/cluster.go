package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/cluster"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/sandbox"
)

// The mesh: the cluster port (Raft and internal calls over mutual TLS
// derived from the cluster secret), gossip, the leader's voter
// management, write forwarding, task offload and module fetching. See
// docs/cluster.md.

// Cluster defaults.
const (
	DefaultVoterCount   = 3
	DefaultDeadTimeout  = 30 * time.Second
	DefaultJoinTimeout  = 30 * time.Second
	DefaultWriteTimeout = 5 * time.Second
	DefaultMaxStaleness = 750 * time.Millisecond
)

// mesh is a node's part of the cluster.
type mesh struct {
	secret  cluster.Secret
	mux     *cluster.Mux
	members *cluster.Membership
	rpc     *http.Client
	srv     *http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// noOffloadKey marks a task that a peer sent here: it runs here.
type noOffloadKey struct{}

// openMesh loads the secret and opens the cluster port. Raft is opened
// on it next; startMesh then starts gossip and the internal API.
func (n *Node) openMesh() error {
	cfg := n.cfg
	secret, err := cluster.LoadSecret(cfg.DataDir, cfg.SecretFile, cfg.Secret, cfg.Join == "")
	if err != nil {
		return err
	}
	mux, err := cluster.Listen(cfg.RaftAddr, advertised(cfg.RaftAddr, cfg.Advertise), secret, cfg.Logger)
	if err != nil {
		return err
	}
	n.mesh = &mesh{secret: secret, mux: mux, rpc: mux.HTTPClient()}
	return nil
}

// advertised is addr with its host replaced by adv when addr binds every
// interface ("" when there is nothing to replace).
func advertised(addr, adv string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || adv == "" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort(adv, port)
	}
	return ""
}

// startMesh starts the internal API, gossip (joining cfg.Join) and the
// loops that manage voters and gossip load.
func (n *Node) startMesh(ctx context.Context) error {
	m := n.mesh
	cfg := n.cfg
	m.srv = &http.Server{
		Handler:           n.internalRoutes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	go func() { _ = m.srv.Serve(m.mux.RPC()) }()

	api := n.apiAddr
	if a := advertised(api, cfg.Advertise); a != "" {
		api = a
	}
	running, waiting, _ := n.pool.Load()
	// Gossip says "no free slot" until the node serves: no peer offloads
	// to a half-built node.
	slots := 0
	var err error
	m.members, err = cluster.StartMembership(cluster.MembershipConfig{
		Name:      n.id.NodeID,
		Bind:      cfg.GossipAddr,
		Advertise: advertised(cfg.GossipAddr, cfg.Advertise),
		Secret:    m.secret,
		Meta:      cluster.Meta{ID: n.id.NodeID, Raft: m.mux.Addr(), API: api, Version: cfg.Version, Running: running, Waiting: waiting, Slots: slots},
		Logger:    cfg.Logger,
	})
	if err != nil {
		return err
	}
	peers := n.knownPeers()
	if cfg.Join != "" {
		jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
		err := m.members.Join(jctx, strings.Split(cfg.Join, ","))
		cancel()
		if err != nil {
			return fmt.Errorf("--join: %w", err)
		}
	} else if len(peers) > 0 {
		// A restarted member finds its peers again by itself.
		go func() {
			jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
			defer cancel()
			if err := m.members.Join(jctx, peers); err != nil {
				n.log.Warn("could not rejoin known peers", "peers", peers, "err", err)
			}
		}()
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	ap := &cluster.Autopilot{
		Raft: n.raft.Raw(), Members: m.members, Self: n.id.NodeID,
		VoterCount: cfg.VoterCount, DeadTimeout: cfg.DeadTimeout, Logger: cfg.Logger.With("component", "autopilot"), OnChange: n.onMembershipChange,
	}
	m.wg.Add(4)
	go func() { defer m.wg.Done(); ap.Run(lctx) }()
	go func() { defer m.wg.Done(); n.gossipLoad(lctx) }()
	go func() { defer m.wg.Done(); n.freshLoop(lctx) }()
	go func() { defer m.wg.Done(); n.contactLoop(lctx) }()
	return nil
}

// gossipLoad keeps this node's gossiped load and applied index fresh, and
// remembers the peers' gossip addresses for restarts.
func (n *Node) gossipLoad(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var last cluster.Meta
	var lastSent, lastSaved time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		running, waiting, slots := n.pool.Load()
		if !n.ready.Load() || n.draining.Load() {
			slots = 0
		}
		applied := n.raft.AppliedIndex()
		loadChanged := running != last.Running || waiting != last.Waiting || slots != last.Slots
		if loadChanged || (applied != last.Applied && time.Since(lastSent) > time.Second) {
			n.mesh.members.SetMeta(func(m *cluster.Meta) { m.Running, m.Waiting, m.Slots, m.Applied = running, waiting, slots, applied })
			last.Running, last.Waiting, last.Slots, last.Applied = running, waiting, slots, applied
			lastSent = time.Now()
			_ = n.mesh.members.Broadcast(time.Second)
		}
		if time.Since(lastSaved) > 5*time.Second {
			lastSaved = time.Now()
			n.savePeers()
		}
	}
}

const peersFile = "cluster.peers"

func (n *Node) savePeers() {
	var addrs []string
	for _, m := range n.mesh.members.Members() {
		if m.ID != n.id.NodeID && m.State == cluster.StateAlive {
			addrs = append(addrs, m.Gossip)
		}
	}
	if len(addrs) == 0 {
		return
	}
	_ = writeFileAtomic(filepath.Join(n.cfg.DataDir, peersFile), []byte(strings.Join(addrs, "\n")+"\n"))
}

func (n *Node) knownPeers() []string {
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, peersFile))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// waitCaughtUp runs read barriers until one succeeds: this node has
// applied everything the leader had when asked, after it (re)started, so
// that seeding and admission see the cluster's state (not an empty one
// on a new member, nor an old one after a restart).
func (n *Node) waitCaughtUp(ctx context.Context) error {
	for {
		err := n.barrier(ctx)
		if err == nil {
			n.log.Info("caught up with the leader", "applied", n.raft.AppliedIndex())
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("catch up with the leader: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitApplied waits until the local FSM has applied every command at or
// below index (consensus.Raft.WaitApplied).
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	return n.raft.WaitApplied(ctx, index)
}

// leave takes this node out of the cluster on a graceful stop: it hands
// leadership over, asks the leader to remove it from Raft, and tells
// gossip it left. Peers then remove it at once instead of waiting for
// the dead timeout.
func (n *Node) leave() {
	m := n.mesh
	if m == nil || m.members == nil || n.cfg.StayOnStop {
		return
	}
	others := 0
	if f := n.raft.Raw().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) != n.id.NodeID {
				others++
			}
		}
	}
	if others > 0 {
		if n.raft.IsLeader() {
			if err := n.raft.Raw().LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer before leaving failed", "err", err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for ctx.Err() == nil {
			if n.raft.IsLeader() {
				break
			}
			if _, addr := n.raft.Leader(); addr != "" {
				err := n.peerJSON(ctx, addr, http.MethodPost, "/internal/leave", map[string]string{"id": n.id.NodeID}, nil)
				if err == nil {
					n.log.Info("removed from the cluster by the leader")
					break
				}
				n.log.Warn("leave", "err", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
	}
	if err := m.members.Leave(2 * time.Second); err != nil {
		n.log.Warn("gossip leave", "err", err)
	}
}

// closeMesh stops gossip and the internal API; closeMux (after Raft is
// closed) closes the port.
func (n *Node) closeMesh() error {
	m := n.mesh
	if m == nil {
		return nil
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	var errs []error
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := m.srv.Shutdown(ctx); err != nil {
			_ = m.srv.Close()
		}
		cancel()
	}
	if m.members != nil {
		errs = append(errs, m.members.Shutdown())
	}
	return errors.Join(errs...)
}

func (n *Node) closeMux() error {
	if n.mesh == nil || n.mesh.mux == nil {
		return nil
	}
	return n.mesh.mux.Close()
}

// Writes.

// errRetryElsewhere marks a forwarded write that was certainly not
// applied (the peer was not reached, or is not the leader).
var errRetryElsewhere = errors.New("write not applied; retry")

// proposeAnywhere applies a command through the leader, wherever it is:
// here, or forwarded over the cluster port. During an election it waits
// up to WriteTimeout for a leader, then fails with ErrNoLeader. A
// forwarded write is answered once it is applied on the leader and on
// this node, so the caller reads its own write here.
func (n *Node) proposeAnywhere(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	b, err := consensus.Encode(c)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(n.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		var res *consensus.Result
		var err error
		leaderID, addr := n.raft.Leader()
		switch {
		case n.raft.IsLeader():
			res, err = n.raft.ApplyEncoded(ctx, c.Op(), b)
			if errors.Is(err, consensus.ErrNotLeader) {
				err = errRetryElsewhere
			}
		case leaderID != "" && addr != "" && n.mesh != nil:
			res, err = n.forward(ctx, addr, c.Op(), b)
			if err == nil || isRefused(err) {
				// Read-your-writes here: wait for the local FSM, but
				// never fail a write that is applied.
				wctx, wcancel := context.WithTimeout(context.Background(), max(time.Until(deadline), time.Second))
				_ = n.waitApplied(wctx, res.Index)
				wcancel()
			}
		default:
			err = errRetryElsewhere
		}
		if err == nil && fenced(c.Op()) {
			// Acknowledged only once no node can still decide on the
			// state before it (fresh.go).
			n.fenceRevocation(ctx, res.Index)
		}
		if err == nil || !errors.Is(err, errRetryElsewhere) {
			return res, err
		}
		if time.Now().Add(50 * time.Millisecond).After(deadline) {
			return nil, fmt.Errorf("%w: waited %s for a leader", consensus.ErrNoLeader, n.cfg.WriteTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", consensus.ErrNoLeader, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fenced reports whether a command is acknowledged only after the
// revocation fence: those that withdraw what a node honours on its own
// (a lease, an API key).
func fenced(op consensus.Op) bool {
	return op == consensus.OpRevokeLease || op == consensus.OpRevokeAPIKey
}

func isRefused(err error) bool {
	var re *consensus.RefusedError
	return errors.As(err, &re)
}

// forward sends an encoded command to the leader's internal API.
func (n *Node) forward(ctx context.Context, addr string, op consensus.Op, b []byte) (*consensus.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/internal/apply?op="+strconv.Itoa(int(op)), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/msgpack")
	resp, err := n.mesh.rpc.Do(req)
	if err != nil {
		var ce *cluster.DialError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%w: %v", errRetryElsewhere, err)
		}
		return nil, fmt.Errorf("%w: %w: forward to %s: %v", consensus.ErrNoLeader, consensus.ErrOutcomeUnknown, addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, consensus.MaxCommandBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: %w: forward to %s: %v", consensus.ErrNoLeader, consensus.ErrOutcomeUnknown, addr, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		res, err := consensus.UnmarshalResult(op, body)
		if err != nil {
			return nil, err
		}
		return res, res.Err()
	case http.StatusConflict: // not the leader (any more): not applied
		return nil, fmt.Errorf("%w: %s", errRetryElsewhere, body)
	case http.StatusServiceUnavailable:
		if strings.Contains(string(body), "outcome_unknown") {
			return nil, fmt.Errorf("%w: %w: %s", consensus.ErrNoLeader, consensus.ErrOutcomeUnknown, body)
		}
		return nil, fmt.Errorf("%w: %s", errRetryElsewhere, body)
	case http.StatusRequestEntityTooLarge:
		return nil, fmt.Errorf("%w: %s", consensus.ErrCommandTooLarge, body)
	}
	return nil, fmt.Errorf("forward to %s: HTTP %d: %s", addr, resp.StatusCode, body)
}

// Internal API: served on the cluster port to peers holding the secret.

func (n *Node) internalRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /internal/apply", n.wrap(n.internalApply))
	mux.Handle("GET /internal/status", n.wrap(n.internalStatus))
	mux.Handle("GET /internal/modules/{digest}", n.wrap(n.internalModule))
	mux.Handle("DELETE /internal/modules/{digest}", n.wrap(n.internalDropModule))
	mux.Handle("POST /internal/tasks", n.wrap(n.internalTask))
	mux.Handle("POST /internal/leave", n.wrap(n.internalLeave))
	mux.Handle("GET /internal/readindex", n.wrap(n.internalReadIndex))
	mux.Handle("GET /internal/applied", n.wrap(n.internalApplied))
	mux.Handle("POST /internal/fence", n.wrap(n.internalFence))
	return mux
}

func (n *Node) internalApply(w http.ResponseWriter, r *http.Request) error {
	op, err := strconv.Atoi(r.URL.Query().Get("op"))
	if err != nil {
		return api.BadRequest(api.CodeBadRequest, "op")
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, consensus.MaxCommandBytes))
	if err != nil {
		return err
	}
	c, err := consensus.Decode(b)
	if err != nil {
		return api.BadRequest(api.CodeBadRequest, "%v", err)
	}
	if int(c.Op()) != op {
		return api.BadRequest(api.CodeBadRequest, "op %d does not match the command's %s", op, c.Op())
	}
	if ar, ok := c.(*consensus.AppendReceipts); ok && !ar.MayRepeat {
		// A forwarded batch may arrive after its sender gave up and sent
		// it again (TCP delivers it once a partition heals): let the FSM
		// skip receipts already in the ledger.
		ar.MayRepeat = true
		if b, err = consensus.Encode(ar); err != nil {
			return err
		}
	}
	res, err := n.raft.ApplyEncoded(r.Context(), c.Op(), b)
	switch {
	case errors.Is(err, consensus.ErrNotLeader):
		return api.Errorf(http.StatusConflict, "not_leader", "not the leader")
	case errors.Is(err, consensus.ErrOutcomeUnknown):
		return api.Errorf(http.StatusServiceUnavailable, "outcome_unknown", "%v", err)
	case errors.Is(err, consensus.ErrNoLeader):
		return api.Errorf(http.StatusServiceUnavailable, api.CodeNoLeader, "%v", err)
	case err != nil && !isRefused(err):
		return err
	}
	out, err := consensus.MarshalResult(res)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/msgpack")
	_, err = w.Write(out)
	return err
}

// status is this node's view of itself, for peers and /v1/cluster.
func (n *Node) status(withDigest bool) api.NodeStatus {
	st := api.NodeStatus{ID: n.id.NodeID, AppliedIndex: n.raft.AppliedIndex(), State: n.raft.Raw().State().String()}
	st.Running, st.Waiting, st.Slots = n.pool.Load()
	if lc := n.raft.LastContact(); !lc.IsZero() {
		st.LastContactMs = time.Since(lc).Milliseconds()
	} else {
		st.LastContactMs = -1
	}
	if withDigest {
		st.StateDigest, _ = n.state.Digest()
	}
	return st
}

func (n *Node) internalStatus(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, n.status(r.URL.Query().Get("digest") != ""))
	return nil
}

func (n *Node) internalModule(w http.ResponseWriter, r *http.Request) error {
	if !api.ValidDigest(r.PathValue("digest")) {
		return api.BadRequest(api.CodeBadRequest, "not a module digest")
	}
	if t := r.URL.Query().Get("tenant"); t != "" && !n.modules.Owned(r.PathValue("digest"), t) {
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module of that tenant here")
	}
	v, err := n.modules.Stored(r.PathValue("digest"))
	if errors.Is(err, pebble.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module here")
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = w.Write(v)
	return err
}

// internalDropModule is a peer's DELETE /v1/modules/{digest} for a
// tenant, passed on: this node forgets the tenant's ownership too.
func (n *Node) internalDropModule(w http.ResponseWriter, r *http.Request) error {
	t := r.URL.Query().Get("tenant")
	if !api.ValidDigest(r.PathValue("digest")) || t == "" {
		return api.BadRequest(api.CodeBadRequest, "a module digest and a tenant")
	}
	had, err := n.modules.DropOwner(r.PathValue("digest"), t)
	if err != nil {
		return err
	}
	if !had {
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module of that tenant here")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// dropOwnerOnPeers passes a module deletion on to every live peer (best
// effort: a peer that is down keeps its copy until it is asked again) and
// counts the peers that held the tenant's module.
func (n *Node) dropOwnerOnPeers(ctx context.Context, digest, tenant string) int {
	if n.mesh == nil || n.mesh.members == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dropped := 0
	for _, m := range n.mesh.members.Members() {
		if m.ID == n.id.NodeID || m.State != cluster.StateAlive || m.Raft == "" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+m.Raft+"/internal/modules/"+digest+"?tenant="+url.QueryEscape(tenant), nil)
		if err != nil {
			continue
		}
		resp, err := n.mesh.rpc.Do(req)
		if err != nil {
			n.log.Warn("module deletion not passed on", "peer", m.ID, "digest", digest, "err", err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			dropped++
		}
	}
	return dropped
}

func (n *Node) internalLeave(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID string `json:"id"`
	}
	if err := httpapi.DecodeJSON(w, r, 4<<10, &req); err != nil {
		return err
	}
	if !n.raft.IsLeader() {
		return api.Errorf(http.StatusConflict, "not_leader", "not the leader")
	}
	if err := n.raft.Raw().RemoveServer(raft.ServerID(req.ID), 0, 5*time.Second).Error(); err != nil {
		return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "remove %s: %v", req.ID, err)
	}
	n.log.Info("member left; removed from raft", "member", req.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// peerJSON calls a peer's internal API (addr is its cluster port).
func (n *Node) peerJSON(ctx context.Context, addr, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := n.mesh.rpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s on %s: HTTP %d: %s", method, path, addr, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Offload.

// NotStartedHeader, on a peer's refusal of an offloaded task, says the
// peer did not start it: the offloading node may run it itself.
const NotStartedHeader = "Leash-Not-Started"

// TaskIDHeader carries the id the offloading node chose for a task to the
// peer that runs it (and back to the client when the outcome is unknown,
// so it can look the task up by id: GET /v1/tasks/{id}).
const TaskIDHeader = "Leash-Task-Id"

// taskIDKey carries that id from the internal route to submitTask.
type taskIDKey struct{}

var taskIDPattern = regexp.MustCompile(`^tsk_[a-z2-7]{26}$`)

// newTaskID is a new task's id: the offloading node's, on a peer, or a
// fresh one.
func newTaskID(ctx context.Context) string {
	if id, ok := ctx.Value(taskIDKey{}).(string); ok {
		return id
	}
	return "tsk_" + randomID(16)
}

// startedKey carries a flag execute sets once a task is registered to
// run: from then on a failure's outcome is unknown to an offloader.
type startedKey struct{}

func markStarted(ctx context.Context) {
	if f, ok := ctx.Value(startedKey{}).(*atomic.Bool); ok {
		f.Store(true)
	}
}

// internalTask runs a task a peer offloaded here. It is refused (503,
// marked not started) until the node is whole and once it drains; every
// refusal before the task started says so, so that the peer runs it.
func (n *Node) internalTask(w http.ResponseWriter, r *http.Request) error {
	if !n.inflight.enter() {
		w.Header().Set(NotStartedHeader, "1")
		return &api.Error{Status: http.StatusServiceUnavailable, Code: CodeNotReady, RetryAfter: 1, Message: "this node is starting or stopping and takes no offloaded tasks"}
	}
	defer n.inflight.leave()
	started := new(atomic.Bool)
	ctx := context.WithValue(context.WithValue(r.Context(), noOffloadKey{}, true), startedKey{}, started)
	if id := r.Header.Get(TaskIDHeader); taskIDPattern.MatchString(id) {
		ctx = context.WithValue(ctx, taskIDKey{}, id)
	}
	// The lease is checked here as on the public route (on caught-up
	// state): the offloading peer's check does not count.
	err := httpapi.Authorize(n.auth, httpapi.LeaseHolder, n.submitTask)(w, r.WithContext(ctx))
	if err != nil && !started.Load() {
		w.Header().Set(NotStartedHeader, "1")
	}
	return err
}

// offload runs an interactive task on the least loaded peer when every
// slot here is taken and a peer has one free (by gossiped load). It
// reports whether it answered the request. The task runs here instead
// only when the peer certainly did not start it: it could not be
// reached (nothing was sent), or it refused the task saying so. Any
// other failure is answered 503 outcome_unknown: the task may have run
// there, and running it here too could run it twice.
func (n *Node) offload(w http.ResponseWriter, r *http.Request, req *api.TaskRequest) bool {
	if n.mesh == nil || n.mesh.members == nil || n.cfg.NoOffload || r.Context().Value(noOffloadKey{}) != nil {
		return false
	}
	running, waiting, slots := n.pool.Load()
	if running+waiting < int64(slots) {
		return false
	}
	var best *cluster.Member
	for _, m := range n.mesh.members.Members() {
		if m.ID == n.id.NodeID || m.State != cluster.StateAlive || m.Raft == "" || m.Free() <= 0 {
			continue
		}
		if best == nil || m.Free() > best.Free() || (m.Free() == best.Free() && m.Running < best.Running) {
			c := m
			best = &c
		}
	}
	if best == nil {
		return false
	}
	body, err := json.Marshal(req)
	if err != nil {
		return false
	}
	preq, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://"+best.Raft+"/internal/tasks", bytes.NewReader(body))
	if err != nil {
		return false
	}
	preq.Header.Set("Content-Type", "application/json")
	preq.Header.Set("Authorization", r.Header.Get("Authorization"))
	preq.Header.Set("traceparent", obs.RequestTraceparent(r.Context()))
	// The id is chosen here, so that if the peer fails after the task was
	// sent the client still learns which task to look up.
	taskID := newTaskID(r.Context())
	preq.Header.Set(TaskIDHeader, taskID)
	resp, err := n.mesh.rpc.Do(preq)
	if err != nil {
		var de *cluster.DialError
		if errors.As(err, &de) {
			n.log.Warn("offload: peer unreachable, nothing sent; running here", "peer", best.ID, "err", err)
			return false
		}
		n.log.Warn("offload: peer failed after the task was sent; outcome unknown", "peer", best.ID, "task", taskID, "err", err, "traceparent", obs.RequestTraceparent(r.Context()))
		w.Header().Set(TaskIDHeader, taskID)
		httpapi.WriteError(n.log, w, r, outcomeUnknown(best.ID, taskID))
		return true
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		if resp.Header.Get(NotStartedHeader) != "" {
			// The peer refused before starting it (full, not caught up,
			// starting, stopping): run it here.
			n.log.Info("offload refused by the peer before it started; running here", "peer", best.ID, "status", resp.StatusCode)
			return false
		}
		n.log.Warn("offload: peer failed; outcome unknown", "peer", best.ID, "task", taskID, "status", resp.StatusCode, "traceparent", obs.RequestTraceparent(r.Context()))
		w.Header().Set(TaskIDHeader, taskID)
		httpapi.WriteError(n.log, w, r, outcomeUnknown(best.ID, taskID))
		return true
	}
	n.log.Info("task offloaded", "peer", best.ID, "status", resp.StatusCode, "traceparent", obs.RequestTraceparent(r.Context()))
	for _, h := range []string{"Content-Type", "Retry-After", "X-Content-Type-Options"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return true
}

func outcomeUnknown(peer, taskID string) error {
	return &api.Error{Status: http.StatusServiceUnavailable, Code: CodeOutcomeUnknown, RetryAfter: 1,
		Message: "task " + taskID + " was sent to peer " + peer + ", which failed before answering: it may or may not have run, and it is not run again here; if it ran, GET /v1/tasks/" + taskID + " finds its record and its receipt is in the ledger"}
}

// Modules.

// fetchModule asks the live peers for a module this node does not have
// and checks its digest; with a tenant, only a peer that knows the
// tenant may run it answers (the store, modules.Store.Fetch, records
// the owner here).
func (n *Node) fetchModule(ctx context.Context, digest, tenant string) ([]byte, error) {
	if n.mesh == nil || n.mesh.members == nil {
		return nil, pebble.ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, m := range n.mesh.members.Members() {
		if m.ID == n.id.NodeID || m.State != cluster.StateAlive || m.Raft == "" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.Raft+"/internal/modules/"+digest+"?tenant="+url.QueryEscape(tenant), nil)
		if err != nil {
			return nil, err
		}
		resp, err := n.mesh.rpc.Do(req)
		if err != nil {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, n.cfg.MaxModuleBytes+2))
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(b) < 2 {
			continue
		}
		if sandbox.Digest(b[1:]) != digest {
			n.log.Warn("peer sent a module that does not match its digest", "peer", m.ID, "digest", digest)
			continue
		}
		n.log.Info("module fetched from a peer", "digest", digest, "peer", m.ID, "bytes", len(b)-1, "tenant", tenant)
		return b, nil
	}
	return nil, pebble.ErrNotFound
}

// Cluster view.

// getCluster answers GET /v1/cluster: every member of the Raft
// configuration and of gossip, with its state, suffrage, load and
// applied index (asked of each live member, falling back to gossip), and
// the leader. ?digest=1 adds each member's state digest.
func (n *Node) getCluster(w http.ResponseWriter, r *http.Request) error {
	withDigest := r.URL.Query().Get("digest") != ""
	if withDigest && !httpapi.CallerOf(r.Context()).Staff() {
		// Each member hashes all of its state: not for anyone to ask.
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "?digest=1 needs the role admin, operator or auditor")
	}
	leaderID, _ := n.raft.Leader()
	byID := map[string]*api.Member{}
	get := func(id string) *api.Member {
		m, ok := byID[id]
		if !ok {
			m = &api.Member{ID: id, State: "unknown", Suffrage: "none"}
			byID[id] = m
		}
		return m
	}
	if nodes, err := n.state.Nodes(); err == nil {
		for _, rec := range nodes {
			m := get(rec.ID)
			m.API, m.Raft, m.Gossip, m.Version = rec.API, rec.Raft, rec.Gossip, rec.Version
		}
	}
	inConf := map[string]bool{}
	if f := n.raft.Raw().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			m := get(string(s.ID))
			m.Raft = string(s.Address)
			inConf[m.ID] = true
			m.Suffrage = "nonvoter"
			if s.Suffrage == raft.Voter {
				m.Suffrage = "voter"
			}
		}
	}
	if n.mesh != nil && n.mesh.members != nil {
		for _, gm := range n.mesh.members.Members() {
			if (gm.State == cluster.StateDead || gm.State == cluster.StateLeft) && !inConf[gm.ID] && time.Since(gm.Since) > time.Minute {
				continue
			}
			m := get(gm.ID)
			m.State, m.Gossip = gm.State, gm.Gossip
			if gm.API != "" {
				m.API, m.Version = gm.API, gm.Version
			}
			if gm.Raft != "" {
				m.Raft = gm.Raft
			}
			m.AppliedIndex = gm.Applied
			m.Load = &api.Load{Running: gm.Running, Waiting: gm.Waiting, Slots: gm.Slots}
		}
	}
	// Drop records of nodes that are in neither Raft nor gossip (removed
	// long ago, or replaced).
	for id, m := range byID {
		if !inConf[id] && m.State == "unknown" && id != n.id.NodeID {
			delete(byID, id)
		}
	}
	// Ask live members for their exact status.
	ctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for id, m := range byID {
		if id == n.id.NodeID {
			st := n.status(withDigest)
			m.State = cluster.StateAlive
			applyStatus(m, &st)
			continue
		}
		if n.mesh == nil || (m.State != cluster.StateAlive && m.State != cluster.StateSuspect) || m.Raft == "" {
			continue
		}
		wg.Add(1)
		go func(m *api.Member, addr string) {
			defer wg.Done()
			var st api.NodeStatus
			path := "/internal/status"
			if withDigest {
				path += "?digest=1"
			}
			err := n.peerJSON(ctx, addr, http.MethodGet, path, nil, &st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				m.Unreachable = true
				return
			}
			applyStatus(m, &st)
		}(m, m.Raft)
	}
	wg.Wait()
	out := api.Cluster{Node: n.id.NodeID, Members: make([]api.Member, 0, len(byID))}
	for _, m := range byID {
		out.Members = append(out.Members, *m)
		if m.ID == leaderID {
			l := *m
			out.Leader = &l
		}
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].ID < out.Members[j].ID })
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func applyStatus(m *api.Member, st *api.NodeStatus) {
	m.AppliedIndex = st.AppliedIndex
	m.RaftState = strings.ToLower(st.State)
	m.StateDigest = st.StateDigest
	m.Load = &api.Load{Running: st.Running, Waiting: st.Waiting, Slots: st.Slots}
	lc := st.LastContactMs
	m.LastContactMs = &lc
}

// advertisedAPI is the API address peers and clients are told.
func (n *Node) advertisedAPI() string {
	if a := advertised(n.apiAddr, n.cfg.Advertise); a != "" {
		return a
	}
	return n.apiAddr
}

// IndexHeader carries the Raft index a write was applied at
// (httpapi.SetIndex).
const IndexHeader = httpapi.IndexHeader

func setIndex(w http.ResponseWriter, res *consensus.Result) {
	if res != nil {
		httpapi.SetIndex(w, res.Index)
	}
}

// postSnapshot takes a Raft snapshot on this node now (admin): before a
// backup of the data dir, or to compact the log.
func (n *Node) postSnapshot(w http.ResponseWriter, r *http.Request) error {
	if err := n.raft.Snapshot(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"node": n.id.NodeID, "applied_index": n.raft.AppliedIndex()})
	return nil
}

// syncWithLeader waits (up to a second) until this node has applied
// everything the leader had applied when asked: a read barrier for a
// follower that misses a record a client just wrote through another node.
func (n *Node) syncWithLeader(ctx context.Context) error {
	if n.mesh == nil || n.raft.IsLeader() {
		return nil
	}
	_, addr := n.raft.Leader()
	if addr == "" {
		return consensus.ErrNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var st api.NodeStatus
	if err := n.peerJSON(ctx, addr, http.MethodGet, "/internal/status", nil, &st); err != nil {
		return err
	}
	return n.waitApplied(ctx, st.AppliedIndex)
}
