// Package apikey makes, parses and checks API keys: random secrets shown
// once, of the form
//
//	lsk_<id>_<secret>
//
// where <id> is the key's public id (16 lower-case base32 characters;
// replicated state knows the key by it) and <secret> 32 random bytes in
// unpadded base64url (43 characters). Replicated state keeps only the
// SHA-256 of the secret: a 256-bit random secret needs no slow hash, and a
// stolen copy of the state grants nothing.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leash-dev/leash/record"
)

// Prefix starts every key, so that a key is recognisable in a log or a
// secret scanner.
const Prefix = "lsk_"

const (
	idLen     = 16
	secretLen = 43 // base64url of 32 bytes, unpadded
	// Len is the length of a key.
	Len = len(Prefix) + idLen + 1 + secretLen
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Refusals of Check. Parse and Check errors wrap one of them.
var (
	ErrMalformed = errors.New("not an API key")
	ErrMismatch  = errors.New("the key's secret does not match")
	ErrRevoked   = errors.New("the key was revoked")
	ErrExpired   = errors.New("the key expired")
)

// New makes a key: the token to hand out (once) and the id and secret
// hash replicated state keeps.
func New() (token, id string, hash []byte, err error) {
	var idb [10]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", nil, fmt.Errorf("api key: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", nil, fmt.Errorf("api key: %w", err)
	}
	id = idEncoding.EncodeToString(idb[:])
	s := base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(s))
	return Prefix + id + "_" + s, id, sum[:], nil
}

// Looks reports whether token has the shape of an API key (the prefix):
// a credential that starts so is checked as a key, never as a lease.
func Looks(token string) bool { return strings.HasPrefix(token, Prefix) }

// Parse splits a key into its id and secret, checking the shape exactly.
func Parse(token string) (id, secret string, err error) {
	if len(token) != Len || !strings.HasPrefix(token, Prefix) || token[len(Prefix)+idLen] != '_' {
		return "", "", fmt.Errorf("%w: want %s<id>_<secret>, %d characters", ErrMalformed, Prefix, Len)
	}
	id = token[len(Prefix) : len(Prefix)+idLen]
	secret = token[len(Prefix)+idLen+1:]
	if !ValidID(id) {
		return "", "", fmt.Errorf("%w: the id is not base32", ErrMalformed)
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil || len(b) != 32 {
		return "", "", fmt.Errorf("%w: the secret is not 32 bytes of base64url", ErrMalformed)
	}
	return id, secret, nil
}

// ValidID reports whether id has the shape of a key id.
func ValidID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// Check checks a parsed key's secret against its replicated record, and
// that the key is neither revoked nor expired at now.
func Check(k *record.APIKey, secret string, now time.Time) error {
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], k.Hash) != 1 {
		return ErrMismatch
	}
	if k.Revoked() {
		return ErrRevoked
	}
	if k.ExpiresAt != 0 && now.UnixNano() >= k.ExpiresAt {
		return ErrExpired
	}
	return nil
}
