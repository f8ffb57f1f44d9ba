package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/leash-dev/leash/policy"
)

// DenyList is the global deny list: the bundle's deny entries plus the
// destinations the runbook blocks at run time. Entries are host names
// (exact), *.wildcards (subdomains only, never the apex, as in allow
// rules), IP literals and CIDR prefixes. Prefixes are checked against IP
// literal hosts and against every resolved address (and the IPv4 inside
// IPv4-mapped and NAT64 addresses).
//
// A DenyList is safe for concurrent use and may change while tasks run:
// Add and Replace swap the compiled set atomically, and every decision
// reads the current set, so a block applies to requests already in
// flight from their next hop on. The nil *DenyList denies nothing.
type DenyList struct {
	set atomic.Pointer[denySet]
}

type denySet struct {
	entries  []string // canonical, sorted
	exact    map[string]string
	wild     map[string]string
	prefixes map[netip.Prefix]string
	bits4    []int // prefix lengths present, longest first
	bits6    []int
}

// CompileDeny compiles deny entries. Every entry must pass
// policy.ValidateDenyEntry.
func CompileDeny(entries []string) (*DenyList, error) {
	s, err := compileDenySet(entries)
	if err != nil {
		return nil, err
	}
	d := &DenyList{}
	d.set.Store(s)
	return d, nil
}

func compileDenySet(entries []string) (*denySet, error) {
	s := &denySet{exact: map[string]string{}, wild: map[string]string{}, prefixes: map[netip.Prefix]string{}}
	seen4, seen6 := map[int]bool{}, map[int]bool{}
	addPrefix := func(p netip.Prefix, entry string) {
		p = p.Masked()
		s.prefixes[p] = entry
		if p.Addr().Is4() {
			seen4[p.Bits()] = true
		} else {
			seen6[p.Bits()] = true
		}
	}
	for i, e := range entries {
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil || p.Addr().Zone() != "" {
				return nil, fmt.Errorf("deny[%d]: not a CIDR prefix: %q", i, e)
			}
			switch {
			case p.Addr().Is4In6() && p.Bits() >= 96:
				// ::ffff:a.b.c.d/n covers what a.b.c.d/(n-96) covers.
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			case p.Addr().Is6() && p.Masked().Contains(mapped6.Addr()):
				// A wider IPv6 prefix covering the mapped block covers
				// every IPv4 address too (addresses are matched unmapped).
				addPrefix(netip.MustParsePrefix("0.0.0.0/0"), p.Masked().String())
			}
			addPrefix(p, p.Masked().String())
			s.entries = append(s.entries, p.Masked().String())
			continue
		}
		n, err := policy.NormalizeHostPattern(e)
		if err != nil {
			return nil, fmt.Errorf("deny[%d]: %w", i, err)
		}
		s.entries = append(s.entries, n)
		if a, err := netip.ParseAddr(n); err == nil {
			a = a.Unmap()
			addPrefix(netip.PrefixFrom(a, a.BitLen()), n)
			continue
		}
		if suffix, ok := strings.CutPrefix(n, "*."); ok {
			s.wild[suffix] = n
		} else {
			s.exact[n] = n
		}
	}
	for b := range seen4 {
		s.bits4 = append(s.bits4, b)
	}
	for b := range seen6 {
		s.bits6 = append(s.bits6, b)
	}
	slices.SortFunc(s.bits4, func(a, b int) int { return b - a })
	slices.SortFunc(s.bits6, func(a, b int) int { return b - a })
	slices.Sort(s.entries)
	s.entries = slices.Compact(s.entries)
	return s, nil
}

func (d *DenyList) current() *denySet {
	if d == nil {
		return nil
	}
	return d.set.Load()
}

// Entries returns the canonical entries, sorted.
func (d *DenyList) Entries() []string {
	s := d.current()
	if s == nil {
		return nil
	}
	return slices.Clone(s.entries)
}

// Add adds entries (a runtime block); the list is unchanged on error.
func (d *DenyList) Add(entries ...string) error {
	for {
		old := d.set.Load()
		var all []string
		if old != nil {
			all = slices.Clone(old.entries)
		}
		next, err := compileDenySet(append(all, entries...))
		if err != nil {
			return err
		}
		if d.set.CompareAndSwap(old, next) {
			return nil
		}
	}
}

// Replace swaps the whole list (a new bundle, or replicated state
// replayed); the list is unchanged on error.
func (d *DenyList) Replace(entries []string) error {
	next, err := compileDenySet(entries)
	if err != nil {
		return err
	}
	d.set.Store(next)
	return nil
}

// MatchHost returns the entry that denies a canonical host name or IP
// literal.
func (d *DenyList) MatchHost(host string) (string, bool) {
	s := d.current()
	if s == nil {
		return "", false
	}
	if host != "" && (strings.Contains(host, ":") || isDigit(host[len(host)-1])) {
		if a, err := netip.ParseAddr(host); err == nil {
			return s.matchAddr(a)
		}
	}
	return s.matchName(host)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (s *denySet) matchName(host string) (string, bool) {
	if e, ok := s.exact[host]; ok {
		return e, true
	}
	if len(s.wild) > 0 {
		for i := 0; i < len(host); i++ {
			if host[i] == '.' {
				if e, ok := s.wild[host[i+1:]]; ok {
					return e, true
				}
			}
		}
	}
	return "", false
}

// MatchAddr returns the entry that denies an address: a prefix covering
// it, or covering the IPv4 it carries as an IPv4-mapped or NAT64
// (64:ff9b::/96) address.
func (d *DenyList) MatchAddr(a netip.Addr) (string, bool) {
	s := d.current()
	if s == nil {
		return "", false
	}
	return s.matchAddr(a)
}

func (s *denySet) matchAddr(a netip.Addr) (string, bool) {
	if !a.IsValid() || len(s.prefixes) == 0 {
		return "", false
	}
	a = a.WithZone("")
	if e, ok := s.matchOne(a); ok {
		return e, true
	}
	if a.Is6() {
		if c := embedded4(a); c.IsValid() {
			return s.matchOne(c)
		}
	}
	return "", false
}

func (s *denySet) matchOne(a netip.Addr) (string, bool) {
	a = a.Unmap()
	bits := s.bits6
	if a.Is4() {
		bits = s.bits4
	}
	for _, b := range bits {
		p, err := a.Prefix(b)
		if err != nil {
			continue
		}
		if e, ok := s.prefixes[p]; ok {
			return e, true
		}
	}
	return "", false
}

// embedded4 is the IPv4 inside a NAT64 well-known-prefix address.
func embedded4(a netip.Addr) netip.Addr {
	if nat64WKP.Contains(a) {
		b := a.As16()
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	return netip.Addr{}
}

// checkTarget refuses a target the list names, by host or literal
// address.
func (d *DenyList) checkTarget(t Target) error {
	s := d.current()
	if s == nil {
		return nil
	}
	var e string
	var ok bool
	if t.Addr.IsValid() {
		e, ok = s.matchAddr(t.Addr)
	} else {
		e, ok = s.matchName(t.Host)
	}
	if ok {
		return refuse(ClauseGlobalDeny, "%s is on the global deny list (%s)", t.Host, e)
	}
	return nil
}
