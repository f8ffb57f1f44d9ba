package egress

import (
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// maxHeaderBytes bounds the request headers a guest or proxy client may
// send.
const maxHeaderBytes = 64 << 10

// hopByHop are the RFC 9110 §7.6.1 connection-specific fields (plus the
// proxy ones), never forwarded; fields named by Connection go too.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// stripHopByHop removes hop-by-hop fields, including those Connection
// names, so nothing connection-specific is smuggled across the gateway.
func stripHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
}

// outboundHeader builds the headers sent upstream from a guest's (or a
// proxy client's): names and values checked, hop-by-hop fields and
// Content-Length dropped, a Host field refused unless it names the
// target itself (then dropped: the gateway writes Host), and the
// traceparent added. With override the task's traceparent replaces the
// caller's; without, the caller's stays when present.
func outboundHeader(in http.Header, t Target, traceparent string, override bool) (http.Header, error) {
	h := make(http.Header, len(in)+1)
	size := 0
	for k, vs := range in {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, refuse(ClauseRequestInvalid, "header name %q is not valid", k)
		}
		ck := http.CanonicalHeaderKey(k)
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, refuse(ClauseRequestInvalid, "header %s has a control character", ck)
			}
			size += len(k) + len(v) + 4
		}
		h[ck] = append(h[ck], vs...)
	}
	if size > maxHeaderBytes {
		return nil, refuse(ClauseRequestInvalid, "headers are larger than %d bytes", maxHeaderBytes)
	}
	if hv, ok := h["Host"]; ok {
		if len(hv) != 1 || !namesTarget(hv[0], t) {
			return nil, refuse(ClauseRequestHost, "Host header %q names another host than %s", strings.Join(hv, ", "), t.HostPort())
		}
		delete(h, "Host")
	}
	stripHopByHop(h)
	delete(h, "Content-Length")
	if traceparent != "" && httpguts.ValidHeaderFieldValue(traceparent) && (override || h.Get("Traceparent") == "") {
		h.Set("Traceparent", traceparent)
	}
	return h, nil
}

// namesTarget reports whether a Host field value names t: the same
// canonical host and the same port (the scheme's default when absent),
// parsed with the same strict rules as URLs.
func namesTarget(v string, t Target) bool {
	if v == "" || strings.ContainsAny(v, "/?#") {
		return false
	}
	ht, err := ParseTarget(t.Scheme + "://" + v + "/")
	return err == nil && ht.Host == t.Host && ht.Port == t.Port
}
