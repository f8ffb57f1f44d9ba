package sessions

import (
	"context"
	"encoding/json"
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
// record (node/tasks.go) keeps the whole result for this node's readers.

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

// RecordHistory queues a finished task for replicated history; it never
// blocks the task's answer.
func (s *Service) RecordHistory(l *consensus.Lease, t *api.Task) {
	retention := policy.DefaultTaskRetention.D()
	if b, err := s.cfg.State.Bundle(l.PolicyDigest); err == nil {
		retention = b.Tenants[l.Tenant].TaskRetention()
	}
	rec, ok := historyRecord(t, l.Tenant, s.cfg.Now().Add(retention))
	if !ok {
		s.cfg.Log.Warn("task record too large for history", "task", t.TaskID)
		return
	}
	q := &s.history
	select {
	case q.ch <- rec:
	default:
		if k := q.dropped.Add(1); k == 1 || k%1000 == 0 {
			s.cfg.Log.Warn("history queue full; task records dropped from replicated history", "dropped", k)
		}
	}
}

// historyLoop group-commits queued records until ctx ends, then sends
// what is left.
func (s *Service) historyLoop(ctx context.Context) {
	q := &s.history
	batch := make([]consensus.TaskRecord, 0, consensus.MaxTaskRecordsPerCommand)
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := s.cfg.Node.Propose(cctx, &consensus.PutTaskRecords{Records: batch})
		cancel()
		if err != nil {
			s.cfg.Log.Warn("task records not replicated", "records", len(batch), "err", err)
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

// HistoryTask reads a task from replicated history, with its tenant.
func (s *Service) HistoryTask(id string) (*api.Task, string, bool) {
	rec, err := s.cfg.State.TaskRecord(id)
	if err != nil {
		return nil, "", false
	}
	var t api.Task
	if err := json.Unmarshal(rec.Task, &t); err != nil {
		s.cfg.Log.Error("decode task record", "task", id, "err", err)
		return nil, "", false
	}
	return &t, rec.Tenant, true
}
