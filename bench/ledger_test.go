package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/ledger"
)

// BenchmarkReceiptAppend appends signed receipts through Raft on a
// one-node cluster (Pebble log with fsync, the FSM's structural check and
// the tlog append), in batches as the node's group commit makes them.
func BenchmarkReceiptAppend(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	db, err := consensus.OpenDB(dir+"/pebble", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	fsm := consensus.NewFSM(db, nil)
	r, err := consensus.Open(ctx, consensus.Config{NodeID: "n1", Dir: dir, DB: db, BindAddr: "127.0.0.1:0", Bootstrap: true,
		Tune: func(c *raft.Config) { c.LogLevel = "ERROR" }}, fsm)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if err := r.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	for r.IsLeader() == false {
		time.Sleep(10 * time.Millisecond)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	for _, c := range []consensus.Command{
		&consensus.PutNodeKey{Key: consensus.NodeKey{KID: ledger.KeyID(pub), NodeID: "n1", Use: consensus.KeyUseReceipt, Algorithm: "EdDSA", PublicKey: pub}},
		&consensus.LedgerInit{Origin: "leash/bench"},
	} {
		if _, err := r.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	envelope := func(i int) []byte {
		rc := &ledger.Receipt{LeaseID: "lse_bench", Tenant: "demo", Profile: "docs-reader",
			PolicyDigest: "sha256:" + hex64, ModuleDigest: "sha256:" + hex64, TaskID: fmt.Sprintf("tsk_%d", i),
			RequestSHA256: hex64, ResponseSHA256: hex64, NodeID: "n1", Start: time.Unix(1, 0).UTC(), End: time.Unix(2, 0).UTC(),
			Destinations: []string{}, BlockedAttempts: []ledger.BlockedAttempt{}, Outcome: "ok",
			Traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", Attempt: 1}
		env, err := ledger.SignReceipt(priv, "", rc)
		if err != nil {
			b.Fatal(err)
		}
		c, _ := env.Canonical()
		return c
	}
	next := 0
	for _, batch := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			// Sign outside the timed part: signing is the executing
			// node's cost per task, measured with the tasks.
			total := max(b.N, 20) * batch
			envs := make([][]byte, total)
			for i := range envs {
				envs[i] = envelope(next)
				next++
			}
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 4) // a few batches in flight, as under load
			for i := 0; i < total; i += batch {
				wg.Add(1)
				sem <- struct{}{}
				go func(i int) {
					defer wg.Done()
					defer func() { <-sem }()
					if _, err := r.Apply(ctx, &consensus.AppendReceipts{Envelopes: envs[i : i+batch]}); err != nil {
						b.Error(err)
					}
				}(i)
			}
			wg.Wait()
			b.ReportMetric(float64(total)/time.Since(start).Seconds(), "receipts/s")
		})
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
