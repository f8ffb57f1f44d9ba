package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/policy"
)

// fakeAuth accepts the tokens it knows.
type fakeAuth map[string]Scope

func (a fakeAuth) Authenticate(_ context.Context, token string) (Scope, error) {
	s, ok := a[token]
	if !ok {
		return Scope{}, &api.Error{Status: 401, Code: api.CodeLeaseBadSignature, Message: "lease signature does not verify"}
	}
	return s, nil
}

type proxyEnv struct {
	*env
	proxy *Proxy
	srv   *httptest.Server
	tls   *httptest.Server
}

func newProxyEnv(t *testing.T, eg policy.Egress, subrequests int64) *proxyEnv {
	t.Helper()
	e := newEnv(t, echo())
	tlsSrv := httptest.NewUnstartedServer(echo())
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	e.dial.route(netip.AddrPortFrom(pub1, 443), tlsSrv.Listener.Addr().String())
	e.host("example.com", pub1)
	e.host("api.example.com", pub1)
	e.host("local.example.com", netip.MustParseAddr("127.0.0.1"))
	rules, err := Compile("proxy-profile", &policy.Profile{Egress: eg})
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(e.gw, fakeAuth{"good-lease": {Tenant: "acme", LeaseID: "lease-9", Rules: rules, Deny: e.deny, Subrequests: subrequests}})
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	return &proxyEnv{env: e, proxy: p, srv: srv, tls: tlsSrv}
}

func proxyEgress() policy.Egress {
	return policy.Egress{Allow: []policy.AllowRule{
		{Host: "example.com", Ports: []int{443, 80}},
		{Host: "api.example.com", Ports: []int{80}, Methods: []string{"GET"}},
		{Host: "local.example.com", Ports: []int{80}},
	}}
}

// client returns an http.Client that uses the proxy with the given
// Proxy-Authorization (none when empty).
func (pe *proxyEnv) client(auth string, basicUser *url.Userinfo) *http.Client {
	pu, _ := url.Parse(pe.srv.URL)
	pu.User = basicUser
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: pe.tls.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
	}
	if auth != "" {
		tr.ProxyConnectHeader = http.Header{"Proxy-Authorization": {auth}}
	}
	pe.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: &authTransport{tr: tr, auth: auth}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// authTransport adds Proxy-Authorization to absolute-form requests.
type authTransport struct {
	tr   *http.Transport
	auth string
}

func (a *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.auth != "" && r.URL.Scheme == "http" {
		r = r.Clone(r.Context())
		r.Header.Set("Proxy-Authorization", a.auth)
	}
	return a.tr.RoundTrip(r)
}

func readError(t *testing.T, resp *http.Response) api.Error {
	t.Helper()
	defer resp.Body.Close()
	var body api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == nil {
		t.Fatalf("error body: %v", err)
	}
	return *body.Error
}

func TestProxyAuth(t *testing.T) {
	pe := newProxyEnv(t, proxyEgress(), 10)
	for name, c := range map[string]*http.Client{
		"missing":      pe.client("", nil),
		"bad bearer":   pe.client("Bearer forged", nil),
		"wrong scheme": pe.client("Token good-lease", nil),
		"bad basic":    pe.client("", url.UserPassword("x", "forged")),
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := c.Get("http://example.com/")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusProxyAuthRequired {
				t.Fatalf("status %d, want 407", resp.StatusCode)
			}
			if got := resp.Header.Values("Proxy-Authenticate"); len(got) == 0 || !strings.HasPrefix(got[0], "Bearer") {
				t.Errorf("Proxy-Authenticate %q", got)
			}
			if resp.Header.Get("Leash-Egress-Clause") != ClauseProxyAuth {
				t.Errorf("clause header %q", resp.Header.Get("Leash-Egress-Clause"))
			}
			readError(t, resp)
			if d := pe.rec.last(t); d.Clause != ClauseProxyAuth || d.Mode != ModeProxy {
				t.Errorf("decision %+v", d)
			}
		})
	}
	t.Run("CONNECT without credentials", func(t *testing.T) {
		_, err := pe.client("", nil).Get("https://example.com/")
		if err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
			t.Fatalf("err %v", err)
		}
		if d := pe.rec.last(t); d.Clause != ClauseProxyAuth || d.Mode != ModeConnect {
			t.Errorf("decision %+v", d)
		}
	})
	if len(pe.dial.calls()) != 0 {
		t.Errorf("dialled %q without credentials", pe.dial.calls())
	}
}

func TestProxyHTTP(t *testing.T) {
	pe := newProxyEnv(t, proxyEgress(), 10)
	for name, c := range map[string]*http.Client{
		"bearer": pe.client("Bearer good-lease", nil),
		"basic":  pe.client("", url.UserPassword("lease", "good-lease")),
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://api.example.com/x?y=1", nil)
			req.Header.Set("Connection", "X-Foo")
			req.Header.Set("X-Foo", "smuggled")
			req.Header.Set("X-Custom", "kept")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "hello from api.example.com" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if resp.Header.Get("X-Got-X-Foo") != "" || resp.Header.Get("X-Got-X-Custom") != "kept" || resp.Header.Get("X-Uri") != "/x?y=1" {
				t.Errorf("headers %v", resp.Header)
			}
			if resp.Header.Get("X-Got-Proxy-Authorization") != "" {
				t.Error("Proxy-Authorization was forwarded")
			}
			if d := pe.rec.last(t); d.Outcome != OutcomeAllow || d.Mode != ModeProxy || d.LeaseID != "lease-9" || d.BytesIn != int64(len(body)) {
				t.Errorf("decision %+v", d)
			}
		})
	}
	c := pe.client("Bearer good-lease", nil)
	refusals := map[string]struct {
		method, url string
		status      int
		clause      string
	}{
		"default deny":    {"GET", "http://evil.example.net/", 403, ClauseDefaultDeny},
		"port":            {"GET", "http://api.example.com:8080/", 403, ClausePort},
		"method":          {"POST", "http://api.example.com/", 403, ClauseMethod},
		"loopback":        {"GET", "http://local.example.com/", 403, ClauseAddressPrivate},
		"loopback direct": {"GET", "http://127.0.0.1/", 403, ClauseDefaultDeny},
	}
	for name, tc := range refusals {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader("body"))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Leash-Egress-Clause") != tc.clause {
				t.Fatalf("status %d clause %q, want %d %q", resp.StatusCode, resp.Header.Get("Leash-Egress-Clause"), tc.status, tc.clause)
			}
			if e := readError(t, resp); e.Code != ErrorCode(tc.clause) {
				t.Errorf("code %q", e.Code)
			}
		})
	}
	t.Run("origin-form is not a proxy request", func(t *testing.T) {
		req, _ := http.NewRequest("GET", pe.srv.URL+"/x", nil)
		req.Header.Set("Proxy-Authorization", "Bearer good-lease")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 400 {
			t.Errorf("status %d", resp.StatusCode)
		}
		resp.Body.Close()
	})
	t.Run("redirects are passed back", func(t *testing.T) {
		// The echo server does not redirect; the absolute-form request's
		// 3xx handling is the client's. Here: a request for a path works.
		resp, err := c.Get("http://example.com/somewhere")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
	st, ok := pe.proxy.Stats("lease-9")
	if !ok || st.Subrequests == 0 || st.Blocked == 0 {
		t.Errorf("stats %+v %v", st, ok)
	}
}

func TestProxyConnect(t *testing.T) {
	pe := newProxyEnv(t, proxyEgress(), 10)
	c := pe.client("Bearer good-lease", nil)
	resp, err := c.Get("https://example.com/over-tls")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from example.com" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	c.Transport.(*authTransport).tr.CloseIdleConnections()
	waitFor(t, func() bool {
		ds := pe.rec.all()
		if len(ds) == 0 {
			return false
		}
		d := ds[len(ds)-1]
		return d.Mode == ModeConnect && d.Outcome == OutcomeAllow && d.BytesIn > 0 && d.BytesOut > 0
	})
	d := pe.rec.last(t)
	if d.Destination != "example.com:443" || d.Address != pub1.String() || d.Status != 200 {
		t.Errorf("decision %+v", d)
	}

	for name, tc := range map[string]struct {
		target string
		status int
		clause string
	}{
		"port not allowed":        {"example.com:8443", 403, ClausePort},
		"rule restricts methods":  {"api.example.com:80", 403, ClauseMethod},
		"not allowed":             {"evil.example.net:443", 403, ClauseDefaultDeny},
		"resolves to loopback":    {"local.example.com:80", 403, ClauseAddressPrivate},
		"no port":                 {"example.com", 400, ClauseURLInvalid},
		"userinfo":                {"user@example.com:443", 400, ClauseURLInvalid},
		"non-canonical ipv4":      {"0x7f.1:443", 400, ClauseURLInvalid},
		"bracketed name":          {"[example.com]:443", 400, ClauseURLInvalid},
		"loopback literal (deny)": {"127.0.0.1:443", 403, ClauseDefaultDeny},
	} {
		t.Run(name, func(t *testing.T) {
			status, hdr := rawConnect(t, pe.srv.Listener.Addr().String(), tc.target, "Bearer good-lease")
			if status == 400 && tc.status == 400 && hdr.Get("Leash-Egress-Clause") == "" {
				return // net/http refused the request target before the proxy saw it
			}
			if status != tc.status || hdr.Get("Leash-Egress-Clause") != tc.clause {
				t.Errorf("status %d clause %q, want %d %q", status, hdr.Get("Leash-Egress-Clause"), tc.status, tc.clause)
			}
		})
	}
	for _, a := range pe.dial.calls() {
		if !strings.HasPrefix(a, pub1.String()) {
			t.Errorf("dialled %s", a)
		}
	}
}

// rawConnect sends one CONNECT and returns the status and headers.
func rawConnect(t *testing.T, proxyAddr, target, auth string) (int, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auth)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header
}

// TestProxyConnectResponseCut tunnels TLS and cuts the tunnel at
// max_response_bytes, counted on the bytes from the target.
func TestProxyConnectResponseCut(t *testing.T) {
	eg := proxyEgress()
	eg.MaxResponseBytes = 6000
	pe := newProxyEnv(t, eg, 10)
	conn, err := net.Dial("tcp", pe.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Bearer good-lease\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	roots := pe.tls.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	tc := tls.Client(&bufferedConn{Conn: conn, r: br}, &tls.Config{ServerName: "example.com", RootCAs: roots})
	tbr := bufio.NewReader(tc)
	// The first request fits.
	fmt.Fprintf(tc, "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n")
	r1, err := http.ReadResponse(tbr, nil)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := io.ReadAll(r1.Body)
	if string(b1) != "hello from example.com" {
		t.Fatalf("body %q", b1)
	}
	// More requests run the tunnel past 6000 bytes from the target: cut.
	var cut bool
	for range 40 {
		fmt.Fprintf(tc, "GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n")
		r, err := http.ReadResponse(tbr, nil)
		if err != nil {
			cut = true
			break
		}
		if _, err := io.ReadAll(r.Body); err != nil {
			cut = true
			break
		}
	}
	if !cut {
		t.Fatal("tunnel not cut")
	}
	waitFor(t, func() bool { ds := pe.rec.all(); return len(ds) > 0 && ds[len(ds)-1].Clause == ClauseResponseSize })
	if d := pe.rec.last(t); d.BytesIn != 6000 || d.Mode != ModeConnect || d.SNI != "example.com" {
		t.Errorf("decision %+v", d)
	}
}

// bufferedConn reads through r, which holds what was read past the
// CONNECT response.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestProxySubrequestsPerLease(t *testing.T) {
	pe := newProxyEnv(t, proxyEgress(), 2)
	c := pe.client("Bearer good-lease", nil)
	for i := range 3 {
		resp, err := c.Get("http://example.com/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 200
		if i == 2 {
			want = 429
		}
		if resp.StatusCode != want {
			t.Errorf("request %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
}

func TestProxyCloseEndsTunnels(t *testing.T) {
	pe := newProxyEnv(t, proxyEgress(), 10)
	conn, err := net.Dial("tcp", pe.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\nProxy-Authorization: Bearer good-lease\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	pe.proxy.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("tunnel still open after Close: %v", err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestProxyToken(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc":                "abc",
		"bearer  abc ":              "abc",
		"Basic " + b64("lease:abc"): "abc",
		"Basic " + b64("abc"):       "abc",
		"Basic " + b64("abc:"):      "abc",
		"Basic !!":                  "",
		"Bearer":                    "",
		"Digest x":                  "",
		"":                          "",
	} {
		got, ok := proxyToken(h)
		if got != want || ok != (want != "") {
			t.Errorf("proxyToken(%q) = %q %v, want %q", h, got, ok, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestParseConnectTarget(t *testing.T) {
	for a, want := range map[string]string{
		"example.com:443":            "example.com:443",
		"EXAMPLE.com.:443":           "example.com:443",
		"[2606:2800:220:1::1]:8443":  "[2606:2800:220:1::1]:8443",
		"93.184.216.34:443":          "93.184.216.34:443",
		"example.com":                "",
		"[2606:2800:220:1::1]":       "",
		"user@example.com:443":       "",
		"[example.com]:443":          "",
		"example.com:443/x":          "",
		"0x7f.1:443":                 "",
		"example.com:0443":           "",
		"example.com:":               "",
		"":                           "",
		"example.com\\@evil.com:443": "",
	} {
		tg, err := parseConnectTarget(a)
		got := ""
		if err == nil {
			got = tg.HostPort()
		} else if ClauseOf(err) != ClauseURLInvalid {
			t.Errorf("%q: clause %q", a, ClauseOf(err))
		}
		if got != want {
			t.Errorf("parseConnectTarget(%q) = %q (%v), want %q", a, got, err, want)
		}
	}
}

func TestProxyStreamsBodies(t *testing.T) {
	eg := policy.Egress{Allow: []policy.AllowRule{{Host: "example.com", Ports: []int{80}, BytesPerMinute: 4000}}}
	eg.MaxResponseBytes = 2000
	pe := newProxyEnv(t, eg, 20)
	pe.upstream.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/big":
			for range 10 {
				w.Write(make([]byte, 500))
				w.(http.Flusher).Flush()
			}
		default:
			fmt.Fprintf(w, "got %d", n)
		}
	})
	c := pe.client("Bearer good-lease", nil)
	// A chunked request body streams through and is metered.
	pr, pw := io.Pipe()
	go func() {
		for range 3 {
			pw.Write(make([]byte, 100))
		}
		pw.Close()
	}()
	resp, err := c.Post("http://example.com/upload", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "got 300" {
		t.Fatalf("body %q", body)
	}
	if d := pe.rec.last(t); d.BytesOut != 300 || d.Outcome != OutcomeAllow {
		t.Errorf("decision %+v", d)
	}
	// A response past max_response_bytes is cut: the client sees a broken
	// body, not a short one.
	resp, err = c.Get("http://example.com/big")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("cut response read without error")
	}
	waitFor(t, func() bool { ds := pe.rec.all(); return ds[len(ds)-1].Clause == ClauseResponseSize })
	// A request body past bytes_per_minute is refused with 429.
	resp, err = c.Post("http://example.com/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", 5000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Leash-Egress-Clause") != ClauseBytes {
		t.Errorf("status %d clause %q", resp.StatusCode, resp.Header.Get("Leash-Egress-Clause"))
	}
}

func TestProxyRateAndScopeChange(t *testing.T) {
	e := newEnv(t, echo())
	e.host("example.com", pub1)
	mk := func(burst int) *Rules {
		r, err := Compile("p", &policy.Profile{Egress: policy.Egress{Allow: []policy.AllowRule{{Host: "example.com", Rate: &policy.Rate{PerSecond: 1, Burst: burst}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	auth := fakeAuth{"v1": {Tenant: "acme", LeaseID: "L", Rules: mk(1), Subrequests: 10}, "v2": {Tenant: "acme", LeaseID: "L", Rules: mk(5), Subrequests: 10}}
	p := NewProxy(e.gw, auth)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	do := func(token string) *http.Response {
		pu, _ := url.Parse(srv.URL)
		c := &http.Client{Transport: &authTransport{tr: &http.Transport{Proxy: http.ProxyURL(pu)}, auth: "Bearer " + token}}
		resp, err := c.Get("http://example.com/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := do("v1"); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	if r := do("v1"); r.StatusCode != 429 || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	// The lease's policy changes (a new bundle): new limits, counters kept.
	// (rate.Limiter keeps the tokens it had, capped by the old burst, and
	// refills up to the new one.)
	e.clock.Advance(5 * time.Second)
	if r := do("v2"); r.StatusCode != 200 {
		t.Fatalf("status %d after the change", r.StatusCode)
	}
	e.clock.Advance(5 * time.Second)
	for i := range 5 {
		if r := do("v2"); r.StatusCode != 200 {
			t.Fatalf("request %d: status %d with burst 5", i, r.StatusCode)
		}
	}
	st, _ := p.Stats("L")
	if st.Subrequests != 7 || st.Blocked != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestProxyClientsBounded(t *testing.T) {
	e := newEnv(t, nil)
	p := NewProxy(e.gw, fakeAuth{})
	p.max = 3
	for i := range 10 {
		p.client(Scope{LeaseID: fmt.Sprint(i)})
	}
	if p.lru.Len() != 3 || len(p.clients) != 3 {
		t.Errorf("%d clients kept, bound 3", p.lru.Len())
	}
	if _, ok := p.Stats("9"); !ok {
		t.Error("most recent lease forgotten")
	}
	// Expired leases go first, wherever they are.
	p.client(Scope{LeaseID: "old", Expires: e.clock.Now().Add(time.Second)})
	e.clock.Advance(2 * time.Second)
	p.client(Scope{LeaseID: "9"})
	p.client(Scope{LeaseID: "new"})
	if _, ok := p.Stats("9"); !ok {
		t.Error("a live lease was evicted before an expired one")
	}
	if _, ok := p.Stats("old"); ok {
		t.Error("expired lease kept")
	}
}
