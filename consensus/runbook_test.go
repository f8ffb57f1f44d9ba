package consensus

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/policy"
)

func rbStateBytes(t testing.TB, db iterable) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, prefix := range []string{PrefixState + "runbook/", prefixLease, prefixLeaseExp} {
		if err := scan(db, prefix, func(k, v []byte) error {
			buf.Write(k)
			buf.WriteByte(0)
			buf.Write(v)
			buf.WriteByte(0)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// rbLease is a live lease of tenant on profile, in session sess.
func rbLease(id, tenant, profile, sess string) *IssueLease {
	return &IssueLease{Lease: Lease{ID: id, Tenant: tenant, Profile: profile, Session: sess, PolicyDigest: policy.Default().Digest(),
		Class: ClassInteractive, IssuedAt: qt0, NotBefore: qt0, ExpiresAt: qt0 + int64(10*time.Minute), IssuedBy: "n1", KID: "n1-lease"}}
}

func act(by string, d time.Duration, inc string) Action {
	return Action{By: by, At: at(d), Reason: "drill", Incident: inc}
}

func newIncident(id string, d time.Duration) *OpenIncident {
	inc := Incident{ID: id, Title: "exfiltration", Owner: "alice", DetectedAt: at(d), Opened: act("key:op", d, "")}
	for i, s := range Steps {
		inc.Steps = append(inc.Steps, Step{Name: s, Owner: "alice", Due: at(d + time.Duration(i+1)*15*time.Minute)})
	}
	return &OpenIncident{Incident: inc}
}

// rbScript: a bundle, leases across profiles and sessions, an incident,
// and every runbook command, with refusals.
func rbScript(t testing.TB) [][]byte {
	t.Helper()
	cmds := queueSetup(t)
	cmds = append(cmds,
		rbLease("l1", "demo", "api-caller", "s1"),
		rbLease("l2", "demo", "api-caller", "s2"),
		rbLease("l3", "demo", "content-transformer", "s1"),
		newIncident("inc-1", time.Second),
		&FreezeProfile{Profile: "api-caller", Frozen: true, Action: act("key:op", 2*time.Second, "inc-1")},
		rbLease("l4", "demo", "api-caller", ""), // refused: frozen
		&RevokeLeases{Selector: Selector{Session: "s1"}, Action: act("key:op", 3*time.Second, "inc-1")},
		&BlockDestinations{Entries: []string{"Evil.example", "10.9.0.0/16", "evil.example"}, Block: true, Action: act("key:op", 4*time.Second, "inc-1")},
		&BlockDestinations{Entries: []string{"10.9.1.1/16"}, Block: false, Action: act("key:op", 5*time.Second, "")},
		&CompleteStep{Step: StepBlastRadius, Detail: "3 tasks", Action: act("key:op", 6*time.Second, "inc-1")},
		&FreezeProfile{Profile: "api-caller", Frozen: false, Action: act("key:op", 7*time.Second, "inc-1")},
		&CloseIncident{Action: act("key:op", 8*time.Second, "inc-1")},
		&RevokeLeases{Selector: Selector{Tenant: "demo"}, Action: act("key:op", 9*time.Second, "inc-1")}, // refused: closed
	)
	var out [][]byte
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestRunbook walks the script and checks each command's effect.
func TestRunbook(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	st := f.State()
	var res []*Result
	for i, c := range rbScript(t) {
		res = append(res, applyAll(t, f, [][]byte{c}, uint64(i+1))...)
	}
	base := len(queueSetup(t))
	codes := map[int]string{base + 5: CodeProfileFrozen, base + 12: CodeIncidentClosed}
	for i, r := range res {
		if r.Code != codes[i] {
			t.Errorf("command %d: code %q (%s), want %q", i, r.Code, r.Message, codes[i])
		}
	}
	// The session revocation took l1 and l3 (s1), not l2.
	if got := res[base+6].Value.(*Revoked).Leases; !slices.Equal(got, []string{"l1", "l3"}) {
		t.Errorf("revoked %v, want [l1 l3]", got)
	}
	for id, want := range map[string]bool{"l1": true, "l2": false, "l3": true, "li": false} {
		l, err := st.Lease(id)
		if err != nil {
			t.Fatal(err)
		}
		if l.Revoked() != want || (want && (l.RevokedBy != "key:op" || l.RevokeReason != "drill")) {
			t.Errorf("lease %s: revoked %v by %q (%q), want %v", id, l.Revoked(), l.RevokedBy, l.RevokeReason, want)
		}
	}
	// Block canonicalized and deduplicated; the unblock masked its prefix.
	if got := res[base+7].Value.(*Blocked).Entries; !slices.Equal(got, []string{"10.9.0.0/16", "evil.example"}) {
		t.Errorf("blocked %v", got)
	}
	bl, err := st.Blocks()
	if err != nil || len(bl) != 1 || bl[0].Entry != "evil.example" || bl[0].Action.Incident != "inc-1" {
		t.Errorf("blocks %+v %v", bl, err)
	}
	if fr, err := st.FrozenProfiles(); err != nil || len(fr) != 0 {
		t.Errorf("frozen after thaw: %+v %v", fr, err)
	}
	inc, err := st.Incident("inc-1")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range inc.Timeline {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"open", "freeze", "revoke", "block", "step", "unfreeze", "close"}; !slices.Equal(kinds, want) {
		t.Errorf("timeline %v, want %v", kinds, want)
	}
	if inc.ContainedAt != at(2*time.Second) || inc.ClosedAt != at(8*time.Second) {
		t.Errorf("contained %d closed %d", inc.ContainedAt, inc.ClosedAt)
	}
	for _, s := range inc.Steps {
		done := s.Name != StepRestore
		if (s.DoneAt != 0) != done {
			t.Errorf("step %s done at %d, want done %v", s.Name, s.DoneAt, done)
		}
	}
}

// TestRunbookRefusals: malformed commands are refused and write nothing.
func TestRunbookRefusals(t *testing.T) {
	good := act("key:op", time.Second, "")
	cases := map[string]struct {
		c    Command
		code string
	}{
		"freeze without who":       {&FreezeProfile{Profile: "p", Frozen: true, Action: Action{At: 1}}, CodeInvalid},
		"freeze bad profile":       {&FreezeProfile{Profile: "a/b", Frozen: true, Action: good}, CodeInvalid},
		"thaw that revokes":        {&FreezeProfile{Profile: "p", RevokeLive: true, Action: good}, CodeInvalid},
		"revoke empty selector":    {&RevokeLeases{Action: good}, CodeInvalid},
		"revoke unknown incident":  {&RevokeLeases{Selector: Selector{Tenant: "demo"}, Action: act("k", time.Second, "nope")}, CodeIncidentNotFound},
		"block nothing":            {&BlockDestinations{Block: true, Action: good}, CodeInvalid},
		"block a bad prefix":       {&BlockDestinations{Entries: []string{"10.0.0.0/99"}, Block: true, Action: good}, CodeBadDestination},
		"block a bad host":         {&BlockDestinations{Entries: []string{"a b"}, Block: true, Action: good}, CodeBadDestination},
		"incident without steps":   {&OpenIncident{Incident: Incident{ID: "i", Title: "t", Owner: "o", DetectedAt: 1, Opened: good}}, CodeInvalid},
		"incident bad id":          {func() Command { c := newIncident("a/b", time.Second); return c }(), CodeInvalid},
		"incident detected later":  {func() Command { c := newIncident("i", time.Second); c.Incident.DetectedAt = at(time.Hour); return c }(), CodeInvalid},
		"step of unknown incident": {&CompleteStep{Step: StepRestore, Action: act("k", time.Second, "nope")}, CodeIncidentNotFound},
		"unknown step":             {&CompleteStep{Step: "dance", Action: act("k", time.Second, "i")}, CodeInvalid},
		"close without incident":   {&CloseIncident{Action: good}, CodeInvalid},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db := newStateDB(t)
			f := NewFSM(db, nil)
			for i, c := range queueSetup(t) {
				b, _ := Encode(c)
				applyAll(t, f, [][]byte{b}, uint64(i+1))
			}
			before := rbStateBytes(t, db)
			b, err := Encode(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			r := applyAll(t, f, [][]byte{b}, 100)[0]
			if r.Code != tc.code {
				t.Fatalf("code %q (%s), want %q", r.Code, r.Message, tc.code)
			}
			if !bytes.Equal(before, rbStateBytes(t, db)) {
				t.Fatal("a refused command changed state")
			}
		})
	}
}

// TestRevokeLeasesBounded: a selector matching more than one command may
// revoke revokes MaxRevokePerCommand, says More, and the next command
// takes the rest.
func TestRevokeLeasesBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("issues thousands of leases")
	}
	db := newStateDB(t)
	f := NewFSM(db, nil)
	var cmds [][]byte
	for _, c := range queueSetup(t) {
		b, _ := Encode(c)
		cmds = append(cmds, b)
	}
	n := MaxRevokePerCommand + 7
	for i := range n {
		b, _ := Encode(rbLease(fmt.Sprintf("m%05d", i), "demo", "api-caller", ""))
		cmds = append(cmds, b)
	}
	applyAll(t, f, cmds, 1)
	idx := uint64(len(cmds))
	total := 0
	for round := 0; ; round++ {
		b, _ := Encode(&RevokeLeases{Selector: Selector{Profile: "api-caller"}, Action: act("k", time.Second, "")})
		idx++
		r := applyAll(t, f, [][]byte{b}, idx)[0]
		if r.Code != "" {
			t.Fatal(r.Message)
		}
		v := r.Value.(*Revoked)
		total += len(v.Leases)
		if !v.More {
			break
		}
		if round > 2 {
			t.Fatal("More never ends")
		}
	}
	if total != n {
		t.Fatalf("revoked %d, want %d", total, n)
	}
}

// TestRunbookStateFormat pins the runbook script's bytes, as
// TestHistoryStateFormat does for history.
func TestRunbookStateFormat(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	h := sha256.New()
	for i, c := range rbScript(t) {
		applyAll(t, f, [][]byte{c}, uint64(i+1))
		h.Write(rbStateBytes(t, db))
		h.Write([]byte{1})
	}
	const want = "0ef204d7812112c2c72a7407958f22e8c7a1110cf4eacea78d324c2cbe28055d"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("runbook state along the script: sha256 %s, want %s", got, want)
	}
}

// FuzzDecodeRunbookCommand: a runbook command that decodes applies or is
// refused, and a refusal writes nothing.
func FuzzDecodeRunbookCommand(f *testing.F) {
	for _, c := range rbScript(f) {
		f.Add(c)
	}
	db := newStateDB(f)
	fsm := NewFSM(db, nil)
	var idx uint64
	for _, c := range queueSetup(f) {
		b, _ := Encode(c)
		idx++
		applyAll(f, fsm, [][]byte{b}, idx)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		switch c.(type) {
		case *FreezeProfile, *RevokeLeases, *BlockDestinations, *OpenIncident, *CompleteStep, *CloseIncident, *IssueLease:
		default:
			return
		}
		before := rbStateBytes(t, db)
		idx++
		r := applyAll(t, fsm, [][]byte{b}, idx)[0]
		if r.Code != "" && !bytes.Equal(before, rbStateBytes(t, db)) {
			t.Fatalf("refused %s (%s) changed state", c.Op(), r.Code)
		}
	})
}

// TestAppendGovernance: a governance entry shares the receipt log: it is
// appended once per action id (a retried append reports its first
// index), beside receipts, and one naming a node whose key is not
// published refuses the batch.
func TestAppendGovernance(t *testing.T) {
	f := NewFSM(newStateDB(t), nil)
	pub, priv, _ := ed25519.GenerateKey(nil)
	var idx uint64
	apply := func(c Command) *Result {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		idx++
		return applyAll(t, f, [][]byte{b}, idx)[0]
	}
	for _, c := range []Command{
		&PutNodeKey{Key: NodeKey{KID: ledger.KeyID(pub), NodeID: "n1", Use: KeyUseReceipt, Algorithm: "EdDSA", PublicKey: pub}},
		&LedgerInit{Origin: "leash/test"},
	} {
		if r := apply(c); r.Code != "" {
			t.Fatal(r.Message)
		}
	}
	gov := func(id, node string) []byte {
		e, err := ledger.SignGovernance(priv, &ledger.Governance{ID: id, Action: "freeze", By: "key:op", At: time.Unix(5, 0), Target: "p", NodeID: node})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := e.Canonical()
		return b
	}
	r := apply(&AppendReceipts{Envelopes: [][]byte{gov("raft:7", "n1"), gov("raft:8", "n1")}})
	if r.Code != "" || r.Value.(*AppendResult).Size != 2 {
		t.Fatalf("append: %+v", r)
	}
	r = apply(&AppendReceipts{Envelopes: [][]byte{gov("raft:7", "n1"), gov("raft:9", "n1")}, MayRepeat: true})
	if ar := r.Value.(*AppendResult); r.Code != "" || ar.Size != 3 || ar.Indexes[0] != 0 || ar.Indexes[1] != 2 {
		t.Fatalf("retried append: %+v", r)
	}
	if r := apply(&AppendReceipts{Envelopes: [][]byte{gov("raft:10", "n2")}}); r.Code != CodeBadReceipt {
		t.Fatalf("an entry naming another node: %+v", r)
	}
}

// TestFreezeRevokesLive: a freeze with RevokeLive revokes the profile's
// live leases, and only those, in the same command.
func TestFreezeRevokesLive(t *testing.T) {
	db := newStateDB(t)
	f := NewFSM(db, nil)
	cmds := append(queueSetup(t), rbLease("l1", "demo", "api-caller", ""), rbLease("l2", "demo", "api-caller", "s"), rbLease("l3", "demo", "content-transformer", ""),
		&FreezeProfile{Profile: "api-caller", Frozen: true, RevokeLive: true, Action: act("key:op", time.Second, "")})
	var last *Result
	for i, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		last = applyAll(t, f, [][]byte{b}, uint64(i+1))[0]
	}
	if last.Code != "" || !slices.Equal(last.Value.(*Revoked).Leases, []string{"l1", "l2"}) {
		t.Fatalf("freeze: %+v", last)
	}
	if l, _ := f.State().Lease("l3"); l.Revoked() {
		t.Fatal("another profile's lease was revoked")
	}
	if _, err := f.State().FrozenProfile("api-caller"); err != nil {
		t.Fatal(err)
	}
}
