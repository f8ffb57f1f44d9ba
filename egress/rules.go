package egress

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/leash-dev/leash/policy"
)

// Rules is a profile's egress policy compiled for matching. Exact hosts
// live in a map; wildcards in another, keyed by the suffix after "*.", and
// a candidate is matched by walking its labels, so a decision costs one
// lookup per label of the candidate whatever the number of rules. Rules is
// immutable and safe for concurrent use.
type Rules struct {
	profile string
	exact   map[string][]*rule
	wild    map[string][]*rule
	count   int

	maxResponseBytes int64
	maxRedirects     int
	connect          time.Duration
	header           time.Duration
	total            time.Duration
}

// rule is one compiled allow entry.
type rule struct {
	index          int    // position in the profile's allow list
	pattern        string // canonical host pattern
	ports          []int  // nil: 80 and 443 (CONNECT: 443 only)
	methods        []string
	rate           *policy.Rate
	bytesPerMinute int64
}

// standardMethods are what a rule without methods allows. CONNECT is not
// among them: a tunnel hides its methods, so proxy mode allows CONNECT
// only through a rule that has no methods restriction.
var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// allowsPort reports whether the rule allows port p for method. A rule
// without ports allows 80 and 443 to requests, and 443 only to CONNECT:
// a tunnel must carry TLS (the proxy checks its ClientHello), and a
// tunnel to another port only through a rule that lists it.
func (r *rule) allowsPort(p int, method string) bool {
	if r.ports == nil {
		if method == "CONNECT" {
			return p == 443
		}
		return p == 80 || p == 443
	}
	for _, q := range r.ports {
		if q == p {
			return true
		}
	}
	return false
}

func (r *rule) allowsMethod(m string) bool {
	if m == "CONNECT" {
		return r.methods == nil
	}
	list := r.methods
	if list == nil {
		list = standardMethods
	}
	for _, x := range list {
		if x == m {
			return true
		}
	}
	return false
}

// Compile compiles a profile's egress section. Host patterns are
// normalised again (policy.NormalizeHostPattern), so rules compiled from a
// bundle and from hand-built profiles behave the same. Zero timeouts and
// sizes take the policy defaults; a nil MaxRedirects means the default 5.
func Compile(profileName string, p *policy.Profile) (*Rules, error) {
	if p == nil {
		return nil, errors.New("compile egress rules: profile is nil")
	}
	e := p.Egress
	r := &Rules{
		profile:          profileName,
		exact:            map[string][]*rule{},
		wild:             map[string][]*rule{},
		count:            len(e.Allow),
		maxResponseBytes: orDefault(e.MaxResponseBytes, policy.DefaultMaxResponseBytes),
		maxRedirects:     policy.DefaultMaxRedirects,
		connect:          ms(orDefault(e.Timeouts.ConnectMs, policy.DefaultConnectMs)),
		header:           ms(orDefault(e.Timeouts.HeaderMs, policy.DefaultHeaderMs)),
		total:            ms(orDefault(e.Timeouts.TotalMs, policy.DefaultTotalMs)),
	}
	if e.MaxRedirects != nil {
		if *e.MaxRedirects < 0 {
			return nil, fmt.Errorf("compile egress rules for %q: max_redirects is negative", profileName)
		}
		r.maxRedirects = *e.MaxRedirects
	}
	if r.maxResponseBytes < 0 || r.connect < 0 || r.header < 0 || r.total < 0 {
		return nil, fmt.Errorf("compile egress rules for %q: negative size or timeout", profileName)
	}
	for i, a := range e.Allow {
		field := fmt.Sprintf("egress.allow[%d]", i)
		pat, err := policy.NormalizeHostPattern(a.Host)
		if err != nil {
			return nil, fmt.Errorf("compile egress rules for %q: %s.host: %w", profileName, field, err)
		}
		ru := &rule{index: i, pattern: pat, bytesPerMinute: a.BytesPerMinute}
		for _, port := range a.Ports {
			if port < 1 || port > 65535 {
				return nil, fmt.Errorf("compile egress rules for %q: %s.ports: %d is not a port", profileName, field, port)
			}
			ru.ports = append(ru.ports, port)
		}
		for _, m := range a.Methods {
			m = strings.ToUpper(m)
			if !validToken(m) || m == "CONNECT" {
				return nil, fmt.Errorf("compile egress rules for %q: %s.methods: %q is not allowed", profileName, field, m)
			}
			ru.methods = append(ru.methods, m)
		}
		if a.Rate != nil {
			if a.Rate.PerSecond <= 0 {
				return nil, fmt.Errorf("compile egress rules for %q: %s.rate.per_second must be above 0", profileName, field)
			}
			rt := *a.Rate
			if rt.Burst <= 0 {
				rt.Burst = max(1, int(rt.PerSecond))
			}
			ru.rate = &rt
		}
		if a.BytesPerMinute < 0 {
			return nil, fmt.Errorf("compile egress rules for %q: %s.bytes_per_minute is negative", profileName, field)
		}
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			r.wild[suffix] = append(r.wild[suffix], ru)
		} else {
			r.exact[pat] = append(r.exact[pat], ru)
		}
	}
	return r, nil
}

func orDefault(v, d int64) int64 {
	if v == 0 {
		return d
	}
	return v
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// Profile is the name of the profile the rules were compiled from.
func (r *Rules) Profile() string { return r.profile }

// Len is the number of allow rules.
func (r *Rules) Len() int { return r.count }

// MaxResponseBytes is the profile's response body bound.
func (r *Rules) MaxResponseBytes() int64 { return r.maxResponseBytes }

// MaxRedirects is how many redirects a fetch follows.
func (r *Rules) MaxRedirects() int { return r.maxRedirects }

// Timeouts returns the connect, header and total timeouts.
func (r *Rules) Timeouts() (connect, header, total time.Duration) {
	return r.connect, r.header, r.total
}

// Match is an allowed request: where it goes and the rule that allowed it.
type Match struct {
	Target Target
	Method string
	// Rule is the allow pattern that matched; RuleIndex its position in
	// the profile's allow list.
	Rule      string
	RuleIndex int

	rule *rule
	// serve answers a drill destination in process (drill.go); nil for
	// every other target, which goes to the network.
	serve http.RoundTripper
}

// match finds the rule allowing method to host:port. Exact entries win
// over wildcards, longer wildcard suffixes over shorter ones, and among
// entries for the same pattern the first listed wins. Allow lists are a
// union: any entry that allows the request allows it. A refusal names the
// most specific failure: profile.method when host and port matched some
// entry, profile.port when only the host did, profile.default_deny
// otherwise.
func (r *Rules) match(host string, literal bool, port int, method string) (*rule, error) {
	if r == nil {
		return nil, refuse(ClauseDefaultDeny, "no egress rules: every destination is refused")
	}
	var seen seenRules
	if ru := seen.try(r.exact[host], port, method); ru != nil {
		return ru, nil
	}
	if len(r.wild) > 0 && !literal {
		// Walk the labels: for a.b.example.com try b.example.com,
		// example.com, com. "*.example.com" never matches example.com
		// itself: the candidate's own name is never looked up here.
		for i := 0; i < len(host); i++ {
			if host[i] != '.' {
				continue
			}
			if ru := seen.try(r.wild[host[i+1:]], port, method); ru != nil {
				return ru, nil
			}
		}
	}
	hostSeen, portSeen := seen.host, seen.port
	switch {
	case portSeen:
		return nil, refuse(ClauseMethod, "profile %q does not allow %s to %s", r.profile, method, hostPort(host, port))
	case hostSeen && method == "CONNECT":
		return nil, refuse(ClausePort, "profile %q allows %s, not CONNECT to port %d (a rule without ports allows CONNECT to 443 only)", r.profile, host, port)
	case hostSeen:
		return nil, refuse(ClausePort, "profile %q allows %s, not on port %d", r.profile, host, port)
	}
	return nil, refuse(ClauseDefaultDeny, "profile %q does not allow %s", r.profile, host)
}

// seenRules remembers how close a refused request came, to name the
// clause.
type seenRules struct{ host, port bool }

func (s *seenRules) try(list []*rule, port int, method string) *rule {
	for _, ru := range list {
		s.host = true
		if !ru.allowsPort(port, method) {
			continue
		}
		s.port = true
		if ru.allowsMethod(method) {
			return ru
		}
	}
	return nil
}

// Check makes every decision that needs no I/O, in the gateway's order:
// the URL (url.invalid, scheme), the method (request.invalid), the deny
// list by name and literal address (global.deny), then the allow rules
// (profile.default_deny, profile.port, profile.method). A nil deny list
// denies nothing. Refusals are *fetch.Error.
func (r *Rules) Check(deny *DenyList, method, rawURL string) (Match, error) {
	m, err := normalizeMethod(method)
	if err != nil {
		return Match{}, err
	}
	t, err := ParseTarget(rawURL)
	if err != nil {
		return Match{}, err
	}
	return r.checkTarget(deny, m, t)
}

// Decide is Check for a target already parsed (ParseTarget): the deny
// list, then the allow rules. Its cost does not depend on the number of
// rules.
func (r *Rules) Decide(deny *DenyList, method string, t Target) (Match, error) {
	m, err := normalizeMethod(method)
	if err != nil {
		return Match{}, err
	}
	return r.checkTarget(deny, m, t)
}

func (r *Rules) checkTarget(deny *DenyList, method string, t Target) (Match, error) {
	if err := deny.checkTarget(t); err != nil {
		return Match{}, err
	}
	ru, err := r.match(t.Host, t.Addr.IsValid(), t.Port, method)
	if err != nil {
		return Match{}, err
	}
	m := Match{Target: t, Method: method, Rule: ru.pattern, RuleIndex: ru.index, rule: ru}
	if !t.Addr.IsValid() && IsDrillName(t.Host) {
		if m.serve, err = checkDrill(r.profile, t.Host, method, ru); err != nil {
			return Match{}, err
		}
	}
	return m, nil
}

// normalizeMethod upper-cases the methods the Fetch standard normalises
// (DELETE, GET, HEAD, OPTIONS, POST, PUT), defaults to GET, and refuses
// what is not an HTTP token and the methods the Fetch standard forbids
// (CONNECT, TRACE, TRACK: a tunnel is only for proxy mode).
func normalizeMethod(m string) (string, error) {
	if m == "" {
		return "GET", nil
	}
	for _, s := range [...]string{"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"} {
		if strings.EqualFold(m, s) {
			return s, nil
		}
	}
	for _, s := range [...]string{"CONNECT", "TRACE", "TRACK"} {
		if strings.EqualFold(m, s) {
			return "", refuse(ClauseRequestInvalid, "method %s is forbidden", s)
		}
	}
	if !validToken(m) || len(m) > 32 {
		return "", refuse(ClauseRequestInvalid, "method %q is not an HTTP token", m)
	}
	return m, nil
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}
