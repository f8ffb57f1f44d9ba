package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Connection types: the first byte a dialer writes inside TLS says what
// the connection carries, so Raft and internal calls share one port.
const (
	typeRaft byte = 'R'
	typeRPC  byte = 'H'
)

// handshakeTimeout bounds the TLS handshake and the type byte of an
// accepted connection.
const handshakeTimeout = 5 * time.Second

// Mux is a node's cluster port: one TCP listener, mutual TLS with the
// cluster's key (see the package doc), then one byte naming the protocol.
// Raft reads its connections from [Mux.Raft]; the internal HTTP API reads
// its own from [Mux.RPC].
type Mux struct {
	ln        net.Listener
	tls       *tls.Config
	advertise net.Addr
	local     *net.TCPAddr // source address of dialed connections
	log       *slog.Logger

	raft *layer
	rpc  *layer

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// Listen opens the cluster port on bind. advertise is the address peers
// dial (empty: the bound address; it must not be unspecified). Outgoing
// connections leave from the bound IP, so a node's traffic can be told
// apart (and filtered) even when several nodes share a host.
func Listen(bind, advertise string, secret Secret, logger *slog.Logger) (*Mux, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conf, err := secret.TLSConfig()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bind, err)
	}
	bound := ln.Addr().(*net.TCPAddr)
	m := &Mux{ln: ln, tls: conf, log: logger.With("component", "transport"), done: make(chan struct{})}
	if !bound.IP.IsUnspecified() {
		m.local = &net.TCPAddr{IP: bound.IP}
	}
	switch {
	case advertise != "":
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("advertise address %q: %w", advertise, err)
		}
		if a.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("advertise address %q is unspecified", advertise)
		}
		m.advertise = a
	case bound.IP.IsUnspecified():
		ln.Close()
		return nil, fmt.Errorf("cluster address %s binds every interface: set an address to advertise", bind)
	default:
		m.advertise = bound
	}
	m.raft = newLayer(m, typeRaft)
	m.rpc = newLayer(m, typeRPC)
	m.wg.Add(1)
	go m.accept()
	return m, nil
}

// Addr is the advertised address of the cluster port.
func (m *Mux) Addr() string { return m.advertise.String() }

// Raft is the stream layer for raft's network transport.
func (m *Mux) Raft() raft.StreamLayer { return m.raft }

// RPC is the listener of internal HTTP calls from peers.
func (m *Mux) RPC() net.Listener { return m.rpc }

// Close stops accepting and closes both layers.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
		m.raft.Close()
		m.rpc.Close()
	})
	m.wg.Wait()
	return err
}

func (m *Mux) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m.log.Warn("accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go m.handshake(c)
	}
}

// handshake authenticates an accepted connection and hands it to the
// layer its type byte names. A peer without the secret fails here and
// never reaches Raft or the internal API.
func (m *Mux) handshake(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(c, m.tls)
	if err := tc.Handshake(); err != nil {
		m.log.Warn("refused a peer connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	var typ [1]byte
	if _, err := tc.Read(typ[:]); err != nil {
		tc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	var l *layer
	switch typ[0] {
	case typeRaft:
		l = m.raft
	case typeRPC:
		l = m.rpc
	default:
		m.log.Warn("unknown connection type", "remote", c.RemoteAddr().String(), "type", typ[0])
		tc.Close()
		return
	}
	select {
	case l.ch <- tc:
	case <-l.done:
		tc.Close()
	case <-time.After(handshakeTimeout):
		tc.Close()
	}
}

// DialError is a failure to open a connection to a peer: nothing was
// sent on it.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return "dial " + e.Addr + ": " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// dialTimeout bounds the TCP connect of a dial, so a peer cut off by a
// partition is given up on quickly.
const dialTimeout = 2 * time.Second

// dial opens an authenticated connection of type typ to a peer's cluster
// port. Failures are *DialError.
func (m *Mux) dial(ctx context.Context, addr string, typ byte) (net.Conn, error) {
	d := net.Dialer{LocalAddr: m.local, Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &DialError{Addr: addr, Err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	}
	tc := tls.Client(c, m.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, &DialError{Addr: addr, Err: fmt.Errorf("tls: %w", err)}
	}
	if _, err := tc.Write([]byte{typ}); err != nil {
		tc.Close()
		return nil, &DialError{Addr: addr, Err: err}
	}
	_ = c.SetDeadline(time.Time{})
	return tc, nil
}

// layer is one protocol's view of the mux.
type layer struct {
	m    *Mux
	typ  byte
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newLayer(m *Mux, typ byte) *layer {
	return &layer{m: m, typ: typ, ch: make(chan net.Conn), done: make(chan struct{})}
}

var _ raft.StreamLayer = (*layer)(nil)

func (l *layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *layer) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *layer) Addr() net.Addr { return l.m.advertise }

func (l *layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.m.dial(ctx, string(address), l.typ)
}

// HTTPClient calls peers' internal APIs over the mux: URLs are
// http://<peer cluster address>/<path>; TLS and authentication happen
// in the dialer.
func (m *Mux) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.dial(ctx, addr, typeRPC)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
}
