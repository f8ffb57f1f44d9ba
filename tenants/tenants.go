// Package tenants is what the API says of tenants and their credentials:
// API keys (made, listed, revoked through Raft; a secret shown once), the
// active bundle's tenants, and a tenant's capabilities (the profiles it
// may use and the intents that lead to them). Keys are checked on every
// request by httpapi's authentication (apikey.Check); the records live in
// replicated state (consensus/apikeys.go).
package tenants

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/apikey"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/record"
)

// Node is what the tenant endpoints need of the node.
type Node interface {
	// Propose applies a command through Raft (forwarded to the leader
	// from a follower) and waits for it.
	Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error)
	// ProposeError maps a failed Raft write to the API's error.
	ProposeError(err error) error
}

// Config sets the service up.
type Config struct {
	State *consensus.State
	Node  Node
	Log   *slog.Logger
	Now   func() time.Time
	// Env is the policy environment whose active bundle names the
	// tenants.
	Env string
}

// Service serves the tenant endpoints.
type Service struct{ cfg Config }

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Handlers are the tenant routes, by operation name of httpapi.Table.
func (s *Service) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"createAPIKey":    s.createAPIKey,
		"listAPIKeys":     s.listAPIKeys,
		"revokeAPIKey":    s.revokeAPIKey,
		"listTenants":     s.listTenants,
		"getCapabilities": s.getCapabilities,
	}
}

// activeBundle is the bundle tenants are read from: 503 no_policy when
// there is none.
func (s *Service) activeBundle() (string, *policy.Bundle, error) {
	digest, b, err := s.cfg.State.ActiveBundle(s.cfg.Env)
	if errors.Is(err, consensus.ErrNotFound) {
		return "", nil, api.Errorf(http.StatusServiceUnavailable, api.CodeNoPolicy, "no policy bundle is active")
	}
	return digest, b, err
}

// MaxAPIKeyTTL bounds an expiring key's lifetime.
const MaxAPIKeyTTL = 366 * 24 * time.Hour

// createAPIKey makes an API key and answers its secret, once. Operators
// make operator, auditor and tenant keys; only an admin makes admin keys.
// A tenant key's tenant must be in the active bundle.
func (s *Service) createAPIKey(w http.ResponseWriter, r *http.Request) error {
	var req api.APIKeyRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	c := httpapi.CallerOf(r.Context())
	switch {
	case !record.ValidRole(req.Role):
		return api.BadRequest(api.CodeBadRequest, "role must be admin, operator, auditor or tenant")
	case req.Role == record.RoleAdmin && c.Role != httpapi.Admin:
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "only an admin makes admin keys")
	case (req.Role == record.RoleTenant) != (req.Tenant != ""):
		return api.BadRequest(api.CodeBadRequest, "a tenant key names its tenant; keys of other roles name none")
	case len(req.Name) > 128:
		return api.BadRequest(api.CodeBadRequest, "name is longer than 128 bytes")
	case req.TTLSeconds < 0 || time.Duration(req.TTLSeconds)*time.Second > MaxAPIKeyTTL:
		return api.BadRequest(api.CodeBadRequest, "ttl_seconds must be 0 (no expiry) up to %d", int64(MaxAPIKeyTTL.Seconds()))
	}
	if req.Tenant != "" {
		_, bundle, err := s.activeBundle()
		if err != nil {
			return err
		}
		if _, ok := bundle.Tenants[req.Tenant]; !ok {
			return api.Errorf(http.StatusBadRequest, api.CodeUnknownTenant, "tenant %q is not in the active policy bundle", req.Tenant)
		}
	}
	token, id, hash, err := apikey.New()
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	k := record.APIKey{ID: id, Role: req.Role, Tenant: req.Tenant, Name: req.Name, Hash: hash,
		CreatedAt: now.UnixNano(), CreatedBy: c.Name()}
	if req.TTLSeconds > 0 {
		k.ExpiresAt = now.Add(time.Duration(req.TTLSeconds) * time.Second).UnixNano()
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.CreateAPIKey{Key: k})
	if err != nil {
		return s.cfg.Node.ProposeError(err)
	}
	httpapi.SetIndex(w, res.Index)
	s.cfg.Log.Info("api key created", "key", id, "role", k.Role, "tenant", k.Tenant, "by", k.CreatedBy, "traceparent", obs.RequestTraceparent(r.Context()))
	out := apiKeyView(&k)
	out.Key = token
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// listAPIKeys answers GET /v1/apikeys?tenant=: a tenant's keys, or with no
// tenant the keys of admins, operators and auditors; never a secret.
func (s *Service) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.cfg.State.APIKeys(r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	out := api.APIKeyList{Keys: make([]api.APIKey, 0, len(ks))}
	for i := range ks {
		out.Keys = append(out.Keys, apiKeyView(&ks[i]))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// revokeAPIKey revokes a key on every node. Only an admin revokes an
// admin key.
func (s *Service) revokeAPIKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c := httpapi.CallerOf(r.Context())
	if !apikey.ValidID(id) {
		return api.Errorf(http.StatusNotFound, api.CodeAPIKeyNotFound, "no API key %q", id)
	}
	k, err := s.cfg.State.APIKey(id)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, api.CodeAPIKeyNotFound, "no API key %q", id)
	}
	if err != nil {
		return err
	}
	if k.Role == record.RoleAdmin && c.Role != httpapi.Admin {
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "only an admin revokes admin keys")
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.RevokeAPIKey{ID: id, By: c.Name(), At: s.cfg.Now().UnixNano()})
	if err != nil {
		return s.cfg.Node.ProposeError(err)
	}
	httpapi.SetIndex(w, res.Index)
	s.cfg.Log.Info("api key revoked", "key", id, "role", k.Role, "tenant", k.Tenant, "by", c.Name(), "traceparent", obs.RequestTraceparent(r.Context()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func apiKeyView(k *record.APIKey) api.APIKey {
	v := api.APIKey{KeyID: k.ID, Role: k.Role, Tenant: k.Tenant, Name: k.Name, CreatedBy: k.CreatedBy,
		CreatedAt: time.Unix(0, k.CreatedAt).UTC()}
	if k.ExpiresAt != 0 {
		t := time.Unix(0, k.ExpiresAt).UTC()
		v.ExpiresAt = &t
	}
	return v
}

// listTenants answers GET /v1/tenants: the active bundle's tenants, with
// the number of API keys each holds.
func (s *Service) listTenants(w http.ResponseWriter, r *http.Request) error {
	digest, bundle, err := s.activeBundle()
	if err != nil {
		return err
	}
	out := api.TenantList{PolicyDigest: digest, Tenants: []api.Tenant{}}
	for _, name := range slices.Sorted(maps.Keys(bundle.Tenants)) {
		t := bundle.Tenants[name]
		keys, err := s.cfg.State.APIKeys(name)
		if err != nil {
			return err
		}
		out.Tenants = append(out.Tenants, api.Tenant{Name: name, Profiles: t.Profiles, Weight: max(t.Weight, 1),
			ModuleMaxBytes: t.Modules.Bytes(), ModuleMaxCount: t.Modules.Count(), APIKeys: len(keys)})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// getCapabilities answers GET /v1/capabilities: what a tenant may do under
// the active (stable prod) bundle, for clients and models to read before
// they try. A tenant's key or lease reads its own tenant; staff name one.
func (s *Service) getCapabilities(w http.ResponseWriter, r *http.Request) error {
	c := httpapi.CallerOf(r.Context())
	name := r.URL.Query().Get("tenant")
	switch {
	case c.Staff() && name == "":
		return api.BadRequest(api.CodeBadRequest, "name the tenant: ?tenant=")
	case !c.Staff() && name == "":
		name = c.Tenant
	case !c.Staff() && name != c.Tenant:
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "this credential is tenant %q's; it reads that tenant's capabilities only", c.Tenant)
	}
	digest, bundle, err := s.activeBundle()
	if err != nil {
		return err
	}
	t, ok := bundle.Tenants[name]
	if !ok {
		return api.Errorf(http.StatusBadRequest, api.CodeUnknownTenant, "tenant %q is not in the active policy bundle", httpapi.Clip(name, 64))
	}
	httpapi.WriteJSON(w, http.StatusOK, capabilities(name, digest, bundle, t))
	return nil
}

// capabilities is a tenant's part of a bundle: the profiles it may use
// and the intents that lead to them.
func capabilities(name, digest string, b *policy.Bundle, t *policy.Tenant) api.Capabilities {
	out := api.Capabilities{Tenant: name, PolicyDigest: digest, Intents: []api.CapabilityIntent{}, Profiles: []api.CapabilityProfile{},
		Budget: api.CapabilityBudget{CPUMsPerDay: t.Budget.CPUMsPerDay, EgressBytesPerDay: t.Budget.EgressBytesPerDay,
			ToolCallsPerDay: t.Budget.ToolCallsPerDay, TasksPerDay: t.Budget.TasksPerDay}}
	for _, intent := range slices.Sorted(maps.Keys(b.Intents)) {
		if p := b.Intents[intent]; t.Allows(p) {
			out.Intents = append(out.Intents, api.CapabilityIntent{Intent: intent, Profile: p})
		}
	}
	for _, pn := range slices.Sorted(maps.Keys(b.Profiles)) {
		p := b.Profiles[pn]
		if !t.Allows(pn) {
			continue
		}
		cp := api.CapabilityProfile{Name: pn, Description: p.Description,
			Limits: api.CapabilityLimits{CPUMs: p.Limits.CPUMs, WallMs: p.Limits.WallMs, MemoryMB: p.Limits.MemoryMB,
				OutputBytes: p.Limits.OutputBytes, LogBytes: p.Limits.LogBytes, Subrequests: p.Limits.Subrequests},
			MaxLeaseTTLSeconds: int64(p.MaxLeaseTTL.D().Seconds()),
			Egress:             api.CapabilityEgress{Allow: []api.CapabilityAllow{}, MaxResponseBytes: p.Egress.MaxResponseBytes},
			KVQuotaBytes:       p.KV.QuotaBytes}
		for _, a := range p.Egress.Allow {
			cp.Egress.Allow = append(cp.Egress.Allow, api.CapabilityAllow{Host: a.Host, Ports: a.Ports, Methods: a.Methods})
		}
		out.Profiles = append(out.Profiles, cp)
	}
	return out
}
