package egress

import (
	"net/netip"
	"sort"
)

// Class is what the address classifier says about one address.
type Class struct {
	// Global: the address is globally reachable and may be dialled.
	Global bool
	// Range is the special-purpose block that decided; invalid when none
	// did (a plain global unicast address, or IPv6 outside 2000::/3).
	Range netip.Prefix
	// Name names the block, e.g. "loopback", "link-local", "nat64:private"
	// (a transition form whose embedded IPv4 is not global).
	Name string
	// Embedded is the IPv4 address a transition form carries, when it was
	// checked (IPv4-mapped and NAT64 64:ff9b::/96).
	Embedded netip.Addr
}

type special struct {
	prefix netip.Prefix
	name   string
	global bool
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// specials4 is the IANA IPv4 Special-Purpose Address Registry (RFC 6890
// and updates), plus multicast 224.0.0.0/4 from the IPv4 address space
// registry. Entries marked globally reachable by IANA are global here
// too. Sorted most specific first by init, so the first match decides.
var specials4 = []special{
	{mustPrefix("0.0.0.0/8"), "this-network", false},
	{mustPrefix("0.0.0.0/32"), "this-host", false},
	{mustPrefix("10.0.0.0/8"), "private", false},
	{mustPrefix("100.64.0.0/10"), "shared-address-space", false},
	{mustPrefix("127.0.0.0/8"), "loopback", false},
	{mustPrefix("169.254.0.0/16"), "link-local", false},
	{mustPrefix("172.16.0.0/12"), "private", false},
	{mustPrefix("192.0.0.0/24"), "ietf-protocol-assignments", false},
	{mustPrefix("192.0.0.0/29"), "ipv4-service-continuity", false},
	{mustPrefix("192.0.0.8/32"), "ipv4-dummy", false},
	{mustPrefix("192.0.0.9/32"), "pcp-anycast", true},
	{mustPrefix("192.0.0.10/32"), "turn-anycast", true},
	{mustPrefix("192.0.0.170/32"), "nat64-discovery", false},
	{mustPrefix("192.0.0.171/32"), "nat64-discovery", false},
	{mustPrefix("192.0.2.0/24"), "documentation", false},
	{mustPrefix("192.31.196.0/24"), "as112", true},
	{mustPrefix("192.52.193.0/24"), "amt", true},
	{mustPrefix("192.88.99.0/24"), "6to4-relay-anycast", false},
	{mustPrefix("192.168.0.0/16"), "private", false},
	{mustPrefix("192.175.48.0/24"), "as112-direct-delegation", true},
	{mustPrefix("198.18.0.0/15"), "benchmarking", false},
	{mustPrefix("198.51.100.0/24"), "documentation", false},
	{mustPrefix("203.0.113.0/24"), "documentation", false},
	{mustPrefix("224.0.0.0/4"), "multicast", false},
	{mustPrefix("240.0.0.0/4"), "reserved", false},
	{mustPrefix("255.255.255.255/32"), "broadcast", false},
}

// specials6 is the IANA IPv6 Special-Purpose Address Registry plus the
// deprecated and structural blocks the issue names. The transition forms
// that embed an IPv4 are decided in Classify: IPv4-mapped and the NAT64
// well-known prefix are checked by their embedded IPv4; IPv4-compatible,
// local-use NAT64, 6to4 and Teredo are refused outright (their entries
// here). Everything outside 2000::/3 is refused: IANA allocates no
// global unicast there.
var specials6 = []special{
	{mustPrefix("::/128"), "unspecified", false},
	{mustPrefix("::1/128"), "loopback", false},
	{mustPrefix("::/96"), "ipv4-compatible", false},
	{mustPrefix("::ffff:0:0/96"), "ipv4-mapped", false}, // decided by the embedded IPv4
	{mustPrefix("64:ff9b::/96"), "nat64", false},        // decided by the embedded IPv4
	{mustPrefix("64:ff9b:1::/48"), "nat64-local-use", false},
	{mustPrefix("100::/64"), "discard-only", false},
	{mustPrefix("100:0:0:1::/64"), "dummy-prefix", false},
	{mustPrefix("2001::/23"), "ietf-protocol-assignments", false},
	{mustPrefix("2001::/32"), "teredo", false},
	{mustPrefix("2001:1::1/128"), "pcp-anycast", true},
	{mustPrefix("2001:1::2/128"), "turn-anycast", true},
	{mustPrefix("2001:1::3/128"), "dns-sd-srp-anycast", true},
	{mustPrefix("2001:2::/48"), "benchmarking", false},
	{mustPrefix("2001:3::/32"), "amt", true},
	{mustPrefix("2001:4:112::/48"), "as112", true},
	{mustPrefix("2001:10::/28"), "orchid-deprecated", false},
	{mustPrefix("2001:20::/28"), "orchid-v2", true},
	{mustPrefix("2001:30::/28"), "drone-remote-id", true},
	{mustPrefix("2001:db8::/32"), "documentation", false},
	{mustPrefix("2002::/16"), "6to4", false},
	{mustPrefix("2620:4f:8000::/48"), "as112-direct-delegation", true},
	{mustPrefix("3fff::/20"), "documentation", false},
	{mustPrefix("5f00::/16"), "srv6-sids", false},
	{mustPrefix("fc00::/7"), "unique-local", false},
	{mustPrefix("fe80::/10"), "link-local", false},
	{mustPrefix("fec0::/10"), "site-local", false},
	{mustPrefix("ff00::/8"), "multicast", false},
}

var (
	globalUnicast6 = mustPrefix("2000::/3")
	mapped6        = mustPrefix("::ffff:0:0/96")
	nat64WKP       = mustPrefix("64:ff9b::/96")
)

func init() {
	for _, s := range [][]special{specials4, specials6} {
		sort.SliceStable(s, func(i, j int) bool { return s[i].prefix.Bits() > s[j].prefix.Bits() })
	}
}

// Classify says whether a is globally reachable, per the IANA IPv4 and
// IPv6 special-purpose address registries. Go's net.IP helpers miss
// several of these blocks (CGNAT, benchmarking, documentation, NAT64,
// 6to4, Teredo, …); this table does not. Addresses with a zone are never
// global.
func Classify(a netip.Addr) Class {
	if !a.IsValid() {
		return Class{Name: "invalid"}
	}
	if a.Zone() != "" {
		return Class{Name: "zoned"}
	}
	if a.Is4() {
		for _, s := range specials4 {
			if s.prefix.Contains(a) {
				return Class{Global: s.global, Range: s.prefix, Name: s.name}
			}
		}
		return Class{Global: true}
	}
	if mapped6.Contains(a) || nat64WKP.Contains(a) {
		return embedded(a)
	}
	for _, s := range specials6 {
		if s.prefix.Contains(a) {
			return Class{Global: s.global, Range: s.prefix, Name: s.name}
		}
	}
	if !globalUnicast6.Contains(a) {
		return Class{Name: "not-global-unicast"}
	}
	return Class{Global: true}
}

// embedded decides the two transition forms that are checked by the IPv4
// they carry: IPv4-mapped ::ffff:0:0/96 (dialled as that IPv4) and the
// NAT64 well-known prefix 64:ff9b::/96 (RFC 6052: the translator connects
// to the embedded IPv4).
func embedded(a netip.Addr) Class {
	b := a.As16()
	v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	outer, name := nat64WKP, "nat64"
	if mapped6.Contains(a) {
		outer, name = mapped6, "ipv4-mapped"
	}
	inner := Classify(v4)
	c := Class{Global: inner.Global, Range: outer, Name: name, Embedded: v4}
	if !inner.Global {
		c.Name = name + ":" + inner.Name
	}
	return c
}

// dialAddr is the address to dial for a checked address: IPv4-mapped
// addresses are dialled as the IPv4 they carry.
func dialAddr(a netip.Addr) netip.Addr {
	if a.Is4In6() {
		return a.Unmap()
	}
	return a
}
