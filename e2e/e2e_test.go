package e2e

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/internal/nodetest"
	"github.com/leash-dev/leash/lease"
)

func guestB64(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodetest.RepoRoot(), "build", "guests", name+".wasm"))
	if err != nil {
		t.Fatalf("test guest %s missing (%v): run `make guests`", name, err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

var (
	helloOnce sync.Once
	helloWasm string
	helloErr  error
)

// helloB64 builds examples/hello for wasip1, as `leash run` does.
func helloB64(t *testing.T) string {
	t.Helper()
	helloOnce.Do(func() {
		out := filepath.Join(t.TempDir(), "hello.wasm")
		cmd := exec.Command("go", "build", "-o", out, "./examples/hello")
		cmd.Dir = nodetest.RepoRoot()
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			helloErr = err
			t.Log(string(b))
			return
		}
		b, err := os.ReadFile(out)
		helloWasm, helloErr = base64.StdEncoding.EncodeToString(b), err
	})
	if helloErr != nil {
		t.Fatal(helloErr)
	}
	return helloWasm
}

func policyPath() string { return filepath.Join(nodetest.RepoRoot(), "e2e", "testdata", "policy.yaml") }

func issue(t *testing.T, n *nodetest.Node, req api.LeaseRequest) api.Lease {
	t.Helper()
	var l api.Lease
	n.JSON("POST", "/v1/leases", n.Token, req, 201, &l)
	return l
}

func runTask(t *testing.T, n *nodetest.Node, token string, req api.TaskRequest) api.TaskResult {
	t.Helper()
	var res api.TaskResult
	n.JSON("POST", "/v1/tasks", token, req, 200, &res)
	return res
}

func wasmTask(b64 string) api.TaskRequest {
	return api.TaskRequest{Module: api.Module{WASM: &b64}}
}

func errCode(t *testing.T, b []byte) string {
	t.Helper()
	var eb struct {
		Error api.Error `json:"error"`
	}
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" {
		t.Fatalf("not a JSON error: %s", b)
	}
	return eb.Error.Code
}

func TestWalkTheReadme(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath()})

	t.Run("health", func(t *testing.T) {
		var r api.Ready
		n.JSON("GET", "/readyz", "", nil, 200, &r)
		if !r.Ready || r.Leader == "" || r.NodeID != r.Leader {
			t.Fatalf("readyz = %+v", r)
		}
		if st, _ := n.Do("GET", "/healthz", "", nil); st != 200 {
			t.Fatalf("healthz %d", st)
		}
		var c api.Cluster
		n.JSON("GET", "/v1/cluster", "", nil, 200, &c)
		if c.Leader == nil || len(c.Members) != 1 {
			t.Fatalf("cluster = %+v", c)
		}
	})

	t.Run("admin token file", func(t *testing.T) {
		// LEASH_ADMIN_TOKEN overrides the file, which is then not written.
		if _, err := os.Stat(filepath.Join(n.DataDir, "admin.token")); !os.IsNotExist(err) {
			t.Fatalf("admin.token written despite LEASH_ADMIN_TOKEN: %v", err)
		}
		for _, k := range []string{"keys/lease.pem", "keys/receipt.pem", "node.id"} {
			st, err := os.Stat(filepath.Join(n.DataDir, k))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v mode %v", k, err, st.Mode())
			}
		}
	})

	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
	roomy := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})

	t.Run("hello example", func(t *testing.T) {
		req := wasmTask(helloB64(t))
		req.Request.URL = "https://example.test/?name=e2e"
		res := runTask(t, n, roomy.Token, req)
		body, _ := res.Response.Bytes()
		if res.Outcome != "ok" || !strings.Contains(string(body), "hello, e2e") {
			t.Fatalf("outcome %s (%s) body %q", res.Outcome, res.Error, body)
		}
		var rec api.Task
		n.JSON("GET", "/v1/tasks/"+res.TaskID, roomy.Token, nil, 200, &rec)
		if rec.State != api.TaskSucceeded || rec.Result.Outcome != "ok" {
			t.Fatalf("record = %+v", rec)
		}
	})

	t.Run("outcomes", func(t *testing.T) {
		// memhog gets a roomy CPU limit: filling 16 MiB must end at
		// memory, not cpu, even on a loaded machine.
		lowmem := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "lowmem_task"})
		tests := map[string]struct {
			guest, outcome string
			token          string
		}{
			"ok":     {"minimal", "ok", l.Token},
			"cpu":    {"loop", "terminated:cpu", l.Token},
			"wall":   {"sleep", "terminated:wall", l.Token},
			"memory": {"memhog", "terminated:memory", lowmem.Token},
			"output": {"flood", "terminated:output", l.Token},
			"trap":   {"trap", "error", l.Token},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				res := runTask(t, n, tc.token, wasmTask(guestB64(t, tc.guest)))
				if res.Outcome != tc.outcome {
					t.Fatalf("outcome %s (%s), want %s", res.Outcome, res.Error, tc.outcome)
				}
			})
		}
	})

	t.Run("lease issuance refusals", func(t *testing.T) {
		tests := map[string]struct {
			req    api.LeaseRequest
			token  string
			status int
			code   string
		}{
			"no token":            {api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, "-", 401, api.CodeUnauthorized},
			"wrong token":         {api.LeaseRequest{Tenant: "demo", Intent: "small_task"}, "nope", 403, api.CodeForbidden},
			"unknown tenant":      {api.LeaseRequest{Tenant: "ghost", Intent: "small_task"}, "", 400, api.CodeUnknownTenant},
			"unknown intent":      {api.LeaseRequest{Tenant: "demo", Intent: "fly"}, "", 400, api.CodeUnknownIntent},
			"unknown profile":     {api.LeaseRequest{Tenant: "demo", Profile: "huge"}, "", 400, api.CodeUnknownProfile},
			"profile not allowed": {api.LeaseRequest{Tenant: "limited", Profile: "roomy"}, "", 403, api.CodeProfileNotAllowed},
			"ttl too long":        {api.LeaseRequest{Tenant: "demo", Intent: "small_task", TTLSeconds: 3600}, "", 400, api.CodeTTLTooLong},
			"bad class":           {api.LeaseRequest{Tenant: "demo", Intent: "small_task", Class: "urgent"}, "", 400, api.CodeInvalidClass},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				tok := n.Token
				switch tc.token {
				case "-":
					tok = ""
				case "":
				default:
					tok = tc.token
				}
				st, b := n.Do("POST", "/v1/leases", tok, tc.req)
				if st != tc.status || errCode(t, b) != tc.code {
					t.Fatalf("status %d %s, want %d %s", st, b, tc.status, tc.code)
				}
			})
		}
	})

	t.Run("lease verification refusals", func(t *testing.T) {
		key := readLeaseKey(t, n.DataDir)
		parts := strings.Split(l.Token, ".")
		forge := func(mutate func(c *lease.Claims)) string {
			var c lease.Claims
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			mutate(&c)
			s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", lease.KeyID(key.Public().(ed25519.PublicKey))))
			tok, err := jwt.Signed(s).Claims(c).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		_, stranger, _ := ed25519.GenerateKey(nil)
		strangerSigner, _ := lease.NewSigner(stranger)
		b64 := func(v any) string { j, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(j) }
		revoked := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "small_task"})
		if st, b := n.Do("DELETE", "/v1/leases/"+revoked.LeaseID, n.Token, nil); st != 204 {
			t.Fatalf("revoke: %d %s", st, b)
		}
		tests := map[string]struct {
			token  string
			status int
			code   string
		}{
			"missing":       {"", 401, api.CodeLeaseMissing},
			"malformed":     {"abc", 401, api.CodeLeaseMalformed},
			"bad signature": {parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), 401, api.CodeLeaseBadSignature},
			"unknown kid": {func() string {
				tok, _ := strangerSigner.Sign(&consensus.Lease{ID: l.LeaseID, Tenant: "demo", Profile: "small", PolicyDigest: l.PolicyDigest,
					Class: "interactive", IssuedAt: time.Now().UnixNano(), NotBefore: time.Now().UnixNano(), ExpiresAt: time.Now().Add(time.Minute).UnixNano()})
				return tok
			}(), 401, api.CodeLeaseUnknownKey},
			"alg none":      {b64(map[string]string{"alg": "none", "kid": "x"}) + "." + parts[1] + ".", 401, api.CodeLeaseAlgorithm},
			"alg HS256":     {b64(map[string]string{"alg": "HS256", "kid": "x"}) + "." + parts[1] + "." + parts[2], 401, api.CodeLeaseAlgorithm},
			"expired":       {forge(func(c *lease.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }), 401, api.CodeLeaseExpired},
			"not yet valid": {forge(func(c *lease.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), 401, api.CodeLeaseNotYetValid},
			"unknown lease": {forge(func(c *lease.Claims) { c.ID = "lse_forged" }), 401, api.CodeLeaseUnknown},
			"revoked":       {revoked.Token, 403, api.CodeLeaseRevoked},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				st, b := n.Do("POST", "/v1/tasks", tc.token, wasmTask(guestB64(t, "minimal")))
				if st != tc.status || errCode(t, b) != tc.code {
					t.Fatalf("status %d %s, want %d %s", st, b, tc.status, tc.code)
				}
			})
		}
	})

	t.Run("bad input", func(t *testing.T) {
		big := strings.Repeat("A", 40<<20)
		tests := map[string]struct {
			body   any
			hdr    []string
			status int
			code   string
		}{
			"malformed json":  {"{", nil, 400, api.CodeMalformedJSON},
			"empty body":      {"", nil, 400, api.CodeMalformedJSON},
			"unknown field":   {`{"modul":{}}`, nil, 400, api.CodeMalformedJSON},
			"trailing data":   {`{"module":{"js":"x"}} {}`, nil, 400, api.CodeMalformedJSON},
			"content type":    {`{}`, []string{"Content-Type", "text/plain"}, 415, api.CodeUnsupportedMedia},
			"too large":       {`{"module":{"wasm":"` + big + `"}}`, nil, 413, api.CodeBodyTooLarge},
			"no module":       {`{"module":{}}`, nil, 400, api.CodeBadRequest},
			"two modules":     {`{"module":{"wasm":"AA==","digest":"sha256:00"}}`, nil, 400, api.CodeBadRequest},
			"not base64":      {`{"module":{"wasm":"%%%"}}`, nil, 400, api.CodeInvalidModule},
			"not wasm":        {`{"module":{"wasm":"aGVsbG8="}}`, nil, 400, api.CodeInvalidModule},
			"unknown digest":  {`{"module":{"digest":"sha256:` + strings.Repeat("0", 64) + `"}}`, nil, 404, api.CodeModuleNotFound},
			"bad url":         {`{"module":{"wasm":"` + guestB64(t, "minimal") + `"},"request":{"url":"ftp://x/"}}`, nil, 400, api.CodeBadRequest},
			"bad method":      {`{"module":{"wasm":"` + guestB64(t, "minimal") + `"},"request":{"method":"G T"}}`, nil, 400, api.CodeBadRequest},
			"bad header":      {`{"module":{"wasm":"` + guestB64(t, "minimal") + `"},"request":{"headers":{"X":"a\nb"}}}`, nil, 400, api.CodeBadRequest},
			"js until engine": {`{"module":{"js":"export default {}"}}`, nil, -1, ""},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				hdr := tc.hdr
				if hdr == nil {
					hdr = []string{"Content-Type", "application/json"}
				}
				st, b := n.Do("POST", "/v1/tasks", l.Token, tc.body, hdr...)
				if tc.status == -1 {
					// Either the engine runs it (issue 3) or the error says why not.
					if st != 200 && errCode(t, b) != api.CodeJSEngineUnavail {
						t.Fatalf("status %d %s", st, b)
					}
					return
				}
				if st != tc.status || errCode(t, b) != tc.code {
					t.Fatalf("status %d %.300s, want %d %s", st, b, tc.status, tc.code)
				}
			})
		}
	})

	t.Run("modules by digest", func(t *testing.T) {
		wasm, _ := base64.StdEncoding.DecodeString(guestB64(t, "echo"))
		st, b := n.Do("PUT", "/v1/modules", l.Token, wasm, "Content-Type", "application/wasm")
		if st != 201 {
			t.Fatalf("put module: %d %s", st, b)
		}
		var ref api.ModuleRef
		_ = json.Unmarshal(b, &ref)
		res := runTask(t, n, l.Token, api.TaskRequest{Module: api.Module{Digest: &ref.Digest}})
		if res.Outcome != "ok" || res.Module != ref.Digest {
			t.Fatalf("outcome %s module %s", res.Outcome, res.Module)
		}
		if st, b := n.Do("PUT", "/v1/modules", l.Token, []byte("junk"), "Content-Type", "application/wasm"); st != 400 || errCode(t, b) != api.CodeInvalidModule {
			t.Fatalf("junk module: %d %s", st, b)
		}
		if st, b := n.Do("PUT", "/v1/modules", l.Token, wasm, "Content-Type", "image/png"); st != 415 {
			t.Fatalf("wrong type: %d %s", st, b)
		}
	})

	t.Run("revocation ends a running task", func(t *testing.T) {
		rl := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})
		done := make(chan api.TaskResult, 1)
		go func() {
			var res api.TaskResult
			st, b := n.Do("POST", "/v1/tasks", rl.Token, wasmTask(guestB64(t, "sleep")))
			if st == 200 {
				_ = json.Unmarshal(b, &res)
			}
			done <- res
		}()
		time.Sleep(300 * time.Millisecond)
		if st, b := n.Do("DELETE", "/v1/leases/"+rl.LeaseID+"?reason=test", n.Token, nil); st != 204 {
			t.Fatalf("revoke: %d %s", st, b)
		}
		select {
		case res := <-done:
			if res.Outcome != "terminated:revoked" {
				t.Fatalf("outcome %q, want terminated:revoked", res.Outcome)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the task kept running after its lease was revoked")
		}
	})

	t.Run("restart keeps state", func(t *testing.T) {
		var before api.PolicyInfo
		n.JSON("GET", "/v1/policy", n.Token, nil, 200, &before)
		res := runTask(t, n, l.Token, wasmTask(guestB64(t, "minimal")))
		if err := n.Stop(30 * time.Second); err != nil {
			t.Fatalf("stop: %v\n%s", err, n.Logs())
		}
		n.Restart()
		var after api.PolicyInfo
		n.JSON("GET", "/v1/policy", n.Token, nil, 200, &after)
		if after.Digest != before.Digest {
			t.Fatalf("policy digest changed across restart: %s → %s", before.Digest, after.Digest)
		}
		// The old lease still works, and the old task record is there.
		if again := runTask(t, n, l.Token, wasmTask(guestB64(t, "minimal"))); again.Outcome != "ok" {
			t.Fatalf("after restart: %s", again.Outcome)
		}
		n.JSON("GET", "/v1/tasks/"+res.TaskID, n.Token, nil, 200, nil)
	})
}

func readLeaseKey(t *testing.T, dir string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "keys", "lease.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

func TestShutdownTerminatesRunningTasks(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath(), Args: []string{"--shutdown-grace", "500ms"}})
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})
	done := make(chan api.TaskResult, 1)
	go func() {
		var res api.TaskResult
		st, b := n.Do("POST", "/v1/tasks", l.Token, wasmTask(guestB64(t, "sleep")))
		if st == 200 {
			_ = json.Unmarshal(b, &res)
		}
		done <- res
	}()
	time.Sleep(300 * time.Millisecond)
	if err := n.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, n.Logs())
	}
	res := <-done
	if res.Outcome != "terminated:shutdown" {
		t.Fatalf("outcome %q, want terminated:shutdown", res.Outcome)
	}
	if !strings.Contains(n.Logs(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", n.Logs())
	}
}

// TestGuestPackage runs examples/logger, which logs through the guest
// package, on a real node.
func TestGuestPackage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "logger.wasm")
	cmd := exec.Command("go", "build", "-o", out, "./examples/logger")
	cmd.Dir = nodetest.RepoRoot()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	wasm, _ := os.ReadFile(out)
	n := nodetest.Start(t, nodetest.Options{Policy: policyPath()})
	l := issue(t, n, api.LeaseRequest{Tenant: "demo", Intent: "roomy_task"})
	res := runTask(t, n, l.Token, wasmTask(base64.StdEncoding.EncodeToString(wasm)))
	body, _ := res.Response.Bytes()
	if res.Outcome != "ok" || string(body) != "abi=2\n" {
		t.Fatalf("outcome %s body %q", res.Outcome, body)
	}
	if len(res.Logs) != 2 || res.Logs[0].Message != "handling GET /" || res.Logs[1].Level != "warn" {
		t.Fatalf("logs = %+v", res.Logs)
	}
}
