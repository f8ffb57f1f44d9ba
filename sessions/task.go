package sessions

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// taskKV is one task's session KV: the sandbox's KV, bound to the lease,
// counting the task's operations against the profile's ops_per_task.
// Every call checks the lease again (a revoked or expired lease makes
// no more calls), and every call that ran is one tool_call_attempted
// event with the bytes that crossed.
type taskKV struct {
	s     *Service
	lease *consensus.Lease
	scope scope
	ops   atomic.Int64
}

var (
	_ sandbox.KV       = (*taskKV)(nil)
	_ sandbox.KVBinder = (*taskKV)(nil)
)

// KVBinding is the name of a JS worker's binding: the profile's
// kv.binding (default SESSION), or none when the profile grants no KV.
func (k *taskKV) KVBinding() string {
	if !k.scope.enabled {
		return ""
	}
	return k.scope.limits.Binding
}

// KVFor is the KV of a task under l and its profile p: nil when the
// lease names no session (the sandbox then refuses with kv_no_session).
func (s *Service) KVFor(l *consensus.Lease, p *policy.Profile) sandbox.KV {
	if l.Session == "" {
		return nil
	}
	return &taskKV{s: s, lease: l, scope: newScope(l.Tenant, l.Session, p)}
}

// begin checks one call against the lease and the task's operations.
func (k *taskKV) begin() error {
	if err := k.scope.check(); err != nil {
		return err
	}
	if cur, err := k.s.cfg.State.Lease(k.lease.ID); err != nil || cur.Revoked() || !k.s.cfg.Now().Before(cur.Expires()) {
		return kvErr(sandbox.CodeKVUnavailable, "the task's lease is revoked or expired")
	}
	if k.ops.Add(1) > k.scope.limits.OpsPerTask {
		return kvErr(sandbox.CodeKVOps, "a task makes at most %d KV calls under this profile (kv.ops_per_task)", k.scope.limits.OpsPerTask)
	}
	return nil
}

// done records a call that ran: one event, one log line, and the meter
// (one tool call of the lease's tenant and profile).
func (k *taskKV) done(ctx context.Context, tool, key string, sent, received int, start time.Time, err error) {
	ev := events.ToolCallAttempted{Tool: tool, Destination: "session:" + k.scope.session, BytesSent: int64(sent),
		BytesReceived: int64(received), DurationMS: time.Since(start).Milliseconds()}
	var ke *sandbox.KVError
	if errors.As(err, &ke) {
		ev.Error = ke.Code
	}
	k.s.cfg.Events.Emit(ctx, events.New(ev))
	k.s.cfg.Node.MeterToolCall(k.lease)
	k.s.cfg.Log.Debug("kv call", "tool", tool, "tenant", k.scope.tenant, "session", k.scope.session, "key_bytes", len(key),
		"sent", sent, "received", received, "err", ev.Error)
}

func (k *taskKV) Get(ctx context.Context, key string) (*sandbox.KVValue, error) {
	if err := k.begin(); err != nil {
		return nil, err
	}
	start := time.Now()
	e, err := k.s.get(k.scope, key)
	var got int
	var v *sandbox.KVValue
	if e != nil {
		got = len(e.Value) + len(e.Metadata)
		v = &sandbox.KVValue{Value: e.Value, Metadata: e.Metadata, Expiration: e.ExpiresAt / int64(time.Second)}
	}
	k.done(ctx, "kv.get", key, len(key), got, start, err)
	return v, err
}

func (k *taskKV) Put(ctx context.Context, key string, value []byte, o sandbox.KVPutOptions) error {
	if err := k.begin(); err != nil {
		return err
	}
	start := time.Now()
	_, err := k.s.put(ctx, k.scope, key, value, o)
	k.done(ctx, "kv.put", key, len(key)+len(value)+len(o.Metadata), 0, start, err)
	return err
}

func (k *taskKV) Delete(ctx context.Context, key string) error {
	if err := k.begin(); err != nil {
		return err
	}
	start := time.Now()
	err := k.s.delete(ctx, k.scope, key)
	k.done(ctx, "kv.delete", key, len(key), 0, start, err)
	return err
}

func (k *taskKV) List(ctx context.Context, o sandbox.KVListOptions) (*sandbox.KVList, error) {
	if err := k.begin(); err != nil {
		return nil, err
	}
	start := time.Now()
	l, err := k.s.list(k.scope, o)
	got := 0
	if l != nil {
		for _, key := range l.Keys {
			got += len(key.Name) + len(key.Metadata)
		}
	}
	k.done(ctx, "kv.list", o.Prefix, len(o.Prefix)+len(o.Cursor), got, start, err)
	return l, err
}
