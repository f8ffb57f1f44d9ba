// Package audit is what auditors read of the replicated receipt ledger
// through the API: the signed checkpoint, a receipt with its inclusion
// proof, an export of a range, a consistency proof between two sizes,
// and the keys that verify them (GET /v1/keys). The ledger itself is
// package ledger (receipts, the Merkle log, checkpoints) over replicated
// state (consensus/ledger.go); auditors verify offline (`leash ledger
// verify`).
package audit

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/lease"
	"github.com/leash-dev/leash/ledger"
)

// Config sets the reader up.
type Config struct {
	State *consensus.State
	// NodeID and CheckpointKey sign this node's view of the log when it
	// grew past the newest co-signed checkpoint.
	NodeID        string
	CheckpointKey ed25519.PrivateKey
	// BodyTimeout: an export whose reader stalls this long is cut off.
	BodyTimeout time.Duration
}

// Reader serves the ledger's read endpoints.
type Reader struct{ cfg Config }

// New returns the reader.
func New(cfg Config) *Reader { return &Reader{cfg: cfg} }

// Handlers are the ledger and key routes, by operation name of
// httpapi.Table.
func (a *Reader) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"getKeys":        a.getKeys,
		"getCheckpoint":  a.getCheckpoint,
		"getReceipt":     a.getReceipt,
		"getExport":      a.getExport,
		"getConsistency": a.getConsistency,
	}
}

// View opens the ledger for an API call (503 until it is initialised).
// The caller closes it.
func (a *Reader) View() (*consensus.Ledger, error) {
	v, err := a.cfg.State.Ledger()
	if err != nil {
		return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "the ledger is not initialised yet", Err: err}
	}
	return v, nil
}

// SignedCheckpoint is the newest co-signed checkpoint, or, when the log
// grew past it (or none exists yet) or it is smaller than atLeast, this
// node's own signature on its current view.
func (a *Reader) SignedCheckpoint(v *consensus.Ledger, atLeast int64) ([]byte, error) {
	if note, err := v.Checkpoint(); err == nil {
		if sc, err := ledger.VerifyCheckpoint(note, v.Keys, 1); err == nil && sc.Checkpoint.Size >= atLeast {
			return note, nil
		}
	}
	cp, err := v.Log.Checkpoint(v.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ledger.NewNoteSigner(a.cfg.NodeID, a.cfg.CheckpointKey)
	if err != nil {
		return nil, err
	}
	return ledger.SignCheckpoint(cp, signer)
}

// keysView is GET /v1/keys: the lease JWKS ("keys") and the ledger key
// set ("origin", "nodes") auditors verify receipts and checkpoints with.
type keysView struct {
	Keys   any               `json:"keys"`
	Origin string            `json:"origin"`
	Nodes  []ledger.NodeKeys `json:"nodes"`
}

// getKeys serves the nodes' public keys: lease keys as a JWKS, plus every
// key (receipt, note) for auditors.
func (a *Reader) getKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.cfg.State.NodeKeys()
	if err != nil {
		return err
	}
	out := keysView{Keys: lease.JWKS(keys).Keys, Nodes: []ledger.NodeKeys{}}
	if v, err := a.cfg.State.Ledger(); err == nil {
		out.Origin, out.Nodes = v.Keys.Origin, v.Keys.Nodes
		v.Close()
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// GET /v1/ledger/checkpoint: the signed note, as text.
func (a *Reader) getCheckpoint(w http.ResponseWriter, r *http.Request) error {
	v, err := a.View()
	if err != nil {
		return err
	}
	defer v.Close()
	note, err := a.SignedCheckpoint(v, 0)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(note)
	return nil
}

// GET /v1/ledger/receipts/{index}: envelope + inclusion proof to the
// newest checkpoint that contains it.
func (a *Reader) getReceipt(w http.ResponseWriter, r *http.Request) error {
	idx, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || idx < 0 {
		return api.BadRequest(api.CodeBadRequest, "index must be a non-negative integer")
	}
	v, err := a.View()
	if err != nil {
		return err
	}
	defer v.Close()
	size, err := v.Log.Size(v.Reader)
	if err != nil {
		return err
	}
	if idx >= size {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "no receipt %d; the ledger has %d", idx, size)
	}
	if c := httpapi.CallerOf(r.Context()); !c.Staff() {
		// A tenant reads its own receipts; another tenant's is not found.
		rec, err := v.Log.Record(v.Reader, idx)
		if err != nil {
			return err
		}
		if t, err := receiptTenant(rec); err != nil || !c.Sees(t) {
			return api.Errorf(http.StatusNotFound, api.CodeNotFound, "no receipt %d of tenant %q", idx, c.Tenant)
		}
	}
	note, err := a.SignedCheckpoint(v, idx+1)
	if err != nil {
		return err
	}
	proof, err := v.Log.ReceiptProof(v.Reader, idx, note)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, proof)
	return nil
}

// sizeRange reads two sizes from the query (defaults 0 and the ledger's
// size) and checks 0 <= lo <= hi <= size.
func sizeRange(r *http.Request, v *consensus.Ledger, loName, hiName string) (lo, hi int64, err error) {
	size, err := v.Log.Size(v.Reader)
	if err != nil {
		return 0, 0, err
	}
	if lo, err = httpapi.QueryInt(r, loName, 0); err != nil {
		return 0, 0, err
	}
	if hi, err = httpapi.QueryInt(r, hiName, size); err != nil {
		return 0, 0, err
	}
	if lo > hi || hi > size {
		return 0, 0, api.BadRequest(api.CodeBadRequest, "want 0 <= %s <= %s <= %d", loName, hiName, size)
	}
	return lo, hi, nil
}

// GET /v1/ledger/export?from=&to=: JSON lines.
func (a *Reader) getExport(w http.ResponseWriter, r *http.Request) error {
	v, err := a.View()
	if err != nil {
		return err
	}
	defer v.Close()
	from, to, err := sizeRange(r, v, "from", "to")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	return v.Log.Export(v.Reader, httpapi.NewStallWriter(w, a.cfg.BodyTimeout), from, to)
}

// GET /v1/ledger/consistency?old=&new=: a consistency proof.
func (a *Reader) getConsistency(w http.ResponseWriter, r *http.Request) error {
	v, err := a.View()
	if err != nil {
		return err
	}
	defer v.Close()
	oldSize, newSize, err := sizeRange(r, v, "old", "new")
	if err != nil {
		return err
	}
	p, err := v.Log.ConsistencyProof(v.Reader, oldSize, newSize)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
	return nil
}

// receiptTenant reads the tenant a stored receipt names.
func receiptTenant(record []byte) (string, error) {
	env, err := ledger.DecodeEnvelope(record)
	if err != nil {
		return "", err
	}
	var r struct {
		Tenant string `json:"tenant"`
	}
	if err := json.Unmarshal(env.Payload, &r); err != nil {
		return "", err
	}
	return r.Tenant, nil
}
