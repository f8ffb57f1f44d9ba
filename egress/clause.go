package egress

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/leash-dev/leash/fetch"
)

// Clauses name the policy clause behind a refusal. They appear in
// *fetch.Error, in every Decision and in the canonical log line;
// docs/egress.md lists them. The strings are part of the API.
const (
	// ClauseURLInvalid: the URL or authority is malformed, ambiguous or
	// non-canonical (credentials, backslashes, control characters,
	// percent-encoded or non-canonical IPv4 hosts, bad ports, …).
	ClauseURLInvalid = "url.invalid"
	// ClauseScheme: a scheme other than http and https.
	ClauseScheme = "scheme"
	// ClauseRequestInvalid: a malformed method, header name or value.
	ClauseRequestInvalid = "request.invalid"
	// ClauseRequestHost: a Host header naming another host than the URL.
	ClauseRequestHost = "request.host"
	// ClauseGlobalDeny: the bundle's deny list (or a runtime block) names
	// the host, or a CIDR covers its address.
	ClauseGlobalDeny = "global.deny"
	// ClauseDefaultDeny: no allow rule of the profile names the host.
	ClauseDefaultDeny = "profile.default_deny"
	// ClausePort: the host is allowed, not on this port.
	ClausePort = "profile.port"
	// ClauseMethod: the host and port are allowed, not this method (and
	// CONNECT through a rule that restricts methods).
	ClauseMethod = "profile.method"
	// ClauseAddressPrivate: the host is, or resolves to, an address that
	// is not globally reachable (Decision.AddressRange names the entry of
	// the IANA special-purpose registries).
	ClauseAddressPrivate = "address.private"
	// ClauseSubrequests: the task (or lease, in proxy mode) used its
	// subrequests.
	ClauseSubrequests = "limit.subrequests"
	// ClauseRate: the tenant × destination request bucket is empty.
	ClauseRate = "limit.rate"
	// ClauseBytes: the tenant × destination bytes_per_minute bucket is
	// empty; a response that runs out of it is cut.
	ClauseBytes = "limit.bytes"
	// ClauseResponseSize: the response body is larger than
	// max_response_bytes; it is refused or cut.
	ClauseResponseSize = "limit.response_size"
	// ClauseRedirects: more redirects than max_redirects.
	ClauseRedirects = "limit.redirects"
	// ClauseTimeout: a connect, header or total timeout, or the task's
	// wall limit, ended the request.
	ClauseTimeout = "timeout"
	// ClauseProxyAuth: a proxy request without valid lease credentials.
	ClauseProxyAuth = "proxy.auth"
	// ClauseTunnelTLS: a CONNECT tunnel's first bytes are not a TLS
	// handshake (plain HTTP included: it goes as absolute-form requests).
	ClauseTunnelTLS = "tunnel.tls_required"
	// ClauseTunnelHello: a tunnel's ClientHello is malformed, or larger
	// than the bound.
	ClauseTunnelHello = "tunnel.client_hello"
	// ClauseTunnelSNIMissing: a tunnel to a host name whose ClientHello
	// names no server (SNI).
	ClauseTunnelSNIMissing = "tunnel.sni_missing"
	// ClauseTunnelSNIMismatch: the ClientHello's SNI is not the CONNECT
	// host (or is present in a tunnel to an IP literal).
	ClauseTunnelSNIMismatch = "tunnel.sni_mismatch"
	// ClauseTunnelECH: the ClientHello offers Encrypted ClientHello (or
	// the draft encrypted SNI), which hides the name it asks for.
	ClauseTunnelECH = "tunnel.ech"
)

// Clauses lists every clause, in the order docs/egress.md gives them.
var Clauses = []string{
	ClauseURLInvalid, ClauseScheme, ClauseRequestInvalid, ClauseRequestHost,
	ClauseGlobalDeny, ClauseDefaultDeny, ClausePort, ClauseMethod,
	ClauseAddressPrivate, ClauseSubrequests, ClauseRate, ClauseBytes,
	ClauseResponseSize, ClauseRedirects, ClauseTimeout, ClauseProxyAuth,
	ClauseTunnelTLS, ClauseTunnelHello, ClauseTunnelSNIMissing,
	ClauseTunnelSNIMismatch, ClauseTunnelECH,
}

// refuse builds the refusal error for a clause.
func refuse(clause, format string, args ...any) *fetch.Error {
	return &fetch.Error{Clause: clause, Message: fmt.Sprintf(format, args...)}
}

// failure builds the error for a network failure (no clause).
func failure(format string, args ...any) *fetch.Error {
	return &fetch.Error{Message: fmt.Sprintf(format, args...)}
}

// ClauseOf returns the clause of a refusal, or "" for any other error.
func ClauseOf(err error) string {
	var fe *fetch.Error
	if errors.As(err, &fe) {
		return fe.Clause
	}
	return ""
}

// StatusFor is the HTTP status proxy mode answers a clause with: 407 for
// credentials, 400 for malformed requests, 403 for policy, 429 for rate
// and budget limits, 502 for upstream failures and oversize responses,
// 504 for timeouts.
func StatusFor(clause string) int {
	switch clause {
	case ClauseProxyAuth:
		return http.StatusProxyAuthRequired
	case ClauseURLInvalid, ClauseScheme, ClauseRequestInvalid, ClauseRequestHost, ClauseTunnelHello:
		return http.StatusBadRequest
	case ClauseSubrequests, ClauseRate, ClauseBytes:
		return http.StatusTooManyRequests
	case ClauseResponseSize, "":
		return http.StatusBadGateway
	case ClauseTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusForbidden
}

// ErrorCode is the stable snake_case API error code of a clause, as
// proxy mode writes it: "egress_" + the clause with dots as underscores
// ("egress_profile_default_deny"); network failures are
// "egress_upstream_failed".
func ErrorCode(clause string) string {
	if clause == "" {
		return "egress_upstream_failed"
	}
	return "egress_" + strings.ReplaceAll(clause, ".", "_")
}
