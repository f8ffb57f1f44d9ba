package consensus

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A follower forwards a write to the leader in its log form and gets the
// Result back in the form below. Values are re-typed by op so that a
// forwarded write returns what a local one would.

type wireResult struct {
	Code    string             `msgpack:"code"`
	Message string             `msgpack:"message"`
	Index   uint64             `msgpack:"index"`
	Value   msgpack.RawMessage `msgpack:"value"`
}

// resultTypes makes a pointer to the type apply returns for an op. An op
// missing here comes back with a generically decoded value (maps,
// strings, numbers).
var resultTypes = map[Op]func() any{
	OpPutPolicy:    func() any { return new(string) },
	OpIssueLease:   func() any { return new(*Lease) },
	OpRevokeLease:  func() any { return new(*Lease) },
	OpExpireLeases: func() any { return new(int) },

	OpAppendReceipts:   func() any { return new(AppendResult) },
	OpCosignCheckpoint: func() any { return new(int64) },

	OpPutQueueModule: func() any { return new(ModulePut) },
	OpEnqueueTask:    func() any { return new(EnqueueResult) },
	OpClaimTask:      func() any { return new(ClaimResult) },
	OpRenewClaims:    func() any { return new(RenewResult) },
	OpCompleteTask:   func() any { return new(TaskStatus) },
	OpCancelTask:     func() any { return new(TaskStatus) },
	OpReclaimTasks:   func() any { return new(ReclaimResult) },
	OpPurgeTasks:     func() any { return new(int) },
}

// MarshalResult encodes a result for the wire.
func MarshalResult(r *Result) ([]byte, error) {
	w := wireResult{Code: r.Code, Message: r.Message, Index: r.Index}
	if r.Value != nil {
		b, err := msgpack.Marshal(r.Value)
		if err != nil {
			return nil, fmt.Errorf("encode result: %w", err)
		}
		w.Value = b
	}
	return msgpack.Marshal(&w)
}

// UnmarshalResult decodes a result of a command of op.
func UnmarshalResult(op Op, b []byte) (*Result, error) {
	var w wireResult
	if err := msgpack.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	r := &Result{Code: w.Code, Message: w.Message, Index: w.Index}
	if len(w.Value) == 0 {
		return r, nil
	}
	mk, ok := resultTypes[op]
	if !ok {
		var v any
		if err := msgpack.Unmarshal(w.Value, &v); err != nil {
			return nil, fmt.Errorf("decode result value: %w", err)
		}
		r.Value = v
		return r, nil
	}
	p := mk()
	if err := msgpack.Unmarshal(w.Value, p); err != nil {
		return nil, fmt.Errorf("decode %s result value: %w", op, err)
	}
	switch v := p.(type) {
	case *string:
		r.Value = *v
	case **Lease:
		r.Value = *v
	case *int:
		r.Value = *v
	case *int64:
		r.Value = *v
	default:
		r.Value = p
	}
	return r, nil
}
