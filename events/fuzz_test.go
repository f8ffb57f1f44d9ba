package events

import (
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

// FuzzParseFilter: any query string either parses to a filter that
// survives a round trip through Values, or fails with a 400 bad_request.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"",
		"tenant=demo&type=tool_call_blocked,execution_completed&limit=50",
		"since=2026-11-25T09:30:00Z&until=2026-11-25T10:00:00.5Z",
		"since=15m&order=desc",
		"trace=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"trace=4bf92f3577b34da6a3ce929d0e0e4736&lease=l&task=t",
		"cursor=AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"limit=1001", "type=", "tenant=%ff", "a=b", "limit=1&limit=2",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := parseFilter(q, now)
		if err != nil {
			e, ok := api.AsError(err)
			if !ok || e.Status != 400 || e.Code != api.CodeBadRequest {
				t.Fatalf("%q: error %v is not a bad_request", raw, err)
			}
			return
		}
		again, err := parseFilter(flt.Values(), now)
		if err != nil {
			t.Fatalf("%q: re-encoded filter %q does not parse: %v", raw, flt.Values().Encode(), err)
		}
		if !reflect.DeepEqual(flt, again) {
			t.Fatalf("%q: round trip changed the filter:\n%+v\n%+v", raw, flt, again)
		}
		if flt.Limit < 0 || flt.Limit > MaxLimit {
			t.Fatalf("limit %d", flt.Limit)
		}
	})
}

// FuzzDecodeCursor: the decoder never panics, and what it accepts
// re-encodes to the same string (the encoding is canonical).
func FuzzDecodeCursor(f *testing.F) {
	f.Add(cursor{key: makeKey(time.Unix(1, 2), 3), fp: 42}.encode())
	f.Add(cursor{desc: true, fp: ^uint64(0)}.encode())
	f.Add("")
	f.Add("AQ")
	f.Add("AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			if e, ok := api.AsError(err); !ok || e.Status != 400 {
				t.Fatalf("error %v", err)
			}
			return
		}
		if got := c.encode(); got != s {
			t.Fatalf("%q decodes to %+v, which encodes to %q", s, c, got)
		}
	})
}
