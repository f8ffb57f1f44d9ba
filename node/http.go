package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/events"
)

// handlerFunc is an API handler: it returns an error and one place maps
// it to a status and a JSON body.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routes builds the API. Paths are registered without methods so that a
// wrong method gets a JSON 405 with Allow, and unknown paths a JSON 404.
func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, methods map[string]handlerFunc) {
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		mux.Handle(path, n.wrap(func(w http.ResponseWriter, r *http.Request) error {
			h, ok := methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				h, ok = methods[http.MethodGet]
			}
			if !ok {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				return api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
			}
			return h(w, r)
		}))
	}
	route("/healthz", map[string]handlerFunc{"GET": n.healthz})
	route("/readyz", map[string]handlerFunc{"GET": n.readyz})
	route("/v1/keys", map[string]handlerFunc{"GET": n.getKeys})
	route("/v1/cluster", map[string]handlerFunc{"GET": n.getCluster})
	route("/v1/cluster/snapshot", map[string]handlerFunc{"POST": n.postSnapshot})
	route("/v1/policy", map[string]handlerFunc{"GET": n.getPolicy, "PUT": n.putPolicy})
	route("/v1/leases", map[string]handlerFunc{"POST": n.issueLease})
	route("/v1/leases/{id}", map[string]handlerFunc{"GET": n.getLease, "DELETE": n.revokeLease})
	route("/v1/modules", map[string]handlerFunc{"PUT": n.putModule})
	route("/v1/tasks", map[string]handlerFunc{"POST": n.submitTask, "GET": n.listTasks})
	route("/v1/tasks/{id}", map[string]handlerFunc{"GET": n.getTask, "DELETE": n.cancelTask})
	route("/v1/ledger/checkpoint", map[string]handlerFunc{"GET": n.getCheckpoint})
	route("/v1/ledger/receipts/{index}", map[string]handlerFunc{"GET": n.getReceipt})
	route("/v1/ledger/export", map[string]handlerFunc{"GET": n.getExport})
	route("/v1/ledger/consistency", map[string]handlerFunc{"GET": n.getConsistency})
	// Profiles, for operators and benchmarks: admin token only.
	mux.Handle("/debug/pprof/", n.wrap(func(w http.ResponseWriter, r *http.Request) error {
		if err := n.requireAdmin(r); err != nil {
			return err
		}
		pprof.Index(w, r)
		return nil
	}))
	mux.Handle("/debug/pprof/profile", n.wrap(func(w http.ResponseWriter, r *http.Request) error {
		if err := n.requireAdmin(r); err != nil {
			return err
		}
		pprof.Profile(w, r)
		return nil
	}))
	// Events carry tenant data: the admin token reads them.
	route("/v1/events", map[string]handlerFunc{"GET": n.admin(n.evh.List)})
	route("/v1/events/stream", map[string]handlerFunc{"GET": n.admin(n.evh.Stream)})
	mux.Handle("/metrics", n.metrics.Handler())
	mux.Handle("/", n.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "no such endpoint: %s", r.URL.Path)
	}))
	return mux
}

// statusWriter remembers the status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach Flush (server-sent events).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// wrap turns a handlerFunc into an http.Handler: panics become 500s (and
// are logged), errors become JSON, and every request gets one log line.
func (n *Node) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		tp := traceparent(r.Header.Get("traceparent"))
		r = r.WithContext(events.WithScope(withTrace(r.Context(), tp), events.Scope{Traceparent: tp}))
		sw.Header().Set("traceparent", tp)
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			err = h(sw, r)
		}()
		if err != nil {
			n.writeError(sw, r, err)
		}
		level := slog.LevelDebug
		if sw.status >= 500 {
			level = slog.LevelWarn
		}
		n.log.Log(r.Context(), level, "http", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"ms", float64(time.Since(start).Microseconds())/1000, "traceparent", tp)
	})
}

func (n *Node) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := api.AsError(err)
	if !ok {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			e = api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "request body is larger than %d bytes", mbe.Limit)
		} else {
			e = &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "internal error", Err: err}
		}
	}
	if e.Status == 0 {
		e.Status = http.StatusInternalServerError
	}
	if e.Status >= 500 && e.Err != nil {
		n.log.Error("request failed", "path", r.URL.Path, "code", e.Code, "err", e.Err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, api.ErrorBody{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decodeJSON reads a JSON body of at most limit bytes into v, refusing
// other content types, unknown fields and trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return api.Errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "Content-Type must be application/json, got %q", ct)
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "request body is larger than %d bytes", limit)
		}
		if errors.Is(err, io.EOF) {
			return api.BadRequest(api.CodeMalformedJSON, "request body is empty; expected a JSON object")
		}
		return api.BadRequest(api.CodeMalformedJSON, "request body is not valid JSON for this endpoint: %v", err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "request body is larger than %d bytes", limit)
		}
		return api.BadRequest(api.CodeMalformedJSON, "request body has data after the JSON object")
	}
	return nil
}

// bearer returns the Authorization bearer token, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// admin wraps a handler with the admin-token check.
func (n *Node) admin(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := n.requireAdmin(r); err != nil {
			return err
		}
		return h(w, r)
	}
}

// requireAdmin checks the admin token.
func (n *Node) requireAdmin(r *http.Request) error {
	tok := bearer(r)
	if tok == "" {
		return api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "this endpoint needs the admin token (Authorization: Bearer <token>)")
	}
	if !tokenEqual(tok, n.id.AdminToken) {
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "the token is not the admin token")
	}
	return nil
}

func (n *Node) isAdmin(r *http.Request) bool {
	tok := bearer(r)
	return tok != "" && tokenEqual(tok, n.id.AdminToken)
}
