// Package api holds the wire types of leash's HTTP API v1: request and
// response bodies and the stable error codes. It is a leaf package shared by
// the server (node) and the client (cli), so both agree on the contract in
// docs/api.md.
package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is what every failed API call returns, as
// {"error":{"code":"...","message":"..."}}. Code is stable and
// snake_case; Message is for people. Status is the HTTP status and is not
// serialised. Err, when set, is the internal cause: it is logged, never sent.
type Error struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"-"` // seconds; sets Retry-After when > 0
	Err        error  `json:"-"`
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorBody is the JSON envelope of an Error.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// Errorf builds an Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError finds the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Stable error codes. Each is documented in docs/api.md; tests pin them.
const (
	CodeBadRequest       = "bad_request"
	CodeMalformedJSON    = "malformed_json"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeBodyTooLarge     = "body_too_large"
	CodeBodyTimeout      = "body_timeout"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeInternal         = "internal"
	CodeNoLeader         = "no_leader"
	CodeUnavailable      = "unavailable"
	CodeShuttingDown     = "shutting_down"
	CodeQueueFull        = "queue_full"
	CodeQueueTimeout     = "queue_timeout"
	CodeInvalidModule    = "invalid_module"
	CodeModuleNotFound   = "module_not_found"
	CodeJSEngineUnavail  = "js_engine_unavailable"
	CodeInvalidPolicy    = "invalid_policy"
	CodeTaskNotFound     = "task_not_found"
	CodeTaskFinished     = "task_finished"
	CodeIdempotencyKey   = "idempotency_key_conflict"
	CodeLeaseNotFound    = "lease_not_found"
	CodeConflict         = "conflict"
	CodeAPIKeyNotFound   = "api_key_not_found"

	// Lease issuance refusals.
	CodeUnknownTenant     = "unknown_tenant"
	CodeUnknownIntent     = "unknown_intent"
	CodeUnknownProfile    = "unknown_profile"
	CodeProfileNotAllowed = "profile_not_allowed"
	CodeTTLTooLong        = "ttl_too_long"
	CodeInvalidClass      = "invalid_class"
	CodeNoPolicy          = "no_policy"

	// Lease verification refusals (a task submitted with a bad lease).
	CodeLeaseMissing      = "lease_missing"
	CodeLeaseMalformed    = "lease_malformed"
	CodeLeaseAlgorithm    = "lease_alg_not_allowed"
	CodeLeaseUnknownKey   = "lease_unknown_kid"
	CodeLeaseBadSignature = "lease_bad_signature"
	CodeLeaseExpired      = "lease_expired"
	CodeLeaseNotYetValid  = "lease_not_yet_valid"
	CodeLeaseRevoked      = "lease_revoked"
	CodeLeaseUnknown      = "lease_unknown"
)

// Status helpers keep handlers short.
func BadRequest(code, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, code, format, args...)
}
