package node

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

// TestBlockMeetsAFetchInFlight: a destination blocked while a task's
// fetch is in flight is refused at the fetch's next hop. The upstream,
// on the first hop, blocks the redirect's target through the runbook
// (the answer means it is in force) and only then answers with the
// redirect; the gateway checks the next hop against the new deny list
// and the guest sees the global.deny clause, naming the entry. An unblock
// lets the same fetch through again.
func TestBlockMeetsAFetchInFlight(t *testing.T) {
	var tn *testNode
	var mu sync.Mutex
	hops := map[string]int{}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hops[r.Host+r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/start" {
			if r.URL.Query().Get("block") == "1" {
				var res api.RunbookResult
				tn.call(t, "POST", "/v1/runbook/blocks", tn.token, api.BlockRequest{Destinations: []string{"cdn.example.com"},
					RunbookAction: api.RunbookAction{Reason: "in flight"}}, &res, 200)
			}
			http.Redirect(w, r, "http://cdn.example.com/next", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("reached " + r.Host + r.URL.Path))
	}))
	defer upstream.Close()
	public := netip.MustParseAddr("93.184.216.34")
	tn = startTestNode(t, Config{
		PolicyFile: "testdata/runbook-policy.yaml",
		Egress: EgressOptions{
			Resolver: fakeResolver{"api.example.com": {public}, "cdn.example.com": {public}},
			Dialer:   &standInDialer{routes: map[string]string{"93.184.216.34:80": upstream.Listener.Addr().String()}, asked: make(chan string, 100)},
		},
	})
	var l api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "call_api"}, &l, 201)
	wasm := guestWasm(t, "fetch")
	fetch := func(u string) (string, api.TaskResult) {
		var res api.TaskResult
		tn.call(t, "POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{WASM: &wasm},
			Env: api.StringEnv(map[string]string{"FETCH_URL": u, "FETCH_COUNT": "1"})}, &res, 200)
		b, _ := res.Response.Bytes()
		return string(b), res
	}
	for _, tc := range []struct {
		name, url, want string
		blocked         int64
	}{
		{"before the block", "http://api.example.com/start", "reached cdn.example.com/next", 0},
		{"blocked in flight", "http://api.example.com/start?block=1", `"clause":"global.deny"`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, res := fetch(tc.url)
			if !strings.Contains(got, tc.want) || res.Usage.Blocked != tc.blocked {
				t.Fatalf("%s: %s (blocked %d)", res.Outcome, got, res.Usage.Blocked)
			}
		})
	}
	if !strings.Contains(mustBody(fetch("http://cdn.example.com/next")), "cdn.example.com") {
		t.Fatal("the deny list's message does not name the entry")
	}
	var res api.RunbookResult
	tn.call(t, "POST", "/v1/runbook/unblock", tn.token, api.BlockRequest{Destinations: []string{"CDN.example.com"}}, &res, 200)
	if len(res.Changed) != 1 || res.Changed[0] != "cdn.example.com" {
		t.Fatalf("unblock: %+v", res)
	}
	if got, _ := fetch("http://api.example.com/start"); !strings.Contains(got, "reached cdn.example.com/next") {
		t.Fatalf("after the unblock: %s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if hops["cdn.example.com/next"] != 2 {
		t.Fatalf("the blocked hop reached the upstream: %v", hops)
	}
}

func mustBody(s string, _ api.TaskResult) string { return s }

// TestRunbookClosesProxyTunnels: a revocation by selector, and a freeze
// that revokes the profile's live leases, close the leases' open CONNECT
// tunnels on this node, as a revocation by id does.
func TestRunbookClosesProxyTunnels(t *testing.T) {
	for name, contain := range map[string]func(tn *testNode, l api.Lease) int{
		"revoke by tenant": func(tn *testNode, l api.Lease) int {
			var res api.RunbookResult
			tn.call(t, "POST", "/v1/runbook/revoke", tn.token, api.RevokeRequest{Tenant: "demo"}, &res, 200)
			return res.Revoked
		},
		"freeze with revoke_live": func(tn *testNode, l api.Lease) int {
			var res api.RunbookResult
			tn.call(t, "PUT", "/v1/runbook/frozen/"+l.Profile, tn.token, api.FreezeRequest{RevokeLive: true}, &res, 200)
			return res.Revoked
		},
	} {
		t.Run(name, func(t *testing.T) {
			upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "through the tunnel")
			}))
			defer upstream.Close()
			tn, proxyAddr, l := startProxyNode(t, "93.184.216.34:443", upstream.Listener.Addr().String())
			conn, err := net.Dial("tcp", proxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nProxy-Authorization: Bearer %s\r\n\r\n", l.Token)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			tc := tls.Client(conn, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			if k := contain(tn, l); k != 1 {
				t.Fatalf("revoked %d leases, want 1", k)
			}
			_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := tc.Read(make([]byte, 1)); err == nil {
				t.Fatal("the tunnel still carries data")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the tunnel stayed open")
			}
		})
	}
}
