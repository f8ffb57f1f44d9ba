// Package lease is the lease check, in one place: leases are compact JWS
// tokens (EdDSA only, with a kid) whose claims bind tenant, profile,
// policy digest, class, session, lease id and expiry. Verify checks a
// token completely — algorithm, key, signature, times, and the lease's
// replicated record (unknown, revoked) — and names the first failure with
// a stable code.
package lease

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/leash-dev/leash/record"
)

// MaxTokenBytes bounds a token before it is parsed.
const MaxTokenBytes = 4096

// Claims are a lease token's claims.
type Claims struct {
	jwt.Claims
	Tenant       string `json:"tenant"`
	Profile      string `json:"profile"`
	PolicyDigest string `json:"policy_digest"`
	Class        string `json:"class"`
	Session      string `json:"session,omitempty"`
}

// KeyID is the RFC 7638 JWK thumbprint of an Ed25519 public key: the kid
// of tokens it verifies.
func KeyID(pub ed25519.PublicKey) string {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(fmt.Sprintf("lease: thumbprint of an Ed25519 key: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// Signer signs lease tokens with a node's lease key.
type Signer struct {
	kid    string
	signer jose.Signer
}

// NewSigner returns a signer for key.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	kid := KeyID(key.Public().(ed25519.PublicKey))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return nil, fmt.Errorf("new lease signer: %w", err)
	}
	return &Signer{kid: kid, signer: s}, nil
}

// KID is the signer's key id.
func (s *Signer) KID() string { return s.kid }

// Sign makes the token of a replicated lease.
func (s *Signer) Sign(l *record.Lease) (string, error) {
	c := Claims{
		Claims: jwt.Claims{
			Issuer:    l.IssuedBy,
			Subject:   l.Tenant,
			ID:        l.ID,
			IssuedAt:  jwt.NewNumericDate(time.Unix(0, l.IssuedAt)),
			NotBefore: jwt.NewNumericDate(time.Unix(0, l.NotBefore)),
			Expiry:    jwt.NewNumericDate(time.Unix(0, l.ExpiresAt)),
			Audience:  jwt.Audience{"leash"},
		},
		Tenant:       l.Tenant,
		Profile:      l.Profile,
		PolicyDigest: l.PolicyDigest,
		Class:        l.Class,
		Session:      l.Session,
	}
	tok, err := jwt.Signed(s.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign lease %s: %w", l.ID, err)
	}
	return tok, nil
}

// State is what Verify reads from replicated state.
type State interface {
	NodeKey(kid string) (*record.NodeKey, error)
	Lease(id string) (*record.Lease, error)
}

// Error is a refused token. Code is one of the Code* refusal codes.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func refuse(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Leeway tolerates clock skew between nodes on nbf and exp.
const Leeway = 2 * time.Second

// Verify checks a token at time now and returns its replicated lease.
func Verify(token string, st State, now time.Time) (*record.Lease, *Claims, error) {
	c, kid, err := verifySignature(token, st)
	if err != nil {
		return nil, nil, err
	}
	return checkClaims(c, kid, st, now)
}

// verifySignature parses a token and checks its algorithm, key and
// signature: the costly, time-independent part of Verify.
func verifySignature(token string, st State) (*Claims, string, error) {
	if token == "" {
		return nil, "", refuse(CodeMissing, "a lease token is required (Authorization: Bearer <token>)")
	}
	if len(token) > MaxTokenBytes {
		return nil, "", refuse(CodeMalformed, "token is longer than %d bytes", MaxTokenBytes)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, "", refuse(CodeAlgorithm, "algorithm %q is not allowed; leases are EdDSA", alg.Got)
		}
		return nil, "", refuse(CodeMalformed, "token is not a compact JWS: %v", err)
	}
	if len(tok.Headers) != 1 {
		return nil, "", refuse(CodeMalformed, "token must have exactly one signature")
	}
	h := tok.Headers[0]
	if h.KeyID == "" {
		return nil, "", refuse(CodeUnknownKey, "token has no kid")
	}
	if h.JSONWebKey != nil || len(h.ExtraHeaders) > 0 && hasKeyHeaders(h.ExtraHeaders) {
		// Keys named inside the token are never trusted.
		return nil, "", refuse(CodeMalformed, "token carries its own key")
	}
	key, err := leaseKey(st, h.KeyID)
	if err != nil {
		return nil, "", err
	}
	var c Claims
	if err := tok.Claims(ed25519.PublicKey(key.PublicKey), &c); err != nil {
		return nil, "", refuse(CodeBadSignature, "signature does not verify with key %q", h.KeyID)
	}
	return &c, h.KeyID, nil
}

func leaseKey(st State, kid string) (*record.NodeKey, error) {
	key, err := st.NodeKey(kid)
	if err != nil || key.Use != record.KeyUseLease || len(key.PublicKey) != ed25519.PublicKeySize {
		return nil, refuse(CodeUnknownKey, "no lease key with kid %q", kid)
	}
	return key, nil
}

// checkClaims checks times and the replicated lease.
func checkClaims(c *Claims, kid string, st State, now time.Time) (*record.Lease, *Claims, error) {
	err := c.Claims.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{"leash"}, Time: now}, Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return nil, nil, refuse(CodeExpired, "lease %s expired at %s", c.ID, c.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, nil, refuse(CodeNotYetValid, "lease %s is valid from %s", c.ID, c.NotBefore.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return nil, nil, refuse(CodeMalformed, "claims: %v", err)
	}
	if c.Expiry == nil || c.ID == "" {
		return nil, nil, refuse(CodeMalformed, "token lacks exp or jti")
	}
	l, err := st.Lease(c.ID)
	if err != nil {
		return nil, nil, refuse(CodeUnknown, "lease %s is not known here (it may not have replicated yet, or it expired and was forgotten)", c.ID)
	}
	if l.Revoked() {
		return nil, nil, refuse(CodeRevoked, "lease %s was revoked", l.ID)
	}
	// The token must say exactly what replicated state says.
	if l.Tenant != c.Tenant || l.Profile != c.Profile || l.PolicyDigest != c.PolicyDigest || l.Class != c.Class ||
		l.Session != c.Session || l.KID != kid || l.ExpiresAt/1e9 != c.Expiry.Time().Unix() {
		return nil, nil, refuse(CodeBadSignature, "token claims do not match lease %s", l.ID)
	}
	if now.UnixNano() >= l.ExpiresAt+int64(Leeway) {
		return nil, nil, refuse(CodeExpired, "lease %s expired", l.ID)
	}
	return l, c, nil
}

// Verifier is Verify with a bounded cache of tokens whose signature has
// been checked: a client that sends the same lease token many times pays
// for one Ed25519 verification. Everything that can change — the key still
// published, times, revocation, the replicated lease — is checked on
// every call.
type Verifier struct {
	st   State
	seen *lru.Cache[[32]byte, verified] // safe for concurrent use
}

type verified struct {
	claims *Claims
	kid    string
}

// NewVerifier returns a Verifier caching at most size tokens.
func NewVerifier(st State, size int) *Verifier {
	seen, _ := lru.New[[32]byte, verified](max(size, 1)) // errs only for size < 1
	return &Verifier{st: st, seen: seen}
}

// Verify is Verify with the cache.
func (v *Verifier) Verify(token string, now time.Time) (*record.Lease, *Claims, error) {
	h := sha256.Sum256([]byte(token))
	if hit, ok := v.seen.Get(h); ok {
		if _, err := leaseKey(v.st, hit.kid); err != nil {
			return nil, nil, err
		}
		return checkClaims(hit.claims, hit.kid, v.st, now)
	}
	c, kid, err := verifySignature(token, v.st)
	if err != nil {
		return nil, nil, err
	}
	l, c, err := checkClaims(c, kid, v.st, now)
	if err != nil {
		return nil, nil, err
	}
	v.seen.Add(h, verified{claims: c, kid: kid})
	return l, c, nil
}

func hasKeyHeaders(h map[jose.HeaderKey]any) bool {
	for _, k := range []jose.HeaderKey{"jku", "x5u", "x5c"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// JWKS is the JSON Web Key Set of the given lease keys.
func JWKS(keys []record.NodeKey) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		if k.Use != record.KeyUseLease {
			continue
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: ed25519.PublicKey(k.PublicKey), KeyID: k.KID, Algorithm: string(jose.EdDSA), Use: "sig"})
	}
	return set
}
