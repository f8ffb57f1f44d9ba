package ledger

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// fuzzWorld is built once per fuzz target: a small signed log.
func fuzzWorld(f *testing.F) (*cluster, *Log, *MemStore, []byte) {
	c := newCluster(f, "a", "b")
	envs := c.envelopes(f, 0, 5, "a", "b")
	l, s := newLog(f, envs, 5)
	return c, l, s, c.checkpoint(f, l, s, "a", "b")
}

func FuzzDecodeEnvelope(f *testing.F) {
	c, _, _, _ := fuzzWorld(f)
	good := c.signed(f, 1, "a")
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"sig":"`), []byte(`"sig":"A`), 1))
	f.Add([]byte(`{"payload":"aGk","payloadType":"t","signatures":[{"sig":"AQI"}]}`))
	f.Add([]byte(`{"payload":"","payloadType":"application/vnd.leash.receipt.v1+json","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fast path agrees with encoding/json on what it accepts.
		if fast, ok := parseCanonical(data); ok {
			slow, err := decodeEnvelopeJSON(data)
			if err != nil {
				t.Fatalf("fast path accepted what encoding/json refuses (%v): %q", err, data)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast path decodes %+v, encoding/json %+v", fast, slow)
			}
		}
		env, err := DecodeEnvelope(data)
		if err != nil {
			if _, ok := err.(*VerifyError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		canon, err := env.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		env2, err := DecodeEnvelope(canon)
		if err != nil {
			if len(canon) > MaxEnvelopeBytes {
				return // re-encoding may grow unpadded base64 past the bound
			}
			t.Fatalf("canonical form does not decode: %v\n%s", err, canon)
		}
		canon2, _ := env2.Canonical()
		if !bytes.Equal(canon, canon2) {
			t.Fatalf("canonical form not stable:\n%s\n%s", canon, canon2)
		}
		if checkCanonical(canon) != nil {
			t.Fatalf("canonical form refused by Append's check:\n%s", canon)
		}
		if r, err := VerifyEnvelope(env, c.keys); err == nil && r.Validate() != nil {
			t.Fatal("verified a receipt that does not validate")
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	c, l, s, cp := fuzzWorld(f)
	f.Add(cp)
	f.Add([]byte("leash/test-cluster\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— a AAAAAAAAAAAA\n"))
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add(bytes.Replace(cp, []byte("\n5\n"), []byte("\n05\n"), 1))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if sc, err := VerifyCheckpoint(msg, c.keys, 1); err == nil {
			if !bytes.Equal(sc.Text(), msg[:len(sc.Text())]) {
				t.Fatalf("verified checkpoint text differs from the note's:\n%q\n%q", sc.Text(), msg)
			}
		} else if _, ok := err.(*VerifyError); !ok {
			t.Fatalf("error of type %T: %v", err, err)
		}
		// The text parser alone: strict, so parse∘format is the identity.
		if cp, err := ParseCheckpoint(msg); err == nil && !bytes.Equal(cp.Text(), msg) {
			t.Fatalf("ParseCheckpoint accepted a non-canonical text:\n%q\n%q", msg, cp.Text())
		}
		_, _ = MergeCheckpoints(c.keys, msg, cp)
		_, _ = MergeCheckpoints(nil, msg)
		_, _ = l.CoSign(s, msg, c.keys, c.nodes["b"].signer)
	})
}

func FuzzExportReader(f *testing.F) {
	c, l, s, cp := fuzzWorld(f)
	var full bytes.Buffer
	if err := l.Export(s, &full, 0, 5); err != nil {
		f.Fatal(err)
	}
	f.Add(full.Bytes())
	f.Add(full.Bytes()[:full.Len()/2])
	f.Add(bytes.TrimSuffix(lines(full.Bytes())[0], []byte("\n")))
	f.Add([]byte("{\"index\":0,\"hash\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"envelope\":{}}\n\n\r\n"))
	f.Add([]byte(`{"index":99999999999,"hash":null,"envelope":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if fast, ok := parseExportLineFast(data); ok {
			slow, err := parseExportLineSlow(data)
			if err != nil || fast.Index != slow.Index || fast.Hash != slow.Hash || !bytes.Equal(fast.Envelope, slow.Envelope) {
				t.Fatalf("fast path %+v, encoding/json %+v, %v", fast, slow, err)
			}
		}
		x := NewExportReader(bytes.NewReader(data))
		for i := 0; ; i++ {
			rec, err := x.Next()
			if err != nil {
				break
			}
			if rec.Index < 0 || len(rec.Envelope) == 0 {
				t.Fatalf("bad record accepted: %+v", rec)
			}
			if !json.Valid(rec.Envelope) {
				t.Fatalf("envelope is not JSON: %q", rec.Envelope)
			}
		}
		// One worker: no goroutines, so coverage is deterministic.
		res, err := VerifyExport(bytes.NewReader(data), cp, c.keys, VerifyOptions{Workers: 1})
		if err == nil && (res.Records != 5 || res.Root != res.Checkpoint.Root) {
			t.Fatalf("accepted an export that does not match: %+v", res)
		}
	})
}

func FuzzParseKeySet(f *testing.F) {
	c := newCluster(f, "a", "b")
	b, _ := json.Marshal(c.keys)
	f.Add(b)
	f.Add([]byte(`{"origin":"o","nodes":[{"id":"a","receipt_keys":[{"keyid":"x","public_key":"AA=="}],"checkpoint_keys":["a+00000000+AQ=="]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseKeySet(data)
		if err != nil {
			return
		}
		// A parsed set re-encodes to one that parses the same.
		b, _ := json.Marshal(ks)
		ks2, err := ParseKeySet(b)
		if err != nil {
			t.Fatalf("re-encoded key set does not parse: %v", err)
		}
		if len(ks2.Nodes) != len(ks.Nodes) {
			t.Fatal("node count changed")
		}
	})
}
