package egress

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// publicAddrs returns n distinct public addresses none of which the test
// dialer routes (dials to them fail), from 93.184.217.1 on.
func publicAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := netip.MustParseAddr("93.184.217.0")
	for i := range out {
		a = a.Next()
		out[i] = a
	}
	return out
}

func with(addrs []netip.Addr, i int, a netip.Addr) []netip.Addr {
	out := slices.Clone(addrs)
	out[i] = a
	return out
}

// TestDNSAnswerBound: every address of an answer is checked before any
// is dialled, however many there are (one bad address past the first 16
// refuses the hop); of a clean answer at most MaxAddresses are kept for
// dialling; an answer over 1024 addresses is refused whole.
func TestDNSAnswerBound(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answer   []netip.Addr
		maxAddrs int
		clause   string
		failure  string // a network failure's message holds this
		dialled  int    // exact number of dials expected
		ok       bool
	}{
		{name: "loopback 18th of 20", answer: with(publicAddrs(20), 17, netip.MustParseAddr("127.0.0.1")), clause: ClauseAddressPrivate},
		{name: "metadata last of 200", answer: with(publicAddrs(200), 199, netip.MustParseAddr("169.254.169.254")), clause: ClauseAddressPrivate},
		{name: "denied CIDR 17th of 17", answer: with(publicAddrs(17), 16, netip.MustParseAddr("198.41.0.4")), clause: ClauseGlobalDeny},
		{name: "mapped loopback 1000th of 1024", answer: with(publicAddrs(1024), 999, netip.MustParseAddr("::ffff:127.0.0.1")), clause: ClauseAddressPrivate},
		{name: "over 1024 addresses", answer: publicAddrs(1025), failure: "more than 1024 are refused"},
		{name: "40 clean, none answers: 4 tries from the kept 16", answer: publicAddrs(40), failure: "no route", dialled: maxTries},
		{name: "40 clean, bound 2: only 2 kept", answer: publicAddrs(40), maxAddrs: 2, failure: "no route", dialled: 2},
		{name: "20 clean, the 3rd answers", answer: with(publicAddrs(20), 2, pub1), ok: true, dialled: 3},
		{name: "duplicates count once", answer: append(slices.Repeat([]netip.Addr{publicAddrs(1)[0]}, 20), pub1), maxAddrs: 2, ok: true, dialled: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, echo(), func(c *Config) { c.MaxAddresses = tc.maxAddrs })
			if err := e.deny.Add("198.41.0.0/24"); err != nil {
				t.Fatal(err)
			}
			e.host("many.example.com", tc.answer...)
			c := e.client(allow("many.example.com"), 10)
			_, err := c.Fetch(context.Background(), get("http://many.example.com/"))
			switch {
			case tc.ok:
				if err != nil {
					t.Fatal(err)
				}
			case tc.clause != "":
				wantClause(t, err, tc.clause)
			default:
				if err == nil || ClauseOf(err) != "" || !strings.Contains(err.Error(), tc.failure) {
					t.Fatalf("err %v, want a failure with %q", err, tc.failure)
				}
			}
			calls := e.dial.calls()
			if len(calls) != tc.dialled {
				t.Errorf("dialled %d addresses (%q), want %d", len(calls), calls, tc.dialled)
			}
			kept := tc.maxAddrs
			if kept == 0 {
				kept = 16
			}
			var distinct []netip.Addr
			for _, a := range tc.answer {
				if !slices.Contains(distinct, a) && len(distinct) < kept {
					distinct = append(distinct, a)
				}
			}
			for _, a := range calls {
				if !slices.Contains(distinct, netip.MustParseAddrPort(a).Addr()) {
					t.Errorf("dialled %s, not among the first %d distinct addresses", a, kept)
				}
			}
		})
	}
}

// TestConnectAnswerChecked: a CONNECT is refused when any address of the
// target's answer is refused, past the 16th too; nothing is dialled.
func TestConnectAnswerChecked(t *testing.T) {
	te := newTunnelEnv(t)
	te.host(frontHost, with(publicAddrs(17), 16, netip.MustParseAddr("10.1.2.3"))...)
	status, hdr := rawConnect(t, te.srv.Listener.Addr().String(), frontHost+":443", "Bearer good-lease")
	if status != 403 || hdr.Get("Leash-Egress-Clause") != ClauseAddressPrivate {
		t.Errorf("status %d clause %q", status, hdr.Get("Leash-Egress-Clause"))
	}
	if calls := te.dial.calls(); len(calls) != 0 {
		t.Errorf("dialled %q", calls)
	}
}
