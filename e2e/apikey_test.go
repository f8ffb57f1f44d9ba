package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/internal/nodetest"
)

// TestAPIKeysAcrossTheCluster: a tenant key made through one node works on
// every node at once, and so do the tenant's modules (for that tenant
// only) (a node that has not seen it yet catches up with the
// leader), and its revocation through another node is in force on every
// node within the freshness window (docs/cluster.md): the key is refused
// everywhere within a second of the revocation's acknowledgement.
func TestAPIKeysAcrossTheCluster(t *testing.T) {
	c := startCluster(t, 3)
	a, b := c.Nodes[0], c.Nodes[1]
	var k api.APIKey
	a.JSON("POST", "/v1/apikeys", a.Token, api.APIKeyRequest{Role: "tenant", Tenant: "demo", Name: "cluster"}, 201, &k)
	for _, n := range c.Nodes {
		var l api.Lease
		n.JSON("POST", "/v1/leases", k.Key, api.LeaseRequest{Intent: "small_task"}, 201, &l)
		if l.Tenant != "demo" {
			t.Fatalf("lease through %s: %+v", n.ID(), l)
		}
	}
	// A module demo uploads through one node runs by digest for demo on
	// another (fetched from the peer that knows demo owns it), and is not
	// found for another tenant anywhere.
	var demo, limited api.Lease
	a.JSON("POST", "/v1/leases", k.Key, api.LeaseRequest{Intent: "small_task"}, 201, &demo)
	a.JSON("POST", "/v1/leases", a.Token, api.LeaseRequest{Tenant: "limited", Intent: "small_task"}, 201, &limited)
	wasm, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "build", "guests", "minimal.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	var ref api.ModuleRef
	if st, body := a.Do("PUT", "/v1/modules", demo.Token, wasm, "Content-Type", "application/wasm"); st != 201 || json.Unmarshal(body, &ref) != nil {
		t.Fatalf("upload: %d %s", st, body)
	}
	byDigest := api.TaskRequest{Module: api.Module{Digest: &ref.Digest}}
	if st, body := c.Nodes[2].Do("POST", "/v1/tasks", limited.Token, byDigest); st != 404 || errCode(t, body) != api.CodeModuleNotFound {
		t.Fatalf("another tenant, another node: %d %s", st, body)
	}
	if st, body := b.Do("POST", "/v1/tasks", demo.Token, byDigest); st != 200 {
		t.Fatalf("demo, another node: %d %s", st, body)
	}
	if st, body := b.Do("POST", "/v1/tasks", limited.Token, byDigest); st != 404 || errCode(t, body) != api.CodeModuleNotFound {
		t.Fatalf("another tenant, on the node that fetched it for demo: %d %s", st, body)
	}

	if st, body := b.Do("DELETE", "/v1/apikeys/"+k.KeyID, b.Token, nil); st != 204 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	acked := time.Now()
	for _, n := range c.Nodes {
		for {
			st, body := n.Do("GET", "/v1/tasks", k.Key, nil)
			if st == 401 {
				if errCode(t, body) != api.CodeUnauthorized {
					t.Fatalf("%s: %s", n.ID(), body)
				}
				t.Logf("%s refuses the revoked key %v after the acknowledgement", n.ID(), time.Since(acked).Round(time.Millisecond))
				break
			}
			if time.Since(acked) > time.Second {
				t.Fatalf("%s still takes the key %v after its revocation was acknowledged (%d)", n.ID(), time.Since(acked), st)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
