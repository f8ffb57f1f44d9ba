package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/leash-dev/leash/api"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// HTTPRequest is the HTTP request a task handles.
type HTTPRequest struct {
	Method  string            `json:"method,omitempty" jsonschema:"HTTP method; default GET"`
	URL     string            `json:"url,omitempty" jsonschema:"the request URL the code sees; default https://task.invalid/"`
	Headers map[string]string `json:"headers,omitempty" jsonschema:"request headers"`
	Body    string            `json:"body,omitempty" jsonschema:"request body (UTF-8 text)"`
}

// RunJavaScriptInput is the input of run_javascript.
type RunJavaScriptInput struct {
	Code    string         `json:"code" jsonschema:"a JavaScript module in the Cloudflare Workers syntax: export default { async fetch(request, env, ctx) { return new Response(...) } }"`
	Request *HTTPRequest   `json:"request,omitempty" jsonschema:"the HTTP request the module's fetch handler receives"`
	Env     map[string]any `json:"env,omitempty" jsonschema:"bindings the module sees as env (JSON values)"`
	Intent  string         `json:"intent,omitempty" jsonschema:"the task intent (list_capabilities names them); it picks the capability profile the code runs under"`
	Profile string         `json:"profile,omitempty" jsonschema:"a capability profile by name, instead of an intent"`
	Session string         `json:"session,omitempty" jsonschema:"a session id: the lease names it, so the code's KV binding reads and writes that session's state (session_get, session_put)"`
	Tenant  string         `json:"tenant,omitempty" jsonschema:"the tenant to run as; only for an admin or operator credential (a tenant key runs as its own tenant)"`
}

// RunWasmInput is the input of run_wasm.
type RunWasmInput struct {
	Digest  string         `json:"digest" jsonschema:"the sha256:<hex> digest of a WASI module uploaded with PUT /v1/modules"`
	Request *HTTPRequest   `json:"request,omitempty" jsonschema:"the HTTP request the module handles (CGI over WASI)"`
	Env     map[string]any `json:"env,omitempty" jsonschema:"environment the module sees"`
	Intent  string         `json:"intent,omitempty" jsonschema:"the task intent (list_capabilities names them)"`
	Profile string         `json:"profile,omitempty" jsonschema:"a capability profile by name, instead of an intent"`
	Session string         `json:"session,omitempty" jsonschema:"a session id: the lease names it, so the code's KV binding reads and writes that session's state (session_get, session_put)"`
	Tenant  string         `json:"tenant,omitempty" jsonschema:"the tenant to run as; only for an admin or operator credential"`
}

// GetTaskInput is the input of get_task.
type GetTaskInput struct {
	TaskID string `json:"task_id" jsonschema:"a task id from run_javascript or run_wasm"`
}

// ListCapabilitiesInput is the input of list_capabilities.
type ListCapabilitiesInput struct {
	Tenant string `json:"tenant,omitempty" jsonschema:"the tenant to list; only for an admin or operator credential"`
}

// LeaseInfo is the lease a call ran under.
type LeaseInfo struct {
	LeaseID      string `json:"lease_id"`
	Tenant       string `json:"tenant"`
	Profile      string `json:"profile"`
	PolicyDigest string `json:"policy_digest"`
}

// BlockedCall is a host call of the code that policy refused (a fetch the
// profile's egress allow-list does not cover, a private address, …), as
// the task's signed receipt records it.
type BlockedCall struct {
	Tool        string `json:"tool" jsonschema:"the host call, e.g. fetch"`
	Destination string `json:"destination" jsonschema:"what it tried to reach (host:port for fetch)"`
	Clause      string `json:"clause" jsonschema:"the policy clause that refused it, e.g. profile.default_deny"`
	Count       int    `json:"count" jsonschema:"how many identical attempts"`
}

// RunResult is the structured output of run_javascript and run_wasm.
type RunResult struct {
	TaskID  string `json:"task_id,omitempty" jsonschema:"the task's id (get_task reads it again)"`
	Outcome string `json:"outcome" jsonschema:"ok; error (the code failed); terminated:<reason> (a limit ended it: cpu, wall, memory, output, subrequests, revoked, budget, shutdown); refused (the call was refused before it ran: see error)"`
	Reason  string `json:"reason,omitempty" jsonschema:"why the code failed or was ended"`

	Status     int               `json:"status,omitempty" jsonschema:"the HTTP status of the code's response"`
	Headers    map[string]string `json:"headers,omitempty" jsonschema:"the response headers"`
	Body       string            `json:"body,omitempty" jsonschema:"the response body, when it is UTF-8 text"`
	BodyBase64 string            `json:"body_base64,omitempty" jsonschema:"the response body in base64, when it is not UTF-8 text"`

	Logs         []api.LogLine `json:"logs,omitempty" jsonschema:"what the code logged"`
	Usage        *api.Usage    `json:"usage,omitempty" jsonschema:"what the task consumed"`
	ReceiptIndex *int64        `json:"receipt_index,omitempty" jsonschema:"the index of the task's signed receipt in the ledger"`
	Node         string        `json:"node,omitempty" jsonschema:"the node that ran the task"`
	Lease        *LeaseInfo    `json:"lease,omitempty" jsonschema:"the lease the task ran under"`
	Blocked      []BlockedCall `json:"blocked,omitempty" jsonschema:"host calls policy refused, with the clause; retry within list_capabilities' egress allow-list"`
	Error        *callError    `json:"error,omitempty" jsonschema:"the API's refusal, when outcome is refused"`
}

// TaskInfo is the structured output of get_task.
type TaskInfo struct {
	TaskID   string     `json:"task_id"`
	State    string     `json:"state" jsonschema:"queued, running, succeeded, failed, cancelled or dead"`
	Class    string     `json:"class" jsonschema:"interactive or bulk"`
	Attempts int        `json:"attempts"`
	Outcome  string     `json:"outcome,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Result   *RunResult `json:"result,omitempty" jsonschema:"the finished task's result"`
	Error    *callError `json:"error,omitempty" jsonschema:"the API's refusal (task_not_found, …)"`
}

// CapabilitiesResult is the structured output of list_capabilities.
type CapabilitiesResult struct {
	Tenant       string                  `json:"tenant,omitempty"`
	PolicyDigest string                  `json:"policy_digest,omitempty" jsonschema:"the bundle these come from"`
	Intents      []api.CapabilityIntent  `json:"intents,omitempty" jsonschema:"the intents the tenant may run under, with the profile each leads to"`
	Profiles     []api.CapabilityProfile `json:"profiles,omitempty" jsonschema:"the profiles the tenant may use: limits, and egress.allow, the only hosts code may fetch"`
	Budget       *api.CapabilityBudget   `json:"budget,omitempty" jsonschema:"the tenant's daily envelope (UTC day); 0 is no limit"`
	Error        *callError              `json:"error,omitempty" jsonschema:"the API's refusal"`
}

var (
	digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	namePattern   = `^[A-Za-z0-9_.-]{1,128}$`
)

// run issues a lease for the call and submits the task under it.
func (s *Server) run(ctx context.Context, req *sdk.CallToolRequest, tool string, mod api.Module, r *HTTPRequest, env map[string]any, tenant, intent, profile, session string) (*sdk.CallToolResult, RunResult, error) {
	ctx, cancel := withRequest(ctx)
	defer cancel()
	cred, hdr := s.credential(req)
	refused := func(e *callError) (*sdk.CallToolResult, RunResult, error) {
		s.log.Info("mcp tool refused", "tool", tool, "tenant", tenant, "intent", intent, "code", e.Code, "status", e.Status)
		return &sdk.CallToolResult{IsError: true}, RunResult{Outcome: "refused", Reason: e.Message, Error: e}, nil
	}
	if intent == "" && profile == "" {
		return refused(&callError{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: "name an intent (list_capabilities lists them) or a profile"})
	}
	var tr api.TaskRequest
	tr.Module = mod
	if r != nil {
		tr.Request = api.TaskHTTPRequest{Method: r.Method, URL: r.URL, Headers: r.Headers}
		if r.Body != "" {
			b := r.Body
			tr.Request.Body.Body = &b
		}
	}
	if len(env) > 0 {
		raw, err := json.Marshal(env)
		if err != nil {
			return nil, RunResult{}, fmt.Errorf("encode env: %w", err)
		}
		if err := json.Unmarshal(raw, &tr.Env); err != nil {
			return refused(&callError{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: "env: " + err.Error()})
		}
	}
	// A caller that goes away mid-call takes its task with it: ctx ends
	// with the call's HTTP request (withRequest), and the node ends a task
	// whose request is gone (terminated:cancelled).
	lr := api.LeaseRequest{Tenant: tenant, Intent: intent, Profile: profile, Class: "interactive", Session: session}
	key := cacheKey(cred, lr)
	var (
		l   api.Lease
		res api.TaskResult
	)
	for attempt := 0; ; attempt++ {
		var reused bool
		if l, reused = s.leases.get(key); !reused {
			if _, err := s.api.call(ctx, http.MethodPost, "/v1/leases", hdr, cred, lr, &l); err != nil {
				var ce *callError
				if errors.As(err, &ce) {
					return refused(ce)
				}
				return nil, RunResult{}, err
			}
			s.leases.put(key, l)
		}
		_, err := s.api.call(ctx, http.MethodPost, "/v1/tasks", hdr, l.Token, tr, &res)
		if err == nil {
			break
		}
		var ce *callError
		if !errors.As(err, &ce) {
			return nil, RunResult{}, err
		}
		if reused && attempt == 0 && leaseRefused(ce.Code) {
			// The kept lease was revoked or ran out: forget it and
			// try once with a fresh one (which policy may refuse).
			s.leases.drop(key)
			continue
		}
		out, rr, _ := refused(ce)
		rr.Lease = &LeaseInfo{LeaseID: l.LeaseID, Tenant: l.Tenant, Profile: l.Profile, PolicyDigest: l.PolicyDigest}
		return out, rr, nil
	}
	lease := &LeaseInfo{LeaseID: l.LeaseID, Tenant: l.Tenant, Profile: l.Profile, PolicyDigest: l.PolicyDigest}
	out := runResult(&res)
	out.Lease = lease
	if res.Usage.Blocked > 0 {
		out.Blocked = s.blocked(ctx, hdr, cred, &res)
	}
	s.log.Info("mcp tool ran", "tool", tool, "tenant", l.Tenant, "profile", l.Profile, "lease", l.LeaseID, "task", res.TaskID, "outcome", res.Outcome, "blocked", res.Usage.Blocked)
	return &sdk.CallToolResult{IsError: out.Outcome != "ok" || len(out.Blocked) > 0 || res.Usage.Blocked > 0}, out, nil
}

// runResult is a task result as the tools return it.
func runResult(res *api.TaskResult) RunResult {
	out := RunResult{TaskID: res.TaskID, Outcome: res.Outcome, Reason: res.Error, Logs: res.Logs, Node: res.Node}
	u := res.Usage
	out.Usage = &u
	if res.Receipt != nil {
		i := res.Receipt.Index
		out.ReceiptIndex = &i
	}
	if strings.HasPrefix(res.Outcome, "terminated:") && out.Reason == "" {
		out.Reason = strings.TrimPrefix(res.Outcome, "terminated:")
	}
	if r := res.Response; r != nil {
		out.Status = r.Status
		if len(r.Headers) > 0 {
			out.Headers = make(map[string]string, len(r.Headers))
			for k, v := range r.Headers {
				out.Headers[strings.ToLower(k)] = strings.Join(v, ", ")
			}
		}
		if r.Body.Body != nil {
			out.Body = *r.Body.Body
		}
		if r.Body.BodyBase64 != nil {
			out.BodyBase64 = *r.Body.BodyBase64
		}
	}
	return out
}

// blocked reads the refused host calls from the task's signed receipt
// (GET /v1/ledger/receipts/{index}), which names the clause of each. A
// receipt not yet in the ledger (spooled) leaves only the usage count.
func (s *Server) blocked(ctx context.Context, hdr http.Header, cred string, res *api.TaskResult) []BlockedCall {
	if res.Receipt == nil {
		return nil
	}
	raw, err := s.api.callBytes(ctx, http.MethodGet, fmt.Sprintf("/v1/ledger/receipts/%d", res.Receipt.Index), hdr, cred)
	if err != nil {
		s.log.Debug("mcp receipt unread", "task", res.TaskID, "receipt", res.Receipt.Index, "err", err)
		return nil
	}
	blocked, err := blockedFromProof(raw, res.TaskID)
	if err != nil {
		s.log.Debug("mcp receipt not used", "task", res.TaskID, "err", err)
	}
	return blocked
}

// blockedFromProof reads the blocked attempts of task's receipt from a
// receipt proof (GET /v1/ledger/receipts/{index}): the DSSE envelope's
// payload is the receipt's JSON.
func blockedFromProof(raw []byte, task string) ([]BlockedCall, error) {
	var proof struct {
		Envelope struct {
			Payload []byte `json:"payload"` // base64 in JSON
		} `json:"envelope"`
	}
	if err := json.Unmarshal(raw, &proof); err != nil {
		return nil, fmt.Errorf("receipt proof: %w", err)
	}
	var rec struct {
		Task    string        `json:"task_id"`
		Blocked []BlockedCall `json:"blocked_attempts"`
	}
	if err := json.Unmarshal(proof.Envelope.Payload, &rec); err != nil {
		return nil, fmt.Errorf("receipt payload: %w", err)
	}
	if rec.Task != task {
		return nil, fmt.Errorf("the receipt is task %q's, not %q's", clip(rec.Task, 64), task)
	}
	if len(rec.Blocked) > maxBlocked {
		rec.Blocked = rec.Blocked[:maxBlocked]
	}
	return rec.Blocked, nil
}

// maxBlocked bounds the blocked calls a result lists (the receipt keeps
// at most 256, each possibly standing for many).
const maxBlocked = 32

func (s *Server) runJavaScript(ctx context.Context, req *sdk.CallToolRequest, in RunJavaScriptInput) (*sdk.CallToolResult, RunResult, error) {
	code := in.Code
	return s.run(ctx, req, "run_javascript", api.Module{JS: &code}, in.Request, in.Env, in.Tenant, in.Intent, in.Profile, in.Session)
}

func (s *Server) runWasm(ctx context.Context, req *sdk.CallToolRequest, in RunWasmInput) (*sdk.CallToolResult, RunResult, error) {
	d := in.Digest
	return s.run(ctx, req, "run_wasm", api.Module{Digest: &d}, in.Request, in.Env, in.Tenant, in.Intent, in.Profile, in.Session)
}

func (s *Server) getTask(ctx context.Context, req *sdk.CallToolRequest, in GetTaskInput) (*sdk.CallToolResult, TaskInfo, error) {
	cred, hdr := s.credential(req)
	var t api.Task
	if _, err := s.api.call(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(in.TaskID), hdr, cred, nil, &t); err != nil {
		var ce *callError
		if errors.As(err, &ce) {
			return &sdk.CallToolResult{IsError: true}, TaskInfo{TaskID: in.TaskID, Error: ce}, nil
		}
		return nil, TaskInfo{}, err
	}
	out := TaskInfo{TaskID: t.TaskID, State: t.State, Class: t.Class, Attempts: t.Attempts, Outcome: t.Outcome, Reason: t.Reason}
	if t.Result != nil {
		r := runResult(t.Result)
		out.Result = &r
		if out.Outcome == "" {
			out.Outcome = r.Outcome
		}
	}
	return nil, out, nil
}

func (s *Server) listCapabilities(ctx context.Context, req *sdk.CallToolRequest, in ListCapabilitiesInput) (*sdk.CallToolResult, CapabilitiesResult, error) {
	cred, hdr := s.credential(req)
	path := "/v1/capabilities"
	if in.Tenant != "" {
		path += "?" + url.Values{"tenant": {in.Tenant}}.Encode()
	}
	var c api.Capabilities
	if _, err := s.api.call(ctx, http.MethodGet, path, hdr, cred, nil, &c); err != nil {
		var ce *callError
		if errors.As(err, &ce) {
			return &sdk.CallToolResult{IsError: true}, CapabilitiesResult{Error: ce}, nil
		}
		return nil, CapabilitiesResult{}, err
	}
	return nil, CapabilitiesResult{Tenant: c.Tenant, PolicyDigest: c.PolicyDigest, Intents: c.Intents, Profiles: c.Profiles, Budget: &c.Budget}, nil
}
