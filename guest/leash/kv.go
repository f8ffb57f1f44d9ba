package leash

import (
	"encoding/json"
	"fmt"
)

// The session KV (ABI 2, docs/sessions.md): state shared by the tasks of
// one session (the lease's tenant and session), through Raft, with a TTL
// and a quota from the lease's profile. A task whose lease names no
// session gets a *KVError with code kv_no_session.

// KVError is a refused or failed KV call: Code is the stable code the
// API uses for the same refusal (kv_quota_exceeded, invalid_kv_key, …),
// RC the ABI's return code.
type KVError struct {
	RC      int32
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *KVError) Error() string { return fmt.Sprintf("leash kv: %s: %s", e.Code, e.Message) }

// KVPutOptions are the options of KVPut (Workers KV's put options).
type KVPutOptions struct {
	// TTLSeconds is the entry's time to live; 0 means the profile's
	// kv.ttl, and more than it is capped to it.
	TTLSeconds int64 `json:"expiration_ttl,omitempty"`
	// Metadata is any JSON value (at most 1024 bytes encoded).
	Metadata any `json:"metadata,omitempty"`
}

// KVListOptions select a page of keys.
type KVListOptions struct {
	Prefix string `json:"prefix,omitempty"`
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit,omitempty"` // 1–1000, default 1000
}

// KVList is a page of keys; Cursor continues it when ListComplete is
// false.
type KVList struct {
	Keys []struct {
		Name       string          `json:"name"`
		Expiration int64           `json:"expiration,omitempty"`
		Metadata   json.RawMessage `json:"metadata,omitempty"`
	} `json:"keys"`
	ListComplete bool   `json:"list_complete"`
	Cursor       string `json:"cursor,omitempty"`
}

// ABI return codes of the KV functions.
const (
	kvNotFound    = 1
	kvErrTooSmall = -6
)

// kvCodes name the ABI's error codes, for when last_error says nothing.
var kvCodes = map[int32]string{
	-1: "invalid_kv_argument", -10: "kv_no_session", -11: "kv_disabled", -12: "kv_quota_exceeded",
	-13: "invalid_kv_key", -14: "kv_value_too_large", -15: "invalid_kv_ttl", -16: "kv_ops_exceeded", -17: "kv_unavailable",
}

func kvError(rc int32) error {
	e := &KVError{RC: rc, Code: kvCodes[rc], Message: fmt.Sprintf("host returned %d", rc)}
	if e.Code == "" {
		e.Code = "kv_error"
	}
	buf := make([]byte, 1024)
	if n := hostLastError(buf); n > 0 {
		var le struct{ Code, Message string }
		if json.Unmarshal(buf[:n], &le) == nil && le.Code != "" {
			e.Code, e.Message = le.Code, le.Message
		}
	}
	return e
}

// KVGet reads a key of the session: its value and true, or false when
// the key is absent or expired.
func KVGet(key string) ([]byte, bool, error) {
	buf := make([]byte, 4096)
	for {
		rc, n := hostKVGet(key, buf)
		switch {
		case rc == 0:
			return buf[:n], true, nil
		case rc == kvNotFound:
			return nil, false, nil
		case rc == kvErrTooSmall:
			buf = make([]byte, n)
		default:
			return nil, false, kvError(rc)
		}
	}
}

// KVPut writes a key of the session; opts may be nil.
func KVPut(key string, value []byte, opts *KVPutOptions) error {
	var o []byte
	if opts != nil {
		var err error
		if o, err = json.Marshal(opts); err != nil {
			return fmt.Errorf("leash kv: options: %w", err)
		}
	}
	if rc := hostKVPut(key, value, o); rc != 0 {
		return kvError(rc)
	}
	return nil
}

// KVDelete deletes a key of the session (a missing key is no error).
func KVDelete(key string) error {
	if rc := hostKVDelete(key); rc != 0 {
		return kvError(rc)
	}
	return nil
}

// KVListKeys lists the session's keys in byte order.
func KVListKeys(opts KVListOptions) (*KVList, error) {
	o, err := json.Marshal(opts)
	if err != nil {
		return nil, fmt.Errorf("leash kv: options: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		rc, n := hostKVList(o, buf)
		switch {
		case rc == 0:
			var l KVList
			if err := json.Unmarshal(buf[:n], &l); err != nil {
				return nil, fmt.Errorf("leash kv: list: %w", err)
			}
			return &l, nil
		case rc == kvErrTooSmall:
			buf = make([]byte, n)
		default:
			return nil, kvError(rc)
		}
	}
}
