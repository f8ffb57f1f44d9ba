package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/leash-dev/leash/api"
)

// maxAnswerBytes bounds what the server reads of one API answer: a task's
// response (bounded by the profile's output_bytes, at most a few MiB) in
// JSON, with headers, logs and usage.
const maxAnswerBytes = 16 << 20

// InProcess is a RoundTripper that serves each request with h, in the
// same process: a node's MCP endpoint calls the node's own API through it
// (authentication, roles and limits included) without a loopback socket.
// The request's context is the handler's, so a caller that goes away
// cancels the call.
func InProcess(h http.Handler) http.RoundTripper { return inProcess{h} }

type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	w := &recorder{header: http.Header{}}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	if r.RemoteAddr == "" {
		r.RemoteAddr = "127.0.0.1:0" // the node calling itself
	}
	if r.RequestURI == "" {
		r.RequestURI = r.URL.RequestURI()
	}
	p.h.ServeHTTP(w, r)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.overflow {
		return nil, fmt.Errorf("answer of %s %s is larger than %d bytes", r.Method, r.URL.Path, maxAnswerBytes)
	}
	return &http.Response{
		Status:        http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       r,
	}, nil
}

// recorder is the ResponseWriter of an in-process call: it keeps the
// status, the headers and at most maxAnswerBytes of body.
type recorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len()+len(p) > maxAnswerBytes {
		w.overflow = true
		return 0, errors.New("answer too large")
	}
	return w.body.Write(p)
}

// Flush lets handlers that flush (streams) run; the answer is delivered
// when the handler returns.
func (w *recorder) Flush() {}

// apiClient calls leash's public HTTP API.
type apiClient struct {
	hc   *http.Client
	base string // scheme://host, no trailing slash
}

// callError is a failed API call as a model reads it: the API's stable
// code and message, and the HTTP status.
type callError struct {
	Status  int    `json:"status" jsonschema:"the HTTP status of the refused API call"`
	Code    string `json:"code" jsonschema:"the API's stable error code, e.g. profile_not_allowed, budget_exhausted, unknown_intent"`
	Message string `json:"message" jsonschema:"what went wrong, for people and models"`
}

func (e *callError) Error() string { return e.Code + ": " + e.Message }

// call sends one API request with the bearer credential cred and decodes a
// 2xx answer into out. A refusal by the API is a *callError; other errors
// (the node unreachable, a malformed answer) are returned wrapped.
func (c *apiClient) call(ctx context.Context, method, path string, hdr http.Header, cred string, in, out any) (int, error) {
	var body []byte
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body, ctype = b, "application/json"
	}
	status, _, raw, err := c.raw(ctx, method, path, hdr, cred, body, ctype)
	if err != nil {
		return status, err
	}
	if out != nil && status != http.StatusNoContent {
		if err := json.Unmarshal(raw, out); err != nil {
			return status, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return status, nil
}

// callBytes is a GET whose 2xx answer is returned as bytes.
func (c *apiClient) callBytes(ctx context.Context, method, path string, hdr http.Header, cred string) ([]byte, error) {
	_, _, raw, err := c.raw(ctx, method, path, hdr, cred, nil, "")
	return raw, err
}

// raw sends one API request with body (of type ctype, when not empty) and
// returns the answer's status, headers and body; a refusal is a
// *callError.
func (c *apiClient) raw(ctx context.Context, method, path string, hdr http.Header, cred string, body []byte, ctype string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("build %s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return resp.StatusCode, nil, nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if len(raw) > maxAnswerBytes {
		return resp.StatusCode, nil, nil, fmt.Errorf("answer of %s %s is larger than %d bytes", method, path, maxAnswerBytes)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error *api.Error `json:"error"`
		}
		if json.Unmarshal(raw, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
			return resp.StatusCode, resp.Header, nil, &callError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return resp.StatusCode, resp.Header, nil, &callError{Status: resp.StatusCode, Code: "http_" + fmt.Sprint(resp.StatusCode), Message: strings.TrimSpace(clip(string(raw), 512))}
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// clip shortens s to at most n bytes (on a rune boundary).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
