package egress

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/policy"
)

// The tunnel tests put a shared front end behind one public address, as
// a CDN, an ingress or an SNI router does: a TLS front end that routes by
// SNI (front.example is allowed, secret.example is not, both live there)
// and a plain-HTTP front end that routes by Host. Every trick must leave
// the secret backend unreached.
const (
	frontHost  = "front.example"  // allowed: CONNECT through a rule without ports
	plainHost  = "plain.example"  // allowed: ports [80] (CONNECT to 80 allowed by that list)
	secretHost = "secret.example" // never allowed; same front ends
)

// testPKI is a test CA and a leaf for the front end's names.
type testPKI struct {
	roots *x509.CertPool
	leaf  tls.Certificate
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func testCA(t testing.TB) testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		ca := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leash test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		caCert, _ := x509.ParseCertificate(caDER)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		leaf := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: frontHost},
			DNSNames:    []string{frontHost, secretHost, plainHost},
			IPAddresses: []net.IP{net.IP(pub1.AsSlice())},
			NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		pki.roots = x509.NewCertPool()
		pki.roots.AddCert(caCert)
		pki.leaf = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return pki
}

// frontEnd counts, per name, the ClientHellos that reached it and the
// requests its backends served.
type frontEnd struct {
	mu     sync.Mutex
	hellos map[string]int
	hits   map[string]int
}

func newFrontEnd() *frontEnd { return &frontEnd{hellos: map[string]int{}, hits: map[string]int{}} }

func (f *frontEnd) hello(name string) {
	f.mu.Lock()
	f.hellos[name]++
	f.mu.Unlock()
}

func (f *frontEnd) hit(name string) {
	f.mu.Lock()
	f.hits[name]++
	f.mu.Unlock()
}

func (f *frontEnd) counts(name string) (hellos, hits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hellos[name], f.hits[name]
}

func (f *frontEnd) totalHellos() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.hellos {
		n += v
	}
	return n
}

// startSNIFront starts the TLS front end: it routes each connection by
// the ClientHello's SNI to the backend of that name.
func startSNIFront(t *testing.T, f *frontEnd) *httptest.Server {
	t.Helper()
	p := testCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hit(r.TLS.ServerName)
		io.WriteString(w, "backend "+r.TLS.ServerName)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{p.leaf},
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			f.hello(chi.ServerName)
			return nil, nil
		},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// startHostFront starts the plain-HTTP front end: it routes by Host.
func startHostFront(f *frontEnd) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hit(r.Host)
		io.WriteString(w, "backend "+r.Host)
	})
}

type tunnelEnv struct {
	*env
	proxy      *Proxy
	srv        *httptest.Server
	sni, plain *frontEnd
}

func newTunnelEnv(t *testing.T) *tunnelEnv {
	t.Helper()
	plain := newFrontEnd()
	e := newEnv(t, startHostFront(plain))
	sni := newFrontEnd()
	front := startSNIFront(t, sni)
	e.dial.route(netip.AddrPortFrom(pub1, 443), front.Listener.Addr().String())
	for _, h := range []string{frontHost, plainHost, secretHost} {
		e.host(h, pub1)
	}
	rules, err := Compile("tunnel-profile", &policy.Profile{Egress: policy.Egress{Allow: []policy.AllowRule{
		{Host: frontHost},
		{Host: plainHost, Ports: []int{80}},
		{Host: pub1.String()},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(e.gw, fakeAuth{"good-lease": {Tenant: "acme", LeaseID: "lease-t", Rules: rules, Deny: e.deny, Subrequests: 1000}})
	p.helloTimeout = 2 * time.Second
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	return &tunnelEnv{env: e, proxy: p, srv: srv, sni: sni, plain: plain}
}

func connectRequest(target string) string {
	return fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer good-lease\r\n\r\n", target, target)
}

// proxyConn is a client's connection to the proxy, carrying a tunnel.
// With pending set, the CONNECT goes in the same Write as the client's
// first bytes (the ClientHello in the same packet as the CONNECT). With
// frag > 0, the first Write's TLS handshake records are re-framed into
// records of at most frag payload bytes, each sent with its own Write.
type proxyConn struct {
	net.Conn
	br      *bufio.Reader
	pending []byte
	frag    int
	wrote   bool
	status  int
}

func dialTunnel(t *testing.T, te *tunnelEnv, target string, coalesce bool, frag int) *proxyConn {
	t.Helper()
	conn, err := net.Dial("tcp", te.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	pc := &proxyConn{Conn: conn, br: bufio.NewReader(conn), frag: frag}
	if coalesce {
		pc.pending = []byte(connectRequest(target))
		return pc
	}
	io.WriteString(conn, connectRequest(target))
	if err := pc.readConnectResponse(); err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return pc
}

func (c *proxyConn) readConnectResponse() error {
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return err
	}
	c.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CONNECT answered %d (%s)", resp.StatusCode, resp.Header.Get("Leash-Egress-Clause"))
	}
	return nil
}

func (c *proxyConn) Write(p []byte) (int, error) {
	chunks := [][]byte{p}
	if !c.wrote && c.frag > 0 {
		chunks = reframe(p, c.frag)
	}
	if c.pending != nil {
		chunks[0] = append(c.pending, chunks[0]...)
		c.pending = nil
	}
	c.wrote = true
	for _, ch := range chunks {
		if _, err := c.Conn.Write(ch); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *proxyConn) Read(p []byte) (int, error) {
	if c.status == 0 {
		if err := c.readConnectResponse(); err != nil {
			return 0, err
		}
	}
	return c.br.Read(p)
}

// reframe splits the handshake records of b into records of at most n
// payload bytes each: the same handshake bytes, fragmented (RFC 8446
// §5.1 allows it). Other bytes pass as they are.
func reframe(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) >= 5 {
		l := int(binary.BigEndian.Uint16(b[3:5]))
		if b[0] != recordTypeHandshake || len(b) < 5+l {
			break
		}
		payload := b[5 : 5+l]
		for len(payload) > 0 {
			k := min(n, len(payload))
			rec := append([]byte{b[0], b[1], b[2], byte(k >> 8), byte(k)}, payload[:k]...)
			out = append(out, rec)
			payload = payload[k:]
		}
		b = b[5+l:]
	}
	if len(b) > 0 {
		out = append(out, b)
	}
	return out
}

// echConfigList builds an ECHConfigList (RFC 9849 §4) for publicName with
// a fresh X25519 key: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-128-GCM.
func echConfigList(t testing.TB, publicName string) []byte {
	t.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	var c []byte
	c = append(c, 7)   // config_id
	c = u16(c, 0x0020) // kem_id
	pub := key.PublicKey().Bytes()
	c = u16(c, len(pub))
	c = append(c, pub...)
	c = u16(c, 4)      // cipher_suites length
	c = u16(c, 0x0001) // kdf_id
	c = u16(c, 0x0001) // aead_id
	c = append(c, 0)   // maximum_name_length
	c = append(c, byte(len(publicName)))
	c = append(c, publicName...)
	c = u16(c, 0) // extensions
	cfg := u16(u16(nil, 0xfe0d), len(c))
	cfg = append(cfg, c...)
	return append(u16(nil, len(cfg)), cfg...)
}

// TestTunnelChecks runs each trick through the real proxy on loopback, in
// front of the shared front ends: the allowed cases reach the allowed
// backend; every refusal names its clause (decision and canonical log
// line), and the secret backend is never reached.
func TestTunnelChecks(t *testing.T) {
	te := newTunnelEnv(t)
	roots := testCA(t).roots
	cases := []struct {
		name       string
		target     string
		serverName string // the ClientHello's SNI; "" sends none
		ech        bool
		coalesce   bool // ClientHello in the same write as the CONNECT
		frag       int  // ClientHello fragmented over records of frag bytes
		clause     string
		backend    string // reached when allowed
	}{
		{name: "allowed", target: frontHost + ":443", serverName: frontHost, backend: frontHost},
		{name: "allowed, upper-case SNI", target: frontHost + ":443", serverName: "FRONT.Example", backend: "FRONT.Example"},
		{name: "allowed, hello with the CONNECT", target: frontHost + ":443", serverName: frontHost, coalesce: true, backend: frontHost},
		{name: "allowed, hello fragmented", target: frontHost + ":443", serverName: frontHost, frag: 40, backend: frontHost},
		{name: "allowed, fragmented and with the CONNECT", target: frontHost + ":443", serverName: frontHost, frag: 7, coalesce: true, backend: frontHost},
		{name: "allowed, IP literal without SNI", target: pub1.String() + ":443", backend: ""},
		{name: "SNI names another host", target: frontHost + ":443", serverName: secretHost, clause: ClauseTunnelSNIMismatch},
		{name: "SNI mismatch, with the CONNECT", target: frontHost + ":443", serverName: secretHost, coalesce: true, clause: ClauseTunnelSNIMismatch},
		{name: "SNI mismatch, fragmented", target: frontHost + ":443", serverName: secretHost, frag: 16, clause: ClauseTunnelSNIMismatch},
		{name: "SNI mismatch, fragmented and with the CONNECT", target: frontHost + ":443", serverName: secretHost, frag: 5, coalesce: true, clause: ClauseTunnelSNIMismatch},
		{name: "SNI a subdomain of the CONNECT host", target: frontHost + ":443", serverName: "x." + frontHost, clause: ClauseTunnelSNIMismatch},
		{name: "SNI absent", target: frontHost + ":443", clause: ClauseTunnelSNIMissing},
		{name: "SNI absent, with the CONNECT", target: frontHost + ":443", coalesce: true, clause: ClauseTunnelSNIMissing},
		{name: "SNI in a tunnel to an IP literal", target: pub1.String() + ":443", serverName: secretHost, clause: ClauseTunnelSNIMismatch},
		{name: "Encrypted ClientHello, outer SNI the CONNECT host", target: frontHost + ":443", serverName: secretHost, ech: true, clause: ClauseTunnelECH},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(te.rec.all())
			hellosBefore := te.sni.totalHellos()
			pc := dialTunnel(t, te, tc.target, tc.coalesce, tc.frag)
			cfg := &tls.Config{RootCAs: roots, ServerName: tc.serverName, MinVersion: tls.VersionTLS12}
			if tc.serverName == "" {
				cfg.InsecureSkipVerify = true // no name to verify; the front end's cert is beside the point
			}
			if tc.ech {
				cfg.MinVersion = tls.VersionTLS13
				cfg.EncryptedClientHelloConfigList = echConfigList(t, frontHost)
			}
			tc2 := tls.Client(pc, cfg)
			err := tc2.Handshake()
			if tc.clause == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				req, _ := http.NewRequest("GET", "https://"+tc.target+"/", nil)
				if err := req.Write(tc2); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(tc2), req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if want := "backend " + tc.backend; string(body) != want {
					t.Fatalf("body %q, want %q", body, want)
				}
				tc2.Close()
				waitFor(t, func() bool { return len(te.rec.all()) > before })
				if d := te.rec.last(t); d.Outcome != OutcomeAllow || d.Mode != ModeConnect || d.SNI != tc.serverName {
					t.Errorf("decision %+v", d)
				}
				return
			}
			if err == nil {
				t.Fatal("handshake succeeded through a refused tunnel")
			}
			waitFor(t, func() bool { return len(te.rec.all()) > before })
			d := te.rec.last(t)
			if d.Outcome != OutcomeBlock || d.Clause != tc.clause || d.Mode != ModeConnect || d.BytesOut != 0 {
				t.Errorf("decision %+v, want clause %s", d, tc.clause)
			}
			if got := te.sni.totalHellos(); got != hellosBefore {
				t.Errorf("%d ClientHellos reached the front end through a refused tunnel", got-hellosBefore)
			}
			lines := te.rec.lines(t)
			if l := lines[len(lines)-1]; l["clause"] != tc.clause || l["mode"] != ModeConnect || l["outcome"] != OutcomeBlock {
				t.Errorf("log line %v", l)
			}
		})
	}
	if hellos, hits := te.sni.counts(secretHost); hellos != 0 || hits != 0 {
		t.Errorf("the secret backend was reached: %d hellos, %d requests", hellos, hits)
	}
}

// TestTunnelPlainHTTP: a tunnel carries TLS; plain HTTP inside one is
// refused with an HTTP 403 (what such a client reads), never forwarded,
// and the connection ends. Plain HTTP goes as absolute-form requests,
// where the proxy writes Host from the target.
func TestTunnelPlainHTTP(t *testing.T) {
	te := newTunnelEnv(t)
	get := "GET / HTTP/1.1\r\nHost: " + secretHost + "\r\n\r\n"
	for _, tc := range []struct {
		name, target string
		coalesce     bool
	}{
		{"tunnel to 80 by an explicit port", plainHost + ":80", false},
		{"tunnel to 80, request with the CONNECT", plainHost + ":80", true},
		{"tunnel to 443", frontHost + ":443", false},
		{"tunnel to 443, request with the CONNECT", frontHost + ":443", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(te.rec.all())
			pc := dialTunnel(t, te, tc.target, tc.coalesce, 0)
			if _, err := io.WriteString(pc, get); err != nil {
				t.Fatal(err)
			}
			if tc.coalesce {
				if err := pc.readConnectResponse(); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := http.ReadResponse(pc.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			e := readError(t, resp)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Leash-Egress-Clause") != ClauseTunnelTLS || e.Code != "egress_tunnel_tls_required" || !resp.Close {
				t.Errorf("status %d, clause %q, code %q, close %v", resp.StatusCode, resp.Header.Get("Leash-Egress-Clause"), e.Code, resp.Close)
			}
			if _, err := pc.br.ReadByte(); err == nil {
				t.Error("connection still open after the refusal")
			}
			waitFor(t, func() bool { return len(te.rec.all()) > before })
			if d := te.rec.last(t); d.Clause != ClauseTunnelTLS || d.BytesOut != 0 || d.Status != http.StatusForbidden {
				t.Errorf("decision %+v", d)
			}
		})
	}
	t.Run("CONNECT to 80 through a rule without ports", func(t *testing.T) {
		status, hdr := rawConnect(t, te.srv.Listener.Addr().String(), frontHost+":80", "Bearer good-lease")
		if status != http.StatusForbidden || hdr.Get("Leash-Egress-Clause") != ClausePort {
			t.Errorf("status %d clause %q", status, hdr.Get("Leash-Egress-Clause"))
		}
	})
	t.Run("absolute-form with another Host", func(t *testing.T) {
		conn, err := net.Dial("tcp", te.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer good-lease\r\n\r\n", plainHost, secretHost)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "backend "+plainHost {
			t.Errorf("body %q: the Host header must not choose the backend", body)
		}
	})
	if _, hits := te.plain.counts(secretHost); hits != 0 {
		t.Errorf("the secret backend served %d requests", hits)
	}
	if _, hits := te.plain.counts(plainHost); hits != 1 {
		t.Errorf("the plain backend served %d requests, want 1 (the absolute-form one)", hits)
	}
}

// TestProxyRefusalEndsConnection pipelines an allowed request behind a
// refused one: the refusal says Connection: close, the connection ends,
// and the request behind it is never served.
func TestProxyRefusalEndsConnection(t *testing.T) {
	te := newTunnelEnv(t)
	behind := fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer good-lease\r\n\r\n", plainHost, plainHost)
	for name, first := range map[string]struct {
		req    string
		status int
		clause string
	}{
		"refused absolute-form": {fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer good-lease\r\n\r\n", secretHost, secretHost), 403, ClauseDefaultDeny},
		"refused CONNECT":       {connectRequest(secretHost + ":443"), 403, ClauseDefaultDeny},
		"CONNECT to a port":     {connectRequest(frontHost + ":8443"), 403, ClausePort},
		"bad credentials":       {"GET http://" + plainHost + "/ HTTP/1.1\r\nHost: " + plainHost + "\r\nProxy-Authorization: Bearer forged\r\n\r\n", 407, ClauseProxyAuth},
		"not a proxy request":   {"GET / HTTP/1.1\r\nHost: " + plainHost + "\r\nProxy-Authorization: Bearer good-lease\r\n\r\n", 400, ClauseURLInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", te.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, first.req+behind) // one write: pipelined
			br := bufio.NewReader(conn)
			method := "GET"
			if strings.HasPrefix(first.req, "CONNECT") {
				method = http.MethodConnect
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != first.status || resp.Header.Get("Leash-Egress-Clause") != first.clause || !resp.Close {
				t.Errorf("status %d clause %q close %v", resp.StatusCode, resp.Header.Get("Leash-Egress-Clause"), resp.Close)
			}
			if next, err := http.ReadResponse(br, nil); err == nil {
				t.Errorf("a second response (%d) on a refused connection", next.StatusCode)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
				t.Errorf("after the refusal: %v, want the connection closed", err)
			}
		})
	}
	if _, hits := te.plain.counts(plainHost); hits != 0 {
		t.Errorf("a request pipelined behind a refusal was served %d times", hits)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || errors.Is(err, net.ErrClosed))
}

// TestTunnelHelloBounds: the ClientHello is bounded in time and size,
// and a malformed one is refused; none reaches the front end.
func TestTunnelHelloBounds(t *testing.T) {
	te := newTunnelEnv(t)
	te.proxy.helloTimeout = 200 * time.Millisecond
	record := func(typ byte, payload []byte) []byte {
		return append([]byte{typ, 3, 1, byte(len(payload) >> 8), byte(len(payload))}, payload...)
	}
	// A ClientHello header announcing 20000 bytes, sent in two full
	// records: over the 16 KiB bound before it is complete.
	huge := append([]byte{1, 0, 0x4e, 0x20}, make([]byte, 16380)...)
	for _, tc := range []struct {
		name   string
		send   []byte
		closeW bool
		clause string
	}{
		{"slow: a record header, then nothing", []byte{0x16, 3, 1}, false, ClauseTimeout},
		{"larger than the bound", append(record(0x16, huge), record(0x16, make([]byte, 4000))...), false, ClauseTunnelHello},
		{"not a ClientHello", record(0x16, []byte{2, 0, 0, 4, 3, 3, 0, 0}), false, ClauseTunnelHello},
		{"garbage in a handshake record", record(0x16, []byte("\x01\x00\x00\x05hello")), false, ClauseTunnelHello},
		{"closed mid-hello", record(0x16, []byte{1, 0, 1, 0, 3, 3})[:9], true, ClauseTunnelHello},
		{"an alert first", record(0x15, []byte{2, 40}), false, ClauseTunnelTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(te.rec.all())
			pc := dialTunnel(t, te, frontHost+":443", false, 0)
			pc.Conn.Write(tc.send)
			if tc.closeW {
				pc.Conn.(*net.TCPConn).CloseWrite()
			}
			waitFor(t, func() bool { return len(te.rec.all()) > before })
			if d := te.rec.last(t); d.Clause != tc.clause || d.BytesOut != 0 {
				t.Errorf("decision %+v, want clause %s", d, tc.clause)
			}
		})
	}
	if n := te.sni.totalHellos(); n != 0 {
		t.Errorf("%d ClientHellos reached the front end", n)
	}
}

// TestTunnelClosedEarly: a client that closes its tunnel before sending a
// byte ends it quietly; nothing was sent on.
func TestTunnelClosedEarly(t *testing.T) {
	te := newTunnelEnv(t)
	before := len(te.rec.all())
	pc := dialTunnel(t, te, frontHost+":443", false, 0)
	pc.Conn.(*net.TCPConn).CloseWrite()
	waitFor(t, func() bool { return len(te.rec.all()) > before })
	if d := te.rec.last(t); d.Outcome != OutcomeAllow || d.BytesOut != 0 || d.BytesIn != 0 {
		t.Errorf("decision %+v", d)
	}
}

func TestSameASCIIHost(t *testing.T) {
	for _, tc := range []struct {
		sni, host string
		want      bool
	}{
		{"example.com", "example.com", true},
		{"EXAMPLE.com", "example.com", true},
		{"example.com.", "example.com", false},
		{"\u212aexample.com", "kexample.com", false}, // Kelvin sign folds to k in Unicode, not here
		{"xn--bcher-kva.example", "xn--bcher-kva.example", true},
		{"bücher.example", "xn--bcher-kva.example", false},
		{"", "example.com", false},
		{"a.example.com", "example.com", false},
	} {
		if got := sameASCIIHost(tc.sni, tc.host); got != tc.want {
			t.Errorf("sameASCIIHost(%q, %q) = %v", tc.sni, tc.host, got)
		}
	}
}

// captureHello returns the first flight a crypto/tls client sends with
// cfg: its ClientHello record(s).
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	cc := &captureConn{}
	tls.Client(cc, cfg).Handshake()
	if cc.buf.Len() == 0 {
		t.Fatal("no ClientHello captured")
	}
	return cc.buf.Bytes()
}

type captureConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error)      { return c.buf.Write(p) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// oneByteReader hands out one byte per Read: the worst fragmentation of
// the transport.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestReadClientHello(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}})
	trailing := []byte("early bytes after the hello")
	for _, tc := range []struct {
		name string
		in   []byte
		r    func([]byte) io.Reader
	}{
		{"one record", hello, nil},
		{"one record, bytes after it", append(clone(hello), trailing...), nil},
		{"records of 1 byte", bytes.Join(reframe(hello, 1), nil), nil},
		{"records of 100 bytes", bytes.Join(reframe(hello, 100), nil), nil},
		{"one byte per read", hello, func(b []byte) io.Reader { return oneByteReader{bytes.NewReader(b)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tc.in)
			if tc.r != nil {
				r = tc.r(tc.in)
			}
			h, raw, err := ReadClientHello(r, 0)
			if err != nil {
				t.Fatal(err)
			}
			if h.ServerName != "api.example.com" || h.ECH || len(h.ALPN) != 2 || h.ALPN[0] != "h2" {
				t.Errorf("hello %+v", h)
			}
			if !bytes.HasPrefix(tc.in, raw) {
				t.Errorf("raw is not a prefix of the input")
			}
			// What was read plus what is left is the input: nothing lost.
			rest, _ := io.ReadAll(r)
			if !bytes.Equal(append(clone(raw), rest...), tc.in) {
				t.Errorf("read %d + left %d bytes, input %d", len(raw), len(rest), len(tc.in))
			}
		})
	}
	t.Run("bound", func(t *testing.T) {
		_, raw, err := ReadClientHello(bytes.NewReader(hello), 50)
		if !errors.Is(err, errHelloTooLarge) || len(raw) != 50 {
			t.Errorf("err %v, read %d", err, len(raw))
		}
	})
	t.Run("no SNI", func(t *testing.T) {
		h, _, err := ReadClientHello(bytes.NewReader(captureHello(t, &tls.Config{InsecureSkipVerify: true})), 0)
		if err != nil || h.ServerName != "" {
			t.Errorf("%+v %v", h, err)
		}
	})
	t.Run("ECH", func(t *testing.T) {
		in := captureHello(t, &tls.Config{ServerName: "secret.example", MinVersion: tls.VersionTLS13, EncryptedClientHelloConfigList: echConfigList(t, "front.example")})
		h, _, err := ReadClientHello(bytes.NewReader(in), 0)
		if err != nil || !h.ECH || h.ServerName != "front.example" {
			t.Errorf("%+v %v", h, err)
		}
	})
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
