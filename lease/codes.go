package lease

// Refusal codes of Verify, one per reason a token is refused. They reach
// clients as the error code of a refused request and are documented in
// docs/api.md; api's CodeLease* constants are the same strings (a test
// keeps them so).
const (
	CodeMissing      = "lease_missing"
	CodeMalformed    = "lease_malformed"
	CodeAlgorithm    = "lease_alg_not_allowed"
	CodeUnknownKey   = "lease_unknown_kid"
	CodeBadSignature = "lease_bad_signature"
	CodeExpired      = "lease_expired"
	CodeNotYetValid  = "lease_not_yet_valid"
	CodeRevoked      = "lease_revoked"
	CodeUnknown      = "lease_unknown"
)
