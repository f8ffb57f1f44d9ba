package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPAEVector(t *testing.T) {
	// The test vector of the DSSE protocol document.
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if got != want {
		t.Fatalf("PAE = %q, want %q", got, want)
	}
	if got := string(PAE("", nil)); got != "DSSEv1 0  0 " {
		t.Fatalf("PAE of empties = %q", got)
	}
}

func ExamplePAE() {
	fmt.Printf("%s\n", PAE(PayloadType, []byte(`{"task_id":"t1"}`)))
	// Output: DSSEv1 37 application/vnd.leash.receipt.v1+json 16 {"task_id":"t1"}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	c := newCluster(t, "a", "b")
	local := sampleReceipt(3, "a")
	// A receipt in another zone is signed in UTC.
	loc := time.FixedZone("X", 3600)
	local.Start, local.End = local.Start.In(loc), local.End.In(loc)
	local.Destinations, local.BlockedAttempts = nil, nil
	env, err := SignReceipt(c.nodes["a"].receiptKey, KeyID(c.nodes["a"].receiptKey.Public().(ed25519.PublicKey)), local)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := env.Canonical()
	dec, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := VerifyEnvelope(dec, c.keys)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Start.Equal(local.Start) || r.Start.Location() != time.UTC || r.TaskID != local.TaskID {
		t.Fatalf("round trip changed the receipt: %+v", r)
	}
	if !bytes.Contains(env.Payload, []byte(`"destinations":[]`)) || !bytes.Contains(env.Payload, []byte(`"blocked_attempts":[]`)) {
		t.Fatalf("empty lists not normalized: %s", env.Payload)
	}
	if _, err := SignReceipt(c.nodes["a"].receiptKey, "sha256:00", local); err == nil {
		t.Fatal("signing with a key id that is not the key's succeeded")
	}
}

func TestReceiptJSONNames(t *testing.T) {
	env, err := SignReceipt(seededKey("x"), "", sampleReceipt(1, "a"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(env.Payload, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"lease_id", "tenant", "profile", "policy_digest", "module_digest", "task_id",
		"request_sha256", "response_sha256", "node_id", "start", "end", "cpu_ms", "memory_peak_bytes",
		"egress_bytes_out", "egress_bytes_in", "destinations", "blocked_attempts", "outcome", "reason",
		"traceparent", "attempt"}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("payload lacks %q", k)
		}
	}
	if len(m) != len(want) {
		t.Errorf("payload has %d fields, want %d: %s", len(m), len(want), env.Payload)
	}
	if s := m["start"].(string); !strings.HasSuffix(s, "Z") {
		t.Errorf("start %q is not UTC", s)
	}
}

func TestReceiptValidate(t *testing.T) {
	tests := map[string]struct {
		mutate func(r *Receipt)
		field  string
	}{
		"ok":                   {func(r *Receipt) {}, ""},
		"terminated outcome":   {func(r *Receipt) { r.Outcome = "terminated:cpu" }, ""},
		"no module":            {func(r *Receipt) { r.ModuleDigest = ""; r.ResponseSHA256 = "" }, ""},
		"no lease":             {func(r *Receipt) { r.LeaseID = "" }, "lease_id"},
		"no tenant":            {func(r *Receipt) { r.Tenant = "" }, "tenant"},
		"no task":              {func(r *Receipt) { r.TaskID = "" }, "task_id"},
		"no node":              {func(r *Receipt) { r.NodeID = "" }, "node_id"},
		"bad policy digest":    {func(r *Receipt) { r.PolicyDigest = "sha256:XYZ" }, "policy_digest"},
		"bad module digest":    {func(r *Receipt) { r.ModuleDigest = "md5:00" }, "module_digest"},
		"bad request hash":     {func(r *Receipt) { r.RequestSHA256 = strings.ToUpper(r.RequestSHA256) }, "request_sha256"},
		"bad response hash":    {func(r *Receipt) { r.ResponseSHA256 = "00" }, "response_sha256"},
		"no start":             {func(r *Receipt) { r.Start = time.Time{} }, "start"},
		"end before start":     {func(r *Receipt) { r.End = r.Start.Add(-time.Second) }, "end"},
		"local time":           {func(r *Receipt) { r.End = r.End.In(time.FixedZone("Y", 60)) }, "end"},
		"negative cpu":         {func(r *Receipt) { r.CPUMillis = -1 }, "cpu_ms"},
		"negative egress":      {func(r *Receipt) { r.EgressBytesIn = -1 }, "egress_bytes_in"},
		"empty destination":    {func(r *Receipt) { r.Destinations = []string{""} }, "destinations[0]"},
		"too many dests":       {func(r *Receipt) { r.Destinations = make([]string, MaxDestinations+1) }, "destinations"},
		"blocked no clause":    {func(r *Receipt) { r.BlockedAttempts[0].Clause = "" }, "blocked_attempts[0].clause"},
		"blocked zero count":   {func(r *Receipt) { r.BlockedAttempts[0].Count = 0 }, "blocked_attempts[0].count"},
		"bad outcome":          {func(r *Receipt) { r.Outcome = "fine" }, "outcome"},
		"bare terminated":      {func(r *Receipt) { r.Outcome = "terminated:" }, "outcome"},
		"bad traceparent":      {func(r *Receipt) { r.Traceparent = "00-abc" }, "traceparent"},
		"zero trace id":        {func(r *Receipt) { r.Traceparent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01" }, "traceparent"},
		"attempt zero":         {func(r *Receipt) { r.Attempt = 0 }, "attempt"},
		"long reason":          {func(r *Receipt) { r.Reason = strings.Repeat("x", MaxFieldBytes+1) }, "reason"},
		"invalid utf8 profile": {func(r *Receipt) { r.Profile = "\xff" }, "profile"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := sampleReceipt(1, "a")
			tc.mutate(r)
			err := r.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantErr(t, err, ErrInvalidReceipt, "receipt: field "+tc.field+":")
			if ve := err.(*VerifyError); ve.Field != tc.field {
				t.Fatalf("Field = %q, want %q", ve.Field, tc.field)
			}
		})
	}
}

// signRaw signs an arbitrary payload, bypassing SignReceipt's checks.
func signRaw(key ed25519.PrivateKey, keyID, payloadType string, payload []byte) *Envelope {
	return &Envelope{Payload: payload, PayloadType: payloadType,
		Signatures: []Signature{{KeyID: keyID, Sig: ed25519.Sign(key, PAE(payloadType, payload))}}}
}

func TestVerifyEnvelopeFailures(t *testing.T) {
	c := newCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	aID := KeyID(a.receiptKey.Public().(ed25519.PublicKey))
	bID := KeyID(b.receiptKey.Public().(ed25519.PublicKey))
	good := func() *Envelope {
		env, err := SignReceipt(a.receiptKey, "", sampleReceipt(5, "a"))
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	payload := good().Payload
	tests := map[string]struct {
		env      func() *Envelope
		sentinel error
		text     string
	}{
		"good": {good, nil, ""},
		"no key id tries all keys": {func() *Envelope {
			e := good()
			e.Signatures[0].KeyID = ""
			return e
		}, nil, ""},
		"payload byte flipped": {func() *Envelope {
			e := good()
			e.Payload[10] ^= 1
			return e
		}, ErrBadSignature, "receipt: signature does not verify with key " + aID},
		"signature byte flipped": {func() *Envelope {
			e := good()
			e.Signatures[0].Sig[0] ^= 1
			return e
		}, ErrBadSignature, "signature does not verify"},
		"unknown key": {func() *Envelope {
			return signRaw(seededKey("stranger"), KeyID(seededKey("stranger").Public().(ed25519.PublicKey)), PayloadType, payload)
		}, ErrUnknownKey, "not in the trusted key set"},
		"key id of another node": {func() *Envelope {
			e := good()
			e.Signatures[0].KeyID = bID
			return e
		}, ErrBadSignature, "with key " + bID},
		"signed by the wrong node": {func() *Envelope {
			return signRaw(b.receiptKey, bID, PayloadType, payload)
		}, ErrWrongNode, `receipt from node a: names node "a" but is signed with key ` + bID + ` of node "b"`},
		"wrong payload type": {func() *Envelope {
			return signRaw(a.receiptKey, aID, "application/json", payload)
		}, ErrMalformed, "field payloadType"},
		"payload not a receipt": {func() *Envelope {
			return signRaw(a.receiptKey, aID, PayloadType, []byte("[1,2]"))
		}, ErrMalformed, "payload is not a v1 receipt"},
		"receipt invalid": {func() *Envelope {
			r := sampleReceipt(5, "a")
			r.Outcome = "maybe"
			p, _ := json.Marshal(r)
			return signRaw(a.receiptKey, aID, PayloadType, p)
		}, ErrInvalidReceipt, "field outcome"},
		"two signatures, second good": {func() *Envelope {
			e := good()
			bad := signRaw(seededKey("z"), "sha256:zz", PayloadType, payload).Signatures[0]
			e.Signatures = append([]Signature{bad}, e.Signatures...)
			return e
		}, nil, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := VerifyEnvelope(tc.env(), c.keys)
			if tc.sentinel == nil {
				if err != nil || r == nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.text)
		})
	}
}

func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	for _, e := range []*Envelope{
		{Payload: []byte("x"), PayloadType: PayloadType, Signatures: []Signature{{KeyID: "k", Sig: []byte{1, 2}}}},
		{Payload: nil, PayloadType: `a"b\c<d>&é` + "\u2028\x01", Signatures: []Signature{{Sig: []byte{3}}, {KeyID: "<k>", Sig: []byte{4}}}},
		{Payload: bytes.Repeat([]byte{0xff}, 100), PayloadType: "\xff", Signatures: []Signature{{KeyID: "\xfe", Sig: []byte{5}}}},
	} {
		got, _ := e.MarshalJSON()
		w := envelopeJSON{Payload: base64.StdEncoding.EncodeToString(e.Payload), PayloadType: e.PayloadType}
		for _, s := range e.Signatures {
			w.Signatures = append(w.Signatures, signatureJSON{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
		}
		want, _ := json.Marshal(w)
		if !bytes.Equal(got, want) {
			t.Errorf("canonical form\n got %s\nwant %s", got, want)
		}
	}
}

func TestDecodeEnvelope(t *testing.T) {
	std := `{"payload":"aGk_Pz8-","payloadType":"t","signatures":[{"keyid":"k","sig":"AQI="}]}`
	tests := map[string]struct {
		in      string
		payload string
		bad     string
	}{
		"standard":           {`{"payload":"aGk/Pz8+","payloadType":"t","signatures":[{"keyid":"k","sig":"AQI="}]}`, "hi???>", ""},
		"url safe":           {std, "hi???>", ""},
		"unpadded":           {`{"payload":"aGk","payloadType":"t","signatures":[{"sig":"AQI"}]}`, "hi", ""},
		"unknown field":      {`{"payload":"aGk=","payloadType":"t","signatures":[{"sig":"AQI="}],"x":1}`, "", "unknown field"},
		"trailing data":      {`{"payload":"aGk=","payloadType":"t","signatures":[{"sig":"AQI="}]} {}`, "", "trailing data"},
		"no signatures":      {`{"payload":"aGk=","payloadType":"t","signatures":[]}`, "", "field signatures"},
		"no payload type":    {`{"payload":"aGk=","signatures":[{"sig":"AQI="}]}`, "", "field payloadType"},
		"bad payload base64": {`{"payload":"a!k=","payloadType":"t","signatures":[{"sig":"AQI="}]}`, "", "field payload"},
		"empty sig":          {`{"payload":"aGk=","payloadType":"t","signatures":[{"sig":""}]}`, "", "signatures[0].sig"},
		"not json":           {`payload`, "", "not a DSSE JSON envelope"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e, err := DecodeEnvelope([]byte(tc.in))
			if tc.bad != "" {
				wantErr(t, err, ErrMalformed, tc.bad)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(e.Payload) != tc.payload {
				t.Fatalf("payload %q, want %q", e.Payload, tc.payload)
			}
		})
	}
	big := `{"payload":"` + strings.Repeat("A", MaxEnvelopeBytes) + `"}`
	if _, err := DecodeEnvelope([]byte(big)); err == nil {
		t.Fatal("oversized envelope decoded")
	} else {
		wantErr(t, err, ErrTooLarge)
	}
}

// SignReceiptCanonical gives the canonical bytes of the envelope
// SignReceipt makes (Ed25519 is deterministic: the same bytes), and
// refuses what SignReceipt refuses.
func TestSignReceiptCanonical(t *testing.T) {
	key := seededKey("canonical")
	r := sampleReceipt(1, "a")
	env, err := SignReceipt(key, "", r)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := env.Canonical()
	got, err := SignReceiptCanonical(key, "", r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical bytes differ:\n%s\n%s", got, want)
	}
	bad := *r
	bad.TaskID = ""
	if _, err := SignReceiptCanonical(key, "", &bad); err == nil {
		t.Fatal("a receipt without a task id was signed")
	}
}
