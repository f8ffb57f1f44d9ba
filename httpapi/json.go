package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
)

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// DecodeJSON reads a JSON body of at most limit bytes into v, refusing
// other content types, unknown fields and trailing data.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
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
			return ErrBodyTimeout
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

// Bearer returns the Authorization bearer token, or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// StallWriter gives every write of a streamed answer (an export, an event
// stream) a deadline of its own: a client that keeps reading may take as
// long as the stream is, one that stops is cut off after the timeout. It
// is an http.ResponseWriter whose Flush reaches the connection.
type StallWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// NewStallWriter wraps w; each Write must finish within timeout.
func NewStallWriter(w http.ResponseWriter, timeout time.Duration) *StallWriter {
	return &StallWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (s *StallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (s *StallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ErrBodyTimeout answers a request whose body did not arrive within
// Config.BodyTimeout.
var ErrBodyTimeout = &api.Error{Status: http.StatusRequestTimeout, Code: api.CodeBodyTimeout, Message: "the request body did not arrive in time"}

// BodyReadError maps an error reading a raw body (a module, a bundle).
func BodyReadError(err error, limit int64, what string) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "%s is larger than %d bytes", what, limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrBodyTimeout
	}
	return api.BadRequest(api.CodeBadRequest, "read %s: %v", what, err)
}

// QueryInt reads a non-negative integer query parameter: def when it is
// absent, a 400 bad_request when it is not one.
func QueryInt(r *http.Request, name string, def int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, api.BadRequest(api.CodeBadRequest, "%s must be a non-negative integer", name)
	}
	return v, nil
}
