package egress

import (
	"context"
	"log/slog"
	"time"
)

// Outcomes of a Decision.
const (
	// OutcomeAllow: the request went out and completed.
	OutcomeAllow = "allow"
	// OutcomeBlock: a policy clause refused the request, or cut it.
	OutcomeBlock = "block"
	// OutcomeError: the request was allowed and failed on the network
	// (DNS, connection, TLS, protocol), with no clause.
	OutcomeError = "error"
)

// Modes of a Decision.
const (
	ModeFetch   = "fetch"   // a sandboxed task's fetch host call
	ModeProxy   = "proxy"   // an absolute-form request through Proxy
	ModeConnect = "connect" // a CONNECT tunnel through Proxy
)

// Decision is one egress decision: one per request hop (a redirect is a
// new hop). It is logged as one canonical line and handed to
// Config.OnDecision, where the events subsystem turns it into
// tool_call_attempted (Outcome allow or error) or tool_call_blocked
// (Outcome block, with the Clause).
type Decision struct {
	Time    time.Time
	Outcome string
	// Clause is the policy clause of a block; empty otherwise.
	Clause string
	// Reason says why, for people.
	Reason string
	// Error is the network failure of an allowed request.
	Error string
	Mode  string

	Tenant      string
	LeaseID     string
	TaskID      string
	Traceparent string
	Profile     string

	Method string
	// URL is the requested URL without its query (queries carry
	// secrets); empty when it could not be parsed.
	URL  string
	Host string
	Port int
	// Destination is host:port.
	Destination string
	// Rule is the allow pattern that matched, if any.
	Rule string
	// Address is the checked address dialled, or the one refused.
	Address string
	// AddressRange names the special-purpose block of a refused address
	// ("loopback", "link-local", "nat64:private", …), or is "drill"
	// (AddressDrill) for a drill destination answered in process.
	AddressRange string
	// SNI is the server name of a tunnel's ClientHello, as sent; empty
	// when it had none, or before it was read.
	SNI string
	// Hop is 0 for the request, n for the n-th redirect followed.
	Hop      int
	Status   int
	BytesOut int64
	BytesIn  int64
	Duration time.Duration
}

// Blocked reports whether a clause refused or cut the request.
func (d *Decision) Blocked() bool { return d.Outcome == OutcomeBlock }

// Log keys of the canonical decision line. Every key is always present.
const (
	logMsg = "egress decision"
)

// emit logs d as the canonical line and hands it to the hook.
func (g *Gateway) emit(ctx context.Context, d Decision) {
	level := slog.LevelInfo
	if d.Outcome != OutcomeAllow {
		level = slog.LevelWarn
	}
	if g.log.Enabled(ctx, level) {
		g.log.LogAttrs(ctx, level, logMsg,
			slog.String("outcome", d.Outcome),
			slog.String("clause", d.Clause),
			slog.String("reason", d.Reason),
			slog.String("error", d.Error),
			slog.String("mode", d.Mode),
			slog.String("tenant", d.Tenant),
			slog.String("lease_id", d.LeaseID),
			slog.String("task_id", d.TaskID),
			slog.String("traceparent", d.Traceparent),
			slog.String("profile", d.Profile),
			slog.String("method", d.Method),
			slog.String("url", d.URL),
			slog.String("host", d.Host),
			slog.Int("port", d.Port),
			slog.String("destination", d.Destination),
			slog.String("rule", d.Rule),
			slog.String("address", d.Address),
			slog.String("address_range", d.AddressRange),
			slog.String("sni", d.SNI),
			slog.Int("hop", d.Hop),
			slog.Int("status", d.Status),
			slog.Int64("bytes_out", d.BytesOut),
			slog.Int64("bytes_in", d.BytesIn),
			slog.Float64("duration_ms", float64(d.Duration)/float64(time.Millisecond)),
		)
	}
	if g.onDecision != nil {
		g.onDecision(ctx, d)
	}
}

// LogKeys are the attribute keys of the canonical decision line, in
// order; tests and log pipelines rely on all of them being present.
var LogKeys = []string{
	"outcome", "clause", "reason", "error", "mode", "tenant", "lease_id", "task_id",
	"traceparent", "profile", "method", "url", "host", "port", "destination", "rule",
	"address", "address_range", "sni", "hop", "status", "bytes_out", "bytes_in", "duration_ms",
}
