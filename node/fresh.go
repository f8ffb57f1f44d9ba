package node

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
)

// Freshness: decisions that a guarantee rests on (admitting a task,
// honouring a lease in the egress proxy) are made only on state that has
// caught up with the leader recently. docs/cluster.md, "Caught-up state",
// gives the argument; in short:
//
//   - A read barrier (ReadIndex): note the time T, ask the leader (over the
//     authenticated internal API) for its last log index after it has
//     confirmed its leadership with a quorum (raft's VerifyLeader), then
//     wait until this node's FSM has applied that index. Every write
//     acknowledged before T is then in this node's state.
//   - The barrier's certificate is T. A node admits only while now - T is
//     at most the window (--max-staleness, 750 ms). Barriers are renewed
//     in the background every window/3, so at steady state the check on
//     the task path is one atomic load and a clock read.
//   - Lost contact with the leader (no word for lostContactAfter) or a new
//     leader drops the certificate at once; a barrier that started before
//     that is not accepted. So a node that rejoins or restarts admits
//     nothing until it has caught up with the leader as of a moment after
//     it got back.
//   - A revocation is acknowledged only after every node that may hold a
//     certificate from before it has applied it, or that certificate has
//     expired (fenceRevocation). A revocation acknowledged to a client is
//     thus never followed by an admission under that lease anywhere.

// Codes of the refusals this file adds.
const (
	// CodeNotCaughtUp: this node's state may be behind the leader's.
	CodeNotCaughtUp = "not_caught_up"
	// CodeNotReady: the node is starting and does not serve this yet.
	CodeNotReady = "not_ready"
	// CodeOutcomeUnknown: a peer took the task and did not say how it
	// ended; it may have run.
	CodeOutcomeUnknown = "outcome_unknown"
)

// lostContactAfter: a follower that has not heard from the leader this
// long has lost contact; its certificate is dropped. Raft's leader steps
// down after LeaderLeaseTimeout (250 ms) without a quorum; heartbeats come
// every 50 ms.
const lostContactAfter = 300 * time.Millisecond

// freshness holds this node's caught-up certificate.
type freshness struct {
	window time.Duration
	base   time.Time // monotonic origin of the nanosecond stamps below

	// cert is the start (ns since base) of the last barrier that
	// completed without contact being lost since; 0: none.
	cert atomic.Int64

	mu    sync.Mutex
	epoch uint64        // bumped when contact is lost
	done  chan struct{} // closed (and replaced) when a barrier completes
	// ectx ends when the epoch does: barriers in flight stop.
	ectx    context.Context
	ecancel context.CancelFunc
	kick    chan struct{}

	// On the leader: when it last granted a barrier to each peer, and
	// when it became leader (ns since base).
	gmu         sync.Mutex
	grants      map[string]int64
	leaderSince atomic.Int64
	forgotAt    atomic.Int64 // when grants had to be dropped (a bound)

	barriers, lost atomic.Uint64 // counters, for logs and tests
}

func newFreshness(window time.Duration) *freshness {
	f := &freshness{window: window, base: time.Now(), done: make(chan struct{}), kick: make(chan struct{}, 1), grants: map[string]int64{}}
	f.ectx, f.ecancel = context.WithCancel(context.Background())
	return f
}

func (f *freshness) now() int64 { return int64(time.Since(f.base)) }

// ok reports whether the certificate is fresh: the hot path.
func (f *freshness) ok() bool {
	c := f.cert.Load()
	return c != 0 && f.now()-c <= int64(f.window)
}

// age is how old the certificate is (-1: none).
func (f *freshness) age() time.Duration {
	c := f.cert.Load()
	if c == 0 {
		return -1
	}
	return time.Duration(f.now() - c)
}

func (f *freshness) trigger() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// invalidate drops the certificate: contact was lost, or the leader
// changed. A barrier started before this does not count.
func (f *freshness) invalidate() {
	f.mu.Lock()
	f.epoch++
	f.cert.Store(0)
	f.ecancel() // barriers in flight ask a leader that is gone, or would not count
	f.ectx, f.ecancel = context.WithCancel(context.Background())
	f.mu.Unlock()
	f.lost.Add(1)
	f.trigger()
}

// begin starts a barrier: its start stamp, epoch, and a context that
// invalidate cancels.
func (f *freshness) begin(ctx context.Context) (context.Context, context.CancelFunc, int64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, f.window+time.Second)
	stop := context.AfterFunc(f.ectx, cancel)
	return ctx, func() { stop(); cancel() }, f.now(), f.epoch
}

// commit records a completed barrier unless contact was lost since it
// began; it wakes waiting admissions either way.
func (f *freshness) commit(start int64, epoch uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := f.epoch == epoch && start > f.cert.Load()
	if ok {
		f.cert.Store(max(start, 1))
		f.barriers.Add(1)
	}
	close(f.done)
	f.done = make(chan struct{})
	return ok
}

func (f *freshness) waitCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

// maxGrants bounds the leader's memory of grants (peer ids come from
// members holding the cluster secret; far more than any cluster has).
const maxGrants = 4096

// grant notes that the leader serves a barrier to peer id now.
func (f *freshness) grant(id string) {
	f.gmu.Lock()
	defer f.gmu.Unlock()
	now := f.now()
	if len(f.grants) >= maxGrants {
		for k, g := range f.grants {
			if g+int64(f.window) <= now {
				delete(f.grants, k)
			}
		}
		if len(f.grants) >= maxGrants {
			// Forgotten grants may still be fresh: the fence waits a
			// window past this moment instead.
			clear(f.grants)
			f.forgotAt.Store(now)
		}
	}
	f.grants[id] = now
}

// liveGrants are the peers whose certificate from this leader may still
// be fresh, with the stamp it expires at.
func (f *freshness) liveGrants() map[string]int64 {
	f.gmu.Lock()
	defer f.gmu.Unlock()
	now := f.now()
	out := map[string]int64{}
	for id, g := range f.grants {
		if exp := g + int64(f.window); exp > now {
			out[id] = exp
		} else {
			delete(f.grants, id)
		}
	}
	return out
}

// checkFresh admits only on caught-up state: with a fresh certificate,
// or one that a barrier establishes within WriteTimeout (as long as a
// write waits for a leader: an election). Otherwise 503 not_caught_up
// (no_leader when there is none) with Retry-After.
func (n *Node) checkFresh(ctx context.Context) error {
	f := n.fresh
	if f == nil || f.ok() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout)
	defer cancel()
	for {
		ch := f.waitCh()
		if f.ok() {
			return nil
		}
		f.trigger()
		select {
		case <-ch:
			continue
		case <-ctx.Done():
		}
		break
	}
	if f.ok() {
		return nil
	}
	if id, _ := n.raft.Leader(); id == "" {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, RetryAfter: 1,
			Message: "this node has no cluster leader, so its view of revocations may be stale; retry, or use another node"}
	}
	return &api.Error{Status: http.StatusServiceUnavailable, Code: CodeNotCaughtUp, RetryAfter: 1,
		Message: "this node has not caught up with the cluster leader since it last lost contact, so its view of revocations may be stale; retry, or use another node"}
}

// barrier runs one read barrier and records its certificate.
func (n *Node) barrier(ctx context.Context) error {
	f := n.fresh
	ctx, cancel, start, epoch := f.begin(ctx)
	defer cancel()
	var index uint64
	if n.raft.IsLeader() {
		if err := n.raft.Raw().VerifyLeader().Error(); err != nil {
			f.commit(0, epoch)
			return fmt.Errorf("verify leadership: %w", err)
		}
		index = n.raft.Raw().LastIndex()
	} else {
		_, addr := n.raft.Leader()
		if addr == "" {
			f.commit(0, epoch)
			return consensus.ErrNoLeader
		}
		var ri readIndex
		if err := n.peerJSON(ctx, addr, http.MethodGet, "/internal/readindex?id="+n.id.NodeID, nil, &ri); err != nil {
			f.commit(0, epoch)
			return fmt.Errorf("read index from the leader: %w", err)
		}
		index = ri.Index
	}
	if err := n.waitApplied(ctx, index); err != nil {
		f.commit(0, epoch)
		return err
	}
	if !f.commit(start, epoch) {
		return fmt.Errorf("contact lost during the barrier")
	}
	return nil
}

// readIndex is the leader's answer to a barrier.
type readIndex struct {
	Index  uint64 `json:"index"`
	Leader string `json:"leader"`
}

// internalReadIndex (leader only): confirm leadership with a quorum, then
// answer the last log index; every write acknowledged before the request
// was sent is at or below it.
func (n *Node) internalReadIndex(w http.ResponseWriter, r *http.Request) error {
	if !n.raft.IsLeader() {
		return api.Errorf(http.StatusConflict, "not_leader", "not the leader")
	}
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > 128 {
		return api.BadRequest(api.CodeBadRequest, "id")
	}
	// Noted before the index is read: a fence that starts after a
	// revocation committed sees every grant whose index misses it.
	n.fresh.grant(id)
	if err := n.raft.Raw().VerifyLeader().Error(); err != nil {
		return api.Errorf(http.StatusConflict, "not_leader", "leadership not confirmed: %v", err)
	}
	httpapi.WriteJSON(w, http.StatusOK, readIndex{Index: n.raft.Raw().LastIndex(), Leader: n.id.NodeID})
	return nil
}

// internalApplied waits (at most ?wait_ms, ≤ 5 s) until this node has
// applied ?index: 204, or 503 when it has not.
func (n *Node) internalApplied(w http.ResponseWriter, r *http.Request) error {
	index, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if err != nil {
		return api.BadRequest(api.CodeBadRequest, "index")
	}
	ms, err := strconv.Atoi(r.URL.Query().Get("wait_ms"))
	if err != nil || ms < 0 || ms > 5000 {
		return api.BadRequest(api.CodeBadRequest, "wait_ms must be 0…5000")
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(ms)*time.Millisecond)
	defer cancel()
	if err := n.waitApplied(ctx, index); err != nil {
		return api.Errorf(http.StatusServiceUnavailable, CodeNotCaughtUp, "index %d not applied here", index)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// freshLoop keeps the certificate fresh: a barrier every window/3, or at
// once when kicked (a lost contact, an admission waiting).
func (n *Node) freshLoop(ctx context.Context) {
	f := n.fresh
	t := time.NewTicker(f.window / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
		err := n.barrier(ctx)
		switch {
		case err != nil && !failing:
			failing = true
			n.log.Warn("read barrier failed; refusing tasks until caught up", "err", err, "certificate_age", f.age())
		case err == nil && failing:
			failing = false
			n.log.Info("caught up with the leader; admitting tasks", "applied", n.raft.AppliedIndex())
		}
		if err != nil {
			// Do not spin against a leader that is not there.
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// contactLoop drops the certificate when this node loses contact with
// the leader or the leader changes, and notes when this node became
// leader (the fence waits out certificates earlier leaders granted).
func (n *Node) contactLoop(ctx context.Context) {
	f := n.fresh
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	var lastLeader string
	wasLeader := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leader, _ := n.raft.Leader()
		isLeader := n.raft.IsLeader()
		if isLeader && !wasLeader {
			f.leaderSince.Store(f.now())
		}
		wasLeader = isLeader
		lost := leader == ""
		if !isLeader {
			lc := n.raft.Raw().LastContact()
			lost = lost || lc.IsZero() || time.Since(lc) > lostContactAfter
		}
		if leader != lastLeader && lastLeader != "" {
			lost = true
		}
		lastLeader = leader
		if lost && f.cert.Load() != 0 {
			n.log.Info("lost contact with the leader; refusing tasks until caught up", "leader", leader)
			f.invalidate()
		}
	}
}

// fenceRevocation holds a revocation's acknowledgement until no node can
// admit under the lease any more: every node that may hold a certificate
// from before the revocation has applied it, or that certificate has
// expired. It asks the leader to run the fence; when that fails it waits
// out the window (a certificate is never fresh longer).
func (n *Node) fenceRevocation(ctx context.Context, index uint64) {
	start := time.Now()
	var err error
	if n.raft.IsLeader() {
		err = n.fence(ctx, index)
	} else if _, addr := n.raft.Leader(); addr == "" {
		err = consensus.ErrNoLeader
	} else {
		fctx, cancel := context.WithTimeout(ctx, n.fresh.window+2*time.Second)
		err = n.peerJSON(fctx, addr, http.MethodPost, "/internal/fence?index="+strconv.FormatUint(index, 10), nil, nil)
		cancel()
	}
	if err != nil {
		rest := n.fresh.window - time.Since(start)
		n.log.Warn("revocation fence failed; waiting out the freshness window", "index", index, "err", err, "wait", rest)
		if rest > 0 {
			time.Sleep(rest)
		}
		return
	}
	n.log.Debug("revocation fenced", "index", index, "ms", time.Since(start).Milliseconds())
}

// fence (leader): wait until every peer granted a barrier within the
// window has applied index, or its certificate expired; and until the
// window has passed since this node became leader (certificates earlier
// leaders granted) or last had to forget grants.
func (n *Node) fence(ctx context.Context, index uint64) error {
	f := n.fresh
	addrs := map[string]string{}
	if cf := n.raft.Raw().GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			addrs[string(s.ID)] = string(s.Address)
		}
	}
	var wg sync.WaitGroup
	for id, exp := range f.liveGrants() {
		if id == n.id.NodeID {
			continue
		}
		addr := addrs[id]
		if addr == "" {
			// Not in the configuration: only waiting proves it stale.
			addr = n.memberRaft(id)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			left := time.Duration(exp - f.now())
			if left <= 0 {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, left)
			defer cancel()
			if addr != "" {
				path := fmt.Sprintf("/internal/applied?index=%d&wait_ms=%d", index, min(left.Milliseconds()+1, 5000))
				if n.peerJSON(pctx, addr, http.MethodGet, path, nil, nil) == nil {
					return
				}
			}
			<-pctx.Done()
		}()
	}
	wg.Wait()
	if wait := time.Duration(max(f.leaderSince.Load(), f.forgotAt.Load()) + int64(f.window) - f.now()); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !n.raft.IsLeader() {
		return consensus.ErrNotLeader
	}
	return ctx.Err()
}

func (n *Node) internalFence(w http.ResponseWriter, r *http.Request) error {
	index, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if err != nil {
		return api.BadRequest(api.CodeBadRequest, "index")
	}
	if !n.raft.IsLeader() {
		return api.Errorf(http.StatusConflict, "not_leader", "not the leader")
	}
	if err := n.fence(r.Context(), index); err != nil {
		return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "fence: %v", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// memberRaft is a gossip member's cluster port ("" if unknown).
func (n *Node) memberRaft(id string) string {
	if n.mesh == nil || n.mesh.members == nil {
		return ""
	}
	for _, m := range n.mesh.members.Members() {
		if m.ID == id {
			return m.Raft
		}
	}
	return ""
}
