package node

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/lease"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sessions"
)

// DefaultLeaseTTL is used when a request names no ttl_seconds: the
// profile's max_lease_ttl, capped at this.
const DefaultLeaseTTL = 15 * time.Minute

// issueLease decides policy once: it resolves the intent to a profile of
// the active bundle, checks the tenant may use it and the TTL, replicates
// the lease through Raft and returns it as a signed token.
func (n *Node) issueLease(w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if e, ok := api.AsError(err); ok {
			n.metrics.LeaseRefused(e.Code)
		}
	}()
	var req api.LeaseRequest
	if err := httpapi.DecodeJSON(w, r, 64<<10, &req); err != nil {
		return err
	}
	c := httpapi.CallerOf(r.Context())
	if c.Role == httpapi.Tenant {
		// A tenant's key issues leases for its own tenant only.
		if req.Tenant == "" {
			req.Tenant = c.Tenant
		}
		if req.Tenant != c.Tenant {
			return api.Errorf(http.StatusForbidden, api.CodeForbidden, "this key is tenant %q's; it issues leases for that tenant only", c.Tenant)
		}
	}
	// The environment, then the digest: prod's canary takes a share of
	// lease ids, chosen from the id (docs/policy.md, "Canary").
	env := req.Env
	if env == "" {
		env = policy.EnvProd
	}
	if !policy.ValidEnv(env) {
		return api.BadRequest(consensus.CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", clipString(env, 64))
	}
	id := "lse_" + randomID(16)
	digest, canary, err := n.state.LeaseDigest(env, id)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusServiceUnavailable, api.CodeNoPolicy, "no policy bundle is active in %s", env)
	}
	if err != nil {
		return err
	}
	bundle, err := n.state.Bundle(digest)
	if err != nil {
		return err
	}
	t, ok := bundle.Tenants[req.Tenant]
	if !ok {
		return api.Errorf(http.StatusBadRequest, api.CodeUnknownTenant, "tenant %q is not in the active policy bundle", req.Tenant)
	}
	if err := n.checkBudget(req.Tenant); err != nil {
		return err
	}
	if !t.MayUse(env) {
		return api.Errorf(http.StatusForbidden, consensus.CodeEnvNotAllowed, "tenant %q may not issue leases in %s (tenants.%s.environments)", req.Tenant, env, req.Tenant)
	}
	if req.Intent != "" && req.Profile != "" {
		return api.BadRequest(api.CodeBadRequest, "name an intent or a profile, not both")
	}
	profileName, profile, err := bundle.ProfileFor(req.Intent, req.Profile)
	switch {
	case errors.Is(err, policy.ErrUnknownIntent):
		return api.Errorf(http.StatusBadRequest, api.CodeUnknownIntent, "intent %q is not in the active policy bundle", req.Intent)
	case errors.Is(err, policy.ErrUnknownProfile):
		return api.Errorf(http.StatusBadRequest, api.CodeUnknownProfile, "profile %q is not in the active policy bundle", req.Profile)
	}
	if !t.Allows(profileName) {
		return api.Errorf(http.StatusForbidden, api.CodeProfileNotAllowed, "tenant %q may not use profile %q", req.Tenant, profileName)
	}
	if f, err := n.state.FrozenProfile(profileName); err == nil {
		return api.Errorf(http.StatusConflict, consensus.CodeProfileFrozen, "profile %q is frozen (by %s: %s)", profileName, f.Action.By, f.Action.Reason)
	}
	class := req.Class
	if class == "" {
		class = consensus.ClassInteractive
	}
	if class != consensus.ClassInteractive && class != consensus.ClassBulk {
		return api.BadRequest(api.CodeInvalidClass, "class must be %q or %q", consensus.ClassInteractive, consensus.ClassBulk)
	}
	if req.Session != "" && !sessions.ValidID(req.Session) {
		return api.BadRequest(api.CodeBadRequest, "session must match %s", sessions.IDPattern())
	}
	maxTTL := profile.MaxLeaseTTL.D()
	ttl := min(maxTTL, DefaultLeaseTTL)
	if req.TTLSeconds < 0 {
		return api.BadRequest(api.CodeBadRequest, "ttl_seconds must be positive")
	}
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
		if ttl > maxTTL {
			return api.BadRequest(api.CodeTTLTooLong, "ttl_seconds %d is above profile %q's max_lease_ttl of %s", req.TTLSeconds, profileName, maxTTL)
		}
	}
	// Whole seconds: JWT times are seconds, and the token must match the
	// replicated record exactly.
	now := n.now().Truncate(time.Second)
	l := consensus.Lease{
		ID:           id,
		Tenant:       req.Tenant,
		Profile:      profileName,
		Intent:       req.Intent,
		PolicyDigest: digest,
		Env:          env,
		Class:        class,
		Session:      req.Session,
		IssuedAt:     now.UnixNano(),
		NotBefore:    now.UnixNano(),
		ExpiresAt:    now.Add(ttl).UnixNano(),
		IssuedBy:     n.id.NodeID,
		KID:          n.signer.KID(),
	}
	res, err := n.propose(r.Context(), &consensus.IssueLease{Lease: l})
	if err != nil {
		var re *consensus.RefusedError
		if errors.As(err, &re) && (re.Code == consensus.CodeEnvNotAllowed || re.Code == consensus.CodeUnknownEnv) {
			return n.policyProposeError(err)
		}
		return n.proposeError(err)
	}
	setIndex(w, res)
	tok, err := n.signer.Sign(&l)
	if err != nil {
		return err
	}
	n.log.Info("lease issued", "lease", l.ID, "tenant", l.Tenant, "profile", l.Profile, "policy_digest", digest,
		"env", env, "canary", canary, "class", class, "ttl_s", int(ttl.Seconds()), "traceparent", obs.RequestTraceparent(r.Context()))
	n.metrics.LeaseIssued(l.Profile, class)
	n.emit(events.WithScope(r.Context(), events.Scope{Tenant: l.Tenant, Lease: l.ID}), events.SandboxIssued{
		PolicyID: env, Canary: canary, PolicyDigest: digest, Profile: l.Profile, Intent: l.Intent, Class: class, Session: l.Session,
		TTLSeconds: int64(ttl.Seconds()), ExpiresAt: l.Expires()})
	out := leaseView(&l)
	out.Token = tok
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// leaseEnv is the environment a lease was issued in (prod for leases
// from before environments).
func leaseEnv(l *consensus.Lease) string {
	if l.Env == "" {
		return policy.EnvProd
	}
	return l.Env
}

func leaseView(l *consensus.Lease) api.Lease {
	return api.Lease{
		LeaseID: l.ID, Tenant: l.Tenant, Profile: l.Profile, PolicyDigest: l.PolicyDigest, Env: leaseEnv(l), Class: l.Class,
		Session: l.Session, IssuedAt: time.Unix(0, l.IssuedAt).UTC(), ExpiresAt: l.Expires(), Revoked: l.Revoked(),
	}
}

func (n *Node) getLease(w http.ResponseWriter, r *http.Request) error {
	l, err := n.callersLease(r)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, leaseView(l))
	return nil
}

// callersLease reads the lease the path names, if the caller may see it:
// staff see every lease, a tenant's key its own tenant's; another
// tenant's lease is not found, so a key learns nothing of other tenants.
func (n *Node) callersLease(r *http.Request) (*consensus.Lease, error) {
	id := r.PathValue("id")
	l, err := n.state.Lease(id)
	if errors.Is(err, consensus.ErrNotFound) || (err == nil && !httpapi.CallerOf(r.Context()).Sees(l.Tenant)) {
		return nil, api.Errorf(http.StatusNotFound, api.CodeLeaseNotFound, "no lease %q", id)
	}
	return l, err
}

// revokeLease revokes one lease on every node (through Raft); tasks
// running under it end as terminated:revoked.
func (n *Node) revokeLease(w http.ResponseWriter, r *http.Request) error {
	c := httpapi.CallerOf(r.Context())
	if !c.Staff() {
		if _, err := n.callersLease(r); err != nil {
			return err
		}
	}
	id := r.PathValue("id")
	reason := r.URL.Query().Get("reason")
	if len(reason) > 256 {
		return api.BadRequest(api.CodeBadRequest, "reason is longer than 256 bytes")
	}
	res, err := n.propose(r.Context(), &consensus.RevokeLease{LeaseID: id, Reason: reason, By: c.Name(), At: n.now().UnixNano()})
	if err != nil {
		return n.proposeError(err)
	}
	setIndex(w, res)
	n.log.Info("lease revoked", "lease", id, "reason", reason, "traceparent", obs.RequestTraceparent(r.Context()))
	scope := events.Scope{Lease: id}
	if lr, err := n.state.Lease(id); err == nil {
		scope.Tenant = lr.Tenant
	}
	n.emit(events.WithScope(r.Context(), scope), events.LeaseRevoked{Scope: "lease", Count: 1, Reason: reason, By: c.Name()})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// verifyLease checks a request's lease token and maps refusals to the
// API: 401 for a token that proves nothing, 403 for a valid but revoked
// lease.
func (n *Node) verifyLease(r *http.Request) (*consensus.Lease, error) {
	l, _, err := n.leases.Verify(httpapi.Bearer(r), n.now())
	if le := (*lease.Error)(nil); errors.As(err, &le) && (le.Code == api.CodeLeaseUnknown || le.Code == api.CodeLeaseUnknownKey) {
		// A lease issued a moment ago through another node may not have
		// reached this one: catch up with the leader once, then look
		// again (cluster.go).
		if serr := n.syncWithLeader(r.Context()); serr != nil {
			return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, RetryAfter: 1, Err: serr,
				Message: "this node does not know the lease yet and cannot reach the leader to catch up; retry"}
		}
		l, _, err = lease.Verify(httpapi.Bearer(r), n.state, n.now())
	}
	if err != nil {
		var le *lease.Error
		if errors.As(err, &le) {
			status := http.StatusUnauthorized
			if le.Code == api.CodeLeaseRevoked {
				status = http.StatusForbidden
			}
			n.metrics.LeaseRefused(le.Code)
			n.log.Info("lease refused", "code", le.Code, "reason", le.Message, "path", r.URL.Path, "traceparent", obs.RequestTraceparent(r.Context()))
			return nil, &api.Error{Status: status, Code: le.Code, Message: le.Message}
		}
		return nil, err
	}
	return l, nil
}

// leaseRetention is how long a lease is remembered after it expires.
// Its token is refused as expired by its own exp claim either way; the
// record stays a while for GET /v1/leases/{id} and investigations.
const leaseRetention = time.Hour

// forgetExpiredLeases keeps replicated state from growing with every
// lease ever issued: the leader forgets leases expired for longer than
// leaseRetention, in bounded batches, once a minute.
func (n *Node) forgetExpiredLeases(ctx context.Context) {
	t := time.NewTicker(time.Minute)
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
		res, err := n.propose(cctx, &consensus.ExpireLeases{Before: n.now().Add(-leaseRetention).UnixNano()})
		cancel()
		if err != nil {
			n.log.Warn("forget expired leases", "err", err)
			continue
		}
		if k, _ := res.Value.(int); k > 0 {
			n.log.Info("forgot expired leases", "leases", k)
		}
	}
}
