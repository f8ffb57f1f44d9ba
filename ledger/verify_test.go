package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// world is a three-node cluster with a 100-record log and a checkpoint
// signed by all three nodes.
type world struct {
	c     *cluster
	envs  [][]byte
	log   *Log
	store *MemStore
	cp    []byte
}

func newWorld(t *testing.T, n int) *world {
	t.Helper()
	c := newCluster(t, "a", "b", "c")
	envs := c.envelopes(t, 0, n, "a", "b", "c")
	l, s := newLog(t, envs, 16)
	return &world{c: c, envs: envs, log: l, store: s, cp: c.checkpoint(t, l, s, "a", "b", "c")}
}

// flipStoredByte changes one byte of the payload of record i in the store.
func (w *world) flipStoredByte(t *testing.T, i int64) {
	t.Helper()
	k := w.log.key(keyRecord, i)
	v, err := w.store.Get(k)
	if err != nil {
		t.Fatal(err)
	}
	v = bytes.Clone(v)
	// Inside the base64 payload, after `{"payload":"`: swap one base64
	// letter for another so the envelope still decodes.
	p := len(`{"payload":"`) + 40
	if v[p] == 'A' {
		v[p] = 'B'
	} else {
		v[p] = 'A'
	}
	_ = w.store.Set(k, v)
}

func TestVerifyReceipt(t *testing.T) {
	w := newWorld(t, 100)
	proof := func(t *testing.T, s Reader, i int64, cp []byte) *ReceiptProof {
		p, err := w.log.ReceiptProof(s, i, cp)
		if err != nil {
			t.Fatal(err)
		}
		// Through JSON, as the API serves it.
		b, _ := json.Marshal(p)
		q, err := ParseReceiptProof(b)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	// A forked log: the same first 99 records, then another receipt.
	forkEnvs := append(append([][]byte{}, w.envs[:99]...), w.c.signed(t, 1000, "b"))
	fl, fs := newLog(t, forkEnvs, 100)
	forkCP := w.c.checkpoint(t, fl, fs, "b")
	_, smaller := newLog(t, w.envs[:60], 60)

	tests := map[string]struct {
		proof    func(t *testing.T) *ReceiptProof
		cp       []byte
		min      int
		sentinel error
		text     string
	}{
		"good": {func(t *testing.T) *ReceiptProof { return proof(t, w.store, 17, w.cp) }, nil, 3, nil, ""},
		"good, separate checkpoint": {func(t *testing.T) *ReceiptProof {
			p := proof(t, w.store, 17, w.cp)
			p.Checkpoint = ""
			return p
		}, w.cp, 3, nil, ""},
		"one byte of the stored receipt": {func(t *testing.T) *ReceiptProof {
			s := NewMemStore()
			for k, v := range storeContents(w.store) {
				_ = s.Set([]byte(k), []byte(v))
			}
			ww := *w
			ww.store = s
			ww.flipStoredByte(t, 17)
			return proof(t, s, 17, w.cp)
		}, nil, 1, ErrBadSignature, "receipt 17: signature does not verify with key sha256:"},
		"another receipt under this index": {func(t *testing.T) *ReceiptProof {
			p := proof(t, w.store, 17, w.cp)
			p.Envelope = w.envs[18]
			return p
		}, nil, 1, ErrNotIncluded, "receipt 17: not included in the checkpoint of size 100"},
		"swapped checkpoint (forked log, same size)": {func(t *testing.T) *ReceiptProof {
			return proof(t, w.store, 17, w.cp)
		}, forkCP, 1, ErrNotIncluded, "receipt 17: not included"},
		"swapped checkpoint (other size)": {func(t *testing.T) *ReceiptProof {
			return proof(t, w.store, 17, w.cp)
		}, w.c.checkpoint(t, w.log, smaller, "a"), 1, ErrSizeMismatch, "receipt 17: proof is for tree size 100, checkpoint has size 60"},
		"checkpoint short of signatures": {func(t *testing.T) *ReceiptProof {
			return proof(t, fs, 99, forkCP)
		}, nil, 2, ErrTooFewSignatures, "checkpoint: signed by 1 trusted node(s) [b], need 2"},
		"proof hash altered": {func(t *testing.T) *ReceiptProof {
			p := proof(t, w.store, 17, w.cp)
			p.Proof[2][0] ^= 1
			return p
		}, nil, 1, ErrNotIncluded, "receipt 17"},
		"index beyond checkpoint": {func(t *testing.T) *ReceiptProof {
			p := proof(t, w.store, 17, w.cp)
			p.Index = 100
			return p
		}, nil, 1, ErrNotIncluded, "receipt 100: index is beyond"},
		"no checkpoint": {func(t *testing.T) *ReceiptProof {
			p := proof(t, w.store, 17, w.cp)
			p.Checkpoint = ""
			return p
		}, nil, 1, ErrMalformed, "none given"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, cp, err := VerifyReceipt(tc.proof(t), tc.cp, w.c.keys, VerifyOptions{MinSignatures: tc.min})
			if tc.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				if r.TaskID != "task-17" || cp.Size != 100 {
					t.Fatalf("verified %s at size %d", r.TaskID, cp.Size)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.text)
		})
	}
}

// lines splits an export into its lines (newline kept).
func lines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		out = append(out, b[:i+1])
		b = b[i+1:]
	}
	return out
}

func setField(t *testing.T, line []byte, field string, v any) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	m[field] = b
	out, _ := json.Marshal(m)
	return append(out, '\n')
}

func TestVerifyExportTampering(t *testing.T) {
	w := newWorld(t, 100)
	full := export(t, w.log, w.store, 0, 100)
	ls := lines(full)
	join := func(ls [][]byte) []byte { return bytes.Join(ls, nil) }
	edit := func(f func(ls [][]byte) [][]byte) []byte {
		c := make([][]byte, len(ls))
		copy(c, ls)
		return join(f(c))
	}
	envOf := func(line []byte) json.RawMessage {
		var r ExportRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		return r.Envelope
	}
	// One byte of a stored receipt changed, then exported by the node.
	tampered := NewMemStore()
	for k, v := range storeContents(w.store) {
		_ = tampered.Set([]byte(k), []byte(v))
	}
	tw := *w
	tw.store = tampered
	tw.flipStoredByte(t, 42)
	fromTampered := export(t, w.log, tampered, 0, 100)

	// A forked log (record 42 replaced by another signed receipt, the rest
	// kept) with its own, consistent hash fields.
	forkEnvs := append([][]byte{}, w.envs...)
	forkEnvs[42] = w.c.signed(t, 4242, "a")
	fl, fs := newLog(t, forkEnvs, 100)
	forked := export(t, fl, fs, 0, 100)

	tests := map[string]struct {
		export   []byte
		cp       []byte
		sentinel error
		texts    []string
	}{
		"intact":  {full, w.cp, nil, nil},
		"crlf ok": {bytes.ReplaceAll(full, []byte("\n"), []byte("\r\n")), w.cp, nil, nil},
		"one byte of a stored receipt": {fromTampered, w.cp, ErrBadSignature, []string{
			"export: line 43: record 42: signature does not verify with key sha256:",
			"export: record 42: hash mismatch: the envelope was altered"}},
		"one record deleted": {edit(func(ls [][]byte) [][]byte { return append(ls[:42], ls[43:]...) }), w.cp, ErrMissingRecord, []string{
			"export: record 42: missing (line 43 has index 43)",
			"export: has 99 records, the checkpoint has size 100"}},
		"last record deleted": {edit(func(ls [][]byte) [][]byte { return ls[:99] }), w.cp, ErrSizeMismatch, []string{
			"record 99 is missing"}},
		"two lines reordered": {edit(func(ls [][]byte) [][]byte { ls[10], ls[11] = ls[11], ls[10]; return ls }), w.cp, ErrOutOfOrder, []string{
			"export: record 10: missing (line 11 has index 11)",
			"export: line 12: record 10: out of order: index 12 was expected here"}},
		"two envelopes reordered": {edit(func(ls [][]byte) [][]byte {
			e10, e11 := envOf(ls[10]), envOf(ls[11])
			ls[10] = setField(t, ls[10], "envelope", e11)
			ls[11] = setField(t, ls[11], "envelope", e10)
			return ls
		}), w.cp, ErrHashMismatch, []string{"export: record 10: hash mismatch", "export: record 11: hash mismatch"}},
		"record replaced, hashes recomputed": {forked, w.cp, ErrRootMismatch, []string{
			"export: root mismatch at size 100", "cannot be located"}},
		"stated hash wrong, log intact": {edit(func(ls [][]byte) [][]byte {
			ls[5] = setField(t, ls[5], "hash", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
			return ls
		}), w.cp, ErrHashMismatch, []string{"export: record 5: stated hash differs"}},
		"record added": {append(bytes.Clone(full), appendExportLine(nil, 100, [32]byte{}, w.c.signed(t, 100, "a"))...), w.cp, ErrSizeMismatch, []string{
			"has 101 records, the checkpoint has size 100: record 100 is not covered"}},
		"garbage line": {edit(func(ls [][]byte) [][]byte { ls[3] = []byte("{oops\n"); return ls }), w.cp, ErrMalformed, []string{
			"export: line 4: not an export record"}},
		"swapped checkpoint": {full, w.c.checkpoint(t, fl, fs, "a", "b", "c"), ErrRootMismatch, []string{
			"export: root mismatch at size 100"}},
		"checkpoint of the forked log, its export": {forked, w.c.checkpoint(t, fl, fs, "a"), ErrTooFewSignatures, []string{
			"checkpoint: signed by 1 trusted node(s) [a], need 2"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res, err := VerifyExport(bytes.NewReader(tc.export), tc.cp, w.c.keys, VerifyOptions{MinSignatures: 2, Workers: 3})
			if tc.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				if res.Records != 100 {
					t.Fatalf("read %d records", res.Records)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.texts...)
			t.Logf("reported:\n%v", err)
		})
	}
}

func TestVerifyExportSmall(t *testing.T) {
	c := newCluster(t, "a")
	for _, n := range []int{0, 1, 2, 3, 255, 256, 257, 600} {
		for _, workers := range []int{1, 2} {
			envs := c.envelopes(t, 0, n, "a")
			l, s := newLog(t, envs, 64)
			cp := c.checkpoint(t, l, s, "a")
			res, err := VerifyExport(bytes.NewReader(export(t, l, s, 0, int64(n))), cp, c.keys, VerifyOptions{Workers: workers})
			if err != nil {
				t.Fatalf("size %d: %v", n, err)
			}
			if res.Records != int64(n) || res.Root != res.Checkpoint.Root {
				t.Fatalf("size %d: %+v", n, res)
			}
		}
	}
}

func TestVerifyExportCapsErrors(t *testing.T) {
	w := newWorld(t, 50)
	// Every record's envelope replaced by record 0's: 49 failures.
	var b bytes.Buffer
	for i := int64(0); i < 50; i++ {
		b.Write(appendExportLine(nil, i, [32]byte{}, bytes.ReplaceAll(w.envs[i], []byte(`"sig":"`), []byte(`"sig":"AAAA`))))
	}
	_, err := VerifyExport(&b, w.cp, w.c.keys, VerifyOptions{MaxErrors: 5})
	var ee *ExportError
	if !errors.As(err, &ee) || len(ee.Failures) != 5 || ee.Omitted == 0 {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "more record failures not listed") {
		t.Fatal(err)
	}
}

func TestVerifyConsistency(t *testing.T) {
	w := newWorld(t, 120)
	_, s100 := newLog(t, w.envs[:100], 100)
	old := w.c.checkpoint(t, w.log, s100, "a", "b")
	newer := w.cp
	good, err := w.log.ConsistencyProof(w.store, 100, 120)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(good)
	good, err = ParseConsistencyProof(b)
	if err != nil {
		t.Fatal(err)
	}
	forkEnvs := append(append([][]byte{}, w.envs[:50]...), w.c.envelopes(t, 5000, 70, "a")...)
	fl, fs := newLog(t, forkEnvs, 120)
	forkNew := w.c.checkpoint(t, fl, fs, "a", "b")
	forkProof, _ := fl.ConsistencyProof(fs, 100, 120)
	altered := *good
	altered.Proof = append(altered.Proof[:0:0], good.Proof...)
	altered.Proof[0][3] ^= 1
	_, s0 := newLog(t, nil, 1)
	empty := w.c.checkpoint(t, w.log, s0, "a", "b")

	tests := map[string]struct {
		old, new []byte
		proof    *ConsistencyProof
		sentinel error
		text     string
	}{
		"good":              {old, newer, good, nil, ""},
		"same checkpoint":   {newer, newer, nil, nil, ""},
		"from empty":        {empty, newer, nil, nil, ""},
		"swapped":           {newer, old, good, ErrSizeMismatch, "consistency: the older checkpoint has size 120, more than the newer checkpoint's 100 (swapped?)"},
		"forked newer":      {old, forkNew, forkProof, ErrInconsistent, "consistency: the newer checkpoint at size 120"},
		"forked, good pf":   {old, forkNew, good, ErrInconsistent, "does not extend the older checkpoint at size 100"},
		"altered proof":     {old, newer, &altered, ErrInconsistent, "forked or the proof is wrong"},
		"no proof":          {old, newer, nil, ErrInconsistent, "no consistency proof"},
		"proof wrong sizes": {old, newer, &ConsistencyProof{OldSize: 99, NewSize: 120}, ErrSizeMismatch, "proof is from size 99 to 120"},
		"unsigned older":    {[]byte("x"), newer, good, ErrMalformed, "older checkpoint: not a signed note"},
		"weak newer":        {old, w.c.checkpoint(t, w.log, w.store, "c"), good, ErrTooFewSignatures, "newer checkpoint: signed by 1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := VerifyConsistency(tc.old, tc.new, tc.proof, w.c.keys, VerifyOptions{MinSignatures: 2})
			if tc.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.text)
			t.Logf("reported: %v", err)
		})
	}
}

func TestVerifyAgreementForkedNode(t *testing.T) {
	w := newWorld(t, 120)
	// Node b serves a forked log: records 0..79 agree, then it diverges.
	forkEnvs := append(append([][]byte{}, w.envs[:80]...), w.c.envelopes(t, 7000, 40, "b")...)
	fl, fs := newLog(t, forkEnvs, 120)
	_, s100 := newLog(t, w.envs[:100], 100)
	_, f100 := newLog(t, forkEnvs[:100], 100)

	honestA := NodeCheckpoint{Node: "a", Note: w.c.checkpoint(t, w.log, w.store, "a")}
	honestB := NodeCheckpoint{Node: "b", Note: w.c.checkpoint(t, w.log, w.store, "b")}
	honestB100 := NodeCheckpoint{Node: "b", Note: w.c.checkpoint(t, w.log, s100, "b")}
	forkB := NodeCheckpoint{Node: "b", Note: w.c.checkpoint(t, fl, fs, "b")}
	forkB100 := NodeCheckpoint{Node: "b", Note: w.c.checkpoint(t, fl, f100, "b")}
	goodProof, _ := w.log.ConsistencyProof(w.store, 100, 120)
	forkProof, _ := fl.ConsistencyProof(fs, 100, 120)

	tests := map[string]struct {
		a, b     NodeCheckpoint
		proof    *ConsistencyProof
		min      int
		sentinel error
		text     string
	}{
		"agree, same size":          {honestA, honestB, nil, 1, nil, ""},
		"agree, b behind":           {honestA, honestB100, goodProof, 1, nil, ""},
		"fork, same size":           {honestA, forkB, nil, 1, ErrRootMismatch, "checkpoint from node b: root differs at size 120: node a's log has"},
		"fork, b behind":            {honestA, forkB100, goodProof, 1, ErrInconsistent, "checkpoint from node b: node a's log at size 120"},
		"fork, b behind, b's proof": {honestA, forkB100, forkProof, 1, ErrInconsistent, "does not extend node b's log at size 100"},
		"fork, b ahead":             {NodeCheckpoint{Node: "a", Note: w.c.checkpoint(t, w.log, s100, "a")}, forkB, forkProof, 1, ErrInconsistent, "checkpoint from node b: node b's log at size 120 (root"},
		"fork needs a proof":        {honestA, forkB100, nil, 1, ErrInconsistent, "no consistency proof"},
		"fork signed by b alone":    {NodeCheckpoint{Node: "a", Note: w.cp}, forkB, nil, 2, ErrTooFewSignatures, "checkpoint from node b: signed by 1 trusted node(s) [b], need 2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := VerifyAgreement(tc.a, tc.b, tc.proof, w.c.keys, VerifyOptions{MinSignatures: tc.min})
			if tc.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.text)
			t.Logf("reported: %v", err)
		})
	}
	t.Run("fork refused a second signature", func(t *testing.T) {
		// The honest nodes will not co-sign b's forked checkpoint.
		_, err := w.log.CoSign(w.store, forkB.Note, w.c.keys, w.c.nodes["c"].signer)
		wantErr(t, err, ErrRootMismatch, "co-sign: root differs at size 120")
	})
}
