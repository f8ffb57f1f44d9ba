package node

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/apikey"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/record"
)

// MaxAPIKeyTTL bounds an expiring key's lifetime.
const MaxAPIKeyTTL = 366 * 24 * time.Hour

// createAPIKey makes an API key and answers its secret, once. Operators
// make operator, auditor and tenant keys; only an admin makes admin keys.
// A tenant key's tenant must be in the active bundle.
func (n *Node) createAPIKey(w http.ResponseWriter, r *http.Request) error {
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
		_, bundle, err := n.state.ActiveBundle(Env)
		if errors.Is(err, consensus.ErrNotFound) {
			return api.Errorf(http.StatusServiceUnavailable, api.CodeNoPolicy, "no policy bundle is active")
		}
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
	now := n.now()
	k := record.APIKey{ID: id, Role: req.Role, Tenant: req.Tenant, Name: req.Name, Hash: hash,
		CreatedAt: now.UnixNano(), CreatedBy: c.Name()}
	if req.TTLSeconds > 0 {
		k.ExpiresAt = now.Add(time.Duration(req.TTLSeconds) * time.Second).UnixNano()
	}
	res, err := n.propose(r.Context(), &consensus.CreateAPIKey{Key: k})
	if err != nil {
		return n.proposeError(err)
	}
	setIndex(w, res)
	n.log.Info("api key created", "key", id, "role", k.Role, "tenant", k.Tenant, "by", k.CreatedBy, "traceparent", obs.RequestTraceparent(r.Context()))
	out := apiKeyView(&k)
	out.Key = token
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// listAPIKeys answers GET /v1/apikeys?tenant=: a tenant's keys, or with no
// tenant the keys of admins, operators and auditors; never a secret.
func (n *Node) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := n.state.APIKeys(r.URL.Query().Get("tenant"))
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
func (n *Node) revokeAPIKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c := httpapi.CallerOf(r.Context())
	if !apikey.ValidID(id) {
		return api.Errorf(http.StatusNotFound, api.CodeAPIKeyNotFound, "no API key %q", id)
	}
	k, err := n.state.APIKey(id)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, api.CodeAPIKeyNotFound, "no API key %q", id)
	}
	if err != nil {
		return err
	}
	if k.Role == record.RoleAdmin && c.Role != httpapi.Admin {
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "only an admin revokes admin keys")
	}
	res, err := n.propose(r.Context(), &consensus.RevokeAPIKey{ID: id, By: c.Name(), At: n.now().UnixNano()})
	if err != nil {
		return n.proposeError(err)
	}
	setIndex(w, res)
	n.log.Info("api key revoked", "key", id, "role", k.Role, "tenant", k.Tenant, "by", c.Name(), "traceparent", obs.RequestTraceparent(r.Context()))
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
func (n *Node) listTenants(w http.ResponseWriter, r *http.Request) error {
	digest, bundle, err := n.state.ActiveBundle(Env)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusServiceUnavailable, api.CodeNoPolicy, "no policy bundle is active")
	}
	if err != nil {
		return err
	}
	out := api.TenantList{PolicyDigest: digest, Tenants: []api.Tenant{}}
	for _, name := range slices.Sorted(maps.Keys(bundle.Tenants)) {
		t := bundle.Tenants[name]
		keys, err := n.state.APIKeys(name)
		if err != nil {
			return err
		}
		out.Tenants = append(out.Tenants, api.Tenant{Name: name, Profiles: t.Profiles, Weight: max(t.Weight, 1),
			ModuleMaxBytes: t.Modules.Bytes(), ModuleMaxCount: t.Modules.Count(), APIKeys: len(keys)})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
