package egress

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// TLS extension types the tunnel check looks for.
const (
	// extECH is encrypted_client_hello (RFC 9849): the real ClientHello,
	// SNI included, is encrypted for the front end.
	extECH uint16 = 0xfe0d
	// extESNI is the draft encrypted_server_name extension that ECH
	// replaced; some clients still send it.
	extESNI uint16 = 0xffce
)

// recordTypeHandshake is the first byte of a TLS record carrying a
// handshake message (RFC 8446 §5.1).
const recordTypeHandshake = 0x16

// DefaultMaxHelloBytes bounds the bytes the proxy reads from a tunnel
// before the ClientHello is complete. Browsers' hellos, post-quantum key
// shares and session tickets included, stay well under it.
const DefaultMaxHelloBytes = 16 << 10

// ClientHello is what the tunnel check reads of a TLS ClientHello.
type ClientHello struct {
	// ServerName is the server_name (SNI) host name as sent; empty when
	// the hello has none.
	ServerName string
	// ECH reports an encrypted_client_hello or encrypted_server_name
	// extension: the name the client really asks for is hidden.
	ECH bool
	// Extensions are the extension types in the order sent.
	Extensions []uint16
	// ALPN are the application protocols offered.
	ALPN []string
}

var (
	errHelloTooLarge = errors.New("client hello is larger than the bound")
	// errHelloRead aborts the handshake once the hello is parsed.
	errHelloRead = errors.New("client hello read")
)

// ReadClientHello reads one TLS ClientHello from r, reassembled across
// as many records as the client split it into, and reads at most max
// bytes (DefaultMaxHelloBytes when max ≤ 0). It returns the hello and
// every byte it read, in order, for the caller to replay upstream: the
// bytes past the hello that came with it (the rest of the client's
// first flight) are among them.
//
// Parsing is crypto/tls's own: a server-side tls.Conn reads the records
// through a recording connection, and its GetConfigForClient hook
// captures the parsed hello and aborts the handshake; nothing is ever
// written back. A hello crypto/tls refuses (malformed, duplicate
// extensions, several server names, a server name with a trailing dot,
// a record that is not a handshake) is an error.
//
// ReadClientHello does not bound time itself: the caller sets a read
// deadline on the connection r reads from.
func ReadClientHello(r io.Reader, max int) (*ClientHello, []byte, error) {
	if max <= 0 {
		max = DefaultMaxHelloBytes
	}
	rc := &recordingConn{r: r, max: max}
	var hello *ClientHello
	srv := tls.Server(rc, &tls.Config{
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			h := &ClientHello{
				ServerName: chi.ServerName,
				Extensions: slices.Clone(chi.Extensions),
				ALPN:       slices.Clone(chi.SupportedProtos),
			}
			h.ECH = slices.Contains(h.Extensions, extECH) || slices.Contains(h.Extensions, extESNI)
			hello = h
			return nil, errHelloRead
		},
	})
	err := srv.Handshake()
	if hello != nil {
		return hello, rc.buf.Bytes(), nil
	}
	switch {
	case rc.err != nil:
		// The reader failed (EOF, a deadline, the bound): say that,
		// not crypto/tls's reading of it.
		err = rc.err
	case err == nil:
		err = errors.New("handshake ended without a client hello")
	}
	return nil, rc.buf.Bytes(), fmt.Errorf("read client hello: %w", err)
}

// recordingConn is the connection ReadClientHello hands crypto/tls: reads
// come from r, bounded and recorded; writes (the alert crypto/tls sends
// when it aborts) are dropped.
type recordingConn struct {
	r   io.Reader
	buf bytes.Buffer
	max int
	err error
}

func (c *recordingConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	room := c.max - c.buf.Len()
	if room <= 0 {
		c.err = errHelloTooLarge
		return 0, c.err
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.buf.Write(p[:n])
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *recordingConn) Close() error                     { return nil }
func (c *recordingConn) LocalAddr() net.Addr              { return helloAddr{} }
func (c *recordingConn) RemoteAddr() net.Addr             { return helloAddr{} }
func (c *recordingConn) SetDeadline(time.Time) error      { return nil }
func (c *recordingConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }

type helloAddr struct{}

func (helloAddr) Network() string { return "tunnel" }
func (helloAddr) String() string  { return "tunnel" }

var _ net.Conn = (*recordingConn)(nil)
