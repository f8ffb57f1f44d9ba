package sessions

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// The client routes: /v1/sessions/{session}/kv/… with a tenant key (its
// own tenant's sessions), a lease (its own session only) or the admin
// token (with ?tenant=). The limits are a profile's: the lease's; for a
// key or the admin, ?profile= (one the tenant may use) or else the
// tenant's allowed profile with the largest kv.quota_bytes.

// scopeOf resolves the caller's scope for a /v1/sessions request.
func (s *Service) scopeOf(r *http.Request) (scope, error) {
	if err := s.cfg.Node.CheckFresh(r.Context()); err != nil {
		return scope{}, err
	}
	session := r.PathValue("session")
	if !ValidID(session) {
		return scope{}, api.BadRequest(api.CodeBadRequest, "a session id matches %s", IDPattern())
	}
	c := httpapi.CallerOf(r.Context())
	if l := c.Lease; l != nil {
		if l.Session != session {
			return scope{}, &api.Error{Status: http.StatusForbidden, Code: CodeSessionNotAllowed, Message: "a lease reaches only its own session's state"}
		}
		b, err := s.cfg.State.Bundle(l.PolicyDigest)
		if err != nil {
			return scope{}, fmt.Errorf("bundle %s of lease %s: %w", l.PolicyDigest, l.ID, err)
		}
		p, ok := b.Profiles[l.Profile]
		if !ok {
			return scope{}, fmt.Errorf("profile %q missing from bundle %s", l.Profile, l.PolicyDigest)
		}
		return newScope(l.Tenant, session, p), nil
	}
	tenant := c.Tenant
	if c.Role == httpapi.Admin {
		tenant = r.URL.Query().Get("tenant")
		if tenant == "" {
			return scope{}, api.BadRequest(api.CodeBadRequest, "the admin names the session's tenant: ?tenant=")
		}
	}
	_, b, err := s.cfg.State.ActiveBundle(s.cfg.Env)
	if err != nil {
		return scope{}, fmt.Errorf("active bundle: %w", err)
	}
	t, ok := b.Tenants[tenant]
	if !ok {
		return scope{}, &api.Error{Status: http.StatusNotFound, Code: CodeKVNotFound, Message: "no such session"}
	}
	var best *policy.Profile
	if name := r.URL.Query().Get("profile"); name != "" {
		p, ok := b.Profiles[name]
		if !ok || !t.Allows(name) {
			return scope{}, &api.Error{Status: http.StatusForbidden, Code: api.CodeProfileNotAllowed, Message: fmt.Sprintf("tenant may not use profile %q", name)}
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
	return newScope(tenant, session, best), nil
}

// Headers of a KV entry in the API.
const (
	hdrKVExpiration = "Leash-Kv-Expiration" // unix seconds
	hdrKVMetadata   = "Leash-Kv-Metadata"   // JSON
)

func (s *Service) getSessionKey(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scopeOf(r)
	if err != nil {
		return err
	}
	e, err := s.get(sc, r.PathValue("key"))
	if err != nil {
		return apiError(err)
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

func (s *Service) putSessionKey(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scopeOf(r)
	if err != nil {
		return err
	}
	key := r.PathValue("key")
	var o sandbox.KVPutOptions
	if v := r.URL.Query().Get("expiration_ttl"); v != "" {
		ttl, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ttl <= 0 {
			return apiError(kvErr(sandbox.CodeKVInvalidTTL, "expiration_ttl is a positive number of seconds"))
		}
		o.TTLSeconds = ttl
	}
	if m := r.Header.Get(hdrKVMetadata); m != "" {
		o.Metadata = json.RawMessage(m)
	}
	limit := sc.limits.MaxValueBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(len(body)) > limit:
		return apiError(kvErr(sandbox.CodeKVTooLarge, "a value is at most %d bytes under this profile", limit))
	case err != nil:
		return api.BadRequest(api.CodeBadRequest, "read the value: %v", err)
	}
	res, err := s.put(r.Context(), sc, key, body, o)
	if err != nil {
		return apiError(err)
	}
	s.cfg.Log.Info("session kv put", "tenant", sc.tenant, "session", sc.session, "key_bytes", len(key), "value_bytes", len(body),
		"session_bytes", res.Bytes, "caller", httpapi.CallerOf(r.Context()).Name())
	httpapi.WriteJSON(w, http.StatusOK, api.SessionPut{Key: key, SessionBytes: res.Bytes, SessionEntries: res.Entries, QuotaBytes: sc.limits.QuotaBytes})
	return nil
}

func (s *Service) deleteSessionKey(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scopeOf(r)
	if err != nil {
		return err
	}
	if err := s.delete(r.Context(), sc, r.PathValue("key")); err != nil {
		return apiError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) listSessionKeys(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scopeOf(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	o := sandbox.KVListOptions{Prefix: q.Get("prefix"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		if o.Limit, err = strconv.Atoi(v); err != nil || o.Limit <= 0 {
			return apiError(kvErr(sandbox.CodeKVInvalid, "limit is 1-%d", kvMaxListLimit))
		}
	}
	l, err := s.list(sc, o)
	if err != nil {
		return apiError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, l)
	return nil
}

// endSession drops a session's state (its KV entries); leases naming the
// session stay valid and start again from nothing.
func (s *Service) endSession(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scopeOf(r)
	if err != nil {
		return err
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.EndSession{Tenant: sc.tenant, Session: sc.session})
	if err != nil {
		return apiError(proposeErr(err))
	}
	if err := s.cfg.Node.WaitApplied(r.Context(), res.Index); err != nil {
		return apiError(kvErr(sandbox.CodeKVUnavailable, "applied, but this node has not caught up: %v", err))
	}
	k, _ := res.Value.(int)
	s.cfg.Log.Info("session ended", "tenant", sc.tenant, "session", sc.session, "entries", k, "caller", httpapi.CallerOf(r.Context()).Name())
	httpapi.WriteJSON(w, http.StatusOK, api.SessionEnded{Session: sc.session, Deleted: k})
	return nil
}
