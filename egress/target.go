package egress

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/weburl"
)

// Target is where a request goes, after strict parsing: one scheme, one
// canonical host, one port.
type Target struct {
	// Scheme is "http" or "https".
	Scheme string
	// Host is the canonical host: a lower-case ASCII (punycode) name
	// without the trailing dot, or an IP literal in canonical text form
	// (IPv6 without brackets).
	Host string
	// Port is the port, the scheme's default when the URL has none.
	Port int
	// Addr is the literal address when Host is an IP literal.
	Addr netip.Addr

	path  string // WHATWG pathname, percent-encoded, starts with "/"
	query string // WHATWG search without "?", percent-encoded
}

// HostPort is host:port, with IPv6 in brackets.
func (t Target) HostPort() string {
	return hostPort(t.Host, t.Port)
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// Origin is scheme://host:port, with the port always written.
func (t Target) Origin() string { return t.Scheme + "://" + t.HostPort() }

func (t Target) authority() string {
	if t.Port == defaultPort(t.Scheme) {
		if strings.Contains(t.Host, ":") {
			return "[" + t.Host + "]"
		}
		return t.Host
	}
	return t.HostPort()
}

// String is the URL requested: the WHATWG serialisation with the
// canonical host, without the fragment.
func (t Target) String() string {
	s := t.Scheme + "://" + t.authority() + t.path
	if t.query != "" {
		s += "?" + t.query
	}
	return s
}

// Redacted is the URL without its query, for logs and events.
func (t Target) Redacted() string { return t.Scheme + "://" + t.authority() + t.path }

// requestURL is the net/url form sent on the wire: the path is written
// exactly as the WHATWG parser serialised it. A path starting with "//"
// cannot go in Opaque (net/url would write it as an absolute-form target
// naming another host), so it goes in Path and RawPath.
func (t Target) requestURL() *url.URL {
	u := &url.URL{Scheme: t.Scheme, Host: t.authority(), RawQuery: t.query}
	if !strings.HasPrefix(t.path, "//") {
		u.Opaque = t.path
		return u
	}
	p, err := url.PathUnescape(t.path)
	if err != nil {
		p = t.path
	}
	u.Path, u.RawPath = p, t.path
	return u
}

func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// ParseTarget parses an absolute http or https URL the way the gateway
// does before any decision: with weburl (the WHATWG parser the JS engine
// uses) and, on top of it, strict rules that refuse what other parsers
// could read differently. Refusals are *fetch.Error with clause
// url.invalid or scheme.
func ParseTarget(rawURL string) (Target, error) {
	return parseTarget(rawURL, nil)
}

// parseTarget parses ref, relative to base when base is not nil (a
// redirect's Location).
func parseTarget(ref string, base *Target) (Target, error) {
	if ref == "" {
		return Target{}, refuse(ClauseURLInvalid, "empty URL")
	}
	if len(ref) > weburl.MaxLen {
		return Target{}, refuse(ClauseURLInvalid, "URL is longer than %d bytes", weburl.MaxLen)
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c <= ' ' || c == 0x7f {
			return Target{}, refuse(ClauseURLInvalid, "URL has a space or control character at byte %d", i)
		}
	}
	beforeQuery := ref
	if i := strings.IndexAny(ref, "?#"); i >= 0 {
		beforeQuery = ref[:i]
	}
	if strings.Contains(beforeQuery, `\`) {
		return Target{}, refuse(ClauseURLInvalid, "URL has a backslash before its query")
	}
	scheme, rest, hasScheme := splitScheme(beforeQuery)
	authority, hasAuthority := "", false
	switch {
	case hasScheme:
		if scheme != "http" && scheme != "https" {
			return Target{}, refuse(ClauseScheme, "scheme %q is not allowed; only http and https", scheme)
		}
		if !strings.HasPrefix(rest, "//") {
			return Target{}, refuse(ClauseURLInvalid, "%s: must be followed by //", scheme)
		}
		authority, hasAuthority = rest[2:], true
	case base == nil:
		return Target{}, refuse(ClauseURLInvalid, "not an absolute URL")
	case strings.HasPrefix(beforeQuery, "//"):
		authority, hasAuthority = beforeQuery[2:], true
	}
	if hasAuthority {
		if i := strings.IndexByte(authority, '/'); i >= 0 {
			authority = authority[:i]
		}
	}
	baseHref := ""
	if base != nil {
		baseHref = base.String()
	}
	u, err := weburl.Parse(ref, baseHref)
	if err != nil {
		return Target{}, refuse(ClauseURLInvalid, "%v", err)
	}
	t := Target{Scheme: strings.TrimSuffix(u.Protocol, ":"), path: u.Pathname, query: strings.TrimPrefix(u.Search, "?")}
	if t.Scheme != "http" && t.Scheme != "https" {
		return Target{}, refuse(ClauseScheme, "scheme %q is not allowed; only http and https", t.Scheme)
	}
	if u.Username != "" || u.Password != "" {
		return Target{}, refuse(ClauseURLInvalid, "URL has credentials")
	}
	if hasAuthority {
		if err := checkAuthority(authority, u); err != nil {
			return Target{}, err
		}
	}
	switch {
	case u.IPv6:
		a, err := netip.ParseAddr(strings.Trim(u.Hostname, "[]"))
		if err != nil {
			return Target{}, refuse(ClauseURLInvalid, "bad IPv6 literal %s", u.Hostname)
		}
		t.Addr, t.Host = a, a.String()
	case u.IPv4:
		a, err := netip.ParseAddr(u.Hostname)
		if err != nil {
			return Target{}, refuse(ClauseURLInvalid, "bad IPv4 literal %s", u.Hostname)
		}
		t.Addr, t.Host = a, a.String()
	default:
		t.Host = strings.TrimSuffix(u.Hostname, ".")
		if err := policy.CheckHostName(t.Host); err != nil {
			return Target{}, refuse(ClauseURLInvalid, "host %q: %v", u.Hostname, err)
		}
	}
	t.Port = defaultPort(t.Scheme)
	if u.Port != "" {
		p, err := strconv.Atoi(u.Port)
		if err != nil || p < 1 || p > 65535 {
			return Target{}, refuse(ClauseURLInvalid, "bad port %q", u.Port)
		}
		t.Port = p
	}
	if t.path == "" || t.path[0] != '/' {
		return Target{}, refuse(ClauseURLInvalid, "URL has no path")
	}
	return t, nil
}

// splitScheme finds a URL scheme (RFC 3986 syntax) before the first ':'.
func splitScheme(s string) (scheme, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.':
			if i == 0 {
				return "", s, false
			}
		case c == ':':
			if i == 0 {
				return "", s, false
			}
			return strings.ToLower(s[:i]), s[i+1:], true
		default:
			return "", s, false
		}
	}
	return "", s, false
}

// checkAuthority applies the strict rules to the authority as written,
// before the WHATWG parser normalised it: no userinfo, no percent-encoding
// in the host, brackets only around an IPv6 literal, a port of 1 to 5
// digits without leading zeros, and an IPv4 literal only in canonical
// dotted-decimal (no octal, hex, short or dotless forms, no trailing dot,
// no full-width digits).
func checkAuthority(a string, u *weburl.URL) error {
	if a == "" {
		return refuse(ClauseURLInvalid, "URL has no host")
	}
	if strings.Contains(a, "@") {
		return refuse(ClauseURLInvalid, "URL has userinfo")
	}
	if strings.Contains(a, "%") {
		return refuse(ClauseURLInvalid, "host is percent-encoded")
	}
	host, port, hasPort := a, "", false
	if a[0] == '[' {
		j := strings.IndexByte(a, ']')
		if j < 0 {
			return refuse(ClauseURLInvalid, "unclosed IPv6 literal")
		}
		host = a[:j+1]
		if rest := a[j+1:]; rest != "" {
			if rest[0] != ':' {
				return refuse(ClauseURLInvalid, "characters after an IPv6 literal")
			}
			port, hasPort = rest[1:], true
		}
		if !u.IPv6 {
			return refuse(ClauseURLInvalid, "brackets around a name")
		}
	} else {
		if strings.ContainsAny(a, "[]") {
			return refuse(ClauseURLInvalid, "brackets in a host name")
		}
		if i := strings.IndexByte(a, ':'); i >= 0 {
			host, port, hasPort = a[:i], a[i+1:], true
			if strings.Contains(port, ":") {
				return refuse(ClauseURLInvalid, "more than one ':' in the authority")
			}
		}
	}
	if hasPort {
		if port == "" || len(port) > 5 || port[0] == '0' {
			return refuse(ClauseURLInvalid, "bad port %q", port)
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return refuse(ClauseURLInvalid, "bad port %q", port)
			}
		}
	}
	if u.IPv4 && host != u.Hostname {
		return refuse(ClauseURLInvalid, "non-canonical IPv4 host %q; write it as %s", host, u.Hostname)
	}
	return nil
}
