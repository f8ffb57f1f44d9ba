package mcp

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// SessionGetInput is the input of session_get.
type SessionGetInput struct {
	Session string `json:"session" jsonschema:"the session id (the session a lease names; what the code's KV binding reads and writes)"`
	Key     string `json:"key" jsonschema:"the key"`
	Tenant  string `json:"tenant,omitempty" jsonschema:"the tenant whose session it is; only for an admin credential"`
}

// SessionPutInput is the input of session_put.
type SessionPutInput struct {
	Session       string `json:"session" jsonschema:"the session id"`
	Key           string `json:"key" jsonschema:"the key"`
	Value         string `json:"value" jsonschema:"the value (UTF-8 text; value_base64 for bytes)"`
	Base64        bool   `json:"value_base64,omitempty" jsonschema:"value is base64 of the bytes to store"`
	ExpirationTTL int64  `json:"expiration_ttl,omitempty" jsonschema:"seconds until the entry expires (default: the profile's kv.ttl)"`
	Profile       string `json:"profile,omitempty" jsonschema:"the profile whose KV limits apply (default: the tenant's first with session KV)"`
	Tenant        string `json:"tenant,omitempty" jsonschema:"the tenant whose session it is; only for an admin credential"`
}

// SessionResult is the structured output of session_get and session_put.
type SessionResult struct {
	Session     string     `json:"session"`
	Key         string     `json:"key"`
	Value       string     `json:"value,omitempty" jsonschema:"the value, when it is UTF-8 text"`
	ValueBase64 string     `json:"value_base64,omitempty" jsonschema:"the value in base64, when it is not UTF-8 text"`
	Expiration  int64      `json:"expiration,omitempty" jsonschema:"when the entry expires (unix seconds)"`
	Metadata    string     `json:"metadata,omitempty" jsonschema:"the entry's metadata (JSON), when set"`
	Stored      bool       `json:"stored,omitempty" jsonschema:"session_put: the value is written (through Raft)"`
	Error       *callError `json:"error,omitempty" jsonschema:"the API's refusal (kv_not_found, kv_quota_exceeded, kv_disabled, …)"`
}

// maxSessionValue bounds session_put's value in the schema; the profile's
// own limit (kv.max_value_bytes) is usually lower and the node applies it.
const maxSessionValue = 1 << 20

func sessionPath(session, key, tenant string, q url.Values) string {
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	p := "/v1/sessions/" + url.PathEscape(session) + "/kv/" + url.PathEscape(key)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

func (s *Server) sessionGet(ctx context.Context, req *sdk.CallToolRequest, in SessionGetInput) (*sdk.CallToolResult, SessionResult, error) {
	cred, hdr := s.credential(req)
	out := SessionResult{Session: in.Session, Key: in.Key}
	_, h, body, err := s.api.raw(ctx, http.MethodGet, sessionPath(in.Session, in.Key, in.Tenant, url.Values{}), hdr, cred, nil, "")
	if err != nil {
		var ce *callError
		if errors.As(err, &ce) {
			out.Error = ce
			return &sdk.CallToolResult{IsError: true}, out, nil
		}
		return nil, SessionResult{}, err
	}
	if utf8.Valid(body) {
		out.Value = string(body)
	} else {
		out.ValueBase64 = base64.StdEncoding.EncodeToString(body)
	}
	out.Expiration, _ = strconv.ParseInt(h.Get("Leash-Kv-Expiration"), 10, 64)
	out.Metadata = h.Get("Leash-Kv-Metadata")
	return nil, out, nil
}

func (s *Server) sessionPut(ctx context.Context, req *sdk.CallToolRequest, in SessionPutInput) (*sdk.CallToolResult, SessionResult, error) {
	cred, hdr := s.credential(req)
	out := SessionResult{Session: in.Session, Key: in.Key}
	value := []byte(in.Value)
	if in.Base64 {
		b, err := base64.StdEncoding.DecodeString(in.Value)
		if err != nil {
			out.Error = &callError{Status: http.StatusBadRequest, Code: "bad_request", Message: "value is not base64: " + err.Error()}
			return &sdk.CallToolResult{IsError: true}, out, nil
		}
		value = b
	}
	q := url.Values{}
	if in.ExpirationTTL > 0 {
		q.Set("expiration_ttl", strconv.FormatInt(in.ExpirationTTL, 10))
	}
	if in.Profile != "" {
		q.Set("profile", in.Profile)
	}
	_, _, _, err := s.api.raw(ctx, http.MethodPut, sessionPath(in.Session, in.Key, in.Tenant, q), hdr, cred, value, "application/octet-stream")
	if err != nil {
		var ce *callError
		if errors.As(err, &ce) {
			out.Error = ce
			return &sdk.CallToolResult{IsError: true}, out, nil
		}
		return nil, SessionResult{}, err
	}
	out.Stored = true
	s.log.Info("mcp session put", "session", in.Session, "bytes", len(value))
	return nil, out, nil
}
