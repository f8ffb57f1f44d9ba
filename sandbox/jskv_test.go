package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// jsFakeKV is a fake KV for JS workers: entries with metadata and an
// expiration, a sorted list with prefix, cursor and limit, a byte quota,
// refusals chosen by key, a binding name, and a count of calls.
type jsFakeKV struct {
	mu      sync.Mutex
	m       map[string]KVValue
	binding string
	quota   int
	calls   int
	puts    []KVPutOptions
}

func newJSFakeKV(binding string) *jsFakeKV {
	return &jsFakeKV{m: map[string]KVValue{}, binding: binding, quota: 1 << 20}
}

func (k *jsFakeKV) KVBinding() string { return k.binding }

func (k *jsFakeKV) check(key string) error {
	k.calls++
	switch {
	case key == "":
		return &KVError{Code: CodeKVInvalidKey, Message: "a key is not empty"}
	case key == "down":
		return &KVError{Code: CodeKVUnavailable, Message: "no quorum"}
	}
	return nil
}

func (k *jsFakeKV) Get(_ context.Context, key string) (*KVValue, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check(key); err != nil {
		return nil, err
	}
	v, ok := k.m[key]
	if !ok {
		return nil, nil
	}
	return &v, nil
}

func (k *jsFakeKV) Put(_ context.Context, key string, value []byte, o KVPutOptions) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check(key); err != nil {
		return err
	}
	if len(value) > k.quota {
		return &KVError{Code: CodeKVQuota, Message: "the session's quota is full"}
	}
	var exp int64
	if o.TTLSeconds > 0 {
		exp = 1_000_000 + o.TTLSeconds
	}
	k.m[key] = KVValue{Value: slices.Clone(value), Metadata: o.Metadata, Expiration: exp}
	k.puts = append(k.puts, o)
	return nil
}

func (k *jsFakeKV) Delete(_ context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.check(key); err != nil {
		return err
	}
	delete(k.m, key)
	return nil
}

func (k *jsFakeKV) List(_ context.Context, o KVListOptions) (*KVList, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	limit := o.Limit
	if limit == 0 {
		limit = 1000
	}
	if limit < 0 || limit > 1000 {
		return nil, &KVError{Code: CodeKVInvalid, Message: "limit is 1-1000"}
	}
	var names []string
	for name := range k.m {
		if strings.HasPrefix(name, o.Prefix) && name > o.Cursor {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	l := &KVList{Keys: []KVKey{}, ListComplete: true}
	for i, name := range names {
		if i == limit {
			l.ListComplete = false
			l.Cursor = l.Keys[i-1].Name
			break
		}
		v := k.m[name]
		l.Keys = append(l.Keys, KVKey{Name: name, Expiration: v.Expiration, Metadata: v.Metadata})
	}
	return l, nil
}

// jsKVWorker runs the step named by the request's path against
// env[BINDING] and answers with what it saw (or the error's message).
const jsKVWorker = `
export default {
  async fetch(request, env) {
    const kv = env[env.BINDING_NAME];
    const step = new URL(request.url).pathname.slice(1);
    try {
      switch (step) {
        case 'typeof': return new Response(typeof kv + ' ' + Object.keys(env).sort().join(','));
        case 'put': await kv.put('greeting', 'hello ✓', { expirationTtl: 60, metadata: { by: 'js' } }); return new Response('ok');
        case 'get': return new Response(String(await kv.get('greeting')));
        case 'get-text': return new Response(await kv.get('greeting', 'text'));
        case 'get-missing': return new Response(String(await kv.get('nope')));
        case 'get-meta': return Response.json(await kv.getWithMetadata('greeting'));
        case 'put-json': await kv.put('obj', JSON.stringify({ n: 1, a: [1, 2] })); return Response.json(await kv.get('obj', { type: 'json' }));
        case 'put-bytes': {
          await kv.put('bin', new Uint8Array([0, 1, 2, 255]));
          await kv.put('buf', new Uint8Array([9, 8, 7]).buffer);
          await kv.put('view', new DataView(new Uint8Array([5, 6, 7, 8]).buffer, 1, 2));
          const a = new Uint8Array(await kv.get('bin', 'arrayBuffer'));
          const b = new Uint8Array(await kv.get('buf', { type: 'arrayBuffer' }));
          const c = new Uint8Array(await kv.get('view', 'arrayBuffer'));
          return new Response([...a].join(',') + '|' + [...b].join(',') + '|' + [...c].join(','));
        }
        case 'stream': {
          await kv.put('s', new Response('streamed body').body);
          const s = await kv.get('s', 'stream');
          return new Response(s);
        }
        case 'delete': await kv.delete('greeting'); return new Response(String(await kv.get('greeting')));
        case 'list': {
          for (const k of ['user:1', 'user:2', 'user:3', 'other']) await kv.put(k, 'v');
          const p1 = await kv.list({ prefix: 'user:', limit: 2 });
          const p2 = await kv.list({ prefix: 'user:', cursor: p1.cursor });
          return Response.json({ p1, p2 });
        }
        case 'bad-ttl': await kv.put('k', 'v', { expirationTtl: -5 }); return new Response('no');
        case 'bad-type': await kv.get('k', 'xml'); return new Response('no');
        case 'bad-value': await kv.put('k', 42); return new Response('no');
        case 'bad-key': await kv.get('\ud800'); return new Response('no');
        case 'empty-key': await kv.get(''); return new Response('no');
        case 'quota': await kv.put('big', 'x'.repeat(2000)); return new Response('no');
        case 'down': await kv.put('down', 'x'); return new Response('no');
        case 'hostile': {
          // a worker that replaces built-ins does not change the binding
          Object.defineProperty(Object.prototype, 'found', { get() { return true; }, configurable: true });
          Object.defineProperty(Object.prototype, 'error', { get() { return { code: 'forged', message: 'x' }; }, configurable: true });
          JSON.parse = () => ({ error: { code: 'forged' } });
          Uint8Array.prototype.slice = () => { throw new Error('called'); };
          return new Response(String(await kv.get('nope')) + ' ' + (await kv.get('greeting')));
        }
      }
      return new Response('unknown step', { status: 400 });
    } catch (e) {
      return new Response(e.constructor.name + ': ' + e.message, { status: 500 });
    }
  },
};
`

// TestJSKV runs env.SESSION's Workers KV API against a fake KV: every
// operation, each value and result type, the refusals as thrown Errors
// with the KV's codes, the binding's name, and no binding without a KV.
func TestJSKV(t *testing.T) {
	e := testJSEngine(t)
	m := jsModule(t, e, jsKVWorker)
	run := func(kv KV, binding, step string) (int, string) {
		t.Helper()
		task := &Task{ID: "tsk_jskv", Module: m, Request: get("https://t.example/" + step), Limits: jsTestLimits,
			Env: map[string]string{"BINDING_NAME": binding}}
		if kv != nil {
			task.Host.KV = kv
		}
		res := e.run(context.Background(), task)
		if res.Outcome != OutcomeOK {
			t.Fatalf("%s: outcome %s: %s", step, res.Outcome, res.Error)
		}
		return res.Response.Status, string(res.Response.Body)
	}
	kv := newJSFakeKV("SESSION")
	kv.quota = 1000
	cases := []struct {
		step   string
		status int
		body   string
	}{
		{"typeof", 200, "object BINDING_NAME,SESSION"},
		{"get-missing", 200, "null"},
		{"put", 200, "ok"},
		{"get", 200, "hello ✓"},
		{"get-text", 200, "hello ✓"},
		{"get-meta", 200, `{"value":"hello ✓","metadata":{"by":"js"},"cacheStatus":null}`},
		{"put-json", 200, `{"n":1,"a":[1,2]}`},
		{"put-bytes", 200, "0,1,2,255|9,8,7|6,7"},
		{"stream", 200, "streamed body"},
		{"hostile", 200, "null hello ✓"},
		{"delete", 200, "null"},
		{"list", 200, `{"p1":{"keys":[{"name":"user:1"},{"name":"user:2"}],"list_complete":false,"cursor":"user:2","cacheStatus":null},` +
			`"p2":{"keys":[{"name":"user:3"}],"list_complete":true,"cacheStatus":null}}`},
		{"bad-ttl", 500, "Error: invalid_kv_ttl: "},
		{"bad-type", 500, "TypeError: Unknown response type."},
		{"bad-value", 500, "TypeError: KV put() accepts only strings"},
		{"bad-key", 500, "Error: invalid_kv_key: "},
		{"empty-key", 500, "Error: invalid_kv_key: a key is not empty"},
		{"quota", 500, "Error: kv_quota_exceeded: the session's quota is full"},
		{"down", 500, "Error: kv_unavailable: no quorum"},
	}
	for _, c := range cases {
		st, body := run(kv, "SESSION", c.step)
		if st != c.status || !strings.HasPrefix(body, c.body) || (st == 200 && body != c.body) {
			t.Errorf("%s: %d %q, want %d %q", c.step, st, body, c.status, c.body)
		}
	}
	if o := kv.puts[0]; o.TTLSeconds != 60 || string(o.Metadata) != `{"by":"js"}` {
		t.Errorf("put options: ttl %d metadata %s", o.TTLSeconds, o.Metadata)
	}
	// Refusals the prelude makes itself (a bad TTL, type, value or key)
	// reach no KV; everything else is one call each.
	calls := kv.calls

	// The profile's kv.binding names it; another name is not bound.
	other := newJSFakeKV("MEMORY")
	if _, body := run(other, "MEMORY", "typeof"); body != "object BINDING_NAME,MEMORY" {
		t.Errorf("binding MEMORY: %q", body)
	}
	if _, body := run(other, "SESSION", "typeof"); body != "undefined BINDING_NAME,MEMORY" {
		t.Errorf("binding MEMORY, env.SESSION: %q", body)
	}
	// No session, or a profile without KV (KVBinding ""): no binding.
	if _, body := run(nil, "SESSION", "typeof"); body != "undefined BINDING_NAME" {
		t.Errorf("no KV: %q", body)
	}
	if _, body := run(newJSFakeKV(""), "SESSION", "typeof"); body != "undefined BINDING_NAME" {
		t.Errorf("KV disabled: %q", body)
	}
	// A KV that is no KVBinder is bound as SESSION.
	if _, body := run(&memKV{m: map[string][]byte{}}, "SESSION", "typeof"); body != "object BINDING_NAME,SESSION" {
		t.Errorf("default binding: %q", body)
	}
	if calls != kv.calls {
		t.Errorf("typeof steps made KV calls")
	}
	// put-json 2 calls, put-bytes 6, stream 2, list 6, ...: at least one
	// call per operation the worker made that the prelude did not refuse.
	if kv.calls < 25 {
		t.Errorf("%d KV calls", kv.calls)
	}
}

// TestJSKVReplyRefusals: calls over the bounds, malformed calls and
// unknown operations are refused with a code, never passed to the KV.
func TestJSKVReplyRefusals(t *testing.T) {
	kv := newJSFakeKV("SESSION")
	st := &jsTask{t: &Task{Host: Host{KV: kv}}, ctx: context.Background()}
	cases := []struct {
		rn, vn uint32
		req    string
		code   string
	}{
		{jsMaxKVRequest + 1, 0, "", CodeKVInvalid},
		{10, jsMaxKVValue + 1, "", CodeKVTooLarge},
		{0, 0, "{", CodeKVInvalid},
		{0, 0, `{"op":"scan"}`, CodeKVInvalid},
		{0, 0, `{"op":"put","key":"k","ttl":1.5}`, CodeKVInvalid},
	}
	for _, c := range cases {
		rn := c.rn
		if rn == 0 {
			rn = uint32(len(c.req))
		}
		var rb []byte
		if c.rn == 0 {
			rb = []byte(c.req)
		}
		h := decodeJSKVReply(t, jsKVReplyTo(st, rn, c.vn, rb, nil))
		if h.Error == nil || h.Error.Code != c.code {
			t.Errorf("%q: %+v, want %s", c.req, h, c.code)
		}
	}
	if kv.calls != 0 {
		t.Errorf("%d KV calls", kv.calls)
	}
	// A task without a KV: kv_no_session.
	st.t.Host.KV = nil
	if h := decodeJSKVReply(t, jsKVReplyTo(st, 23, 0, []byte(`{"op":"get","key":"a"}`), nil)); h.Error == nil || h.Error.Code != CodeKVNoSession {
		t.Errorf("no KV: %+v", h)
	}
}

func decodeJSKVReply(t testing.TB, b []byte) *jsKVReply {
	t.Helper()
	if len(b) < 4 {
		t.Fatalf("reply of %d bytes", len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n)+4 > uint64(len(b)) {
		t.Fatalf("header of %d bytes in a reply of %d", n, len(b))
	}
	var h jsKVReply
	if err := json.Unmarshal(b[4:4+n], &h); err != nil {
		t.Fatalf("header %q: %v", b[4:4+n], err)
	}
	return &h
}

// FuzzJSKVReply: any call the engine passes yields a well-formed reply.
func FuzzJSKVReply(f *testing.F) {
	for _, s := range []string{`{"op":"get","key":"a"}`, `{"op":"put","key":"a","ttl":60,"metadata":{"x":1}}`,
		`{"op":"list","prefix":"a","limit":2}`, `{"op":"delete","key":""}`, `{"op":"x"}`, `[]`, ``} {
		f.Add([]byte(s), []byte("v"))
	}
	f.Fuzz(func(t *testing.T, req, val []byte) {
		st := &jsTask{t: &Task{Host: Host{KV: newJSFakeKV("SESSION")}}, ctx: context.Background()}
		decodeJSKVReply(t, jsKVReplyTo(st, uint32(len(req)), uint32(len(val)), req, val))
	})
}

// TestJSKVDocExample runs docs/sessions.md's JavaScript example against
// a fake KV, twice, and without a KV.
func TestJSKVDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "sessions.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "## JavaScript\n")
	_, after, ok2 := strings.Cut(after, "```js\n")
	src, _, ok3 := strings.Cut(after, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/sessions.md has no js example under ## JavaScript")
	}
	e := testJSEngine(t)
	m := jsModule(t, e, src)
	kv := newJSFakeKV("SESSION")
	run := func(kv KV) (int, string) {
		res := e.run(context.Background(), &Task{ID: "tsk_doc", Module: m, Request: get("https://t.example/"), Limits: jsTestLimits, Host: Host{KV: kv}})
		if res.Outcome != OutcomeOK {
			t.Fatalf("outcome %s: %s", res.Outcome, res.Error)
		}
		return res.Response.Status, string(res.Response.Body)
	}
	for i := 1; i <= 2; i++ {
		want := fmt.Sprintf(`{"visits":%d,"value":%d,"metadata":{"by":"js"},"keys":[{"name":"visits","expiration":1000600,"metadata":{"by":"js"}}],"list_complete":true}`, i, i)
		if st, body := run(kv); st != 200 || body != want {
			t.Fatalf("run %d: %d %s, want %s", i, st, body, want)
		}
	}
	if st, body := run(nil); st != 409 || body != "this task has no session" {
		t.Fatalf("without a KV: %d %s", st, body)
	}
}

// BenchmarkJSKVBinding: a JS hello task with one env.SESSION get and one
// put against a fake KV, against the same worker making no KV call (the
// binding's own cost: prelude, host call, reply; no node, no Raft),
// interleaved per iteration.
//
//	go test -run '^$' -bench BenchmarkJSKVBinding ./sandbox/
func BenchmarkJSKVBinding(b *testing.B) {
	e := testJSEngine(b)
	m := jsModule(b, e, `export default { async fetch(request, env) {
  if (new URL(request.url).pathname === '/kv') await env.SESSION.put('c', String(Number((await env.SESSION.get('c')) ?? 0) + 1));
  return new Response('hello');
} };`)
	kv := newJSFakeKV("SESSION")
	var d [2]time.Duration
	for n := 0; n < b.N; n++ {
		for i, path := range []string{"/", "/kv"} {
			t0 := time.Now()
			res := e.run(context.Background(), &Task{Module: m, Request: get("https://x.example" + path), Limits: jsTestLimits, Host: Host{KV: kv}})
			d[i] += time.Since(t0)
			if res.Outcome != OutcomeOK {
				b.Fatalf("%s: %s", res.Outcome, res.Error)
			}
		}
	}
	b.ReportMetric(float64(d[0].Microseconds())/float64(b.N), "µs/task_no_kv")
	b.ReportMetric(float64(d[1].Microseconds())/float64(b.N), "µs/task_get_put")
	b.ReportMetric(float64(d[1])/float64(d[0]), "get_put/no_kv")
}
