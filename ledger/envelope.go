package ledger

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// PayloadType is the DSSE payload type of a v1 receipt.
const PayloadType = "application/vnd.leash.receipt.v1+json"

// Envelope is a DSSE envelope (secure-systems-lab/dsse, envelope.md). In
// memory the payload and signatures are raw bytes; in JSON they are base64.
// [Envelope.MarshalJSON] writes the canonical form the ledger stores and
// hashes; [DecodeEnvelope] accepts standard or URL-safe base64, padded or
// not, as the DSSE protocol requires of verifiers.
type Envelope struct {
	Payload     []byte
	PayloadType string
	Signatures  []Signature
}

// Signature is one DSSE signature. KeyID is an unauthenticated hint naming
// the key (see [KeyID]); it only narrows which trusted key to try.
type Signature struct {
	KeyID string
	Sig   []byte
}

// envelopeJSON is the wire form. Field order is the canonical order.
type envelopeJSON struct {
	Payload     string          `json:"payload"`
	PayloadType string          `json:"payloadType"`
	Signatures  []signatureJSON `json:"signatures"`
}

type signatureJSON struct {
	KeyID string `json:"keyid,omitempty"`
	Sig   string `json:"sig"`
}

// MarshalJSON writes the canonical form: the fields payload, payloadType,
// signatures (each keyid, sig) in that order, standard padded base64, no
// insignificant white space, strings escaped as encoding/json escapes them
// and an empty keyid left out. The bytes equal encoding/json's output for
// the wire struct; they are built by hand because exports re-encode every
// record.
func (e *Envelope) MarshalJSON() ([]byte, error) {
	n := 64 + base64.StdEncoding.EncodedLen(len(e.Payload)) + len(e.PayloadType)
	for _, s := range e.Signatures {
		n += 24 + len(s.KeyID) + base64.StdEncoding.EncodedLen(len(s.Sig))
	}
	b := make([]byte, 0, n)
	b = append(b, `{"payload":"`...)
	b = base64.StdEncoding.AppendEncode(b, e.Payload)
	b = append(b, `","payloadType":`...)
	b = appendJSONString(b, e.PayloadType)
	b = append(b, `,"signatures":[`...)
	for i, s := range e.Signatures {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if s.KeyID != "" {
			b = append(b, `"keyid":`...)
			b = appendJSONString(b, s.KeyID)
			b = append(b, ',')
		}
		b = append(b, `"sig":"`...)
		b = base64.StdEncoding.AppendEncode(b, s.Sig)
		b = append(b, `"}`...)
	}
	b = append(b, "]}"...)
	return b, nil
}

// appendJSONString appends s as encoding/json encodes a string: printable
// ASCII other than the characters it escapes goes as is, anything else
// through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// UnmarshalJSON decodes an envelope leniently about base64 flavour and
// strictly about everything else; see [DecodeEnvelope].
func (e *Envelope) UnmarshalJSON(data []byte) error {
	d, err := DecodeEnvelope(data)
	if err != nil {
		return err
	}
	*e = *d
	return nil
}

// Canonical returns the canonical bytes of e: what the ledger stores and
// what its record hash covers.
func (e *Envelope) Canonical() ([]byte, error) { return e.MarshalJSON() }

// DecodeEnvelope parses a JSON DSSE envelope. It rejects unknown fields,
// trailing data, missing payloadType, an empty signature list, undecodable
// base64 and anything over MaxEnvelopeBytes. Errors are *VerifyError with
// subject "envelope" and cause ErrMalformed or ErrTooLarge.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeBytes {
		return nil, verr("envelope", ErrTooLarge, fmt.Sprintf("%d bytes, more than %d", len(data), MaxEnvelopeBytes))
	}
	if e, ok := parseCanonical(data); ok {
		return e, nil
	}
	return decodeEnvelopeJSON(data)
}

// decodeEnvelopeJSON is DecodeEnvelope's general path, through encoding/json.
func decodeEnvelopeJSON(data []byte) (*Envelope, error) {
	var w envelopeJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, verr("envelope", ErrMalformed, "not a DSSE JSON envelope: "+err.Error())
	}
	if dec.More() {
		return nil, verr("envelope", ErrMalformed, "trailing data after the envelope")
	}
	if w.PayloadType == "" {
		return nil, &VerifyError{Subject: "envelope", Index: -1, Field: "payloadType", Err: ErrMalformed, Detail: "is empty"}
	}
	if len(w.Signatures) == 0 {
		return nil, &VerifyError{Subject: "envelope", Index: -1, Field: "signatures", Err: ErrMalformed, Detail: "is empty"}
	}
	payload, err := decodeBase64(w.Payload)
	if err != nil {
		return nil, &VerifyError{Subject: "envelope", Index: -1, Field: "payload", Err: ErrMalformed, Detail: "is not base64"}
	}
	e := &Envelope{Payload: payload, PayloadType: w.PayloadType, Signatures: make([]Signature, len(w.Signatures))}
	for i, s := range w.Signatures {
		sig, err := decodeBase64(s.Sig)
		if err != nil || len(sig) == 0 {
			return nil, &VerifyError{Subject: "envelope", Index: -1, Field: fmt.Sprintf("signatures[%d].sig", i), Err: ErrMalformed, Detail: "is empty or not base64"}
		}
		e.Signatures[i] = Signature{KeyID: s.KeyID, Sig: sig}
	}
	return e, nil
}

// decodeBase64 accepts standard or URL-safe base64, with or without padding.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// PAE is the DSSE v1 pre-authentication encoding of a payload type and body
// (dsse.PAE):
//
//	"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//
// with LEN the ASCII decimal byte length, no leading zeros.
func PAE(payloadType string, body []byte) []byte { return dsse.PAE(payloadType, body) }

// KeyID returns the stable id of an Ed25519 receipt key: "sha256:" and the
// lowercase hex SHA-256 of the 32-byte public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SignReceipt validates r, serializes it (times in UTC) and signs it as a
// DSSE envelope with the node's Ed25519 receipt key. keyID must be "" (then
// KeyID of the key's public half is used) or equal to it.
func SignReceipt(key ed25519.PrivateKey, keyID string, r *Receipt) (*Envelope, error) {
	env, _, err := signReceipt(key, keyID, r)
	return env, err
}

// SignReceiptCanonical is SignReceipt returning the envelope's canonical
// bytes (what the ledger stores), encoded once.
func SignReceiptCanonical(key ed25519.PrivateKey, keyID string, r *Receipt) ([]byte, error) {
	_, b, err := signReceipt(key, keyID, r)
	return b, err
}

func signReceipt(key ed25519.PrivateKey, keyID string, r *Receipt) (*Envelope, []byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, nil, fmt.Errorf("sign receipt: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	pub := key.Public().(ed25519.PublicKey)
	want := KeyID(pub)
	if keyID == "" {
		keyID = want
	} else if keyID != want {
		return nil, nil, fmt.Errorf("sign receipt: key id %q is not the id of the signing key (%s)", keyID, want)
	}
	n := r.normalize()
	if err := n.Validate(); err != nil {
		return nil, nil, fmt.Errorf("sign receipt: %w", err)
	}
	payload, err := json.Marshal(&n)
	if err != nil {
		return nil, nil, fmt.Errorf("sign receipt: encode payload: %w", err)
	}
	signer, err := dsse.NewEnvelopeSigner(ed25519Signer{key: key, id: keyID})
	if err != nil {
		return nil, nil, fmt.Errorf("sign receipt: %w", err)
	}
	signed, err := signer.SignPayload(context.Background(), PayloadType, payload)
	if err != nil {
		return nil, nil, fmt.Errorf("sign receipt: %w", err)
	}
	env, err := fromDSSE(signed, payload)
	if err != nil {
		return nil, nil, fmt.Errorf("sign receipt: %w", err)
	}
	b, err := env.Canonical()
	if err != nil {
		return nil, nil, fmt.Errorf("sign receipt: encode envelope: %w", err)
	}
	if len(b) > MaxEnvelopeBytes {
		return nil, nil, fmt.Errorf("sign receipt: envelope is %d bytes, more than %d: %w", len(b), MaxEnvelopeBytes, ErrTooLarge)
	}
	return env, b, nil
}

// VerifyEnvelope checks env the way an auditor does: the payload type is
// PayloadType; at least one signature verifies, over PAE, with a trusted
// receipt key from keys; that key belongs to the node the receipt names;
// the payload decodes and validates as a Receipt. Errors are *VerifyError
// with subject "receipt" that name the key, node or field at fault.
func VerifyEnvelope(env *Envelope, keys *KeySet) (*Receipt, error) {
	idx, err := keys.compile()
	if err != nil {
		return nil, err
	}
	return verifyEnvelope(env, idx)
}

func verifyEnvelope(env *Envelope, idx *keyIndex) (*Receipt, error) {
	if env.PayloadType != PayloadType {
		return nil, &VerifyError{Subject: "receipt", Index: -1, Field: "payloadType", Err: ErrMalformed,
			Detail: fmt.Sprintf("%q, want %q", env.PayloadType, PayloadType)}
	}
	if len(env.Signatures) == 0 {
		return nil, &VerifyError{Subject: "receipt", Index: -1, Field: "signatures", Err: ErrMalformed, Detail: "is empty"}
	}
	body := base64.StdEncoding.EncodeToString(env.Payload)
	var signer *receiptKey
	var firstErr *VerifyError
	for _, s := range env.Signatures {
		cands := idx.receiptCandidates(s.KeyID)
		if len(cands) == 0 {
			if firstErr == nil {
				firstErr = verr("receipt", ErrUnknownKey, fmt.Sprintf("signed with key %s, which is not in the trusted key set", s.KeyID))
			}
			continue
		}
		if signer = verifyOne(env.PayloadType, body, s, cands); signer != nil {
			break
		}
		if firstErr == nil || errors.Is(firstErr, ErrUnknownKey) {
			id := s.KeyID
			if id == "" {
				id = "(none given; every trusted key tried)"
			}
			firstErr = verr("receipt", ErrBadSignature, "signature does not verify with key "+id)
		}
	}
	if signer == nil {
		return nil, firstErr
	}
	var r Receipt
	if err := json.Unmarshal(env.Payload, &r); err != nil {
		return nil, verr("receipt", ErrMalformed, "payload is not a v1 receipt: "+err.Error())
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.NodeID != signer.node {
		e := verr("receipt", ErrWrongNode, fmt.Sprintf("names node %q but is signed with key %s of node %q", r.NodeID, signer.id, signer.node))
		e.Node = r.NodeID
		return nil, e
	}
	return &r, nil
}

// parseCanonical is DecodeEnvelope's fast path for the canonical form, the
// form every stored record has. It reports ok only when data is exactly
// the canonical encoding of a valid envelope (it re-encodes and compares),
// so anything it declines goes through the general decoder.
func parseCanonical(data []byte) (*Envelope, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"payload":"`))
	if !ok {
		return nil, false
	}
	field := func() ([]byte, bool) { // up to the closing quote; no escapes
		i := bytes.IndexByte(rest, '"')
		if i < 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
			return nil, false
		}
		v := rest[:i]
		rest = rest[i+1:]
		return v, true
	}
	p64, ok := field()
	if !ok {
		return nil, false
	}
	payload, err := base64.StdEncoding.Strict().DecodeString(string(p64))
	if err != nil {
		return nil, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"payloadType":"`)); !ok {
		return nil, false
	}
	pt, ok := field()
	if !ok || len(pt) == 0 {
		return nil, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"signatures":[`)); !ok {
		return nil, false
	}
	e := &Envelope{Payload: payload, PayloadType: string(pt)}
	for {
		var sig Signature
		if r, ok := bytes.CutPrefix(rest, []byte(`{"keyid":"`)); ok {
			rest = r
			id, ok := field()
			if !ok || len(id) == 0 {
				return nil, false
			}
			sig.KeyID = string(id)
			if rest, ok = bytes.CutPrefix(rest, []byte(`,"sig":"`)); !ok {
				return nil, false
			}
		} else if rest, ok = bytes.CutPrefix(rest, []byte(`{"sig":"`)); !ok {
			return nil, false
		}
		s64, ok := field()
		if !ok {
			return nil, false
		}
		if sig.Sig, err = base64.StdEncoding.Strict().DecodeString(string(s64)); err != nil || len(sig.Sig) == 0 {
			return nil, false
		}
		e.Signatures = append(e.Signatures, sig)
		if rest, ok = bytes.CutPrefix(rest, []byte(`}`)); !ok {
			return nil, false
		}
		if r, ok := bytes.CutPrefix(rest, []byte(`,`)); ok {
			rest = r
			continue
		}
		if !bytes.Equal(rest, []byte(`]}`)) {
			return nil, false
		}
		break
	}
	if c, err := e.MarshalJSON(); err != nil || !bytes.Equal(c, data) {
		return nil, false
	}
	return e, true
}

// CheckEnvelope checks everything VerifyEnvelope checks except the
// signature arithmetic: the payload type, a valid v1 receipt, and a
// signature naming a trusted receipt key of the node the receipt names.
// The Raft FSM uses it on every replica, where an Ed25519 verification
// per receipt per replica would cost more than the rest of a task's
// audit; auditors verify every signature with VerifyEnvelope.
func CheckEnvelope(env *Envelope, keys *KeySet) (*Receipt, error) {
	idx, err := keys.compile()
	if err != nil {
		return nil, err
	}
	if env.PayloadType != PayloadType {
		return nil, &VerifyError{Subject: "receipt", Index: -1, Field: "payloadType", Err: ErrMalformed,
			Detail: fmt.Sprintf("%q, want %q", env.PayloadType, PayloadType)}
	}
	var r Receipt
	if err := json.Unmarshal(env.Payload, &r); err != nil {
		return nil, verr("receipt", ErrMalformed, "payload is not a v1 receipt: "+err.Error())
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	for _, s := range env.Signatures {
		if k, ok := idx.byID[s.KeyID]; ok && k.node == r.NodeID && len(s.Sig) == ed25519.SignatureSize {
			return &r, nil
		}
	}
	e := verr("receipt", ErrUnknownKey, fmt.Sprintf("no signature names a receipt key of node %q", r.NodeID))
	e.Node = r.NodeID
	return nil, e
}

// The DSSE protocol itself (PAE, signing, verifying a signature against a
// set of keys) is go-securesystemslib's dsse package; this file keeps what
// is the ledger's own: the canonical JSON form every stored record has
// (field order, padded standard base64), the strict decoder, and which
// keys a receipt may be signed with.

// ed25519Signer is a dsse.Signer for a node's receipt key.
type ed25519Signer struct {
	key ed25519.PrivateKey
	id  string
}

func (s ed25519Signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.key, data), nil
}

func (s ed25519Signer) KeyID() (string, error) { return s.id, nil }

// ed25519Verifier is a dsse.Verifier for one trusted receipt key.
type ed25519Verifier struct{ k *receiptKey }

func (v ed25519Verifier) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(v.k.pub, data, sig) {
		return errors.New("ed25519: invalid signature")
	}
	return nil
}

func (v ed25519Verifier) KeyID() (string, error)   { return v.k.id, nil }
func (v ed25519Verifier) Public() crypto.PublicKey { return v.k.pub }

// verifyOne checks one signature of an envelope (its payload already in
// base64) against the candidate keys with dsse's verifier, and returns the
// key that verified it, or nil.
func verifyOne(payloadType, payload64 string, s Signature, cands []*receiptKey) *receiptKey {
	vs := make([]dsse.Verifier, len(cands))
	for i, k := range cands {
		vs[i] = ed25519Verifier{k}
	}
	ev, err := dsse.NewEnvelopeVerifier(vs...)
	if err != nil {
		return nil
	}
	accepted, err := ev.Verify(context.Background(), &dsse.Envelope{
		PayloadType: payloadType,
		Payload:     payload64,
		Signatures:  []dsse.Signature{{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)}},
	})
	if err != nil || len(accepted) == 0 {
		return nil
	}
	for _, k := range cands {
		if k.id == accepted[0].KeyID {
			return k
		}
	}
	return nil
}

// fromDSSE turns an envelope dsse signed into the ledger's form; payload
// is the body it signed, so it is not decoded again.
func fromDSSE(e *dsse.Envelope, payload []byte) (*Envelope, error) {
	out := &Envelope{Payload: payload, PayloadType: e.PayloadType, Signatures: make([]Signature, len(e.Signatures))}
	for i, s := range e.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return nil, fmt.Errorf("signature %d: %w", i, err)
		}
		out.Signatures[i] = Signature{KeyID: s.KeyID, Sig: sig}
	}
	return out, nil
}
