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
	if s, ok := commands[op]; ok && s.value != nil {
		v, err := s.value(w.Value)
		if err != nil {
			return nil, fmt.Errorf("decode %s result value: %w", op, err)
		}
		r.Value = v
		return r, nil
	}
	var v any
	if err := msgpack.Unmarshal(w.Value, &v); err != nil {
		return nil, fmt.Errorf("decode result value: %w", err)
	}
	r.Value = v
	return r, nil
}
