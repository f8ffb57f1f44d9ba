package runbook

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/ledger"
)

// TestIndexAgreesWithScan: over random receipts, the index answers every
// filter — each field alone, pairs, hosts, host:ports, IPs, CIDRs, time
// windows — exactly as a scan of every receipt does.
func TestIndexAgreesWithScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	pick := func(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(n)) }
	dests := []string{"api.example.com:443", "exfil.test:443", "10.1.2.3:80", "10.1.9.9:443", "[2001:db8::1]:443", "203.0.113.7:8080", "docs.example.com:443"}
	x := New()
	all := map[int64]*ledger.Receipt{}
	for i := range 3000 {
		idx := int64(i * 2) // gaps: governance entries hold the odd indexes
		r := &ledger.Receipt{Tenant: pick("t", 7), Profile: pick("p", 5), ModuleDigest: pick("m", 40), PolicyDigest: pick("d", 3),
			LeaseID: pick("l", 300), End: t0.Add(time.Duration(rng.IntN(86400)) * time.Second)}
		for range rng.IntN(3) {
			r.Destinations = append(r.Destinations, dests[rng.IntN(len(dests))])
		}
		all[idx] = r
		x.Add(idx, r)
		if i%7 == 0 {
			x.Add(idx, r) // added twice: once in the index
		}
	}
	if x.Len() != len(all) {
		t.Fatalf("index holds %d, want %d", x.Len(), len(all))
	}
	filters := []Filter{
		{}, {Tenant: "t3"}, {Profile: "p1"}, {Module: "m7"}, {PolicyDigest: "d2"}, {Lease: "l42"}, {Tenant: "nobody"},
		{Destination: "exfil.test"}, {Destination: "exfil.test:443"}, {Destination: "10.1.2.3"}, {Destination: "10.1.0.0/16"},
		{Destination: "2001:db8::/32"}, {Destination: "0.0.0.0/0"}, {Destination: "203.0.113.7"},
		{Tenant: "t1", Profile: "p2"}, {Tenant: "t2", Destination: "10.0.0.0/8"}, {Module: "m3", PolicyDigest: "d0"},
		{Since: t0.Add(6 * time.Hour), Until: t0.Add(7 * time.Hour)}, {Tenant: "t4", Since: t0.Add(20 * time.Hour)},
		{Destination: "api.example.com", Until: t0.Add(time.Hour)},
	}
	for _, f := range filters {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			got, want := x.Match(f), Scan(all, f)
			if !slices.Equal(got, want) {
				t.Fatalf("index %d matches, scan %d", len(got), len(want))
			}
		})
	}
}

// BenchmarkMatch: one tenant's receipts among a million (the issue's
// scale), and a CIDR over them.
func BenchmarkMatch(b *testing.B) {
	x := New()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1_000_000 {
		x.Add(int64(i), &ledger.Receipt{Tenant: fmt.Sprint("t", i%1000), Profile: fmt.Sprint("p", i%10), ModuleDigest: fmt.Sprint("m", i%5000),
			PolicyDigest: "d", LeaseID: fmt.Sprint("l", i/10), End: t0.Add(time.Duration(i) * time.Second),
			Destinations: []string{fmt.Sprintf("10.0.%d.%d:443", (i/256)%256, i%256)}})
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.Logf("a million receipts indexed: %.0f MB of heap in use", float64(ms.HeapInuse)/(1<<20))
	runtime.KeepAlive(x)
	b.Run("tenant", func(b *testing.B) {
		for b.Loop() {
			if len(x.Match(Filter{Tenant: "t7"})) != 1000 {
				b.Fatal("wrong count")
			}
		}
	})
	b.Run("cidr", func(b *testing.B) {
		for b.Loop() {
			x.Match(Filter{Destination: "10.0.3.0/24"})
		}
	})
}

// TestRebuildDecodesWhatTheIndexKeeps: the rebuild's lean decode of a
// signed receipt (Blast.add) indexes it under every field a filter names,
// as the receipt itself does (its JSON names are ledger.Receipt's).
func TestRebuildDecodesWhatTheIndexKeeps(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	hex := strings.Repeat("cd", 32)
	end := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	rc := &ledger.Receipt{LeaseID: "lse_x", Tenant: "acme", Profile: "fetcher", PolicyDigest: "sha256:" + hex, ModuleDigest: "sha256:" + strings.Repeat("ef", 32),
		TaskID: "tsk_1", RequestSHA256: hex, ResponseSHA256: hex, NodeID: "n1", Start: end.Add(-time.Second), End: end,
		Destinations: []string{"api.example.com:443", "10.9.8.7:80"}, BlockedAttempts: []ledger.BlockedAttempt{}, Outcome: "ok", Attempt: 1,
		Traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"}
	env, err := ledger.SignReceipt(priv, "", rc)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	b := NewBlast(BlastConfig{})
	b.add(42, raw)
	all := map[int64]*ledger.Receipt{42: rc}
	for _, f := range []Filter{{Tenant: "acme"}, {Profile: "fetcher"}, {Module: rc.ModuleDigest}, {PolicyDigest: rc.PolicyDigest}, {Lease: "lse_x"},
		{Destination: "api.example.com"}, {Destination: "10.9.0.0/16"}, {Since: end, Until: end}, {Tenant: "acme", Until: end.Add(-time.Minute)}} {
		if got, want := b.x.Match(f), Scan(all, f); !slices.Equal(got, want) {
			t.Errorf("%+v: index %v, scan %v", f, got, want)
		}
	}
}
