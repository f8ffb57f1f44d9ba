package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// Session state (docs/sessions.md): the session KV, scoped by the
// lease's tenant and session, written through Raft and read from this
// node's state, for tasks (sandbox.KV, one per task) and for clients
// (the /v1/sessions routes).

// Codes of the refusals this file adds (the KV's own codes are the
// sandbox's and the state machine's, one set for the API, JS and WASI).
const (
	CodeKVNotFound        = "kv_not_found"
	CodeSessionNotAllowed = "session_not_allowed"
)

// kvExpireEvery is how often the leader forgets expired entries; reads
// hide an entry past its TTL at once, and a put over quota drops its
// session's expired entries itself.
const kvExpireEvery = 10 * time.Second

// kvMaxListLimit bounds one page of a list (Workers KV's 1000).
const kvMaxListLimit = 1000

// kvNow is the session KV's clock.
func (n *Node) kvNow() time.Time {
	if n.cfg.KVNow != nil {
		return n.cfg.KVNow()
	}
	return n.now()
}

// kvScope is one session's KV with the profile limits that bind it.
type kvScope struct {
	tenant, session string
	limits          policy.KV // with defaults
	enabled         bool
}

func newKVScope(tenant, session string, p *policy.Profile) kvScope {
	return kvScope{tenant: tenant, session: session, limits: p.KV.WithDefaults(), enabled: p.KV.Enabled()}
}

func kvErr(code, format string, args ...any) error {
	return &sandbox.KVError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// checkKey applies the profile's key bound on top of the state
// machine's (empty, not UTF-8, NUL, 512 bytes).
func (s kvScope) checkKey(key string) error {
	if why := consensus.ValidKVKey(key); why != "" {
		return kvErr(sandbox.CodeKVInvalidKey, "%s", why)
	}
	if int64(len(key)) > s.limits.MaxKeyBytes {
		return kvErr(sandbox.CodeKVInvalidKey, "a key is at most %d bytes under this profile", s.limits.MaxKeyBytes)
	}
	return nil
}

func (s kvScope) check() error {
	if !s.enabled {
		return kvErr(sandbox.CodeKVDisabled, "the profile grants no session KV (kv.quota_bytes is 0)")
	}
	return nil
}

// kvGet reads a live entry from this node's state: nil when absent.
func (n *Node) kvGet(s kvScope, key string) (*consensus.KVEntry, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	e, err := n.state.KVGet(s.tenant, s.session, key, n.kvNow().UnixNano())
	if errors.Is(err, consensus.ErrNotFound) {
		return nil, nil
	}
	return e, err
}

// kvPut writes an entry through Raft and waits until this node applied
// it, so a read here after the put sees it.
func (n *Node) kvPut(ctx context.Context, s kvScope, key string, value []byte, o sandbox.KVPutOptions) (*consensus.KVPutResult, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	if int64(len(value)) > s.limits.MaxValueBytes {
		return nil, kvErr(sandbox.CodeKVTooLarge, "a value is at most %d bytes under this profile", s.limits.MaxValueBytes)
	}
	if len(o.Metadata) > consensus.MaxKVMetadataBytes {
		return nil, kvErr(sandbox.CodeKVTooLarge, "metadata is at most %d bytes", consensus.MaxKVMetadataBytes)
	}
	if len(o.Metadata) > 0 && !json.Valid(o.Metadata) {
		return nil, kvErr(sandbox.CodeKVInvalid, "metadata is not JSON")
	}
	ttl := s.limits.TTL.D()
	if o.TTLSeconds < 0 {
		return nil, kvErr(sandbox.CodeKVInvalidTTL, "expirationTtl must be a positive number of seconds")
	}
	if o.TTLSeconds > 0 && o.TTLSeconds < int64(ttl/time.Second) {
		ttl = time.Duration(o.TTLSeconds) * time.Second
	}
	now := n.kvNow()
	e := consensus.KVEntry{Tenant: s.tenant, Session: s.session, Key: key, Value: value, Metadata: o.Metadata,
		UpdatedAt: now.UnixNano(), ExpiresAt: now.Add(ttl).UnixNano()}
	res, err := n.propose(ctx, &consensus.PutKV{Entry: e, QuotaBytes: s.limits.QuotaBytes})
	if err != nil {
		return nil, kvProposeErr(err)
	}
	if err := n.waitApplied(ctx, res.Index); err != nil {
		return nil, kvErr(sandbox.CodeKVUnavailable, "the write is applied but this node has not caught up: %v", err)
	}
	v, _ := res.Value.(*consensus.KVPutResult)
	return v, nil
}

func (n *Node) kvDelete(ctx context.Context, s kvScope, key string) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.checkKey(key); err != nil {
		return err
	}
	res, err := n.propose(ctx, &consensus.DeleteKV{Tenant: s.tenant, Session: s.session, Key: key})
	if err != nil {
		return kvProposeErr(err)
	}
	if err := n.waitApplied(ctx, res.Index); err != nil {
		return kvErr(sandbox.CodeKVUnavailable, "the delete is applied but this node has not caught up: %v", err)
	}
	return nil
}

func (n *Node) kvList(s kvScope, o sandbox.KVListOptions) (*sandbox.KVList, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	limit := o.Limit
	if limit == 0 {
		limit = kvMaxListLimit
	}
	if limit < 1 || limit > kvMaxListLimit {
		return nil, kvErr(sandbox.CodeKVInvalid, "limit is 1-%d", kvMaxListLimit)
	}
	if len(o.Prefix) > consensus.MaxKVKeyBytes || len(o.Cursor) > consensus.MaxKVKeyBytes || !utf8.ValidString(o.Prefix) || !utf8.ValidString(o.Cursor) {
		return nil, kvErr(sandbox.CodeKVInvalid, "prefix and cursor are UTF-8 of at most %d bytes", consensus.MaxKVKeyBytes)
	}
	entries, more, err := n.state.KVList(s.tenant, s.session, o.Prefix, o.Cursor, limit, n.kvNow().UnixNano())
	if err != nil {
		return nil, err
	}
	out := &sandbox.KVList{Keys: make([]sandbox.KVKey, 0, len(entries)), ListComplete: !more}
	for _, e := range entries {
		out.Keys = append(out.Keys, sandbox.KVKey{Name: e.Key, Expiration: e.ExpiresAt / int64(time.Second), Metadata: e.Metadata})
	}
	if more && len(entries) > 0 {
		out.Cursor = entries[len(entries)-1].Key
	}
	return out, nil
}

// kvProposeErr maps a refused or failed KV write to a KVError.
func kvProposeErr(err error) error {
	var re *consensus.RefusedError
	if errors.As(err, &re) {
		return &sandbox.KVError{Code: re.Code, Message: re.Message}
	}
	return &sandbox.KVError{Code: sandbox.CodeKVUnavailable, Message: err.Error()}
}

// kvAPIError maps a KV error to the API's JSON error and status.
func kvAPIError(err error) error {
	var ke *sandbox.KVError
	if !errors.As(err, &ke) {
		return err
	}
	status := http.StatusBadRequest
	switch ke.Code {
	case sandbox.CodeKVQuota, sandbox.CodeKVOps:
		status = http.StatusTooManyRequests
	case sandbox.CodeKVTooLarge:
		status = http.StatusRequestEntityTooLarge
	case sandbox.CodeKVDisabled:
		status = http.StatusForbidden
	case sandbox.CodeKVUnavailable:
		return &api.Error{Status: http.StatusServiceUnavailable, Code: ke.Code, Message: ke.Message, RetryAfter: 1}
	}
	return &api.Error{Status: status, Code: ke.Code, Message: ke.Message}
}

// taskKV is one task's session KV: the sandbox's KV, bound to the lease,
// counting the task's operations against the profile's ops_per_task.
// Every call checks the lease again (a revoked or expired lease makes
// no more calls), and every call that ran is one tool_call_attempted
// event with the bytes that crossed.
type taskKV struct {
	n     *Node
	lease *consensus.Lease
	scope kvScope
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

// sessionKVFor is the KV of a task under l: nil when the lease names no
// session (the sandbox then refuses with kv_no_session).
func (n *Node) sessionKVFor(l *consensus.Lease, p *policy.Profile) sandbox.KV {
	if l.Session == "" {
		return nil
	}
	return &taskKV{n: n, lease: l, scope: newKVScope(l.Tenant, l.Session, p)}
}

// begin checks one call against the lease and the task's operations.
func (k *taskKV) begin() error {
	if err := k.scope.check(); err != nil {
		return err
	}
	if cur, err := k.n.state.Lease(k.lease.ID); err != nil || cur.Revoked() || !k.n.now().Before(cur.Expires()) {
		return kvErr(sandbox.CodeKVUnavailable, "the task's lease is revoked or expired")
	}
	if k.ops.Add(1) > k.scope.limits.OpsPerTask {
		return kvErr(sandbox.CodeKVOps, "a task makes at most %d KV calls under this profile (kv.ops_per_task)", k.scope.limits.OpsPerTask)
	}
	return nil
}

// done records a call that ran: one event, one log line, and the hook
// where the budgets issue meters it as a tool call.
func (k *taskKV) done(ctx context.Context, tool, key string, sent, received int, start time.Time, err error) {
	ev := events.ToolCallAttempted{Tool: tool, Destination: "session:" + k.scope.session, BytesSent: int64(sent),
		BytesReceived: int64(received), DurationMS: time.Since(start).Milliseconds()}
	var ke *sandbox.KVError
	if errors.As(err, &ke) {
		ev.Error = ke.Code
	}
	k.n.emit(ctx, ev)
	k.n.meterToolCall(ctx, k.lease, tool)
	k.n.log.Debug("kv call", "tool", tool, "tenant", k.scope.tenant, "session", k.scope.session, "key_bytes", len(key),
		"sent", sent, "received", received, "err", ev.Error)
}

func (k *taskKV) Get(ctx context.Context, key string) (*sandbox.KVValue, error) {
	if err := k.begin(); err != nil {
		return nil, err
	}
	start := time.Now()
	e, err := k.n.kvGet(k.scope, key)
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
	_, err := k.n.kvPut(ctx, k.scope, key, value, o)
	k.done(ctx, "kv.put", key, len(key)+len(value)+len(o.Metadata), 0, start, err)
	return err
}

func (k *taskKV) Delete(ctx context.Context, key string) error {
	if err := k.begin(); err != nil {
		return err
	}
	start := time.Now()
	err := k.n.kvDelete(ctx, k.scope, key)
	k.done(ctx, "kv.delete", key, len(key), 0, start, err)
	return err
}

func (k *taskKV) List(ctx context.Context, o sandbox.KVListOptions) (*sandbox.KVList, error) {
	if err := k.begin(); err != nil {
		return nil, err
	}
	start := time.Now()
	l, err := k.n.kvList(k.scope, o)
	got := 0
	if l != nil {
		for _, key := range l.Keys {
			got += len(key.Name) + len(key.Metadata)
		}
	}
	k.done(ctx, "kv.list", o.Prefix, len(o.Prefix)+len(o.Cursor), got, start, err)
	return l, err
}

// meterToolCall meters a task's KV call as one tool call of its tenant
// and profile (usage.go: the daily tool_calls envelope and chargeback).
func (n *Node) meterToolCall(_ context.Context, l *consensus.Lease, _ string) {
	n.meter().Add(l.Tenant, l.Profile, n.now(), consensus.UsageCounters{ToolCalls: 1})
}

// forgetExpiredKV is the state tiers' housekeeping: the leader forgets
// KV entries past their TTL in bounded batches (consensus.ExpireKV), as
// leases are forgotten; and beside it run the task history's batcher
// and purge (history.go).
func (n *Node) forgetExpiredKV(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		n.historyLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		n.purgeHistoryLoop(ctx)
	}()
	t := time.NewTicker(kvExpireEvery)
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
		n.expireKVOnce(ctx)
	}
}

// expireKVOnce proposes one ExpireKV at the leader's time.
func (n *Node) expireKVOnce(ctx context.Context) int {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := n.propose(cctx, &consensus.ExpireKV{Before: n.kvNow().UnixNano() + 1})
	if err != nil {
		n.log.Warn("forget expired kv entries", "err", err)
		return 0
	}
	k, _ := res.Value.(int)
	if k > 0 {
		n.log.Info("forgot expired kv entries", "entries", k)
	}
	return k
}

// The client routes: /v1/sessions/{session}/kv/… with a tenant key (its
// own tenant's sessions), a lease (its own session only) or the admin
// token (with ?tenant=). The limits are a profile's: the lease's; for a
// key or the admin, ?profile= (one the tenant may use) or else the
// tenant's allowed profile with the largest kv.quota_bytes.

// sessionScope resolves the caller's scope for a /v1/sessions request.
func (n *Node) sessionScope(r *http.Request) (kvScope, error) {
	if err := n.checkFresh(r.Context()); err != nil {
		return kvScope{}, err
	}
	session := r.PathValue("session")
	if !sessionPattern.MatchString(session) {
		return kvScope{}, api.BadRequest(api.CodeBadRequest, "a session id matches %s", sessionPattern)
	}
	c := httpapi.CallerOf(r.Context())
	if l := c.Lease; l != nil {
		if l.Session != session {
			return kvScope{}, &api.Error{Status: http.StatusForbidden, Code: CodeSessionNotAllowed, Message: "a lease reaches only its own session's state"}
		}
		b, err := n.state.Bundle(l.PolicyDigest)
		if err != nil {
			return kvScope{}, fmt.Errorf("bundle %s of lease %s: %w", l.PolicyDigest, l.ID, err)
		}
		p, ok := b.Profiles[l.Profile]
		if !ok {
			return kvScope{}, fmt.Errorf("profile %q missing from bundle %s", l.Profile, l.PolicyDigest)
		}
		return newKVScope(l.Tenant, session, p), nil
	}
	tenant := c.Tenant
	if c.Role == httpapi.Admin {
		tenant = r.URL.Query().Get("tenant")
		if tenant == "" {
			return kvScope{}, api.BadRequest(api.CodeBadRequest, "the admin names the session's tenant: ?tenant=")
		}
	}
	_, b, err := n.state.ActiveBundle(Env)
	if err != nil {
		return kvScope{}, fmt.Errorf("active bundle: %w", err)
	}
	t, ok := b.Tenants[tenant]
	if !ok {
		return kvScope{}, &api.Error{Status: http.StatusNotFound, Code: CodeKVNotFound, Message: "no such session"}
	}
	var best *policy.Profile
	if name := r.URL.Query().Get("profile"); name != "" {
		p, ok := b.Profiles[name]
		if !ok || !t.Allows(name) {
			return kvScope{}, &api.Error{Status: http.StatusForbidden, Code: api.CodeProfileNotAllowed, Message: fmt.Sprintf("tenant may not use profile %q", name)}
		}
		best = p
	} else {
		names := slices.Clone(t.Profiles)
		slices.Sort(names)
		for _, name := range names {
			if p, ok := b.Profiles[name]; ok && (best == nil || p.KV.QuotaBytes > best.KV.QuotaBytes) {
				best = p
			}
		}
	}
	if best == nil {
		best = &policy.Profile{}
	}
	return newKVScope(tenant, session, best), nil
}

// Headers of a KV entry in the API.
const (
	hdrKVExpiration = "Leash-Kv-Expiration" // unix seconds
	hdrKVMetadata   = "Leash-Kv-Metadata"   // JSON
)

func (n *Node) getSessionKey(w http.ResponseWriter, r *http.Request) error {
	s, err := n.sessionScope(r)
	if err != nil {
		return err
	}
	e, err := n.kvGet(s, r.PathValue("key"))
	if err != nil {
		return kvAPIError(err)
	}
	if e == nil {
		return &api.Error{Status: http.StatusNotFound, Code: CodeKVNotFound, Message: "no such key in this session"}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(hdrKVExpiration, strconv.FormatInt(e.ExpiresAt/int64(time.Second), 10))
	if len(e.Metadata) > 0 {
		w.Header().Set(hdrKVMetadata, string(e.Metadata))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.Value)
	return nil
}

func (n *Node) putSessionKey(w http.ResponseWriter, r *http.Request) error {
	s, err := n.sessionScope(r)
	if err != nil {
		return err
	}
	key := r.PathValue("key")
	var o sandbox.KVPutOptions
	if v := r.URL.Query().Get("expiration_ttl"); v != "" {
		ttl, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ttl <= 0 {
			return kvAPIError(kvErr(sandbox.CodeKVInvalidTTL, "expiration_ttl is a positive number of seconds"))
		}
		o.TTLSeconds = ttl
	}
	if m := r.Header.Get(hdrKVMetadata); m != "" {
		o.Metadata = json.RawMessage(m)
	}
	limit := s.limits.MaxValueBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(len(body)) > limit:
		return kvAPIError(kvErr(sandbox.CodeKVTooLarge, "a value is at most %d bytes under this profile", limit))
	case err != nil:
		return api.BadRequest(api.CodeBadRequest, "read the value: %v", err)
	}
	res, err := n.kvPut(r.Context(), s, key, body, o)
	if err != nil {
		return kvAPIError(err)
	}
	n.log.Info("session kv put", "tenant", s.tenant, "session", s.session, "key_bytes", len(key), "value_bytes", len(body),
		"session_bytes", res.Bytes, "caller", httpapi.CallerOf(r.Context()).Name())
	httpapi.WriteJSON(w, http.StatusOK, api.SessionPut{Key: key, SessionBytes: res.Bytes, SessionEntries: res.Entries, QuotaBytes: s.limits.QuotaBytes})
	return nil
}

func (n *Node) deleteSessionKey(w http.ResponseWriter, r *http.Request) error {
	s, err := n.sessionScope(r)
	if err != nil {
		return err
	}
	if err := n.kvDelete(r.Context(), s, r.PathValue("key")); err != nil {
		return kvAPIError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (n *Node) listSessionKeys(w http.ResponseWriter, r *http.Request) error {
	s, err := n.sessionScope(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	o := sandbox.KVListOptions{Prefix: q.Get("prefix"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		if o.Limit, err = strconv.Atoi(v); err != nil || o.Limit <= 0 {
			return kvAPIError(kvErr(sandbox.CodeKVInvalid, "limit is 1-%d", kvMaxListLimit))
		}
	}
	l, err := n.kvList(s, o)
	if err != nil {
		return kvAPIError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, l)
	return nil
}

// endSession drops a session's state (its KV entries); leases naming the
// session stay valid and start again from nothing.
func (n *Node) endSession(w http.ResponseWriter, r *http.Request) error {
	s, err := n.sessionScope(r)
	if err != nil {
		return err
	}
	res, err := n.propose(r.Context(), &consensus.EndSession{Tenant: s.tenant, Session: s.session})
	if err != nil {
		return kvAPIError(kvProposeErr(err))
	}
	if err := n.waitApplied(r.Context(), res.Index); err != nil {
		return kvAPIError(kvErr(sandbox.CodeKVUnavailable, "applied, but this node has not caught up: %v", err))
	}
	k, _ := res.Value.(int)
	n.log.Info("session ended", "tenant", s.tenant, "session", s.session, "entries", k, "caller", httpapi.CallerOf(r.Context()).Name())
	httpapi.WriteJSON(w, http.StatusOK, api.SessionEnded{Session: s.session, Deleted: k})
	return nil
}
