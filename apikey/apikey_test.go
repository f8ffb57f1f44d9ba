package apikey

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/record"
)

func TestNewParseCheck(t *testing.T) {
	tok, id, hash, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != Len || !Looks(tok) {
		t.Fatalf("token %q", tok)
	}
	gotID, secret, err := Parse(tok)
	if err != nil || gotID != id {
		t.Fatalf("Parse: %q %v", gotID, err)
	}
	now := time.Unix(1_800_000_000, 0)
	k := &record.APIKey{ID: id, Role: record.RoleTenant, Tenant: "demo", Hash: hash}
	if err := Check(k, secret, now); err != nil {
		t.Fatalf("Check: %v", err)
	}
	// Another key's secret, a revoked key, an expired key.
	tok2, _, _, _ := New()
	_, secret2, _ := Parse(tok2)
	if err := Check(k, secret2, now); !errors.Is(err, ErrMismatch) {
		t.Errorf("another secret: %v", err)
	}
	exp := *k
	exp.ExpiresAt = now.UnixNano()
	if err := Check(&exp, secret, now); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	rev := *k
	rev.RevokedAt = now.UnixNano()
	if err := Check(&rev, secret, now); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
	// The secret check comes first: a wrong secret never learns whether
	// the key was revoked.
	if err := Check(&rev, secret2, now); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong secret of a revoked key: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	tok, _, _, _ := New()
	for name, s := range map[string]string{
		"empty":          "",
		"no prefix":      "xsk_" + tok[4:],
		"short":          tok[:len(tok)-1],
		"long":           tok + "A",
		"upper-case id":  Prefix + strings.ToUpper(tok[4:20]) + tok[20:],
		"bad separator":  tok[:20] + "." + tok[21:],
		"padding":        tok[:len(tok)-1] + "=",
		"secret not b64": tok[:21] + strings.Repeat("!", secretLen),
		"a lease token":  "eyJhbGciOiJFZERTQSJ9.e30.sig",
	} {
		if _, _, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %q parsed (%v)", name, s, err)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts is a key of exactly
// the documented shape, whose id is valid.
func FuzzParse(f *testing.F) {
	tok, _, _, _ := New()
	f.Add(tok)
	f.Add(Prefix)
	f.Add(tok[:21] + strings.Repeat("_", secretLen))
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := Parse(s)
		if err != nil {
			return
		}
		if len(s) != Len || !ValidID(id) || s != Prefix+id+"_"+secret {
			t.Fatalf("accepted %q as id %q secret %q", s, id, secret)
		}
	})
}
