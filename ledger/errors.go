package ledger

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel causes. Every error this package returns from a verification or
// an append wraps exactly one of them, so callers can branch with
// [errors.Is] while people read the [VerifyError] text.
var (
	// ErrNotFound: a key, record or tree size is not in the store.
	ErrNotFound = errors.New("not found")
	// ErrMalformed: bytes that do not parse as the expected format.
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge: input over one of the package's bounds.
	ErrTooLarge = errors.New("too large")
	// ErrInvalidReceipt: a receipt field fails validation.
	ErrInvalidReceipt = errors.New("invalid receipt")
	// ErrUnknownKey: no trusted key matches a signature's key id.
	ErrUnknownKey = errors.New("unknown key")
	// ErrBadSignature: a signature does not verify with the key it names.
	ErrBadSignature = errors.New("bad signature")
	// ErrWrongNode: a receipt is signed by a key that belongs to another
	// node than the one the receipt names.
	ErrWrongNode = errors.New("signed by another node")
	// ErrHashMismatch: a record's bytes do not hash to the logged hash.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrNotIncluded: an inclusion proof does not lead to the checkpoint.
	ErrNotIncluded = errors.New("not included")
	// ErrRootMismatch: two tree hashes for the same size differ.
	ErrRootMismatch = errors.New("root mismatch")
	// ErrSizeMismatch: a tree size differs from the one expected.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrMissingRecord: a record index is absent from a sequence.
	ErrMissingRecord = errors.New("missing record")
	// ErrOutOfOrder: a record index appears where another was expected.
	ErrOutOfOrder = errors.New("out of order")
	// ErrInconsistent: a newer tree does not extend an older one.
	ErrInconsistent = errors.New("inconsistent")
	// ErrOriginMismatch: a checkpoint names another log.
	ErrOriginMismatch = errors.New("origin mismatch")
	// ErrTooFewSignatures: a checkpoint lacks the demanded number of
	// distinct trusted node signatures.
	ErrTooFewSignatures = errors.New("too few signatures")
	// ErrBehind: the local log is shorter than the checkpoint to co-sign.
	ErrBehind = errors.New("local log is behind")
)

// VerifyError says exactly what failed and where. Its text reads like
//
//	receipt 17: signature does not verify with key sha256:ab12…
//	export: record 42: hash mismatch: …
//	checkpoint from node b: root differs at size 100: …
//
// Err is one of the package's sentinel errors and is what [errors.Is]
// matches.
type VerifyError struct {
	// Subject is what was being checked: "receipt", "envelope", "export",
	// "checkpoint", "older checkpoint", "newer checkpoint", "consistency",
	// "agreement", "append", "keys", "co-sign", "merge".
	Subject string
	// Index is the record index the failure is at, or -1.
	Index int64
	// Line is the 1-based line of an export the failure is on, or 0.
	Line int64
	// Node is the node the failing item came from (the node that served a
	// checkpoint, or the node a receipt names), or "".
	Node string
	// Field is the receipt, envelope or checkpoint field at fault, or "".
	Field string
	// Err is the sentinel cause.
	Err error
	// Detail is the human explanation; empty means Err's text.
	Detail string
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Subject)
	if e.Index >= 0 && e.Subject == "receipt" {
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(e.Index, 10))
	}
	if e.Node != "" {
		b.WriteString(" from node ")
		b.WriteString(e.Node)
	}
	b.WriteString(": ")
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.FormatInt(e.Line, 10))
		b.WriteString(": ")
	}
	if e.Index >= 0 && e.Subject != "receipt" {
		b.WriteString("record ")
		b.WriteString(strconv.FormatInt(e.Index, 10))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString("field ")
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Detail != "" {
		b.WriteString(e.Detail)
	} else if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel cause.
func (e *VerifyError) Unwrap() error { return e.Err }

// verr builds a VerifyError with no index, node or field.
func verr(subject string, cause error, detail string) *VerifyError {
	return &VerifyError{Subject: subject, Index: -1, Err: cause, Detail: detail}
}

// fieldErr builds a receipt field error.
func fieldErr(field, detail string) *VerifyError {
	return &VerifyError{Subject: "receipt", Index: -1, Field: field, Err: ErrInvalidReceipt, Detail: detail}
}

// relabel returns a copy of err, when it is a *VerifyError, with subject
// and index replaced (index -1 keeps the old one); other errors are
// wrapped into a VerifyError with cause ErrMalformed.
func relabel(err error, subject string, index int64) *VerifyError {
	var ve *VerifyError
	if errors.As(err, &ve) {
		c := *ve
		c.Subject = subject
		if index >= 0 {
			c.Index = index
		}
		return &c
	}
	return &VerifyError{Subject: subject, Index: index, Err: ErrMalformed, Detail: err.Error()}
}
