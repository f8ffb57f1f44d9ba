package egress

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// bucketKey names one tenant × destination bucket pair. The profile and
// the rule's position are part of it, so two rules with different limits
// never share a bucket; the destination is the concrete host:port, so a
// wildcard rule limits each of its hosts on its own.
type bucketKey struct {
	tenant  string
	profile string
	rule    int
	dest    string
}

// buckets holds the token buckets of one gateway. It is bounded: when
// full, buckets that are full again (idle long enough that forgetting them
// changes nothing) are dropped; if none is, new destinations are refused
// with limit.rate until some are.
type buckets struct {
	mu  sync.Mutex
	m   map[bucketKey]*bucket
	max int
}

type bucket struct {
	req   *rate.Limiter // nil: no rate limit
	bytes *rate.Limiter // nil: no bytes_per_minute
}

func newBuckets(limit int) *buckets {
	return &buckets{m: map[bucketKey]*bucket{}, max: limit}
}

// get returns the bucket pair for key, created full, with its limits set
// to the rule's (a new bundle may have changed them). It returns nil, false
// when the table is full.
func (b *buckets) get(key bucketKey, ru *rule, now time.Time) (*bucket, bool) {
	if ru.rate == nil && ru.bytesPerMinute <= 0 {
		return &bucket{}, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bk, ok := b.m[key]
	if !ok {
		if len(b.m) >= b.max {
			b.sweep(now)
			if len(b.m) >= b.max {
				return nil, false
			}
		}
		bk = &bucket{}
		b.m[key] = bk
	}
	if ru.rate != nil {
		lim, burst := rate.Limit(ru.rate.PerSecond), ru.rate.Burst
		if bk.req == nil {
			bk.req = rate.NewLimiter(lim, burst)
		} else if bk.req.Limit() != lim || bk.req.Burst() != burst {
			bk.req.SetLimitAt(now, lim)
			bk.req.SetBurstAt(now, burst)
		}
	} else {
		bk.req = nil
	}
	if n := ru.bytesPerMinute; n > 0 {
		lim, burst := rate.Limit(float64(n)/60), int(min(n, int64(maxBurst)))
		if bk.bytes == nil {
			bk.bytes = rate.NewLimiter(lim, burst)
		} else if bk.bytes.Limit() != lim || bk.bytes.Burst() != burst {
			bk.bytes.SetLimitAt(now, lim)
			bk.bytes.SetBurstAt(now, burst)
		}
	} else {
		bk.bytes = nil
	}
	return bk, true
}

const maxBurst = 1 << 40

// sweep drops buckets that are full at now. Called with mu held.
func (b *buckets) sweep(now time.Time) {
	for k, bk := range b.m {
		if full(bk.req, now) && full(bk.bytes, now) {
			delete(b.m, k)
		}
	}
}

func full(l *rate.Limiter, now time.Time) bool {
	return l == nil || l.TokensAt(now) >= float64(l.Burst())
}

// len is the number of buckets held.
func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
