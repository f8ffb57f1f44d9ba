package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/cockroachdb/pebble/v2"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/sandbox"
)

// Modules are stored on the node that received them, by digest, in the
// node-local part of Pebble: x/mod/<digest> = kind byte + bytes.
const prefixModule = consensus.PrefixLocal + "mod/"

func kindByte(k sandbox.Kind) byte {
	if k == sandbox.KindJS {
		return 'j'
	}
	return 'w'
}

// putModule stores a module by digest after compiling it (a module that
// does not compile is refused).
func (n *Node) putModule(w http.ResponseWriter, r *http.Request) error {
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
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "module is larger than %d bytes", n.cfg.MaxModuleBytes)
		}
		return api.BadRequest(api.CodeBadRequest, "read module: %v", err)
	}
	m, err := n.compile(r.Context(), kind, code)
	if err != nil {
		return err
	}
	if err := n.db.Set([]byte(prefixModule+m.Digest), append([]byte{kindByte(kind)}, code...), pebble.Sync); err != nil {
		return fmt.Errorf("store module: %w", err)
	}
	n.log.Info("module stored", "digest", m.Digest, "kind", kind, "bytes", len(code))
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

// moduleByDigest finds a module in the compiled cache or the local store.
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
		b, err = n.fetchModule(ctx, digest)
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
