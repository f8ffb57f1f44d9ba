package node

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/policy"
)

// Durable task history (docs/sessions.md, "History"): every finished
// task's record, bounded (state, outcome, usage, receipt index, response
// status and headers; no body, no logs), goes into replicated state in
// group-committed batches, so GET /v1/tasks/{id} finds it on any node
// until its tenant's retention (policy.Tenant.Retention) ends; the
// leader purges expired records in bounded batches. The node's own task
// record (tasks.go) keeps the whole result for this node's readers.

const (
	historyQueueLen   = 4096                   // records waiting for a batch; more are dropped (logged)
	historyBatchEvery = 200 * time.Millisecond // the longest a record waits for its batch
	historyPurgeEvery = time.Minute
	historyErrorBytes = 1024 // a task's error message is cut to this in history
)

// historyQueue is a node's records on their way to Raft.
type historyQueue struct {
	ch      chan consensus.TaskRecord
	dropped atomic.Int64
}

// histories holds each running node's queue (in-process tests run
// several nodes).
var histories sync.Map // *Node → *historyQueue

func (n *Node) historyQueue() *historyQueue {
	q, _ := histories.LoadOrStore(n, &historyQueue{ch: make(chan consensus.TaskRecord, historyQueueLen)})
	return q.(*historyQueue)
}

// historyRecord is t as history keeps it: bounded, without bodies or
// logs. ok is false when even that does not fit a record.
func historyRecord(t *api.Task, tenant string, expires time.Time) (consensus.TaskRecord, bool) {
	c := *t
	if t.Result != nil {
		r := *t.Result
		r.Logs = []api.LogLine{}
		if len(r.Error) > historyErrorBytes {
			r.Error = r.Error[:historyErrorBytes]
		}
		if r.Response != nil {
			r.Response = &api.TaskResponse{Status: r.Response.Status, Headers: r.Response.Headers}
			r.ResponseElided = true
		}
		c.Result = &r
	}
	b, err := json.Marshal(&c)
	if err == nil && len(b) > consensus.MaxTaskRecordBytes && c.Result != nil && c.Result.Response != nil {
		c.Result.Response.Headers = nil
		b, err = json.Marshal(&c)
	}
	if err != nil || len(b) > consensus.MaxTaskRecordBytes {
		return consensus.TaskRecord{}, false
	}
	return consensus.TaskRecord{ID: t.TaskID, Tenant: tenant, ExpiresAt: expires.UnixNano(), Task: b}, true
}

// recordHistory queues a finished task for replicated history; it never
// blocks the task's answer.
func (n *Node) recordHistory(l *consensus.Lease, t *api.Task) {
	retention := policy.DefaultTaskRetention.D()
	if b, err := n.state.Bundle(l.PolicyDigest); err == nil {
		retention = b.Tenants[l.Tenant].TaskRetention()
	}
	rec, ok := historyRecord(t, l.Tenant, n.now().Add(retention))
	if !ok {
		n.log.Warn("task record too large for history", "task", t.TaskID)
		return
	}
	q := n.historyQueue()
	select {
	case q.ch <- rec:
	default:
		if k := q.dropped.Add(1); k == 1 || k%1000 == 0 {
			n.log.Warn("history queue full; task records dropped from replicated history", "dropped", k)
		}
	}
}

// historyLoop group-commits queued records until ctx ends, then sends
// what is left.
func (n *Node) historyLoop(ctx context.Context) {
	q := n.historyQueue()
	defer histories.Delete(n)
	batch := make([]consensus.TaskRecord, 0, consensus.MaxTaskRecordsPerCommand)
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := n.propose(cctx, &consensus.PutTaskRecords{Records: batch})
		cancel()
		if err != nil {
			n.log.Warn("task records not replicated", "records", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	t := time.NewTicker(historyBatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// What is queued goes out in a last batch or two, bounded by
			// a short deadline: the node is stopping.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
		drain:
			for {
				select {
				case r := <-q.ch:
					batch = append(batch, r)
					if len(batch) == cap(batch) {
						flush(dctx)
					}
				default:
					break drain
				}
			}
			flush(dctx)
			return
		case r := <-q.ch:
			batch = append(batch, r)
			if len(batch) == cap(batch) {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		}
	}
}

// purgeHistoryLoop: the leader forgets records past their retention.
func (n *Node) purgeHistoryLoop(ctx context.Context) {
	t := time.NewTicker(historyPurgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.raft.IsLeader() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := n.propose(cctx, &consensus.PurgeTaskRecords{Before: n.now().UnixNano()})
		cancel()
		if err != nil {
			n.log.Warn("purge task history", "err", err)
			continue
		}
		if k, _ := res.Value.(int); k > 0 {
			n.log.Info("purged task history", "records", k)
		}
	}
}

// historyTask reads a task from replicated history, with its tenant.
func (n *Node) historyTask(id string) (*api.Task, string, bool) {
	rec, err := n.state.TaskRecord(id)
	if err != nil {
		return nil, "", false
	}
	var t api.Task
	if err := json.Unmarshal(rec.Task, &t); err != nil {
		n.log.Error("decode task record", "task", id, "err", err)
		return nil, "", false
	}
	return &t, rec.Tenant, true
}
