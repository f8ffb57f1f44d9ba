package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/fetch"
	"github.com/leash-dev/leash/policy"
)

// Resolver looks up a host's addresses. *net.Resolver meets it; tests
// use fakes. network is "ip".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens a connection to an address the gateway has checked.
// *net.Dialer meets it; tests use a dialer that sends public test
// addresses to loopback servers.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Config configures a Gateway. Zero fields take defaults.
type Config struct {
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
	// Dialer defaults to a *net.Dialer with keep-alives.
	Dialer Dialer
	// Logger receives the canonical decision line; default slog.Default().
	Logger *slog.Logger
	// OnDecision, when set, is called once per decision, synchronously,
	// with the request's context.
	OnDecision func(ctx context.Context, d Decision)
	// Now is the clock of the rate and byte buckets; default time.Now.
	Now func() time.Time
	// TLSConfig is cloned for outbound TLS (root CAs in tests); nil
	// uses the system roots. ServerName is always the target host.
	TLSConfig *tls.Config
	// MaxBuckets bounds the tenant × destination buckets held (default
	// 65536).
	MaxBuckets int
	// MaxTransports bounds the pooled connection sets, one per tenant ×
	// destination × checked address (default 256).
	MaxTransports int
	// MaxAddresses bounds the distinct checked addresses of one answer
	// kept for dialling (default 16). Every address of the answer is
	// checked first, however many there are (an answer of more than 1024
	// is refused); those past the bound are never dialled.
	MaxAddresses int
}

// Gateway is the one egress path of a node: every outbound request of a
// sandboxed task (TaskClient) and of proxy clients (Proxy) goes through
// it. It is safe for concurrent use.
type Gateway struct {
	resolver   Resolver
	dialer     Dialer
	log        *slog.Logger
	onDecision func(ctx context.Context, d Decision)
	now        func() time.Time
	tlsConfig  *tls.Config
	maxAddrs   int
	buckets    *buckets
	transports *transportPool
}

// New builds a Gateway.
func New(cfg Config) *Gateway {
	g := &Gateway{
		resolver:   cfg.Resolver,
		dialer:     cfg.Dialer,
		log:        cfg.Logger,
		onDecision: cfg.OnDecision,
		now:        cfg.Now,
		tlsConfig:  cfg.TLSConfig,
		maxAddrs:   cfg.MaxAddresses,
	}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	if g.dialer == nil {
		g.dialer = &net.Dialer{KeepAlive: 30 * time.Second}
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("component", "egress")
	if g.now == nil {
		g.now = time.Now
	}
	if g.maxAddrs <= 0 {
		g.maxAddrs = 16
	}
	maxBuckets := cfg.MaxBuckets
	if maxBuckets <= 0 {
		maxBuckets = 1 << 16
	}
	maxTransports := cfg.MaxTransports
	if maxTransports <= 0 {
		maxTransports = 256
	}
	g.buckets = newBuckets(maxBuckets)
	g.transports = newTransportPool(g, maxTransports)
	return g
}

// Close closes idle pooled connections. In-flight requests finish.
func (g *Gateway) Close() { g.transports.closeAll() }

// Scope is what one task (or one lease, in proxy mode) may do: who it is
// for and which compiled policy applies.
type Scope struct {
	Tenant      string
	LeaseID     string
	TaskID      string
	Traceparent string
	// Profile names the profile; empty means Rules.Profile().
	Profile string
	// Rules are the profile's compiled egress rules; nil refuses every
	// destination (profile.default_deny).
	Rules *Rules
	// Deny is the global deny list; nil denies nothing more.
	Deny *DenyList
	// Subrequests is how many outbound requests (each redirect hop and
	// each CONNECT counts) the task may make. Zero allows none.
	Subrequests int64
	// Expires, when set, is when the lease ends; proxy mode forgets the
	// scope then.
	Expires time.Time
}

// TaskClient is a task's egress: the sandbox's Fetcher, bound to one Scope,
// metering what the task does. It is safe for concurrent use.
type TaskClient struct {
	g     *Gateway
	scope Scope

	subrequests atomic.Int64
	bytesOut    atomic.Int64
	bytesIn     atomic.Int64
	blocked     atomic.Int64

	mu    sync.Mutex
	dests map[string]struct{}
}

var (
	_ Resolver = (*net.Resolver)(nil)
	_ Dialer   = (*net.Dialer)(nil)
)

// ForTask returns the client a task fetches through.
func (g *Gateway) ForTask(s Scope) *TaskClient {
	if s.Profile == "" && s.Rules != nil {
		s.Profile = s.Rules.Profile()
	}
	return &TaskClient{g: g, scope: s, dests: map[string]struct{}{}}
}

// Scope returns the scope the client was built with.
func (c *TaskClient) Scope() Scope { return c.scope }

// Stats is what a task used; it feeds the task's usage and receipt.
type Stats struct {
	BytesOut    int64
	BytesIn     int64
	Subrequests int64
	// Destinations are the host:port pairs contacted, sorted.
	Destinations []string
	// Blocked counts refused (or cut) requests.
	Blocked int64
}

// Stats returns what the task used so far.
func (c *TaskClient) Stats() Stats {
	c.mu.Lock()
	dests := make([]string, 0, len(c.dests))
	for d := range c.dests {
		dests = append(dests, d)
	}
	c.mu.Unlock()
	slices.Sort(dests)
	return Stats{
		BytesOut:     c.bytesOut.Load(),
		BytesIn:      c.bytesIn.Load(),
		Subrequests:  c.subrequests.Load(),
		Destinations: dests,
		Blocked:      c.blocked.Load(),
	}
}

func (c *TaskClient) decision(mode string) Decision {
	return Decision{
		Time:        c.g.now(),
		Mode:        mode,
		Tenant:      c.scope.Tenant,
		LeaseID:     c.scope.LeaseID,
		TaskID:      c.scope.TaskID,
		Traceparent: c.scope.Traceparent,
		Profile:     c.scope.Profile,
	}
}

func (d *Decision) setTarget(t Target) {
	d.URL = t.Redacted()
	d.Host = t.Host
	d.Port = t.Port
	d.Destination = t.HostPort()
}

// finish completes d with err (nil: allowed and completed) and emits it.
// It returns err as a *fetch.Error.
func (c *TaskClient) finish(ctx context.Context, d *Decision, err error) error {
	d.Duration = c.g.now().Sub(d.Time)
	var fe *fetch.Error
	switch {
	case err == nil:
		d.Outcome = OutcomeAllow
	case errors.As(err, &fe) && fe.Clause != "":
		d.Outcome, d.Clause, d.Reason = OutcomeBlock, fe.Clause, fe.Message
		c.blocked.Add(1)
	default:
		if fe == nil {
			fe = failure("%v", err)
		}
		d.Outcome, d.Error = OutcomeError, fe.Message
	}
	c.g.emit(ctx, *d)
	if fe == nil {
		return nil
	}
	return fe
}

// Fetch performs one outbound request for the task, following
// redirects (each hop checked again), and returns the response with its
// body read and bounded. Refusals are *fetch.Error naming the
// clause; network failures are *fetch.Error without one.
func (c *TaskClient) Fetch(ctx context.Context, fr *fetch.Request) (*fetch.Response, error) {
	d := c.decision(ModeFetch)
	if fr == nil {
		return nil, c.finish(ctx, &d, refuse(ClauseRequestInvalid, "no request"))
	}
	method, err := normalizeMethod(fr.Method)
	d.Method = method
	if err != nil {
		d.Method = fr.Method
		return nil, c.finish(ctx, &d, err)
	}
	t, err := ParseTarget(fr.URL)
	if err != nil {
		return nil, c.finish(ctx, &d, err)
	}
	d.setTarget(t)
	header, err := outboundHeader(fr.Headers, t, c.scope.Traceparent, true)
	if err != nil {
		return nil, c.finish(ctx, &d, err)
	}
	rules := c.scope.Rules
	total, maxRedirects := policyDefaultTotal, 0
	if rules != nil {
		total, maxRedirects = rules.total, rules.maxRedirects
	}
	ctx, cancel := context.WithTimeoutCause(ctx, total, errTotalTimeout)
	defer cancel()

	body := fr.Body
	for hop := 0; ; hop++ {
		d := c.decision(ModeFetch)
		d.Method, d.Hop = method, hop
		d.setTarget(t)
		resp, err := c.do(ctx, &d, &hopRequest{method: method, target: t, header: header, body: body})
		if err != nil {
			return nil, err
		}
		loc := resp.Header.Get("Location")
		if !isRedirect(resp.StatusCode) || loc == "" {
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, asFetchError(err)
			}
			return &fetch.Response{Status: resp.StatusCode, Headers: resp.Header, Body: data, URL: t.String()}, nil
		}
		// A redirect: read a little of its body so the connection may be
		// reused, and close it (this emits the hop's decision).
		_, err = io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, asFetchError(err)
		}
		next := c.decision(ModeFetch)
		next.Method, next.Hop = method, hop+1
		nt, err := parseTarget(loc, &t)
		if err != nil {
			return nil, c.finish(ctx, &next, err)
		}
		next.setTarget(nt)
		if hop >= maxRedirects {
			return nil, c.finish(ctx, &next, refuse(ClauseRedirects, "more than %d redirects", maxRedirects))
		}
		switch code := resp.StatusCode; {
		case code == http.StatusSeeOther && method != "HEAD",
			(code == http.StatusMovedPermanently || code == http.StatusFound) && method == "POST":
			method, body = "GET", nil
			for _, h := range [...]string{"Content-Type", "Content-Encoding", "Content-Language", "Content-Location"} {
				header.Del(h)
			}
		}
		if nt.Origin() != t.Origin() {
			// Credentials never follow a request to another origin, and
			// stay dropped for the rest of the chain.
			for _, h := range [...]string{"Authorization", "Cookie", "Cookie2"} {
				header.Del(h)
			}
		}
		t = nt
	}
}

// Timeouts used when a scope has no rules (every request is refused
// before the network anyway).
var (
	policyDefaultTotal   = ms(policy.DefaultTotalMs)
	policyDefaultConnect = ms(policy.DefaultConnectMs)
)

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

func asFetchError(err error) error {
	var fe *fetch.Error
	if errors.As(err, &fe) {
		return fe
	}
	return failure("%v", err)
}
