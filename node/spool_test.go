package node

import (
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/ledger"
)

// TestSpoolDrain: receipts left in the spool (their append failed) are
// queued again by the periodic drain, each once while it is queued or in
// a batch, and a spool older than spoolStale is flagged once until it
// empties.
func TestSpoolDrain(t *testing.T) {
	db, err := consensus.OpenDB(filepath.Join(t.TempDir(), "pebble"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, key, _ := ed25519.GenerateKey(nil)
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	n := &Node{db: db, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }, id: &identity{NodeID: "n1"}}
	r := &receipts{n: n, in: make(chan *pendingReceipt, 16), stop: make(chan struct{}), inflight: map[string]bool{}}
	spool := func(task string, end time.Time) string {
		env, err := ledger.SignReceipt(key, "", &ledger.Receipt{LeaseID: "lse_x", Tenant: "demo", Profile: "p",
			PolicyDigest: "sha256:" + strings.Repeat("0", 64), TaskID: task, NodeID: "n1", Outcome: "ok",
			Traceparent: "00-" + strings.Repeat("1", 32) + "-" + strings.Repeat("2", 16) + "-01",
			Attempt:     1, Start: end.Add(-time.Second), End: end, Destinations: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := env.Canonical()
		k := prefixSpool + task + "/1"
		if err := db.Set([]byte(k), b, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		return k
	}
	queued := func() []string {
		var out []string
		for {
			select {
			case p := <-r.in:
				if !p.resubmitted {
					t.Error("a drained receipt is not marked as possibly repeated")
				}
				out = append(out, string(p.spool))
			default:
				return out
			}
		}
	}

	busy := spool("busy", now.Add(-time.Minute))
	r.inflight[busy] = true // being appended right now
	old := spool("old", now.Add(-10*time.Minute))
	r.drain()
	if got := queued(); len(got) != 1 || got[0] != old {
		t.Fatalf("first drain queued %v, want only %s", got, old)
	}
	if !r.stale {
		t.Fatal("a receipt spooled for 10 minutes did not flag the spool stale")
	}
	r.drain()
	if got := queued(); len(got) != 0 {
		t.Fatalf("a receipt already queued was queued again: %v", got)
	}
	// Both appends fail: the receipts stay spooled and go again.
	r.mu.Lock()
	clear(r.inflight)
	r.mu.Unlock()
	r.drain()
	if got := queued(); len(got) != 2 {
		t.Fatalf("after failed appends the drain queued %v, want both", got)
	}
	// Appended at last: the spool empties and the flag clears.
	_ = db.Delete([]byte(busy), pebble.Sync)
	_ = db.Delete([]byte(old), pebble.Sync)
	r.mu.Lock()
	clear(r.inflight)
	r.mu.Unlock()
	r.drain()
	if r.stale || len(queued()) != 0 {
		t.Fatal("an empty spool is still flagged, or queued something")
	}
}

// TestSpoolAgeOfGovernance: a governance entry waiting in the spool ages
// from when its action was taken (its "at"), as a receipt from its
// task's end, so the spool's oldest age and stale event cover both.
func TestSpoolAgeOfGovernance(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	at := time.Date(2026, 12, 2, 11, 50, 0, 0, time.UTC)
	env, err := ledger.SignGovernance(key, &ledger.Governance{ID: "raft:12", Action: "freeze", By: "admin", At: at, Target: "p", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := env.Canonical()
	if got := receiptEnd(b); !got.Equal(at) {
		t.Fatalf("age of a governance entry from %v, want %v", got, at)
	}
}
