package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/events"
)

// handlerFunc is an API handler: it returns an error and one place maps
// it to a status and a JSON body.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

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
		if r.ContentLength != 0 && r.Method != http.MethodGet && r.Method != http.MethodHead {
			// A body must arrive within BodyTimeout: a client that
			// sends headers and then trickles (or nothing) is cut off.
			// (net/http clears the deadline when it starts its background
			// read after the body, so a long task is not cut off by it.)
			_ = http.NewResponseController(w).SetReadDeadline(start.Add(n.cfg.BodyTimeout))
		}
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
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errBodyTimeout
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

// stallWriter gives every write of a streamed answer a deadline of its
// own: a client that keeps reading may take as long as the stream is, one
// that stops is cut off after the timeout.
type stallWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func newStallWriter(w http.ResponseWriter, timeout time.Duration) *stallWriter {
	return &stallWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (s *stallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	return s.w.Write(p)
}

// errBodyTimeout answers a request whose body did not arrive within
// Config.BodyTimeout.
var errBodyTimeout = &api.Error{Status: http.StatusRequestTimeout, Code: api.CodeBodyTimeout, Message: "the request body did not arrive in time"}

// bodyReadError maps an error reading a raw body (a module, a bundle).
func bodyReadError(err error, limit int64, what string) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "%s is larger than %d bytes", what, limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errBodyTimeout
	}
	return api.BadRequest(api.CodeBadRequest, "read %s: %v", what, err)
}
