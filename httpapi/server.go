package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/obs"
)

// HandlerFunc is an API handler: it returns an error and one place maps
// it to a status and a JSON body.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Authenticator finds out who made a request (Auth is the one the node
// uses). On a route anyone may call, an error means "nobody".
type Authenticator interface {
	Authenticate(r *http.Request, rs Roles) (*Caller, error)
}

// Config is what New serves.
type Config struct {
	Routes   []Route                // Table, in production
	Handlers map[string]HandlerFunc // by Route.Op; exactly one per route
	Auth     Authenticator
	Log      *slog.Logger
	// BodyTimeout bounds how long a client may take to send a request
	// body.
	BodyTimeout time.Duration
}

// New builds the API from the route table. Paths are registered without
// methods so that a wrong method gets a JSON 405 with Allow, and unknown
// paths a JSON 404. A route without roles or a handler, or a handler no
// route names, is an error: the table is the whole API.
func New(cfg Config) (http.Handler, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{log: cfg.Log, bodyTimeout: cfg.BodyTimeout}
	mux := http.NewServeMux()
	byPath := map[string]map[string]HandlerFunc{}
	var paths []string
	bound := map[string]bool{}
	for _, rt := range cfg.Routes {
		h := cfg.Handlers[rt.Op]
		switch {
		case rt.Roles == 0:
			return nil, fmt.Errorf("route %s %s declares no roles", rt.Method, rt.Path)
		case h == nil:
			return nil, fmt.Errorf("route %s %s (%s) has no handler", rt.Method, rt.Path, rt.Op)
		case bound[rt.Op]:
			return nil, fmt.Errorf("operation %s is in the route table twice", rt.Op)
		}
		bound[rt.Op] = true
		if byPath[rt.Path] == nil {
			byPath[rt.Path] = map[string]HandlerFunc{}
			paths = append(paths, rt.Path)
		}
		byPath[rt.Path][rt.Method] = Authorize(cfg.Auth, rt.Roles, h)
	}
	for op := range cfg.Handlers {
		if !bound[op] {
			return nil, fmt.Errorf("handler %s is in no route", op)
		}
	}
	for _, path := range paths {
		methods := byPath[path]
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		slices.Sort(allow)
		mux.Handle(path, s.wrap(func(w http.ResponseWriter, r *http.Request) error {
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
	mux.Handle("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "no such endpoint: %s", r.URL.Path)
	}))
	return mux, nil
}

// Authorize runs h only if the caller's role is one the route accepts.
// On a route anyone may call, a credential that proves nothing is
// ignored; one that proves something reaches the handler, which may give
// a known caller more (GET /v1/cluster?digest=1).
func Authorize(a Authenticator, rs Roles, h HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := a.Authenticate(r, rs)
		if err != nil {
			if rs&Anyone != 0 {
				return h(w, r)
			}
			return err
		}
		if rs&Anyone == 0 && c.Role&rs == 0 {
			return api.Errorf(http.StatusForbidden, api.CodeForbidden, "%s needs the role %s", r.URL.Path, rs)
		}
		return h(w, r.WithContext(WithCaller(r.Context(), c)))
	}
}

// Wrap is the middleware of every API route, for handlers served outside
// the table (the cluster port's internal routes): panics become 500s
// (and are logged), errors become JSON, and every request gets one log
// line.
func Wrap(log *slog.Logger, bodyTimeout time.Duration, h HandlerFunc) http.Handler {
	return (&server{log: log, bodyTimeout: bodyTimeout}).wrap(h)
}

type server struct {
	log         *slog.Logger
	bodyTimeout time.Duration
}

func (s *server) wrap(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if s.bodyTimeout > 0 && r.ContentLength != 0 && r.Method != http.MethodGet && r.Method != http.MethodHead {
			// A body must arrive within BodyTimeout: a client that
			// sends headers and then trickles (or nothing) is cut off.
			// (net/http clears the deadline when it starts its background
			// read after the body, so a long task is not cut off by it.)
			_ = http.NewResponseController(w).SetReadDeadline(start.Add(s.bodyTimeout))
		}
		sw := &statusWriter{ResponseWriter: w}
		tp := obs.ParseTraceparent(r.Header.Get("traceparent"))
		r = r.WithContext(events.WithScope(obs.WithRequestTraceparent(r.Context(), tp), events.Scope{Traceparent: tp}))
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
			WriteError(s.log, sw, r, err)
		}
		level := slog.LevelDebug
		if sw.status >= 500 {
			level = slog.LevelWarn
		}
		s.log.Log(r.Context(), level, "http", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"ms", float64(time.Since(start).Microseconds())/1000, "traceparent", tp)
	})
}

// WriteError answers err as JSON: an *api.Error with its status and
// code, a body over its limit as 413, anything else as a 500 that is
// logged and says no more.
func WriteError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
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
		log.Error("request failed", "path", r.URL.Path, "code", e.Code, "err", e.Err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	WriteJSON(w, e.Status, api.ErrorBody{Error: e})
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
