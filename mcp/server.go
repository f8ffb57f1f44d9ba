package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/leash-dev/leash/api"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Limits on what a tool call may carry. The node bounds tasks again (its
// module and request limits, the profile's limits); these keep a call
// that cannot succeed from getting that far.
const (
	// MaxCodeBytes bounds run_javascript's code (the node's module limit
	// is larger: this is what a model should ever write in one call).
	MaxCodeBytes = 1 << 20
	// MaxRequestBodyBytes bounds a tool call's request body.
	MaxRequestBodyBytes = 1 << 20
	// maxMessageBytes bounds one MCP message over HTTP or stdio: the
	// code, the request body and JSON's escaping of them.
	maxMessageBytes = 6 << 20
)

// ProtocolVersions are the MCP revisions the server speaks, newest first:
// the SDK's current one, then down to 2025-11-25.
var ProtocolVersions = []string{"2026-07-28", "2025-11-25"}

// Options configure a Server.
type Options struct {
	// API carries the server's calls to leash's HTTP API: InProcess(h) on
	// a node, http.DefaultTransport (or a client's) for a node elsewhere.
	API http.RoundTripper
	// BaseURL is the API's scheme://host; for InProcess any host will do
	// (default http://leash.internal).
	BaseURL string
	// Logger gets one line per tool call decision; default slog.Default().
	Logger *slog.Logger
	// Version is reported as the server's version.
	Version string
	// LeaseReuse, when positive, lets a call reuse the lease of an earlier
	// call with the same credential, tenant, intent and profile for at
	// most this long (and never within 30 s of its expiry), instead of
	// issuing one per call (docs/mcp.md). The node's /mcp sets it; the
	// node checks the credential on every request there, so a revoked key
	// stops at once. Zero: a lease per call.
	LeaseReuse time.Duration
	// Token is the credential of calls whose transport carries none:
	// leash mcp's (stdio) from the environment. Over HTTP every request
	// carries its own, and Handler refuses one without.
	Token string
}

// Server is leash's MCP server.
type Server struct {
	api    *apiClient
	leases *leaseCache
	log    *slog.Logger
	srv    *sdk.Server
	// token is the credential of a stdio session (the environment);
	// over HTTP every request carries its own and token is empty.
	token string
}

// New builds a server whose tools call the API through opts.API.
func New(opts Options) (*Server, error) {
	if opts.API == nil {
		return nil, errors.New("mcp: Options.API is required")
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	if base == "" {
		base = "http://leash.internal"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{api: &apiClient{hc: &http.Client{Transport: opts.API}, base: base}, log: opts.Logger.With("component", "mcp"), token: opts.Token,
		leases: newLeaseCache(opts.LeaseReuse)}
	s.srv = sdk.NewServer(&sdk.Implementation{Name: "leash", Title: "leash executor mesh", Version: opts.Version}, &sdk.ServerOptions{
		Instructions: "leash runs code in sandboxes under capability profiles. Call list_capabilities first: it names the intents you may run under, " +
			"their limits and the hosts their code may fetch. Then run_javascript (a Workers module) or run_wasm. A refused call, a blocked fetch or " +
			"a limit comes back as a tool result with isError and structured details: read them and retry within the allow-list and limits.",
		Capabilities:              &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
		SupportedProtocolVersions: ProtocolVersions,
	})
	if err := s.addTools(); err != nil {
		return nil, err
	}
	return s, nil
}

// addTools registers the tools with their schemas, bounded where the
// inferred schema is not.
func (s *Server) addTools() error {
	httpReq := func(sc *jsonschema.Schema) {
		r := sc.Properties["request"]
		r.Properties["body"].MaxLength = ptr(MaxRequestBodyBytes)
		r.Properties["method"].Pattern = `^[A-Z]{1,16}$`
		r.Properties["url"].MaxLength = ptr(8 << 10)
		r.Properties["headers"].MaxProperties = ptr(100)
	}
	runTarget := func(sc *jsonschema.Schema) {
		sc.Properties["intent"].Pattern = namePattern
		sc.Properties["profile"].Pattern = namePattern
		sc.Properties["tenant"].Pattern = namePattern
		sc.Properties["env"].MaxProperties = ptr(64)
		sc.Properties["session"].Pattern = `^[A-Za-z0-9_.:-]{1,128}$`
	}
	js, err := jsonschema.For[RunJavaScriptInput](nil)
	if err != nil {
		return fmt.Errorf("run_javascript schema: %w", err)
	}
	js.Properties["code"].MaxLength = ptr(MaxCodeBytes)
	js.Properties["code"].MinLength = ptr(1)
	httpReq(js)
	runTarget(js)
	wasm, err := jsonschema.For[RunWasmInput](nil)
	if err != nil {
		return fmt.Errorf("run_wasm schema: %w", err)
	}
	wasm.Properties["digest"].Pattern = digestPattern.String()
	httpReq(wasm)
	runTarget(wasm)
	task, err := jsonschema.For[GetTaskInput](nil)
	if err != nil {
		return fmt.Errorf("get_task schema: %w", err)
	}
	task.Properties["task_id"].Pattern = idPattern.String()
	caps, err := jsonschema.For[ListCapabilitiesInput](nil)
	if err != nil {
		return fmt.Errorf("list_capabilities schema: %w", err)
	}
	caps.Properties["tenant"].Pattern = namePattern

	sget, err := jsonschema.For[SessionGetInput](nil)
	if err != nil {
		return fmt.Errorf("session_get schema: %w", err)
	}
	sput, err := jsonschema.For[SessionPutInput](nil)
	if err != nil {
		return fmt.Errorf("session_put schema: %w", err)
	}
	for _, sc := range []*jsonschema.Schema{sget, sput} {
		sc.Properties["session"].Pattern = `^[A-Za-z0-9_.:-]{1,128}$`
		sc.Properties["key"].MinLength = ptr(1)
		sc.Properties["key"].MaxLength = ptr(512)
		sc.Properties["tenant"].Pattern = namePattern
	}
	sput.Properties["value"].MaxLength = ptr(maxSessionValue * 4 / 3)
	sput.Properties["profile"].Pattern = namePattern
	sput.Properties["expiration_ttl"].Minimum = ptr(0.0)

	sdk.AddTool(s.srv, &sdk.Tool{Name: "run_javascript", Title: "Run JavaScript",
		Description: "Run a JavaScript module (Cloudflare Workers syntax: export default { async fetch(request, env, ctx) {...} }) in a sandbox, under a " +
			"fresh lease for the intent, and return its HTTP response, logs, usage, receipt index and task id. Its fetch reaches only the hosts in the " +
			"profile's egress allow-list (list_capabilities); a blocked fetch or a limit returns isError with the clause or reason.",
		InputSchema: js, Annotations: &sdk.ToolAnnotations{OpenWorldHint: ptr(true)}}, s.runJavaScript)
	sdk.AddTool(s.srv, &sdk.Tool{Name: "run_wasm", Title: "Run a WASI module",
		Description: "Run an uploaded WASI module (by its sha256 digest) in a sandbox under a fresh lease for the intent; the module handles one " +
			"HTTP request (CGI over WASI). Returns what run_javascript returns.",
		InputSchema: wasm, Annotations: &sdk.ToolAnnotations{OpenWorldHint: ptr(true)}}, s.runWasm)
	sdk.AddTool(s.srv, &sdk.Tool{Name: "get_task", Title: "Read a task",
		Description: "Read a task of the caller's tenant by id: its state, attempts and result.",
		InputSchema: task, Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}}, s.getTask)
	sdk.AddTool(s.srv, &sdk.Tool{Name: "list_capabilities", Title: "List capabilities",
		Description: "List the intents and capability profiles the caller's tenant may run under: each profile's limits (cpu, wall, memory, " +
			"output, logs, subrequests), its egress allow-list (the only hosts code may fetch) and the tenant's daily budget. Call it before running code.",
		InputSchema: caps, Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}}, s.listCapabilities)
	sdk.AddTool(s.srv, &sdk.Tool{Name: "session_get", Title: "Read session state",
		Description: "Read one key of a session's KV state (what code run under a lease for that session reads and writes with its KV binding).",
		InputSchema: sget, Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true}}, s.sessionGet)
	sdk.AddTool(s.srv, &sdk.Tool{Name: "session_put", Title: "Write session state",
		Description: "Write one key of a session's KV state, within the profile's KV quota and TTL; the value is replicated before the call answers.",
		InputSchema: sput, Annotations: &sdk.ToolAnnotations{IdempotentHint: true, DestructiveHint: ptr(false)}}, s.sessionPut)
	return nil
}

func ptr[T any](v T) *T { return &v }

// credential is the bearer credential a tool call runs with, and the
// headers of the MCP request the API calls carry on (traceparent). Over
// HTTP it is the request's own Authorization header; over stdio, the
// credential leash mcp was started with.
func (s *Server) credential(req *sdk.CallToolRequest) (string, http.Header) {
	hdr := http.Header{}
	if req != nil && req.Extra != nil && req.Extra.Header != nil {
		h := req.Extra.Header
		if tp := h.Get("traceparent"); tp != "" {
			hdr.Set("traceparent", tp)
		}
		return bearer(h.Get("Authorization")), hdr
	}
	return s.token, hdr
}

func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Handler serves MCP over Streamable HTTP, stateless: each POST carries a
// bearer credential, and the tool calls in it run with that credential.
// A request without one is refused with 401 before the protocol starts.
func (s *Server) Handler() http.Handler {
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.srv }, &sdk.StreamableHTTPOptions{
		Stateless:           true,
		JSONResponse:        true,
		Logger:              s.log,
		MaxRequestBodyBytes: maxMessageBytes,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bearer(r.Header.Get("Authorization")) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="leash"`)
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "/mcp needs a credential (Authorization: Bearer <tenant key>)")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, r.Context())))
	})
}

// requestKey carries an HTTP request's context to the tool calls it
// carries. The SDK runs a call on a context of its own that the request's
// end does not cancel; withRequest makes it so, so that a caller that
// goes away takes its call with it.
type requestKey struct{}

// withRequest is ctx, cancelled also when the HTTP request that carried
// the call ends (over stdio: ctx itself).
func withRequest(ctx context.Context) (context.Context, context.CancelFunc) {
	rc, ok := ctx.Value(requestKey{}).(context.Context)
	if !ok {
		return context.WithCancel(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(rc, cancel)
	return ctx, func() { stop(); cancel() }
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: code, Message: msg}})
}

// ServeStdio serves one MCP session over r and w (leash mcp: stdin and
// stdout) until the client closes it or ctx ends. Every tool call runs
// with Options.Token.
func (s *Server) ServeStdio(ctx context.Context, r io.ReadCloser, w io.WriteCloser) error {
	sess, err := s.srv.Connect(ctx, &sdk.IOTransport{Reader: r, Writer: w, MaxLineLength: maxMessageBytes}, nil)
	if err != nil {
		return fmt.Errorf("mcp: connect stdio: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sess.Close()
		<-done
		return ctx.Err()
	}
}
