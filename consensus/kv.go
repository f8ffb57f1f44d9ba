// The session KV in replicated state (docs/sessions.md): entries by
// tenant, session and key, an expiry index, each session's bytes and
// entries counted for its quota, the commands that put, delete, expire
// and end sessions, and the reads.

package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/policy"
)

// Keys of the session KV area. A record's key ends with the entry's key,
// which may hold any UTF-8 (even '/'): tenant and session names never
// hold '/', so the prefix of a session is unambiguous and a scan of it
// lists the session's keys in byte order.
const (
	prefixKV      = PrefixState + "kv/"     // <tenant>/<session>/<key> → the entry
	prefixKVExp   = PrefixState + "kv-exp/" // 8-byte big-endian expiry, <tenant>/<session>/<key> → empty
	prefixKVBytes = PrefixState + "kv-b/"   // <tenant>/<session> → bytes held
	prefixKVCount = PrefixState + "kv-n/"   // <tenant>/<session> → entries held
)

// Hard bounds of the session KV, whatever a profile says: a profile's
// limits (policy.KV) are at most these.
const (
	MaxKVKeyBytes          = policy.KVKeyBytesCap
	MaxKVValueBytes        = policy.KVValueBytesCap
	MaxKVMetadataBytes     = 1024
	MaxKVEntriesPerSession = 10000
	// maxKVExpirePerCommand bounds the work of one ExpireKV.
	maxKVExpirePerCommand = 10000
)

// Refusal codes of the session KV commands (the API's codes too).
const (
	CodeKVQuota      = "kv_quota_exceeded"
	CodeKVInvalidKey = "invalid_kv_key"
	CodeKVTooLarge   = "kv_value_too_large"
	CodeKVInvalidTTL = "invalid_kv_ttl"
)

// KVEntry is one session KV entry.
type KVEntry struct {
	Tenant  string `msgpack:"tenant"`
	Session string `msgpack:"session"`
	Key     string `msgpack:"key"`
	Value   []byte `msgpack:"value"`
	// Metadata is the put's metadata as JSON text (Workers KV's), or empty.
	Metadata  []byte `msgpack:"metadata,omitempty"`
	ExpiresAt int64  `msgpack:"expires_at"` // unix ns; every entry expires
	UpdatedAt int64  `msgpack:"updated_at"` // unix ns, the put's time
}

// Size is what the entry counts against its session's quota.
func (e *KVEntry) Size() int64 { return int64(len(e.Key) + len(e.Value) + len(e.Metadata)) }

// Expired reports whether the entry is past its TTL at now (unix ns).
func (e *KVEntry) Expired(now int64) bool { return e.ExpiresAt <= now }

func kvSessionKey(tenant, session string) string { return tenant + "/" + session }

func kvKey(tenant, session, key string) string {
	return prefixKV + kvSessionKey(tenant, session) + "/" + key
}

func kvExpiryKey(e *KVEntry) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(e.ExpiresAt, 0)))
	return prefixKVExp + string(b[:]) + kvSessionKey(e.Tenant, e.Session) + "/" + e.Key
}

// kvEntries is the entry record with its expiry index and its session's
// counters: the only writer of the keys under kv/, kv-exp/, kv-b/ and
// kv-n/.
var kvEntries = &table[KVEntry]{
	name: "kv entry",
	key:  func(e *KVEntry) string { return kvKey(e.Tenant, e.Session, e.Key) },
	indexes: []index[KVEntry]{
		{"expiry", always(kvExpiryKey), func(*KVEntry) []byte { return emptyValue }},
	},
	counters: []counter[KVEntry]{
		{"session entries", always(func(e *KVEntry) string { return prefixKVCount + kvSessionKey(e.Tenant, e.Session) })},
	},
	sums: []sum[KVEntry]{
		{"session bytes", func(e *KVEntry) string { return prefixKVBytes + kvSessionKey(e.Tenant, e.Session) }, (*KVEntry).Size},
	},
}

// ValidKVName reports whether a tenant or session name may scope KV
// entries: 1–128 bytes, without '/' or control characters.
func ValidKVName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidKVKey checks a key: 1–MaxKVKeyBytes bytes of UTF-8 without NUL.
// It returns why not, or "".
func ValidKVKey(k string) string {
	switch {
	case k == "":
		return "a key must not be empty"
	case len(k) > MaxKVKeyBytes:
		return "a key is at most 512 bytes"
	case !utf8.ValidString(k):
		return "a key must be UTF-8"
	case strings.IndexByte(k, 0) >= 0:
		return "a key must not hold NUL"
	}
	return ""
}

// PutKV writes one entry. The proposer capped its TTL to the profile's
// and passes the profile's quota; apply checks the entry's shape and the
// quota against replicated state, so two racing puts cannot both pass it.
type PutKV struct {
	Entry KVEntry `msgpack:"entry"`
	// QuotaBytes is the profile's kv.quota_bytes: the session's entries
	// may hold at most this many bytes after the put.
	QuotaBytes int64 `msgpack:"quota_bytes"`
}

// DeleteKV deletes one entry; deleting a missing key is no error.
type DeleteKV struct {
	Tenant  string `msgpack:"tenant"`
	Session string `msgpack:"session"`
	Key     string `msgpack:"key"`
}

// ExpireKV forgets entries that expired before Before (unix ns), oldest
// first, at most maxKVExpirePerCommand of them.
type ExpireKV struct {
	Before int64 `msgpack:"before"`
}

// EndSession drops every entry of a session (at most
// MaxKVEntriesPerSession, so one command).
type EndSession struct {
	Tenant  string `msgpack:"tenant"`
	Session string `msgpack:"session"`
}

func (PutKV) Op() Op      { return OpPutKV }
func (DeleteKV) Op() Op   { return OpDeleteKV }
func (ExpireKV) Op() Op   { return OpExpireKV }
func (EndSession) Op() Op { return OpEndSession }

// KVPutResult is what a put returns: the session's usage after it.
type KVPutResult struct {
	Bytes   int64 `msgpack:"bytes"`
	Entries int64 `msgpack:"entries"`
}

func checkKVScope(tenant, session string) error {
	if !ValidKVName(tenant) || !ValidKVName(session) {
		return refuse(CodeInvalid, "kv entries need a tenant and a session of 1-128 bytes without '/'")
	}
	return nil
}

func applyPutKV(tx *Tx, c *PutKV) (*KVPutResult, error) {
	e := c.Entry
	if err := checkKVScope(e.Tenant, e.Session); err != nil {
		return nil, err
	}
	if why := ValidKVKey(e.Key); why != "" {
		return nil, refuse(CodeKVInvalidKey, "%s", why)
	}
	if len(e.Value) > MaxKVValueBytes {
		return nil, refuse(CodeKVTooLarge, "a value is at most %d bytes", MaxKVValueBytes)
	}
	if len(e.Metadata) > MaxKVMetadataBytes {
		return nil, refuse(CodeKVTooLarge, "metadata is at most %d bytes", MaxKVMetadataBytes)
	}
	if e.UpdatedAt <= 0 || e.ExpiresAt <= e.UpdatedAt {
		return nil, refuse(CodeKVInvalidTTL, "an entry expires after it is written")
	}
	if c.QuotaBytes <= 0 {
		return nil, refuse(CodeKVQuota, "the profile grants no session KV")
	}
	if e.Value == nil {
		e.Value = []byte{}
	}
	sk := kvSessionKey(e.Tenant, e.Session)
	old, err := kvEntries.get(tx, kvKey(e.Tenant, e.Session, e.Key))
	switch {
	case errors.Is(err, ErrNotFound):
		old = nil
	case err != nil:
		return nil, err
	}
	bytes, err := getCount(tx, prefixKVBytes+sk)
	if err != nil {
		return nil, err
	}
	entries, err := getCount(tx, prefixKVCount+sk)
	if err != nil {
		return nil, err
	}
	after, afterN := bytes+e.Size(), entries+1
	if old != nil {
		after, afterN = after-old.Size(), afterN-1
	}
	if after > c.QuotaBytes || afterN > MaxKVEntriesPerSession {
		// Entries past their TTL that the sweep has not forgotten yet
		// never count against a put: drop them with it (only on this
		// path, and bounded by the entries a session may hold). The
		// removals are staged in tx; a refusal below discards them.
		err := scan(tx, prefixKV+sk+"/", func(_, v []byte) error {
			var x KVEntry
			if err := msgpack.Unmarshal(v, &x); err != nil {
				return err
			}
			if !x.Expired(e.UpdatedAt) || x.Key == e.Key {
				return nil
			}
			after, afterN = after-x.Size(), afterN-1
			return kvEntries.remove(tx, &x)
		})
		if err != nil {
			return nil, err
		}
	}
	if after > c.QuotaBytes {
		return nil, refuse(CodeKVQuota, "session would hold %d bytes, above its quota of %d", after, c.QuotaBytes)
	}
	if afterN > MaxKVEntriesPerSession {
		return nil, refuse(CodeKVQuota, "a session holds at most %d entries", MaxKVEntriesPerSession)
	}
	if err := kvEntries.put(tx, old, &e); err != nil {
		return nil, err
	}
	return &KVPutResult{Bytes: after, Entries: afterN}, nil
}

func applyDeleteKV(tx *Tx, c *DeleteKV) (bool, error) {
	if err := checkKVScope(c.Tenant, c.Session); err != nil {
		return false, err
	}
	if why := ValidKVKey(c.Key); why != "" {
		return false, refuse(CodeKVInvalidKey, "%s", why)
	}
	old, err := kvEntries.get(tx, kvKey(c.Tenant, c.Session, c.Key))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, kvEntries.remove(tx, old)
}

// applyExpireKV forgets entries that expired before c.Before through the
// expiry index, oldest first, at most maxKVExpirePerCommand of them.
func applyExpireKV(tx *Tx, c *ExpireKV) (int, error) {
	return kvEntries.expireBefore(tx, prefixKVExp, prefixKV, c.Before, maxKVExpirePerCommand)
}

func applyEndSession(tx *Tx, c *EndSession) (int, error) {
	if err := checkKVScope(c.Tenant, c.Session); err != nil {
		return 0, err
	}
	// The scan reads the batch; the removals are staged in tx, so no
	// value outlives its callback.
	gone := 0
	err := scan(tx, prefixKV+kvSessionKey(c.Tenant, c.Session)+"/", func(_, v []byte) error {
		var e KVEntry
		if err := msgpack.Unmarshal(v, &e); err != nil {
			return err
		}
		gone++
		return kvEntries.remove(tx, &e)
	})
	if err != nil {
		return 0, err
	}
	return gone, nil
}

// KVGet returns a live entry (one not expired at now, unix ns), or
// ErrNotFound.
func (s *State) KVGet(tenant, session, key string, now int64) (*KVEntry, error) {
	e, err := kvEntries.get(s.db, kvKey(tenant, session, key))
	if err != nil {
		return nil, err
	}
	if e.Expired(now) {
		return nil, ErrNotFound
	}
	return e, nil
}

// KVUsage is what a session holds: bytes (against its quota) and
// entries, counting entries past their TTL until the sweep forgets them.
func (s *State) KVUsage(tenant, session string) (bytes, entries int64, err error) {
	sk := kvSessionKey(tenant, session)
	if bytes, err = getCount(s.db, prefixKVBytes+sk); err != nil {
		return 0, 0, err
	}
	entries, err = getCount(s.db, prefixKVCount+sk)
	return bytes, entries, err
}

// KVList lists a session's live entries whose keys start with prefix,
// after the key cursor (exclusive; "" from the start), in byte order, at
// most limit of them. Values are left out. More reports whether entries
// may follow the last one returned.
func (s *State) KVList(tenant, session, prefix, cursor string, limit int, now int64) (out []KVEntry, more bool, err error) {
	base := prefixKV + kvSessionKey(tenant, session) + "/"
	lower := []byte(base + prefix)
	if cursor != "" && cursor >= prefix {
		lower = append([]byte(base+cursor), 0) // the first key after the cursor
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: PrefixEnd([]byte(base + prefix))})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, false, err
		}
		var e KVEntry
		if err := msgpack.Unmarshal(v, &e); err != nil {
			return nil, false, fmt.Errorf("decode %q: %w", it.Key(), err)
		}
		if e.Expired(now) {
			continue
		}
		if len(out) >= limit {
			return out, true, nil
		}
		e.Value = nil
		out = append(out, e)
	}
	return out, false, nil
}
