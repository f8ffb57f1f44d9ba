package consensus

import (
	"bytes"
	"crypto/ed25519"
	"io"
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

// TestLedgerKeysFollowChanges: the FSM keeps the ledger's keys between
// batches of receipts (FSM.ledgerKeys); a node key published later, in
// an earlier entry of the same batch of log entries, or by a snapshot
// restore, signs receipts from the next batch on, exactly as if the keys
// were read for every batch.
func TestLedgerKeysFollowChanges(t *testing.T) {
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	env := func(task, node string, key ed25519.PrivateKey) []byte {
		r := &ledger.Receipt{LeaseID: "l", Tenant: "t", Profile: "p", PolicyDigest: "sha256:" + hex, ModuleDigest: "sha256:" + hex,
			TaskID: task, RequestSHA256: hex, ResponseSHA256: hex, NodeID: node, Start: time.Unix(1, 0).UTC(), End: time.Unix(2, 0).UTC(),
			Destinations: []string{}, BlockedAttempts: []ledger.BlockedAttempt{}, Outcome: "ok",
			Traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", Attempt: 1}
		e, err := ledger.SignReceipt(key, "", r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := e.Canonical()
		return b
	}
	type fsm struct {
		f   *FSM
		idx uint64
	}
	entry := func(x *fsm, c Command) *raft.Log {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		x.idx++
		return &raft.Log{Index: x.idx, Type: raft.LogCommand, Data: b}
	}
	apply := func(x *fsm, cs ...Command) []*Result {
		logs := make([]*raft.Log, len(cs))
		for i, c := range cs {
			logs[i] = entry(x, c)
		}
		var out []*Result
		for _, r := range x.f.ApplyBatch(logs) {
			out = append(out, r.(*Result))
		}
		return out
	}
	nodeKey := func(node string, pub ed25519.PublicKey) Command {
		return &PutNodeKey{Key: NodeKey{KID: ledger.KeyID(pub), NodeID: node, Use: KeyUseReceipt, Algorithm: "EdDSA", PublicKey: pub}}
	}
	pub1, priv1, _ := ed25519.GenerateKey(nil)
	pub2, priv2, _ := ed25519.GenerateKey(nil)
	pub3, priv3, _ := ed25519.GenerateKey(nil)
	a := &fsm{f: NewFSM(newStateDB(t), nil)}
	for _, r := range apply(a, nodeKey("n1", pub1), &LedgerInit{Origin: "leash/test"}) {
		if r.Code != "" {
			t.Fatal(r.Message)
		}
	}
	if r := apply(a, &AppendReceipts{Envelopes: [][]byte{env("tsk_1", "n1", priv1)}})[0]; r.Code != "" {
		t.Fatalf("n1's receipt: %+v", r)
	}
	// n2 is not known yet: refused, with the keys now kept.
	if r := apply(a, &AppendReceipts{Envelopes: [][]byte{env("tsk_2", "n2", priv2)}})[0]; r.Code != CodeBadReceipt {
		t.Fatalf("a receipt of an unknown key: %+v", r)
	}
	// Its key is published, then its receipt appends, in one batch of
	// entries.
	rs := apply(a, nodeKey("n2", pub2), &AppendReceipts{Envelopes: [][]byte{env("tsk_2", "n2", priv2)}})
	if rs[0].Code != "" || rs[1].Code != "" {
		t.Fatalf("key then receipt in one batch: %+v %+v", rs[0], rs[1])
	}
	// A snapshot taken after n3's key is published replaces the state of
	// a replica that kept the keys from before it.
	if r := apply(a, nodeKey("n3", pub3))[0]; r.Code != "" {
		t.Fatal(r.Message)
	}
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	b := &fsm{f: NewFSM(newStateDB(t), nil)}
	for _, r := range apply(b, nodeKey("n1", pub1), &LedgerInit{Origin: "leash/test"}, &AppendReceipts{Envelopes: [][]byte{env("tsk_1", "n1", priv1)}}) {
		if r.Code != "" {
			t.Fatal(r.Message)
		}
	}
	if r := apply(b, &AppendReceipts{Envelopes: [][]byte{env("tsk_3", "n3", priv3)}})[0]; r.Code != CodeBadReceipt {
		t.Fatalf("before the restore, n3 is unknown: %+v", r)
	}
	if err := b.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	b.idx = a.idx
	if r := apply(b, &AppendReceipts{Envelopes: [][]byte{env("tsk_3", "n3", priv3)}})[0]; r.Code != "" {
		t.Fatalf("after the restore, n3's receipt: %+v", r)
	}
}
