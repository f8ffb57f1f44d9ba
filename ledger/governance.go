package ledger

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// GovernancePayloadType is the DSSE payload type of a v1 governance
// entry: a security runbook action (docs/runbook.md), signed by the node
// that took it with its receipt key and appended to the same log as the
// receipts, so an auditor verifies containment offline with the same
// tools. Receipts keep their own payload type, unchanged.
const GovernancePayloadType = "application/vnd.leash.governance.v1+json"

// MaxGovernanceItems bounds Governance.Items.
const MaxGovernanceItems = 256

// Governance records one runbook action. The JSON names are the v1
// schema and never change meaning.
type Governance struct {
	// ID is unique per action: the Raft index of the action's command,
	// as "raft:<index>" (a log holds an action once).
	ID string `json:"id"`
	// Action is freeze, unfreeze, thaw_canary, revoke, block, unblock,
	// incident_open, incident_step or incident_close.
	Action string `json:"action"`
	// By is who did it: "key:<id>" (an API key) or "admin".
	By string `json:"by"`
	// At is when, RFC 3339 with nanoseconds, UTC.
	At time.Time `json:"at"`
	// Reason is why, or "".
	Reason string `json:"reason"`
	// Incident is the incident it belongs to, or "".
	Incident string `json:"incident"`
	// Target is what it acted on: the profile, the selector
	// ("tenant=demo,session=s1"), the incident step.
	Target string `json:"target"`
	// Count is how many leases were revoked, or destinations changed.
	Count int `json:"count"`
	// Items are the destinations blocked or unblocked, the first lease
	// ids revoked (at most MaxGovernanceItems).
	Items []string `json:"items"`
	// NodeID is the node that took the action and signed this entry.
	NodeID string `json:"node_id"`
}

// governanceActions are the values of Governance.Action.
var governanceActions = map[string]bool{"freeze": true, "unfreeze": true, "thaw_canary": true, "revoke": true, "block": true, "unblock": true,
	"incident_open": true, "incident_step": true, "incident_close": true}

// Validate checks g's shape and bounds.
func (g *Governance) Validate() error {
	bad := func(field, detail string) error {
		e := verr("governance", ErrMalformed, field+" "+detail)
		e.Field = field
		return e
	}
	switch {
	case !strings.HasPrefix(g.ID, "raft:") || len(g.ID) > 32:
		return bad("id", "is not raft:<index>")
	case !governanceActions[g.Action]:
		return bad("action", fmt.Sprintf("%q is not a runbook action", g.Action))
	case g.By == "" || g.NodeID == "":
		return bad("by", "and node_id are required")
	case g.At.IsZero():
		return bad("at", "is required")
	case g.Count < 0:
		return bad("count", "is negative")
	case len(g.Items) > MaxGovernanceItems:
		return bad("items", fmt.Sprintf("has %d entries, at most %d", len(g.Items), MaxGovernanceItems))
	}
	for _, s := range append([]string{g.By, g.Reason, g.Incident, g.Target, g.NodeID}, g.Items...) {
		if len(s) > MaxFieldBytes || !utf8.ValidString(s) {
			return bad("field", fmt.Sprintf("is over %d bytes or not UTF-8", MaxFieldBytes))
		}
	}
	return nil
}

// SignGovernance validates g (times in UTC) and signs it as a DSSE
// envelope with the node's Ed25519 receipt key.
func SignGovernance(key ed25519.PrivateKey, g *Governance) (*Envelope, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign governance entry: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	n := *g
	n.At = n.At.UTC()
	if n.Items == nil {
		n.Items = []string{}
	}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("sign governance entry: %w", err)
	}
	payload, err := json.Marshal(&n)
	if err != nil {
		return nil, fmt.Errorf("sign governance entry: encode payload: %w", err)
	}
	id := KeyID(key.Public().(ed25519.PublicKey))
	signer, err := dsse.NewEnvelopeSigner(ed25519Signer{key: key, id: id})
	if err != nil {
		return nil, fmt.Errorf("sign governance entry: %w", err)
	}
	signed, err := signer.SignPayload(context.Background(), GovernancePayloadType, payload)
	if err != nil {
		return nil, fmt.Errorf("sign governance entry: %w", err)
	}
	env, err := fromDSSE(signed, payload)
	if err != nil {
		return nil, fmt.Errorf("sign governance entry: %w", err)
	}
	if b, err := env.Canonical(); err != nil {
		return nil, fmt.Errorf("sign governance entry: encode envelope: %w", err)
	} else if len(b) > MaxEnvelopeBytes {
		return nil, fmt.Errorf("sign governance entry: envelope is %d bytes: %w", len(b), ErrTooLarge)
	}
	return env, nil
}

// decodeGovernance decodes and validates env's payload.
func decodeGovernance(env *Envelope) (*Governance, error) {
	var g Governance
	if err := json.Unmarshal(env.Payload, &g); err != nil {
		return nil, verr("governance", ErrMalformed, "payload is not a v1 governance entry: "+err.Error())
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &g, nil
}

// CheckGovernance is CheckEnvelope for a governance entry: structure and
// a signature naming a receipt key of the node the entry names, without
// the signature arithmetic (the FSM's check on every replica).
func CheckGovernance(env *Envelope, keys *KeySet) (*Governance, error) {
	idx, err := keys.compile()
	if err != nil {
		return nil, err
	}
	if env.PayloadType != GovernancePayloadType {
		return nil, &VerifyError{Subject: "governance", Index: -1, Field: "payloadType", Err: ErrMalformed,
			Detail: fmt.Sprintf("%q, want %q", env.PayloadType, GovernancePayloadType)}
	}
	g, err := decodeGovernance(env)
	if err != nil {
		return nil, err
	}
	for _, s := range env.Signatures {
		if k, ok := idx.byID[s.KeyID]; ok && k.node == g.NodeID && len(s.Sig) == ed25519.SignatureSize {
			return g, nil
		}
	}
	e := verr("governance", ErrUnknownKey, fmt.Sprintf("no signature names a receipt key of node %q", g.NodeID))
	e.Node = g.NodeID
	return nil, e
}

// VerifyGovernance checks a governance entry the way an auditor does: a
// signature verifies with a trusted receipt key of the node it names.
func VerifyGovernance(env *Envelope, keys *KeySet) (*Governance, error) {
	idx, err := keys.compile()
	if err != nil {
		return nil, err
	}
	return verifyGovernance(env, idx)
}

func verifyGovernance(env *Envelope, idx *keyIndex) (*Governance, error) {
	if env.PayloadType != GovernancePayloadType {
		return nil, &VerifyError{Subject: "governance", Index: -1, Field: "payloadType", Err: ErrMalformed,
			Detail: fmt.Sprintf("%q, want %q", env.PayloadType, GovernancePayloadType)}
	}
	body := base64.StdEncoding.EncodeToString(env.Payload)
	var signer *receiptKey
	for _, s := range env.Signatures {
		if signer = verifyOne(env.PayloadType, body, s, idx.receiptCandidates(s.KeyID)); signer != nil {
			break
		}
	}
	if signer == nil {
		return nil, verr("governance", ErrBadSignature, "no signature verifies with a trusted receipt key")
	}
	g, err := decodeGovernance(env)
	if err != nil {
		return nil, err
	}
	if g.NodeID != signer.node {
		e := verr("governance", ErrWrongNode, fmt.Sprintf("names node %q but is signed with key %s of node %q", g.NodeID, signer.id, signer.node))
		e.Node = g.NodeID
		return nil, e
	}
	return g, nil
}
