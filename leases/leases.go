// Package leases is the lease endpoints: issue (the policy decision made
// once: intent to profile, the tenant's rights, the TTL, then the lease
// replicated through Raft and answered as a signed token), read and
// revoke; and the leader's sweep of expired leases. Tokens are signed and
// verified by package lease; the records live in replicated state
// (consensus/leases.go).
package leases

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
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

// Node is what the lease endpoints need of the node.
type Node interface {
	// Propose applies a command through Raft (forwarded to the leader
	// from a follower) and waits for it.
	Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error)
	// ProposeError maps a failed Raft write to the API's error.
	ProposeError(err error) error
	// CheckBudget refuses a tenant whose budget is exhausted.
	CheckBudget(tenant string) error
	IsLeader() bool
}

// Metrics counts lease decisions.
type Metrics interface {
	LeaseIssued(profile, class string)
	LeaseRefused(code string)
}

// Config sets the service up.
type Config struct {
	NodeID string // names the issuing node in each lease
	State  *consensus.State
	Node   Node
	Signer *lease.Signer
	// Events receives sandbox_issued and lease_revoked.
	Events  events.Emitter
	Metrics Metrics
	Log     *slog.Logger
	Now     func() time.Time
}

// Service serves the lease endpoints.
type Service struct{ cfg Config }

// New returns the service; Run starts the expiry sweep.
func New(cfg Config) *Service {
	if cfg.Events == nil {
		cfg.Events = events.Discard
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Handlers are the lease routes, by operation name of httpapi.Table.
func (s *Service) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"issueLease":  s.issueLease,
		"getLease":    s.getLease,
		"revokeLease": s.revokeLease,
	}
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID is a lease id: lse_ and 16 random bytes in lower-case base32.
func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "lse_" + idEncoding.EncodeToString(b)
}

// proposeError maps a lease refused for its environment as the policy
// lifecycle does (403 env_not_allowed, 400 unknown_env); other failures
// as the node maps every write's.
func (s *Service) proposeError(err error) error {
	var re *consensus.RefusedError
	if errors.As(err, &re) {
		switch re.Code {
		case consensus.CodeEnvNotAllowed:
			return &api.Error{Status: http.StatusForbidden, Code: re.Code, Message: re.Message}
		case consensus.CodeUnknownEnv:
			return &api.Error{Status: http.StatusBadRequest, Code: re.Code, Message: re.Message}
		}
	}
	return s.cfg.Node.ProposeError(err)
}

// DefaultLeaseTTL is used when a request names no ttl_seconds: the
// profile's max_lease_ttl, capped at this.
const DefaultLeaseTTL = 15 * time.Minute

// issueLease decides policy once: it resolves the intent to a profile of
// the active bundle, checks the tenant may use it and the TTL, replicates
// the lease through Raft and returns it as a signed token.
func (s *Service) issueLease(w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if e, ok := api.AsError(err); ok {
			s.cfg.Metrics.LeaseRefused(e.Code)
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
		return api.BadRequest(consensus.CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", httpapi.Clip(env, 64))
	}
	id := newID()
	digest, canary, err := s.cfg.State.LeaseDigest(env, id)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusServiceUnavailable, api.CodeNoPolicy, "no policy bundle is active in %s", env)
	}
	if err != nil {
		return err
	}
	bundle, err := s.cfg.State.Bundle(digest)
	if err != nil {
		return err
	}
	t, ok := bundle.Tenants[req.Tenant]
	if !ok {
		return api.Errorf(http.StatusBadRequest, api.CodeUnknownTenant, "tenant %q is not in the active policy bundle", req.Tenant)
	}
	if err := s.cfg.Node.CheckBudget(req.Tenant); err != nil {
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
	if f, err := s.cfg.State.FrozenProfile(profileName); err == nil && !f.Admits(digest) {
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
	now := s.cfg.Now().Truncate(time.Second)
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
		IssuedBy:     s.cfg.NodeID,
		KID:          s.cfg.Signer.KID(),
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.IssueLease{Lease: l})
	if err != nil {
		return s.proposeError(err)
	}
	httpapi.SetIndex(w, res.Index)
	tok, err := s.cfg.Signer.Sign(&l)
	if err != nil {
		return err
	}
	s.cfg.Log.Info("lease issued", "lease", l.ID, "tenant", l.Tenant, "profile", l.Profile, "policy_digest", digest,
		"env", env, "canary", canary, "class", class, "ttl_s", int(ttl.Seconds()), "traceparent", obs.RequestTraceparent(r.Context()))
	s.cfg.Metrics.LeaseIssued(l.Profile, class)
	s.cfg.Events.Emit(events.WithScope(r.Context(), events.Scope{Tenant: l.Tenant, Lease: l.ID}), events.New(events.SandboxIssued{
		PolicyID: env, Canary: canary, PolicyDigest: digest, Profile: l.Profile, Intent: l.Intent, Class: class, Session: l.Session,
		TTLSeconds: int64(ttl.Seconds()), ExpiresAt: l.Expires()}))
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

func (s *Service) getLease(w http.ResponseWriter, r *http.Request) error {
	l, err := s.callersLease(r)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, leaseView(l))
	return nil
}

// callersLease reads the lease the path names, if the caller may see it:
// staff see every lease, a tenant's key its own tenant's; another
// tenant's lease is not found, so a key learns nothing of other tenants.
func (s *Service) callersLease(r *http.Request) (*consensus.Lease, error) {
	id := r.PathValue("id")
	l, err := s.cfg.State.Lease(id)
	if errors.Is(err, consensus.ErrNotFound) || (err == nil && !httpapi.CallerOf(r.Context()).Sees(l.Tenant)) {
		return nil, api.Errorf(http.StatusNotFound, api.CodeLeaseNotFound, "no lease %q", id)
	}
	return l, err
}

// revokeLease revokes one lease on every node (through Raft); tasks
// running under it end as terminated:revoked.
func (s *Service) revokeLease(w http.ResponseWriter, r *http.Request) error {
	c := httpapi.CallerOf(r.Context())
	if !c.Staff() {
		if _, err := s.callersLease(r); err != nil {
			return err
		}
	}
	id := r.PathValue("id")
	reason := r.URL.Query().Get("reason")
	if len(reason) > 256 {
		return api.BadRequest(api.CodeBadRequest, "reason is longer than 256 bytes")
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.RevokeLease{LeaseID: id, Reason: reason, By: c.Name(), At: s.cfg.Now().UnixNano()})
	if err != nil {
		return s.proposeError(err)
	}
	httpapi.SetIndex(w, res.Index)
	s.cfg.Log.Info("lease revoked", "lease", id, "reason", reason, "traceparent", obs.RequestTraceparent(r.Context()))
	scope := events.Scope{Lease: id}
	if lr, err := s.cfg.State.Lease(id); err == nil {
		scope.Tenant = lr.Tenant
	}
	s.cfg.Events.Emit(events.WithScope(r.Context(), scope), events.New(events.LeaseRevoked{Scope: "lease", Count: 1, Reason: reason, By: c.Name()}))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// leaseRetention is how long a lease is remembered after it expires.
// Its token is refused as expired by its own exp claim either way; the
// record stays a while for GET /v1/leases/{id} and investigations.
const leaseRetention = time.Hour

// Run keeps replicated state from growing with every lease ever issued
// until ctx ends: the leader forgets leases expired for longer than
// leaseRetention, in bounded batches, once a minute.
func (s *Service) Run(ctx context.Context) {
	consensus.Sweep{Every: time.Minute, Done: "forgot expired leases", Failed: "forget expired leases", Unit: "leases",
		Command: func() consensus.Command {
			return &consensus.ExpireLeases{Before: s.cfg.Now().Add(-leaseRetention).UnixNano()}
		}}.Run(ctx, s.cfg.Node, s.cfg.Log)
}
