//go:build leashbench

package egress

// SkipTunnelCheck turns the check of a tunnel's start off (skip true) or
// on, so that one benchmark run can measure what the check costs
// (bench/egress_tunnel_test.go). It exists only in binaries built with
// -tags leashbench; call it before the proxy serves.
func (p *Proxy) SkipTunnelCheck(skip bool) { p.skipCheck = skip }
