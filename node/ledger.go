package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/sandbox"
)

// Receipts: every task yields one receipt, signed by this node's receipt
// key and appended through Raft to the replicated ledger before the task's
// result is returned. Between the end of a task and the append, the
// receipt waits in a local spool (x/spool/), so a crash in that window
// loses nothing: the spool is appended again at start and every few
// seconds while a leader is reachable (drain), and the FSM skips a task
// attempt already in the ledger. The security runbook's governance
// entries share the spool (under governance/<id>/0) and the batches; the
// FSM appends each action id once.
const prefixSpool = consensus.PrefixLocal + "spool/"

// Bounds of one append batch.
const (
	maxBatchReceipts = 512
	maxBatchBytes    = 2 << 20
	receiptWait      = 30 * time.Second
	// drainEvery: how often receipts left in the spool (their append
	// failed: no leader in time) are appended again; spoolStale: the age
	// of the oldest that raises a receipt_spool_stale event; maxDrain
	// bounds one pass.
	drainEvery = 5 * time.Second
	spoolStale = 5 * time.Minute
	maxDrain   = 10000
)

// Receipt acknowledgement modes (Config.ReceiptAck, --receipt-ack;
// docs/ledger.md, "When a task's answer goes out").
const (
	// ReceiptAckLedger: a task's answer goes out once its receipt is in
	// the replicated ledger (its index is in the answer). The default.
	ReceiptAckLedger = "ledger"
	// ReceiptAckSpool: a task's answer goes out once its receipt is
	// fsynced in this node's spool; the append to the ledger follows
	// (group-committed at once while a leader is reachable, retried from
	// the spool otherwise, after a crash too). The answer has no receipt
	// index; the task record (GET /v1/tasks/{id}) and the task's event
	// carry it once the receipt is appended.
	ReceiptAckSpool = "spool"
)

// ErrReceiptNotDurable means a receipt could not be appended in time; it
// stays in the spool and is appended later.
var ErrReceiptNotDurable = errors.New("receipt not yet in the ledger")

func (n *Node) checkpointKeyRecord(now int64) (*consensus.PutNodeKey, error) {
	cpub := n.id.CheckpointKey.Public().(ed25519.PublicKey)
	text, err := ledger.NoteVerifierKey(n.id.NodeID, cpub)
	if err != nil {
		return nil, err
	}
	return &consensus.PutNodeKey{Key: consensus.NodeKey{KID: ledger.KeyID(cpub), NodeID: n.id.NodeID, Use: consensus.KeyUseNote,
		Algorithm: "EdDSA", PublicKey: cpub, Text: text, AddedAt: now}}, nil
}

// receipts batches envelopes into AppendReceipts commands: while one batch
// is in flight, the next one gathers (group commit), so receipts add
// little latency at low load and few Raft entries at high load.
type receipts struct {
	n        *Node
	in       chan *pendingReceipt
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu       sync.Mutex
	inflight map[string]bool // spool keys queued or in a batch
	stale    bool            // a receipt_spool_stale event was emitted
}

type pendingReceipt struct {
	env []byte
	// resubmitted: from the spool of an earlier run; it may be in the
	// ledger already.
	resubmitted bool
	spool       []byte // spool key
	// spooled: the spool write succeeded (synced when submitted so).
	spooled bool
	// appended, when set, runs in the batcher once the append is decided
	// (index, or err), before ready is closed; what it writes to wb
	// commits with the batch's spool deletions, in one Pebble batch.
	appended func(wb *pebble.Batch, index int64, err error)
	index    int64
	err      error
	ready    chan struct{}
}

func (n *Node) startReceipts() {
	r := &receipts{n: n, in: make(chan *pendingReceipt, 4096), stop: make(chan struct{}), done: make(chan struct{}),
		inflight: map[string]bool{}}
	n.receipts = r
	go r.loop()
	// Receipts spooled before a crash or shutdown go in first, then any
	// whose append fails, while a leader is reachable.
	go r.drainLoop()
}

// close stops batching once every queued receipt had its turn.
func (r *receipts) close() {
	r.stopOnce.Do(func() {
		// Let queued receipts go first: the loop drains r.in before it
		// sees stop only if they are already there.
		deadline := time.After(receiptWait)
		for len(r.in) > 0 {
			select {
			case <-deadline:
			case <-time.After(5 * time.Millisecond):
				continue
			}
			break
		}
		close(r.stop)
		<-r.done
	})
}

func (r *receipts) loop() {
	defer close(r.done)
	for {
		var batch []*pendingReceipt
		select {
		case p := <-r.in:
			batch = append(batch, p)
		case <-r.stop:
			return
		}
		size := len(batch[0].env)
	gather:
		for len(batch) < maxBatchReceipts && size < maxBatchBytes {
			select {
			case p := <-r.in:
				batch = append(batch, p)
				size += len(p.env)
			default:
				break gather
			}
		}
		r.append(batch)
	}
}

// append proposes one batch, retrying while there is no leader, for at
// most receiptWait; receipts that still fail stay spooled.
func (r *receipts) append(batch []*pendingReceipt) {
	envs := make([][]byte, len(batch))
	mayRepeat := false
	for i, p := range batch {
		envs[i] = p.env
		mayRepeat = mayRepeat || p.resubmitted
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), receiptWait)
	defer cancel()
	// Retry while there is no leader (an election, a partition healing);
	// any other error is final.
	var last error
	res, err := backoff.Retry(ctx, func() (*consensus.Result, error) {
		res, err := r.n.propose(ctx, &consensus.AppendReceipts{Envelopes: envs, MayRepeat: mayRepeat})
		switch {
		case err == nil:
			return res, nil
		case errors.Is(err, consensus.ErrNoLeader) || errors.Is(err, consensus.ErrNotLeader):
			mayRepeat = true // the failed attempt may still have been applied
			last = err
			return nil, err
		}
		return nil, backoff.Permanent(err)
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 10 * time.Millisecond, Multiplier: 2, MaxInterval: time.Second,
	}), backoff.WithMaxElapsedTime(0))
	if err != nil && ctx.Err() != nil && last != nil {
		err = last // what kept the batch out, not the deadline
	}
	// One Pebble batch: the appended receipts leave the spool, and what
	// their tasks record on the append (their task records) goes in.
	wb := r.n.db.NewBatch()
	defer wb.Close()
	if err == nil {
		ar, ok := res.Value.(*consensus.AppendResult)
		if !ok || len(ar.Indexes) != len(batch) {
			err = fmt.Errorf("append receipts: unexpected result %T", res.Value)
		} else {
			for i, p := range batch {
				p.index = ar.Indexes[i]
				if p.spool != nil {
					_ = wb.Delete(p.spool, nil)
				}
			}
			r.n.metrics.LedgerBatch(len(batch), time.Since(start))
			r.n.metrics.LedgerSize(uint64(ar.Size))
		}
	}
	if err != nil {
		r.n.log.Error("receipts not appended; they stay spooled", "receipts", len(batch), "err", err)
	}
	r.n.log.Debug("receipts appended", "receipts", len(batch), "ms", time.Since(start).Milliseconds())
	for _, p := range batch {
		if err != nil {
			p.err = fmt.Errorf("%w: %v", ErrReceiptNotDurable, err)
		}
		if p.appended != nil {
			p.appended(wb, p.index, p.err)
		}
	}
	if !wb.Empty() {
		if cerr := wb.Commit(pebble.NoSync); cerr != nil {
			r.n.log.Error("spool and task records after an append", "err", cerr)
		}
	}
	r.mu.Lock()
	for _, p := range batch {
		delete(r.inflight, string(p.spool))
	}
	r.mu.Unlock()
	for _, p := range batch {
		close(p.ready)
	}
}

// submit spools an envelope and queues it; wait for p.ready. mayRepeat:
// the ledger may hold this attempt already (its append is then skipped).
// sync: the spool write is fsynced before submit returns (p.spooled
// says it succeeded); otherwise it is not (the ledger is then the
// durable record once the append is acknowledged, and the spool covers
// a crash of the process, not of the machine). with, when set, adds
// writes to the spool write's Pebble batch. appended: see
// pendingReceipt.
func (r *receipts) submit(taskID string, attempt int, env []byte, mayRepeat, sync bool,
	with func(*pebble.Batch), appended func(*pebble.Batch, int64, error)) *pendingReceipt {
	p := &pendingReceipt{env: env, ready: make(chan struct{}), resubmitted: mayRepeat, appended: appended,
		spool: []byte(prefixSpool + taskID + "/" + strconv.Itoa(attempt))}
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	wb := r.n.db.NewBatch()
	_ = wb.Set(p.spool, env, nil)
	if with != nil {
		with(wb)
	}
	if err := wb.Commit(opt); err != nil {
		r.n.log.Error("spool receipt", "task", taskID, "err", err)
	} else {
		p.spooled = true
	}
	_ = wb.Close()
	r.mu.Lock()
	r.inflight[string(p.spool)] = true
	r.mu.Unlock()
	select {
	case r.in <- p:
	case <-r.stop:
		r.mu.Lock()
		delete(r.inflight, string(p.spool))
		r.mu.Unlock()
		p.err = fmt.Errorf("%w: node is stopping", ErrReceiptNotDurable)
		if p.appended != nil {
			wb := r.n.db.NewBatch()
			p.appended(wb, 0, p.err)
			_ = wb.Commit(pebble.NoSync)
			_ = wb.Close()
		}
		close(p.ready)
	}
	return p
}

// drainLoop appends the spool at start and then every drainEvery while a
// leader is reachable, and keeps the spool's metrics current.
func (r *receipts) drainLoop() {
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		if id, _ := r.n.raft.Leader(); id != "" {
			r.drain()
		}
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// drain queues again every spooled receipt not queued or in a batch
// already (appended as possibly repeated: the FSM skips an attempt the
// ledger has), and reports the spool's depth and oldest age.
func (r *receipts) drain() {
	it, err := r.n.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixSpool), UpperBound: consensus.PrefixEnd([]byte(prefixSpool))})
	if err != nil {
		return
	}
	var todo []*pendingReceipt
	depth := 0
	var oldest time.Time
	r.mu.Lock()
	for it.First(); it.Valid() && depth < maxDrain; it.Next() {
		depth++
		if end := receiptEnd(it.Value()); !end.IsZero() && (oldest.IsZero() || end.Before(oldest)) {
			oldest = end
		}
		k := string(it.Key())
		if r.inflight[k] {
			continue
		}
		r.inflight[k] = true
		todo = append(todo, &pendingReceipt{env: append([]byte(nil), it.Value()...), spool: []byte(k), resubmitted: true, ready: make(chan struct{})})
	}
	r.mu.Unlock()
	_ = it.Close()

	age := time.Duration(0)
	if !oldest.IsZero() {
		age = max(r.n.now().Sub(oldest), 0)
	}
	r.n.metrics.ReceiptSpool(depth, age)
	r.mu.Lock()
	raise := age > spoolStale && !r.stale
	r.stale = depth > 0 && (r.stale || raise)
	r.mu.Unlock()
	if raise {
		r.n.log.Warn("receipts wait in the spool for the ledger", "receipts", depth, "oldest_age_s", int64(age.Seconds()))
		r.n.emit(context.Background(), events.ReceiptSpoolStale{Node: r.n.id.NodeID, Receipts: depth,
			OldestAgeSeconds: int64(age.Seconds()), ThresholdSeconds: int64(spoolStale.Seconds())})
	}
	if len(todo) == 0 {
		return
	}
	r.n.log.Info("appending spooled receipts", "receipts", len(todo))
	for i, p := range todo {
		select {
		case r.in <- p:
		case <-r.stop:
			r.mu.Lock()
			for _, q := range todo[i:] {
				delete(r.inflight, string(q.spool))
			}
			r.mu.Unlock()
			return
		}
	}
}

// receiptEnd is when a spooled receipt's task ended, or when a spooled
// governance entry's action was taken (zero if it cannot be read).
func receiptEnd(env []byte) time.Time {
	e, err := ledger.DecodeEnvelope(env)
	if err != nil {
		return time.Time{}
	}
	var rc struct {
		End time.Time `json:"end"`
		At  time.Time `json:"at"`
	}
	if json.Unmarshal(e.Payload, &rc) != nil {
		return time.Time{}
	}
	if e.PayloadType == ledger.GovernancePayloadType {
		return rc.At
	}
	return rc.End
}

// appendGovernance spools a signed governance entry (fsynced) and
// appends it with the receipts; it waits for the entry's ledger index
// until ctx ends. An entry not appended by then stays spooled: the drain
// appends it once a leader is reachable, after a restart too, and the
// FSM keeps one entry per id however often it is appended.
func (n *Node) appendGovernance(ctx context.Context, id string, env []byte) (int64, error) {
	if n.receipts == nil {
		return -1, errors.New("governance entry: the ledger's batcher is not running")
	}
	p := n.receipts.submit("governance/"+id, 0, env, false, true, nil, nil)
	select {
	case <-p.ready:
	case <-ctx.Done():
		return -1, fmt.Errorf("%w: %v", ErrReceiptNotDurable, context.Cause(ctx))
	}
	if p.err != nil {
		return -1, p.err
	}
	return p.index, nil
}

// receiptFor builds and signs the receipt of a finished task.
func (n *Node) receiptFor(l *consensus.Lease, t *sandbox.Task, res *sandbox.Result) ([]byte, error) {
	rc := &ledger.Receipt{
		LeaseID:         l.ID,
		Tenant:          l.Tenant,
		Profile:         l.Profile,
		PolicyDigest:    l.PolicyDigest,
		ModuleDigest:    t.Module.Digest,
		TaskID:          t.ID,
		RequestSHA256:   sha256Hex(t.Request.Body),
		ResponseSHA256:  sha256Hex(res.Response.Body),
		NodeID:          n.id.NodeID,
		Start:           res.Start.UTC(),
		End:             res.End.UTC(),
		CPUMillis:       res.Usage.CPU.Milliseconds(),
		MemoryPeakBytes: res.Usage.MemoryPeakBytes,
		EgressBytesOut:  res.Usage.EgressBytesOut,
		EgressBytesIn:   res.Usage.EgressBytesIn,
		Destinations:    capList(res.Usage.Destinations, ledger.MaxDestinations),
		Outcome:         string(res.Outcome),
		Reason:          res.Reason(),
		Traceparent:     t.Traceparent,
		Attempt:         max(t.Attempt, 1),
	}
	if rc.Destinations == nil {
		rc.Destinations = []string{}
	}
	rc.BlockedAttempts = n.blockedAttempts(t.ID)
	return ledger.SignReceiptCanonical(n.id.ReceiptKey, "", rc)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func capList(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// record signs a task's receipt and queues it for the ledger; with adds
// writes to the spool write's batch, appended runs in the batcher once
// the append is decided (see pendingReceipt). With spooled
// (ReceiptAckSpool) the spool write is synced, and record returns as
// soon as it is: acked is then true and ref nil. Otherwise record waits
// until the receipt is in the ledger, or ctx ends.
func (n *Node) record(ctx context.Context, l *consensus.Lease, t *sandbox.Task, res *sandbox.Result, spooled bool,
	with func(*pebble.Batch), appended func(*pebble.Batch, int64, error)) (ref *api.ReceiptRef, acked bool, err error) {
	env, err := n.receiptFor(l, t, res)
	if err != nil {
		return nil, false, fmt.Errorf("sign receipt: %w", err)
	}
	p := n.receipts.submit(t.ID, t.Attempt, env, false, spooled, with, appended)
	if spooled && p.spooled {
		return nil, true, nil
	}
	select {
	case <-p.ready:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("%w: %v", ErrReceiptNotDurable, context.Cause(ctx))
	}
	if p.err != nil {
		return nil, false, p.err
	}
	return &api.ReceiptRef{Index: p.index}, false, nil
}

// recordUnrun signs and appends the receipt of a bulk attempt that has
// no result from the node that was to run it: lost with that node
// (terminated:node_lost, appended by the node that reclaimed the claim),
// or cancelled while queued (cancelled, by the node that took the
// cancel). It does not wait: the spool keeps it until it is appended. If
// the lost node's own receipt made it to the ledger first, this one is
// skipped (one receipt per attempt).
func (n *Node) recordUnrun(t *consensus.QueueTask, attempt int, outcome string) {
	if n.receipts == nil || n.cfg.Unaudited {
		return
	}
	now := n.now().UTC()
	start := now
	for _, a := range t.History {
		if a.N == attempt && a.ClaimedAt > 0 && a.ClaimedAt <= now.UnixNano() {
			start = time.Unix(0, a.ClaimedAt).UTC()
		}
	}
	tp := t.Spec.Traceparent
	if tp == "" {
		tp = obs.ParseTraceparent("")
	}
	rc := &ledger.Receipt{
		LeaseID: t.LeaseID, Tenant: t.Tenant, Profile: t.Profile, PolicyDigest: t.PolicyDigest,
		ModuleDigest: t.Spec.ModuleDigest, TaskID: t.ID, RequestSHA256: sha256Hex(t.Spec.Body), ResponseSHA256: sha256Hex(nil),
		NodeID: n.id.NodeID, Start: start, End: now, Destinations: []string{},
		Outcome: outcome, Traceparent: tp, Attempt: max(attempt, 1),
	}
	b, err := ledger.SignReceiptCanonical(n.id.ReceiptKey, "", rc)
	if err == nil {
		n.receipts.submit(t.ID, rc.Attempt, b, true, false, nil, nil)
		n.log.Info("receipt of an attempt that did not run here", "task", t.ID, "attempt", rc.Attempt, "outcome", outcome)
		return
	}
	n.log.Error("sign the receipt of an unrun attempt", "task", t.ID, "attempt", attempt, "err", err)
}

// cosign signs this node's view of the log every second when it grew, and
// submits the signature; the FSM merges it into the shared checkpoint.
func (n *Node) cosignLoop(ctx context.Context) {
	signer, err := ledger.NewNoteSigner(n.id.NodeID, n.id.CheckpointKey)
	if err != nil {
		n.log.Error("checkpoint signer", "err", err)
		return
	}
	var signed int64 = -1
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		view, err := n.state.Ledger()
		if err != nil {
			continue
		}
		cp, err := view.Log.Checkpoint(view.Reader)
		view.Close()
		if err != nil || cp.Size <= signed || cp.Size == 0 {
			continue
		}
		note, err := ledger.SignCheckpoint(cp, signer)
		if err != nil {
			n.log.Error("sign checkpoint", "err", err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = n.propose(cctx, &consensus.CosignCheckpoint{Note: note})
		cancel()
		if err != nil {
			n.log.Warn("co-sign checkpoint", "size", cp.Size, "err", err)
			continue
		}
		signed = cp.Size
	}
}

// blockedAttempts lists what the egress gateway refused for a running
// task, sorted, at most ledger.MaxBlockedAttempts.
func (n *Node) blockedAttempts(taskID string) []ledger.BlockedAttempt {
	out := []ledger.BlockedAttempt{}
	for k, c := range n.tasks.blockedOf(taskID) {
		out = append(out, ledger.BlockedAttempt{Tool: "fetch", Destination: k[0], Clause: k[1], Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Destination != out[j].Destination {
			return out[i].Destination < out[j].Destination
		}
		return out[i].Clause < out[j].Clause
	})
	if len(out) > ledger.MaxBlockedAttempts {
		out = out[:ledger.MaxBlockedAttempts]
	}
	return out
}
