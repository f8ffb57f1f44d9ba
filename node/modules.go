package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/sandbox"
)

// Modules are stored on the node that received them, by digest, in the
// node-local part of Pebble: x/mod/<digest> = kind byte + bytes. A module
// belongs to the tenants that uploaded it: x/modowner/<digest>/<tenant>
// (publicOwner for a module an admin uploaded for every tenant). A digest
// is run only for an owner: another tenant's module is not found, as a
// missing one is.
const (
	prefixModule      = consensus.PrefixLocal + "mod/"
	prefixModuleOwner = consensus.PrefixLocal + "modowner/"
	publicOwner       = "*"
)

func moduleOwnerKey(digest, tenant string) []byte {
	return []byte(prefixModuleOwner + digest + "/" + tenant)
}

// addOwner records that tenant may run the module digest.
func (n *Node) addOwner(digest, tenant string) error {
	return n.db.Set(moduleOwnerKey(digest, tenant), nil, pebble.Sync)
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
	owner := callerOf(r.Context()).tenant
	if callerOf(r.Context()).staff() {
		owner = publicOwner
		if t := r.URL.Query().Get("tenant"); t != "" {
			owner = t
		}
	}
	if owner == "" || strings.ContainsAny(owner, "/\x00") || len(owner) > 128 {
		return api.BadRequest(api.CodeBadRequest, "tenant is not a tenant name")
	}
	release, err := n.intake.admit(r, owner, n.cfg.MaxModuleBytes)
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
		return bodyReadError(err, n.cfg.MaxModuleBytes, "module")
	}
	m, err := n.compile(r.Context(), kind, code)
	if err != nil {
		return err
	}
	if err := n.db.Set([]byte(prefixModule+m.Digest), append([]byte{kindByte(kind)}, code...), pebble.Sync); err != nil {
		return fmt.Errorf("store module: %w", err)
	}
	if err := n.addOwner(m.Digest, owner); err != nil {
		return fmt.Errorf("store module owner: %w", err)
	}
	n.log.Info("module stored", "digest", m.Digest, "kind", kind, "bytes", len(code), "owner", owner)
	writeJSON(w, http.StatusCreated, api.ModuleRef{Digest: m.Digest, Kind: string(kind), Size: len(code)})
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
