package sandbox

import (
	"context"
	"encoding/json"
)

// KV is a task's session key-value store (docs/sessions.md): the node
// binds it to the lease's tenant and session and to its profile's
// limits, and checks, meters and records every call. Host.KV nil means
// the task has no session KV: every call fails with CodeKVNoSession.
type KV interface {
	// Get returns the live entry under key, or nil and no error.
	Get(ctx context.Context, key string) (*KVValue, error)
	Put(ctx context.Context, key string, value []byte, o KVPutOptions) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, o KVListOptions) (*KVList, error)
}

// KVValue is one entry as a guest reads it.
type KVValue struct {
	Value    []byte
	Metadata json.RawMessage // JSON, or nil
	// Expiration is when the entry expires, in unix seconds.
	Expiration int64
}

// KVPutOptions are Workers KV's put options.
type KVPutOptions struct {
	// TTLSeconds is the entry's time to live (Workers' expirationTtl);
	// 0 means the profile's kv.ttl, and more than it is capped to it.
	TTLSeconds int64           `json:"expiration_ttl,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

// KVListOptions are Workers KV's list options.
type KVListOptions struct {
	Prefix string `json:"prefix,omitempty"`
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit,omitempty"` // 1–1000, default 1000
}

// KVList is a page of keys, in Workers KV's shape.
type KVList struct {
	Keys         []KVKey `json:"keys"`
	ListComplete bool    `json:"list_complete"`
	Cursor       string  `json:"cursor,omitempty"`
}

// KVKey is one listed key.
type KVKey struct {
	Name       string          `json:"name"`
	Expiration int64           `json:"expiration,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

// KVError is a KV call refused or failed, with the stable code the API
// uses for the same refusal (kv_quota_exceeded, invalid_kv_key, …).
type KVError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *KVError) Error() string { return e.Code + ": " + e.Message }

// Codes of KV errors a guest sees; the node's refusals use the same.
const (
	CodeKVNoSession   = "kv_no_session"       // the lease names no session
	CodeKVDisabled    = "kv_disabled"         // the profile grants no session KV
	CodeKVQuota       = "kv_quota_exceeded"   // the session's quota (bytes or entries)
	CodeKVInvalidKey  = "invalid_kv_key"      // empty, too long, not UTF-8
	CodeKVTooLarge    = "kv_value_too_large"  // value or metadata over the profile's limit
	CodeKVInvalidTTL  = "invalid_kv_ttl"      // a TTL that is not a positive number of seconds
	CodeKVOps         = "kv_ops_exceeded"     // the task's ops_per_task
	CodeKVUnavailable = "kv_unavailable"      // the write did not reach the cluster
	CodeKVInvalid     = "invalid_kv_argument" // a malformed call (bad options, bad limit)
)
