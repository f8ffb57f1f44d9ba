package sandbox

// The session KV for JS workers: env.SESSION (the profile's kv.binding),
// in Workers KV's shape (docs/sessions.md). The prelude's binding makes
// every operation one call of the host function kv; the call goes to the
// task's KV (Host.KV, the node's taskKV), which checks it against the
// lease and the profile, meters it and records it, as for WASI guests.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero/api"
)

// KVBinder is implemented by a KV whose binding name is not the default:
// the node's taskKV reports its profile's kv.binding, and "" when the
// profile grants no session KV (the worker then has no binding).
type KVBinder interface {
	KVBinding() string
}

// DefaultKVBinding is the binding's name for a KV that is no KVBinder.
const DefaultKVBinding = "SESSION"

// jsKVBinding is the env name of t's session KV, or "" for none: a task
// without a session, or whose profile grants no KV, has no binding
// (env.SESSION is undefined, as an unbound name in Workers).
func jsKVBinding(t *Task) string {
	if t.Host.KV == nil {
		return ""
	}
	if b, ok := t.Host.KV.(KVBinder); ok {
		return b.KVBinding()
	}
	return DefaultKVBinding
}

const (
	// jsMaxKVRequest bounds the JSON of one call: a key, a prefix and a
	// cursor (each at most 4 KiB as UTF-8 escaped JSON) and metadata.
	jsMaxKVRequest = 256 << 10
	// jsMaxKVValue bounds a put's value read out of the engine; the
	// profile's kv.max_value_bytes (checked by the node) is the real limit.
	jsMaxKVValue = maxKVValueRead
)

// jsKVRequest is one call as the prelude's binding writes it.
type jsKVRequest struct {
	Op  string `json:"op"` // get, put, delete, list
	Key string `json:"key"`
	// put
	TTL      int64           `json:"ttl"`
	Metadata json.RawMessage `json:"metadata"`
	// list
	Prefix string `json:"prefix"`
	Cursor string `json:"cursor"`
	Limit  int    `json:"limit"`
}

// jsKVReply is the reply's JSON header; a got value's bytes follow it.
type jsKVReply struct {
	Error *KVError `json:"error,omitempty"`
	// get
	Found      bool            `json:"found,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Expiration int64           `json:"expiration,omitempty"`
	// list
	List *KVList `json:"list,omitempty"`
}

// jsKVCall runs one decoded call against the task's KV, with the CPU
// meter paused (waiting for Raft is not the worker's CPU). It returns
// the header and a got value.
func jsKVCall(st *jsTask, req *jsKVRequest, value []byte) (*jsKVReply, []byte, error) {
	kv := st.t.Host.KV
	if kv == nil {
		return nil, nil, &KVError{Code: CodeKVNoSession, Message: "this task has no session KV: its lease names no session"}
	}
	if err := context.Cause(st.ctx); err != nil {
		return nil, nil, &KVError{Code: CodeKVUnavailable, Message: "the task is ending: " + err.Error()}
	}
	ctx := st.ctx
	if st.meter != nil {
		st.meter.pause()
		defer st.meter.resume()
	}
	switch req.Op {
	case "get":
		v, err := kv.Get(ctx, req.Key)
		if err != nil || v == nil {
			return &jsKVReply{}, nil, err
		}
		return &jsKVReply{Found: true, Metadata: v.Metadata, Expiration: v.Expiration}, v.Value, nil
	case "put":
		if string(req.Metadata) == "null" {
			req.Metadata = nil
		}
		err := kv.Put(ctx, req.Key, value, KVPutOptions{TTLSeconds: req.TTL, Metadata: req.Metadata})
		return &jsKVReply{}, nil, err
	case "delete":
		return &jsKVReply{}, nil, kv.Delete(ctx, req.Key)
	case "list":
		l, err := kv.List(ctx, KVListOptions{Prefix: req.Prefix, Cursor: req.Cursor, Limit: req.Limit})
		if err != nil {
			return nil, nil, err
		}
		if l.Keys == nil {
			l.Keys = []KVKey{}
		}
		return &jsKVReply{List: l}, nil, nil
	}
	return nil, nil, &KVError{Code: CodeKVInvalid, Message: fmt.Sprintf("unknown KV operation %q", req.Op)}
}

// jsKV: kv(req, rlen, val, vlen) -> reply length, or -1 when there is no
// task or the arguments are outside the engine's memory. Every refusal
// is a reply whose header names the KVError's code; the prelude throws it
// as an Error.
func jsKV(ctx context.Context, mod api.Module, stack []uint64) {
	st := jsTaskFrom(ctx)
	rn, vn := uint32(stack[1]), uint32(stack[3])
	if st == nil || st.t == nil {
		stack[0] = api.EncodeI32(-1)
		return
	}
	var rb, vb []byte
	if rn <= jsMaxKVRequest && vn <= jsMaxKVValue {
		var ok1, ok2 bool
		rb, ok1 = mod.Memory().Read(uint32(stack[0]), rn)
		vb, ok2 = mod.Memory().Read(uint32(stack[2]), vn)
		if !ok1 || !ok2 {
			stack[0] = api.EncodeI32(-1)
			return
		}
	}
	st.reply = jsKVReplyTo(st, rn, vn, rb, vb)
	stack[0] = uint64(len(st.reply))
}

// jsKVReplyTo decodes one call (rn and vn are the lengths the engine
// passed; rb and vb the bytes, nil when over the bounds), runs it and
// returns the reply: 4 bytes of the header's length, the JSON header, a
// got value.
func jsKVReplyTo(st *jsTask, rn, vn uint32, rb, vb []byte) []byte {
	var hdr *jsKVReply
	var value []byte
	var err error
	switch {
	case rn > jsMaxKVRequest:
		err = &KVError{Code: CodeKVInvalid, Message: fmt.Sprintf("a KV call's arguments are at most %d bytes", jsMaxKVRequest)}
	case vn > jsMaxKVValue:
		err = &KVError{Code: CodeKVTooLarge, Message: fmt.Sprintf("a value is at most %d bytes", jsMaxKVValue)}
	default:
		var req jsKVRequest
		if jerr := json.Unmarshal(rb, &req); jerr != nil {
			err = &KVError{Code: CodeKVInvalid, Message: "malformed KV call: " + jerr.Error()}
			break
		}
		// the value is copied: the engine's memory is not the KV's
		hdr, value, err = jsKVCall(st, &req, append([]byte(nil), vb...))
	}
	if err != nil {
		var ke *KVError
		if !errors.As(err, &ke) {
			ke = &KVError{Code: CodeKVUnavailable, Message: err.Error()}
		}
		hdr, value = &jsKVReply{Error: ke}, nil
	}
	hb, err := json.Marshal(hdr)
	if err != nil {
		hb = []byte(`{"error":{"code":"` + CodeKVUnavailable + `","message":"the reply could not be encoded"}}`)
		value = nil
	}
	reply := make([]byte, 4, 4+len(hb)+len(value))
	binary.LittleEndian.PutUint32(reply, uint32(len(hb)))
	return append(append(reply, hb...), value...)
}
