package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

// fakeResolver answers from a table; names it does not know fail.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// standInDialer sends connections for public test addresses to a loopback
// stand-in server, and refuses everything else: the gateway itself must
// never ask for a private address.
type standInDialer struct {
	routes map[string]string // "93.184.216.34:80" → loopback host:port
	asked  chan string
}

func (d *standInDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case d.asked <- addr:
	default:
	}
	to, ok := d.routes[addr]
	if !ok {
		return nil, fmt.Errorf("test dialer: no route to %s", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

type testNode struct {
	url, proxy, token string
	cancel            context.CancelFunc
	done              chan error
}

func startTestNode(t *testing.T, cfg Config) *testNode { return startTestNodeTB(t, cfg) }

func startTestNodeTB(t testing.TB, cfg Config) *testNode {
	t.Helper()
	dir := t.TempDir()
	cfg.DataDir = dir
	cfg.Addr = "127.0.0.1:0"
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.AdminToken = "node-test-admin-token-0123456789"
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ready := make(chan string, 1)
	cfg.Ready = func(addr string) { ready <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{token: cfg.AdminToken, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- Run(ctx, cfg) }()
	select {
	case addr := <-ready:
		tn.url = "http://" + addr
	case err := <-tn.done:
		t.Fatalf("node exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-tn.done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	return tn
}

func (tn *testNode) call(t *testing.T, method, path, token string, in, out any, want int) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, tn.url+path, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
}

func guestWasm(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "build", "guests", name+".wasm"))
	if err != nil {
		t.Fatalf("guest %s missing (%v): run make guests", name, err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestGuestFetchThroughGateway: a WASI guest fetches through the real
// gateway; a fake resolver and a stand-in dialer make a public test
// address reach a loopback server, while the gateway still refuses
// loopback, private answers, denied hosts, and a task's extra
// subrequests.
func TestGuestFetchThroughGateway(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s %s traceparent=%v guest=%s", r.Method, r.Host, r.Header.Get("traceparent") != "", r.Header.Get("X-Guest"))
	}))
	defer upstream.Close()
	public := netip.MustParseAddr("93.184.216.34")
	dialer := &standInDialer{routes: map[string]string{"93.184.216.34:80": upstream.Listener.Addr().String()}, asked: make(chan string, 100)}
	tn := startTestNode(t, Config{
		PolicyFile:      "testdata/egress-policy.yaml",
		EgressProxyAddr: "127.0.0.1:0",
		Egress: EgressOptions{
			Resolver: fakeResolver{
				"api.example.com":        {public},
				"blocked.example.com":    {public},
				"db.internal.example":    {netip.MustParseAddr("10.1.2.3")},
				"mixed.internal.example": {public, netip.MustParseAddr("127.0.0.1")},
			},
			Dialer: dialer,
		},
	})
	var l api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "call_api"}, &l, 201)
	fetch := func(t *testing.T, u string, count int) api.TaskResult {
		t.Helper()
		wasm := guestWasm(t, "fetch")
		var res api.TaskResult
		tn.call(t, "POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{WASM: &wasm},
			Env: api.StringEnv(map[string]string{"FETCH_URL": u, "FETCH_COUNT": fmt.Sprint(count)})}, &res, 200)
		return res
	}
	body := func(res api.TaskResult) string { b, _ := res.Response.Bytes(); return string(b) }

	t.Run("allowed", func(t *testing.T) {
		res := fetch(t, "http://api.example.com/hello", 1)
		if res.Outcome != "ok" || !strings.Contains(body(res), "upstream saw GET api.example.com traceparent=true guest=c") {
			t.Fatalf("%s: %s", res.Outcome, body(res))
		}
		if res.Usage.Subrequests != 1 || res.Usage.EgressBytesIn == 0 || len(res.Usage.Destinations) != 1 || res.Usage.Destinations[0] != "api.example.com:80" {
			t.Fatalf("usage %+v", res.Usage)
		}
	})
	for name, tc := range map[string]struct{ url, clause string }{
		"not allowed":      {"http://evil.example.net/", "profile.default_deny"},
		"loopback literal": {"http://127.0.0.1:" + strings.Split(upstream.Listener.Addr().String(), ":")[1] + "/", "profile.default_deny"},
		"private answer":   {"http://db.internal.example/", "address.private"},
		"one bad answer":   {"http://mixed.internal.example/", "address.private"},
		"global deny":      {"http://blocked.example.com/", "global.deny"},
		"port":             {"http://api.example.com:8080/", "profile.port"},
		"scheme":           {"ftp://api.example.com/", "scheme"},
	} {
		t.Run(name, func(t *testing.T) {
			res := fetch(t, tc.url, 1)
			if !strings.Contains(body(res), `"clause":"`+tc.clause+`"`) {
				t.Fatalf("%s: %s", res.Outcome, body(res))
			}
			if res.Usage.Blocked == 0 {
				t.Errorf("blocked attempt not counted: %+v", res.Usage)
			}
		})
	}
	t.Run("go guest package", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "fetcher.wasm")
		cmd := exec.Command("go", "build", "-o", out, "./examples/fetcher")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		b, _ := os.ReadFile(out)
		wasm := base64.StdEncoding.EncodeToString(b)
		for u, want := range map[string]string{
			"http://api.example.com/go":   "status 200: upstream saw GET api.example.com",
			"http://db.internal.example/": "refused: address.private",
		} {
			var res api.TaskResult
			tn.call(t, "POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{WASM: &wasm}, Env: api.StringEnv(map[string]string{"FETCH_URL": u})}, &res, 200)
			if !strings.Contains(body(res), want) {
				t.Errorf("%s: %s %s: %q", u, res.Outcome, res.Error, body(res))
			}
		}
	})
	t.Run("subrequests", func(t *testing.T) {
		res := fetch(t, "http://api.example.com/", 5)
		if res.Outcome != "terminated:subrequests" {
			t.Fatalf("outcome %s: %s", res.Outcome, body(res))
		}
	})
	// The dialer was only ever asked for checked public addresses.
	close(dialer.asked)
	for a := range dialer.asked {
		if !strings.HasPrefix(a, "93.184.216.34:") {
			t.Errorf("the gateway dialed %s", a)
		}
	}
}

// TestEgressProxy: agent runners outside leash use the same gateway as
// an HTTP proxy authenticated by a lease.
func TestEgressProxy(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "via proxy")
	}))
	defer upstream.Close()
	_, proxyAddr, l := startProxyNode(t, "93.184.216.34:80", upstream.Listener.Addr().String())
	get := func(token, target string) (int, string) {
		pu, _ := url.Parse("http://" + proxyAddr)
		c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), ProxyConnectHeader: http.Header{}}}
		req, _ := http.NewRequest("GET", target, nil)
		if token != "" {
			req.Header.Set("Proxy-Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, b := get(l.Token, "http://api.example.com/"); st != 200 || b != "via proxy" {
		t.Fatalf("allowed: %d %s", st, b)
	}
	if st, _ := get("", "http://api.example.com/"); st != http.StatusProxyAuthRequired {
		t.Fatalf("no credentials: %d", st)
	}
	if st, _ := get("not-a-lease", "http://api.example.com/"); st != http.StatusProxyAuthRequired {
		t.Fatalf("bad credentials: %d", st)
	}
	if st, b := get(l.Token, "http://evil.example.net/"); st != http.StatusForbidden {
		t.Fatalf("not allowed: %d %s", st, b)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRevocationClosesProxyTunnels: a lease's open CONNECT tunnel (TLS
// through to the upstream) is closed when the lease is revoked, well
// within the second a revocation has to be in force everywhere; a new
// CONNECT under the lease is refused.
func TestRevocationClosesProxyTunnels(t *testing.T) {
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "through the tunnel")
	}))
	defer upstream.Close()
	tn, proxyAddr, l := startProxyNode(t, "93.184.216.34:443", upstream.Listener.Addr().String())
	connect := func() (net.Conn, *bufio.Reader, int) {
		conn, err := net.Dial("tcp", proxyAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nProxy-Authorization: Bearer %s\r\n\r\n", l.Token)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		return conn, br, resp.StatusCode
	}
	conn, _, st := connect()
	defer conn.Close()
	if st != 200 {
		t.Fatalf("CONNECT: %d", st)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true})
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, int64(len("through the tunnel"))))
	if string(b) != "through the tunnel" {
		t.Fatalf("through the tunnel: %q", b)
	}

	tn.call(t, "DELETE", "/v1/leases/"+l.LeaseID, tn.token, nil, nil, 204)
	revoked := time.Now()
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil {
		t.Fatal("the tunnel still carries data after its lease was revoked")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the tunnel stayed open after its lease was revoked")
	}
	t.Logf("tunnel closed %v after the revocation was acknowledged", time.Since(revoked).Round(time.Millisecond))
	if c2, _, st := connect(); st != http.StatusProxyAuthRequired && st != http.StatusForbidden {
		c2.Close()
		t.Fatalf("CONNECT under a revoked lease: %d", st)
	} else {
		c2.Close()
	}
}

// startProxyNode starts a node serving the egress proxy, with
// api.example.com resolving to a public test address whose port route
// dials upstream, and a call_api lease of tenant demo.
func startProxyNode(t *testing.T, route, upstream string) (*testNode, string, api.Lease) {
	t.Helper()
	proxyAddr := freeAddr(t)
	tn := startTestNode(t, Config{
		PolicyFile:      "testdata/egress-policy.yaml",
		EgressProxyAddr: proxyAddr,
		Egress: EgressOptions{
			Resolver: fakeResolver{"api.example.com": {netip.MustParseAddr("93.184.216.34")}},
			Dialer:   &standInDialer{routes: map[string]string{route: upstream}, asked: make(chan string, 10)},
		},
	})
	var l api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "call_api"}, &l, 201)
	return tn, proxyAddr, l
}
