package weburl

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := map[string]struct {
		in, base       string
		href, hostname string
		port, origin   string
		wantErr        bool
	}{
		"simple":          {in: "https://Example.COM/a/../b?q#f", href: "https://example.com/b?q#f", hostname: "example.com", origin: "https://example.com"},
		"default port":    {in: "http://example.com:80/", href: "http://example.com/", hostname: "example.com", origin: "http://example.com"},
		"other port":      {in: "http://example.com:8080/", href: "http://example.com:8080/", hostname: "example.com", port: "8080", origin: "http://example.com:8080"},
		"relative":        {in: "../c", base: "https://example.com/a/b", href: "https://example.com/c", hostname: "example.com", origin: "https://example.com"},
		"idn":             {in: "https://bücher.example/", href: "https://xn--bcher-kva.example/", hostname: "xn--bcher-kva.example", origin: "https://xn--bcher-kva.example"},
		"hex ipv4":        {in: "http://0x7f.1/", href: "http://127.0.0.1/", hostname: "127.0.0.1", origin: "http://127.0.0.1"},
		"backslash":       {in: "http:\\\\evil.com\\x", href: "http://evil.com/x", hostname: "evil.com", origin: "http://evil.com"},
		"opaque":          {in: "data:text/plain,hi", href: "data:text/plain,hi", origin: "null"},
		"no scheme":       {in: "example.com/x", wantErr: true},
		"bad port":        {in: "http://example.com:99999/", wantErr: true},
		"empty host":      {in: "http:///", wantErr: true},
		"forbidden point": {in: "http://exa mple.com/", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u, err := Parse(tc.in, tc.base)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error", tc.in, u)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if u.Href != tc.href || u.Hostname != tc.hostname || u.Port != tc.port || u.Origin != tc.origin {
				t.Errorf("Parse(%q) = href %q hostname %q port %q origin %q; want %q %q %q %q",
					tc.in, u.Href, u.Hostname, u.Port, u.Origin, tc.href, tc.hostname, tc.port, tc.origin)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"https://example.com/", "http://[::1]:8080/x?y#z", "http://0x7f.1", "a:b", "http://ü.example/"} {
		f.Add(s, "")
	}
	f.Add("../x", "https://example.com/a/")
	f.Fuzz(func(t *testing.T, in, base string) {
		u, err := Parse(in, base)
		if err != nil {
			return
		}
		// A parsed URL re-parses to itself.
		again, err := Parse(u.Href, "")
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", u.Href, in, err)
		}
		if again.Href != u.Href {
			t.Fatalf("re-parse of %q gave %q", u.Href, again.Href)
		}
	})
}

// TestParseCached: a URL parsed again comes from the cache, equal to a
// fresh parse and the caller's own (changing it changes no later
// result); the base is part of the key.
func TestParseCached(t *testing.T) {
	in := "http://a.example/x/../y?q \u00e9" // a validation error: a space
	fresh, err := parse(in, "")
	if err != nil || len(fresh.Validation) == 0 {
		t.Fatalf("parse: %+v %v (want validation errors)", fresh, err)
	}
	for i := range 3 {
		u, err := Parse(in, "")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(u, fresh) {
			t.Fatalf("parse %d: %+v, want %+v", i, u, fresh)
		}
		u.Href, u.Validation[0] = "changed", "changed" // the caller's copy
	}
	if u, _ := Parse("z", "http://a.example/x/"); u.Href != "http://a.example/x/z" {
		t.Fatalf("relative: %q", u.Href)
	}
	if u, _ := Parse("z", "http://b.example/"); u.Href != "http://b.example/z" {
		t.Fatalf("the same input on another base: %q", u.Href)
	}
}
