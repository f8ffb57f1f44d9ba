// Package egress is the one gateway for outbound requests of sandboxed
// code: the fetch host call of WASI guests and of the JS engine
// (TaskClient, the sandbox's Fetcher), and agent runners outside leash (Proxy,
// an HTTP and CONNECT proxy authenticated by a lease). docs/egress.md is
// the operator's reference; this comment is the map for developers.
//
// # Decisions
//
// Policy is compiled once per profile (Compile → *Rules) and once per
// deny list (CompileDeny → *DenyList). Every request hop is decided in a
// fixed order, and the first refusal names its clause (clause.go):
//
//  1. the URL, parsed by weburl (the WHATWG parser the JS engine's URL
//     uses) plus strict authority rules: url.invalid, scheme;
//  2. method and headers: request.invalid, request.host;
//  3. the deny list by name and literal address: global.deny;
//  4. the allow rules: profile.default_deny, profile.port, profile.method;
//     a reserved drill name (drill.go, under drill.leash.internal) passes
//     only by an allow rule naming it exactly, and is then answered in
//     process: steps 6 and 7 never happen for it;
//  5. the task's subrequests, then the tenant × destination buckets:
//     limit.subrequests, limit.rate, limit.bytes;
//  6. one resolution, and every address of the answer checked against the
//     special-purpose registries and the deny list's CIDRs:
//     address.private, global.deny;
//  7. a dial to exactly a checked address (never a second lookup), with
//     connect, header and total timeouts inside the caller's deadline:
//     timeout;
//  8. the response body, bounded while it streams: limit.response_size,
//     limit.bytes; and for fetches, each redirect is a new hop from 1:
//     limit.redirects.
//
// Each hop ends in exactly one Decision: one canonical slog line (keys in
// LogKeys) and one call of Config.OnDecision.
//
// # Tunnels
//
// A CONNECT tunnel (proxy mode) is decided like a request (method
// CONNECT; a rule without ports allows it to 443 only), then its start is
// checked before any byte goes on (tunnelcheck.go): the first record must
// be a TLS handshake (tunnel.tls_required), its ClientHello is read by
// crypto/tls itself through a recording connection (ReadClientHello,
// hello.go; bounded in bytes and time: tunnel.client_hello, timeout), ECH
// is refused (tunnel.ech) and the SNI must be the CONNECT host
// (tunnel.sni_missing, tunnel.sni_mismatch). The bytes read are then
// replayed upstream. Every refusal of the proxy ends the connection.
//
// # Connections
//
// Connections are pooled per tenant × scheme × host × port × checked
// address, so a reused connection always goes where the current hop's
// check allowed; the pool is bounded (LRU).
//
// # Concurrency
//
// Gateway, Rules, DenyList, TaskClient and Proxy are safe for concurrent
// use. Rules are immutable; a DenyList changes atomically (Add, Replace)
// and every hop reads the current one.
package egress
