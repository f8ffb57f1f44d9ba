package consensus

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/ledger"
)

// TestAppendReceiptsDedupe: a receipt appended again (a re-submitted
// spool) is skipped and reports its first index; structurally bad
// receipts refuse the whole batch.
func TestAppendReceiptsDedupe(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	env := func(task string, key ed25519.PrivateKey) []byte {
		hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		r := &ledger.Receipt{LeaseID: "l", Tenant: "t", Profile: "p", PolicyDigest: "sha256:" + hex, ModuleDigest: "sha256:" + hex,
			TaskID: task, RequestSHA256: hex, ResponseSHA256: hex, NodeID: "n1", Start: time.Unix(1, 0).UTC(), End: time.Unix(2, 0).UTC(),
			Destinations: []string{}, BlockedAttempts: []ledger.BlockedAttempt{}, Outcome: "ok",
			Traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", Attempt: 1}
		e, err := ledger.SignReceipt(key, "", r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := e.Canonical()
		return b
	}
	var idx uint64
	apply := func(c Command) *Result {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		idx++
		return f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: b}).(*Result)
	}
	for _, c := range []Command{
		&PutNodeKey{Key: NodeKey{KID: ledger.KeyID(pub), NodeID: "n1", Use: KeyUseReceipt, Algorithm: "EdDSA", PublicKey: pub}},
		&LedgerInit{Origin: "leash/test"},
	} {
		if r := apply(c); r.Code != "" {
			t.Fatal(r.Message)
		}
	}
	a, b := env("tsk_a", priv), env("tsk_b", priv)
	r := apply(&AppendReceipts{Envelopes: [][]byte{a, b}})
	if r.Code != "" || r.Value.(*AppendResult).Size != 2 {
		t.Fatalf("first append: %+v", r)
	}
	r = apply(&AppendReceipts{Envelopes: [][]byte{env("tsk_c", priv), b}, MayRepeat: true})
	ar := r.Value.(*AppendResult)
	if r.Code != "" || ar.Size != 3 || ar.Indexes[0] != 2 || ar.Indexes[1] != 1 {
		t.Fatalf("re-submitted append: %+v %+v", r, ar)
	}
	// A receipt signed by a key the node never published refuses the batch.
	if r := apply(&AppendReceipts{Envelopes: [][]byte{env("tsk_d", priv), env("tsk_e", otherPriv)}}); r.Code != CodeBadReceipt {
		t.Fatalf("foreign key: %+v", r)
	}
	v, err := f.State().Ledger()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if size, _ := v.Log.Size(v.Reader); size != 3 {
		t.Fatalf("ledger size %d after a refused batch, want 3", size)
	}
}
