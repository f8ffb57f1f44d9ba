package events

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestJSONLinesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s, err := OpenJSONLinesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b := testBus(t, nil)
	b.AddSink("file", s, SinkOptions{})
	for i := 0; i < 3; i++ {
		b.Emit(WithScope(context.Background(), Scope{Tenant: "demo"}), New(NodeJoined{NodeID: "n", Voter: true}))
	}
	flush(t, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Type != TypeNodeJoined || e.Tenant != "demo" {
			t.Errorf("line %q: %v", sc.Text(), err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d lines", n)
	}
}

func TestHTTPSinkRetriesThenDelivers(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var got []Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Header.Get("Content-Type") != BatchContentType || r.Header.Get("Authorization") != "Bearer s3cret" {
			t.Errorf("headers %v", r.Header)
		}
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var batch []Event
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, batch...)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	s, err := NewHTTPSink(HTTPSinkConfig{URL: srv.URL, Header: http.Header{"Authorization": {"Bearer s3cret"}}, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b := testBus(t, nil)
	b.AddSink("http", s, SinkOptions{MaxDelay: time.Millisecond})
	for i := 0; i < 5; i++ {
		b.Emit(context.Background(), New(LeaderChanged{Leader: "n1", Term: uint64(i)}))
	}
	flush(t, b)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 5 {
		t.Errorf("delivered %d after %d calls", len(got), calls.Load())
	}
	if st := b.Stats()[0]; st.Dropped != 0 || st.Written != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestHTTPSinkGivesUp(t *testing.T) {
	for name, tc := range map[string]struct {
		status    int
		wantCalls int32
	}{
		"bad request is not retried": {http.StatusBadRequest, 1},
		"server error is retried":    {http.StatusInternalServerError, 3},
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			s, _ := NewHTTPSink(HTTPSinkConfig{URL: srv.URL, Retries: 2, MinBackoff: time.Millisecond})
			b := testBus(t, nil)
			b.AddSink("http", s, SinkOptions{MaxDelay: time.Millisecond})
			b.Emit(context.Background(), New(TaskDead{}))
			flush(t, b)
			if calls.Load() != tc.wantCalls {
				t.Errorf("%d calls", calls.Load())
			}
			if st := b.Stats()[0]; st.Dropped != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestDeadEndpointNeverBlocks: an endpoint that accepts connections and
// never answers holds one batch; everything past the bounded queue is
// dropped and counted, and emitters do not notice.
func TestDeadEndpointNeverBlocks(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	s, _ := NewHTTPSink(HTTPSinkConfig{URL: srv.URL, Client: &http.Client{Timeout: time.Minute}})
	b := NewBus(BusConfig{})
	b.AddSink("http", s, SinkOptions{Queue: 100, MaxBatch: 10, MaxDelay: time.Millisecond})
	start := time.Now()
	for i := 0; i < 20_000; i++ {
		b.Emit(context.Background(), New(ToolCallAttempted{Tool: "fetch"}))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("emits took %v", d)
	}
	if st := b.Stats()[0]; st.Dropped < 20_000-100-10 {
		t.Errorf("stats %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := b.Close(ctx); err == nil {
		t.Error("Close with a hung endpoint returned nil")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if st := b.Stats()[0]; st.Dropped+st.Written != 20_000 {
		t.Errorf("after close: %+v", st)
	}
}

func TestHTTPSinkConfig(t *testing.T) {
	for _, u := range []string{"", "ftp://x/", "http://", "::"} {
		if _, err := NewHTTPSink(HTTPSinkConfig{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

// TestHTTPSinkRetryAfter: a Retry-After from the endpoint sets the wait,
// capped at MaxBackoff (here far below the second it asks for); the final
// error of a batch that never lands names the endpoint's status.
func TestHTTPSinkRetryAfter(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var at []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	s, _ := NewHTTPSink(HTTPSinkConfig{URL: srv.URL, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	rec := &Record{JSON: []byte(`{}`)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WriteEvents(ctx, []*Record{rec}); err != nil {
		t.Fatalf("WriteEvents: %v (the 30 s Retry-After was not capped at MaxBackoff)", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d calls, want 2", calls.Load())
	}

	always := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer always.Close()
	s, _ = NewHTTPSink(HTTPSinkConfig{URL: always.URL, Retries: 1, MaxBackoff: time.Millisecond})
	err := s.WriteEvents(ctx, []*Record{rec})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("final error %v, want the endpoint's 503", err)
	}
}
