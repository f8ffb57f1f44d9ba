package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// Codes of the refusals this package adds (the KV's own codes are the
// sandbox's and the state machine's, one set for the API, JS and WASI).
const (
	CodeKVNotFound        = "kv_not_found"
	CodeSessionNotAllowed = "session_not_allowed"
)

// kvExpireEvery is how often the leader forgets expired entries; reads
// hide an entry past its TTL at once, and a put over quota drops its
// session's expired entries itself.
const kvExpireEvery = 10 * time.Second

// kvMaxListLimit bounds one page of a list (Workers KV's 1000).
const kvMaxListLimit = 1000

// idPattern is what a session id looks like.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// ValidID reports whether s is a well-formed session id; IDPattern says
// what one is, for error messages.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// IDPattern is the pattern a session id matches.
func IDPattern() string { return idPattern.String() }

// scope is one session's KV with the profile limits that bind it.
type scope struct {
	tenant, session string
	limits          policy.KV // with defaults
	enabled         bool
}

func newScope(tenant, session string, p *policy.Profile) scope {
	return scope{tenant: tenant, session: session, limits: p.KV.WithDefaults(), enabled: p.KV.Enabled()}
}

func kvErr(code, format string, args ...any) error {
	return &sandbox.KVError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// checkKey applies the profile's key bound on top of the state
// machine's (empty, not UTF-8, NUL, 512 bytes).
func (sc scope) checkKey(key string) error {
	if why := consensus.ValidKVKey(key); why != "" {
		return kvErr(sandbox.CodeKVInvalidKey, "%s", why)
	}
	if int64(len(key)) > sc.limits.MaxKeyBytes {
		return kvErr(sandbox.CodeKVInvalidKey, "a key is at most %d bytes under this profile", sc.limits.MaxKeyBytes)
	}
	return nil
}

func (sc scope) check() error {
	if !sc.enabled {
		return kvErr(sandbox.CodeKVDisabled, "the profile grants no session KV (kv.quota_bytes is 0)")
	}
	return nil
}

// get reads a live entry from this node's state: nil when absent.
func (s *Service) get(sc scope, key string) (*consensus.KVEntry, error) {
	if err := sc.check(); err != nil {
		return nil, err
	}
	if err := sc.checkKey(key); err != nil {
		return nil, err
	}
	e, err := s.cfg.State.KVGet(sc.tenant, sc.session, key, s.cfg.KVNow().UnixNano())
	if errors.Is(err, consensus.ErrNotFound) {
		return nil, nil
	}
	return e, err
}

// put writes an entry through Raft and waits until this node applied
// it, so a read here after the put sees it.
func (s *Service) put(ctx context.Context, sc scope, key string, value []byte, o sandbox.KVPutOptions) (*consensus.KVPutResult, error) {
	if err := sc.check(); err != nil {
		return nil, err
	}
	if err := sc.checkKey(key); err != nil {
		return nil, err
	}
	if int64(len(value)) > sc.limits.MaxValueBytes {
		return nil, kvErr(sandbox.CodeKVTooLarge, "a value is at most %d bytes under this profile", sc.limits.MaxValueBytes)
	}
	if len(o.Metadata) > consensus.MaxKVMetadataBytes {
		return nil, kvErr(sandbox.CodeKVTooLarge, "metadata is at most %d bytes", consensus.MaxKVMetadataBytes)
	}
	if len(o.Metadata) > 0 && !json.Valid(o.Metadata) {
		return nil, kvErr(sandbox.CodeKVInvalid, "metadata is not JSON")
	}
	ttl := sc.limits.TTL.D()
	if o.TTLSeconds < 0 {
		return nil, kvErr(sandbox.CodeKVInvalidTTL, "expirationTtl must be a positive number of seconds")
	}
	if o.TTLSeconds > 0 && o.TTLSeconds < int64(ttl/time.Second) {
		ttl = time.Duration(o.TTLSeconds) * time.Second
	}
	now := s.cfg.KVNow()
	e := consensus.KVEntry{Tenant: sc.tenant, Session: sc.session, Key: key, Value: value, Metadata: o.Metadata,
		UpdatedAt: now.UnixNano(), ExpiresAt: now.Add(ttl).UnixNano()}
	res, err := s.cfg.Node.Propose(ctx, &consensus.PutKV{Entry: e, QuotaBytes: sc.limits.QuotaBytes})
	if err != nil {
		return nil, proposeErr(err)
	}
	if err := s.cfg.Node.WaitApplied(ctx, res.Index); err != nil {
		return nil, kvErr(sandbox.CodeKVUnavailable, "the write is applied but this node has not caught up: %v", err)
	}
	v, _ := res.Value.(*consensus.KVPutResult)
	return v, nil
}

func (s *Service) delete(ctx context.Context, sc scope, key string) error {
	if err := sc.check(); err != nil {
		return err
	}
	if err := sc.checkKey(key); err != nil {
		return err
	}
	res, err := s.cfg.Node.Propose(ctx, &consensus.DeleteKV{Tenant: sc.tenant, Session: sc.session, Key: key})
	if err != nil {
		return proposeErr(err)
	}
	if err := s.cfg.Node.WaitApplied(ctx, res.Index); err != nil {
		return kvErr(sandbox.CodeKVUnavailable, "the delete is applied but this node has not caught up: %v", err)
	}
	return nil
}

func (s *Service) list(sc scope, o sandbox.KVListOptions) (*sandbox.KVList, error) {
	if err := sc.check(); err != nil {
		return nil, err
	}
	limit := o.Limit
	if limit == 0 {
		limit = kvMaxListLimit
	}
	if limit < 1 || limit > kvMaxListLimit {
		return nil, kvErr(sandbox.CodeKVInvalid, "limit is 1-%d", kvMaxListLimit)
	}
	if len(o.Prefix) > consensus.MaxKVKeyBytes || len(o.Cursor) > consensus.MaxKVKeyBytes || !utf8.ValidString(o.Prefix) || !utf8.ValidString(o.Cursor) {
		return nil, kvErr(sandbox.CodeKVInvalid, "prefix and cursor are UTF-8 of at most %d bytes", consensus.MaxKVKeyBytes)
	}
	entries, more, err := s.cfg.State.KVList(sc.tenant, sc.session, o.Prefix, o.Cursor, limit, s.cfg.KVNow().UnixNano())
	if err != nil {
		return nil, err
	}
	out := &sandbox.KVList{Keys: make([]sandbox.KVKey, 0, len(entries)), ListComplete: !more}
	for _, e := range entries {
		out.Keys = append(out.Keys, sandbox.KVKey{Name: e.Key, Expiration: e.ExpiresAt / int64(time.Second), Metadata: e.Metadata})
	}
	if more && len(entries) > 0 {
		out.Cursor = entries[len(entries)-1].Key
	}
	return out, nil
}

// proposeErr maps a refused or failed KV write to a KVError.
func proposeErr(err error) error {
	var re *consensus.RefusedError
	if errors.As(err, &re) {
		return &sandbox.KVError{Code: re.Code, Message: re.Message}
	}
	return &sandbox.KVError{Code: sandbox.CodeKVUnavailable, Message: err.Error()}
}

// apiError maps a KV error to the API's JSON error and status.
func apiError(err error) error {
	var ke *sandbox.KVError
	if !errors.As(err, &ke) {
		return err
	}
	status := http.StatusBadRequest
	switch ke.Code {
	case sandbox.CodeKVQuota, sandbox.CodeKVOps:
		status = http.StatusTooManyRequests
	case sandbox.CodeKVTooLarge:
		status = http.StatusRequestEntityTooLarge
	case sandbox.CodeKVDisabled:
		status = http.StatusForbidden
	case sandbox.CodeKVUnavailable:
		return &api.Error{Status: http.StatusServiceUnavailable, Code: ke.Code, Message: ke.Message, RetryAfter: 1}
	}
	return &api.Error{Status: status, Code: ke.Code, Message: ke.Message}
}
