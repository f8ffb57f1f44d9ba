// Package modules is a node's module store: modules kept by digest on the
// node that received them, in the node-local part of Pebble, each owned
// by the tenants that uploaded it and bounded by each tenant's quota; the
// module endpoints (PUT, DELETE /v1/modules); and how a task's module is
// found (the compiled cache, this node's store, the replicated bulk
// modules, a peer). Compiling is the sandbox's; reaching peers is the
// node's mesh, seen through Peers.
package modules

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// Box is the sandbox runtime as the store uses it.
type Box interface {
	Compile(ctx context.Context, kind sandbox.Kind, code []byte) (*sandbox.Module, error)
	Cached(digest string) (*sandbox.Module, bool)
	Forget(digest string)
}

// Peers is how the store reaches the modules of other nodes.
type Peers interface {
	// FetchModule asks the live peers for a module's stored form (the
	// kind byte and the code), checked against its digest; with a
	// tenant, only a peer that knows the tenant may run it answers.
	// pebble.ErrNotFound when none has it.
	FetchModule(ctx context.Context, digest, tenant string) ([]byte, error)
	// DropOwnerOnPeers passes a deletion on to the live peers and counts
	// those that held the tenant's module.
	DropOwnerOnPeers(ctx context.Context, digest, tenant string) int
}

// Config sets the store up.
type Config struct {
	DB     *pebble.DB
	State  *consensus.State
	Box    Box
	Peers  Peers
	Intake *httpapi.Intake
	// MaxBytes bounds one module.
	MaxBytes int64
	Log      *slog.Logger
	// Env is the policy environment whose active bundle sets the
	// tenants' module quotas.
	Env string
}

// Store is the node's module store.
type Store struct {
	cfg Config
	mu  sync.Mutex // ownership and quotas

	// owned caches the ownership records Owned found, so a task by
	// digest does not read Pebble for them (a read that costs more as
	// the store grows: 2% of the node's CPU under load). DropOwner
	// removes an entry under ownedMu after its delete committed and
	// bumps ownedGen, and Owned adds what it read only if no drop came
	// between its read and the add: a dropped owner is never cached.
	owned    *lru.Cache[string, struct{}]
	ownedMu  sync.Mutex
	ownedGen uint64
}

// maxOwnedCache bounds the ownership cache (least recently used first).
const maxOwnedCache = 4096

// New returns the store.
func New(cfg Config) *Store {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	owned, _ := lru.New[string, struct{}](maxOwnedCache) // errors only for a size ≤ 0
	return &Store{cfg: cfg, owned: owned}
}

// Handlers are the module routes, by operation name of httpapi.Table.
func (s *Store) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"putModule":    s.putModule,
		"deleteModule": s.deleteModule,
	}
}

// Modules are stored on the node that received them, by digest, in the
// node-local part of Pebble: x/mod/<digest> = kind byte + bytes. A module
// belongs to the tenants that uploaded it: x/modowner/<digest>/<tenant>
// (PublicOwner for a module an admin uploaded for every tenant). A digest
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
	PublicOwner        = "*"
)

// CodeQuota: a tenant's modules on this node are at its quota.
const CodeQuota = "module_quota_exceeded"

func moduleOwnerKey(digest, tenant string) []byte {
	return []byte(prefixModuleOwner + digest + "/" + tenant)
}

// AddOwner stores a module (its stored form: the kind byte and the code)
// and records that tenant may run it, within the tenant's module quota on
// this node, in one batch.
func (s *Store) AddOwner(digest, tenant string, stored []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := int64(len(stored) - 1)
	if _, closer, err := s.cfg.DB.Get(moduleOwnerKey(digest, tenant)); err == nil {
		closer.Close()
		return nil // owned already; its bytes are stored with it
	}
	if err := s.checkQuota(tenant, size); err != nil {
		return err
	}
	b := s.cfg.DB.NewBatch()
	defer b.Close()
	_ = b.Set([]byte(prefixModule+digest), stored, nil)
	_ = b.Set(moduleOwnerKey(digest, tenant), nil, nil)
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(size))
	_ = b.Set([]byte(prefixModuleTenant+tenant+"/"+digest), sz[:], nil)
	return b.Commit(pebble.Sync)
}

// checkQuota refuses a new module of size bytes that would take
// tenant past its module quota on this node (an admin's modules count
// against none). Uploads check it before compiling, so that a tenant at
// its quota costs the node no compile; AddOwner checks it again, under
// the lock, when it stores.
func (s *Store) checkQuota(tenant string, size int64) error {
	if tenant == PublicOwner {
		return nil
	}
	q := policy.ModuleQuota{}
	if _, b, err := s.cfg.State.ActiveBundle(s.cfg.Env); err == nil {
		if t, ok := b.Tenants[tenant]; ok {
			q = t.Modules
		}
	}
	count, bytes, err := s.tenantModules(tenant)
	if err != nil {
		return err
	}
	if count+1 > q.Count() || bytes+size > q.Bytes() {
		return api.Errorf(http.StatusRequestEntityTooLarge, CodeQuota,
			"tenant %q stores %d modules (%d bytes) on this node; its quota is %d modules, %d bytes: DELETE /v1/modules/{digest} what it no longer needs", tenant, count, bytes, q.Count(), q.Bytes())
	}
	return nil
}

// tenantModules is what tenant stores on this node: modules and bytes.
func (s *Store) tenantModules(tenant string) (count, bytes int64, err error) {
	prefix := []byte(prefixModuleTenant + tenant + "/")
	it, err := s.cfg.DB.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: consensus.PrefixEnd(prefix)})
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

// DropOwner forgets that tenant may run digest on this node, and the
// module's bytes once no owner is left. It reports whether tenant owned it.
func (s *Store) DropOwner(digest, tenant string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, closer, err := s.cfg.DB.Get(moduleOwnerKey(digest, tenant)); err != nil {
		return false, nil
	} else {
		closer.Close()
	}
	b := s.cfg.DB.NewBatch()
	defer b.Close()
	_ = b.Delete(moduleOwnerKey(digest, tenant), nil)
	_ = b.Delete([]byte(prefixModuleTenant+tenant+"/"+digest), nil)
	// Any other owner left?
	prefix := []byte(prefixModuleOwner + digest + "/")
	it, err := s.cfg.DB.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: consensus.PrefixEnd(prefix)})
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
	err = b.Commit(pebble.Sync)
	// Whether or not the delete committed, Owned reads it again.
	s.ownedMu.Lock()
	s.ownedGen++
	s.owned.Remove(string(moduleOwnerKey(digest, tenant)))
	s.ownedMu.Unlock()
	if err != nil {
		return false, err
	}
	if !others && !s.cfg.State.HasQueueModule(digest) {
		// Nobody here owns it, and no bulk task needs it: its compiled
		// code goes too.
		s.cfg.Box.Forget(digest)
	}
	return true, nil
}

// deleteModule answers DELETE /v1/modules/{digest}: the caller's tenant
// (an admin: every tenant's upload, or ?tenant=) no longer owns the module
// on this node nor on the peers it reaches; a module nobody owns is
// deleted. Another tenant's module is not found.
func (s *Store) deleteModule(w http.ResponseWriter, r *http.Request) error {
	digest := r.PathValue("digest")
	owner := httpapi.CallerOf(r.Context()).Tenant
	if httpapi.CallerOf(r.Context()).Staff() {
		owner = PublicOwner
		if t := r.URL.Query().Get("tenant"); t != "" {
			owner = t
		}
	}
	if !api.ValidDigest(digest) || owner == "" || strings.ContainsAny(owner, "/\x00") {
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module %s", digest)
	}
	had, err := s.DropOwner(digest, owner)
	if err != nil {
		return err
	}
	peers := s.cfg.Peers.DropOwnerOnPeers(r.Context(), digest, owner)
	if !had && peers == 0 {
		return api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module %s of tenant %q", digest, owner)
	}
	s.cfg.Log.Info("module deleted", "digest", digest, "owner", owner, "here", had, "peers", peers, "traceparent", obs.RequestTraceparent(r.Context()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Owned reports whether this node knows tenant may run digest.
func (s *Store) Owned(digest, tenant string) bool {
	for _, t := range []string{tenant, PublicOwner} {
		key := moduleOwnerKey(digest, t)
		if s.owned.Contains(string(key)) {
			return true
		}
		s.ownedMu.Lock()
		gen := s.ownedGen
		s.ownedMu.Unlock()
		if _, closer, err := s.cfg.DB.Get(key); err == nil {
			closer.Close()
			s.ownedMu.Lock()
			if s.ownedGen == gen {
				s.owned.Add(string(key), struct{}{})
			}
			s.ownedMu.Unlock()
			return true
		}
	}
	return false
}

// ForTenant is a module by digest for a task of tenant: the digest must
// be a module the tenant (or an admin, for every tenant) uploaded, to this
// node or to a peer.
func (s *Store) ForTenant(ctx context.Context, tenant, digest string) (*sandbox.Module, error) {
	if !s.Owned(digest, tenant) {
		if _, err := s.Fetch(ctx, digest, tenant); err != nil {
			if errors.Is(err, pebble.ErrNotFound) {
				return nil, api.Errorf(http.StatusNotFound, api.CodeModuleNotFound, "no module %s of tenant %q on this node or its peers; PUT /v1/modules first", digest, tenant)
			}
			return nil, err
		}
	}
	return s.ByDigest(ctx, digest)
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
func (s *Store) putModule(w http.ResponseWriter, r *http.Request) error {
	owner := httpapi.CallerOf(r.Context()).Tenant
	if httpapi.CallerOf(r.Context()).Staff() {
		owner = PublicOwner
		if t := r.URL.Query().Get("tenant"); t != "" {
			owner = t
		}
	}
	if owner == "" || strings.ContainsAny(owner, "/\x00") || len(owner) > 128 {
		return api.BadRequest(api.CodeBadRequest, "tenant is not a tenant name")
	}
	release, err := s.cfg.Intake.Admit(r, owner, s.cfg.MaxBytes)
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
	code, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBytes))
	if err != nil {
		return httpapi.BodyReadError(err, s.cfg.MaxBytes, "module")
	}
	if !s.Owned(sandbox.Digest(code), owner) {
		if err := s.checkQuota(owner, int64(len(code))); err != nil {
			return err
		}
	}
	m, err := s.Compile(r.Context(), kind, code)
	if err != nil {
		return err
	}
	if err := s.AddOwner(m.Digest, owner, append([]byte{kindByte(kind)}, code...)); err != nil {
		return err
	}
	s.cfg.Log.Info("module stored", "digest", m.Digest, "kind", kind, "bytes", len(code), "owner", owner)
	httpapi.WriteJSON(w, http.StatusCreated, api.ModuleRef{Digest: m.Digest, Kind: string(kind), Size: len(code)})
	return nil
}

// Compile compiles code, mapping the sandbox's compile errors to the API.
func (s *Store) Compile(ctx context.Context, kind sandbox.Kind, code []byte) (*sandbox.Module, error) {
	if len(code) == 0 {
		return nil, api.BadRequest(api.CodeInvalidModule, "module is empty")
	}
	m, err := s.cfg.Box.Compile(ctx, kind, code)
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

// ByDigest finds a module in the compiled cache, the local store,
// the replicated bulk modules or on a peer, for this node's own use (a
// bulk attempt, whose tenant was checked at enqueue); a client's digest
// goes through ForTenant.
func (s *Store) ByDigest(ctx context.Context, digest string) (*sandbox.Module, error) {
	if m, ok := s.cfg.Box.Cached(digest); ok {
		return m, nil
	}
	var b []byte
	v, closer, err := s.cfg.DB.Get([]byte(prefixModule + digest))
	if errors.Is(err, pebble.ErrNotFound) {
		// Modules of bulk tasks are replicated (consensus/queue.go).
		if kind, code, qerr := s.cfg.State.QueueModule(digest); qerr == nil {
			return s.Compile(ctx, sandbox.Kind(kind), code)
		}
		// Modules live on the node that received them; peers are asked
		// by digest (Peers).
		b, err = s.Fetch(ctx, digest, "")
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
	return s.Compile(ctx, kind, b[1:])
}

// Stored is a module's stored form on this node (the kind byte and the
// code), or pebble.ErrNotFound.
func (s *Store) Stored(digest string) ([]byte, error) {
	v, closer, err := s.cfg.DB.Get([]byte(prefixModule + digest))
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// Fetch asks the peers for a module; with a tenant, only a peer that
// knows the tenant may run it answers, and the module is stored here
// with that owner, within the tenant's quota. A copy for this node's own
// use (an attempt, a replication; no tenant) is not stored: nobody here
// owns it, so nothing would ever delete it. Its compiled code stays in
// the bounded compiled-module cache, and a later miss asks again.
func (s *Store) Fetch(ctx context.Context, digest, tenant string) ([]byte, error) {
	b, err := s.cfg.Peers.FetchModule(ctx, digest, tenant)
	if err != nil {
		return nil, err
	}
	if tenant != "" {
		if err := s.AddOwner(digest, tenant, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}
