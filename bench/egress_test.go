package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/leash-dev/leash/egress"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// BenchmarkEgressDecision is the cost of one egress decision as the
// allow list grows: "decide" is the policy decision on a parsed target
// (deny list, then allow rules); "check" adds parsing the URL with the
// WHATWG parser, which does not depend on the rules. Neither may grow
// linearly: exact hosts are one map lookup, wildcards one lookup per
// label of the candidate.
func BenchmarkEgressDecision(b *testing.B) {
	deny, err := egress.CompileDeny([]string{"metadata.google.internal", "*.evil.example", "169.254.0.0/16", "10.0.0.0/8"})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000, 100000} {
		rules := decisionRules(b, n)
		cases := map[string]struct{ url, clause string }{
			"exact":    {fmt.Sprintf("https://h%d.example.com/v1/items?q=1", n/2-1), ""},
			"wildcard": {fmt.Sprintf("https://a.b.svc%d.example.net/x", n/2-1), ""},
			"miss":     {"https://unknown.example.org/", egress.ClauseDefaultDeny},
		}
		for _, name := range []string{"exact", "wildcard", "miss"} {
			tc := cases[name]
			target, err := egress.ParseTarget(tc.url)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rules.Check(deny, "GET", tc.url); egress.ClauseOf(err) != tc.clause {
				b.Fatalf("%s: %v, want %q", tc.url, err, tc.clause)
			}
			b.Run(fmt.Sprintf("decide/rules=%d/%s", n, name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					rules.Decide(deny, "GET", target)
				}
			})
			b.Run(fmt.Sprintf("check/rules=%d/%s", n, name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					rules.Check(deny, "GET", tc.url)
				}
			})
		}
	}
}

func decisionRules(b *testing.B, n int) *egress.Rules {
	b.Helper()
	allow := make([]policy.AllowRule, 0, n)
	for i := range n / 2 {
		allow = append(allow,
			policy.AllowRule{Host: fmt.Sprintf("h%d.example.com", i), Ports: []int{443}, Methods: []string{"GET", "POST"}},
			policy.AllowRule{Host: fmt.Sprintf("*.svc%d.example.net", i)})
	}
	r, err := egress.Compile("bench", &policy.Profile{Egress: policy.Egress{Allow: allow}})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// benchResolver answers every name with one public address.
type benchResolver struct{ addr netip.Addr }

func (r benchResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{r.addr}, nil
}

// benchDialer sends the public address to the loopback server: loopback
// is reachable only here, the gateway itself still refuses it.
type benchDialer struct {
	from string
	to   string
	d    net.Dialer
}

func (d *benchDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if address != d.from {
		return nil, fmt.Errorf("bench dialer: no route to %s", address)
	}
	return d.d.DialContext(ctx, network, d.to)
}

// BenchmarkEgressFetch compares, in one run, a fetch through the gateway
// with a direct Go client to the same loopback server (both with
// keep-alive), and reports the latency the gateway adds at p50 and p99
// and the throughput of each path.
func BenchmarkEgressFetch(b *testing.B) {
	payload := make([]byte, 256)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(payload)
	}))
	defer srv.Close()

	pub := netip.MustParseAddr("93.184.216.34")
	gw := egress.New(egress.Config{
		Resolver: benchResolver{pub},
		Dialer:   &benchDialer{from: netip.AddrPortFrom(pub, 80).String(), to: srv.Listener.Addr().String()},
		Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	defer gw.Close()
	rules, err := egress.Compile("bench", &policy.Profile{Egress: policy.Egress{Allow: []policy.AllowRule{
		{Host: "api.example.com", Rate: &policy.Rate{PerSecond: 1e6, Burst: 1e6}, BytesPerMinute: 1 << 40},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	task := gw.ForTask(egress.Scope{
		Tenant: "bench", TaskID: "t", Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Rules: rules, Subrequests: math.MaxInt64,
	})
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
	defer direct.CloseIdleConnections()
	directURL := srv.URL + "/v1/items"
	req := &sandbox.FetchRequest{Method: "GET", URL: "http://api.example.com/v1/items"}
	ctx := context.Background()

	fetchDirect := func() time.Duration {
		start := time.Now()
		resp, err := direct.Get(directURL)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		return time.Since(start)
	}
	fetchGateway := func() time.Duration {
		start := time.Now()
		resp, err := task.Fetch(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.Body) != len(payload) {
			b.Fatalf("body %d bytes", len(resp.Body))
		}
		return time.Since(start)
	}
	// Warm both connection pools.
	for range 10 {
		fetchDirect()
		fetchGateway()
	}
	directLat := make([]time.Duration, 0, b.N)
	gwLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		// Alternate which goes first so neither always runs on a warmer
		// cache.
		if i%2 == 0 {
			directLat = append(directLat, fetchDirect())
			gwLat = append(gwLat, fetchGateway())
		} else {
			gwLat = append(gwLat, fetchGateway())
			directLat = append(directLat, fetchDirect())
		}
	}
	b.StopTimer()
	dp50, dp99 := percentile(directLat, 50), percentile(directLat, 99)
	gp50, gp99 := percentile(gwLat, 50), percentile(gwLat, 99)
	b.ReportMetric(us(dp50), "direct-p50-µs")
	b.ReportMetric(us(gp50), "gateway-p50-µs")
	b.ReportMetric(us(gp50-dp50), "added-p50-µs")
	b.ReportMetric(us(dp99), "direct-p99-µs")
	b.ReportMetric(us(gp99), "gateway-p99-µs")
	b.ReportMetric(us(gp99-dp99), "added-p99-µs")
	b.ReportMetric(throughput(directLat), "direct-req/s")
	b.ReportMetric(throughput(gwLat), "gateway-req/s")
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func throughput(d []time.Duration) float64 {
	var total time.Duration
	for _, x := range d {
		total += x
	}
	if total == 0 {
		return 0
	}
	return float64(len(d)) / total.Seconds()
}

// BenchmarkEgressClientHello is the parse the proxy runs on the start of
// every tunnel: egress.ReadClientHello (crypto/tls's own parser on a
// recording connection) on a real ClientHello from Go's client (TLS 1.3,
// X25519MLKEM768 key share, ALPN), as one record and fragmented over
// records of 64 bytes.
func BenchmarkEgressClientHello(b *testing.B) {
	hello := captureClientHello(b, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}})
	fragmented := fragmentRecords(hello, 64)
	for name, in := range map[string][]byte{"one-record": hello, "fragmented-64": fragmented} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				h, _, err := egress.ReadClientHello(bytes.NewReader(in), 0)
				lat = append(lat, time.Since(start))
				if err != nil || h.ServerName != "api.example.com" {
					b.Fatalf("%+v %v", h, err)
				}
			}
			b.ReportMetric(us(percentile(lat, 50)), "p50-µs")
			b.ReportMetric(us(percentile(lat, 99)), "p99-µs")
		})
	}
}

// captureClientHello returns the first flight of a crypto/tls client.
func captureClientHello(b *testing.B, cfg *tls.Config) []byte {
	b.Helper()
	cc := &helloCapture{}
	tls.Client(cc, cfg).Handshake()
	if cc.buf.Len() == 0 {
		b.Fatal("no ClientHello")
	}
	return cc.buf.Bytes()
}

type helloCapture struct {
	net.Conn
	buf bytes.Buffer
}

func (c *helloCapture) Write(p []byte) (int, error)      { return c.buf.Write(p) }
func (c *helloCapture) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *helloCapture) Close() error                     { return nil }
func (c *helloCapture) SetDeadline(time.Time) error      { return nil }
func (c *helloCapture) SetReadDeadline(time.Time) error  { return nil }
func (c *helloCapture) SetWriteDeadline(time.Time) error { return nil }

// fragmentRecords re-frames TLS handshake records into records of at
// most n payload bytes.
func fragmentRecords(b []byte, n int) []byte {
	var out []byte
	for len(b) >= 5 {
		l := int(b[3])<<8 | int(b[4])
		if len(b) < 5+l {
			break
		}
		for p := b[5 : 5+l]; len(p) > 0; {
			k := min(n, len(p))
			out = append(out, b[0], b[1], b[2], byte(k>>8), byte(k))
			out = append(out, p[:k]...)
			p = p[k:]
		}
		b = b[5+l:]
	}
	return append(out, b...)
}
