//go:build leashbench

package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/leash-dev/leash/egress"
	"github.com/leash-dev/leash/policy"
)

// The tunnel benchmarks need the benchmark build of egress, which can
// turn the tunnel check off:
//
//	go test -tags leashbench -run '^$' -bench BenchmarkEgressTunnel ./bench/
//
// Each runs, in one process, the same tunnels through two proxies over
// one gateway: one checking the start of every tunnel (production), one
// with the check off (what the proxy did before it).

type benchAuth struct{ scope egress.Scope }

func (a benchAuth) Authenticate(context.Context, string) (egress.Scope, error) { return a.scope, nil }

type tunnelBench struct {
	checked, unchecked string // proxy addresses
	roots              *x509.CertPool
}

func newTunnelBench(b *testing.B) *tunnelBench {
	b.Helper()
	chunk := make([]byte, 32<<10)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		if n <= 0 {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(chunk))
			w.Write(chunk[:k])
			n -= k
		}
	}))
	backend.Config.ErrorLog = log.New(io.Discard, "", 0)
	backend.StartTLS()
	b.Cleanup(backend.Close)

	pub := netip.MustParseAddr("93.184.216.34")
	gw := egress.New(egress.Config{
		Resolver: benchResolver{pub},
		Dialer:   &benchDialer{from: netip.AddrPortFrom(pub, 443).String(), to: backend.Listener.Addr().String()},
		Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	b.Cleanup(gw.Close)
	rules, err := egress.Compile("bench", &policy.Profile{Egress: policy.Egress{
		Allow:            []policy.AllowRule{{Host: "example.com"}},
		MaxResponseBytes: 1 << 40,
		Timeouts:         policy.Timeouts{TotalMs: 600_000},
	}})
	if err != nil {
		b.Fatal(err)
	}
	auth := benchAuth{egress.Scope{Tenant: "bench", LeaseID: "bench", Rules: rules, Subrequests: math.MaxInt64}}
	tb := &tunnelBench{roots: backend.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	for _, skip := range []bool{false, true} {
		p := egress.NewProxy(gw, auth)
		p.SkipTunnelCheck(skip)
		srv := httptest.NewServer(p)
		b.Cleanup(srv.Close)
		b.Cleanup(p.Close)
		if skip {
			tb.unchecked = srv.Listener.Addr().String()
		} else {
			tb.checked = srv.Listener.Addr().String()
		}
	}
	return tb
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// get opens a tunnel through the proxy at addr, makes one TLS connection
// and one request through it, reads the whole response and closes.
func (tb *tunnelBench) get(b *testing.B, addr string, bytes int) (time.Duration, int64) {
	start := time.Now()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Bearer bench\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(&bufConn{Conn: conn, r: br}, &tls.Config{ServerName: "example.com", RootCAs: tb.roots})
	fmt.Fprintf(tc, "GET /?bytes=%d HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", bytes)
	r, err := http.ReadResponse(bufio.NewReaderSize(tc, 64<<10), nil)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(start), n
}

// BenchmarkEgressTunnel is the latency of opening a tunnel and getting a
// first response through it (CONNECT, TLS handshake, one small request),
// with and without the check of the tunnel's start; the difference is
// what the check adds per tunnel.
func BenchmarkEgressTunnel(b *testing.B) {
	tb := newTunnelBench(b)
	for range 20 {
		tb.get(b, tb.checked, 0)
		tb.get(b, tb.unchecked, 0)
	}
	on := make([]time.Duration, 0, b.N)
	off := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			d, _ := tb.get(b, tb.checked, 0)
			on = append(on, d)
			d, _ = tb.get(b, tb.unchecked, 0)
			off = append(off, d)
		} else {
			d, _ := tb.get(b, tb.unchecked, 0)
			off = append(off, d)
			d, _ = tb.get(b, tb.checked, 0)
			on = append(on, d)
		}
	}
	b.StopTimer()
	b.ReportMetric(us(percentile(off, 50)), "unchecked-p50-µs")
	b.ReportMetric(us(percentile(on, 50)), "checked-p50-µs")
	b.ReportMetric(us(percentile(on, 50)-percentile(off, 50)), "added-p50-µs")
	b.ReportMetric(us(percentile(off, 99)), "unchecked-p99-µs")
	b.ReportMetric(us(percentile(on, 99)), "checked-p99-µs")
	b.ReportMetric(us(percentile(on, 99)-percentile(off, 99)), "added-p99-µs")
}

// BenchmarkEgressTunnelThroughput downloads 32 MiB through one tunnel
// per iteration and proxy, with and without the check: the check looks
// at the first flight only, so the copy after it should not change.
func BenchmarkEgressTunnelThroughput(b *testing.B) {
	const size = 32 << 20
	tb := newTunnelBench(b)
	tb.get(b, tb.checked, size)
	tb.get(b, tb.unchecked, size)
	var on, off time.Duration
	b.ResetTimer()
	for i := range b.N {
		order := []string{tb.checked, tb.unchecked}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, addr := range order {
			d, n := tb.get(b, addr, size)
			if n != size {
				b.Fatalf("%d bytes", n)
			}
			if addr == tb.checked {
				on += d
			} else {
				off += d
			}
		}
	}
	b.StopTimer()
	mib := float64(size*b.N) / (1 << 20)
	b.ReportMetric(mib/off.Seconds(), "unchecked-MiB/s")
	b.ReportMetric(mib/on.Seconds(), "checked-MiB/s")
}
