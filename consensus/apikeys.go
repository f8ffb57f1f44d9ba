// API keys in replicated state: the record (package record's), an index
// by tenant, the commands that create and revoke keys, and the reads.

package consensus

import (
	"errors"
	"strings"

	"github.com/leash-dev/leash/record"
)

// APIKey is package record's API key record.
type APIKey = record.APIKey

// Keys of the API key area.
const (
	prefixAPIKey       = PrefixState + "apikey/"   // <id> → the record
	prefixAPIKeyTenant = PrefixState + "apikey-t/" // <tenant>/<id> → id
	prefixAPIKeyCount  = PrefixState + "apikey-n/" // <tenant> → count
)

// MaxAPIKeysPerTenant bounds the keys one tenant holds in replicated
// state; operators', auditors' and admins' keys count under "".
const MaxAPIKeysPerTenant = 100

// apiKeys is the API key record and its index by tenant: the only writer
// of the keys under apikey/ and apikey-t/.
var apiKeys = &table[APIKey]{
	name: "api key",
	key:  func(k *APIKey) string { return prefixAPIKey + k.ID },
	indexes: []index[APIKey]{
		{"by tenant", always(func(k *APIKey) string { return prefixAPIKeyTenant + k.Tenant + "/" + k.ID }),
			func(k *APIKey) []byte { return []byte(k.ID) }},
	},
	counters: []counter[APIKey]{
		{"keys per tenant", always(func(k *APIKey) string { return prefixAPIKeyCount + k.Tenant })},
	},
}

// CreateAPIKey records a new API key. The proposer made the secret and
// checked the caller may grant the role; apply checks the record's shape
// and the per-tenant bound.
type CreateAPIKey struct {
	Key APIKey `msgpack:"key"`
}

// RevokeAPIKey revokes a key: its record goes (so revoked keys do not
// pile up in replicated state), and with it every node's trust in it.
type RevokeAPIKey struct {
	ID string `msgpack:"id"`
	By string `msgpack:"by"`
	At int64  `msgpack:"at"`
}

func (CreateAPIKey) Op() Op { return OpCreateAPIKey }
func (RevokeAPIKey) Op() Op { return OpRevokeAPIKey }

// Refusal codes of the API key commands.
const (
	CodeAPIKeyExists   = "api_key_exists"
	CodeAPIKeyNotFound = "api_key_not_found"
	CodeTooManyAPIKeys = "too_many_api_keys"
)

func validKeyID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, "/\x00")
}

func applyCreateAPIKey(tx *Tx, c *CreateAPIKey) (*APIKey, error) {
	k := c.Key
	switch {
	case !validKeyID(k.ID):
		return nil, refuse(CodeInvalid, "an API key needs an id without '/'")
	case !record.ValidRole(k.Role):
		return nil, refuse(CodeInvalid, "unknown role %q", k.Role)
	case (k.Role == record.RoleTenant) != (k.Tenant != ""):
		return nil, refuse(CodeInvalid, "a tenant key names its tenant; other roles name none")
	case strings.ContainsAny(k.Tenant, "/\x00") || len(k.Tenant) > 128 || len(k.Name) > 128:
		return nil, refuse(CodeInvalid, "tenant and name are at most 128 bytes, without '/'")
	case len(k.Hash) != 32:
		return nil, refuse(CodeInvalid, "an API key carries the 32-byte SHA-256 of its secret")
	case k.CreatedAt <= 0 || k.CreatedBy == "":
		return nil, refuse(CodeInvalid, "an API key needs a creation time and a creator")
	case k.ExpiresAt != 0 && k.ExpiresAt <= k.CreatedAt:
		return nil, refuse(CodeInvalid, "an API key expires after it is created")
	case k.RevokedAt != 0 || k.RevokedBy != "":
		return nil, refuse(CodeInvalid, "a new API key cannot be revoked")
	}
	if _, err := apiKeys.get(tx, prefixAPIKey+k.ID); err == nil {
		return nil, refuse(CodeAPIKeyExists, "API key %s exists", k.ID)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	n, err := getCount(tx, prefixAPIKeyCount+k.Tenant)
	if err != nil {
		return nil, err
	}
	if n >= MaxAPIKeysPerTenant {
		return nil, refuse(CodeTooManyAPIKeys, "tenant %q holds %d API keys, the most it may", k.Tenant, n)
	}
	if err := apiKeys.insert(tx, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

func applyRevokeAPIKey(tx *Tx, c *RevokeAPIKey) (*APIKey, error) {
	if c.At <= 0 || c.By == "" {
		return nil, refuse(CodeInvalid, "a revocation needs a time and who revoked")
	}
	k, err := apiKeys.get(tx, prefixAPIKey+c.ID)
	if errors.Is(err, ErrNotFound) {
		return nil, refuse(CodeAPIKeyNotFound, "no API key %s", c.ID)
	}
	if err != nil {
		return nil, err
	}
	if err := apiKeys.remove(tx, k); err != nil {
		return nil, err
	}
	k.RevokedAt, k.RevokedBy = c.At, c.By
	return k, nil
}

// APIKey returns a key by id; the request path reads it on every call, so
// it goes through the record cache. The caller may keep but not change it.
func (s *State) APIKey(id string) (*APIKey, error) {
	key := prefixAPIKey + id
	if v, ok := s.records.get(key); ok {
		c := *v.(*APIKey)
		return &c, nil
	}
	g := s.records.gen.Load()
	k, err := apiKeys.get(s.db, key)
	if err != nil {
		return nil, err
	}
	c := *k
	s.records.put(g, key, &c)
	return k, nil
}

// APIKeys lists the keys of one tenant ("" for the keys of operators,
// auditors and admins), in id order.
func (s *State) APIKeys(tenant string) ([]APIKey, error) {
	var out []APIKey
	err := scan(s.db, prefixAPIKeyTenant+tenant+"/", func(_, v []byte) error {
		k, err := apiKeys.get(s.db, prefixAPIKey+string(v))
		if err != nil {
			return err
		}
		out = append(out, *k)
		return nil
	})
	return out, err
}
