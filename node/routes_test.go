package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/modules"
)

// credentials of every kind the route matrix tries, made on a real node.
type matrixCreds struct {
	byRole map[httpapi.Roles]string // a credential of each role
	other  string                   // a tenant key of tenant "limited"
}

func makeCredentials(t *testing.T, tn *testNode) matrixCreds {
	t.Helper()
	key := func(role, tenantName string) string {
		var k api.APIKey
		tn.call(t, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: role, Tenant: tenantName, Name: "matrix"}, &k, 201)
		if !strings.HasPrefix(k.Key, "lsk_") || k.KeyID == "" {
			t.Fatalf("created key %+v", k)
		}
		return k.Key
	}
	c := matrixCreds{byRole: map[httpapi.Roles]string{
		httpapi.Admin:    key("admin", ""),
		httpapi.Operator: key("operator", ""),
		httpapi.Auditor:  key("auditor", ""),
		httpapi.Tenant:   key("tenant", "demo"),
	}, other: key("tenant", "limited")}
	var l api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, &l, 201)
	c.byRole[httpapi.LeaseHolder] = l.Token
	return c
}

// try sends one request and returns the status (0 when the route holds the
// response open, as the event stream does: it answered, which is all the
// matrix asks).
func try(t *testing.T, tn *testNode, method, path, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, tn.url+path, bytes.NewReader(nil))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb struct {
		Error api.Error `json:"error"`
	}
	_ = json.Unmarshal(b, &eb)
	return resp.StatusCode, eb.Error.Code
}

// concrete fills a route's path parameters and keeps slow routes short.
func concrete(rt httpapi.Route) string {
	p := strings.NewReplacer("{id}", "aaaaaaaaaaaaaaaa", "{index}", "0", "{digest}", "sha256:"+strings.Repeat("0", 64)).Replace(rt.Path)
	if rt.Path == "/debug/pprof/profile" {
		p += "?seconds=1"
	}
	return p
}

// TestRouteMatrix walks the route table on a real node: every route
// refuses no credential and a credential that proves nothing with 401 or
// 403, refuses every role it does not declare with 403, and lets through
// every role it declares (the handler may still refuse the dummy request,
// but never as unauthenticated or forbidden). A route added to the table
// is in the matrix by construction.
func TestRouteMatrix(t *testing.T) {
	tn := startTestNode(t, Config{PolicyFile: filepath.Join("..", "e2e", "testdata", "policy.yaml")})
	creds := makeCredentials(t, tn)
	creds.byRole[httpapi.Admin] = tn.token // the bootstrap token is an admin too
	for _, rt := range httpapi.Table {
		if rt.Roles&httpapi.Anyone != 0 {
			continue
		}
		path := concrete(rt)
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			for name, tok := range map[string]string{"no credential": "", "garbage": "not-a-credential",
				"unknown key": "lsk_aaaaaaaaaaaaaaaa_" + strings.Repeat("A", 43)} {
				if st, code := try(t, tn, rt.Method, path, tok); st != 401 && st != 403 {
					t.Errorf("%s: %d %s, want 401 or 403", name, st, code)
				}
			}
			for _, rn := range []httpapi.Roles{httpapi.Admin, httpapi.Operator, httpapi.Auditor, httpapi.Tenant, httpapi.LeaseHolder} {
				st, code := try(t, tn, rt.Method, path, creds.byRole[rn])
				denied := st == 401 || st == 403 && code == api.CodeForbidden
				if rt.Roles&rn == 0 && st != 403 {
					t.Errorf("role %s, not declared: %d %s, want 403", rn, st, code)
				}
				if rt.Roles&rn != 0 && denied {
					t.Errorf("role %s, declared: refused %d %s", rn, st, code)
				}
			}
		})
	}
}

// TestTenantKeysSeeOnlyTheirTenant: a tenant's key issues leases for its
// own tenant only, and another tenant's leases and tasks are not found.
func TestTenantKeysSeeOnlyTheirTenant(t *testing.T) {
	tn := startTestNode(t, Config{PolicyFile: filepath.Join("..", "e2e", "testdata", "policy.yaml")})
	creds := makeCredentials(t, tn)
	demoKey, otherKey := creds.byRole[httpapi.Tenant], creds.other

	// demo's key issues a lease for demo (naming it or not), never for another tenant.
	var l api.Lease
	tn.call(t, "POST", "/v1/leases", demoKey, api.LeaseRequest{Intent: "small_task"}, &l, 201)
	if l.Tenant != "demo" {
		t.Fatalf("lease of a tenant key without a tenant: %+v", l)
	}
	tn.call(t, "POST", "/v1/leases", otherKey, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, nil, 403)

	// The other tenant's key does not find demo's lease, nor revoke it.
	if st, code := try(t, tn, "GET", "/v1/leases/"+l.LeaseID, otherKey); st != 404 || code != api.CodeLeaseNotFound {
		t.Errorf("other tenant GET lease: %d %s", st, code)
	}
	if st, code := try(t, tn, "DELETE", "/v1/leases/"+l.LeaseID, otherKey); st != 404 || code != api.CodeLeaseNotFound {
		t.Errorf("other tenant DELETE lease: %d %s", st, code)
	}
	tn.call(t, "GET", "/v1/leases/"+l.LeaseID, demoKey, nil, nil, 200)

	// A task of demo's is not found with the other tenant's key.
	wasm := guestWasm(t, "minimal")
	var res api.TaskResult
	tn.call(t, "POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{WASM: &wasm}}, &res, 200)
	if st, code := try(t, tn, "GET", "/v1/tasks/"+res.TaskID, otherKey); st != 404 {
		t.Errorf("other tenant GET task: %d %s", st, code)
	}
	tn.call(t, "GET", "/v1/tasks/"+res.TaskID, demoKey, nil, nil, 200)
	if st, code := try(t, tn, "GET", "/v1/tasks?tenant=demo", otherKey); st != 403 {
		t.Errorf("other tenant lists demo's tasks: %d %s", st, code)
	}

	// Receipts: demo reads its own, the other tenant does not find it,
	// and neither exports the ledger; metrics and state digests need staff.
	if res.Receipt == nil {
		t.Fatalf("task without a receipt: %+v", res)
	}
	rpath := fmt.Sprintf("/v1/ledger/receipts/%d", res.Receipt.Index)
	tn.call(t, "GET", rpath, demoKey, nil, nil, 200)
	tn.call(t, "GET", rpath, l.Token, nil, nil, 200)
	if st, code := try(t, tn, "GET", rpath, otherKey); st != 404 {
		t.Errorf("other tenant reads demo's receipt: %d %s", st, code)
	}
	for _, c := range []struct{ path, tok string }{
		{"/v1/ledger/export", demoKey}, {"/v1/ledger/export", ""}, {"/metrics", ""}, {"/metrics", demoKey},
		{"/v1/cluster?digest=1", ""}, {"/v1/cluster?digest=1", demoKey},
	} {
		if st, code := try(t, tn, "GET", c.path, c.tok); st != 401 && st != 403 {
			t.Errorf("GET %s with %q: %d %s", c.path, c.tok, st, code)
		}
	}
	// Events: a tenant's key reads its own tenant's events only.
	var evs struct {
		Events []struct {
			Tenant string `json:"leashtenant"`
		} `json:"events"`
	}
	tn.call(t, "GET", "/v1/events?limit=500", demoKey, nil, &evs, 200)
	if len(evs.Events) == 0 {
		t.Fatal("demo sees none of its events")
	}
	for _, e := range evs.Events {
		if e.Tenant != "demo" {
			t.Fatalf("demo's key sees an event of tenant %q", e.Tenant)
		}
	}
	tn.call(t, "GET", "/v1/events?limit=500", otherKey, nil, &evs, 200)
	for _, e := range evs.Events {
		if e.Tenant != "limited" {
			t.Fatalf("limited's key sees an event of tenant %q", e.Tenant)
		}
	}
	if st, code := try(t, tn, "GET", "/v1/events?tenant=demo", otherKey); st != 403 {
		t.Errorf("limited asks for demo's events: %d %s", st, code)
	}
	tn.call(t, "GET", "/v1/ledger/export", creds.byRole[httpapi.Auditor], nil, nil, 200)
	tn.call(t, "GET", "/v1/cluster?digest=1", creds.byRole[httpapi.Auditor], nil, nil, 200)
	tn.call(t, "GET", "/v1/cluster", "", nil, nil, 200)

	// Staff see the tenants and how many keys each holds.
	var tl api.TenantList
	tn.call(t, "GET", "/v1/tenants", creds.byRole[httpapi.Auditor], nil, &tl, 200)
	keysOf := map[string]int{}
	for _, tt := range tl.Tenants {
		keysOf[tt.Name] = tt.APIKeys
	}
	if keysOf["demo"] != 1 || keysOf["limited"] != 1 || len(tl.Tenants) != 2 {
		t.Fatalf("tenants: %+v", tl)
	}

	// demo revokes its own lease; its key then stops working once revoked.
	tn.call(t, "DELETE", "/v1/leases/"+l.LeaseID, demoKey, nil, nil, 204)
	var keys api.APIKeyList
	tn.call(t, "GET", "/v1/apikeys?tenant=demo", tn.token, nil, &keys, 200)
	if len(keys.Keys) != 1 || keys.Keys[0].Key != "" {
		t.Fatalf("demo's keys: %+v (the secret must never be listed)", keys)
	}
	tn.call(t, "DELETE", "/v1/apikeys/"+keys.Keys[0].KeyID, creds.byRole[httpapi.Operator], nil, nil, 204)
	if st, code := try(t, tn, "GET", "/v1/leases/"+l.LeaseID, demoKey); st != 401 || code != api.CodeUnauthorized {
		t.Errorf("revoked key: %d %s", st, code)
	}
}

// TestOperatorKeysCannotMintAdmins: an operator makes and revokes keys of
// every role but admin.
func TestOperatorKeysCannotMintAdmins(t *testing.T) {
	tn := startTestNode(t, Config{})
	var op api.APIKey
	tn.call(t, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: "operator"}, &op, 201)
	tn.call(t, "POST", "/v1/apikeys", op.Key, api.APIKeyRequest{Role: "admin"}, nil, 403)
	var aud api.APIKey
	tn.call(t, "POST", "/v1/apikeys", op.Key, api.APIKeyRequest{Role: "auditor"}, &aud, 201)
	var adm api.APIKey
	tn.call(t, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: "admin"}, &adm, 201)
	tn.call(t, "DELETE", "/v1/apikeys/"+adm.KeyID, op.Key, nil, nil, 403)
	tn.call(t, "DELETE", "/v1/apikeys/"+aud.KeyID, op.Key, nil, nil, 204)
	for name, req := range map[string]api.APIKeyRequest{
		"unknown role":        {Role: "root"},
		"tenant key, no name": {Role: "tenant"},
		"operator, tenant":    {Role: "operator", Tenant: "demo"},
		"negative ttl":        {Role: "auditor", TTLSeconds: -1},
	} {
		if st, code := try2(t, tn, "POST", "/v1/apikeys", tn.token, req); st != 400 {
			t.Errorf("%s: %d %s", name, st, code)
		}
	}
	if st, code := try2(t, tn, "POST", "/v1/apikeys", tn.token, api.APIKeyRequest{Role: "tenant", Tenant: "nobody"}); st != 400 || code != api.CodeUnknownTenant {
		t.Errorf("unknown tenant: %d %s", st, code)
	}
}

func try2(t *testing.T, tn *testNode, method, path, token string, in any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(in)
	st, _, code := send(t, tn, method, path, token, "application/json", b)
	return st, code
}

// send makes one request and returns the status, the module digest of a
// module upload's answer, and the error code of an error answer.
func send(t *testing.T, tn *testNode, method, path, token, contentType string, body []byte) (status int, digest, code string) {
	t.Helper()
	req, _ := http.NewRequest(method, tn.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		api.ModuleRef
		Error api.Error `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Digest, out.Error.Code
}

// TestModulesBelongToTheirTenants: a module uploaded under tenant demo's
// lease runs by digest for demo only; another tenant's digest is not
// found, and an inline module is not a way in either. A module an admin
// uploads is every tenant's.
func TestModulesBelongToTheirTenants(t *testing.T) {
	tn := startTestNode(t, Config{PolicyFile: filepath.Join("..", "e2e", "testdata", "policy.yaml")})
	var demo, limited api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, &demo, 201)
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "limited", Intent: "small_task"}, &limited, 201)
	put := func(token, query string, code []byte) string {
		st, digest, c := send(t, tn, "PUT", "/v1/modules"+query, token, "application/wasm", code)
		if st != 201 {
			t.Fatalf("PUT module: %d %s", st, c)
		}
		return digest
	}
	run := func(l api.Lease, digest string) (int, string) {
		return try2(t, tn, "POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{Digest: &digest}})
	}
	wasm := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "build", "guests", name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mine := put(demo.Token, "", wasm("minimal"))
	if st, code := run(demo, mine); st != 200 {
		t.Fatalf("demo runs its module: %d %s", st, code)
	}
	if st, code := run(limited, mine); st != 404 || code != api.CodeModuleNotFound {
		t.Fatalf("another tenant runs demo's module: %d %s", st, code)
	}
	// An inline module compiles into the cache, but its digest is no key.
	echo := wasm("echo")
	b64 := base64.StdEncoding.EncodeToString(echo)
	var res api.TaskResult
	tn.call(t, "POST", "/v1/tasks", demo.Token, api.TaskRequest{Module: api.Module{WASM: &b64}}, &res, 200)
	inline := "sha256:" + sha256hex(echo)
	if st, code := run(limited, inline); st != 404 || code != api.CodeModuleNotFound {
		t.Fatalf("another tenant runs demo's inline module by digest: %d %s", st, code)
	}
	shared := put(tn.token, "", wasm("fail"))
	for _, l := range []api.Lease{demo, limited} {
		if st, code := run(l, shared); st != 200 { // it runs (and fails, as the guest does)
			t.Fatalf("%s runs the admin's module: %d %s", l.Tenant, st, code)
		}
	}
	// Ownership is cached once a task found it (modules.Store.Owned): a
	// tenant that deletes a module another tenant also uploaded (so its
	// bytes stay) cannot run it from the very next task on.
	if put(limited.Token, "", wasm("minimal")) != mine {
		t.Fatal("the same module has another digest")
	}
	for _, l := range []api.Lease{demo, limited} {
		if st, code := run(l, mine); st != 200 {
			t.Fatalf("%s runs the module both uploaded: %d %s", l.Tenant, st, code)
		}
	}
	if st, _, code := send(t, tn, "DELETE", "/v1/modules/"+mine, demo.Token, "", nil); st != 204 {
		t.Fatalf("demo deletes its module: %d %s", st, code)
	}
	if st, code := run(demo, mine); st != 404 || code != api.CodeModuleNotFound {
		t.Fatalf("demo runs the module it deleted: %d %s", st, code)
	}
	if st, code := run(limited, mine); st != 200 {
		t.Fatalf("limited runs its module after demo deleted theirs: %d %s", st, code)
	}
}

func sha256hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestSlowBodyIsCutOff: a client that sends a request's headers and then
// nothing gets 408 body_timeout once the body timeout passes, instead of
// holding the request (and its connection) open for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	tn := startTestNode(t, Config{BodyTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(tn.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/apikeys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"role\":", tn.token)
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error api.Error `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != 408 || eb.Error.Code != api.CodeBodyTimeout {
		t.Fatalf("stalled body: %d %s", resp.StatusCode, eb.Error.Code)
	}
}

// TestIntakeBounds: requests of one tenant that hold (declared) body
// bytes past the tenant's intake bound are refused with 429 before a byte
// of them is read, another tenant is not; past the node's bound, 503.
func TestIntakeBounds(t *testing.T) {
	tn := startTestNode(t, Config{PolicyFile: filepath.Join("..", "e2e", "testdata", "policy.yaml"),
		MaxTenantIntakeBytes: 1 << 20, MaxIntakeBytes: 3 << 20, BodyTimeout: 20 * time.Second})
	var demo, limited api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, &demo, 201)
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "limited", Intent: "small_task"}, &limited, 201)
	// hold starts an upload that declares size bytes and sends none of them.
	hold := func(token string, size int) net.Conn {
		conn, err := net.Dial("tcp", strings.TrimPrefix(tn.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "PUT /v1/modules HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/wasm\r\nContent-Length: %d\r\n\r\n", token, size)
		return conn
	}
	upload := func(token string) (int, string) {
		st, _, code := send(t, tn, "PUT", "/v1/modules", token, "application/wasm", []byte("\x00asm\x01\x00\x00\x00"))
		return st, code
	}
	wait := func(want int, token, code string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, c := upload(token)
			if st == want && (code == "" || c == code) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("upload: %d %s, want %d %s", st, c, want, code)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// holdUntil holds an upload until probing with probe's token gets
	// want; on a loaded machine the held request may be answered (a
	// freshness blip: 503 not_caught_up) instead of holding, so it is
	// held anew then.
	holdUntil := func(token string, probe string, want int, code string) net.Conn {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			conn := hold(token, 1<<20)
			for i := 0; i < 50; i++ {
				if st, c := upload(probe); st == want && c == code {
					return conn
				}
				_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				if n, _ := conn.Read(make([]byte, 1)); n > 0 {
					break // answered: it holds nothing
				}
			}
			conn.Close()
		}
		t.Fatalf("never saw %d %s", want, code)
		return nil
	}
	a := holdUntil(demo.Token, demo.Token, 429, httpapi.CodeTenantIntakeFull) // demo's whole bound
	if st, code := upload(limited.Token); st == 429 || st == 503 {
		t.Fatalf("another tenant is refused: %d %s", st, code)
	}
	b := holdUntil(limited.Token, limited.Token, 429, httpapi.CodeTenantIntakeFull)
	c := holdUntil(tn.token, tn.token, 503, httpapi.CodeIntakeFull) // an admin's upload counts too
	for _, conn := range []net.Conn{a, b, c} {
		conn.Close()
	}
	// Closing the stalled uploads gives their bytes back.
	wait(400, demo.Token, "") // the tiny module is then read, and refused as invalid
}

// TestModuleQuota: a tenant's stored modules are bounded by its bundle's
// modules quota on each node (413 module_quota_exceeded past it, nothing
// stored); deleting a module frees its room, and another tenant's module
// cannot be deleted (404).
func TestModuleQuota(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "e2e", "testdata", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bundle := strings.Replace(string(src), "  limited:\n    profiles: [small]", "  limited:\n    profiles: [small]\n    modules: {max_count: 2, max_bytes: 1048576}", 1)
	if bundle == string(src) {
		t.Fatal("test policy: no tenant limited to give a quota")
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(bundle), 0o600); err != nil {
		t.Fatal(err)
	}
	tn := startTestNode(t, Config{PolicyFile: path})
	var limited, demo api.Lease
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "limited", Intent: "small_task"}, &limited, 201)
	tn.call(t, "POST", "/v1/leases", tn.token, api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, &demo, 201)
	put := func(token, guest string) (int, string, string) {
		b, err := os.ReadFile(filepath.Join("..", "build", "guests", guest+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return send(t, tn, "PUT", "/v1/modules", token, "application/wasm", b)
	}
	st, first, _ := put(limited.Token, "minimal")
	if st != 201 {
		t.Fatalf("first module: %d", st)
	}
	if st, _, _ := put(limited.Token, "minimal"); st != 201 {
		t.Fatalf("the same module again (no new room needed): %d", st)
	}
	if st, _, _ := put(limited.Token, "echo"); st != 201 {
		t.Fatalf("second module: %d", st)
	}
	st, _, code := put(limited.Token, "fail")
	if st != 413 || code != modules.CodeQuota {
		t.Fatalf("third module past a quota of 2: %d %s", st, code)
	}
	// The quota is checked before the upload is compiled: bytes that
	// would not even compile are refused for the quota, at no compile.
	if st, _, code := send(t, tn, "PUT", "/v1/modules", limited.Token, "application/wasm", []byte("\x00asm not a module")); st != 413 || code != modules.CodeQuota {
		t.Fatalf("an upload past the quota was looked at: %d %s", st, code)
	}
	st, third, _ := put(demo.Token, "fail")
	if st != 201 {
		t.Fatalf("another tenant's upload: %d", st)
	}
	if st, code := try(t, tn, "DELETE", "/v1/modules/"+first, demo.Token); st != 404 {
		t.Fatalf("demo deletes limited's module: %d %s", st, code)
	}
	tn.call(t, "DELETE", "/v1/modules/"+first, limited.Token, nil, nil, 204)
	if st, code := try2(t, tn, "POST", "/v1/tasks", limited.Token, api.TaskRequest{Module: api.Module{Digest: &first}}); st != 404 || code != api.CodeModuleNotFound {
		t.Fatalf("a deleted module still runs: %d %s", st, code)
	}
	if st, d, _ := put(limited.Token, "fail"); st != 201 || d != third {
		t.Fatalf("after the delete: %d %s", st, d)
	}
}
