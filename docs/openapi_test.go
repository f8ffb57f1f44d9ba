package docs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/internal/nodetest"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml does not validate: %v", err)
	}
	return doc
}

// TestOpenAPIDescribesTheRouteTable: docs/openapi.yaml is a valid OpenAPI
// 3.1 document with exactly the route table's operations, each under the
// table's operation name as its operationId, and an error schema that
// lists exactly the codes of docs/api.md's errors table.
func TestOpenAPIDescribesTheRouteTable(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := map[string]string{} // "METHOD path" → operationId
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+path] = op.OperationID
		}
	}
	for _, rt := range httpapi.Table {
		key := rt.Method + " " + rt.Path
		id, ok := documented[key]
		switch {
		case !ok:
			t.Errorf("route %s (%s) is not in docs/openapi.yaml", key, rt.Op)
		case id != rt.Op:
			t.Errorf("%s: operationId %q, want the table's %q", key, id, rt.Op)
		}
		delete(documented, key)
	}
	for key, id := range documented {
		t.Errorf("docs/openapi.yaml describes %s (%s), which the route table does not serve", key, id)
	}

	raw, ok := doc.Components.Schemas["ErrorCode"].Value.Extensions["x-leash-codes"].([]any)
	if !ok {
		t.Fatal("ErrorCode has no x-leash-codes list")
	}
	var listed []string
	for _, c := range raw {
		listed = append(listed, fmt.Sprint(c))
	}
	table := apiMDErrorCodes(t)
	for _, c := range table {
		if !slices.Contains(listed, c) {
			t.Errorf("error code %s (docs/api.md) is not in ErrorCode's x-leash-codes", c)
		}
	}
	for _, c := range listed {
		if !slices.Contains(table, c) {
			t.Errorf("ErrorCode lists %s, which docs/api.md's errors table does not", c)
		}
	}
}

var errorRow = regexp.MustCompile("(?m)^\\| `([a-z][a-z0-9_]*)` \\|")

func apiMDErrorCodes(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, errs, ok := strings.Cut(string(b), "\n## Errors")
	if !ok {
		t.Fatal("docs/api.md has no Errors section")
	}
	var out []string
	for _, m := range errorRow.FindAllStringSubmatch(errs, -1) {
		out = append(out, m[1])
	}
	if len(out) < 30 {
		t.Fatalf("found only %d codes in docs/api.md's errors table; the pattern is broken", len(out))
	}
	return out
}

// exchange is one real request to a node and its answer.
type exchange struct {
	req    *http.Request
	body   []byte
	status int
	header http.Header
	answer []byte
}

// recorder sends requests to a node and keeps every exchange.
type recorder struct {
	t    *testing.T
	base string
	seen []exchange
	hc   *http.Client
}

func (r *recorder) do(method, path, token, ctype string, body []byte) (int, []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if path == "/mcp" {
		req.Header.Set("Accept", "application/json, text/event-stream")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	r.seen = append(r.seen, exchange{req: req, body: body, status: resp.StatusCode, header: resp.Header, answer: answer})
	return resp.StatusCode, answer
}

func (r *recorder) json(method, path, token string, in any, want int, out any) {
	r.t.Helper()
	var body []byte
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			r.t.Fatal(err)
		}
		body, ctype = b, "application/json"
	}
	st, answer := r.do(method, path, token, ctype, body)
	if st != want {
		r.t.Fatalf("%s %s: %d, want %d: %s", method, path, st, want, answer)
	}
	if out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			r.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// TestOpenAPIMatchesRealTraffic drives a real node through a session that
// touches the API's main routes and error paths, and validates every
// request and answer against docs/openapi.yaml.
func TestOpenAPIMatchesRealTraffic(t *testing.T) {
	doc := loadOpenAPI(t)
	n := nodetest.Start(t, nodetest.Options{Policy: filepath.Join(nodetest.RepoRoot(), "mcp", "testdata", "policy.yaml")})
	doc.Servers = openapi3.Servers{{URL: n.URL()}} // the node under test, not the example server
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, base: n.URL(), hc: &http.Client{}}
	admin := n.Token

	r.json("GET", "/healthz", "", nil, 200, nil)
	r.json("GET", "/readyz", "", nil, 200, nil)
	r.json("GET", "/v1/keys", "", nil, 200, nil)
	r.json("GET", "/v1/cluster", "", nil, 200, nil)
	r.json("GET", "/v1/cluster?digest=1", admin, nil, 200, nil)
	r.json("GET", "/v1/policy", admin, nil, 200, nil)
	r.json("GET", "/v1/tenants", admin, nil, 200, nil)
	var key api.APIKey
	r.json("POST", "/v1/apikeys", admin, api.APIKeyRequest{Role: "tenant", Tenant: "demo", Name: "openapi"}, 201, &key)
	r.json("GET", "/v1/apikeys?tenant=demo", admin, nil, 200, nil)
	var other api.APIKey
	r.json("POST", "/v1/apikeys", admin, api.APIKeyRequest{Role: "auditor"}, 201, &other)
	r.json("DELETE", "/v1/apikeys/"+other.KeyID, admin, nil, 204, nil)
	r.json("GET", "/v1/capabilities", key.Key, nil, 200, nil)
	r.json("GET", "/v1/capabilities?tenant=limited", admin, nil, 200, nil)

	var l api.Lease
	r.json("POST", "/v1/leases", key.Key, api.LeaseRequest{Intent: "compute"}, 201, &l)
	r.json("GET", "/v1/leases/"+l.LeaseID, key.Key, nil, 200, nil)
	js := `export default { async fetch(req) { console.log("hi"); return new Response("hello " + req.method) } }`
	st, b := r.do("PUT", "/v1/modules", key.Key, "application/javascript", []byte(js))
	if st != 201 {
		t.Fatalf("PUT /v1/modules: %d %s", st, b)
	}
	var mod api.ModuleRef
	_ = json.Unmarshal(b, &mod)
	var res api.TaskResult
	r.json("POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{JS: &js}, Request: api.TaskHTTPRequest{Method: "POST"}}, 200, &res)
	r.json("POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{Digest: &mod.Digest}, Env: api.StringEnv(map[string]string{"A": "b"})}, 200, nil)
	loop := `export default { fetch() { for (;;) {} } }`
	r.json("POST", "/v1/tasks", l.Token, api.TaskRequest{Module: api.Module{JS: &loop}}, 200, nil)
	r.json("GET", "/v1/tasks/"+res.TaskID, key.Key, nil, 200, nil)
	if res.Receipt != nil {
		r.json("GET", fmt.Sprintf("/v1/ledger/receipts/%d", res.Receipt.Index), key.Key, nil, 200, nil)
	}
	r.do("GET", "/v1/ledger/checkpoint", "", "", nil)
	r.json("GET", "/v1/ledger/consistency?old=1&new=2", "", nil, 200, nil)
	r.do("GET", "/v1/ledger/export?from=0&to=2", admin, "", nil)
	r.json("GET", "/v1/events?tenant=demo&limit=5", key.Key, nil, 200, nil)

	var bulk api.Lease
	r.json("POST", "/v1/leases", key.Key, api.LeaseRequest{Intent: "compute", Class: "bulk"}, 201, &bulk)
	var acc api.Accepted
	r.json("POST", "/v1/tasks", bulk.Token, api.TaskRequest{Module: api.Module{JS: &js}, IdempotencyKey: "openapi-1"}, 202, &acc)
	r.json("GET", "/v1/tasks?limit=10", key.Key, nil, 200, nil)
	r.json("GET", "/v1/tasks/"+acc.TaskID, key.Key, nil, 200, nil)
	r.json("DELETE", "/v1/leases/"+bulk.LeaseID, key.Key, nil, 204, nil)
	r.json("DELETE", "/v1/modules/"+mod.Digest, key.Key, nil, 204, nil)

	// Refusals.
	r.json("POST", "/v1/leases", key.Key, api.LeaseRequest{Intent: "no_such"}, 400, nil)
	r.json("POST", "/v1/leases", key.Key, api.LeaseRequest{Intent: "call_api", Tenant: "limited"}, 403, nil)
	r.json("GET", "/v1/policy", "", nil, 401, nil)
	r.json("GET", "/v1/policy", key.Key, nil, 403, nil)
	r.json("GET", "/v1/tasks/tsk_nosuch", key.Key, nil, 404, nil)
	r.json("POST", "/v1/tasks", "", api.TaskRequest{Module: api.Module{JS: &js}}, 401, nil)
	if st, b := r.do("POST", "/v1/leases", key.Key, "text/plain", []byte("{}")); st != 415 {
		t.Fatalf("text/plain lease: %d %s", st, b)
	}
	if st, b := r.do("POST", "/v1/tasks", l.Token, "application/json", []byte(`{"module":`)); st != 400 {
		t.Fatalf("malformed task: %d %s", st, b)
	}
	r.json("POST", "/mcp", key.Key, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "openapi", "version": "1"}}}, 200, nil)
	r.json("POST", "/mcp", "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, 401, nil)
	r.json("GET", "/v1/policy/envs", admin, nil, 200, nil)
	r.json("GET", "/v1/usage", key.Key, nil, 200, nil)
	r.json("GET", "/v1/usage?group_by=profile", admin, nil, 200, nil)
	r.do("GET", "/v1/usage/focus", key.Key, "", nil)
	r.json("GET", "/v1/budgets/demo", key.Key, nil, 200, nil)
	r.json("PUT", "/v1/budgets/demo", admin, map[string]any{"mode": "raise", "limits": map[string]any{"tasks_per_day": 200000}}, 200, nil)
	if st, b := r.do("PUT", "/v1/sessions/s1/kv/greeting", key.Key, "application/octet-stream", []byte("hello")); st != 200 {
		t.Fatalf("PUT session key: %d %s", st, b)
	}
	r.do("GET", "/v1/sessions/s1/kv/greeting", key.Key, "", nil)
	r.json("GET", "/v1/sessions/s1/kv", key.Key, nil, 200, nil)
	r.json("DELETE", "/v1/sessions/s1/kv/greeting", key.Key, nil, 204, nil)
	r.json("GET", "/v1/sessions/s1/kv/greeting", key.Key, nil, 404, nil)
	r.json("DELETE", "/v1/sessions/s1", key.Key, nil, 200, nil)

	ctx := context.Background()
	for _, ex := range r.seen {
		name := ex.req.Method + " " + ex.req.URL.RequestURI()
		route, params, err := router.FindRoute(ex.req)
		if err != nil {
			t.Errorf("%s: no route in openapi.yaml: %v", name, err)
			continue
		}
		ex.req.Body = io.NopCloser(bytes.NewReader(ex.body))
		in := &openapi3filter.RequestValidationInput{Request: ex.req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
		if ex.status < 400 {
			// The node refuses what the document forbids; only requests it
			// took must be valid requests.
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				t.Errorf("%s: request does not match openapi.yaml: %v", name, err)
			}
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: ex.status, Header: ex.header,
			Body: io.NopCloser(bytes.NewReader(ex.answer)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			t.Errorf("%s: answer %d does not match openapi.yaml: %v\n%s", name, ex.status, err, clip(ex.answer))
		}
	}
	if len(r.seen) < 40 {
		t.Fatalf("only %d exchanges validated", len(r.seen))
	}
}

func clip(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "…"
	}
	return string(b)
}

func init() {
	for _, ct := range []string{"application/wasm", "application/javascript", "text/javascript", "application/yaml", "application/x-yaml", "application/x-ndjson", "text/event-stream", "text/html", "text/csv", "application/octet-stream"} {
		openapi3filter.RegisterBodyDecoder(ct, func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
			b, err := io.ReadAll(body)
			return string(b), err
		})
	}
}
