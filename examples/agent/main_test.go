package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/node"
)

// resolver answers every name with one public address.
type resolver map[string]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// standIn dials the loopback server that stands in for a public address
// (the gateway checked the public one).
type standIn map[string]string

func (s standIn) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if to, ok := s[address]; ok {
		address = to
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// TestAgentRetriesWithinTheAllowList runs the example against a real node
// (in process, so that a public test address can stand for a loopback
// server): the first fetch is blocked, the agent reads the clause and
// retries on the allowed host, which answers.
func TestAgentRetriesWithinTheAllowList(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "the guide at %s%s", r.Host, r.URL.Path)
	}))
	defer upstream.Close()
	public := netip.MustParseAddr("93.184.216.34")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	const admin = "agent-example-admin-token-0123456789"
	go func() {
		done <- node.Run(ctx, node.Config{
			Addr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: admin,
			PolicyFile: filepath.Join("testdata", "policy.yaml"),
			EnginePath: filepath.Join("..", "..", "build", "engine", "engine.wasm"),
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:      func(addr string) { ready <- addr },
			Egress: node.EgressOptions{
				Resolver: resolver{"docs.example.com": public},
				Dialer:   standIn{"93.184.216.34:80": upstream.Listener.Addr().String()},
			},
		})
	}()
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("node not ready")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})

	body, _ := json.Marshal(api.APIKeyRequest{Role: "tenant", Tenant: "demo", Name: "agent"})
	req, _ := http.NewRequest("POST", base+"/v1/apikeys", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var key api.APIKey
	if err := json.NewDecoder(resp.Body).Decode(&key); err != nil || resp.StatusCode != 201 {
		t.Fatalf("key: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	var out bytes.Buffer
	runCtx, stop := context.WithTimeout(context.Background(), 2*time.Minute)
	defer stop()
	if err := Run(runCtx, base+"/mcp", key.Key, "http://elsewhere.example.net/guide", &out); err != nil {
		t.Fatalf("agent: %v\n%s", err, out.String())
	}
	t.Logf("transcript:\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"capabilities: intent read_docs may fetch docs.example.com",
		"attempt 1: http://elsewhere.example.net/guide -> blocked: elsewhere.example.net:80 by profile.default_deny",
		`attempt 2: http://docs.example.com/guide -> ok 200 "200 the guide at docs.example.com/guide"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("transcript has %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want it to start with %q", i+1, lines[i], w)
		}
	}
}
