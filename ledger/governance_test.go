package ledger

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func sampleGovernance(node string) *Governance {
	return &Governance{ID: "raft:42", Action: "block", By: "key:op1", At: time.Date(2026, 12, 2, 1, 0, 0, 5, time.UTC),
		Reason: "exfiltration", Incident: "inc-7", Count: 1, Items: []string{"*.exfil.test"}, NodeID: node}
}

func signedGovernance(t testing.TB, c *cluster, node string, g *Governance) []byte {
	t.Helper()
	env, err := SignGovernance(c.nodes[node].receiptKey, g)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGovernanceEntry: a governance entry signs and verifies with the
// node's receipt key under its own payload type; the FSM's structural
// check accepts it; a receipt check refuses it (and the other way
// round); a wrong node, a tampered payload and a bad shape are refused.
func TestGovernanceEntry(t *testing.T) {
	c := newCluster(t, "n1", "n2")
	b := signedGovernance(t, c, "n1", sampleGovernance("n1"))
	env, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if env.PayloadType != GovernancePayloadType {
		t.Fatalf("payload type %q", env.PayloadType)
	}
	g, err := VerifyGovernance(env, c.keys)
	if err != nil || g.Action != "block" || g.Incident != "inc-7" || g.Items[0] != "*.exfil.test" {
		t.Fatalf("verify: %+v %v", g, err)
	}
	if _, err := CheckGovernance(env, c.keys); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyEnvelope(env, c.keys); err == nil {
		t.Fatal("a governance entry verified as a receipt")
	}
	rec, _ := DecodeEnvelope(c.signed(t, 1, "n1"))
	if _, err := VerifyGovernance(rec, c.keys); err == nil {
		t.Fatal("a receipt verified as a governance entry")
	}

	cases := map[string]struct {
		env  func() *Envelope
		want error
	}{
		"names another node": {func() *Envelope {
			e, _ := DecodeEnvelope(signedGovernance(t, c, "n1", sampleGovernance("n2")))
			return e
		}, ErrWrongNode},
		"tampered": {func() *Envelope {
			e, _ := DecodeEnvelope(b)
			e.Payload = bytes.Replace(e.Payload, []byte("exfil"), []byte("exfiX"), 1)
			return e
		}, ErrBadSignature},
		"unknown key": {func() *Envelope {
			o := newTestNode(t, "n1")
			o.receiptKey = seededKey("stranger")
			e, _ := SignGovernance(o.receiptKey, sampleGovernance("n1"))
			return e
		}, ErrBadSignature},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := VerifyGovernance(tc.env(), c.keys)
			wantErr(t, err, tc.want)
		})
	}
	for name, g := range map[string]Governance{
		"no id":          {Action: "block", By: "x", At: time.Now(), NodeID: "n1"},
		"unknown action": {ID: "raft:1", Action: "dance", By: "x", At: time.Now(), NodeID: "n1"},
		"no time":        {ID: "raft:1", Action: "block", By: "x", NodeID: "n1"},
		"too many items": {ID: "raft:1", Action: "block", By: "x", At: time.Now(), NodeID: "n1", Items: make([]string, MaxGovernanceItems+1)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := SignGovernance(c.nodes["n1"].receiptKey, &g); err == nil {
				t.Fatal("signed a malformed entry")
			}
		})
	}
	// JSON names are the v1 schema.
	var m map[string]any
	_ = json.Unmarshal(env.Payload, &m)
	for _, k := range []string{"id", "action", "by", "at", "reason", "incident", "target", "count", "items", "node_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("payload has no %q: %s", k, env.Payload)
		}
	}
}

// TestExportWithGovernance: a log of receipts and governance entries
// exports and verifies offline; a tampered governance entry is found.
func TestExportWithGovernance(t *testing.T) {
	c := newCluster(t, "n1", "n2")
	envs := c.envelopes(t, 0, 3, "n1", "n2")
	envs = append(envs, signedGovernance(t, c, "n2", sampleGovernance("n2")))
	envs = append(envs, c.envelopes(t, 3, 2, "n1", "n2")...)
	l, s := newLog(t, envs, 2)
	cp := c.checkpoint(t, l, s, "n1")
	exp := export(t, l, s, 0, int64(len(envs)))
	res, err := VerifyExport(bytes.NewReader(exp), cp, c.keys, VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if res.Records != int64(len(envs)) {
		t.Fatalf("%d records verified, want %d", res.Records, len(envs))
	}
	tampered := bytes.Replace(exp, []byte(`"payloadType":"`+GovernancePayloadType), []byte(`"payloadType":"`+GovernancePayloadType+"x"), 1)
	if _, err := VerifyExport(bytes.NewReader(tampered), cp, c.keys, VerifyOptions{}); err == nil {
		t.Fatal("a tampered governance entry verified")
	}
}

// FuzzGovernance: any bytes decode to an envelope or fail; a governance
// entry either checks and verifies or is refused, never panics, and what
// verifies validates.
func FuzzGovernance(f *testing.F) {
	c := newCluster(f, "n1")
	env, err := SignGovernance(c.nodes["n1"].receiptKey, sampleGovernance("n1"))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := env.Canonical()
	f.Add(b)
	f.Add(bytes.Replace(b, []byte(`"payload":"`), []byte(`"payload":"e30=`), 1))
	f.Add([]byte(`{"payload":"e30=","payloadType":"` + GovernancePayloadType + `","signatures":[{"sig":"AA=="}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEnvelope(data)
		if err != nil {
			return
		}
		_, _ = CheckGovernance(e, c.keys)
		if g, err := VerifyGovernance(e, c.keys); err == nil {
			if err := g.Validate(); err != nil {
				t.Fatalf("verified an invalid entry: %v", err)
			}
		}
	})
}
