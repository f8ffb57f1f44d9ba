package consensus

import (
	"strings"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// recordCache keeps decoded leases, node keys and API keys in memory, least
// recently used out first: the lease check reads both on every request.
// The FSM invalidates every key it writes, right after committing; a read
// that raced with a write never inserts what it read (a generation
// counter says a write happened).
type recordCache struct {
	gen atomic.Uint64
	mu  sync.Mutex // orders put's generation check against invalidate
	lru *lru.Cache[string, any]
}

func newRecordCache(size int) *recordCache {
	c, _ := lru.New[string, any](max(size, 1)) // errs only for a size below 1
	return &recordCache{lru: c}
}

// cached reports whether key's records are worth caching.
func cached(key string) bool {
	return strings.HasPrefix(key, prefixLease) || strings.HasPrefix(key, prefixKey) || strings.HasPrefix(key, prefixAPIKey)
}

func (c *recordCache) get(key string) (any, bool) { return c.lru.Get(key) }

// put stores v unless a write happened since generation g.
func (c *recordCache) put(g uint64, key string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != g {
		return
	}
	c.lru.Add(key, v)
}

// invalidate forgets keys after they were written.
func (c *recordCache) invalidate(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	for _, k := range keys {
		c.lru.Remove(k)
	}
}

func (c *recordCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	c.lru.Purge()
}
