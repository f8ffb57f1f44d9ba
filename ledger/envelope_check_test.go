package ledger

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func TestCheckEnvelope(t *testing.T) {
	pubA, privA, _ := ed25519.GenerateKey(nil)
	pubB, _, _ := ed25519.GenerateKey(nil)
	nkA, _ := NewNodeKeys("a", pubA, pubA)
	nkB, _ := NewNodeKeys("b", pubB, pubB)
	keys, err := NewKeySet("", nkA, nkB)
	if err != nil {
		t.Fatal(err)
	}
	r := &Receipt{LeaseID: "l", Tenant: "t", Profile: "p", PolicyDigest: "sha256:" + hex64(), ModuleDigest: "sha256:" + hex64(),
		TaskID: "tsk", RequestSHA256: hex64(), ResponseSHA256: hex64(), NodeID: "a",
		Start: time.Unix(1, 0).UTC(), End: time.Unix(2, 0).UTC(), Outcome: "ok", Destinations: []string{}, BlockedAttempts: []BlockedAttempt{},
		Traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", Attempt: 1}
	env, err := SignReceipt(privA, "", r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckEnvelope(env, keys); err != nil {
		t.Fatalf("good envelope: %v", err)
	}
	// Claiming to be node b with node a's key is refused.
	wrong := *r
	wrong.NodeID = "b"
	env2, _ := SignReceipt(privA, "", &wrong)
	if _, err := CheckEnvelope(env2, keys); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("wrong node: %v", err)
	}
	env.PayloadType = "text/plain"
	if _, err := CheckEnvelope(env, keys); !errors.Is(err, ErrMalformed) {
		t.Fatalf("payload type: %v", err)
	}
}

func hex64() string { return "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" }
