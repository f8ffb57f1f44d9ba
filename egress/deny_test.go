package egress

import (
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/leash-dev/leash/policy"
)

func TestDenyList(t *testing.T) {
	d, err := CompileDeny([]string{
		"metadata.google.internal", "*.evil.com", "169.254.0.0/16", "10.0.0.0/8",
		"2001:db8::/32", "93.184.216.99", "::ffff:5.6.7.0/120", "Blocked.Example.ORG.",
	})
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{
		"metadata.google.internal": true,
		"a.evil.com":               true,
		"a.b.evil.com":             true,
		"evil.com":                 false, // *.evil.com never covers the apex
		"notevil.com":              false,
		"evil.com.example.net":     false,
		"blocked.example.org":      true,
		"x.blocked.example.org":    false,
		"93.184.216.99":            true,
		"10.1.2.3":                 true,
		"93.184.216.34":            false,
	}
	for h, want := range hosts {
		if _, got := d.MatchHost(h); got != want {
			t.Errorf("MatchHost(%s) = %v, want %v", h, got, want)
		}
	}
	addrs := map[string]bool{
		"169.254.169.254":          true,
		"169.253.255.255":          false,
		"169.255.0.0":              false,
		"10.255.255.255":           true,
		"11.0.0.0":                 false,
		"::ffff:169.254.169.254":   true, // mapped: checked as IPv4
		"64:ff9b::a9fe:a9fe":       true, // NAT64: the embedded IPv4
		"64:ff9b::5db8:d822":       false,
		"2001:db8::1":              true,
		"2001:db9::1":              false,
		"93.184.216.99":            true,
		"93.184.216.98":            false,
		"5.6.7.8":                  true, // from ::ffff:5.6.7.0/120
		"5.6.8.1":                  false,
		"fe80::1%eth0":             false,
		"2001:db8::1%eth0":         true,
		"::ffff:10.0.0.1":          true,
		"2606:2800:220:1::1":       false,
		"64:ff9b::10.1.1.1":        true,
		"64:ff9b:1::a9fe:a9fe":     false, // local-use NAT64 is refused by the classifier, not the deny list
		"::ffff:93.184.216.99":     true,
		"::ffff:93.184.216.100":    false,
		"2001:db8:ffff:ffff::ffff": true,
	}
	for a, want := range addrs {
		if _, got := d.MatchAddr(netip.MustParseAddr(a)); got != want {
			t.Errorf("MatchAddr(%s) = %v, want %v", a, got, want)
		}
	}
	want := []string{"*.evil.com", "10.0.0.0/8", "169.254.0.0/16", "2001:db8::/32", "5.6.7.0/24", "93.184.216.99", "blocked.example.org", "metadata.google.internal"}
	if got := d.Entries(); !slices.Equal(got, want) {
		t.Errorf("Entries() = %q, want %q", got, want)
	}
}

func TestDenyListRuntimeAdd(t *testing.T) {
	d, err := CompileDeny(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.MatchHost("api.example.com"); ok {
		t.Fatal("empty list denies")
	}
	if err := d.Add("api.example.com", "203.0.113.0/24"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.MatchHost("api.example.com"); !ok {
		t.Error("added host not denied")
	}
	if err := d.Add("bad host!"); err == nil {
		t.Error("Add accepted a bad entry")
	}
	if got := d.Entries(); len(got) != 2 {
		t.Errorf("a failed Add changed the list: %q", got)
	}
	// Concurrent adds all land.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Add(netip.AddrFrom4([4]byte{1, 1, 1, byte(i)}).String()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := len(d.Entries()); got != 22 {
		t.Errorf("%d entries after concurrent adds, want 22", got)
	}
	if err := d.Replace([]string{"x.example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.MatchHost("api.example.com"); ok {
		t.Error("Replace kept an old entry")
	}
	var nilList *DenyList
	if _, ok := nilList.MatchHost("x.example.com"); ok {
		t.Error("nil list denies")
	}
	if _, ok := nilList.MatchAddr(pub1); ok {
		t.Error("nil list denies an address")
	}
}

func TestDenyListRejects(t *testing.T) {
	for _, e := range []string{"", "10.0.0.0/33", "10.0.0.0/x", "*.com", "a b", "fe80::/10%eth0", "http://x.com"} {
		if _, err := CompileDeny([]string{e}); err == nil {
			t.Errorf("CompileDeny(%q) succeeded", e)
		}
	}
}

// TestDenyAgreesWithPolicy: what the bundle validator accepts, the
// gateway compiles, and the other way round.
func TestDenyAgreesWithPolicy(t *testing.T) {
	for _, e := range []string{"metadata.google.internal", "*.evil.com", "169.254.0.0/16", "2001:db8::/32", "93.184.216.99", "[2001:db8::1]", "x..y", "*.com", "10.0.0.0/33", "0x7f.1", "::ffff:0:0/64", "::/0"} {
		_, gerr := CompileDeny([]string{e})
		perr := policy.ValidateDenyEntry(e)
		if (gerr == nil) != (perr == nil) {
			t.Errorf("%q: gateway %v, policy %v", e, gerr, perr)
		}
	}
}

func TestDenyWideIPv6CoversMapped(t *testing.T) {
	d, err := CompileDeny([]string{"::/64"})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"::1": true, "8.8.8.8": true, "::ffff:8.8.8.8": true, "2606:2800:220:1::1": false} {
		if _, got := d.MatchAddr(netip.MustParseAddr(a)); got != want {
			t.Errorf("MatchAddr(%s) = %v, want %v", a, got, want)
		}
	}
}
