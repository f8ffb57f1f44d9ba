package leash

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// FetchError is a fetch the host refused (Clause names the policy clause,
// such as profile.default_deny or address.private) or that failed on the
// network (Clause is empty).
type FetchError struct {
	Code    int32
	Clause  string
	Message string
}

func (e *FetchError) Error() string {
	if e.Clause != "" {
		return fmt.Sprintf("leash fetch blocked by %s: %s", e.Clause, e.Message)
	}
	return "leash fetch failed: " + e.Message
}

type fetchRequest struct {
	Method     string              `json:"method"`
	URL        string              `json:"url"`
	Headers    map[string][]string `json:"headers,omitempty"`
	BodyBase64 []byte              `json:"body_base64,omitempty"`
}

type fetchMeta struct {
	Status     int                 `json:"status"`
	Headers    map[string][]string `json:"headers"`
	URL        string              `json:"url"`
	BodyLength int                 `json:"body_length"`
}

// Transport is an http.RoundTripper that sends requests through the
// node's egress gateway: http.Client{Transport: leash.Transport{}}.
type Transport struct{}

// RoundTrip implements http.RoundTripper.
func (Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	enc, err := json.Marshal(fetchRequest{Method: req.Method, URL: req.URL.String(), Headers: req.Header, BodyBase64: body})
	if err != nil {
		return nil, err
	}
	h := hostFetch(enc)
	if h < 0 {
		return nil, lastError(h)
	}
	defer hostResponseClose(h)
	var meta fetchMeta
	if err := json.Unmarshal(readAll(func(b []byte) int32 { return hostResponseMeta(h, b) }), &meta); err != nil {
		return nil, fmt.Errorf("leash fetch: response metadata: %w", err)
	}
	buf := make([]byte, 0, meta.BodyLength)
	chunk := make([]byte, 32<<10)
	for {
		n := hostResponseRead(h, chunk)
		if n < 0 {
			return nil, &FetchError{Code: n, Message: "reading the response failed"}
		}
		if n == 0 {
			break
		}
		buf = append(buf, chunk[:n]...)
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", meta.Status, http.StatusText(meta.Status)),
		StatusCode:    meta.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header(meta.Headers),
		Body:          io.NopCloser(bytes.NewReader(buf)),
		ContentLength: int64(len(buf)),
		Request:       req,
	}, nil
}

// readAll calls a host function that copies into b or returns -(needed).
func readAll(call func(b []byte) int32) []byte {
	b := make([]byte, 4096)
	for {
		n := call(b)
		if n >= 0 {
			return b[:n]
		}
		if -n <= int32(len(b)) {
			return nil
		}
		b = make([]byte, -n)
	}
}

func lastError(code int32) error {
	var e struct {
		Clause  string `json:"clause"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(readAll(hostLastError), &e); err != nil {
		return errors.Join(&FetchError{Code: code, Message: "unknown"}, err)
	}
	return &FetchError{Code: code, Clause: e.Clause, Message: e.Message}
}
