package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/apikey"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/record"
)

// Credentials is what Auth asks the node about a credential.
type Credentials interface {
	// Fresh fails when this node's replicated state is not caught up: a
	// key or a lease is honoured only on caught-up state, so a revoked
	// one is refused everywhere within the freshness window.
	Fresh(ctx context.Context) error
	// APIKey is the replicated record of key id (catching up with the
	// leader once when this node does not know it yet); nil when there
	// is none.
	APIKey(ctx context.Context, id string) (*record.APIKey, error)
	// VerifyLease checks the request's lease token; a refusal is an
	// *api.Error with the lease code.
	VerifyLease(r *http.Request) (*record.Lease, error)
}

// Auth finds out who the caller is from the bearer credential: the
// admin token, an API key (lsk_…) or a lease token.
type Auth struct {
	AdminToken string
	Creds      Credentials
	Now        func() time.Time
	Log        *slog.Logger
}

// Authenticate checks the bearer credential. Lease tokens are verified
// only for routes that take them (verification may wait for the leader).
func (a *Auth) Authenticate(r *http.Request, rs Roles) (*Caller, error) {
	tok := Bearer(r)
	switch {
	case tok == "" && rs&LeaseHolder != 0:
		return nil, api.Errorf(http.StatusUnauthorized, api.CodeLeaseMissing, "a lease token is required (Authorization: Bearer <token>), or a key of the role %s", rs)
	case tok == "":
		return nil, api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "%s needs a credential (Authorization: Bearer <admin token or API key>)", r.URL.Path)
	case a.AdminToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.AdminToken)) == 1:
		return &Caller{Role: Admin}, nil
	case apikey.Looks(tok):
		if err := a.Creds.Fresh(r.Context()); err != nil {
			return nil, err
		}
		return a.checkKey(r, tok)
	case rs&LeaseHolder != 0:
		if err := a.Creds.Fresh(r.Context()); err != nil {
			return nil, err
		}
		l, err := a.Creds.VerifyLease(r)
		if err != nil {
			return nil, err
		}
		return &Caller{Role: LeaseHolder, Tenant: l.Tenant, Lease: l}, nil
	}
	return nil, api.Errorf(http.StatusForbidden, api.CodeForbidden, "the credential is not the admin token or an API key; %s needs the role %s", r.URL.Path, rs)
}

// checkKey checks an API key against its replicated record.
func (a *Auth) checkKey(r *http.Request, tok string) (*Caller, error) {
	unauth := func(why string) error {
		if a.Log != nil {
			a.Log.Info("api key refused", "reason", why, "path", r.URL.Path, "traceparent", obs.RequestTraceparent(r.Context()))
		}
		return api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "the API key is not valid: %s", why)
	}
	id, secret, err := apikey.Parse(tok)
	if err != nil {
		return nil, unauth("malformed")
	}
	k, err := a.Creds.APIKey(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, unauth("unknown key")
	}
	if err := apikey.Check(k, secret, a.Now()); err != nil {
		switch {
		case errors.Is(err, apikey.ErrRevoked):
			return nil, unauth("revoked")
		case errors.Is(err, apikey.ErrExpired):
			return nil, unauth("expired")
		}
		return nil, unauth("unknown key") // a wrong secret says no more than an unknown id
	}
	role := roleOf(k.Role)
	if role == 0 {
		return nil, unauth("unknown role")
	}
	return &Caller{Role: role, Tenant: k.Tenant, KeyID: k.ID}, nil
}
