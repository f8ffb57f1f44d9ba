// Package fetch holds the types of an outbound request a sandboxed task
// makes: the sandbox asks with them (its Fetcher interface is declared
// where it is used) and the egress gateway answers with them, and
// neither imports the other.
package fetch

import "net/http"

// Request is an outbound request from a guest.
type Request struct {
	Method  string
	URL     string
	Headers http.Header
	Body    []byte
}

// Response is the answer to an outbound request. Body is already bounded
// by the profile's max_response_bytes.
type Response struct {
	Status  int
	Headers http.Header
	Body    []byte
	URL     string // final URL after redirects
}

// Error is a refused or failed outbound request. Clause names the policy
// clause for refusals (profile.default_deny, address.private, …); it is
// empty for network failures.
type Error struct {
	Clause  string
	Message string
}

func (e *Error) Error() string {
	if e.Clause != "" {
		return "fetch blocked by " + e.Clause + ": " + e.Message
	}
	return "fetch failed: " + e.Message
}
