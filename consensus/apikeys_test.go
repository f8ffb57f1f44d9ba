package consensus

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/leash-dev/leash/record"
)

func testKey(id, role, tenant string) APIKey {
	return APIKey{ID: id, Role: role, Tenant: tenant, Hash: bytes.Repeat([]byte{7}, 32), CreatedAt: qt0, CreatedBy: "admin"}
}

func TestAPIKeyCommands(t *testing.T) {
	q := newQueueFSM(t)
	st := q.f.State()
	if r := q.do(&CreateAPIKey{Key: testKey("k1", record.RoleTenant, "demo")}); r.Code != "" {
		t.Fatalf("create: %s %s", r.Code, r.Message)
	}
	if r := q.do(&CreateAPIKey{Key: testKey("k2", record.RoleOperator, "")}); r.Code != "" {
		t.Fatalf("create operator key: %s %s", r.Code, r.Message)
	}
	for name, tc := range map[string]struct {
		k    APIKey
		code string
	}{
		"exists":                {testKey("k1", record.RoleTenant, "demo"), CodeAPIKeyExists},
		"unknown role":          {testKey("k3", "root", ""), CodeInvalid},
		"tenant key, no tenant": {testKey("k3", record.RoleTenant, ""), CodeInvalid},
		"operator with tenant":  {testKey("k3", record.RoleOperator, "demo"), CodeInvalid},
		"id with slash":         {testKey("k/3", record.RoleAuditor, ""), CodeInvalid},
		"short hash":            {func() APIKey { k := testKey("k3", record.RoleAuditor, ""); k.Hash = k.Hash[:8]; return k }(), CodeInvalid},
		"expires before made":   {func() APIKey { k := testKey("k3", record.RoleAuditor, ""); k.ExpiresAt = qt0; return k }(), CodeInvalid},
		"born revoked":          {func() APIKey { k := testKey("k3", record.RoleAuditor, ""); k.RevokedAt = qt0; return k }(), CodeInvalid},
	} {
		if r := q.do(&CreateAPIKey{Key: tc.k}); r.Code != tc.code {
			t.Errorf("%s: %q, want %q", name, r.Code, tc.code)
		}
	}
	if _, err := st.APIKey("k3"); err == nil {
		t.Fatal("a refused key was stored")
	}
	// Read (and cache), revoke, read again: the revocation is seen.
	k, err := st.APIKey("k1")
	if err != nil || k.Revoked() || k.Tenant != "demo" {
		t.Fatalf("read: %+v %v", k, err)
	}
	if r := q.do(&RevokeAPIKey{ID: "k1", By: "admin", At: at(time.Second)}); r.Code != "" {
		t.Fatalf("revoke: %s", r.Code)
	} else if k := r.Value.(*APIKey); k.RevokedAt != at(time.Second) || k.RevokedBy != "admin" {
		t.Fatalf("revoke result: %+v", k)
	}
	if _, err := st.APIKey("k1"); err == nil {
		t.Fatal("a revoked key is still found (through the cache?)")
	}
	if r := q.do(&RevokeAPIKey{ID: "k1", By: "other", At: at(2 * time.Second)}); r.Code != CodeAPIKeyNotFound {
		t.Fatalf("revoke again: %q", r.Code)
	}
	if r := q.do(&RevokeAPIKey{ID: "nope", By: "admin", At: at(time.Second)}); r.Code != CodeAPIKeyNotFound {
		t.Fatalf("revoke unknown: %q", r.Code)
	}
	if ks, _ := st.APIKeys("demo"); len(ks) != 0 {
		t.Fatalf("demo's keys after the revocation: %+v", ks)
	}
	if r := q.do(&CreateAPIKey{Key: testKey("k1b", record.RoleTenant, "demo")}); r.Code != "" {
		t.Fatalf("create after revoke: %s", r.Code)
	}
	// Lists are per tenant.
	if ks, _ := st.APIKeys("demo"); len(ks) != 1 || ks[0].ID != "k1b" {
		t.Fatalf("demo's keys: %+v", ks)
	}
	if ks, _ := st.APIKeys(""); len(ks) != 1 || ks[0].ID != "k2" {
		t.Fatalf("keys of no tenant: %+v", ks)
	}
}

func TestAPIKeysPerTenantBound(t *testing.T) {
	q := newQueueFSM(t)
	for i := range MaxAPIKeysPerTenant {
		if r := q.do(&CreateAPIKey{Key: testKey(fmt.Sprint("k", i), record.RoleTenant, "demo")}); r.Code != "" {
			t.Fatalf("key %d: %s", i, r.Code)
		}
	}
	if r := q.do(&CreateAPIKey{Key: testKey("one-more", record.RoleTenant, "demo")}); r.Code != CodeTooManyAPIKeys {
		t.Fatalf("past the bound: %q", r.Code)
	}
	if r := q.do(&CreateAPIKey{Key: testKey("other", record.RoleTenant, "acme")}); r.Code != "" {
		t.Fatalf("another tenant's key: %q", r.Code)
	}
	// A revocation makes room.
	if r := q.do(&RevokeAPIKey{ID: "k0", By: "admin", At: at(time.Second)}); r.Code != "" {
		t.Fatalf("revoke: %q", r.Code)
	}
	if r := q.do(&CreateAPIKey{Key: testKey("one-more", record.RoleTenant, "demo")}); r.Code != "" {
		t.Fatalf("after a revocation: %q", r.Code)
	}
}
