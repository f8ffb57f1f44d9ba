package mcp

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/leash-dev/leash/api"
)

// maxReused bounds the lease cache: past it, the least recently used
// entries go.
const maxReused = 1024

// leaseCache keeps the leases of recent calls for reuse by the next call
// with the same credential, tenant, intent, profile and session, for at most a
// short age (Options.LeaseReuse). A reused lease is one the caller could
// have kept itself: it names the same tenant, profile and bundle, and the
// node verifies it (revocation, expiry) on every task. A nil cache keeps
// nothing.
type leaseCache struct {
	lru *expirable.LRU[string, api.Lease]
	now func() time.Time
}

func newLeaseCache(maxAge time.Duration) *leaseCache {
	if maxAge <= 0 {
		return nil
	}
	return &leaseCache{lru: expirable.NewLRU[string, api.Lease](maxReused, nil, maxAge), now: time.Now}
}

// cacheKey names a lease request by a hash of the credential (the cache
// keeps no secret it was given) and the request's fields.
func cacheKey(cred string, req api.LeaseRequest) string {
	h := sha256.New()
	for _, s := range []string{cred, req.Tenant, req.Intent, req.Profile, req.Class, req.Session} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// get returns a kept lease that is at least 30 s from its expiry (a task
// started with it still has its lease when it ends).
func (c *leaseCache) get(key string) (api.Lease, bool) {
	if c == nil {
		return api.Lease{}, false
	}
	l, ok := c.lru.Get(key)
	if !ok {
		return api.Lease{}, false
	}
	if !c.now().Add(30 * time.Second).Before(l.ExpiresAt) {
		c.lru.Remove(key)
		return api.Lease{}, false
	}
	return l, true
}

func (c *leaseCache) put(key string, l api.Lease) {
	if c != nil {
		c.lru.Add(key, l)
	}
}

// drop forgets a lease the node refused (revoked, expired, unknown).
func (c *leaseCache) drop(key string) {
	if c != nil {
		c.lru.Remove(key)
	}
}

// leaseRefused reports whether a task refusal means the lease itself is
// no good any more, so that a fresh one may succeed.
func leaseRefused(code string) bool {
	switch code {
	case api.CodeLeaseRevoked, api.CodeLeaseExpired, api.CodeLeaseUnknown, api.CodeLeaseNotYetValid, api.CodeLeaseBadSignature, api.CodeLeaseUnknownKey:
		return true
	}
	return false
}
