package consensus

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/leash-dev/leash/policy"
)

func newStateDB(t testing.TB) *pebble.DB {
	t.Helper()
	db, err := OpenDB(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// script is a command history that touches every command type, with a
// refusal or two in the middle.
func script(t testing.TB) [][]byte {
	t.Helper()
	bundle := policy.Default()
	pub, _, _ := ed25519.GenerateKey(nil)
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	lease := func(id, tenant string) Lease {
		return Lease{ID: id, Tenant: tenant, Profile: "docs-reader", PolicyDigest: bundle.Digest(), Class: ClassInteractive,
			IssuedAt: at, NotBefore: at, ExpiresAt: at + int64(10*time.Minute), IssuedBy: "n1", KID: "n1-lease"}
	}
	cmds := []Command{
		&PutNode{Node: NodeInfo{ID: "n1", API: "127.0.0.1:8080", Raft: "127.0.0.1:8300", Version: "test", JoinedAt: at}},
		&PutNodeKey{Key: NodeKey{KID: "n1-lease", NodeID: "n1", Use: KeyUseLease, Algorithm: "EdDSA", PublicKey: pub, AddedAt: at}},
		&PutPolicy{Canonical: bundle.Canonical(), Source: policy.DefaultYAML(), Env: "prod", By: "test", At: at},
		&IssueLease{Lease: lease("l1", "demo")},
		&IssueLease{Lease: lease("l2", "demo")},
		&IssueLease{Lease: lease("l3", "nobody")}, // refused: unknown tenant
		&IssueLease{Lease: lease("l1", "demo")},   // refused: exists
		&RevokeLease{LeaseID: "l1", Reason: "test", By: "admin", At: at + 1},
		&RevokeLease{LeaseID: "missing", At: at + 2}, // refused
		&ExpireLeases{Before: at},                    // nothing expired yet
	}
	var out [][]byte
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	out = append(out, []byte("not a command")) // refused: malformed
	return out
}

func applyAll(t testing.TB, f *FSM, cmds [][]byte, from uint64) []*Result {
	t.Helper()
	var res []*Result
	for i, c := range cmds {
		r := f.Apply(&raft.Log{Index: from + uint64(i), Term: 1, Type: raft.LogCommand, Data: c})
		res = append(res, r.(*Result))
	}
	return res
}

func stateBytes(t testing.TB, db *pebble.DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := scan(db, PrefixState, func(k, v []byte) error {
		buf.Write(k)
		buf.WriteByte(0)
		buf.Write(v)
		buf.WriteByte(0)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestApplyScript(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	res := applyAll(t, f, script(t), 1)
	wantCodes := []string{"", "", "", "", "", CodeUnknownTenant, CodeLeaseExists, "", CodeLeaseNotFound, "", "malformed_command"}
	for i, r := range res {
		if r.Code != wantCodes[i] {
			t.Errorf("command %d: code %q (%s), want %q", i, r.Code, r.Message, wantCodes[i])
		}
	}
	st := f.State()
	l1, err := st.Lease("l1")
	if err != nil || !l1.Revoked() {
		t.Fatalf("l1 = %+v, %v; want revoked", l1, err)
	}
	if _, err := st.Lease("l3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused lease l3 was stored: %v", err)
	}
	d, b, err := st.ActiveBundle("prod")
	if err != nil || d != policy.Default().Digest() || b.Tenants["demo"] == nil {
		t.Fatalf("active bundle %s, %v", d, err)
	}
	if idx, _ := st.AppliedIndex(); idx != uint64(len(res)) {
		t.Errorf("applied index %d, want %d", idx, len(res))
	}
}

// TestReplayIsDeterministic replays the same log into a fresh FSM and
// compares state byte for byte.
func TestReplayIsDeterministic(t *testing.T) {
	cmds := script(t)
	a, b := newStateDB(t), newStateDB(t)
	applyAll(t, NewFSM(a, nil), cmds, 1)
	fb := NewFSM(b, nil)
	// Apply in batches of different sizes: the result must not depend on
	// how raft batched the entries.
	var logs []*raft.Log
	for i, c := range cmds {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: c})
	}
	fb.ApplyBatch(logs[:3])
	fb.ApplyBatch(logs[3:])
	if !bytes.Equal(stateBytes(t, a), stateBytes(t, b)) {
		t.Fatal("replaying the same log gave different state")
	}
	// Re-applying entries at or below the applied index changes nothing.
	before := stateBytes(t, b)
	fb.ApplyBatch(logs)
	if !bytes.Equal(before, stateBytes(t, b)) {
		t.Fatal("re-applied entries changed state")
	}
}

// TestSnapshotPlusTail restores from a snapshot taken mid-log, applies
// the tail, and must reach the same state as applying everything.
func TestSnapshotPlusTail(t *testing.T) {
	cmds := script(t)
	full := newStateDB(t)
	applyAll(t, NewFSM(full, nil), cmds, 1)

	src := NewFSM(newStateDB(t), nil)
	applyAll(t, src, cmds[:5], 1)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dstDB := newStateDB(t)
	dst := NewFSM(dstDB, nil)
	restored := 0
	dst.OnRestore(func() { restored++ })
	applyAll(t, dst, cmds[:2], 1) // stale state that Restore must replace
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if restored != 1 {
		t.Fatalf("OnRestore listeners ran %d times, want once", restored)
	}
	applyAll(t, dst, cmds[5:], 6)
	if !bytes.Equal(stateBytes(t, full), stateBytes(t, dstDB)) {
		t.Fatal("snapshot + tail differs from the full log")
	}
	da, _ := NewFSM(full, nil).State().Digest()
	db, _ := dst.State().Digest()
	if da != db {
		t.Errorf("state digests differ: %s vs %s", da, db)
	}
}

func TestRestoreRefusesGarbage(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	applyAll(t, f, script(t), 1)
	f.OnRestore(func() { t.Error("a refused restore ran the restore listeners") })
	before, _ := f.State().Digest()
	for name, b := range map[string][]byte{
		"empty":       {},
		"bad version": {9},
		"truncated":   {snapshotVersion, 5, 's', '/'},
		"outside":     {snapshotVersion, 3, 'x', '/', 'a', 1, 'v', 0},
	} {
		t.Run(name, func(t *testing.T) {
			if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err == nil {
				t.Fatal("Restore accepted garbage")
			}
			if after, _ := f.State().Digest(); after != before {
				t.Fatal("a refused restore changed state")
			}
		})
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func TestDecodeRefuses(t *testing.T) {
	good, _ := Encode(&RevokeLease{LeaseID: "l", At: 1})
	tests := map[string][]byte{
		"empty":    {},
		"garbage":  []byte("hello"),
		"trailing": append(append([]byte{}, good...), 0xc0),
		"too big":  make([]byte, MaxCommandBytes+1),
	}
	// Unknown version and unknown op.
	for name, env := range map[string]envelope{"version": {V: 2, Op: OpRevokeLease}, "op": {V: 1, Op: 999}} {
		b, _ := msgpackMarshal(&env)
		tests["unknown "+name] = b
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(b); err == nil {
				t.Fatal("Decode accepted it")
			}
		})
	}
	if c, err := Decode(good); err != nil || c.(*RevokeLease).LeaseID != "l" {
		t.Fatalf("Decode(good) = %v, %v", c, err)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range script(f) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes and decodes to the same op, and
		// applying it never panics.
		again, err := Encode(c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if c2, err := Decode(again); err != nil || c2.Op() != c.Op() {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

// TestExpireLeases forgets leases that expired before the given time,
// through the expiry index, and keeps the others.
func TestExpireLeases(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	cmds := script(t)
	res := applyAll(t, f, cmds[:5], 1) // node, key, policy, l1, l2
	for _, r := range res {
		if r.Code != "" {
			t.Fatal(r.Message)
		}
	}
	st := f.State()
	l1, _ := st.Lease("l1")
	// Both leases share an expiry; expiring just before it keeps them,
	// just after it forgets both.
	b, _ := Encode(&ExpireLeases{Before: l1.ExpiresAt})
	r := f.Apply(&raft.Log{Index: 6, Type: raft.LogCommand, Data: b}).(*Result)
	if r.Code != "" || r.Value.(int) != 0 {
		t.Fatalf("expire before expiry: %+v", r)
	}
	b, _ = Encode(&ExpireLeases{Before: l1.ExpiresAt + 1})
	r = f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: b}).(*Result)
	if r.Code != "" || r.Value.(int) != 2 {
		t.Fatalf("expire after expiry: %+v", r)
	}
	for _, id := range []string{"l1", "l2"} {
		if _, err := st.Lease(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("lease %s still known: %v", id, err)
		}
	}
}

// TestCodesAreDocumented: every refusal code of the state machine is in
// docs/api.md (writes that fail reach clients with these codes).
func TestCodesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`Code[A-Za-z]*\s*=\s*"([a-z_]+)"`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			if !strings.Contains(string(doc), "| `"+m[1]+"` |") {
				t.Errorf("%s: code %s is not in docs/api.md", f, m[1])
			}
		}
	}
}
