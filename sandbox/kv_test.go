package sandbox

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// memKV is a fake KV: a map, with refusals chosen by key.
type memKV struct {
	mu   sync.Mutex
	m    map[string][]byte
	puts []KVPutOptions
}

func (k *memKV) Get(_ context.Context, key string) (*KVValue, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key == "quota" {
		return nil, &KVError{Code: CodeKVQuota, Message: "full"}
	}
	v, ok := k.m[key]
	if !ok {
		return nil, nil
	}
	return &KVValue{Value: v}, nil
}

func (k *memKV) Put(_ context.Context, key string, value []byte, o KVPutOptions) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key == "quota" {
		return &KVError{Code: CodeKVQuota, Message: "full"}
	}
	k.m[key] = append([]byte(nil), value...)
	k.puts = append(k.puts, o)
	return nil
}

func (k *memKV) Delete(_ context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}

func (k *memKV) List(_ context.Context, o KVListOptions) (*KVList, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := &KVList{Keys: []KVKey{}, ListComplete: true}
	for name := range k.m {
		if strings.HasPrefix(name, o.Prefix) {
			l.Keys = append(l.Keys, KVKey{Name: name})
		}
	}
	return l, nil
}

// TestWASIKV runs testdata/guests/kv.c against a fake KV: each host
// function's result codes, last_error's code, and a task without a KV.
func TestWASIKV(t *testing.T) {
	r := newRuntime(t)
	m := compile(t, r, "kv")
	kv := &memKV{m: map[string][]byte{}}
	run := func(kv KV, op, key, ttl, body string) (int, string) {
		t.Helper()
		env := map[string]string{"KV_OP": op, "KV_KEY": key}
		if ttl != "" {
			env["KV_TTL"] = ttl
		}
		task := &Task{ID: "tsk_kv", Module: m, Env: env, Limits: testLimits,
			Request: Request{Method: "POST", URL: "https://t.example/", Body: []byte(body)}}
		if kv != nil {
			task.Host.KV = kv
		}
		res := r.Run(context.Background(), task)
		if res.Outcome != OutcomeOK {
			t.Fatalf("%s %s: outcome %s: %s", op, key, res.Outcome, res.Error)
		}
		return res.Response.Status, string(res.Response.Body)
	}
	cases := []struct {
		kv                 KV
		op, key, ttl, body string
		status             int
		out                string
	}{
		{kv, "get", "a", "", "", 404, ""},
		{kv, "put", "a", "60", "hello", 204, ""},
		{kv, "get", "a", "", "", 200, "hello"},
		{kv, "incr", "n", "", "", 200, "1"},
		{kv, "incr", "n", "", "", 200, "2"},
		{kv, "put", "quota", "", "x", 409, CodeKVQuota},
		{kv, "get", "quota", "", "", 409, CodeKVQuota},
		{kv, "delete", "a", "", "", 204, ""},
		{kv, "get", "a", "", "", 404, ""},
		{nil, "get", "a", "", "", 409, CodeKVNoSession},
		{nil, "put", "a", "", "x", 409, CodeKVNoSession},
	}
	for _, c := range cases {
		st, out := run(c.kv, c.op, c.key, c.ttl, c.body)
		if st != c.status || out != c.out {
			t.Errorf("%s %s: %d %q, want %d %q", c.op, c.key, st, out, c.status, c.out)
		}
	}
	// A value bigger than the guest's first buffer (16 bytes) comes
	// whole on the second call, sized by the first.
	big := strings.Repeat("b", 50000)
	if st, _ := run(kv, "put", "big", "", big); st != 204 {
		t.Fatalf("put big: %d", st)
	}
	if st, out := run(kv, "get", "big", "", ""); st != 200 || out != big {
		t.Fatalf("get big: %d, %d bytes", st, len(out))
	}
	st, out := run(kv, "list", "", "", "")
	var l KVList
	if st != 200 || json.Unmarshal([]byte(out), &l) != nil || len(l.Keys) != 2 || !l.ListComplete {
		t.Fatalf("list: %d %s", st, out)
	}
	if kv.puts[0].TTLSeconds != 60 {
		t.Fatalf("put options: %+v", kv.puts[0])
	}
}
