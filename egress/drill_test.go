package egress

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/fetch"
	"github.com/leash-dev/leash/policy"
)

// TestDrillDestinations: the reserved drill names are answered in
// process when, and only when, an allow rule names them exactly; they
// are never resolved nor dialled, even when a resolver would answer for
// them with an address a server listens on; every other check (deny
// list, port, subrequests) applies to them as to any host.
func TestDrillDestinations(t *testing.T) {
	e := newEnv(t, echo())
	// Were the gateway to resolve and dial these names, it would reach
	// the test's own upstream ("hello from …").
	for _, h := range []string{DrillEcho, DrillStall, "other." + DrillSuffix, DrillSuffix} {
		e.host(h, pub1)
	}
	noNetwork := func(t *testing.T) {
		t.Helper()
		for _, h := range []string{DrillEcho, DrillStall, "other." + DrillSuffix, DrillSuffix} {
			if n := e.res.count(h); n != 0 {
				t.Fatalf("%s was resolved %d times", h, n)
			}
		}
		if calls := e.dial.calls(); len(calls) != 0 {
			t.Fatalf("dialled %v", calls)
		}
	}

	t.Run("echo answers in process, metered", func(t *testing.T) {
		c := e.client(allow(DrillEcho), 5)
		resp := mustFetch(t, c, &fetch.Request{Method: "POST", URL: "https://" + DrillEcho + "/drill", Body: []byte("twelve bytes")})
		if resp.Status != 200 || string(resp.Body) != DrillEchoBody || resp.Headers.Get("Leash-Drill") != "echo" {
			t.Fatalf("echo answered %d %q %v", resp.Status, resp.Body, resp.Headers)
		}
		st := c.Stats()
		if st.BytesOut != 12 || st.BytesIn != int64(len(DrillEchoBody)) || st.Subrequests != 1 || len(st.Destinations) != 1 || st.Destinations[0] != DrillEcho+":443" {
			t.Fatalf("stats %+v", st)
		}
		d := e.rec.last(t)
		if d.Outcome != OutcomeAllow || d.Rule != DrillEcho || d.Address != "" || d.AddressRange != AddressDrill || d.Status != 200 || d.BytesIn != int64(len(DrillEchoBody)) || d.BytesOut != 12 {
			t.Fatalf("decision %+v", d)
		}
		noNetwork(t)
	})

	t.Run("stall ends at the hop's deadline", func(t *testing.T) {
		eg := allow(DrillStall)
		eg.Timeouts = policy.Timeouts{HeaderMs: 150}
		c := e.client(eg, 5)
		start := time.Now()
		_, err := c.Fetch(context.Background(), get("http://"+DrillStall+"/"))
		wantClause(t, err, ClauseTimeout)
		if el := time.Since(start); el < 150*time.Millisecond || el > 5*time.Second {
			t.Fatalf("the stall ended after %v, want about header_ms", el)
		}
		// And when the caller gives up first.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err = e.client(allow(DrillStall), 5).Fetch(ctx, get("http://"+DrillStall+"/"))
		wantClause(t, err, ClauseTimeout)
		noNetwork(t)
	})

	refused := []struct {
		name   string
		eg     policy.Egress
		method string
		url    string
		clause string
	}{
		{"no rule", allow("api.example.com"), "GET", "http://" + DrillEcho + "/", ClauseDefaultDeny},
		{"a wildcard of the drill domain", allow("*." + DrillSuffix), "GET", "http://" + DrillEcho + "/", ClauseDefaultDeny},
		{"a wider wildcard", allow("*.leash.internal"), "GET", "http://" + DrillStall + "/", ClauseDefaultDeny},
		{"an exact rule for another reserved name", allow("other." + DrillSuffix), "GET", "http://other." + DrillSuffix + "/", ClauseDefaultDeny},
		{"the reserved domain itself", allow(DrillSuffix), "GET", "http://" + DrillSuffix + "/", ClauseDefaultDeny},
		{"the exact rule, another port", policy.Egress{Allow: []policy.AllowRule{{Host: DrillEcho}}}, "GET", "http://" + DrillEcho + ":8080/", ClausePort},
		{"the exact rule, another method", policy.Egress{Allow: []policy.AllowRule{{Host: DrillEcho, Methods: []string{"GET"}}}}, "POST", "http://" + DrillEcho + "/", ClauseMethod},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			c := e.client(tc.eg, 5)
			_, err := c.Fetch(context.Background(), &fetch.Request{Method: tc.method, URL: tc.url})
			wantClause(t, err, tc.clause)
			noNetwork(t)
		})
	}

	t.Run("refused: on the deny list", func(t *testing.T) {
		if err := e.deny.Add(DrillEcho); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = e.deny.Replace(nil) }()
		_, err := e.client(allow(DrillEcho), 5).Fetch(context.Background(), get("http://"+DrillEcho+"/"))
		wantClause(t, err, ClauseGlobalDeny)
		noNetwork(t)
	})

	t.Run("refused: past the subrequests", func(t *testing.T) {
		c := e.client(allow(DrillEcho), 1)
		mustFetch(t, c, get("http://"+DrillEcho+"/"))
		_, err := c.Fetch(context.Background(), get("http://"+DrillEcho+"/"))
		wantClause(t, err, ClauseSubrequests)
		noNetwork(t)
	})

	t.Run("refused: a tunnel", func(t *testing.T) {
		rules, err := Compile("p", &policy.Profile{Egress: policy.Egress{Allow: []policy.AllowRule{{Host: DrillEcho}}}})
		if err != nil {
			t.Fatal(err)
		}
		tg, err := ParseTarget("https://" + DrillEcho + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, err = rules.checkTarget(nil, http.MethodConnect, tg)
		wantClause(t, err, ClauseDefaultDeny)
	})
}

// TestProxyDrillDestinations: in proxy mode an absolute-form request to
// the echo destination is answered in process; a CONNECT to it is
// refused (nothing to tunnel to); neither resolves nor dials.
func TestProxyDrillDestinations(t *testing.T) {
	pe := newProxyEnv(t, policy.Egress{Allow: []policy.AllowRule{{Host: DrillEcho}}}, 10)
	pe.host(DrillEcho, pub1)
	resp, err := pe.client("Bearer good-lease", nil).Post("http://"+DrillEcho+"/", "text/plain", strings.NewReader("via the proxy"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != DrillEchoBody {
		t.Fatalf("echo through the proxy: %d %q", resp.StatusCode, body)
	}
	waitFor(t, func() bool {
		ds := pe.rec.all()
		return len(ds) > 0 && ds[len(ds)-1].Mode == ModeProxy && ds[len(ds)-1].BytesOut == int64(len("via the proxy"))
	})
	if d := pe.rec.last(t); d.Outcome != OutcomeAllow || d.AddressRange != AddressDrill || d.BytesIn != int64(len(DrillEchoBody)) {
		t.Fatalf("decision %+v", d)
	}
	status, hdr := rawConnect(t, pe.srv.Listener.Addr().String(), DrillEcho+":443", "Bearer good-lease")
	if status != 403 || hdr.Get("Leash-Egress-Clause") != ClauseDefaultDeny {
		t.Fatalf("CONNECT to a drill destination: %d %q", status, hdr.Get("Leash-Egress-Clause"))
	}
	if n := pe.res.count(DrillEcho); n != 0 {
		t.Fatalf("%s resolved %d times", DrillEcho, n)
	}
	if calls := pe.dial.calls(); len(calls) != 0 {
		t.Fatalf("dialled %v", calls)
	}
}
