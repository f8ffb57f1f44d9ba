package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "leash/test-cluster"

// testNode is one node's key material.
type testNode struct {
	id         string
	receiptKey ed25519.PrivateKey
	noteKey    ed25519.PrivateKey
	signer     note.Signer
}

// seededKey derives a deterministic key so failures reproduce.
func seededKey(label string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("leash ledger test key " + label))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newTestNode(t testing.TB, id string) *testNode {
	t.Helper()
	n := &testNode{id: id, receiptKey: seededKey(id + "/receipt"), noteKey: seededKey(id + "/note")}
	s, err := NewNoteSigner(id, n.noteKey)
	if err != nil {
		t.Fatal(err)
	}
	n.signer = s
	return n
}

func (n *testNode) keys(t testing.TB) NodeKeys {
	t.Helper()
	k, err := NewNodeKeys(n.id, n.receiptKey.Public().(ed25519.PublicKey), n.noteKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cluster is a set of nodes and the key set that trusts them.
type cluster struct {
	nodes map[string]*testNode
	keys  *KeySet
}

func newCluster(t testing.TB, ids ...string) *cluster {
	t.Helper()
	c := &cluster{nodes: map[string]*testNode{}}
	var nk []NodeKeys
	for _, id := range ids {
		n := newTestNode(t, id)
		c.nodes[id] = n
		nk = append(nk, n.keys(t))
	}
	ks, err := NewKeySet(testOrigin, nk...)
	if err != nil {
		t.Fatal(err)
	}
	c.keys = ks
	return c
}

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// sampleReceipt returns a valid receipt for task i run on node.
func sampleReceipt(i int, node string) *Receipt {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	return &Receipt{
		LeaseID:         fmt.Sprintf("lease-%d", i%7),
		Tenant:          "demo",
		Profile:         "read_docs",
		PolicyDigest:    "sha256:" + hexSum("policy"),
		ModuleDigest:    "sha256:" + hexSum("module"),
		TaskID:          fmt.Sprintf("task-%d", i),
		RequestSHA256:   hexSum(fmt.Sprintf("req %d", i)),
		ResponseSHA256:  hexSum(fmt.Sprintf("resp %d", i)),
		NodeID:          node,
		Start:           start,
		End:             start.Add(1500 * time.Microsecond),
		CPUMillis:       int64(i % 50),
		MemoryPeakBytes: 1 << 20,
		EgressBytesOut:  int64(i),
		EgressBytesIn:   int64(2 * i),
		Destinations:    []string{"docs.example.com:443"},
		BlockedAttempts: []BlockedAttempt{{Tool: "fetch", Destination: "169.254.169.254:80", Clause: "egress.deny.metadata", Count: 1}},
		Outcome:         "ok",
		Traceparent:     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Attempt:         1,
	}
}

// signed returns the canonical envelope of sampleReceipt(i) signed by node.
func (c *cluster) signed(t testing.TB, i int, node string) []byte {
	t.Helper()
	n := c.nodes[node]
	env, err := SignReceipt(n.receiptKey, "", sampleReceipt(i, node))
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envelopes returns n canonical envelopes, signed round-robin by the
// cluster's nodes in ids order.
func (c *cluster) envelopes(t testing.TB, from, n int, ids ...string) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		out[i] = c.signed(t, from+i, ids[(from+i)%len(ids)])
	}
	return out
}

// newLog returns a log in a fresh MemStore holding envs, appended in
// batches of batch.
func newLog(t testing.TB, envs [][]byte, batch int) (*Log, *MemStore) {
	t.Helper()
	l, err := NewLog(testOrigin, []byte("s/ledger/"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewMemStore()
	for i := 0; i < len(envs); i += batch {
		j := min(i+batch, len(envs))
		if _, _, _, err := l.Append(s, envs[i:j]); err != nil {
			t.Fatal(err)
		}
	}
	return l, s
}

// checkpoint returns the log's current checkpoint signed by the given nodes.
func (c *cluster) checkpoint(t testing.TB, l *Log, r Reader, signers ...string) []byte {
	t.Helper()
	cp, err := l.Checkpoint(r)
	if err != nil {
		t.Fatal(err)
	}
	var ss []note.Signer
	for _, id := range signers {
		ss = append(ss, c.nodes[id].signer)
	}
	msg, err := SignCheckpoint(cp, ss...)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func export(t testing.TB, l *Log, r Reader, from, to int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := l.Export(r, &b, from, to); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// wantErr checks err against a sentinel and substrings of its text.
func wantErr(t *testing.T, err error, sentinel error, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", sentinel)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not match %v", err, sentinel)
	}
	for _, s := range substrs {
		if !bytes.Contains([]byte(err.Error()), []byte(s)) {
			t.Fatalf("error %q does not contain %q", err, s)
		}
	}
}
