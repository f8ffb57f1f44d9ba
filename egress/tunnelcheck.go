package egress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/fetch"
)

// checkTunnelStart reads the start of a CONNECT tunnel and checks it
// against the CONNECT target t, before any byte reaches the target. A
// tunnel carries TLS: its first record must be a handshake, whose
// ClientHello (reassembled across records, including what the client
// sent in the same packet as the CONNECT, which br already holds) must
// not offer Encrypted ClientHello and must name t.Host as its SNI — the
// same host, compared ASCII case-insensitively; for a tunnel to an IP
// literal, no SNI (or the literal itself). The wait is bounded by
// helloTimeout (within ctx's deadline) and the bytes by maxHello.
//
// It returns every byte read, for the caller to replay upstream; nil and
// no error when the client closed the tunnel without sending anything.
func (p *Proxy) checkTunnelStart(ctx context.Context, tn *tunnel, br *bufio.Reader, d *Decision, t Target) ([]byte, error) {
	deadline := time.Now().Add(p.helloTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	tn.client.SetReadDeadline(deadline)
	defer tn.client.SetReadDeadline(time.Time{})

	b, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, p.helloReadErr(tn, err)
	}
	if b[0] != recordTypeHandshake {
		fe := refuse(ClauseTunnelTLS, "a tunnel must start with a TLS ClientHello; send plain HTTP to the proxy as absolute-form requests")
		d.Status = StatusFor(ClauseTunnelTLS)
		writeTunnelRefusal(tn.client, fe)
		return nil, fe
	}
	hello, raw, err := ReadClientHello(br, p.maxHello)
	if err != nil {
		return nil, p.helloReadErr(tn, err)
	}
	d.SNI = hello.ServerName
	switch {
	case hello.ECH:
		return nil, refuse(ClauseTunnelECH, "the ClientHello offers Encrypted ClientHello, which hides the host it asks for")
	case t.Addr.IsValid():
		if hello.ServerName != "" && hello.ServerName != t.Host {
			return nil, refuse(ClauseTunnelSNIMismatch, "the ClientHello names %q in a tunnel to the address %s", hello.ServerName, t.Host)
		}
	case hello.ServerName == "":
		return nil, refuse(ClauseTunnelSNIMissing, "the ClientHello names no server (SNI); a tunnel to %s must name it", t.Host)
	case !sameASCIIHost(hello.ServerName, t.Host):
		return nil, refuse(ClauseTunnelSNIMismatch, "the ClientHello names %q, not the CONNECT host %s", hello.ServerName, t.Host)
	}
	return raw, nil
}

// helloReadErr names what stopped the read of a ClientHello.
func (p *Proxy) helloReadErr(tn *tunnel, err error) error {
	switch {
	case tn.closing.Load():
		return failure("tunnel closed")
	case isTimeout(err):
		return refuse(ClauseTimeout, "no complete ClientHello within %v of the tunnel opening", p.helloTimeout)
	case errors.Is(err, errHelloTooLarge):
		return refuse(ClauseTunnelHello, "the ClientHello is larger than %d bytes", p.maxHello)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return refuse(ClauseTunnelHello, "the client closed the tunnel before its ClientHello was complete")
	case errors.Is(err, net.ErrClosed):
		return failure("tunnel closed")
	}
	return refuse(ClauseTunnelHello, "%v", err)
}

// sameASCIIHost reports whether sni is host (a canonical, lower-case
// ASCII name), compared ASCII case-insensitively. Any byte outside ASCII
// is a mismatch: Unicode case folding would let "\u212a" (Kelvin) stand
// for "k".
func sameASCIIHost(sni, host string) bool {
	if len(sni) != len(host) {
		return false
	}
	for i := 0; i < len(sni); i++ {
		c := sni[i]
		if c >= 0x80 {
			return false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != host[i] {
			return false
		}
	}
	return true
}

// rstAvoidance bounds how long a refused tunnel waits for the client to
// finish sending after the refusal, so that closing does not reset the
// connection before the client read the response.
const rstAvoidance = 500 * time.Millisecond

// writeTunnelRefusal answers a tunnel that does not speak TLS with an
// HTTP refusal (what a client sending plain HTTP expects), then ends the
// connection: write side first, a bounded drain, then the caller closes.
func writeTunnelRefusal(conn net.Conn, fe *fetch.Error) {
	body, _ := json.Marshal(api.ErrorBody{Error: &api.Error{Code: ErrorCode(fe.Clause), Message: fe.Error()}})
	body = append(body, '\n')
	status := StatusFor(fe.Clause)
	resp := &http.Response{
		StatusCode: status, ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":        {"application/json"},
			"Cache-Control":       {"no-store"},
			"Leash-Egress-Clause": {fe.Clause},
			"Content-Length":      {strconv.Itoa(len(body))},
		},
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
		Close:         true,
	}
	conn.SetWriteDeadline(time.Now().Add(rstAvoidance))
	if err := resp.Write(conn); err != nil {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		conn.SetReadDeadline(time.Now().Add(rstAvoidance))
		io.CopyN(io.Discard, conn, 64<<10)
	}
}
