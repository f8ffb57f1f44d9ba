package lease

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/record"
)

type fakeState struct {
	keys   map[string]*record.NodeKey
	leases map[string]*record.Lease
}

func (f *fakeState) NodeKey(kid string) (*record.NodeKey, error) {
	if k, ok := f.keys[kid]; ok {
		return k, nil
	}
	return nil, errNotFound
}

func (f *fakeState) Lease(id string) (*record.Lease, error) {
	if l, ok := f.leases[id]; ok {
		c := *l
		return &c, nil
	}
	return nil, errNotFound
}

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T) (*Signer, *fakeState, ed25519.PublicKey) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, err := NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeState{
		keys:   map[string]*record.NodeKey{s.KID(): {KID: s.KID(), NodeID: "n1", Use: record.KeyUseLease, Algorithm: "EdDSA", PublicKey: pub}},
		leases: map[string]*record.Lease{},
	}
	return s, st, pub
}

func newLease(st *fakeState, s *Signer, id string, issued time.Time, ttl time.Duration) *record.Lease {
	l := &record.Lease{ID: id, Tenant: "demo", Profile: "docs-reader", PolicyDigest: "sha256:abc", Class: "interactive",
		IssuedAt: issued.UnixNano(), NotBefore: issued.UnixNano(), ExpiresAt: issued.Add(ttl).UnixNano(), IssuedBy: "n1", KID: s.KID()}
	st.leases[id] = l
	return l
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerify(t *testing.T) {
	s, st, pub := setup(t)
	good := newLease(st, s, "l-good", now.Add(-time.Minute), 10*time.Minute)
	goodTok, _ := s.Sign(good)
	parts := strings.Split(goodTok, ".")

	expired := newLease(st, s, "l-expired", now.Add(-time.Hour), 10*time.Minute)
	expiredTok, _ := s.Sign(expired)
	future := newLease(st, s, "l-future", now.Add(time.Hour), 10*time.Minute)
	futureTok, _ := s.Sign(future)
	revoked := newLease(st, s, "l-revoked", now.Add(-time.Minute), 10*time.Minute)
	revokedTok, _ := s.Sign(revoked)
	st.leases["l-revoked"].RevokedAt = now.UnixNano()
	ghost := newLease(st, s, "l-ghost", now.Add(-time.Minute), 10*time.Minute)
	ghostTok, _ := s.Sign(ghost)
	delete(st.leases, "l-ghost")

	_, otherPriv, _ := ed25519.GenerateKey(nil)
	other, _ := NewSigner(otherPriv)
	unknownKidTok, _ := other.Sign(good)

	// A payload changed after signing.
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(raw, &claims)
	claims["profile"] = "api-caller"
	tampered := parts[0] + "." + b64(claims) + "." + parts[2]

	// alg none, and HS256 keyed with the public key (the classic
	// algorithm-confusion attack).
	noneTok := b64(map[string]string{"alg": "none", "kid": s.KID()}) + "." + parts[1] + "."
	hsHead := b64(map[string]string{"alg": "HS256", "kid": s.KID(), "typ": "JWT"})
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte(hsHead + "." + parts[1]))
	hsTok := hsHead + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	noKid := b64(map[string]string{"alg": "EdDSA"}) + "." + parts[1] + "." + parts[2]

	tests := map[string]struct {
		token string
		code  string
	}{
		"good":              {goodTok, ""},
		"missing":           {"", CodeMissing},
		"garbage":           {"not.a.token", CodeMalformed},
		"too long":          {strings.Repeat("a", MaxTokenBytes+1), CodeMalformed},
		"bad signature":     {tampered, CodeBadSignature},
		"unknown kid":       {unknownKidTok, CodeUnknownKey},
		"no kid":            {noKid, CodeUnknownKey},
		"alg none":          {noneTok, CodeAlgorithm},
		"alg HS256 pub key": {hsTok, CodeAlgorithm},
		"expired":           {expiredTok, CodeExpired},
		"not yet valid":     {futureTok, CodeNotYetValid},
		"revoked":           {revokedTok, CodeRevoked},
		"unknown lease":     {ghostTok, CodeUnknown},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, _, err := Verify(tc.token, st, now)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if l.ID != good.ID {
					t.Fatalf("lease %s", l.ID)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
			if e.Code != tc.code {
				t.Fatalf("code = %s (%s), want %s", e.Code, e.Message, tc.code)
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	s, st, _ := setup(t)
	var keys []record.NodeKey
	for _, k := range st.keys {
		keys = append(keys, *k)
	}
	keys = append(keys, record.NodeKey{KID: "r", Use: record.KeyUseReceipt, PublicKey: make([]byte, 32)})
	set := JWKS(keys)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != s.KID() || set.Keys[0].Algorithm != "EdDSA" {
		t.Fatalf("jwks = %+v", set)
	}
}

func FuzzVerify(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, _ := NewSigner(priv)
	st := &fakeState{
		keys:   map[string]*record.NodeKey{s.KID(): {KID: s.KID(), Use: record.KeyUseLease, PublicKey: pub}},
		leases: map[string]*record.Lease{},
	}
	l := newLease(st, s, "l1", now.Add(-time.Minute), time.Hour)
	tok, _ := s.Sign(l)
	f.Add(tok)
	f.Add("e30.e30.")
	f.Add("a.b.c.d.e")
	f.Fuzz(func(t *testing.T, token string) {
		got, _, err := Verify(token, st, now)
		if err == nil && token != tok {
			// Only the one token we signed may verify (JWS compact
			// serialisation has no malleable parts that still verify).
			if got.ID != "l1" {
				t.Fatalf("verified a forged token for %s", got.ID)
			}
		}
	})
}

// TestVerifierCache: a cached token is still refused once revoked,
// expired, or its key is gone.
func TestVerifierCache(t *testing.T) {
	s, st, _ := setup(t)
	l := newLease(st, s, "l1", now.Add(-time.Minute), 10*time.Minute)
	tok, _ := s.Sign(l)
	v := NewVerifier(st, 8)
	for i := 0; i < 3; i++ {
		if _, _, err := v.Verify(tok, now); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, _, err := v.Verify(tok, now.Add(time.Hour)); err == nil || err.(*Error).Code != CodeExpired {
		t.Fatalf("expired: %v", err)
	}
	st.leases["l1"].RevokedAt = now.UnixNano()
	if _, _, err := v.Verify(tok, now); err == nil || err.(*Error).Code != CodeRevoked {
		t.Fatalf("revoked: %v", err)
	}
	st.leases["l1"].RevokedAt = 0
	delete(st.keys, s.KID())
	if _, _, err := v.Verify(tok, now); err == nil || err.(*Error).Code != CodeUnknownKey {
		t.Fatalf("key gone: %v", err)
	}
	// A forged token never enters the cache as valid.
	parts := strings.Split(tok, ".")
	if _, _, err := v.Verify(parts[0]+"."+parts[1]+".AAAA", now); err == nil {
		t.Fatal("forged token accepted")
	}
}

// TestVerifierCacheIsLRU: the cache holds at most its size, and a token in
// steady use survives a flood of others (least recently used go first).
func TestVerifierCacheIsLRU(t *testing.T) {
	s, st, _ := setup(t)
	hot, _ := s.Sign(newLease(st, s, "hot", now.Add(-time.Minute), 10*time.Minute))
	v := NewVerifier(st, 4)
	h := sha256.Sum256([]byte(hot))
	for i := range 20 {
		if _, _, err := v.Verify(hot, now); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("cold%d", i)
		tok, _ := s.Sign(newLease(st, s, id, now.Add(-time.Minute), 10*time.Minute))
		if _, _, err := v.Verify(tok, now); err != nil {
			t.Fatal(err)
		}
		if v.seen.Len() > 4 {
			t.Fatalf("cache holds %d tokens, more than its size 4", v.seen.Len())
		}
	}
	if !v.seen.Contains(h) {
		t.Fatal("the token in steady use was evicted")
	}
}

var errNotFound = errors.New("not found")

// TestCodesMatchTheAPI: the refusal codes are the API's lease codes.
func TestCodesMatchTheAPI(t *testing.T) {
	for got, want := range map[string]string{
		CodeMissing: api.CodeLeaseMissing, CodeMalformed: api.CodeLeaseMalformed, CodeAlgorithm: api.CodeLeaseAlgorithm,
		CodeUnknownKey: api.CodeLeaseUnknownKey, CodeBadSignature: api.CodeLeaseBadSignature, CodeExpired: api.CodeLeaseExpired,
		CodeNotYetValid: api.CodeLeaseNotYetValid, CodeRevoked: api.CodeLeaseRevoked, CodeUnknown: api.CodeLeaseUnknown,
	} {
		if got != want {
			t.Errorf("lease code %q, API code %q", got, want)
		}
	}
}
