package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/leash-dev/leash/fetch"
)

// Causes of a cancelled hop, told apart to name the timeout.
var (
	errTotalTimeout   = errors.New("total timeout")
	errHeaderTimeout  = errors.New("header timeout")
	errConnectTimeout = errors.New("connect timeout")
)

// connectTimeoutKey carries the profile's connect timeout to the dial,
// which net/http runs detached from the request's cancellation.
type connectTimeoutKey struct{}

// maxTries bounds the checked addresses tried when dials fail.
const maxTries = 4

// hopRequest is one request on the wire.
type hopRequest struct {
	method string
	target Target
	header http.Header
	// body is a fetch's body; stream a proxied request's (streamLen < 0
	// when unknown). At most one is set.
	body      []byte
	stream    io.Reader
	streamLen int64
}

// admitted is a request that passed every check before the network.
type admitted struct {
	rule   *rule
	bucket *bucket
	addrs  []netip.Addr // checked, in dial form, deduplicated
	// serve answers a drill destination in process (no addrs: nothing
	// is resolved or dialled).
	serve http.RoundTripper
}

// admit runs every check of one hop up to resolution, in order: deny list
// by name, allow rules, subrequests, rate and byte buckets, then
// resolution and the address checks. It fills d as it learns.
func (c *TaskClient) admit(ctx context.Context, d *Decision, method string, t Target, bodyLen int64) (*admitted, error) {
	m, err := c.scope.Rules.checkTarget(c.scope.Deny, method, t)
	if err != nil {
		return nil, err
	}
	d.Rule = m.Rule
	if !c.takeSubrequest() {
		return nil, refuse(ClauseSubrequests, "the task may make %d subrequests and has made them", c.scope.Subrequests)
	}
	ok := false
	defer func() {
		if !ok {
			c.subrequests.Add(-1)
		}
	}()
	now := c.g.now()
	bk, found := c.g.buckets.get(bucketKey{c.scope.Tenant, c.scope.Profile, m.rule.index, t.HostPort()}, m.rule, now)
	if !found {
		return nil, refuse(ClauseRate, "too many active destinations on this node; try again later")
	}
	if bk.req != nil && !bk.req.AllowN(now, 1) {
		return nil, refuse(ClauseRate, "rate limit of %s for %s: %g per second, burst %d", m.rule.pattern, t.HostPort(), m.rule.rate.PerSecond, m.rule.rate.Burst)
	}
	if bk.bytes != nil {
		if bk.bytes.TokensAt(now) < 1 {
			return nil, refuse(ClauseBytes, "bytes_per_minute of %s for %s is used up", m.rule.pattern, t.HostPort())
		}
		if bodyLen > 0 && !bk.bytes.AllowN(now, int(min(bodyLen, maxBurst))) {
			return nil, refuse(ClauseBytes, "request body of %d bytes is over what bytes_per_minute of %s leaves", bodyLen, m.rule.pattern)
		}
	}
	var addrs []netip.Addr
	if m.serve != nil {
		d.AddressRange = AddressDrill
	} else if addrs, err = c.resolve(ctx, d, t); err != nil {
		return nil, err
	}
	ok = true
	c.mu.Lock()
	c.dests[t.HostPort()] = struct{}{}
	c.mu.Unlock()
	return &admitted{rule: m.rule, bucket: bk, addrs: addrs, serve: m.serve}, nil
}

func (c *TaskClient) takeSubrequest() bool {
	for {
		n := c.subrequests.Load()
		if n >= c.scope.Subrequests {
			return false
		}
		if c.subrequests.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// maxAnswer bounds the addresses of one DNS answer the gateway accepts
// at all; a larger answer is refused whole (no DNS message over TCP holds
// many more A records, and none is honest).
const maxAnswer = 1024

// resolve returns the addresses to dial, every one checked: a literal
// host is its own address; a name is looked up once, and every address
// of the answer is checked before any is dialled: if one is not globally
// reachable or is denied, the hop is refused (a mixed answer is a
// rebinding attempt or a misconfiguration; either way nothing is
// guessed). Of a clean answer the first MaxAddresses distinct addresses
// are kept for dialling; the rest, checked too, are never dialled.
func (c *TaskClient) resolve(ctx context.Context, d *Decision, t Target) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if t.Addr.IsValid() {
		addrs = []netip.Addr{t.Addr}
	} else {
		timeout := policyDefaultConnect
		if c.scope.Rules != nil {
			timeout = c.scope.Rules.connect
		}
		lctx, cancel := context.WithTimeoutCause(ctx, timeout, errConnectTimeout)
		found, err := c.g.resolver.LookupNetIP(lctx, "ip", t.Host)
		cancel()
		if err != nil {
			if ctxErr := classifyErr(lctx, err); ClauseOf(ctxErr) == ClauseTimeout {
				return nil, refuse(ClauseTimeout, "resolving %s timed out", t.Host)
			}
			return nil, failure("resolve %s: %v", t.Host, err)
		}
		if len(found) == 0 {
			return nil, failure("resolve %s: no addresses", t.Host)
		}
		if len(found) > maxAnswer {
			return nil, failure("resolve %s: the answer has %d addresses; more than %d are refused", t.Host, len(found), maxAnswer)
		}
		addrs = found
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if cl := Classify(a); !cl.Global {
			d.Address, d.AddressRange = a.String(), cl.Name
			return nil, refuse(ClauseAddressPrivate, "%s is %s, which is not globally reachable (%s)", t.Host, a, cl.Name)
		}
		if e, ok := c.scope.Deny.MatchAddr(a); ok {
			d.Address = a.String()
			return nil, refuse(ClauseGlobalDeny, "%s is %s, on the global deny list (%s)", t.Host, a, e)
		}
		if da := dialAddr(a); len(out) < c.g.maxAddrs && !slices.Contains(out, da) {
			out = append(out, da)
		}
	}
	return out, nil
}

// do sends one hop: admit, then dial only checked addresses (the next one
// when a dial fails), with the header timeout running until the response
// headers arrive. On success the response body is bounded and metered and
// emits the hop's decision when it ends; on failure the decision is
// emitted here.
func (c *TaskClient) do(ctx context.Context, d *Decision, hr *hopRequest) (*http.Response, error) {
	bodyLen := int64(len(hr.body))
	adm, err := c.admit(ctx, d, hr.method, hr.target, bodyLen)
	if err != nil {
		return nil, c.finish(ctx, d, err)
	}
	rules := c.scope.Rules
	hctx, cancel := context.WithCancelCause(ctx)
	hctx = context.WithValue(hctx, connectTimeoutKey{}, rules.connect)
	timer := time.AfterFunc(rules.header, func() { cancel(errHeaderTimeout) })

	out := &sent{c: c}
	if hr.stream != nil {
		out.lim = adm.bucket.bytes
	}
	var resp *http.Response
	if adm.serve != nil {
		resp, err = adm.serve.RoundTrip(c.newRequest(hctx, hr, out))
	}
	for i, a := range adm.addrs {
		if i == maxTries {
			break
		}
		d.Address = a.String()
		req := c.newRequest(hctx, hr, out)
		tr := c.g.transports.get(transportKey{tenant: c.scope.Tenant, scheme: hr.target.Scheme, host: hr.target.Host, port: hr.target.Port, addr: a})
		resp, err = tr.RoundTrip(req)
		var de *dialError
		if err == nil || !errors.As(err, &de) || hctx.Err() != nil {
			break
		}
	}
	timer.Stop()
	if err != nil {
		d.BytesOut = out.n.Load()
		if e := out.err.Load(); e != nil {
			err = e
		} else {
			err = classifyErr(hctx, err)
		}
		cancel(nil)
		return nil, c.finish(ctx, d, err)
	}
	d.Status = resp.StatusCode
	limit := rules.maxResponseBytes
	if resp.ContentLength > limit && hr.method != "HEAD" {
		resp.Body.Close()
		cancel(nil)
		d.BytesOut = out.n.Load()
		return nil, c.finish(ctx, d, refuse(ClauseResponseSize, "Content-Length %d is over max_response_bytes %d", resp.ContentLength, limit))
	}
	stripHopByHop(resp.Header)
	resp.Body = &hopBody{c: c, ctx: ctx, hctx: hctx, cancel: cancel, rc: resp.Body, d: d, out: out, max: limit, lim: adm.bucket.bytes}
	return resp, nil
}

// newRequest builds the request for one try. The URL's host is the
// canonical host; the dial goes to the checked address through the
// transport the pool keeps for it.
func (c *TaskClient) newRequest(ctx context.Context, hr *hopRequest, out *sent) *http.Request {
	req := &http.Request{
		Method:     hr.method,
		URL:        hr.target.requestURL(),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hr.header.Clone(),
		Host:       hr.target.authority(),
	}
	switch {
	case hr.stream != nil:
		// The caller owns the stream: the transport must not close it,
		// so that a failed dial may retry with it.
		req.Body = io.NopCloser(&countingReader{r: hr.stream, out: out})
		if hr.streamLen > 0 {
			req.ContentLength = hr.streamLen
		}
	case len(hr.body) > 0:
		body := hr.body
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(&countingReader{r: bytes.NewReader(body), out: out}), nil
		}
		req.Body, _ = req.GetBody()
	}
	return req.WithContext(ctx)
}

// sent meters one hop's request body: bytes counted as the transport
// sends them and, for streamed bodies, taken from the bytes bucket.
type sent struct {
	c   *TaskClient
	lim *rate.Limiter // nil: not metered here (a fetch body is charged up front)
	n   atomic.Int64
	err atomic.Pointer[fetch.Error]
}

// countingReader reads a request body for one try.
type countingReader struct {
	r   io.Reader
	out *sent
}

func (r *countingReader) Read(p []byte) (int, error) {
	if e := r.out.err.Load(); e != nil {
		return 0, e
	}
	n, err := r.r.Read(p)
	if n > 0 {
		if r.out.lim != nil && !takeBytes(r.out.lim, r.out.c.g.now(), n) {
			e := refuse(ClauseBytes, "request body ran over bytes_per_minute")
			r.out.err.Store(e)
			return 0, e
		}
		r.out.n.Add(int64(n))
		r.out.c.bytesOut.Add(int64(n))
	}
	return n, err
}

// takeBytes takes n bytes from a bytes bucket. When they are not there,
// the bytes that did arrive still count: the bucket is emptied, so the
// next request waits for the refill.
func takeBytes(lim *rate.Limiter, now time.Time, n int) bool {
	if lim.AllowN(now, n) {
		return true
	}
	if tokens := lim.TokensAt(now); tokens >= 1 {
		lim.AllowN(now, int(tokens))
	}
	return false
}

// hopBody bounds and meters a response body and emits the hop's decision
// when the body ends: at EOF, on the first error, or on Close.
type hopBody struct {
	c      *TaskClient
	ctx    context.Context // the request's, for the decision
	hctx   context.Context // the hop's, to name a timeout
	cancel context.CancelCauseFunc
	rc     io.ReadCloser
	d      *Decision
	out    *sent
	max    int64
	lim    *rate.Limiter

	mu   sync.Mutex
	n    int64
	err  error
	done bool
}

func (b *hopBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if room := b.max - b.n + 1; int64(len(p)) > room {
		p = p[:room] // at most one byte past the bound, to see it crossed
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		if b.n+int64(n) > b.max {
			n = int(b.max - b.n)
			b.count(n)
			b.fail(refuse(ClauseResponseSize, "response body is larger than max_response_bytes %d; cut", b.max))
			return n, b.err
		}
		if b.lim != nil && !takeBytes(b.lim, b.c.g.now(), n) {
			b.fail(refuse(ClauseBytes, "response ran over bytes_per_minute of %s; cut", b.d.Rule))
			return 0, b.err
		}
		b.count(n)
	}
	switch {
	case err == io.EOF:
		b.end(nil)
	case err != nil:
		b.fail(classifyErr(b.hctx, err))
		return n, b.err
	}
	return n, err
}

func (b *hopBody) count(n int) {
	b.n += int64(n)
	b.c.bytesIn.Add(int64(n))
}

// fail records the body's error and ends the hop with it. Called with
// mu held.
func (b *hopBody) fail(err error) {
	b.err = err
	b.end(err)
}

// end emits the hop's decision once. Called with mu held.
func (b *hopBody) end(err error) {
	if b.done {
		return
	}
	b.done = true
	b.cancel(nil)
	b.d.BytesIn = b.n
	b.d.BytesOut = b.out.n.Load()
	b.c.finish(b.ctx, b.d, err)
}

func (b *hopBody) Close() error {
	err := b.rc.Close()
	b.mu.Lock()
	b.end(b.err)
	b.mu.Unlock()
	return err
}

// classifyErr names what ended a hop: a refusal passes through, a
// timeout (connect, header, total, or the task's deadline) is clause
// timeout, anything else is a network failure.
func classifyErr(ctx context.Context, err error) error {
	var fe *fetch.Error
	if errors.As(err, &fe) {
		return fe
	}
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errHeaderTimeout):
		return refuse(ClauseTimeout, "no response headers within header_ms")
	case errors.Is(cause, errTotalTimeout), errors.Is(err, errTotalTimeout):
		return refuse(ClauseTimeout, "request took longer than total_ms")
	case errors.Is(err, errConnectTimeout), errors.Is(cause, errConnectTimeout):
		return refuse(ClauseTimeout, "connect took longer than connect_ms")
	case errors.Is(cause, context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return refuse(ClauseTimeout, "the task's deadline passed")
	case isTimeout(err):
		return refuse(ClauseTimeout, "%v", err)
	case errors.Is(cause, context.Canceled), errors.Is(err, context.Canceled):
		return failure("request cancelled")
	}
	return failure("%v", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dialError is a failed dial: nothing was sent, so the next checked
// address may be tried.
type dialError struct {
	addr netip.AddrPort
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

// dial connects to exactly one checked address.
func (g *Gateway) dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	if cl := Classify(ap.Addr()); !cl.Global {
		// Unreachable: only checked addresses get a transport. Kept as
		// a last line of defence.
		return nil, &dialError{addr: ap, err: fmt.Errorf("refusing to dial %s (%s)", ap.Addr(), cl.Name)}
	}
	timeout, _ := ctx.Value(connectTimeoutKey{}).(time.Duration)
	if timeout <= 0 {
		timeout = policyDefaultConnect
	}
	dctx, cancel := context.WithTimeoutCause(ctx, timeout, errConnectTimeout)
	defer cancel()
	conn, err := g.dialer.DialContext(dctx, "tcp", ap.String())
	if err != nil {
		if errors.Is(context.Cause(dctx), errConnectTimeout) {
			err = fmt.Errorf("%w: %v", errConnectTimeout, err)
		}
		return nil, &dialError{addr: ap, err: err}
	}
	return conn, nil
}

// transportKey names one pool of connections: a tenant's, to one
// destination, at one checked address. Connections are never shared
// across tenants, hosts or addresses, so a pooled connection always goes
// where the current hop's check said it may.
type transportKey struct {
	tenant string
	scheme string
	host   string
	port   int
	addr   netip.Addr
}

// transportPool keeps a transport per key, least recently used evicted
// first (its idle connections closed).
type transportPool struct {
	g     *Gateway
	mu    sync.Mutex // one transport per key, even when two hops race
	cache *lru.Cache[transportKey, *http.Transport]
}

func newTransportPool(g *Gateway, limit int) *transportPool {
	c, _ := lru.NewWithEvict(max(limit, 1), func(_ transportKey, tr *http.Transport) { tr.CloseIdleConnections() })
	return &transportPool{g: g, cache: c}
}

func (p *transportPool) get(k transportKey) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tr, ok := p.cache.Get(k); ok {
		return tr
	}
	ap := netip.AddrPortFrom(k.addr, uint16(k.port))
	tr := &http.Transport{
		Proxy: nil, // never an environment proxy
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return p.g.dial(ctx, ap)
		},
		TLSClientConfig:        p.g.tlsConfig.Clone(),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           8,
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        30 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true, // the guest sees the bytes the server sent
	}
	p.cache.Add(k, tr)
	return tr
}

func (p *transportPool) closeAll() {
	for _, tr := range p.cache.Values() {
		tr.CloseIdleConnections()
	}
}
