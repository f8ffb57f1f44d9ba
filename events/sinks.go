package events

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// JSONLines writes each event as one line of JSON to a writer (stdout or
// a file), flushing after every batch.
type JSONLines struct {
	mu sync.Mutex
	w  *bufio.Writer
	c  io.Closer
}

var _ Sink = (*JSONLines)(nil)

// NewJSONLines writes to w (e.g. os.Stdout); Close does not close w.
func NewJSONLines(w io.Writer) *JSONLines {
	return &JSONLines{w: bufio.NewWriterSize(w, 64<<10)}
}

// OpenJSONLinesFile appends to the file at path (created with mode 0600).
func OpenJSONLinesFile(path string) (*JSONLines, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	s := NewJSONLines(f)
	s.c = f
	return s, nil
}

// SinkOptions: batches of up to 256 lines, written within 50ms.
func (s *JSONLines) SinkOptions() SinkOptions {
	return SinkOptions{Queue: 8192, MaxBatch: 256, MaxDelay: 50 * time.Millisecond}
}

// WriteEvents writes one line per record.
func (s *JSONLines) WriteEvents(_ context.Context, batch []*Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range batch {
		s.w.Write(r.JSON)
		s.w.WriteByte('\n')
	}
	return s.w.Flush()
}

// Close flushes and closes the file it opened.
func (s *JSONLines) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.w.Flush()
	if s.c != nil {
		err = errors.Join(err, s.c.Close())
	}
	return err
}

// BatchContentType is the CloudEvents batched JSON media type the HTTP
// sink posts.
const BatchContentType = "application/cloudevents-batch+json"

// HTTPSinkConfig configures an HTTPSink.
type HTTPSinkConfig struct {
	// URL receives POSTs of JSON arrays of events (http or https).
	URL string
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// Client is the HTTP client (default: one with a 10s timeout).
	Client *http.Client
	// Retries after the first attempt (default 4; negative: none).
	Retries int
	// MinBackoff and MaxBackoff bound the wait between attempts (default
	// 250ms and 10s); each wait doubles, with jitter, and honours a
	// Retry-After up to MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
}

// HTTPSink posts batches of events to an endpoint, in the CloudEvents
// batched JSON format. A batch that still fails after the retries is
// dropped (and counted by the bus); a 4xx other than 408 and 429 is not
// retried.
type HTTPSink struct {
	cfg  HTTPSinkConfig
	u    string
	name string // the URL without credentials, for errors
}

var _ Sink = (*HTTPSink)(nil)

// NewHTTPSink checks cfg and builds the sink.
func NewHTTPSink(cfg HTTPSinkConfig) (*HTTPSink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("event sink URL %q: want an http or https URL", cfg.URL)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Retries == 0 {
		cfg.Retries = 4
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	return &HTTPSink{cfg: cfg, u: u.String(), name: u.Redacted()}, nil
}

// SinkOptions: up to 500 events per POST, sent within a second, and a
// queue of 10,000 events while the endpoint is slow or down.
func (s *HTTPSink) SinkOptions() SinkOptions {
	return SinkOptions{Queue: 10_000, MaxBatch: 500, MaxDelay: time.Second}
}

// WriteEvents posts the batch, retrying with backoff until it succeeds,
// the retries are spent, or ctx ends.
func (s *HTTPSink) WriteEvents(ctx context.Context, batch []*Record) error {
	var body bytes.Buffer
	body.WriteByte('[')
	for i, r := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(r.JSON)
	}
	body.WriteByte(']')
	tries := uint(1)
	if s.cfg.Retries > 0 {
		tries += uint(s.cfg.Retries)
	}
	attempts := 0
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		wait, err := s.post(ctx, body.Bytes())
		last = err
		var perm permanentError
		switch {
		case err == nil:
			return struct{}{}, nil
		case errors.As(err, &perm):
			return struct{}{}, backoff.Permanent(err)
		case wait > 0:
			return struct{}{}, retryAfter{err, &backoff.RetryAfterError{Duration: min(wait, s.cfg.MaxBackoff)}}
		}
		return struct{}{}, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval:     s.cfg.MinBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         s.cfg.MaxBackoff,
	}), backoff.WithMaxTries(tries), backoff.WithMaxElapsedTime(0))
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (after %d attempts: %v)", ctx.Err(), attempts, last)
	}
	var ra retryAfter
	if errors.As(err, &ra) {
		return ra.error
	}
	return err
}

// retryAfter is a failed attempt whose answer said when to try again.
type retryAfter struct {
	error
	after *backoff.RetryAfterError
}

func (r retryAfter) Unwrap() []error { return []error{r.error, r.after} }

type permanentError struct{ error }

// post makes one attempt; wait is the server's Retry-After, if any.
func (s *HTTPSink) post(ctx context.Context, body []byte) (wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.u, bytes.NewReader(body))
	if err != nil {
		return 0, permanentError{err}
	}
	for k, v := range s.cfg.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", BatchContentType)
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			wait = time.Duration(secs) * time.Second
		}
		return wait, fmt.Errorf("event sink %s: %s", s.name, resp.Status)
	default:
		return 0, permanentError{fmt.Errorf("event sink %s: %s", s.name, resp.Status)}
	}
}
