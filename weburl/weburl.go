// Package weburl is the one WHATWG URL parser of leash. The JS engine's
// URL class (through a host call) and the egress gateway both parse with
// it, so the sandbox and the gateway never disagree on what host a URL
// names.
package weburl

import (
	"errors"
	"fmt"
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nlnwa/whatwg-url/url"
)

// MaxLen bounds the input; longer strings are refused before parsing.
const MaxLen = 64 << 10

// ErrTooLong is returned for inputs over MaxLen.
var ErrTooLong = errors.New("url is too long")

// parser follows the WHATWG URL Standard as browsers and workerd do:
// validation errors that the standard tolerates are tolerated; failures
// are errors.
var parser = url.NewParser(url.WithReportValidationErrors())

// URL is a parsed URL, its parts named as in the URL Standard's API.
type URL struct {
	Href     string `json:"href"`
	Origin   string `json:"origin"`
	Protocol string `json:"protocol"`
	Username string `json:"username"`
	Password string `json:"password"`
	Host     string `json:"host"`
	Hostname string `json:"hostname"`
	Port     string `json:"port"`
	Pathname string `json:"pathname"`
	Search   string `json:"search"`
	Hash     string `json:"hash"`
	// Validation lists the non-fatal validation errors the parser
	// reported; a strict caller (egress) may refuse URLs that have any.
	Validation []string `json:"-"`
	// IPv4 and IPv6 say whether the host is an address literal.
	IPv4 bool `json:"-"`
	IPv6 bool `json:"-"`
}

// parsed keeps the last URLs parsed (input and base up to
// maxCachedLen bytes): a task's URL is parsed by the node's validation
// and again for the guest's environment, and most tasks name the same
// few, while one parse cost about 2% of a node's CPU under load (issue
// 19). Parse is a pure function of its arguments; each caller gets its
// own copy.
var parsed, _ = lru.New[[2]string, *URL](maxCached) // errors only for a size ≤ 0

const (
	maxCached    = 1024
	maxCachedLen = 1024
)

// Parse parses input, relative to base when base is not empty.
func Parse(input, base string) (*URL, error) {
	if len(input) > MaxLen || len(base) > MaxLen {
		return nil, ErrTooLong
	}
	cache := len(input)+len(base) <= maxCachedLen
	if cache {
		if u, ok := parsed.Get([2]string{input, base}); ok {
			return u.clone(), nil
		}
	}
	u, err := parse(input, base)
	if err == nil && cache {
		parsed.Add([2]string{input, base}, u.clone())
	}
	return u, err
}

func (u *URL) clone() *URL {
	c := *u
	c.Validation = slices.Clone(u.Validation)
	return &c
}

func parse(input, base string) (*URL, error) {
	var (
		u   *url.Url
		err error
	)
	if base != "" {
		u, err = parser.ParseRef(base, input)
	} else {
		u, err = parser.Parse(input)
	}
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	out := &URL{
		Href:     u.Href(false),
		Protocol: u.Protocol(),
		Username: u.Username(),
		Password: u.Password(),
		Host:     u.Host(),
		Hostname: u.Hostname(),
		Port:     u.Port(),
		Pathname: u.Pathname(),
		Search:   u.Search(),
		Hash:     u.Hash(),
		IPv4:     u.IsIPv4(),
		IPv6:     u.IsIPv6(),
	}
	out.Origin = origin(u)
	for _, ve := range u.ValidationErrors() {
		out.Validation = append(out.Validation, ve.Error())
	}
	return out, nil
}

// origin serialises the URL's origin: scheme://host[:port] for special
// schemes, "null" otherwise (the URL Standard's opaque origin).
func origin(u *url.Url) string {
	switch u.Scheme() {
	case "http", "https", "ws", "wss", "ftp":
		return u.Protocol() + "//" + u.Host()
	case "blob":
		if inner, err := parser.Parse(u.Pathname()); err == nil {
			switch inner.Scheme() {
			case "http", "https":
				return origin(inner)
			}
		}
	}
	return "null"
}
