package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/fetch"
	"github.com/leash-dev/leash/policy"
)

// echo answers with what it received.
func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-URI", r.RequestURI)
		w.Header().Set("X-Body", string(body))
		for _, h := range []string{"Authorization", "Cookie", "Traceparent", "X-Foo", "Keep-Alive", "X-Custom", "Content-Type"} {
			w.Header().Set("X-Got-"+h, strings.Join(r.Header.Values(h), ","))
		}
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		io.WriteString(w, "hello from "+r.Host)
	})
}

// TestFetchEndToEnd fetches through the real gateway: fake resolver,
// test dialer to a loopback server, headers cleaned, traceparent added,
// usage metered, one decision with every field, one canonical log line.
func TestFetchEndToEnd(t *testing.T) {
	e := newEnv(t, echo())
	e.host("api.example.com", pub1)
	c := e.client(allow("api.example.com"), 10)
	resp, err := c.Fetch(context.Background(), &fetch.Request{
		Method: "post",
		URL:    "http://API.example.com./v1/items?q=1#frag",
		Headers: http.Header{
			"Authorization":  {"Bearer secret"},
			"Connection":     {"X-Foo"},
			"X-Foo":          {"smuggled"},
			"Keep-Alive":     {"timeout=5"},
			"Traceparent":    {"00-11111111111111111111111111111111-2222222222222222-01"},
			"Content-Length": {"999"},
			"X-Custom":       {"kept"},
		},
		Body: []byte("payload"),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Headers
	checks := map[string]string{
		"X-Method":            "POST",
		"X-Host":              "api.example.com",
		"X-Uri":               "/v1/items?q=1",
		"X-Body":              "payload",
		"X-Got-Authorization": "Bearer secret",
		"X-Got-Traceparent":   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Got-X-Foo":         "",
		"X-Got-Keep-Alive":    "",
		"X-Got-X-Custom":      "kept",
		"X-Secret":            "", // named by the response's Connection: stripped
		"Connection":          "",
	}
	for k, want := range checks {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.Status != 200 || string(resp.Body) != "hello from api.example.com" || resp.URL != "http://api.example.com/v1/items?q=1" {
		t.Errorf("response %d %q %q", resp.Status, resp.Body, resp.URL)
	}
	st := c.Stats()
	if st.Subrequests != 1 || st.BytesOut != 7 || st.BytesIn != int64(len(resp.Body)) || st.Blocked != 0 || !slices.Equal(st.Destinations, []string{"api.example.com:80"}) {
		t.Errorf("stats %+v", st)
	}
	if got := e.dial.calls(); !slices.Equal(got, []string{"93.184.216.34:80"}) {
		t.Errorf("dialled %q", got)
	}
	d := e.rec.last(t)
	if d.Outcome != OutcomeAllow || d.Clause != "" || d.Mode != ModeFetch || d.Tenant != "acme" || d.LeaseID != "lease-1" ||
		d.TaskID != "task-1" || d.Profile != "test-profile" || d.Method != "POST" || d.URL != "http://api.example.com/v1/items" ||
		d.Host != "api.example.com" || d.Port != 80 || d.Destination != "api.example.com:80" || d.Rule != "api.example.com" ||
		d.Address != "93.184.216.34" || d.Status != 200 || d.BytesOut != 7 || d.BytesIn != int64(len(resp.Body)) ||
		d.Traceparent == "" {
		t.Errorf("decision %+v", d)
	}
	lines := e.rec.lines(t)
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1", len(lines))
	}
	for _, k := range LogKeys {
		if _, ok := lines[0][k]; !ok {
			t.Errorf("log line lacks %q: %v", k, lines[0])
		}
	}
	if lines[0]["msg"] != logMsg || lines[0]["outcome"] != "allow" || lines[0]["url"] != "http://api.example.com/v1/items" {
		t.Errorf("log line %v", lines[0])
	}
	if strings.Contains(e.rec.logs.String(), "q=1") {
		t.Error("the log line carries the query")
	}
	if st.BytesOut != 7 || st.Subrequests != 1 || len(st.Destinations) != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestGatewayRefusesLoopback: the test dialer could reach loopback, but
// the gateway never asks it to, whatever form the address takes.
func TestGatewayRefusesLoopback(t *testing.T) {
	e := newEnv(t, echo())
	port := e.upstream.Listener.Addr().(*net.TCPAddr).Port
	e.host("localhost", netip.MustParseAddr("127.0.0.1"))
	e.host("local6.example.com", netip.MustParseAddr("::1"))
	e.host("metadata.example.com", netip.MustParseAddr("169.254.169.254"))
	e.host("mapped.example.com", netip.MustParseAddr("::ffff:127.0.0.1"))
	e.host("nat64.example.com", netip.MustParseAddr("64:ff9b::7f00:1"))
	e.host("sixtofour.example.com", netip.MustParseAddr("2002:7f00:1::1"))
	e.host("teredo.example.com", netip.MustParseAddr("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
	e.host("cgnat.example.com", netip.MustParseAddr("100.64.0.1"))
	e.host("ula.example.com", netip.MustParseAddr("fd00:ec2::254"))
	e.host("zero.example.com", netip.MustParseAddr("0.0.0.0"))
	hosts := []string{"localhost", "local6.example.com", "metadata.example.com", "mapped.example.com", "nat64.example.com",
		"sixtofour.example.com", "teredo.example.com", "cgnat.example.com", "ula.example.com", "zero.example.com",
		"127.0.0.1", "::1", "169.254.169.254", "::ffff:127.0.0.1", "10.0.0.1", "0.0.0.0"}
	var eg policy.Egress
	for _, h := range hosts {
		eg.Allow = append(eg.Allow, policy.AllowRule{Host: h, Ports: []int{80, port}})
	}
	c := e.client(eg, 100)
	for _, u := range []string{
		"http://localhost/", fmt.Sprintf("http://localhost:%d/", port), "http://local6.example.com/",
		"http://metadata.example.com/latest/meta-data/", "http://mapped.example.com/", "http://nat64.example.com/",
		"http://sixtofour.example.com/", "http://teredo.example.com/", "http://cgnat.example.com/", "http://ula.example.com/",
		"http://zero.example.com/",
		fmt.Sprintf("http://127.0.0.1:%d/", port), "http://[::1]/", "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/",
		"http://10.0.0.1/", "http://0.0.0.0/",
	} {
		t.Run(u, func(t *testing.T) {
			_, err := c.Fetch(context.Background(), get(u))
			wantClause(t, err, ClauseAddressPrivate)
			d := e.rec.last(t)
			if d.Clause != ClauseAddressPrivate || d.Address == "" || d.AddressRange == "" || d.Outcome != OutcomeBlock {
				t.Errorf("decision %+v", d)
			}
		})
	}
	if got := e.dial.calls(); len(got) != 0 {
		t.Errorf("dialled %q", got)
	}
	if st := c.Stats(); st.Subrequests != 0 || st.Blocked != 17 || len(st.Destinations) != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestDNSRebinding: an answer that changes between lookups never leads to
// a private dial; each hop resolves once and dials what it checked, even
// with a pooled connection to the earlier, public address.
func TestDNSRebinding(t *testing.T) {
	e := newEnv(t, echo())
	e.res.answer = func(host string, n int) ([]netip.Addr, error) {
		switch {
		case host == "mixed.example.com":
			return []netip.Addr{pub1, netip.MustParseAddr("10.0.0.7")}, nil
		case n%2 == 1:
			return []netip.Addr{pub1}, nil
		default:
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
	}
	c := e.client(allow("rebind.example.com", "mixed.example.com"), 100)
	for i := range 6 {
		_, err := c.Fetch(context.Background(), get("http://rebind.example.com/"))
		if i%2 == 0 {
			if err != nil {
				t.Fatalf("lookup %d (public): %v", i+1, err)
			}
		} else {
			wantClause(t, err, ClauseAddressPrivate)
		}
	}
	if n := e.res.count("rebind.example.com"); n != 6 {
		t.Errorf("%d lookups for 6 fetches, want one each", n)
	}
	_, err := c.Fetch(context.Background(), get("http://mixed.example.com/"))
	wantClause(t, err, ClauseAddressPrivate)
	for _, a := range e.dial.calls() {
		if a != "93.184.216.34:80" {
			t.Errorf("dialled %s", a)
		}
	}
}

// TestChunkedResponseCut: a chunked (and a close-delimited) body past
// max_response_bytes is cut at the bound, whatever Content-Length says.
func TestChunkedResponseCut(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for range 20 {
				w.Write(make([]byte, 1000))
				w.(http.Flusher).Flush()
			}
		case "/close-delimited":
			conn, brw, _ := http.NewResponseController(w).Hijack()
			defer conn.Close()
			brw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
			brw.Write(make([]byte, 20000))
			brw.Flush()
		case "/overstated":
			w.Header().Set("Content-Length", "100000")
			w.Write(make([]byte, 10))
		case "/exact":
			w.Write(make([]byte, 4096))
		}
	}))
	e.host("api.example.com", pub1)
	eg := allow("api.example.com")
	eg.MaxResponseBytes = 4096
	for _, path := range []string{"/chunked", "/close-delimited"} {
		t.Run(path, func(t *testing.T) {
			c := e.client(eg, 10)
			_, err := c.Fetch(context.Background(), get("http://api.example.com"+path))
			wantClause(t, err, ClauseResponseSize)
			if st := c.Stats(); st.BytesIn != 4096 || st.Blocked != 1 {
				t.Errorf("stats %+v", st)
			}
			if d := e.rec.last(t); d.Clause != ClauseResponseSize || d.BytesIn != 4096 || d.Status != 200 {
				t.Errorf("decision %+v", d)
			}
		})
	}
	t.Run("content-length over the bound", func(t *testing.T) {
		c := e.client(eg, 10)
		_, err := c.Fetch(context.Background(), get("http://api.example.com/overstated"))
		wantClause(t, err, ClauseResponseSize)
		if st := c.Stats(); st.BytesIn != 0 {
			t.Errorf("read %d bytes of a refused body", st.BytesIn)
		}
	})
	t.Run("exactly the bound", func(t *testing.T) {
		c := e.client(eg, 10)
		resp := mustFetch(t, c, get("http://api.example.com/exact"))
		if len(resp.Body) != 4096 {
			t.Errorf("body %d bytes", len(resp.Body))
		}
	})
}

func TestRedirects(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]http.Header{}
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Host+r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		q := r.URL.Query()
		switch r.URL.Path {
		case "/go":
			code, _ := strconv.Atoi(q.Get("code"))
			if code == 0 {
				code = http.StatusFound
			}
			w.Header().Set("Location", q.Get("to"))
			w.WriteHeader(code)
			io.WriteString(w, "moved")
		case "/loop":
			n, _ := strconv.Atoi(q.Get("n"))
			w.Header().Set("Location", fmt.Sprintf("/loop?n=%d", n+1))
			w.WriteHeader(http.StatusFound)
		default:
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %s body=%q", r.Method, r.Host, r.URL.Path, body)
		}
	}))
	e.host("api.example.com", pub1)
	e.host("other.example.com", pub2)
	e.host("evil.example.net", pub2)
	e.host("private.example.com", netip.MustParseAddr("192.168.1.10"))
	eg := allow("api.example.com", "other.example.com", "private.example.com")
	three := 3
	eg.MaxRedirects = &three
	do := func(req *fetch.Request) (*fetch.Response, error) {
		return e.client(eg, 20).Fetch(context.Background(), req)
	}
	t.Run("same origin keeps credentials", func(t *testing.T) {
		resp, err := do(&fetch.Request{URL: "http://api.example.com/go?to=/final", Headers: http.Header{"Authorization": {"Bearer a"}, "Cookie": {"c=1"}}})
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != `GET api.example.com /final body=""` || resp.URL != "http://api.example.com/final" {
			t.Errorf("body %q url %q", resp.Body, resp.URL)
		}
		mu.Lock()
		h := seen["api.example.com/final"]
		mu.Unlock()
		if h.Get("Authorization") != "Bearer a" || h.Get("Cookie") != "c=1" {
			t.Errorf("same-origin hop lost credentials: %v", h)
		}
	})
	t.Run("cross origin drops credentials", func(t *testing.T) {
		resp, err := do(&fetch.Request{URL: "http://api.example.com/go?to=http://other.example.com/x", Headers: http.Header{"Authorization": {"Bearer a"}, "Cookie": {"c=1"}, "X-Custom": {"kept"}}})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(resp.Body), "GET other.example.com /x") {
			t.Errorf("body %q", resp.Body)
		}
		mu.Lock()
		h := seen["other.example.com/x"]
		mu.Unlock()
		if h.Get("Authorization") != "" || h.Get("Cookie") != "" || h.Get("X-Custom") != "kept" {
			t.Errorf("cross-origin hop headers: %v", h)
		}
	})
	t.Run("scheme or port change is another origin", func(t *testing.T) {
		_, err := do(&fetch.Request{URL: "http://api.example.com/go?to=http://api.example.com:8080/y", Headers: http.Header{"Authorization": {"Bearer a"}}})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		h := seen["api.example.com:8080/y"]
		mu.Unlock()
		if h.Get("Authorization") != "" {
			t.Errorf("credentials followed a port change: %v", h)
		}
	})
	t.Run("303 turns POST into GET without body", func(t *testing.T) {
		resp, err := do(&fetch.Request{Method: "POST", URL: "http://api.example.com/go?code=303&to=/after", Body: []byte("data"), Headers: http.Header{"Content-Type": {"text/plain"}}})
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != `GET api.example.com /after body=""` {
			t.Errorf("body %q", resp.Body)
		}
	})
	t.Run("307 keeps method and body", func(t *testing.T) {
		resp, err := do(&fetch.Request{Method: "POST", URL: "http://api.example.com/go?code=307&to=/after", Body: []byte("data")})
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != `POST api.example.com /after body="data"` {
			t.Errorf("body %q", resp.Body)
		}
	})
	refusals := map[string]string{
		"to a host not allowed":   "http://api.example.com/go?to=http://evil.example.net/",
		"to a port not allowed":   "http://api.example.com/go?to=http://api.example.com:9999/",
		"to another scheme":       "http://api.example.com/go?to=file:///etc/passwd",
		"to a private address":    "http://api.example.com/go?to=http://private.example.com/",
		"to a loopback literal":   "http://api.example.com/go?to=http://127.0.0.1/",
		"to a non-canonical IPv4": "http://api.example.com/go?to=http://0x7f.1/",
		"too many":                "http://api.example.com/loop",
	}
	clauses := map[string]string{
		"to a host not allowed":   ClauseDefaultDeny,
		"to a port not allowed":   ClausePort,
		"to another scheme":       ClauseScheme,
		"to a private address":    ClauseAddressPrivate,
		"to a loopback literal":   ClauseDefaultDeny,
		"to a non-canonical IPv4": ClauseURLInvalid,
		"too many":                ClauseRedirects,
	}
	for name, u := range refusals {
		t.Run(name, func(t *testing.T) {
			_, err := do(get(u))
			wantClause(t, err, clauses[name])
			if d := e.rec.last(t); d.Hop == 0 || d.Clause != clauses[name] {
				t.Errorf("decision %+v", d)
			}
		})
	}
	t.Run("each hop is a subrequest and a decision", func(t *testing.T) {
		c := e.client(eg, 2)
		_, err := c.Fetch(context.Background(), get("http://api.example.com/loop"))
		wantClause(t, err, ClauseSubrequests)
		if st := c.Stats(); st.Subrequests != 2 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("max_redirects 0 refuses the first", func(t *testing.T) {
		zero := 0
		eg0 := eg
		eg0.MaxRedirects = &zero
		c := e.client(eg0, 5)
		_, err := c.Fetch(context.Background(), get("http://api.example.com/go?to=/final"))
		wantClause(t, err, ClauseRedirects)
	})
}

func TestLimits(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Write(make([]byte, n))
	}))
	e.host("api.example.com", pub1)
	e.host("other.example.com", pub2)
	t.Run("subrequests", func(t *testing.T) {
		c := e.client(allow("api.example.com"), 2)
		mustFetch(t, c, get("http://api.example.com/"))
		mustFetch(t, c, get("http://api.example.com/"))
		_, err := c.Fetch(context.Background(), get("http://api.example.com/"))
		wantClause(t, err, ClauseSubrequests)
		if st := c.Stats(); st.Subrequests != 2 || st.Blocked != 1 {
			t.Errorf("stats %+v", st)
		}
		c0 := e.client(allow("api.example.com"), 0)
		_, err = c0.Fetch(context.Background(), get("http://api.example.com/"))
		wantClause(t, err, ClauseSubrequests)
	})
	t.Run("rate per tenant and destination", func(t *testing.T) {
		eg := policy.Egress{Allow: []policy.AllowRule{{Host: "*.example.com", Rate: &policy.Rate{PerSecond: 1, Burst: 2}}}}
		c := e.client(eg, 100)
		mustFetch(t, c, get("http://api.example.com/"))
		mustFetch(t, c, get("http://api.example.com/"))
		_, err := c.Fetch(context.Background(), get("http://api.example.com/"))
		wantClause(t, err, ClauseRate)
		// Another destination has its own bucket.
		mustFetch(t, c, get("http://other.example.com/"))
		// Another task of the same tenant shares the bucket.
		_, err = e.client(eg, 100).Fetch(context.Background(), get("http://api.example.com/"))
		wantClause(t, err, ClauseRate)
		// Another tenant does not.
		rules, _ := Compile("test-profile", &policy.Profile{Egress: eg})
		other := e.gw.ForTask(Scope{Tenant: "globex", Rules: rules, Subrequests: 10})
		if _, err := other.Fetch(context.Background(), get("http://api.example.com/")); err != nil {
			t.Errorf("other tenant: %v", err)
		}
		e.clock.Advance(time.Second)
		mustFetch(t, c, get("http://api.example.com/"))
	})
	t.Run("bytes per minute", func(t *testing.T) {
		eg := policy.Egress{Allow: []policy.AllowRule{{Host: "api.example.com", BytesPerMinute: 1000}}}
		rules, _ := Compile("bytes-profile", &policy.Profile{Egress: eg})
		c := e.gw.ForTask(Scope{Tenant: "bytes-tenant", Rules: rules, Subrequests: 100})
		mustFetch(t, c, get("http://api.example.com/?n=600"))
		_, err := c.Fetch(context.Background(), get("http://api.example.com/?n=600"))
		wantClause(t, err, ClauseBytes) // cut while streaming
		_, err = c.Fetch(context.Background(), get("http://api.example.com/?n=1"))
		wantClause(t, err, ClauseBytes) // the bucket is empty: refused up front
		e.clock.Advance(time.Minute)
		_, err = c.Fetch(context.Background(), &fetch.Request{Method: "POST", URL: "http://api.example.com/?n=0", Body: make([]byte, 2000)})
		wantClause(t, err, ClauseBytes) // a body over the bucket
		mustFetch(t, c, &fetch.Request{Method: "POST", URL: "http://api.example.com/?n=100", Body: make([]byte, 800)})
	})
	t.Run("response size", func(t *testing.T) {
		eg := allow("api.example.com")
		eg.MaxResponseBytes = 100
		c := e.client(eg, 10)
		mustFetch(t, c, get("http://api.example.com/?n=100"))
		_, err := c.Fetch(context.Background(), get("http://api.example.com/?n=101"))
		wantClause(t, err, ClauseResponseSize)
	})
}

func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow-headers":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/slow-body":
			w.Write([]byte("start"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	e.host("api.example.com", pub1)
	eg := allow("api.example.com")
	eg.Timeouts = policy.Timeouts{ConnectMs: 100, HeaderMs: 150, TotalMs: 400}
	t.Run("header", func(t *testing.T) {
		start := time.Now()
		_, err := e.client(eg, 5).Fetch(context.Background(), get("http://api.example.com/slow-headers"))
		wantClause(t, err, ClauseTimeout)
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("took %s", el)
		}
	})
	t.Run("total", func(t *testing.T) {
		_, err := e.client(eg, 5).Fetch(context.Background(), get("http://api.example.com/slow-body"))
		wantClause(t, err, ClauseTimeout)
		if d := e.rec.last(t); d.BytesIn != 5 || d.Clause != ClauseTimeout {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("task deadline", func(t *testing.T) {
		long := eg
		long.Timeouts = policy.Timeouts{HeaderMs: 60000, TotalMs: 60000}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := e.client(long, 5).Fetch(ctx, get("http://api.example.com/slow-headers"))
		wantClause(t, err, ClauseTimeout)
	})
	t.Run("connect", func(t *testing.T) {
		e.dial.mu.Lock()
		e.dial.hang = true
		e.dial.mu.Unlock()
		defer func() {
			e.dial.mu.Lock()
			e.dial.hang = false
			e.dial.mu.Unlock()
		}()
		e.host("new.example.com", pub2)
		_, err := e.client(allowWith(eg, "new.example.com"), 5).Fetch(context.Background(), get("http://new.example.com/"))
		wantClause(t, err, ClauseTimeout)
	})
	t.Run("resolve", func(t *testing.T) {
		e.res.mu.Lock()
		e.res.delay = time.Second
		e.res.mu.Unlock()
		defer func() {
			e.res.mu.Lock()
			e.res.delay = 0
			e.res.mu.Unlock()
		}()
		_, err := e.client(eg, 5).Fetch(context.Background(), get("http://api.example.com/"))
		wantClause(t, err, ClauseTimeout)
	})
}

func allowWith(eg policy.Egress, hosts ...string) policy.Egress {
	eg.Allow = append(slices.Clone(eg.Allow), allow(hosts...).Allow...)
	return eg
}

func TestRequestHeaders(t *testing.T) {
	e := newEnv(t, echo())
	e.host("api.example.com", pub1)
	c := e.client(allow("api.example.com"), 20)
	ok := []string{"api.example.com", "API.example.com", "api.example.com:80", "api.example.com.", "api.example.com.:80"}
	for _, h := range ok {
		if _, err := c.Fetch(context.Background(), &fetch.Request{URL: "http://api.example.com/", Headers: http.Header{"Host": {h}}}); err != nil {
			t.Errorf("Host %q: %v", h, err)
		}
	}
	for _, h := range []string{"evil.com", "api.example.com:8080", "api.example.com@evil.com", "127.0.0.1", "api.example.com/x", ""} {
		_, err := c.Fetch(context.Background(), &fetch.Request{URL: "http://api.example.com/", Headers: http.Header{"Host": {h}}})
		wantClause(t, err, ClauseRequestHost)
	}
	_, err := c.Fetch(context.Background(), &fetch.Request{URL: "http://api.example.com/", Headers: http.Header{"Host": {"api.example.com", "evil.com"}}})
	wantClause(t, err, ClauseRequestHost)
	for name, h := range map[string]http.Header{
		"CRLF in value": {"X-A": {"a\r\nX-Injected: 1"}},
		"NUL in value":  {"X-A": {"a\x00"}},
		"bad name":      {"X A": {"a"}},
		"colon in name": {"X:A": {"a"}},
		"huge":          {"X-A": {strings.Repeat("a", 70<<10)}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Fetch(context.Background(), &fetch.Request{URL: "http://api.example.com/", Headers: h})
			wantClause(t, err, ClauseRequestInvalid)
		})
	}
	_, err = c.Fetch(context.Background(), nil)
	wantClause(t, err, ClauseRequestInvalid)
}

func TestGlobalDeny(t *testing.T) {
	e := newEnv(t, echo())
	e.host("api.example.com", pub1)
	e.host("cdn.example.com", pub2)
	if err := e.deny.Replace([]string{"93.184.216.35/32", "blocked.example.com"}); err != nil {
		t.Fatal(err)
	}
	c := e.client(allow("api.example.com", "cdn.example.com", "blocked.example.com", "93.184.216.35"), 20)
	mustFetch(t, c, get("http://api.example.com/"))
	for _, u := range []string{"http://cdn.example.com/", "http://blocked.example.com/", "http://93.184.216.35/"} {
		_, err := c.Fetch(context.Background(), get(u))
		wantClause(t, err, ClauseGlobalDeny)
	}
	// A runtime block applies to a running task from its next request.
	if err := e.deny.Add("api.example.com"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Fetch(context.Background(), get("http://api.example.com/"))
	wantClause(t, err, ClauseGlobalDeny)
}

func TestNetworkFailure(t *testing.T) {
	e := newEnv(t, echo())
	e.host("api.example.com", pub1)
	c := e.client(allow("api.example.com", "nxdomain.example.com", "unrouted.example.com"), 20)
	_, err := c.Fetch(context.Background(), get("http://nxdomain.example.com/"))
	var fe *fetch.Error
	if !asFE(err, &fe) || fe.Clause != "" {
		t.Fatalf("nxdomain: %v", err)
	}
	if d := e.rec.last(t); d.Outcome != OutcomeError || d.Error == "" {
		t.Errorf("decision %+v", d)
	}
	// Two checked addresses: the first does not answer, the second does.
	e.host("unrouted.example.com", netip.MustParseAddr("93.184.216.77"), pub1)
	resp, err := c.Fetch(context.Background(), get("http://unrouted.example.com/"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 {
		t.Errorf("status %d", resp.Status)
	}
	if got := e.dial.calls(); !slices.Contains(got, "93.184.216.77:80") {
		t.Errorf("dialled %q", got)
	}
	if c.Stats().Blocked != 0 {
		t.Errorf("a network failure counted as blocked")
	}
}

func asFE(err error, fe **fetch.Error) bool {
	if err == nil {
		return false
	}
	v, ok := err.(*fetch.Error)
	*fe = v
	return ok
}

// TestHTTPS goes through TLS with the target's name as SNI.
func TestHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(echo())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	e := newEnv(t, nil, func(c *Config) { c.TLSConfig = &tls.Config{RootCAs: roots} })
	e.dial.route(netip.AddrPortFrom(pub1, 443), srv.Listener.Addr().String())
	e.host("example.com", pub1)
	e.host("api.example.net", pub1)
	c := e.client(policy.Egress{Allow: []policy.AllowRule{{Host: "example.com", Ports: []int{443}}, {Host: "api.example.net"}}}, 10)
	resp := mustFetch(t, c, get("https://example.com/secure"))
	if resp.Headers.Get("X-Host") != "example.com" {
		t.Errorf("host %q", resp.Headers.Get("X-Host"))
	}
	// The test certificate does not name api.example.net.
	_, err := c.Fetch(context.Background(), get("https://api.example.net/"))
	if err == nil || ClauseOf(err) != "" {
		t.Errorf("certificate for another name: %v", err)
	}
}

// TestConcurrentFetches hammers one client and one bucket table.
func TestConcurrentFetches(t *testing.T) {
	e := newEnv(t, echo())
	e.host("api.example.com", pub1, pub6)
	eg := policy.Egress{Allow: []policy.AllowRule{{Host: "api.example.com", Rate: &policy.Rate{PerSecond: 1000, Burst: 1000}, BytesPerMinute: 1 << 30}}}
	c := e.client(eg, 200)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				if _, err := c.Fetch(context.Background(), get("http://api.example.com/")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	_, err := c.Fetch(context.Background(), get("http://api.example.com/"))
	wantClause(t, err, ClauseSubrequests)
	if st := c.Stats(); st.Subrequests != 200 {
		t.Errorf("stats %+v", st)
	}
	if n := len(e.rec.all()); n != 201 {
		t.Errorf("%d decisions, want 201", n)
	}
}

func TestBucketsBounded(t *testing.T) {
	e := newEnv(t, echo(), func(c *Config) { c.MaxBuckets = 2 })
	for _, h := range []string{"a.example.com", "b.example.com", "c.example.com"} {
		e.host(h, pub1)
	}
	eg := policy.Egress{Allow: []policy.AllowRule{{Host: "*.example.com", Rate: &policy.Rate{PerSecond: 1, Burst: 1}}}}
	c := e.client(eg, 100)
	mustFetch(t, c, get("http://a.example.com/"))
	mustFetch(t, c, get("http://b.example.com/"))
	_, err := c.Fetch(context.Background(), get("http://c.example.com/"))
	wantClause(t, err, ClauseRate) // table full of non-full buckets
	e.clock.Advance(time.Second)   // a and b refill: they may be forgotten
	mustFetch(t, c, get("http://c.example.com/"))
	if n := e.gw.buckets.len(); n > 2 {
		t.Errorf("%d buckets held, bound 2", n)
	}
}

func TestTransportPoolBounded(t *testing.T) {
	e := newEnv(t, echo(), func(c *Config) { c.MaxTransports = 1 })
	e.host("a.example.com", pub1)
	e.host("b.example.com", pub2)
	c := e.client(allow("a.example.com", "b.example.com"), 20)
	for range 3 {
		mustFetch(t, c, get("http://a.example.com/"))
		mustFetch(t, c, get("http://b.example.com/"))
	}
	if n := e.gw.transports.cache.Len(); n != 1 {
		t.Errorf("%d transports, bound 1", n)
	}
}

// TestPathNeverNamesAHost: a path that starts with "//" stays a path on
// the wire, never an absolute-form target naming another host.
func TestPathNeverNamesAHost(t *testing.T) {
	e := newEnv(t, echo())
	e.host("api.example.com", pub1)
	c := e.client(allow("api.example.com"), 10)
	for u, want := range map[string]string{
		"http://api.example.com//evil.com/x":     "//evil.com/x",
		"http://api.example.com//evil.com/x?y=1": "//evil.com/x?y=1",
		"http://api.example.com/a%2Fb/%7C|^":     "/a%2Fb/%7C|^",
		"http://api.example.com/..//evil.com/":   "//evil.com/",
	} {
		resp := mustFetch(t, c, get(u))
		if got := resp.Headers.Get("X-Uri"); got != want && !(strings.Contains(want, "|") && strings.HasPrefix(got, "/a%2Fb/")) {
			t.Errorf("%s: server saw %q, want %q", u, got, want)
		}
		if got := resp.Headers.Get("X-Host"); got != "api.example.com" {
			t.Errorf("%s: server saw host %q", u, got)
		}
	}
}
