package bench

import (
	"context"
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
