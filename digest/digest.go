// Package digest names content by its SHA-256: "sha256:" and 64 lower-case
// hex digits. Modules, policy bundles and task specs are addressed this way
// in replicated state, on the wire and in receipts; this leaf package is
// the one definition every layer shares.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// Prefix starts every digest.
const Prefix = "sha256:"

// Len is the length of a digest.
const Len = len(Prefix) + 2*sha256.Size

// Of returns the digest of b.
func Of(b []byte) string {
	sum := sha256.Sum256(b)
	return Prefix + hex.EncodeToString(sum[:])
}

// Sum returns the digest of what h (a SHA-256) has hashed.
func Sum(h hash.Hash) string { return Prefix + hex.EncodeToString(h.Sum(nil)) }

// Valid reports whether d is a digest: the prefix and 64 lower-case hex
// digits, nothing else (safe to use in a key or a URL path).
func Valid(d string) bool {
	if len(d) != Len || d[:len(Prefix)] != Prefix {
		return false
	}
	for _, c := range d[len(Prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
