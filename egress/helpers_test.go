package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/fetch"
	"github.com/leash-dev/leash/policy"
)

// Public addresses the fake resolver hands out; the test dialer sends
// them to loopback servers. The gateway itself never dials loopback.
var (
	pub1 = netip.MustParseAddr("93.184.216.34")
	pub2 = netip.MustParseAddr("93.184.216.35")
	pub6 = netip.MustParseAddr("2606:2800:220:1:248:1893:25c8:1946")
)

// fakeResolver answers from a table, or from answer when set; it counts
// lookups per host.
type fakeResolver struct {
	mu      sync.Mutex
	hosts   map[string][]netip.Addr
	answer  func(host string, n int) ([]netip.Addr, error)
	lookups map[string]int
	delay   time.Duration
}

func newResolver(hosts map[string][]netip.Addr) *fakeResolver {
	return &fakeResolver{hosts: hosts, lookups: map[string]int{}}
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.lookups[host]++
	n := r.lookups[host]
	answer, delay := r.answer, r.delay
	addrs, ok := r.hosts[host]
	r.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if answer != nil {
		return answer(host, n)
	}
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

func (r *fakeResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[host]
}

// testDialer sends dials for mapped (public) addresses to loopback
// listeners and records every address it was asked for.
type testDialer struct {
	mu     sync.Mutex
	routes map[string]string // "93.184.216.34:80" → "127.0.0.1:NNNN"
	dialed []string
	hang   bool // block until ctx ends (connect timeout tests)
	d      net.Dialer
}

func newDialer() *testDialer { return &testDialer{routes: map[string]string{}} }

func (d *testDialer) route(from netip.AddrPort, to string) {
	d.mu.Lock()
	d.routes[from.String()] = to
	d.mu.Unlock()
}

func (d *testDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, address)
	to, ok := d.routes[address]
	hang := d.hang
	d.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if !ok {
		return nil, fmt.Errorf("test dialer: no route to %s", address)
	}
	return d.d.DialContext(ctx, network, to)
}

func (d *testDialer) calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dialed...)
}

// recorder keeps decisions and log lines.
type recorder struct {
	mu        sync.Mutex
	decisions []Decision
	logs      bytes.Buffer
}

func (r *recorder) onDecision(_ context.Context, d Decision) {
	r.mu.Lock()
	r.decisions = append(r.decisions, d)
	r.mu.Unlock()
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.Write(p)
}

func (r *recorder) all() []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Decision(nil), r.decisions...)
}

func (r *recorder) last(t *testing.T) Decision {
	t.Helper()
	ds := r.all()
	if len(ds) == 0 {
		t.Fatal("no decision recorded")
	}
	return ds[len(ds)-1]
}

func (r *recorder) lines(t *testing.T) []map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is one gateway with its fakes and a loopback upstream.
type env struct {
	t        *testing.T
	gw       *Gateway
	res      *fakeResolver
	dial     *testDialer
	rec      *recorder
	clock    *fakeClock
	upstream *httptest.Server
	deny     *DenyList
}

type envOption func(*Config)

func newEnv(t *testing.T, handler http.Handler, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, res: newResolver(map[string][]netip.Addr{}), dial: newDialer(), rec: &recorder{}, clock: newClock()}
	if handler != nil {
		e.upstream = httptest.NewServer(handler)
		t.Cleanup(e.upstream.Close)
		to := e.upstream.Listener.Addr().String()
		for _, a := range []netip.Addr{pub1, pub2, pub6} {
			e.dial.route(netip.AddrPortFrom(a, 80), to)
			e.dial.route(netip.AddrPortFrom(a, 8080), to)
		}
	}
	cfg := Config{
		Resolver:   e.res,
		Dialer:     e.dial,
		Logger:     slog.New(slog.NewJSONHandler(e.rec, nil)),
		OnDecision: e.rec.onDecision,
		Now:        e.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.gw = New(cfg)
	t.Cleanup(e.gw.Close)
	var err error
	e.deny, err = CompileDeny(nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// host makes the fake resolver answer name with addrs.
func (e *env) host(name string, addrs ...netip.Addr) {
	e.res.mu.Lock()
	e.res.hosts[name] = addrs
	e.res.mu.Unlock()
}

// client builds a task client for a profile with the given egress.
func (e *env) client(eg policy.Egress, subrequests int64) *TaskClient {
	e.t.Helper()
	rules, err := Compile("test-profile", &policy.Profile{Egress: eg})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.gw.ForTask(Scope{
		Tenant: "acme", LeaseID: "lease-1", TaskID: "task-1",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Rules:       rules, Deny: e.deny, Subrequests: subrequests,
	})
}

func allow(hosts ...string) policy.Egress {
	var eg policy.Egress
	for _, h := range hosts {
		eg.Allow = append(eg.Allow, policy.AllowRule{Host: h, Ports: []int{80, 443, 8080}})
	}
	return eg
}

func get(url string) *fetch.Request {
	return &fetch.Request{Method: "GET", URL: url}
}

// wantClause checks a fetch error's clause.
func wantClause(t *testing.T, err error, clause string) {
	t.Helper()
	if err == nil {
		t.Fatalf("fetch succeeded, want clause %q", clause)
	}
	var fe *fetch.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %T %v is not a *fetch.Error", err, err)
	}
	if fe.Clause != clause {
		t.Fatalf("clause %q (%v), want %q", fe.Clause, err, clause)
	}
}

func mustFetch(t *testing.T, c *TaskClient, req *fetch.Request) *fetch.Response {
	t.Helper()
	resp, err := c.Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("fetch %s: %v", req.URL, err)
	}
	return resp
}
