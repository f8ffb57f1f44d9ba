package egress

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Drill destinations: reserved names under DrillSuffix that the gateway
// answers itself, in process, for the chaos drills (`leash drill`,
// docs/runbook.md): nothing is resolved or dialled for them, so they
// work on any machine while every loopback and private address stays
// refused. A profile grants one only by an allow rule that names it
// exactly (no wildcard grants it); every other name under DrillSuffix is
// refused (profile.default_deny) and never resolved. The decision is in
// Rules.checkTarget with the rest of the allow rules.
const (
	// DrillSuffix is the reserved domain; no name under it is ever
	// resolved.
	DrillSuffix = "drill.leash.internal"
	// DrillStall accepts the request and never answers: the hop ends
	// when its deadline does (header_ms, total_ms, the task's wall
	// time) or the caller gives up.
	DrillStall = "stall." + DrillSuffix
	// DrillEcho reads the request body (the first maxDrillBody bytes,
	// metered as any request's) and answers 200 with DrillEchoBody.
	DrillEcho = "echo." + DrillSuffix
	// DrillEchoBody is DrillEcho's answer.
	DrillEchoBody = "leash drill: echo\n"
	// AddressDrill is a decision's AddressRange for a drill destination
	// (no address: nothing was dialled).
	AddressDrill = "drill"
)

// maxDrillBody bounds what DrillEcho reads of a request body.
const maxDrillBody = 1 << 20

// drillServers are the drill destinations, each an http.RoundTripper
// that answers in process.
var drillServers = map[string]http.RoundTripper{
	DrillStall: stallServer{},
	DrillEcho:  echoServer{},
}

// IsDrillName reports whether host (canonical, as Target.Host) is
// DrillSuffix or under it.
func IsDrillName(host string) bool {
	return host == DrillSuffix || strings.HasSuffix(host, "."+DrillSuffix)
}

// checkDrill decides a reserved drill name that the allow rules let
// through with ru: it is served only if it is a drill destination, the
// rule names it exactly and the request is not a tunnel.
func checkDrill(profile, host, method string, ru *rule) (http.RoundTripper, error) {
	srv, ok := drillServers[host]
	switch {
	case !ok:
		return nil, refuse(ClauseDefaultDeny, "%s is under the reserved drill domain %s and is no drill destination", host, DrillSuffix)
	case ru.pattern != host:
		return nil, refuse(ClauseDefaultDeny, "profile %q grants the drill destination %s only by an allow rule naming it exactly, not %s", profile, host, ru.pattern)
	case method == http.MethodConnect:
		return nil, refuse(ClauseDefaultDeny, "the drill destination %s answers requests, not tunnels", host)
	}
	return srv, nil
}

// stallServer never answers.
type stallServer struct{}

func (stallServer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	<-req.Context().Done()
	return nil, context.Cause(req.Context())
}

// echoServer answers 200 with DrillEchoBody.
type echoServer struct{}

func (echoServer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, err := io.Copy(io.Discard, io.LimitReader(req.Body, maxDrillBody))
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := req.Context().Err(); err != nil {
		return nil, context.Cause(req.Context())
	}
	body := DrillEchoBody
	if req.Method == http.MethodHead {
		body = ""
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":   {"text/plain; charset=utf-8"},
			"Content-Length": {strconv.Itoa(len(DrillEchoBody))},
			"Leash-Drill":    {"echo"},
		},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(DrillEchoBody)), Request: req,
	}, nil
}
