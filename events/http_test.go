package events

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

func newTestServer(t *testing.T, cfg HandlerConfig) (*Bus, *Store, *httptest.Server) {
	t.Helper()
	b, st := storeBus(t, openMemDB(t), time.Now, StoreConfig{})
	srv := httptest.NewServer(NewHandler(st, b, cfg))
	t.Cleanup(srv.Close)
	return b, st, srv
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

func TestListEndpoint(t *testing.T) {
	b, _, srv := newTestServer(t, HandlerConfig{})
	for i := 0; i < 5; i++ {
		b.Emit(WithScope(context.Background(), Scope{Tenant: "demo", Task: "t1"}), New(ToolCallBlocked{Clause: "profile.port"}))
		b.Emit(WithScope(context.Background(), Scope{Tenant: "acme"}), New(TaskEnqueued{}))
	}
	flush(t, b)
	var page ListResponse
	if code := getJSON(t, srv.URL+"/v1/events?tenant=demo&type=tool_call_blocked&limit=3", &page); code != 200 {
		t.Fatalf("status %d", code)
	}
	if len(page.Events) != 3 || page.NextCursor == "" {
		t.Fatalf("%+v", page)
	}
	var page2 ListResponse
	getJSON(t, srv.URL+"/v1/events?tenant=demo&type=tool_call_blocked&limit=3&cursor="+page.NextCursor, &page2)
	if len(page2.Events) != 2 || page2.NextCursor != "" {
		t.Fatalf("%+v", page2)
	}
	// An empty result is an empty array, not null.
	resp, err := http.Get(srv.URL + "/v1/events?tenant=nobody")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if string(raw["events"]) != "[]" || string(raw["next_cursor"]) != `""` {
		t.Errorf("%s", raw)
	}
}

func TestListBadParameters(t *testing.T) {
	_, _, srv := newTestServer(t, HandlerConfig{})
	for name, q := range map[string]string{
		"unknown parameter": "tenat=demo",
		"repeated":          "tenant=a&tenant=b",
		"unknown type":      "type=tool_call_blocked,nope",
		"bad since":         "since=yesterday",
		"until before":      "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
		"limit zero":        "limit=0",
		"limit too big":     "limit=1001",
		"limit not number":  "limit=ten",
		"bad trace":         "trace=xyz",
		"zero trace":        "trace=00000000000000000000000000000000",
		"bad cursor":        "cursor=AAAA",
		"bad order":         "order=sideways",
		"control chars":     "tenant=a%00b",
		"long tenant":       "tenant=" + strings.Repeat("x", 300),
	} {
		t.Run(name, func(t *testing.T) {
			var body api.ErrorBody
			if code := getJSON(t, srv.URL+"/v1/events?"+q, &body); code != 400 {
				t.Errorf("status %d", code)
			}
			if body.Error == nil || body.Error.Code != api.CodeBadRequest || body.Error.Message == "" {
				t.Errorf("body %+v", body.Error)
			}
		})
	}
	// Method and path errors have the same shape.
	resp, _ := http.Post(srv.URL+"/v1/events", "application/json", nil)
	var body api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 405 || body.Error.Code != api.CodeMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("%d %+v", resp.StatusCode, body.Error)
	}
}

// sseReader reads server-sent events.
type sseReader struct {
	sc *bufio.Scanner
}

type sseMsg struct {
	id, event, data string
	comments        []string
}

func (r *sseReader) next() (sseMsg, bool) {
	var m sseMsg
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "":
			if m.id != "" || m.event != "" || m.data != "" || len(m.comments) > 0 {
				return m, true
			}
		case strings.HasPrefix(line, ":"):
			m.comments = append(m.comments, strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "id: "):
			m.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			m.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			m.data = line[6:]
		}
	}
	return m, false
}

func openStream(t *testing.T, ctx context.Context, u string, header http.Header) (*sseReader, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := &sseReader{sc: bufio.NewScanner(resp.Body)}
	r.sc.Buffer(make([]byte, 1<<20), 1<<20)
	if m, ok := r.next(); !ok || len(m.comments) == 0 {
		t.Fatalf("no greeting: %+v", m)
	}
	return r, resp
}

func TestStreamLiveWithKeepAlive(t *testing.T) {
	b, _, srv := newTestServer(t, HandlerConfig{KeepAlive: 30 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, _ := openStream(t, ctx, srv.URL+"/v1/events/stream?tenant=demo&type=execution_terminated", nil)

	// A keep-alive comment arrives while idle.
	m, ok := r.next()
	if !ok || len(m.comments) == 0 || m.comments[0] != "keep-alive" {
		t.Fatalf("%+v", m)
	}
	b.Emit(WithScope(ctx, Scope{Tenant: "acme"}), New(ExecutionTerminated{Reason: "cpu"}))
	b.Emit(WithScope(ctx, Scope{Tenant: "demo"}), New(ExecutionTerminated{Reason: "wall"}))
	for {
		m, ok = r.next()
		if !ok {
			t.Fatal("stream ended")
		}
		if m.event != "" {
			break
		}
	}
	var e Event
	if err := json.Unmarshal([]byte(m.data), &e); err != nil {
		t.Fatal(err)
	}
	var d ExecutionTerminated
	e.DecodeData(&d)
	if m.event != "execution_terminated" || m.id != e.ID || e.Tenant != "demo" || d.Reason != "wall" {
		t.Errorf("%+v %+v", m, e)
	}
}

func TestStreamReplaysThenFollows(t *testing.T) {
	b, _, srv := newTestServer(t, HandlerConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	sink := &memSink{}
	b.AddSink("mem", sink, SinkOptions{})
	for i := 0; i < 5; i++ {
		b.Emit(ctx, New(NodeJoined{NodeID: "n"}))
	}
	flush(t, b)
	for _, e := range sink.events() {
		ids = append(ids, e.ID)
	}
	// Resume after the second event with Last-Event-ID: three replayed,
	// then a live one, each once.
	r, _ := openStream(t, ctx, srv.URL+"/v1/events/stream?limit=4", http.Header{"Last-Event-ID": {ids[1]}})
	var got []string
	for i := 0; i < 3; i++ {
		m, ok := r.next()
		if !ok {
			t.Fatal("ended")
		}
		got = append(got, m.id)
	}
	b.Emit(ctx, New(NodeJoined{NodeID: "live"}))
	m, ok := r.next()
	if !ok || !strings.Contains(m.data, `"live"`) {
		t.Fatalf("%+v", m)
	}
	if strings.Join(got, ",") != strings.Join(ids[2:], ",") {
		t.Errorf("replayed %v, want %v", got, ids[2:])
	}
	// limit=4 ends the stream.
	if m, ok := r.next(); ok {
		t.Errorf("after limit: %+v", m)
	}

	// since replays from a time.
	q := url.Values{"since": {"1h"}, "limit": {"5"}}
	r, _ = openStream(t, ctx, srv.URL+"/v1/events/stream?"+q.Encode(), nil)
	for i := 0; i < 5; i++ {
		if _, ok := r.next(); !ok {
			t.Fatalf("replay ended after %d", i)
		}
	}
}

func TestStreamLaggedClient(t *testing.T) {
	b := NewBus(BusConfig{SubscriberBuffer: 4})
	defer b.Close(context.Background())
	st, _ := OpenStore(openMemDB(t), StoreConfig{})
	defer st.Close()
	h := NewHandler(st, b, HandlerConfig{})
	// A writer that never drains makes the handler fall behind: emit
	// while the handler is blocked writing.
	block := make(chan struct{})
	w := &blockingWriter{header: http.Header{}, block: block}
	req := httptest.NewRequest("GET", "/v1/events/stream", nil)
	done := make(chan error)
	go func() { done <- h.Stream(w, req) }()
	// Wait until subscribed and blocked in its first write.
	deadline := time.Now().Add(5 * time.Second)
	for len(*b.subs.Load()) == 0 || !w.blocked() {
		if time.Now().After(deadline) {
			t.Fatal("not subscribed")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 100; i++ {
		b.Emit(context.Background(), New(TaskEnqueued{}))
	}
	close(block)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end")
	}
	if !strings.Contains(w.String(), "event: lagged") {
		t.Errorf("no lagged message in %q", w.String())
	}
}

// blockingWriter is a ResponseWriter whose writes wait for block.
type blockingWriter struct {
	mu      sync.Mutex
	buf     strings.Builder
	header  http.Header
	block   chan struct{}
	waiting bool
}

func (w *blockingWriter) Header() http.Header { return w.header }
func (w *blockingWriter) WriteHeader(int)     {}
func (w *blockingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.waiting = true
	w.mu.Unlock()
	<-w.block
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *blockingWriter) blocked() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting
}

func (w *blockingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestStreamLimitsConcurrentStreams(t *testing.T) {
	_, _, srv := newTestServer(t, HandlerConfig{MaxStreams: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	openStream(t, ctx, srv.URL+"/v1/events/stream", nil)
	resp, err := http.Get(srv.URL + "/v1/events/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 503 || body.Error.Code != api.CodeUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Errorf("%d %+v %q", resp.StatusCode, body.Error, resp.Header.Get("Retry-After"))
	}
}

func TestHandlerCloseEndsStreams(t *testing.T) {
	b, st := storeBus(t, openMemDB(t), time.Now, StoreConfig{})
	h := NewHandler(st, b, HandlerConfig{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, _ := openStream(t, ctx, srv.URL+"/v1/events/stream", nil)
	h.Close()
	if m, ok := r.next(); ok {
		t.Errorf("stream goes on after Close: %+v", m)
	}
	var body api.ErrorBody
	if code := getJSON(t, srv.URL+"/v1/events/stream", &body); code != 503 || body.Error.Code != api.CodeShuttingDown {
		t.Errorf("%d %+v", code, body.Error)
	}
}
