package lifecycle

import (
	"testing"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/ledger"
)

// TestCanaryHealth: receipts count by digest in the window; the
// automatic abort fires only past its threshold, with enough tasks.
func TestCanaryHealth(t *testing.T) {
	tr := newCanaryTracker()
	now := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	add := func(digest, outcome string, ago time.Duration, blocked ...string) {
		r := &ledger.Receipt{PolicyDigest: digest, Outcome: outcome, End: now.Add(-ago)}
		for _, c := range blocked {
			r.BlockedAttempts = append(r.BlockedAttempts, ledger.BlockedAttempt{Tool: "fetch", Clause: c, Count: 2})
		}
		tr.record(r)
	}
	for i := range 50 {
		add("S", "ok", time.Duration(i)*time.Second)
	}
	add("S", "error", time.Second)
	add("S", "terminated:revoked", time.Second) // not the bundle's fault
	for i := range 20 {
		out := "ok"
		if i%4 == 0 {
			out = "terminated:cpu"
		}
		add("C", out, time.Duration(i)*time.Second, "egress.not_allowed")
	}
	add("C", "error", time.Hour) // outside the window
	h := tr.health(now, 5*time.Minute, "S", "C")
	if h.Stable.Tasks != 52 || h.Stable.Bad != 1 || h.Canary.Tasks != 20 || h.Canary.Bad != 5 {
		t.Fatalf("health %+v", h)
	}
	if h.Canary.Outcomes["terminated:cpu"] != 5 || h.Canary.Blocked["egress.not_allowed"] != 40 || h.Canary.BadPercent != 25 {
		t.Fatalf("canary side %+v", h.Canary)
	}
	for _, tc := range []struct {
		c    consensus.Canary
		want bool
	}{
		{consensus.Canary{AbortAbove: 0, MinTasks: 1}, false},  // off
		{consensus.Canary{AbortAbove: 10, MinTasks: 20}, true}, // 25 − 1.9 > 10
		{consensus.Canary{AbortAbove: 30, MinTasks: 20}, false},
		{consensus.Canary{AbortAbove: 10, MinTasks: 21}, false}, // too few tasks
	} {
		if got := abortReason(&tc.c, h) != ""; got != tc.want {
			t.Errorf("%+v: abort %v, want %v (%s)", tc.c, got, tc.want, abortReason(&tc.c, h))
		}
	}
	// A governance entry (nil) counts nothing; the channel never blocks
	// the FSM.
	tr.count([]*ledger.Receipt{nil, {PolicyDigest: "C", Outcome: "ok", End: now}})
	if h := tr.health(now, 5*time.Minute, "S", "C"); h.Canary.Tasks != 21 {
		t.Fatalf("after a batch with a governance entry: canary tasks %d, want 21", h.Canary.Tasks)
	}
	for range 2000 {
		tr.offer([]*ledger.Receipt{nil})
	}
	if tr.dropped.Load() == 0 {
		t.Error("a full channel dropped nothing")
	}
}
