package egress

import (
	"net/netip"
	"testing"
)

// TestClassify checks every special-purpose block at both edges and the
// addresses just outside them. Expected values are written out, not
// derived from the table under test.
func TestClassify(t *testing.T) {
	tests := []struct {
		addr   string
		global bool
		name   string // checked when not empty
	}{
		// 0.0.0.0/8 this network, 0.0.0.0/32 this host
		{"0.0.0.0", false, "this-host"},
		{"0.0.0.1", false, "this-network"},
		{"0.255.255.255", false, "this-network"},
		{"1.0.0.0", true, ""},
		// 10.0.0.0/8
		{"9.255.255.255", true, ""},
		{"10.0.0.0", false, "private"},
		{"10.255.255.255", false, "private"},
		{"11.0.0.0", true, ""},
		// 100.64.0.0/10 shared address space (CGNAT; Alibaba metadata 100.100.100.200)
		{"100.63.255.255", true, ""},
		{"100.64.0.0", false, "shared-address-space"},
		{"100.100.100.200", false, "shared-address-space"},
		{"100.127.255.255", false, "shared-address-space"},
		{"100.128.0.0", true, ""},
		// 127.0.0.0/8
		{"126.255.255.255", true, ""},
		{"127.0.0.0", false, "loopback"},
		{"127.0.0.1", false, "loopback"},
		{"127.255.255.255", false, "loopback"},
		{"128.0.0.0", true, ""},
		// 169.254.0.0/16 link local (cloud metadata)
		{"169.253.255.255", true, ""},
		{"169.254.0.0", false, "link-local"},
		{"169.254.169.254", false, "link-local"},
		{"169.254.255.255", false, "link-local"},
		{"169.255.0.0", true, ""},
		// 172.16.0.0/12
		{"172.15.255.255", true, ""},
		{"172.16.0.0", false, "private"},
		{"172.31.255.255", false, "private"},
		{"172.32.0.0", true, ""},
		// 192.0.0.0/24 and its entries
		{"191.255.255.255", true, ""},
		{"192.0.0.0", false, "ipv4-service-continuity"},
		{"192.0.0.7", false, "ipv4-service-continuity"},
		{"192.0.0.8", false, "ipv4-dummy"},
		{"192.0.0.9", true, "pcp-anycast"},
		{"192.0.0.10", true, "turn-anycast"},
		{"192.0.0.11", false, "ietf-protocol-assignments"},
		{"192.0.0.169", false, "ietf-protocol-assignments"},
		{"192.0.0.170", false, "nat64-discovery"},
		{"192.0.0.171", false, "nat64-discovery"},
		{"192.0.0.172", false, "ietf-protocol-assignments"},
		{"192.0.0.255", false, "ietf-protocol-assignments"},
		{"192.0.1.0", true, ""},
		// 192.0.2.0/24 TEST-NET-1
		{"192.0.1.255", true, ""},
		{"192.0.2.0", false, "documentation"},
		{"192.0.2.255", false, "documentation"},
		{"192.0.3.0", true, ""},
		// 192.31.196.0/24 AS112-v4 (globally reachable)
		{"192.31.195.255", true, ""},
		{"192.31.196.0", true, "as112"},
		{"192.31.196.255", true, "as112"},
		{"192.31.197.0", true, ""},
		// 192.52.193.0/24 AMT (globally reachable)
		{"192.52.192.255", true, ""},
		{"192.52.193.0", true, "amt"},
		{"192.52.193.255", true, "amt"},
		{"192.52.194.0", true, ""},
		// 192.88.99.0/24 deprecated 6to4 relay anycast
		{"192.88.98.255", true, ""},
		{"192.88.99.0", false, "6to4-relay-anycast"},
		{"192.88.99.255", false, "6to4-relay-anycast"},
		{"192.88.100.0", true, ""},
		// 192.168.0.0/16
		{"192.167.255.255", true, ""},
		{"192.168.0.0", false, "private"},
		{"192.168.255.255", false, "private"},
		{"192.169.0.0", true, ""},
		// 192.175.48.0/24 AS112 direct delegation (globally reachable)
		{"192.175.47.255", true, ""},
		{"192.175.48.0", true, "as112-direct-delegation"},
		{"192.175.48.255", true, "as112-direct-delegation"},
		{"192.175.49.0", true, ""},
		// 198.18.0.0/15 benchmarking
		{"198.17.255.255", true, ""},
		{"198.18.0.0", false, "benchmarking"},
		{"198.19.255.255", false, "benchmarking"},
		{"198.20.0.0", true, ""},
		// 198.51.100.0/24 TEST-NET-2
		{"198.51.99.255", true, ""},
		{"198.51.100.0", false, "documentation"},
		{"198.51.100.255", false, "documentation"},
		{"198.51.101.0", true, ""},
		// 203.0.113.0/24 TEST-NET-3
		{"203.0.112.255", true, ""},
		{"203.0.113.0", false, "documentation"},
		{"203.0.113.255", false, "documentation"},
		{"203.0.114.0", true, ""},
		// 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, broadcast
		{"223.255.255.255", true, ""},
		{"224.0.0.0", false, "multicast"},
		{"239.255.255.255", false, "multicast"},
		{"240.0.0.0", false, "reserved"},
		{"255.255.255.254", false, "reserved"},
		{"255.255.255.255", false, "broadcast"},
		// Ordinary public IPv4.
		{"8.8.8.8", true, ""},
		{"93.184.216.34", true, ""},

		// IPv6: ::/128, ::1/128, ::/96 compatible (refused outright)
		{"::", false, "unspecified"},
		{"::1", false, "loopback"},
		{"::2", false, "ipv4-compatible"},
		{"::8.8.8.8", false, "ipv4-compatible"},
		{"::255.255.255.255", false, "ipv4-compatible"},
		{"::1:0:0", false, "not-global-unicast"},
		// ::ffff:0:0/96 mapped: decided by the embedded IPv4
		{"::fffe:ffff:ffff", false, "not-global-unicast"},
		{"::ffff:0.0.0.0", false, "ipv4-mapped:this-host"},
		{"::ffff:8.8.8.8", true, "ipv4-mapped"},
		{"::ffff:127.0.0.1", false, "ipv4-mapped:loopback"},
		{"::ffff:169.254.169.254", false, "ipv4-mapped:link-local"},
		{"::ffff:10.1.2.3", false, "ipv4-mapped:private"},
		{"::ffff:255.255.255.255", false, "ipv4-mapped:broadcast"},
		{"::1:0:0:0", false, "not-global-unicast"},
		// 64:ff9b::/96 NAT64 well-known prefix: decided by the embedded IPv4
		{"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", false, "not-global-unicast"},
		{"64:ff9b::", false, "nat64:this-host"},
		{"64:ff9b::8.8.8.8", true, "nat64"},
		{"64:ff9b::127.0.0.1", false, "nat64:loopback"},
		{"64:ff9b::192.168.1.1", false, "nat64:private"},
		{"64:ff9b::169.254.169.254", false, "nat64:link-local"},
		{"64:ff9b::255.255.255.255", false, "nat64:broadcast"},
		{"64:ff9b::1:0:0", false, "not-global-unicast"},
		// 64:ff9b:1::/48 local-use NAT64 (refused outright)
		{"64:ff9b:1::", false, "nat64-local-use"},
		{"64:ff9b:1::808:808", false, "nat64-local-use"},
		{"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", false, "nat64-local-use"},
		{"64:ff9b:2::", false, "not-global-unicast"},
		// 100::/64 discard-only, 100:0:0:1::/64 dummy prefix
		{"100::", false, "discard-only"},
		{"100::ffff:ffff:ffff:ffff", false, "discard-only"},
		{"100:0:0:1::", false, "dummy-prefix"},
		{"100:0:0:1:ffff:ffff:ffff:ffff", false, "dummy-prefix"},
		{"100:0:0:2::", false, "not-global-unicast"},
		// 2000::/3 starts; 2001::/23 IETF protocol assignments and entries
		{"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "not-global-unicast"},
		{"2000::", true, ""},
		{"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, ""},
		{"2001::", false, "teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false, "teredo"},
		{"2001:0:ffff:ffff:ffff:ffff:ffff:ffff", false, "teredo"},
		{"2001:1::", false, "ietf-protocol-assignments"},
		{"2001:1::1", true, "pcp-anycast"},
		{"2001:1::2", true, "turn-anycast"},
		{"2001:1::3", true, "dns-sd-srp-anycast"},
		{"2001:1::4", false, "ietf-protocol-assignments"},
		{"2001:2::", false, "benchmarking"},
		{"2001:2:0:ffff:ffff:ffff:ffff:ffff", false, "benchmarking"},
		{"2001:2:1::", false, "ietf-protocol-assignments"},
		{"2001:3::", true, "amt"},
		{"2001:3:ffff:ffff:ffff:ffff:ffff:ffff", true, "amt"},
		{"2001:4:111:ffff:ffff:ffff:ffff:ffff", false, "ietf-protocol-assignments"},
		{"2001:4:112::", true, "as112"},
		{"2001:4:112:ffff:ffff:ffff:ffff:ffff", true, "as112"},
		{"2001:4:113::", false, "ietf-protocol-assignments"},
		{"2001:f:ffff:ffff:ffff:ffff:ffff:ffff", false, "ietf-protocol-assignments"},
		{"2001:10::", false, "orchid-deprecated"},
		{"2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", false, "orchid-deprecated"},
		{"2001:20::", true, "orchid-v2"},
		{"2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", true, "orchid-v2"},
		{"2001:30::", true, "drone-remote-id"},
		{"2001:3f:ffff:ffff:ffff:ffff:ffff:ffff", true, "drone-remote-id"},
		{"2001:40::", false, "ietf-protocol-assignments"},
		{"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", false, "ietf-protocol-assignments"},
		{"2001:200::", true, ""},
		// 2001:db8::/32 documentation
		{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true, ""},
		{"2001:db8::", false, "documentation"},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false, "documentation"},
		{"2001:db9::", true, ""},
		// 2002::/16 6to4 (refused outright)
		{"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, ""},
		{"2002::", false, "6to4"},
		{"2002:808:808::", false, "6to4"},
		{"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "6to4"},
		{"2003::", true, ""},
		// 2620:4f:8000::/48 AS112 direct delegation (globally reachable)
		{"2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", true, ""},
		{"2620:4f:8000::", true, "as112-direct-delegation"},
		{"2620:4f:8000:ffff:ffff:ffff:ffff:ffff", true, "as112-direct-delegation"},
		{"2620:4f:8001::", true, ""},
		// 3fff::/20 documentation
		{"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, ""},
		{"3fff::", false, "documentation"},
		{"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false, "documentation"},
		{"3fff:1000::", true, ""},
		{"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, ""},
		{"4000::", false, "not-global-unicast"},
		// 5f00::/16 SRv6 SIDs
		{"5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "not-global-unicast"},
		{"5f00::", false, "srv6-sids"},
		{"5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "srv6-sids"},
		// fc00::/7 ULA (AWS metadata fd00:ec2::254)
		{"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "not-global-unicast"},
		{"fc00::", false, "unique-local"},
		{"fd00:ec2::254", false, "unique-local"},
		{"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "unique-local"},
		// fe80::/10 link-local, fec0::/10 site-local, ff00::/8 multicast
		{"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "not-global-unicast"},
		{"fe80::", false, "link-local"},
		{"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "link-local"},
		{"fec0::", false, "site-local"},
		{"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "site-local"},
		{"ff00::", false, "multicast"},
		{"ff02::1", false, "multicast"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, "multicast"},
		// Ordinary public IPv6.
		{"2606:4700:4700::1111", true, ""},
		{"2a00:1450:4001:82a::200e", true, ""},
		// Zones are never global.
		{"fe80::1%eth0", false, "zoned"},
		{"2606:4700:4700::1111%eth0", false, "zoned"},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			c := Classify(a)
			if c.Global != tc.global {
				t.Errorf("Classify(%s).Global = %v (%s), want %v", tc.addr, c.Global, c.Name, tc.global)
			}
			if tc.name != "" && c.Name != tc.name {
				t.Errorf("Classify(%s).Name = %q, want %q", tc.addr, c.Name, tc.name)
			}
			if c.Range.IsValid() && !c.Range.Contains(a.WithZone("")) {
				t.Errorf("Classify(%s).Range = %s does not contain it", tc.addr, c.Range)
			}
		})
	}
	if c := Classify(netip.Addr{}); c.Global {
		t.Error("the zero Addr is global")
	}
}

// TestClassifyTableEdges walks every table entry: its first and last
// address are refused unless IANA marks the block globally reachable
// (or a more specific entry does), and the deciding block is the most
// specific one containing the address.
func TestClassifyTableEdges(t *testing.T) {
	for _, table := range [][]special{specials4, specials6} {
		for _, s := range table {
			for _, a := range []netip.Addr{s.prefix.Masked().Addr(), lastAddr(s.prefix)} {
				c := Classify(a)
				if s.prefix == mapped6 || s.prefix == nat64WKP {
					if c.Range != s.prefix {
						t.Errorf("%s: range %s, want %s", a, c.Range, s.prefix)
					}
					continue
				}
				if !c.Range.IsValid() || c.Range.Bits() < s.prefix.Bits() {
					t.Errorf("%s (edge of %s %s): decided by %s %s, not the most specific block", a, s.prefix, s.name, c.Range, c.Name)
				}
				if c.Range == s.prefix && c.Global != s.global {
					t.Errorf("%s (edge of %s): global %v, want %v", a, s.prefix, c.Global, s.global)
				}
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestDialAddrUnmaps(t *testing.T) {
	if got := dialAddr(netip.MustParseAddr("::ffff:8.8.8.8")); got != netip.MustParseAddr("8.8.8.8") {
		t.Errorf("dialAddr(mapped) = %s", got)
	}
	if got := dialAddr(pub6); got != pub6 {
		t.Errorf("dialAddr(v6) = %s", got)
	}
}

func BenchmarkClassify(b *testing.B) {
	addrs := []netip.Addr{pub1, pub6, netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("fd00::1")}
	for b.Loop() {
		for _, a := range addrs {
			Classify(a)
		}
	}
}
