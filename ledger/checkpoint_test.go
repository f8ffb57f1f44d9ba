package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestCheckpointTextRoundTrip(t *testing.T) {
	c := Checkpoint{Origin: "leash/x", Size: 123, Root: tlog.RecordHash([]byte("r"))}
	text := c.Text()
	if want := "leash/x\n123\n" + c.Root.String() + "\n"; string(text) != want {
		t.Fatalf("Text = %q, want %q", text, want)
	}
	got, err := ParseCheckpoint(text)
	if err != nil || got != c {
		t.Fatalf("ParseCheckpoint = %+v, %v", got, err)
	}
}

func TestParseCheckpointErrors(t *testing.T) {
	root := tlog.RecordHash([]byte("r")).String()
	tests := map[string]struct{ text, field string }{
		"no newline":     {"o\n1\n" + root, ""},
		"two lines":      {"o\n1\n", ""},
		"extension":      {"o\n1\n" + root + "\nextra\n", ""},
		"empty origin":   {"\n1\n" + root + "\n", "origin"},
		"tab in origin":  {"a\tb\n1\n" + root + "\n", "origin"},
		"leading zero":   {"o\n01\n" + root + "\n", "size"},
		"negative":       {"o\n-1\n" + root + "\n", "size"},
		"plus":           {"o\n+1\n" + root + "\n", "size"},
		"short hash":     {"o\n1\nAAAA\n", "root"},
		"unpadded hash":  {"o\n1\n" + strings.TrimSuffix(root, "=") + "\n", "root"},
		"go.sum header?": {"go.sum database tree\n1\n" + root + "\n", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCheckpoint([]byte(tc.text))
			if name == "go.sum header?" {
				if err != nil {
					t.Fatalf("a spaced origin is fine: %v", err)
				}
				return
			}
			wantErr(t, err, ErrMalformed, "checkpoint:")
			if tc.field != "" && err.(*VerifyError).Field != tc.field {
				t.Fatalf("field %q, want %q (%v)", err.(*VerifyError).Field, tc.field, err)
			}
		})
	}
}

func TestNoteSignerFromEd25519Key(t *testing.T) {
	key := seededKey("n")
	s, err := NewNoteSigner("node-a", key)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := NoteVerifierKey("node-a", key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyHash() != s.KeyHash() || v.Name() != s.Name() {
		t.Fatalf("signer %s/%08x, verifier %s/%08x", s.Name(), s.KeyHash(), v.Name(), v.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatal(err)
	}
	if _, err := NoteVerifierKey("a+b", key.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("a name with '+' was accepted")
	}
}

func TestVerifyCheckpoint(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	l, s := newLog(t, c.envelopes(t, 0, 10, "a"), 10)
	stranger := newTestNode(t, "z")
	cp, _ := l.Checkpoint(s)
	sign := func(cp Checkpoint, signers ...note.Signer) []byte {
		msg, err := SignCheckpoint(cp, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	a, b := c.nodes["a"].signer, c.nodes["b"].signer
	other := cp
	other.Origin = "leash/other"
	swapped := bytes.Replace(sign(cp, a), []byte("\n10\n"), []byte("\n11\n"), 1)
	tests := map[string]struct {
		msg      []byte
		min      int
		sentinel error
		text     string
		signers  []string
	}{
		"one of one":        {sign(cp, a), 1, nil, "", []string{"a"}},
		"two of two":        {sign(cp, b, a), 2, nil, "", []string{"a", "b"}},
		"stranger ignored":  {sign(cp, a, stranger.signer), 1, nil, "", []string{"a"}},
		"too few":           {sign(cp, a, stranger.signer), 2, ErrTooFewSignatures, "signed by 1 trusted node(s) [a], need 2; signatures by untrusted keys ignored: z+", nil},
		"only stranger":     {sign(cp, stranger.signer), 1, ErrTooFewSignatures, "signed by 0 trusted node(s)", nil},
		"size swapped":      {swapped, 1, ErrBadSignature, "checkpoint: signature by node a", nil},
		"other origin":      {sign(other, a), 1, ErrOriginMismatch, `"leash/other", the trusted key set is for "leash/test-cluster"`, nil},
		"not a note":        {[]byte("leash\n1\n"), 1, ErrMalformed, "not a signed note", nil},
		"same node twice":   {append(sign(cp, a), []byte(strings.SplitAfter(string(sign(cp, a)), "\n\n")[1])...), 2, ErrTooFewSignatures, "need 2", nil},
		"min zero means 1":  {sign(cp, c.nodes["c"].signer), 0, nil, "", []string{"c"}},
		"three, order free": {sign(cp, c.nodes["c"].signer, a, b), 3, nil, "", []string{"a", "b", "c"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sc, err := VerifyCheckpoint(tc.msg, c.keys, tc.min)
			if tc.sentinel != nil {
				wantErr(t, err, tc.sentinel, tc.text)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sc.Checkpoint != cp || strings.Join(sc.Signers, ",") != strings.Join(tc.signers, ",") {
				t.Fatalf("got %+v signers %v", sc.Checkpoint, sc.Signers)
			}
		})
	}
}

func TestCoSignAndMerge(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	envs := c.envelopes(t, 0, 30, "a", "b", "c")
	// Three replicas of the same log.
	la, sa := newLog(t, envs, 30)
	_, sb := newLog(t, envs, 7)
	_, sc := newLog(t, envs, 1)

	proposal := c.checkpoint(t, la, sa, "a")
	withB, err := la.CoSign(sb, proposal, c.keys, c.nodes["b"].signer)
	if err != nil {
		t.Fatal(err)
	}
	withC, err := la.CoSign(sc, proposal, c.keys, c.nodes["c"].signer)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := MergeCheckpoints(c.keys, withC, withB, proposal)
	if err != nil {
		t.Fatal(err)
	}
	again, err := MergeCheckpoints(c.keys, withB, withC)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(merged, again) {
		t.Fatalf("merge depends on input order:\n%s\n%s", merged, again)
	}
	sc3, err := VerifyCheckpoint(merged, c.keys, 3)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sc3.Signers, ",") != "a,b,c" {
		t.Fatalf("signers %v", sc3.Signers)
	}
	// Co-signing what one already signed changes nothing.
	same, err := la.CoSign(sa, merged, c.keys, c.nodes["a"].signer)
	if err != nil || !bytes.Equal(same, merged) {
		t.Fatalf("re-co-sign changed the note: %v\n%s\n%s", err, same, merged)
	}

	// A node behind the checkpoint, a node with a forked log, a proposal
	// for another log, a proposal with a forged signature: all refused.
	_, behind := newLog(t, envs[:20], 20)
	forkEnvs := append(append([][]byte{}, envs[:29]...), c.signed(t, 999, "c"))
	_, forked := newLog(t, forkEnvs, 30)
	otherLog, _ := NewLog("leash/other", []byte("s/ledger/"))
	forged := bytes.Replace(proposal, []byte("\n30\n"), []byte("\n29\n"), 1)
	tests := map[string]struct {
		log      *Log
		store    Reader
		msg      []byte
		sentinel error
		text     string
	}{
		"behind":      {la, behind, proposal, ErrBehind, "co-sign: checkpoint size 30, local log size 20"},
		"forked":      {la, forked, proposal, ErrRootMismatch, "co-sign: root differs at size 30"},
		"other log":   {otherLog, sb, proposal, ErrOriginMismatch, `names origin "leash/test-cluster"`},
		"forged":      {la, sb, forged, ErrBadSignature, "signature by node a"},
		"not a note":  {la, sb, []byte("hello"), ErrMalformed, "co-sign"},
		"older is ok": {la, sb, c.checkpoint(t, la, behind, "a"), nil, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := tc.log.CoSign(tc.store, tc.msg, c.keys, c.nodes["b"].signer)
			if tc.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.text)
		})
	}

	t.Run("merge different heads", func(t *testing.T) {
		_, err := MergeCheckpoints(c.keys, proposal, c.checkpoint(t, la, behind, "b"))
		wantErr(t, err, ErrRootMismatch, "merge: note 1 is for another tree head")
	})
	t.Run("merge forged", func(t *testing.T) {
		_, err := MergeCheckpoints(c.keys, proposal, forged)
		wantErr(t, err, ErrBadSignature, "note 1")
	})
	t.Run("merge drops untrusted", func(t *testing.T) {
		z := newTestNode(t, "z")
		m, err := MergeCheckpoints(c.keys, proposal, c.checkpoint(t, la, sa, "b"), mustSign(t, la, sa, z.signer))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(m, []byte("— z ")) {
			t.Fatalf("untrusted signature kept:\n%s", m)
		}
	})
}

func mustSign(t *testing.T, l *Log, r Reader, s note.Signer) []byte {
	t.Helper()
	cp, err := l.Checkpoint(r)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := SignCheckpoint(cp, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestKeySetJSON(t *testing.T) {
	c := newCluster(t, "a", "b")
	b, err := json.Marshal(c.keys)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ReadKeySet(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Origin != testOrigin || strings.Join(ks.NodeIDs(), ",") != "a,b" {
		t.Fatalf("parsed %+v", ks)
	}
	// A literal KeySet works too.
	lit := &KeySet{Origin: c.keys.Origin, Nodes: c.keys.Nodes}
	if _, err := VerifyEnvelope(mustDecode(t, c.signed(t, 1, "a")), lit); err != nil {
		t.Fatal(err)
	}

	good := c.keys.Nodes[0]
	mut := func(f func(n *NodeKeys)) string {
		n := good
		n.ReceiptKeys = append([]ReceiptKey(nil), good.ReceiptKeys...)
		n.CheckpointKeys = append([]string(nil), good.CheckpointKeys...)
		f(&n)
		b, _ := json.Marshal(KeySet{Origin: testOrigin, Nodes: []NodeKeys{n}})
		return string(b)
	}
	tests := map[string]struct{ json, text string }{
		"not json":         {"[", "not a key set"},
		"no id":            {mut(func(n *NodeKeys) { n.ID = "" }), "field nodes[0].id: is empty"},
		"duplicate node":   {`{"nodes":[{"id":"a"},{"id":"a"}]}`, "appears twice"},
		"wrong keyid":      {mut(func(n *NodeKeys) { n.ReceiptKeys[0].KeyID = "sha256:00" }), "keys from node a: field receipt_keys[0].keyid"},
		"short key":        {mut(func(n *NodeKeys) { n.ReceiptKeys[0].PublicKey = "AAAA" }), "receipt_keys[0].public_key"},
		"bad alg":          {mut(func(n *NodeKeys) { n.ReceiptKeys[0].Alg = "rsa" }), `"rsa", want ed25519`},
		"note key of b":    {mut(func(n *NodeKeys) { n.CheckpointKeys[0] = c.keys.Nodes[1].CheckpointKeys[0] }), `is named "b", want the node id`},
		"bad note key":     {mut(func(n *NodeKeys) { n.CheckpointKeys[0] = "x" }), "not a note verifier key"},
		"repeat note key":  {mut(func(n *NodeKeys) { n.CheckpointKeys = append(n.CheckpointKeys, n.CheckpointKeys[0]) }), "twice"},
		"repeat rcpt key":  {mut(func(n *NodeKeys) { n.ReceiptKeys = append(n.ReceiptKeys, n.ReceiptKeys[0]) }), "also listed for node a"},
		"origin with tab":  {`{"origin":"a\tb"}`, "field origin"},
		"unknown is fine?": {`{"origin":"o","jwks":{},"nodes":[]}`, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKeySet([]byte(tc.json))
			if tc.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, ErrMalformed, tc.text)
		})
	}
}

func mustDecode(t *testing.T, b []byte) *Envelope {
	t.Helper()
	e, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
