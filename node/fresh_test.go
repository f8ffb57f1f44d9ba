package node

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestFreshness covers the certificate's rules: none at first; a barrier
// that completes makes it fresh; one that began before contact was lost
// does not count; an older barrier never replaces a newer one; it goes
// stale after the window.
func TestFreshness(t *testing.T) {
	tests := map[string]struct {
		window time.Duration
		steps  func(f *freshness)
		ok     bool
	}{
		"no barrier yet": {time.Hour, func(f *freshness) {}, false},
		"barrier completed": {time.Hour, func(f *freshness) {
			_, cancel, start, epoch := f.begin(context.Background())
			defer cancel()
			f.commit(start, epoch)
		}, true},
		"contact lost during the barrier": {time.Hour, func(f *freshness) {
			ctx, cancel, start, epoch := f.begin(context.Background())
			defer cancel()
			f.invalidate()
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Error("invalidate did not end the barrier in flight")
			}
			if f.commit(start, epoch) {
				t.Error("a barrier from before the lost contact counted")
			}
		}, false},
		"contact lost after the barrier": {time.Hour, func(f *freshness) {
			_, cancel, start, epoch := f.begin(context.Background())
			defer cancel()
			f.commit(start, epoch)
			f.invalidate()
		}, false},
		"barrier after the lost contact": {time.Hour, func(f *freshness) {
			f.invalidate()
			_, cancel, start, epoch := f.begin(context.Background())
			defer cancel()
			f.commit(start, epoch)
		}, true},
		"older barrier does not replace a newer one": {time.Hour, func(f *freshness) {
			_, c1, s1, e1 := f.begin(context.Background())
			defer c1()
			_, c2, s2, e2 := f.begin(context.Background())
			defer c2()
			f.commit(s2, e2)
			if f.commit(s1, e1) {
				t.Error("the older barrier replaced the newer certificate")
			}
		}, true},
		"stale after the window": {time.Millisecond, func(f *freshness) {
			_, cancel, start, epoch := f.begin(context.Background())
			defer cancel()
			f.commit(start, epoch)
			time.Sleep(5 * time.Millisecond)
		}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFreshness(tc.window)
			tc.steps(f)
			if got := f.ok(); got != tc.ok {
				t.Fatalf("ok() = %v, want %v (age %v)", got, tc.ok, f.age())
			}
		})
	}
}

// TestFreshnessWakesWaiters: an admission waiting on a barrier is woken
// when one completes, whatever its result.
func TestFreshnessWakesWaiters(t *testing.T) {
	f := newFreshness(time.Hour)
	ch := f.waitCh()
	_, cancel, start, epoch := f.begin(context.Background())
	defer cancel()
	f.commit(start, epoch)
	select {
	case <-ch:
	default:
		t.Fatal("waiter not woken")
	}
	if !f.ok() {
		t.Fatal("not fresh after the barrier")
	}
}

// TestFreshnessGrants: the leader remembers a peer's barrier for one
// window, then forgets it; past the bound it forgets them all and says
// when.
func TestFreshnessGrants(t *testing.T) {
	f := newFreshness(2 * time.Millisecond)
	f.grant("a")
	if g := f.liveGrants(); len(g) != 1 {
		t.Fatalf("grants right after: %v", g)
	}
	time.Sleep(10 * time.Millisecond)
	if g := f.liveGrants(); len(g) != 0 {
		t.Fatalf("grants after the window: %v", g)
	}
	f = newFreshness(time.Hour)
	for i := range maxGrants + 1 {
		f.grant(fmt.Sprint("peer-", i))
	}
	if f.forgotAt.Load() == 0 || len(f.liveGrants()) != 1 {
		t.Fatalf("over the bound: forgotAt %d, %d grants", f.forgotAt.Load(), len(f.liveGrants()))
	}
}

// BenchmarkAdmissionFreshness is what the freshness check costs a task
// at steady state (a fresh certificate): one atomic load and a clock
// read. docs/BENCHMARKS.md, "Cluster under faults".
func BenchmarkAdmissionFreshness(b *testing.B) {
	f := newFreshness(time.Hour)
	_, cancel, start, epoch := f.begin(context.Background())
	defer cancel()
	f.commit(start, epoch)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !f.ok() {
				b.Fatal("stale")
			}
		}
	})
}
