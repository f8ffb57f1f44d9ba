package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/leash-dev/leash/weburl"
)

// MaxHostLen bounds a host name in its ASCII form (RFC 1035, without the
// trailing dot).
const MaxHostLen = 253

// NormalizeHostPattern turns an allow or deny host entry into its
// canonical form: lower case, one trailing dot removed, IDN labels in
// punycode, "*." only as a leading wildcard for subdomains. IP literals are
// kept in their canonical text form (RFC 5952 for IPv6, unbracketed).
//
// Names go through weburl, the WHATWG host parser the egress gateway and
// the JS engine's URL use, so a rule and a request can never disagree on
// what a name means. On top of it the rules are strict: a name is labels
// of letters, digits, '-' and '_' (no leading or trailing '-'); an IPv4
// literal must be written in canonical dotted-decimal; wildcards cover
// names only, never addresses.
func NormalizeHostPattern(h string) (string, error) {
	if h == "" {
		return "", errors.New("host is empty")
	}
	if len(h) > 4*MaxHostLen {
		return "", fmt.Errorf("host %.32q… is too long", h)
	}
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return "", fmt.Errorf("host %q is not an IPv6 literal", h)
		}
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("host %q is not an IPv6 literal", h)
		}
		return a.String(), nil
	}
	if strings.Contains(h, ":") {
		// An unbracketed IPv6 literal is accepted; a name never has ':'.
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("host %q has characters a host name cannot have", h)
		}
		return a.String(), nil
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c == 0x7f || strings.IndexByte(`/\@?#%[]<>^|"'{}`+"`", c) >= 0 {
			return "", fmt.Errorf("host %q has characters a host name cannot have", h)
		}
	}
	wild := false
	name := h
	if strings.HasPrefix(name, "*.") {
		wild = true
		name = name[2:]
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("host %q: a wildcard is only allowed as the leading label, as in *.example.com", h)
	}
	u, err := weburl.Parse("http://"+name+"/", "")
	if err != nil {
		return "", fmt.Errorf("host %q is not a valid host name: %v", h, err)
	}
	if u.IPv6 {
		return "", fmt.Errorf("host %q is not a valid host name", h)
	}
	if u.IPv4 {
		if wild {
			return "", fmt.Errorf("host %q: a wildcard covers names, not addresses", h)
		}
		if name != u.Hostname {
			return "", fmt.Errorf("host %q is a non-canonical IPv4 address; write it as %s", h, u.Hostname)
		}
		return u.Hostname, nil
	}
	ascii := strings.TrimSuffix(u.Hostname, ".")
	if err := CheckHostName(ascii); err != nil {
		return "", fmt.Errorf("host %q: %v", h, err)
	}
	if wild {
		if !strings.Contains(ascii, ".") {
			return "", fmt.Errorf("host %q: a wildcard needs at least two labels after it", h)
		}
		return "*." + ascii, nil
	}
	return ascii, nil
}

// CheckHostName checks a host name already in its canonical ASCII form (as
// the WHATWG host parser returns it, without the trailing dot): labels of
// 1 to 63 lower-case letters, digits, '-' and '_', not starting or ending
// with '-', at most MaxHostLen bytes in all, and a last label that is not
// all digits (that would be an IPv4 address).
func CheckHostName(name string) error {
	if name == "" {
		return errors.New("host name is empty")
	}
	if len(name) > MaxHostLen {
		return fmt.Errorf("host name is longer than %d bytes", MaxHostLen)
	}
	start := 0
	digits := true
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c == '-', c == '_':
				digits = false
			default:
				return fmt.Errorf("host name has the character %q", c)
			}
			continue
		}
		label := name[start:i]
		switch {
		case label == "":
			return errors.New("host name has an empty label")
		case len(label) > 63:
			return errors.New("host name has a label longer than 63 bytes")
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("host name label %q starts or ends with '-'", label)
		}
		if i == len(name) && (digits || isHexNumber(label)) {
			return errors.New("host name ends in a number, like an IPv4 address")
		}
		start = i + 1
		digits = true
	}
	return nil
}

// isHexNumber reports whether label is 0x followed by hex digits, which
// the WHATWG host parser reads as an IPv4 number.
func isHexNumber(label string) bool {
	if len(label) < 2 || label[0] != '0' || label[1] != 'x' {
		return false
	}
	for i := 2; i < len(label); i++ {
		c := label[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
