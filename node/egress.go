package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/egress"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// EgressOptions are seams for tests: where the gateway resolves names,
// how it dials checked addresses, and which roots it trusts for TLS.
// Production leaves them nil.
type EgressOptions struct {
	Resolver  egress.Resolver
	Dialer    egress.Dialer
	TLSConfig *tls.Config
}

// egressState is the node's gateway, the compiled rules of the profiles
// leases name, and the global deny list of the active bundle.
type egressState struct {
	gw    *egress.Gateway
	deny  *egress.DenyList
	proxy atomic.Pointer[egress.Proxy] // when the proxy serves
	mu    sync.Mutex
	rules map[string]*egress.Rules // policy digest + "\x00" + profile
}

func (n *Node) openEgress() error {
	o := n.cfg.Egress
	n.egress = &egressState{
		gw: egress.New(egress.Config{
			Resolver:   o.Resolver,
			Dialer:     o.Dialer,
			TLSConfig:  o.TLSConfig,
			Logger:     n.cfg.Logger.With("component", "egress"),
			OnDecision: n.onEgressDecision,
		}),
		rules: map[string]*egress.Rules{},
	}
	deny, err := egress.CompileDeny(nil)
	if err != nil {
		return err
	}
	n.egress.deny = deny
	return nil
}

// refreshDeny makes the global deny list that of the active bundle plus
// the destinations the runbook blocked (runbook.go). It runs at start,
// whenever a bundle is activated and whenever a block changes; running
// tasks see the new list at their next request (or hop).
func (n *Node) refreshDeny() {
	_, b, err := n.state.ActiveBundle(Env)
	if err != nil {
		return
	}
	if err := n.egress.deny.Replace(append(slices.Clone(b.Deny), n.runbookDeny()...)); err != nil {
		n.log.Error("global deny list refused", "err", err)
	}
}

// rulesFor compiles (once) the egress rules of a lease's profile.
func (n *Node) rulesFor(digest, name string, p *policy.Profile) (*egress.Rules, error) {
	key := digest + "\x00" + name
	e := n.egress
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.rules[key]; ok {
		return r, nil
	}
	r, err := egress.Compile(name, p)
	if err != nil {
		return nil, fmt.Errorf("compile egress rules of %s: %w", name, err)
	}
	if len(e.rules) > 1024 {
		clear(e.rules)
	}
	e.rules[key] = r
	return r, nil
}

// fetcherFor builds the task's view of the gateway.
func (n *Node) fetcherFor(l *consensus.Lease, p *policy.Profile, taskID, traceparent string) (*egress.TaskClient, error) {
	rules, err := n.rulesFor(l.PolicyDigest, l.Profile, p)
	if err != nil {
		return nil, err
	}
	return n.egress.gw.ForTask(egress.Scope{
		Tenant: l.Tenant, LeaseID: l.ID, TaskID: taskID, Traceparent: traceparent, Profile: l.Profile,
		Rules: rules, Deny: n.egress.deny, Subrequests: p.Limits.Subrequests, Expires: l.Expires(),
	}), nil
}

// onEgressDecision receives every gateway decision (the gateway already
// logged it); the ledger and events hook in here.
func (n *Node) onEgressDecision(ctx context.Context, d egress.Decision) {
	if d.Blocked() && d.TaskID != "" {
		n.tasks.addBlocked(d.TaskID, d.Destination, d.Clause)
	}
	n.observeDecision(ctx, &d)
}

// Authenticate implements egress.Authenticator for proxy mode: a lease
// token becomes the scope of its profile.
func (n *Node) Authenticate(ctx context.Context, token string) (egress.Scope, error) {
	// A lease is honoured only on caught-up state (fresh.go).
	if err := n.checkFresh(ctx); err != nil {
		return egress.Scope{}, err
	}
	l, _, err := n.leases.Verify(token, n.now())
	if err != nil {
		return egress.Scope{}, err
	}
	b, err := n.state.Bundle(l.PolicyDigest)
	if err != nil {
		return egress.Scope{}, err
	}
	p, ok := b.Profiles[l.Profile]
	if !ok {
		return egress.Scope{}, errors.New("profile missing from the lease's bundle")
	}
	tc, err := n.fetcherFor(l, p, "", "")
	if err != nil {
		return egress.Scope{}, err
	}
	return tc.Scope(), nil
}

// serveProxy runs the lease-authenticated egress proxy until ctx ends.
func (n *Node) serveProxy(ctx context.Context, ln net.Listener) {
	proxy := egress.NewProxy(n.egress.gw, n)
	n.egress.proxy.Store(proxy)
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
		proxy.Close()
	}()
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("egress proxy stopped", "err", err)
		}
	}()
	n.log.Info("egress proxy serving", "addr", ln.Addr().String())
}

// The gateway's task client is what sandboxes fetch through.
var _ sandbox.Fetcher = (*egress.TaskClient)(nil)

// addEgressUsage folds the gateway's counters into a task's usage.
func addEgressUsage(t *sandbox.Task, u *sandbox.Usage) {
	tc, ok := t.Host.Fetch.(*egress.TaskClient)
	if !ok {
		return
	}
	s := tc.Stats()
	u.EgressBytesOut += s.BytesOut
	u.EgressBytesIn += s.BytesIn
	u.Subrequests += s.Subrequests
	u.Blocked += s.Blocked
	for _, d := range s.Destinations {
		if !slices.Contains(u.Destinations, d) {
			u.Destinations = append(u.Destinations, d)
		}
	}
	slices.Sort(u.Destinations)
}
