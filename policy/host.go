package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// hostProfile converts names to the ASCII (punycode) form used for every
// comparison, with the strict rules of WHATWG/UTS #46 lookups.
var hostProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.StrictDomainName(true),
	idna.ValidateLabels(true),
	idna.VerifyDNSLength(true),
)

// NormalizeHostPattern turns an allow or deny host entry into its
// canonical form: lower case, one trailing dot removed, IDN labels in
// punycode, "*." only as a leading wildcard for subdomains. IP literals are
// kept in their canonical text form; bracketed IPv6 is unbracketed.
func NormalizeHostPattern(h string) (string, error) {
	if h == "" {
		return "", errors.New("host is empty")
	}
	if strings.ContainsAny(h, "/\\@:?#% \t\r\n\x00") && !strings.HasPrefix(h, "[") {
		return "", fmt.Errorf("host %q has characters a host name cannot have", h)
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("host %q is not an IPv6 literal", h)
		}
		return a.String(), nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("host %q has a zone", h)
		}
		return a.String(), nil
	}
	wild := false
	name := strings.TrimSuffix(h, ".")
	if strings.HasPrefix(name, "*.") {
		wild = true
		name = name[2:]
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("host %q: a wildcard is only allowed as the leading label, as in *.example.com", h)
	}
	ascii, err := hostProfile.ToASCII(name)
	if err != nil {
		return "", fmt.Errorf("host %q is not a valid domain name: %v", h, err)
	}
	if looksLikeIPv4(ascii) {
		return "", fmt.Errorf("host %q looks like a non-canonical IPv4 address", h)
	}
	if wild {
		if !strings.Contains(ascii, ".") {
			return "", fmt.Errorf("host %q: a wildcard needs at least two labels after it", h)
		}
		return "*." + ascii, nil
	}
	return ascii, nil
}

// looksLikeIPv4 reports whether the WHATWG host parser would treat name as
// an IPv4 address: its last label is all digits, or 0x-prefixed hex.
func looksLikeIPv4(name string) bool {
	labels := strings.Split(name, ".")
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	if strings.HasPrefix(last, "0x") || strings.HasPrefix(last, "0X") {
		return true
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
