package egress

import (
	"bytes"
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"

	"github.com/leash-dev/leash/policy"
)

var urlSeeds = []string{
	"https://api.example.com/", "HTTP://API.Example.COM.:80/a?b#c", "http://[::ffff:127.0.0.1]:8080/",
	"http://0x7f.1/", "http://127.1/", "http://user@host/", "http://a\\@b/", "http://bücher.example/",
	"http://exa%61mple.com/", "http://[example.com]/", "http://example.com:0080/", "http:example.com",
	"https://xn--bcher-kva.example./x", "http://１２７.０.０.１/", "http://a..b/", "http://*.x.com/",
	"http://[fe80::1%25eth0]/", "ftp://x/", "http://93.184.216.34./", "http://_a.example.com/",
	"http://00A000", "http://a.b.0abc/",
}

// FuzzParseTarget: the strict parser never panics, and what it accepts
// is canonical: it re-parses to itself, its host is what the policy
// normaliser makes of it (rules and requests agree), and its port is
// real.
func FuzzParseTarget(f *testing.F) {
	for _, s := range urlSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := ParseTarget(raw)
		if err != nil {
			if c := ClauseOf(err); c != ClauseURLInvalid && c != ClauseScheme {
				t.Fatalf("ParseTarget(%q): clause %q", raw, c)
			}
			return
		}
		if tg.Scheme != "http" && tg.Scheme != "https" || tg.Port < 1 || tg.Port > 65535 || tg.Host == "" {
			t.Fatalf("ParseTarget(%q) = %+v", raw, tg)
		}
		again, err := ParseTarget(tg.String())
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", tg.String(), raw, err)
		}
		if again != tg {
			t.Fatalf("re-parse of %q: %+v, want %+v", tg.String(), again, tg)
		}
		norm, err := policy.NormalizeHostPattern(tg.Host)
		if err != nil {
			t.Fatalf("host %q (from %q) is refused as a rule: %v", tg.Host, raw, err)
		}
		if norm != tg.Host {
			t.Fatalf("host %q normalises as a rule to %q", tg.Host, norm)
		}
		if a, err := netip.ParseAddr(tg.Host); (err == nil) != tg.Addr.IsValid() || err == nil && a != tg.Addr {
			t.Fatalf("host %q: literal %v", tg.Host, tg.Addr)
		}
	})
}

// FuzzNormalizeHostPattern: normalisation is idempotent and its output
// is a clean pattern.
func FuzzNormalizeHostPattern(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.Example.COM.", "Bücher.example", "[::1]", "::1", "1.2.3.4", "0x7f.1", "*.1.2.3.4", "a..b", "xn--bcher-kva.example", "*.com", "-a.com", "a_b.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n, err := policy.NormalizeHostPattern(h)
		if err != nil {
			return
		}
		n2, err := policy.NormalizeHostPattern(n)
		if err != nil || n2 != n {
			t.Fatalf("NormalizeHostPattern(%q) = %q, then %q, %v", h, n, n2, err)
		}
		if strings.ContainsAny(n, "/\\@?#%[] \t\r\n\x00") || strings.HasSuffix(n, ".") || n != strings.ToLower(n) {
			t.Fatalf("NormalizeHostPattern(%q) = %q", h, n)
		}
	})
}

// FuzzMatch: the map-and-labels matcher agrees with the definition
// (exact equality, or a strict subdomain of a wildcard's suffix).
func FuzzMatch(f *testing.F) {
	f.Add("*.example.com", "a.example.com")
	f.Add("*.example.com", "example.com")
	f.Add("example.com", "EXAMPLE.com.")
	f.Add("*.example.com", "evil-example.com")
	f.Add("*.example.com", "example.com.evil.net")
	f.Add("bücher.example", "xn--bcher-kva.example")
	f.Add("1.2.3.4", "1.2.3.4")
	f.Add("[::1]", "[::1]")
	f.Add("*.b.0abc", "a.b.0abc")
	f.Add("a", "A:1")
	f.Fuzz(func(t *testing.T, pattern, host string) {
		pat, err := policy.NormalizeHostPattern(pattern)
		if err != nil {
			return
		}
		tg, err := ParseTarget("http://" + host + "/")
		if err != nil {
			return
		}
		r, err := Compile("fuzz", &policy.Profile{Egress: policy.Egress{Allow: []policy.AllowRule{{Host: pattern}}}})
		if err != nil {
			t.Fatalf("Compile(%q): %v", pattern, err)
		}
		_, err = r.checkTarget(nil, "GET", tg)
		got := err == nil
		want := tg.Host == pat
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			want = !tg.Addr.IsValid() && strings.HasSuffix(tg.Host, "."+suffix)
		}
		if portOK := tg.Port == 80 || tg.Port == 443; got != (want && portOK) {
			t.Fatalf("pattern %q (%q), host %q (%q:%d): match %v, want %v (%v)", pattern, pat, host, tg.Host, tg.Port, got, want && portOK, err)
		}
		// The deny list matches names the same way.
		d, err := CompileDeny([]string{pattern})
		if err != nil {
			t.Fatalf("CompileDeny(%q): %v", pattern, err)
		}
		if _, denied := d.MatchHost(tg.Host); denied != want {
			t.Fatalf("deny %q, host %q: %v, want %v", pat, tg.Host, denied, want)
		}
	})
}

// FuzzClassify: the classifier never panics, and a mapped address is
// decided as its IPv4.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1})
	f.Add(netip.MustParseAddr("64:ff9b::a9fe:a9fe").AsSlice())
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		c := Classify(a)
		if a.Is4() {
			if m := Classify(netip.AddrFrom16(a.As16())); m.Global != c.Global {
				t.Fatalf("%s global %v, mapped %v", a, c.Global, m.Global)
			}
		}
	})
}

// FuzzReadClientHello: the ClientHello reader never panics, never reads
// past its bound, returns only bytes of its input, and what it accepts
// it accepts again from exactly the bytes it read (the replay carries
// the whole hello).
func FuzzReadClientHello(f *testing.F) {
	for _, cfg := range []*tls.Config{
		{ServerName: "api.example.com"},
		{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS13},
		{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12},
		{ServerName: "secret.example", MinVersion: tls.VersionTLS13, EncryptedClientHelloConfigList: echConfigList(f, "front.example")},
	} {
		h := captureHello(f, cfg)
		f.Add(h)
		f.Add(bytes.Join(reframe(h, 33), nil))
		f.Add(h[:len(h)/2])
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	const bound = 4096
	f.Fuzz(func(t *testing.T, in []byte) {
		h, raw, err := ReadClientHello(bytes.NewReader(in), bound)
		if len(raw) > bound || !bytes.HasPrefix(in, raw) {
			t.Fatalf("read %d bytes, not a prefix of the input within %d", len(raw), bound)
		}
		if err != nil {
			if h != nil {
				t.Fatal("a hello with an error")
			}
			return
		}
		again, raw2, err := ReadClientHello(bytes.NewReader(raw), bound)
		if err != nil || again.ServerName != h.ServerName || again.ECH != h.ECH || !bytes.Equal(raw2, raw) {
			t.Fatalf("the bytes read do not carry the hello: %v", err)
		}
	})
}
