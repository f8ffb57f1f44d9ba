package runbook

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/ledger"
)

// testLedger is a real ledger (a one-node Raft on Pebble) holding n
// receipts signed by the node's receipt key, but those in forged: signed
// by another key under the node's key id (the structural check at apply
// lets them in; a signature check refuses them).
type testLedger struct {
	raft *consensus.Raft
	fsm  *consensus.FSM
	db   *pebble.DB
	// stranger is a key the ledger does not trust.
	stranger ed25519.PrivateKey
}

func newTestLedger(t *testing.T, n int, forged ...int) *testLedger {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := consensus.OpenDB(filepath.Join(dir, "pebble"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fsm := consensus.NewFSM(db, nil)
	r, err := consensus.Open(ctx, consensus.Config{NodeID: "n1", Dir: dir, DB: db, BindAddr: "127.0.0.1:0", Bootstrap: true,
		Tune: func(c *raft.Config) { c.LogLevel = "ERROR" }}, fsm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
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
		if key.Equal(stranger) { // under the trusted key's id
			env.Signatures[0].KeyID = ledger.KeyID(pub)
		}
		b, _ := env.Canonical()
		return b
	}
	for first := 0; first < n; first += 250 {
		var envs [][]byte
		for i := first; i < min(first+250, n); i++ {
			key := priv
			if slices.Contains(forged, i) {
				key = stranger
			}
			envs = append(envs, sign(key, i))
		}
		if _, err := r.Apply(ctx, &consensus.AppendReceipts{Envelopes: envs}); err != nil {
			t.Fatal(err)
		}
	}
	return &testLedger{raft: r, fsm: fsm, db: db, stranger: stranger}
}

// TestVerifyReceiptsInParallel: the blast radius's verification, on every
// core with the shared reader of the tree's upper levels, returns each
// receipt of a real ledger (a one-node Raft on Pebble) in the order asked,
// and refuses a checkpoint whose root is not the tree's, signatures by a
// key the verifier does not trust, a record past the checkpoint and a
// cancelled query.
func TestVerifyReceiptsInParallel(t *testing.T) {
	ctx := context.Background()
	const n = 1000
	tl := newTestLedger(t, n)
	fsm, stranger := tl.fsm, tl.stranger
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
	got, err := verifyReceipts(ctx, v, cp, idx, checkedAhead{})
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
	if _, err := verifyReceipts(ctx, v, bad, idx, checkedAhead{}); err == nil || !strings.Contains(err.Error(), "not included") {
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
	if _, err := verifyReceipts(ctx, v, cp, idx, checkedAhead{}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a signature by a key not trusted: %v", err)
	}
	v.Keys = trusted
	small := ledger.Checkpoint{Origin: cp.Origin, Size: 500}
	if small.Root, err = v.Log.TreeHash(v.Reader, 500); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyReceipts(ctx, v, small, []int64{10, 700}, checkedAhead{}); err == nil {
		t.Error("a record past the checkpoint verified")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := verifyReceipts(cctx, v, cp, idx, checkedAhead{}); err == nil {
		t.Error("a cancelled query went on")
	}
}

// stateLedger is the verifier's Ledger over a real state (it asks for no
// signed checkpoint).
type stateLedger struct{ s *consensus.State }

func (l stateLedger) View() (*consensus.Ledger, error) { return l.s.Ledger() }
func (l stateLedger) SignedCheckpoint(*consensus.Ledger, int64) ([]byte, error) {
	return nil, fmt.Errorf("not here")
}

// TestVerifierAhead: the verifier checks every receipt's signature once,
// in chunks, and a query then counts them without checking them again;
// a receipt whose signature does not verify is listed as failed and
// still refused by the query; the watermark survives a restart (a new
// verifier on the same store starts where the old one was); it is not
// trusted under other keys, nor when it is not a prefix of the
// checkpoint's tree (a stored root changed).
func TestVerifierAhead(t *testing.T) {
	ctx := context.Background()
	const n = 2500 // three chunks
	tl := newTestLedger(t, n, 1234)
	l := stateLedger{tl.fsm.State()}
	vf := newVerifier(tl.db, 1, slog.New(slog.DiscardHandler))
	for more := true; more; {
		var err error
		if more, err = vf.step(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if got := vf.size(); got != n {
		t.Fatalf("watermark %d, want %d", got, n)
	}
	v, err := l.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cp, err := v.Log.Checkpoint(v.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hr := v.Log.HashReader(v.Reader)
	below, failed := vf.trusted(v, hr, cp)
	if below != n || len(failed) != 1 || !failed[1234] {
		t.Fatalf("trusted below %d with failed %v, want %d and [1234]", below, failed, n)
	}
	ahead := checkedAhead{below: below, failed: failed}
	all := make([]int64, 0, n)
	for i := range int64(n) {
		if i != 1234 {
			all = append(all, i)
		}
	}
	got, err := verifyReceipts(ctx, v, cp, all, ahead)
	if err != nil {
		t.Fatal(err)
	}
	for k, i := range all {
		if want := fmt.Sprintf("tsk_%04d", i); got[k].TaskID != want {
			t.Fatalf("receipt %d: %s, want %s", i, got[k].TaskID, want)
		}
	}
	if _, err := verifyReceipts(ctx, v, cp, []int64{7, 1234}, ahead); err == nil || !strings.Contains(err.Error(), "record 1234 does not verify") {
		t.Errorf("the forged receipt: %v", err)
	}
	// The checkpoint older than the watermark: trusted up to it.
	small := ledger.Checkpoint{Origin: cp.Origin, Size: 1000}
	if small.Root, err = v.Log.TreeHash(v.Reader, 1000); err != nil {
		t.Fatal(err)
	}
	if below, _ := vf.trusted(v, hr, small); below != 1000 {
		t.Errorf("under a checkpoint of 1000: trusted below %d", below)
	}
	// A restart: the watermark is read back.
	again := newVerifier(tl.db, 1, slog.New(slog.DiscardHandler))
	if below, failed := again.trusted(v, hr, cp); below != n || !failed[1234] {
		t.Errorf("after a restart: trusted below %d, failed %v", below, failed)
	}
	// Another key set: nothing is trusted, and the verifier starts over.
	trusted := v.Keys
	strangers, err := ledger.NewKeySet(trusted.Origin, ledger.NodeKeys{ID: "n1", ReceiptKeys: []ledger.ReceiptKey{{
		KeyID: ledger.KeyID(tl.stranger.Public().(ed25519.PublicKey)), Alg: "ed25519",
		PublicKey: base64.StdEncoding.EncodeToString(tl.stranger.Public().(ed25519.PublicKey))}}})
	if err != nil {
		t.Fatal(err)
	}
	v.Keys = strangers
	if below, _ := vf.trusted(v, hr, cp); below != 0 {
		t.Errorf("under other keys: trusted below %d", below)
	}
	v.Keys = trusted
	// A watermark whose root is not the tree's prefix is not trusted.
	vf.mu.Lock()
	vf.w.Root[0] ^= 1
	vf.mu.Unlock()
	if below, _ := vf.trusted(v, hr, cp); below != 0 {
		t.Errorf("a watermark off the tree: trusted below %d", below)
	}
}

// TestVerifierRests: the verifier rests as long as its share of one core
// says after each chunk (not at all with a whole core), and while the
// node runs tasks it stops within busyEvery records and does not go on
// until the node is idle.
func TestVerifierRests(t *testing.T) {
	vf := newVerifier(nil, 0.5, slog.New(slog.DiscardHandler))
	if got := vf.rest(100 * time.Millisecond); got != 100*time.Millisecond {
		t.Errorf("half a core: rests %v after 100ms of work", got)
	}
	vf.share = 1
	if got := vf.rest(100 * time.Millisecond); got != 0 {
		t.Errorf("a whole core: rests %v", got)
	}

	ctx := context.Background()
	tl := newTestLedger(t, 300)
	l := stateLedger{tl.fsm.State()}
	var busy atomic.Bool
	looks := 0
	vf = newVerifier(tl.db, 1, slog.New(slog.DiscardHandler))
	vf.busy = func() bool {
		looks++
		if looks == 2 { // tasks arrive while the first records are checked
			busy.Store(true)
		}
		return busy.Load()
	}
	if more, err := vf.step(ctx, l); err != nil || !more || vf.size() != 2*busyEvery {
		t.Fatalf("busy after the first %d records: more %v, err %v, checked %d", busyEvery, more, err, vf.size())
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { vf.run(rctx, l); close(done) }()
	time.Sleep(3 * busyWait)
	if got := vf.size(); got != 2*busyEvery {
		t.Errorf("the node busy: the verifier went on to %d", got)
	}
	busy.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for vf.size() != 300 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := vf.size(); got != 300 {
		t.Errorf("the node idle again: the verifier reached %d of 300", got)
	}
}
