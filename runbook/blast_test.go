package runbook

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/ledger"
)

// TestVerifyReceiptsInParallel: the blast radius's verification, on every
// core with the shared reader of the tree's upper levels, returns each
// receipt of a real ledger (a one-node Raft on Pebble) in the order asked,
// and refuses a checkpoint whose root is not the tree's, signatures by a
// key the verifier does not trust, a record past the checkpoint and a
// cancelled query.
func TestVerifyReceiptsInParallel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := consensus.OpenDB(filepath.Join(dir, "pebble"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fsm := consensus.NewFSM(db, nil)
	r, err := consensus.Open(ctx, consensus.Config{NodeID: "n1", Dir: dir, DB: db, BindAddr: "127.0.0.1:0", Bootstrap: true,
		Tune: func(c *raft.Config) { c.LogLevel = "ERROR" }}, fsm)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for !r.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, stranger, _ := ed25519.GenerateKey(nil)
	for _, c := range []consensus.Command{
		&consensus.PutNodeKey{Key: consensus.NodeKey{KID: ledger.KeyID(pub), NodeID: "n1", Use: consensus.KeyUseReceipt, Algorithm: "EdDSA", PublicKey: pub}},
		&consensus.LedgerInit{Origin: "leash/test"},
	} {
		if _, err := r.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	const n = 1000
	hex := strings.Repeat("ab", 32)
	sign := func(key ed25519.PrivateKey, i int) []byte {
		rc := &ledger.Receipt{LeaseID: "lse_t", Tenant: fmt.Sprint("t", i%7), Profile: "p", PolicyDigest: "sha256:" + hex, ModuleDigest: "sha256:" + hex,
			TaskID: fmt.Sprintf("tsk_%04d", i), RequestSHA256: hex, ResponseSHA256: hex, NodeID: "n1", Start: time.Unix(1, 0).UTC(), End: time.Unix(2, 0).UTC(),
			Destinations: []string{}, BlockedAttempts: []ledger.BlockedAttempt{}, Outcome: "ok", Attempt: 1,
			Traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"}
		env, err := ledger.SignReceipt(key, "", rc)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := env.Canonical()
		return b
	}
	for first := 0; first < n; first += 250 {
		var envs [][]byte
		for i := first; i < first+250; i++ {
			envs = append(envs, sign(priv, i))
		}
		if _, err := r.Apply(ctx, &consensus.AppendReceipts{Envelopes: envs}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := fsm.State().Ledger()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cp, err := v.Log.Checkpoint(v.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var idx []int64
	for i := int64(n - 1); i >= 0; i -= 3 { // descending, with gaps: the order asked is kept
		idx = append(idx, i)
	}
	got, err := verifyReceipts(ctx, v, cp, idx)
	if err != nil {
		t.Fatal(err)
	}
	for k, i := range idx {
		if want := fmt.Sprintf("tsk_%04d", i); got[k] == nil || got[k].TaskID != want {
			t.Fatalf("receipt %d of %d: %+v, want %s", k, len(idx), got[k], want)
		}
	}
	bad := cp
	bad.Root[0] ^= 1
	if _, err := verifyReceipts(ctx, v, bad, idx); err == nil || !strings.Contains(err.Error(), "not included") {
		t.Errorf("a wrong root: %v", err)
	}
	// Keys that do not hold the signer's: every signature is refused.
	strangers, err := ledger.NewKeySet(v.Keys.Origin, ledger.NodeKeys{ID: "n1", ReceiptKeys: []ledger.ReceiptKey{{KeyID: ledger.KeyID(stranger.Public().(ed25519.PublicKey)),
		Alg: "ed25519", PublicKey: base64.StdEncoding.EncodeToString(stranger.Public().(ed25519.PublicKey))}}})
	if err != nil {
		t.Fatal(err)
	}
	trusted := v.Keys
	v.Keys = strangers
	if _, err := verifyReceipts(ctx, v, cp, idx); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a signature by a key not trusted: %v", err)
	}
	v.Keys = trusted
	small := ledger.Checkpoint{Origin: cp.Origin, Size: 500}
	if small.Root, err = v.Log.TreeHash(v.Reader, 500); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyReceipts(ctx, v, small, []int64{10, 700}); err == nil {
		t.Error("a record past the checkpoint verified")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := verifyReceipts(cctx, v, cp, idx); err == nil {
		t.Error("a cancelled query went on")
	}
}
