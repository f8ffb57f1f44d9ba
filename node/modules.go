package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// Modules are stored on the node that received them, by digest, in the
// node-local part of Pebble: x/mod/<digest> = kind byte + bytes. A module
// belongs to the tenants that uploaded it: x/modowner/<digest>/<tenant>
// (publicOwner for a module an admin uploaded for every tenant). A digest
// is run only for an owner: another tenant's module is not found, as a
// missing one is.
//
// A tenant's stored modules are bounded on each node by its bundle's
// modules quota (bytes and count; x/modtenant/<tenant>/<digest> = size
// keeps the tally); an admin's modules count against no quota.
const (
	prefixModule       = consensus.PrefixLocal + "mod/"
	prefixModuleOwner  = consensus.PrefixLocal + "modowner/"
	prefixModuleTenant = consensus.PrefixLocal + "modtenant/"
	publicOwner        = "*"
)

// CodeModuleQuota: a tenant's modules on this node are at its quota.
const CodeModuleQuota = "module_quota_exceeded"

func moduleOwnerKey(digest, tenant string) []byte {
	return []byte(prefixModuleOwner + digest + "/" + tenant)
}

// addOwner stores a module (its stored form: the kind byte and the code)
// and records that tenant may run it, within the tenant's module quota on
// this node, in one batch.
func (n *Node) addOwner(digest, tenant string, stored []byte) error {
	n.modMu.Lock()
	defer n.modMu.Unlock()
	size := int64(len(stored) - 1)
	if _, closer, err := n.db.Get(moduleOwnerKey(digest, tenant)); err == nil {
		closer.Close()
		return nil // owned already; its bytes are stored with it
	}
	if err := n.checkModuleQuota(tenant, size); err != nil {
		return err
	}
	b := n.db.NewBatch()
	defer b.Close()
	_ = b.Set([]byte(prefixModule+digest), stored, nil)
	_ = b.Set(moduleOwnerKey(digest, tenant), nil, nil)
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(size))
	_ = b.Set([]byte(prefixModuleTenant+tenant+"/"+digest), sz[:], nil)
	return b.Commit(pebble.Sync)
}

// checkModuleQuota refuses a new module of size bytes that would take
// tenant past its module quota on this node (an admin's modules count
// against none). Uploads check it before compiling, so that a tenant at
// its quota costs the node no compile; addOwner checks it again, under
// the lock, when it stores.
func (n *Node) checkModuleQuota(tenant string, size int64) error {
	if tenant == publicOwner {
		return nil
	}
	q := policy.ModuleQuota{}
	if _, b, err := n.state.ActiveBundle(Env); err == nil {
		if t, ok := b.Tenants[tenant]; ok {
			q = t.Modules
		}
	}
	count, bytes, err := n.tenantModules(tenant)
	if err != nil {
		return err
	}
	if count+1 > q.Count() || bytes+size > q.Bytes() {
		return api.Errorf(http.StatusRequestEntityTooLarge, CodeModuleQuota,
			"tenant %q stores %d modules (%d bytes) on this node; its quota is %d modules, %d bytes: DELETE /v1/modules/{digest} what it no longer needs", tenant, count, bytes, q.Count(), q.Bytes())
	}
	return nil
}

// tenantModules is what tenant stores on this node: modules and bytes.
func (n *Node) tenantModules(tenant string) (count, bytes int64, err error) {
	prefix := []byte(prefixModuleTenant + tenant + "/")
	it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: consensus.PrefixEnd(prefix)})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		count++
		if v := it.Value(); len(v) == 8 {
			bytes += int64(binary.BigEndian.Uint64(v))
		}
	}
	return count, bytes, it.Error()
}

// dropOwner forgets that tenant may run digest on this node, and the
// module's bytes once no owner is left. It reports whether tenant owned it.
func (n *Node) dropOwner(digest, tenant string) (bool, error) {
	n.modMu.Lock()
	defer n.modMu.Unlock()
	if _, closer, err := n.db.Get(moduleOwnerKey(digest, tenant)); err != nil {
		return false, nil
	} else {
		closer.Close()
	}
	b := n.db.NewBatch()
	defer b.Close()
	_ = b.Delete(moduleOwnerKey(digest, tenant), nil)
	_ = b.Delete([]byte(prefixModuleTenant+tenant+"/"+digest), nil)
	// Any other owner left?
	prefix := []byte(prefixModuleOwner + digest + "/")
	it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: consensus.PrefixEnd(prefix)})
	if err != nil {
		return false, err
	}
	others := false
	for it.First(); it.Valid(); it.Next() {
		if string(it.Key()[len(prefix):]) != tenant {
			others = true
			break
		}
	}
	if err := it.Close(); err != nil {
		return false, err
	}
	if !others {
		_ = b.Delete([]byte(prefixModule+digest), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, err
	}
	if !others && !n.state.HasQueueModule(digest) {
		// Nobody here owns it, and no bulk task needs it: its compiled
		// code goes too.
		n.box.Forget(digest)
	}
	return true, nil
}

// deleteModule answers DELETE /v1/modules/{digest}: the caller's tenant
// (an admin: every tenant's upload, or ?tenant=) no longer owns the module
// on this node nor on the peers it reaches; a module nobody owns is
// deleted. Another tenant's module is not found.
func (n *Node) deleteModule(w http.ResponseWriter, r *http.Request) error {
	digest := r.PathValue("digest")
	owner := httpapi.CallerOf(r.Context()).Tenant
	if httpapi.CallerOf(r.Context()).Staff() {
		owner = publicOwner
		if t := r.URL.Query().Get("tenant"); t != "" {
			owner = t
		}
	}
	if !api.ValidDigest(digest) || owner == "" || strings.ContainsAny(owner, "/\x00") {
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module %s", digest)
	}
	had, err := n.dropOwner(digest, owner)
	if err != nil {
		return err
	}
	peers := n.dropOwnerOnPeers(r.Context(), digest, owner)
	if !had && peers == 0 {
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module %s of tenant %q", digest, owner)
	}
	n.log.Info("module deleted", "digest", digest, "owner", owner, "here", had, "peers", peers, "traceparent", obs.RequestTraceparent(r.Context()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ownedLocally reports whether this node knows tenant may run digest.
func (n *Node) ownedLocally(digest, tenant string) bool {
	for _, t := range []string{tenant, publicOwner} {
		if _, closer, err := n.db.Get(moduleOwnerKey(digest, t)); err == nil {
			closer.Close()
			return true
		}
	}
	return false
}

// tenantModule is a module by digest for a task of tenant: the digest must
// be a module the tenant (or an admin, for every tenant) uploaded, to this
// node or to a peer.
func (n *Node) tenantModule(ctx context.Context, tenant, digest string) (*sandbox.Module, error) {
	if !n.ownedLocally(digest, tenant) {
		if _, err := n.fetchModule(ctx, digest, tenant); err != nil {
			if errors.Is(err, pebble.ErrNotFound) {
				return nil, api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module %s of tenant %q on this node or its peers; PUT /v1/modules first", digest, tenant)
			}
			return nil, err
		}
	}
	return n.moduleByDigest(ctx, digest)
}

func kindByte(k sandbox.Kind) byte {
	if k == sandbox.KindJS {
		return 'j'
	}
	return 'w'
}

// putModule stores a module by digest after compiling it (a module that
// does not compile is refused). It belongs to the caller's tenant; a
// module an admin uploads is every tenant's (or, with ?tenant=, one's).
func (n *Node) putModule(w http.ResponseWriter, r *http.Request) error {
	owner := httpapi.CallerOf(r.Context()).Tenant
	if httpapi.CallerOf(r.Context()).Staff() {
		owner = publicOwner
		if t := r.URL.Query().Get("tenant"); t != "" {
			owner = t
		}
	}
	if owner == "" || strings.ContainsAny(owner, "/\x00") || len(owner) > 128 {
		return api.BadRequest(api.CodeBadRequest, "tenant is not a tenant name")
	}
	release, err := n.intake.Admit(r, owner, n.cfg.MaxModuleBytes)
	if err != nil {
		return err
	}
	defer release()
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var kind sandbox.Kind
	switch mt {
	case "application/wasm":
		kind = sandbox.KindWASI
	case "application/javascript", "text/javascript":
		kind = sandbox.KindJS
	default:
		return api.Errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "Content-Type must be application/wasm or application/javascript, got %q", r.Header.Get("Content-Type"))
	}
	code, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n.cfg.MaxModuleBytes))
	if err != nil {
		return httpapi.BodyReadError(err, n.cfg.MaxModuleBytes, "module")
	}
	if !n.ownedLocally(sandbox.Digest(code), owner) {
		if err := n.checkModuleQuota(owner, int64(len(code))); err != nil {
			return err
		}
	}
	m, err := n.compile(r.Context(), kind, code)
	if err != nil {
		return err
	}
	if err := n.addOwner(m.Digest, owner, append([]byte{kindByte(kind)}, code...)); err != nil {
		return err
	}
	n.log.Info("module stored", "digest", m.Digest, "kind", kind, "bytes", len(code), "owner", owner)
	httpapi.WriteJSON(w, http.StatusCreated, api.ModuleRef{Digest: m.Digest, Kind: string(kind), Size: len(code)})
	return nil
}

// compile maps sandbox compile errors to the API.
func (n *Node) compile(ctx context.Context, kind sandbox.Kind, code []byte) (*sandbox.Module, error) {
	if len(code) == 0 {
		return nil, api.BadRequest(api.CodeInvalidModule, "module is empty")
	}
	m, err := n.box.Compile(ctx, kind, code)
	switch {
	case errors.Is(err, sandbox.ErrJSEngineUnavailable):
		return nil, api.Errorf(http.StatusNotImplemented, api.CodeJSEngineUnavail, "%v", err)
	case errors.Is(err, sandbox.ErrInvalidModule):
		return nil, api.BadRequest(api.CodeInvalidModule, "%v", err)
	case err != nil:
		var ce interface{ Code() string }
		if errors.As(err, &ce) {
			return nil, api.BadRequest(ce.Code(), "%v", err)
		}
		return nil, err
	}
	return m, nil
}

// moduleByDigest finds a module in the compiled cache, the local store,
// the replicated bulk modules or on a peer, for this node's own use (a
// bulk attempt, whose tenant was checked at enqueue); a client's digest
// goes through tenantModule.
func (n *Node) moduleByDigest(ctx context.Context, digest string) (*sandbox.Module, error) {
	if m, ok := n.box.Cached(digest); ok {
		return m, nil
	}
	var b []byte
	v, closer, err := n.db.Get([]byte(prefixModule + digest))
	if errors.Is(err, pebble.ErrNotFound) {
		// Modules of bulk tasks are replicated (bulk.go).
		if kind, code, qerr := n.state.QueueModule(digest); qerr == nil {
			return n.compile(ctx, sandbox.Kind(kind), code)
		}
		// Modules live on the node that received them; peers are asked
		// by digest (cluster.go).
		b, err = n.fetchModule(ctx, digest, "")
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module %s on this node or its peers; PUT /v1/modules first", digest)
		}
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	} else {
		b = append([]byte(nil), v...)
		closer.Close()
	}
	kind := sandbox.KindWASI
	if b[0] == 'j' {
		kind = sandbox.KindJS
	}
	return n.compile(ctx, kind, b[1:])
}
