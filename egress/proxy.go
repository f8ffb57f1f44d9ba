package egress

import (
	"bytes"
	"container/list"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/api"
)

// Authenticator turns the lease token of a proxy client into the scope it
// may use. The node implements it with its lease verifier (signature,
// expiry, revocation) and the lease's profile.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Scope, error)
}

// Proxy serves the gateway to agent runners outside leash: absolute-form
// HTTP requests and CONNECT tunnels, each authenticated by a lease in
// Proxy-Authorization ("Bearer <lease>", or Basic with the lease as the
// password, for clients that only speak Basic to proxies). The lease's
// profile applies through the same code path as a task's fetch: the same
// checks, limits, decisions and clauses. Requests and tunnels of one
// lease share one TaskClient, so subrequests count per lease.
//
// A Proxy is an http.Handler; serve it on its own listener. Close ends
// open tunnels.
type Proxy struct {
	g    *Gateway
	auth Authenticator
	max  int

	// helloTimeout and maxHello bound the wait for a tunnel's
	// ClientHello (within the tunnel's total_ms) and its size.
	helloTimeout time.Duration
	maxHello     int
	// skipCheck turns the tunnel check off; only the benchmark build
	// (-tags leashbench, benchknob.go) can set it.
	skipCheck bool

	mu      sync.Mutex
	clients map[string]*list.Element // lease id → *proxyClient
	lru     *list.List
	tunnels map[*tunnel]struct{}
	closed  bool
}

type proxyClient struct {
	key string
	c   *TaskClient
}

// DefaultHelloTimeout bounds the wait, after "200 Connection
// established", for a tunnel's ClientHello to be complete.
const DefaultHelloTimeout = 10 * time.Second

// maxProxyClients bounds the leases a Proxy keeps counters for; the
// least recently used are forgotten first, expired ones at once.
const maxProxyClients = 4096

// NewProxy builds the proxy handler over g.
func NewProxy(g *Gateway, auth Authenticator) *Proxy {
	return &Proxy{
		g: g, auth: auth, max: maxProxyClients,
		helloTimeout: DefaultHelloTimeout, maxHello: DefaultMaxHelloBytes,
		clients: map[string]*list.Element{}, lru: list.New(), tunnels: map[*tunnel]struct{}{},
	}
}

// Stats returns what a lease used through the proxy.
func (p *Proxy) Stats(leaseID string) (Stats, bool) {
	p.mu.Lock()
	el, ok := p.clients[leaseID]
	p.mu.Unlock()
	if !ok {
		return Stats{}, false
	}
	return el.Value.(*proxyClient).c.Stats(), true
}

// Close ends every open tunnel. Serving stops with the http.Server.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	ts := make([]*tunnel, 0, len(p.tunnels))
	for t := range p.tunnels {
		ts = append(ts, t)
	}
	p.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
}

func (p *Proxy) client(s Scope) *TaskClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.g.now()
	if el, ok := p.clients[s.LeaseID]; ok && s.LeaseID != "" {
		pc := el.Value.(*proxyClient)
		old := pc.c.scope
		if old.Rules == s.Rules && old.Deny == s.Deny && old.Tenant == s.Tenant && old.Subrequests == s.Subrequests {
			p.lru.MoveToFront(el)
			return pc.c
		}
		// The lease's policy changed (a new bundle): new scope, same
		// counters.
		c := p.g.ForTask(s)
		c.carry(pc.c)
		pc.c = c
		p.lru.MoveToFront(el)
		return c
	}
	c := p.g.ForTask(s)
	if s.LeaseID == "" {
		return c
	}
	// At the bound, forget expired leases, then the least recently used.
	if p.lru.Len() >= p.max {
		for el := p.lru.Front(); el != nil; {
			next := el.Next()
			if pc := el.Value.(*proxyClient); !pc.c.scope.Expires.IsZero() && now.After(pc.c.scope.Expires) {
				p.lru.Remove(el)
				delete(p.clients, pc.key)
			}
			el = next
		}
	}
	for p.lru.Len() >= p.max {
		el := p.lru.Back()
		p.lru.Remove(el)
		delete(p.clients, el.Value.(*proxyClient).key)
	}
	p.clients[s.LeaseID] = p.lru.PushFront(&proxyClient{key: s.LeaseID, c: c})
	return c
}

// carry moves the counters of old into c.
func (c *TaskClient) carry(old *TaskClient) {
	c.subrequests.Store(old.subrequests.Load())
	c.bytesOut.Store(old.bytesOut.Load())
	c.bytesIn.Store(old.bytesIn.Load())
	c.blocked.Store(old.blocked.Load())
	old.mu.Lock()
	for d := range old.dests {
		c.dests[d] = struct{}{}
	}
	old.mu.Unlock()
}

// ServeHTTP authenticates the client, then proxies an absolute-form
// request or opens a CONNECT tunnel.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode := ModeProxy
	if r.Method == http.MethodConnect {
		mode = ModeConnect
	}
	token, ok := proxyToken(r.Header.Get("Proxy-Authorization"))
	if !ok {
		p.authFailed(w, r, mode, "missing or malformed Proxy-Authorization; send Bearer <lease token>", nil)
		return
	}
	scope, err := p.auth.Authenticate(r.Context(), token)
	if err != nil {
		p.authFailed(w, r, mode, "lease refused", err)
		return
	}
	c := p.client(scope)
	if mode == ModeConnect {
		p.connect(c, w, r)
		return
	}
	c.proxyHTTP(w, r)
}

// proxyToken extracts the lease token from Proxy-Authorization.
func proxyToken(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		if pass == "" {
			pass = user
		}
		return pass, pass != ""
	}
	return "", false
}

func (p *Proxy) authFailed(w http.ResponseWriter, r *http.Request, mode, msg string, err error) {
	d := Decision{Time: p.g.now(), Mode: mode, Method: r.Method, Destination: r.Host}
	code, message := ErrorCode(ClauseProxyAuth), msg
	if e, ok := api.AsError(err); ok {
		code, message = e.Code, e.Message
	}
	d.Outcome, d.Clause, d.Reason = OutcomeBlock, ClauseProxyAuth, message
	p.g.emit(r.Context(), d)
	w.Header().Set("Proxy-Authenticate", `Bearer realm="leash-egress"`)
	w.Header().Add("Proxy-Authenticate", `Basic realm="leash-egress"`)
	writeJSONError(w, http.StatusProxyAuthRequired, ClauseProxyAuth, code, message)
}

// writeRefusal answers a refused or failed proxy request.
func writeRefusal(w http.ResponseWriter, err error) {
	clause := ClauseOf(err)
	if clause == ClauseRate {
		w.Header().Set("Retry-After", "1")
	}
	writeJSONError(w, StatusFor(clause), clause, ErrorCode(clause), err.Error())
}

func writeJSONError(w http.ResponseWriter, status int, clause, code, message string) {
	h := w.Header()
	if clause != "" {
		h.Set("Leash-Egress-Clause", clause)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	// A refusal ends the connection: nothing pipelined behind a refused
	// request is read, let alone served. net/http closes it after this
	// response.
	h.Set("Connection", "close")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: code, Message: message}})
}

// proxyHTTP forwards one absolute-form request. Redirects are not
// followed: the client gets the 3xx and its next request is checked as a
// new one.
func (c *TaskClient) proxyHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := c.decision(ModeProxy)
	d.Method = r.Method
	if tp := r.Header.Get("Traceparent"); tp != "" {
		d.Traceparent = tp
	}
	fail := func(err error) {
		writeRefusal(w, c.finish(ctx, &d, err))
	}
	if !strings.Contains(r.RequestURI, "://") {
		fail(refuse(ClauseURLInvalid, "not a proxy request: the request target must be an absolute http:// or https:// URL"))
		return
	}
	method, err := normalizeMethod(r.Method)
	if err != nil {
		fail(err)
		return
	}
	d.Method = method
	t, err := ParseTarget(r.RequestURI)
	if err != nil {
		fail(err)
		return
	}
	d.setTarget(t)
	header, err := outboundHeader(r.Header, t, c.scope.Traceparent, false)
	if err != nil {
		fail(err)
		return
	}
	total := policyDefaultTotal
	if c.scope.Rules != nil {
		total = c.scope.Rules.total
	}
	ctx, cancel := context.WithTimeoutCause(ctx, total, errTotalTimeout)
	defer cancel()
	hr := &hopRequest{method: method, target: t, header: header}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		hr.stream, hr.streamLen = r.Body, r.ContentLength
	}
	resp, err := c.do(ctx, &d, hr)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		// The decision is out (the body emitted it). Cut the response so
		// the client cannot take a truncated body for a whole one.
		resp.Body.Close()
		panic(http.ErrAbortHandler)
	}
}

// connect opens a CONNECT tunnel to an allowed host:port, after the same
// checks as any request (with method CONNECT, allowed only by rules
// without a methods restriction, to 443 only by rules without ports) and
// the address checks on the target; then the start of the tunnel is
// checked (checkTunnelStart) before any of its bytes go on.
// Bytes both ways are metered; bytes from the target count against
// max_response_bytes; total_ms bounds the tunnel's life.
func (p *Proxy) connect(c *TaskClient, w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := c.decision(ModeConnect)
	d.Method = http.MethodConnect
	d.URL = r.RequestURI
	fail := func(err error) {
		writeRefusal(w, c.finish(ctx, &d, err))
	}
	t, err := parseConnectTarget(r.RequestURI)
	if err != nil {
		fail(err)
		return
	}
	d.Host, d.Port, d.Destination, d.URL = t.Host, t.Port, t.HostPort(), t.HostPort()
	rules := c.scope.Rules
	total, connect := policyDefaultTotal, policyDefaultConnect
	if rules != nil {
		total, connect = rules.total, rules.connect
	}
	ctx, cancel := context.WithTimeoutCause(ctx, total, errTotalTimeout)
	defer cancel()
	adm, err := c.admit(ctx, &d, http.MethodConnect, t, 0)
	if err != nil {
		fail(err)
		return
	}
	dctx := context.WithValue(ctx, connectTimeoutKey{}, connect)
	var up net.Conn
	for i, a := range adm.addrs {
		if i == maxTries {
			break
		}
		d.Address = a.String()
		up, err = c.g.dial(dctx, netip.AddrPortFrom(a, uint16(t.Port)))
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		fail(classifyErr(ctx, err))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		fail(failure("cannot take over the client connection: %v", err))
		return
	}
	// The connection is ours now: the tunnel lives by its own deadline
	// (total_ms, within the request's) and Proxy.Close, not by the
	// server's request context.
	deadline, _ := ctx.Deadline()
	tctx, tcancel := context.WithDeadlineCause(context.WithoutCancel(ctx), deadline, errTotalTimeout)
	defer tcancel()
	tn := &tunnel{lease: c.scope.LeaseID, client: conn, up: up}
	if !p.track(tn) {
		tn.close()
		c.finish(tctx, &d, failure("proxy is closing"))
		return
	}
	defer p.untrack(tn)
	d.Status = http.StatusOK
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		tn.close()
		c.finish(tctx, &d, failure("write to client: %v", err))
		return
	}
	// Nothing reaches the target before the start of the tunnel passed
	// the check: the ClientHello (with whatever the client sent along
	// with the CONNECT) is read, checked, then replayed.
	var fromClient io.Reader = brw.Reader
	if !p.skipCheck {
		first, err := p.checkTunnelStart(tctx, tn, brw.Reader, &d, t)
		if err != nil || first == nil {
			// Refused, or the client closed the tunnel without sending
			// a byte: nothing went on.
			tn.close()
			c.finish(tctx, &d, err)
			return
		}
		fromClient = io.MultiReader(bytes.NewReader(first), brw.Reader)
	}
	err = tn.run(tctx, c, fromClient, adm, rules.maxResponseBytes)
	d.BytesOut, d.BytesIn = tn.out.Load(), tn.in.Load()
	c.finish(tctx, &d, err)
}

func (p *Proxy) track(t *tunnel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.tunnels[t] = struct{}{}
	return true
}

// CloseLease ends every open tunnel of a lease and forgets the lease's
// counters: the node calls it when the lease is revoked (a new CONNECT
// under it is refused by the lease check). It returns how many tunnels it
// closed.
func (p *Proxy) CloseLease(leaseID string) int {
	p.mu.Lock()
	var ts []*tunnel
	for t := range p.tunnels {
		if t.lease == leaseID {
			ts = append(ts, t)
		}
	}
	if el, ok := p.clients[leaseID]; ok {
		p.lru.Remove(el)
		delete(p.clients, leaseID)
	}
	p.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
	return len(ts)
}

// Leases lists the leases with open tunnels or a cached client here, for a
// node that must check them again (after a snapshot restore).
func (p *Proxy) Leases() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for t := range p.tunnels {
		add(t.lease)
	}
	for id := range p.clients {
		add(id)
	}
	return out
}

func (p *Proxy) untrack(t *tunnel) {
	p.mu.Lock()
	delete(p.tunnels, t)
	p.mu.Unlock()
}

// parseConnectTarget parses a CONNECT request target: host:port, the port
// written, with the strict authority rules of URLs.
func parseConnectTarget(a string) (Target, error) {
	if a == "" || strings.ContainsAny(a, `/?#\@`) {
		return Target{}, refuse(ClauseURLInvalid, "CONNECT target %q is not host:port", a)
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 || i < strings.LastIndexByte(a, ']') {
		return Target{}, refuse(ClauseURLInvalid, "CONNECT target %q has no port", a)
	}
	t, err := ParseTarget("https://" + a + "/")
	if err != nil {
		return Target{}, err
	}
	return t, nil
}

// tunnel is one CONNECT tunnel.
type tunnel struct {
	lease      string // the lease it runs under
	client, up net.Conn
	once       sync.Once
	closing    atomic.Bool
	out, in    atomic.Int64
}

func (t *tunnel) close() {
	t.once.Do(func() {
		t.closing.Store(true)
		t.client.Close()
		t.up.Close()
	})
}

// run copies both ways until either side ends, a limit is hit, or ctx
// ends. It returns the refusal that cut the tunnel, if any.
func (t *tunnel) run(ctx context.Context, c *TaskClient, clientR io.Reader, adm *admitted, maxIn int64) error {
	if dl, ok := ctx.Deadline(); ok {
		t.client.SetDeadline(dl)
		t.up.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, t.close)
	defer stop()
	lim := adm.bucket.bytes
	upDone := make(chan error, 1)
	go func() {
		err := pump(t.up, clientR, func(n int) (int, error) {
			if lim != nil && !takeBytes(lim, c.g.now(), n) {
				return 0, refuse(ClauseBytes, "tunnel ran over bytes_per_minute; cut")
			}
			t.out.Add(int64(n))
			c.bytesOut.Add(int64(n))
			return n, nil
		})
		if err == nil {
			// The client is done sending; let the response finish.
			if cw, ok := t.up.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			} else {
				t.close()
			}
		} else {
			t.close()
		}
		upDone <- err
	}()
	downErr := pump(t.client, t.up, func(n int) (int, error) {
		if got := t.in.Load(); got+int64(n) > maxIn {
			k := int(maxIn - got)
			t.in.Add(int64(k))
			c.bytesIn.Add(int64(k))
			return k, refuse(ClauseResponseSize, "tunnel received more than max_response_bytes %d; cut", maxIn)
		}
		if lim != nil && !takeBytes(lim, c.g.now(), n) {
			return 0, refuse(ClauseBytes, "tunnel ran over bytes_per_minute; cut")
		}
		t.in.Add(int64(n))
		c.bytesIn.Add(int64(n))
		return n, nil
	})
	closing := t.closing.Load()
	t.close()
	upErr := <-upDone
	for _, err := range []error{downErr, upErr} {
		if ClauseOf(err) != "" {
			return err
		}
	}
	if ctx.Err() != nil {
		return classifyErr(ctx, ctx.Err())
	}
	for _, err := range []error{downErr, upErr} {
		if isTimeout(err) {
			return refuse(ClauseTimeout, "tunnel took longer than total_ms")
		}
	}
	if downErr != nil && !closing && !errors.Is(downErr, net.ErrClosed) {
		return failure("tunnel: %v", downErr)
	}
	return nil
}

// pump copies src to dst, asking meter how much of each read may pass.
// It returns nil at EOF.
func pump(dst io.Writer, src io.Reader, meter func(n int) (int, error)) error {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			k, merr := meter(n)
			if k > 0 {
				if _, werr := dst.Write(buf[:k]); werr != nil {
					return werr
				}
			}
			if merr != nil {
				return merr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
