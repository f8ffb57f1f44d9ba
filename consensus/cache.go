package consensus

import (
	"strings"
	"sync"
	"sync/atomic"
)

// recordCache keeps decoded leases and node keys in memory: the lease
// check reads both on every request. The FSM invalidates every key it
// writes, right after committing; a read that raced with a write never
// inserts what it read (a generation counter says a write happened).
type recordCache struct {
	gen atomic.Uint64
	mu  sync.RWMutex
	m   map[string]any
	max int
}

func newRecordCache(max int) *recordCache { return &recordCache{m: map[string]any{}, max: max} }

// cached reports whether key's records are worth caching.
func cached(key string) bool {
	return strings.HasPrefix(key, prefixLease) || strings.HasPrefix(key, prefixKey)
}

func (c *recordCache) get(key string) (any, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[key]
	return v, ok
}

// put stores v unless a write happened since generation g.
func (c *recordCache) put(g uint64, key string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != g {
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[key] = v
}

// invalidate forgets keys after they were written.
func (c *recordCache) invalidate(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	for _, k := range keys {
		delete(c.m, k)
	}
}

func (c *recordCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	clear(c.m)
}
