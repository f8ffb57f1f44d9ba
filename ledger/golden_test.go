package ledger

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenFormats pins the wire formats auditors depend on — a key set,
// a signed receipt envelope, a receipt with its inclusion proof, an export,
// co-signed checkpoints and a consistency proof — made with fixed keys
// (Ed25519 signatures are deterministic). A change here is a format change:
// bump the payload type or document it. The files double as fixtures for
// the `leash ledger verify` tests: all four checks pass on them with
// --min-sigs 2.
func TestGoldenFormats(t *testing.T) {
	c := newCluster(t, "a", "b")
	envs := c.envelopes(t, 0, 3, "a", "b")
	l, s := newLog(t, envs, 3)
	keys, err := json.MarshalIndent(c.keys, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cp3 := c.checkpoint(t, l, s, "b", "a")
	_, s2 := newLog(t, envs[:2], 2)
	cp2 := c.checkpoint(t, l, s2, "a", "b")
	rp, err := l.ReceiptProof(s, 1, cp3)
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ := json.Marshal(rp)
	cons, err := l.ConsistencyProof(s, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := json.Marshal(cons)
	cases := map[string][]byte{
		"keys.json":           append(keys, '\n'),
		"receipt-1.json":      append(receipt, '\n'),
		"checkpoint-2.golden": cp2,
		"proof-2-3.json":      append(proof, '\n'),
		"envelope.golden":     append(bytes.Clone(envs[0]), '\n'),
		"export.golden":       export(t, l, s, 0, 3),
		"checkpoint.golden":   cp3,
	}
	for name, got := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s changed:\n got %s\nwant %s", name, got, want)
			}
		})
	}
	// The golden files verify with the package's own offline checks, with
	// the key set read back from its file, as an auditor would.
	kf, err := os.Open(filepath.Join("testdata", "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	ks, err := ReadKeySet(kf)
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := os.ReadFile(filepath.Join("testdata", "checkpoint.golden"))
	ex, _ := os.ReadFile(filepath.Join("testdata", "export.golden"))
	opts := VerifyOptions{MinSignatures: 2}
	if _, err := VerifyExport(bytes.NewReader(ex), cp, ks, opts); err != nil {
		t.Fatal(err)
	}
	rb, _ := os.ReadFile(filepath.Join("testdata", "receipt-1.json"))
	rpf, err := ParseReceiptProof(rb)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyReceipt(rpf, cp, ks, opts); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(filepath.Join("testdata", "checkpoint-2.golden"))
	pb, _ := os.ReadFile(filepath.Join("testdata", "proof-2-3.json"))
	pf, err := ParseConsistencyProof(pb)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(old, cp, pf, ks, opts); err != nil {
		t.Fatal(err)
	}
	if err := VerifyAgreement(NodeCheckpoint{Node: "a", Note: cp}, NodeCheckpoint{Node: "b", Note: old}, pf, ks, opts); err != nil {
		t.Fatal(err)
	}
}
