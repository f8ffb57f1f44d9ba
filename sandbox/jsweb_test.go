package sandbox

import (
	"context"
	"encoding/binary"
	"net/http"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/leash-dev/leash/weburl"
)

// TestJSWebAPIs checks the web API behaviours issue 20 fixed, each a
// worker whose body is what the standard (and workerd) gives.
func TestJSWebAPIs(t *testing.T) {
	tests := map[string]struct{ src, body string }{
		"new Headers(null) throws": {
			src:  `try { new Headers(null); return "no"; } catch (e) { return e.constructor.name; }`,
			body: "TypeError",
		},
		"Headers from a string pair throws": {
			src:  `try { new Headers(["ab"]); return "no"; } catch (e) { return e.constructor.name; }`,
			body: "TypeError",
		},
		"Headers refuse a non-ByteString": {
			src:  `try { new Headers({ a: "\u0100" }); return "no"; } catch (e) { return e.constructor.name; }`,
			body: "TypeError",
		},
		"Headers iterators are WebIDL iterators": {
			src: `const h = new Headers({ b: "2", a: "1" });
  const it = h.entries();
  const proto = Object.getPrototypeOf(it);
  return [Object.prototype.toString.call(it), Object.getPrototypeOf(proto) === Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())),
    Headers.prototype[Symbol.iterator] === Headers.prototype.entries, JSON.stringify(it.next()), typeof it[Symbol.iterator]].join(" ");`,
			body: `[object Headers Iterator] true true {"value":["a","1"],"done":false} function`,
		},
		"Headers iteration sees a change made during it": {
			src: `const h = new Headers({ a: "1", c: "3" }); const seen = [];
  for (const [k] of h) { seen.push(k); if (k === "a") h.set("b", "2"); }
  return seen.join(",");`,
			body: "a,b,c",
		},
		"Headers record takes own enumerable keys only": {
			src: `const o = Object.create({ inherited: "x" }); o.own = "1";
  Object.defineProperty(o, "hidden", { value: "2", enumerable: false });
  return [...new Headers(o).keys()].join(",");`,
			body: "own",
		},
		"URLSearchParams and FormData iterators": {
			src: `const p = new URLSearchParams("a=1&b=2"); const f = new FormData(); f.append("x", "y");
  return [Object.prototype.toString.call(p.keys()), Object.prototype.toString.call(f.entries()), [...p.values()].join("")].join(" ");`,
			body: "[object URLSearchParams Iterator] [object FormData Iterator] 12",
		},
		"passive listeners cannot cancel": {
			src: `const t = new EventTarget(); t.addEventListener("x", e => e.preventDefault(), { passive: true });
  const e = new Event("x", { cancelable: true });
  return String(t.dispatchEvent(e)) + " " + e.defaultPrevented;`,
			body: "true false",
		},
		"signal null is a TypeError": {
			src:  `try { new EventTarget().addEventListener("x", null, { signal: null }); return "no"; } catch (e) { return e.constructor.name; }`,
			body: "TypeError",
		},
		"capture listeners are apart and run first": {
			src: `const t = new EventTarget(), out = []; const f = () => out.push("f");
  t.addEventListener("x", () => out.push("bubble"));
  t.addEventListener("x", f); t.addEventListener("x", f, true);
  t.addEventListener("x", () => out.push("capture"), { capture: true });
  t.dispatchEvent(new Event("x")); t.removeEventListener("x", f, { capture: true }); t.dispatchEvent(new Event("x"));
  return out.join(",");`,
			body: "f,capture,bubble,f,capture,bubble,f",
		},
		"CustomEvent carries detail": {
			src: `const t = new EventTarget(); let got;
  t.addEventListener("x", e => { got = [e.detail.n, e instanceof Event, e.eventPhase, e.target === t].join(" "); });
  t.dispatchEvent(new CustomEvent("x", { detail: { n: 7 } }));
  return got + " " + new CustomEvent("y").detail;`,
			body: "7 true 2 true null",
		},
		"an event cannot be dispatched twice at once": {
			src: `const t = new EventTarget(), e = new Event("x"); let err;
  t.addEventListener("x", () => { try { t.dispatchEvent(e); } catch (x) { err = x.name; } });
  t.dispatchEvent(e); return err + " " + e.eventPhase + " " + (e.currentTarget === null);`,
			body: "InvalidStateError 0 true",
		},
		"AbortSignal.any validates every signal first": {
			src:  `try { AbortSignal.any([AbortSignal.abort(), 1]); return "no"; } catch (e) { return e.constructor.name; }`,
			body: "TypeError",
		},
		"TextDecoder labels are the Encoding Standard's": {
			src: `return ["  Shift_JIS\n", "csgb2312", "latin2", "unicodeFFFE", "x-user-defined", "ks_c_5601-1987", "windows-1251", "utf8"]
    .map(l => new TextDecoder(l).encoding).join(",");`,
			body: "shift_jis,gbk,iso-8859-2,utf-16be,x-user-defined,euc-kr,windows-1251,utf-8",
		},
		"TextDecoder refuses non-ASCII whitespace and the replacement encoding": {
			src: `const out = [];
  for (const l of ["\u00a0utf-8", "utf-8\u2028", "iso-2022-kr", "replacement", "utf-7"]) {
    try { new TextDecoder(l); out.push("ok"); } catch (e) { out.push(e.constructor.name); }
  }
  return out.join(",");`,
			body: "RangeError,RangeError,RangeError,RangeError,RangeError",
		},
		"TextDecoder decodes legacy encodings": {
			src: `const d = (l, b) => new TextDecoder(l).decode(new Uint8Array(b));
  return [d("shift_jis", [0x93, 0xfa, 0x96, 0x7b]), d("gbk", [0xd6, 0xd0, 0xce, 0xc4]), d("euc-kr", [0xc7, 0xd1]),
    d("windows-1251", [0xcf, 0xf0, 0xe8]), d("utf-16be", [0, 0x41, 0xd8, 0x3d, 0xde, 0x00]), d("big5", [0xa4, 0xa4])].join(" ");`,
			body: "日本 中文 한 При A😀 中",
		},
		"TextDecoder streams a legacy encoding split mid-character": {
			src: `const d = new TextDecoder("shift_jis");
  return d.decode(new Uint8Array([0x93]), { stream: true }) + "|" + d.decode(new Uint8Array([0xfa])) + "|" + d.decode(new Uint8Array([0x93]));`,
			body: "|日|\ufffd",
		},
		"TextDecoder gb18030 and GBK follow the Encoding Standard": {
			src: `const d = (l, b) => new TextDecoder(l).decode(new Uint8Array(b));
  return [d("gb18030", [0x81, 0x30, 0x81, 0x30, 0x90, 0x30, 0x81, 0x30, 0xa6, 0xd9, 0xaa, 0xa1]), d("gbk", [0xa8, 0xbc, 0x81, 0x7f]),
    d("gb18030", [0x81, 0x30, 0x81, 0x20]), d("gb18030", [0x84, 0x31, 0xa5, 0x30])].map(s => encodeURI(s)).join(" ");`,
			body: "%C2%80%F0%90%80%80%EF%B8%90%EE%80%80 %E1%B8%BF%EF%BF%BD%7F %EF%BF%BD0%EF%BF%BD%20 %EF%BF%BD",
		},
		"TextDecoder Shift_JIS, Big5 and EUC-JP follow the Encoding Standard": {
			src: `const d = (l, b) => new TextDecoder(l).decode(new Uint8Array(b));
  return [d("shift_jis", [0x82, 0x40, 0xf0, 0x40]), d("big5", [0x81, 0x40, 0x88, 0x62]), d("euc-jp", [0xa4, 0x80, 0x8f, 0xb0, 0xa1])].map(s => encodeURI(s)).join(" ");`,
			body: "%EF%BF%BD@%EE%80%80 %EF%BF%BD@%C3%8A%CC%84 %EF%BF%BD%E4%B8%82",
		},
		"TextDecoder decodes past the host's bound in calls, sequences cut between them": {
			src: `const n = 300000, b = new Uint8Array(1 + 4 * n); b[0] = 0x61;
  for (let i = 0; i < n; i++) b.set([0x81, 0x30, 0x81, 0x30], 1 + 4 * i);
  const s = new TextDecoder("gb18030", { fatal: true }).decode(b);
  let ok = s.length === n + 1 && s[0] === "a";
  for (let i = 1; ok && i < s.length; i++) ok = s.charCodeAt(i) === 0x80;
  return String(ok) + " " + s.length;`,
			body: "true 300001",
		},
		"TextDecoder keeps a legacy decoder's state across streaming calls": {
			src: `const jp = new TextDecoder("iso-2022-jp"), gb = new TextDecoder("gb18030"), out = [];
  for (const b of [[0x1b, 0x24], [0x42, 0x46], [0x7c, 0x4b, 0x5c, 0x1b], [0x28, 0x42, 0x61]]) out.push(jp.decode(new Uint8Array(b), { stream: true }));
  out.push(jp.decode());
  for (const b of [[0x81, 0x30], [0x81], [0x30, 0x81]]) out.push(gb.decode(new Uint8Array(b), { stream: true }));
  out.push(gb.decode(new Uint8Array([0x30])));
  out.push(jp.decode(new Uint8Array([0x1b, 0x28, 0x4a]), { stream: true }) + jp.decode(new Uint8Array([0x1b, 0x28, 0x42])));
  return out.map(s => encodeURI(s)).join("|");`,
			body: "||%E6%97%A5%E6%9C%AC|a||||%C2%80|%EF%BF%BD|%EF%BF%BD",
		},
		"TextDecoder and encodeInto take shared memory": {
			src: `const sab = new SharedArrayBuffer(4), v = new Uint8Array(sab);
  v.set([0xe6, 0x97, 0xa5, 0x41]);
  const d = new TextDecoder(), whole = d.decode(sab), view = d.decode(new Uint8Array(sab, 3));
  const head = d.decode(new Uint8Array(sab, 0, 2), { stream: true }); v[0] = 0; v[1] = 0;
  const tail = d.decode(new Uint8Array(sab, 2, 1));
  const out = new Uint8Array(new SharedArrayBuffer(3)), r = new TextEncoder().encodeInto("é!", out);
  let refused;
  try { new TextEncoder().encodeInto("x", new Int8Array(new SharedArrayBuffer(1))); } catch (e) { refused = e.constructor.name; }
  const ds = new TextDecoderStream(), w = ds.writable.getWriter(), wrote = w.write(new Uint8Array(new SharedArrayBuffer(1))).then(() => "ok", e => e.name);
  await ds.readable.getReader().read();
  return [whole, view, head + tail, r.read, r.written, [...out].join(","), refused, await wrote].join(" ");`,
			body: "日A A 日 2 3 195,169,33 TypeError ok",
		},
		"TextDecoder maps a single-byte encoding's C1 bytes as the standard does": {
			src: `const d = (l, b) => new TextDecoder(l, { fatal: true }).decode(new Uint8Array(b));
  let hole; try { d("iso-8859-3", [0xa5]); } catch (e) { hole = e.constructor.name; }
  return [d("iso-8859-2", [0x80, 0x9f]), d("windows-1252", [0x80, 0x81]), d("windows-1251", [0x98])].map(s => encodeURI(s)).join(" ") + " " + hole;`,
			body: "%C2%80%C2%9F %E2%82%AC%C2%81 %C2%98 TypeError",
		},
		"TextDecoder fatal legacy and UTF-16": {
			src: `const out = [];
  for (const [l, b] of [["shift_jis", [0x82]], ["utf-16le", [0x00, 0xd8]], ["utf-16be", [0x00]], ["gb18030", [0x81, 0x30]], ["iso-2022-jp", [0x1b, 0x28, 0x4a, 0x1b, 0x28, 0x42]]]) {
    try { new TextDecoder(l, { fatal: true }).decode(new Uint8Array(b)); out.push("ok"); } catch (e) { out.push(e.constructor.name); }
  }
  return out.join(",");`,
			body: "TypeError,TypeError,TypeError,TypeError,TypeError",
		},
		"URL setters follow the URL Standard": {
			src: `const u = new URL("https://a.example:8080/p?q#h");
  u.protocol = "http"; const p1 = u.href;
  u.protocol = "mailto"; const p2 = u.protocol;
  u.hostname = "b.example:99"; const h0 = u.host; u.hostname = "b.example"; const h1 = u.host;
  u.port = "80"; const port = u.port;
  u.search = "x=1 2"; const s = u.search;
  u.hash = "a b"; const hash = u.hash;
  u.pathname = "/a b/../c"; const path = u.pathname;
  const v = new URL("http://h/?a=1"); v.searchParams.append("b", "2 3"); const sp = v.href;
  v.searchParams.delete("a"); v.searchParams.delete("b"); const sp2 = v.href;
  return [p1, p2, h0, h1, port, s, hash, path, sp, sp2].join(" ");`,
			body: "http://a.example:8080/p?q#h http: a.example:8080 b.example:8080  ?x=1%202 #a%20b /c http://h/?a=1&b=2+3 http://h/",
		},
		"bodyUsed, locked and a read body": {
			src: `const r = new Response("abc"); const before = r.bodyUsed; await r.text();
  let again; try { await r.text(); } catch (e) { again = e.constructor.name; }
  const s = new Response("x"); const reader = s.body.getReader();
  let locked; try { await s.text(); } catch (e) { locked = e.constructor.name; }
  return [before, r.bodyUsed, r.body.locked, again, locked, s.bodyUsed].join(" ");`,
			body: "false true true TypeError TypeError false",
		},
		"a Headers or URLSearchParams with its own iterator converts through it": {
			src: `const h = new Headers(); h[Symbol.iterator] = function* () { yield ["t", "1"]; };
  const p = new URLSearchParams("a=1"); p[Symbol.iterator] = function* () { yield ["b", "2"]; };
  return new Headers(h).get("t") + " " + new URLSearchParams(p).toString();`,
			body: "1 b=2",
		},
		"a locked or read stream cannot be a body": {
			src: `const out = [];
  for (const f of [s => s.getReader(), s => s.getReader().read()]) {
    const s = new ReadableStream({ start(c) { c.enqueue(new Uint8Array(1)); } }); f(s);
    try { new Response(s); out.push("no"); } catch (e) { out.push(e.constructor.name); }
  }
  return out.join(",");`,
			body: "TypeError,TypeError",
		},
		"a TransformStream whose transform throws errors its readable side": {
			src: `const t = new TransformStream({ transform() { throw new RangeError("bad"); } });
  const w = t.writable.getWriter(), r = t.readable.getReader();
  const wrote = w.write("x").then(() => "ok", e => e.name);
  const read = r.read().then(() => "ok", e => e.name);
  return (await wrote) + " " + (await read);`,
			body: "RangeError RangeError",
		},
		"a null body stays unused when read": {
			src:  `const r = new Response(null); await r.text(); return String(r.bodyUsed);`,
			body: "false",
		},
		"the abort event is trusted": {
			src: `const c = new AbortController(); let t; c.signal.onabort = e => { t = e.isTrusted; }; c.abort();
  return t + " " + new Event("x").isTrusted;`,
			body: "true false",
		},
		"a TransformStream's write waits for a read (backpressure)": {
			src: `const t = new TransformStream(), w = t.writable.getWriter(), r = t.readable.getReader(), ev = [];
  const tick = () => new Promise(res => setTimeout(res, 0));
  await tick();
  const w1 = w.write("a").then(() => ev.push("w1"));
  await tick(); ev.push("paused");
  const r1 = r.read().then(x => ev.push("r1:" + x.value));
  await w1;
  const r2 = r.read().then(x => ev.push("r2:" + x.value)), r3 = r.read().then(x => ev.push("r3:" + x.value));
  const w2 = w.write("b").then(() => ev.push("w2")), w3 = w.write("c").then(() => ev.push("w3"));
  await Promise.all([r1, r2, r3, w2, w3]);
  const big = new TransformStream(undefined, undefined, { highWaterMark: 2 }).writable.getWriter();
  await big.write(1); await big.write(2);
  return ev.join(",") + " ok";`,
			body: "paused,r1:a,w1,r2:b,w2,r3:c,w3 ok",
		},
		"a TransformStream's waiting write fails when its readable side is cancelled": {
			src: `const t = new TransformStream(), w = t.writable.getWriter(), r = t.readable.getReader();
  await new Promise(res => setTimeout(res, 0));
  const wrote = w.write("a").then(() => "ok", e => e.constructor.name);
  await new Promise(res => setTimeout(res, 0));
  await r.cancel("gone");
  return await wrote;`,
			body: "TypeError",
		},
		"a body's BYOB reader fills the views it is given": {
			src: `const r = new Response("hello world").body.getReader({ mode: "byob" });
  const buf = new ArrayBuffer(8), v = new Uint8Array(buf, 2, 4);
  const a = await r.read(v);
  const b = await r.read(new Uint8Array(16));
  const end = await r.read(new Uint8Array(4));
  let notBytes, empty;
  try { new ReadableStream().getReader({ mode: "byob" }); } catch (e) { notBytes = e.constructor.name; }
  await new Response("x").body.getReader({ mode: "byob" }).read(new Uint8Array(0)).catch(e => { empty = e.constructor.name; });
  const dec = new TextDecoder();
  return [dec.decode(a.value), a.value.byteOffset, a.value.buffer.byteLength, buf.byteLength, dec.decode(b.value), end.done, end.value.byteLength, notBytes, empty].join(" ");`,
			body: "hell 2 8 0 o world true 0 TypeError TypeError",
		},
		"a byte stream's BYOB reader waits for chunks and keeps what does not fit": {
			src: `let c; const s = new ReadableStream({ type: "bytes", start(ctl) { c = ctl; } });
  const r = s.getReader({ mode: "byob" });
  const p = r.read(new Uint8Array(2));
  c.enqueue(new Uint8Array([1, 2, 3])); c.close();
  const a = await p, b = await r.read(new Uint16Array(1)).catch(e => e.constructor.name), d = await r.read(new Uint8Array(2));
  return [[...a.value].join(","), b.value ? [...new Uint8Array(b.value.buffer)].join(",") : b, d.done, String(c.byobRequest)].join(" ");`,
			body: "1,2 TypeError true null",
		},
		"TextEncoderStream and TextDecoderStream": {
			src: `const enc = new TextEncoderStream(), dec = new TextDecoderStream("utf-8");
  const out = enc.readable.pipeThrough(dec);
  const w = enc.writable.getWriter(); w.write("h\ud83d"); w.write("\ude00!"); w.close();
  let s = ""; for await (const c of out) s += c;
  return s + " " + dec.encoding;`,
			body: "h😀! utf-8",
		},
		"ArrayBuffer transfer and detached": {
			src: `const b = new ArrayBuffer(8); new Uint8Array(b)[1] = 5;
  const c = b.transfer(2); let e; try { b.transfer(); } catch (x) { e = x.constructor.name; }
  return [b.detached, b.byteLength, c.byteLength, new Uint8Array(c)[1], c.detached, e, ArrayBuffer.prototype.transfer.length].join(" ");`,
			body: "true 0 2 5 false TypeError 0",
		},
		"structuredClone transfers ArrayBuffers": {
			src: `const b = new Uint8Array([1, 2, 3]).buffer; const v = new Uint8Array(b, 1);
  const out = structuredClone({ b, v }, { transfer: [b] });
  let dup; try { structuredClone(1, { transfer: [b, b] }); } catch (x) { dup = x.name; }
  return [b.byteLength, out.b.byteLength, out.v[0], out.v.buffer === out.b, dup].join(" ");`,
			body: "0 3 2 true DataCloneError",
		},
		"Atomics on one agent": {
			src: `const a = new Int32Array(2), g = new BigInt64Array(1);
  const r = [Atomics.add(a, 0, 5), Atomics.sub(a, 0, 2), Atomics.exchange(a, 1, 7), Atomics.compareExchange(a, 1, 7, 9), Atomics.load(a, 1),
    Atomics.store(a, 0, -0), Atomics.isLockFree(4), Atomics.notify(a, 0), String(Atomics.add(g, 0, 3n)), String(g[0])];
  let e1, e2; try { Atomics.add(new Float64Array(1), 0, 1); } catch (x) { e1 = x.constructor.name; }
  try { Atomics.add(a, 2, 1); } catch (x) { e2 = x.constructor.name; }
  return r.join(" ") + " " + e1 + " " + e2;`,
			body: "0 5 0 7 9 0 true 0 0 3 TypeError RangeError",
		},
		"the ES2025 and ES2026 library built-ins (the engine's, Array.fromAsync the prelude's)": {
			src: `return [[1, 2, 3].values().filter(x => x > 1).map(x => x * 2).toArray().join(","), Iterator.from([1]).toArray().length,
    [...new Set([1, 2]).union(new Set([3]))].join(","), new Set([1]).isSubsetOf(new Set([1, 2])),
    await Promise.try(() => 4), RegExp.escape("a.b"), Math.f16round(1.337), Error.isError(new TypeError()),
    (await Array.fromAsync([Promise.resolve(1), 2])).join(","), new Uint8Array([104, 105]).toBase64(), Uint8Array.fromHex("ff")[0],
    new Map().getOrInsert("k", 1), Math.sumPrecise([0.1, 0.2]), typeof globalThis["__core-js_shared__"],
    new Headers({ a: "1" }).keys().map(k => k.toUpperCase()).toArray()[0]].join(" ");`,
			body: `4,6 1 1,2,3 true 4 \x61\.b 1.3369140625 true 1,2 aGk= 255 1 0.30000000000000004 undefined A`,
		},
		"the upstream engine's RegExp: the v flag, modifiers, duplicate named groups, Unicode 16 scripts": {
			src: `return [/[\p{L}--[a-z]]/v.test("A"), /[\p{L}--[a-z]]/v.test("a"), /^[\q{abc|d}]$/v.test("abc"), /(?i:a)b/.test("Ab"), /(?i:a)b/.test("AB"),
    /(?<y>\d{4})-\d\d|\d\d-(?<y>\d{4})/.exec("12-2025").groups.y, /\p{Script=Garay}/u.test("\u{10D40}"), /a/v.unicodeSets].join(" ");`,
			body: "true false true true false 2025 true true",
		},
		"resizable ArrayBuffer, growable SharedArrayBuffer, Float16Array": {
			src: `const b = new ArrayBuffer(2, { maxByteLength: 8 }), u = new Uint8Array(b), fixed = new Uint8Array(b, 0, 2);
  b.resize(6); const grown = u.length; b.resize(1);
  const s = new SharedArrayBuffer(1, { maxByteLength: 4 }); s.grow(3);
  return [b.resizable, grown, u.length, fixed.length, b.maxByteLength, s.growable, s.byteLength, new Float16Array([1.337])[0], Float16Array.BYTES_PER_ELEMENT,
    b.transfer(4).resizable, new ArrayBuffer(1).transferToFixedLength(2).resizable].join(" ");`,
			body: "true 6 1 0 8 true 3 1.3369140625 2 true false",
		},
		"Iterator take and drop refuse a limit above 2^53-1": {
			src: `const out = [];
  for (const f of [it => it.take(2 ** 53), it => it.drop(2 ** 53), it => it.take(Infinity), it => it.drop(NaN)]) {
    let closed = false; const it = { next() { return { done: true }; }, return() { closed = true; return {}; }, __proto__: Iterator.prototype };
    try { f(it); out.push("ok"); } catch (e) { out.push(e.name + (closed ? "+closed" : "")); }
  }
  return out.join(" ");`,
			body: "RangeError+closed RangeError+closed ok RangeError+closed",
		},
		"Array.fromAsync: async and sync iterables, array-likes, mapping, closing, this": {
			src: `async function* gen() { yield 1; yield Promise.resolve(2); }
  let closed = 0; const sync = { [Symbol.iterator]() { let i = 0; return { next: () => ({ value: i++ ? Promise.reject(new RangeError("x")) : 7, done: false }), return() { closed++; return {}; } }; } };
  let err; try { await Array.fromAsync(sync); } catch (e) { err = e.name; }
  function C() { this.made = true; }
  const c = await Array.fromAsync.call(C, { length: 2, 0: "a", 1: Promise.resolve("b") });
  let notCallable; try { await Array.fromAsync([], 1); } catch (e) { notCallable = e.name; }
  return [(await Array.fromAsync(gen())).join(","), (await Array.fromAsync([1, 2], async (x, i) => x * 10 + i)).join(","), err, closed,
    c.made, c.length, c[1], notCallable, typeof Array.fromAsync.prototype, Array.fromAsync.length].join(" ");`,
			body: "1,2 10,21 RangeError 1 true 2 b TypeError undefined 1",
		},
		"Atomics.waitAsync and notify on one agent": {
			src: `const a = new Int32Array(new SharedArrayBuffer(8));
  const w1 = Atomics.waitAsync(a, 0, 0), w2 = Atomics.waitAsync(a, 0, 0), t = Atomics.waitAsync(a, 1, 0, 5);
  const ne = Atomics.waitAsync(a, 0, 1), now = Atomics.waitAsync(a, 0, 0, 0);
  const first = Atomics.notify(a, 0, 1), rest = Atomics.notify(a, 0);
  let e1, e2; try { Atomics.waitAsync(new Int32Array(4), 0, 0); } catch (x) { e1 = x.name; }
  try { Atomics.waitAsync(new Uint8Array(new SharedArrayBuffer(4)), 0, 0); } catch (x) { e2 = x.name; }
  const r = new ArrayBuffer(4, { maxByteLength: 16 }), ia = new Int32Array(r); r.resize(8); Atomics.store(ia, 1, 3);
  return [w1.async, first, rest, await w1.value, await w2.value, await t.value, ne.async, ne.value, now.value, Atomics.notify(new Int32Array(2), 0),
    e1, e2, Atomics.load(ia, 1), typeof Atomics.waitAsync.prototype, Atomics.waitAsync.length, Atomics.notify.length].join(" ");`,
			body: "true 1 1 ok ok timed-out false not-equal timed-out 0 TypeError TypeError 3 undefined 4 3",
		},
		"a patched Object.prototype.then does not see body reads": {
			src: `let calls = 0;
  Object.prototype.then = function (res) { calls++; delete Object.prototype.then; res(this); };
  const txt = await new Response(new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode("ok")); c.close(); } })).text();
  delete Object.prototype.then;
  return txt + " " + calls;`,
			body: "ok 0",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := "export default { async fetch() { const out = await (async () => { " + tc.src + " })(); return new Response(String(out)); } };"
			res := runJS(t, src, get("https://x.example/"))
			if res.Outcome != OutcomeOK {
				t.Fatalf("outcome %s (%s); logs %v", res.Outcome, res.Error, res.Logs)
			}
			if got := string(res.Response.Body); got != tc.body {
				t.Errorf("body %q, want %q", got, tc.body)
			}
		})
	}
}

// TestJSPreludeIntrinsics: a worker that deletes or replaces the built-ins
// the prelude uses still gets its Response sent as it made it, and its
// request as the host sent it.
func TestJSPreludeIntrinsics(t *testing.T) {
	hostile := map[string]string{
		"Array.prototype.includes deleted":   `delete Array.prototype.includes;`,
		"Array.prototype.push throws":        `Array.prototype.push = () => { throw new Error("push"); };`,
		"array iterator replaced":            `Array.prototype[Symbol.iterator] = function* () { yield ["evil", "1"]; }; Object.getPrototypeOf([][Symbol.iterator]()).next = () => ({ done: true });`,
		"index accessors on Array.prototype": `for (let i = 0; i < 4; i++) Object.defineProperty(Array.prototype, i, { set() { throw new Error("setter " + i); }, get() { return "evil"; }, configurable: true });`,
		"Promise.resolve and then replaced":  `Promise.resolve = () => { throw new Error("resolve"); }; Promise.reject = Promise.resolve; const then = Promise.prototype.then; Promise.prototype.then = function (a, b) { return then.call(this, a, b); }; Promise.prototype.catch = () => { throw new Error("catch"); };`,
		// the handler's own return resolves through it, in workerd too:
		// this one steps aside then
		"Object.prototype.then":               `Object.prototype.then = function (r) { delete Object.prototype.then; r(this); };`,
		"Map and Set methods replaced":        `for (const C of [Map, Set]) for (const k of ["get", "set", "has", "delete", "add", "forEach"]) C.prototype[k] = () => { throw new Error(k); };`,
		"String methods replaced":             `for (const k of ["toLowerCase", "toUpperCase", "slice", "toWellFormed", "charCodeAt", "indexOf", "replace"]) String.prototype[k] = () => "evil";`,
		"RegExp exec and test replaced":       `RegExp.prototype.exec = () => null; RegExp.prototype.test = () => true;`,
		"JSON and toJSON replaced":            `JSON.stringify = () => "{}"; JSON.parse = () => ({}); Object.prototype.toJSON = () => "evil"; Array.prototype.toJSON = () => "evil";`,
		"typed array accessors replaced":      `const TA = Object.getPrototypeOf(Uint8Array.prototype); for (const k of ["byteLength", "byteOffset", "length", "buffer"]) Object.defineProperty(TA, k, { get() { return 0; } }); TA.set = () => {}; TA.slice = () => new Uint8Array(0); TA.subarray = TA.slice;`,
		"Object statics replaced":             `Object.keys = () => ["evil"]; Object.assign = () => ({}); Object.freeze = o => o; Reflect.apply = () => { throw new Error("apply"); };`,
		"globals replaced":                    `globalThis.Map = globalThis.Set = globalThis.Promise = globalThis.Uint8Array = function () { throw new Error("ctor"); };`,
		"Response getters redefined":          `for (const k of ["status", "headers", "body", "bodyUsed"]) Object.defineProperty(Response.prototype, k, { get() { throw new Error(k); } }); Headers.prototype.has = Headers.prototype.set = () => { throw new Error("headers"); };`,
		"Object.prototype dictionary members": `Object.prototype.status = 500; Object.prototype.body = "evil"; Object.prototype.headers = { evil: "1" }; Object.prototype.method = "POST"; Object.prototype.env = { evil: 1 };`,
	}
	for name, patch := range hostile {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// the patch runs first in the handler: reading the request and
			// sending the response must not care
			src := `export default { async fetch(req) {
  ` + patch + `
  const body = await req.text();
  const info = req.method + " " + req.headers.get("x-a") + " " + body;
  const h = new Headers(); h.append("x-b", "2");
  return new Response(info, { status: 201, headers: h });
} };`
			req := Request{Method: "POST", URL: "https://x.example/p", Headers: http.Header{"X-A": {"1"}}, Body: []byte("hi")}
			res := runJS(t, src, req)
			if res.Outcome != OutcomeOK {
				t.Fatalf("outcome %s (%s); logs %v", res.Outcome, res.Error, res.Logs)
			}
			if got := string(res.Response.Body); got != "POST 1 hi" {
				t.Errorf("body %q, want %q", got, "POST 1 hi")
			}
			if res.Response.Status != 201 {
				t.Errorf("status %d, want 201", res.Response.Status)
			}
			var ct, xb string
			for k, v := range res.Response.Headers {
				switch strings.ToLower(k) {
				case "content-type":
					ct = strings.Join(v, ",")
				case "x-b":
					xb = strings.Join(v, ",")
				}
			}
			if ct != "text/plain;charset=UTF-8" || xb != "2" {
				t.Errorf("headers %v, want content-type text/plain;charset=UTF-8 and x-b 2", res.Response.Headers)
			}
		})
	}
}

func TestEncodingFor(t *testing.T) {
	tests := map[string]string{
		"utf-8": "utf-8", " \tUTF8\n\f\r": "utf-8", "Shift_JIS": "shift_jis", "latin1": "windows-1252",
		"ascii": "windows-1252", "ISO-8859-8-I": "iso-8859-8-i", "x-mac-cyrillic": "x-mac-cyrillic",
		"gb_2312": "gbk", "utf-16": "utf-16le", "unicodefffe": "utf-16be", "x-user-defined": "x-user-defined",
		// refused: not a label, the replacement encoding, whitespace that
		// is not ASCII's, case folding that is not ASCII's
		"": "", "utf-7": "", "iso-2022-kr": "", "replacement": "", "\u00a0utf-8": "", "utf-8\u3000": "",
		"\u212aoi8-r": "", "utf\x00-8": "",
	}
	for label, want := range tests {
		got, ok := encodingFor(label)
		if !ok {
			got = ""
		}
		if got != want {
			t.Errorf("encodingFor(%q) = %q, want %q", label, got, want)
		}
	}
}

// TestJSDecode: the decode host call over a real engine's memory consumes
// every byte, returns the state for the next call and refuses a state no
// decoder makes, an encoding the host does not decode and input over
// jsMaxDecode.
func TestJSDecode(t *testing.T) {
	tests := map[string]struct {
		label string
		in    []byte
		flags uint32
		want  int32 // the reply length, or the error
		state uint32
		text  string
	}{
		"gb18030, streaming":     {"gb18030", []byte{'a', 0x81, 0x30}, decodeStream, 5, 0x3081, "a"},
		"gb18030 carries on":     {"gb18030", []byte{0x81, 0x30}, 0x3081 << decodeStateShift, 6, 0, "\u0080"},
		"EUC-KR":                 {"euc-kr", []byte{0xc7, 0xd1}, 0, 7, 0, "한"},
		"a fatal error":          {"shift_jis", []byte{0x82}, decodeFatal, -1, 0, ""},
		"a state none makes":     {"gb18030", nil, 0xff << decodeStateShift, -1, 0, ""},
		"UTF-8 is the prelude's": {"utf-8", []byte("a"), 0, -1, 0, ""},
		"over the bound":         {"gb18030", make([]byte, jsMaxDecode+1), 0, -2, 0, ""},
		"the name only":          {" Latin1 ", nil, decodeNameOnly, int32(len("windows-1252")), 0, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reply, r := callDecode(t, tc.label, tc.in, tc.flags)
			if r != tc.want {
				t.Fatalf("returned %d, want %d", r, tc.want)
			}
			if r < 0 || tc.flags&decodeNameOnly != 0 {
				return
			}
			if st := binary.LittleEndian.Uint32(reply); st != tc.state || string(reply[4:]) != tc.text {
				t.Errorf("state %#x text %+q, want %#x %+q", st, reply[4:], tc.state, tc.text)
			}
		})
	}
}

// callDecode runs jsDecode as the engine would, on a real module's memory.
func callDecode(t testing.TB, label string, in []byte, flags uint32) ([]byte, int32) {
	t.Helper()
	mod, err := decodeMemory()
	if err != nil {
		t.Fatal(err)
	}
	decodeMu.Lock()
	defer decodeMu.Unlock()
	mem := mod.Memory()
	if !mem.Write(0, []byte(label)) || !mem.Write(uint32(len(label)), in) {
		t.Fatalf("%d bytes do not fit", len(label)+len(in))
	}
	st := &jsTask{}
	stack := []uint64{0, uint64(len(label)), uint64(len(label)), uint64(len(in)), uint64(flags)}
	jsDecode(context.WithValue(context.Background(), jsTaskKey{}, st), mod, stack)
	return st.reply, api.DecodeI32(stack[0])
}

// decodeMemory is one module with 2 MiB of memory for callDecode, shared
// by the tests of the package (decodeMu serializes its use).
var (
	decodeMu     sync.Mutex
	decodeMemory = sync.OnceValues(func() (api.Module, error) {
		ctx := context.Background()
		return wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter()).Instantiate(ctx, memoryModule(32))
	})
)

// memoryModule is a wasm module exporting one memory of pages pages.
func memoryModule(pages int) []byte {
	return []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		5, 3, 1, 0, byte(pages), // memory section: one memory, min pages
		7, 10, 1, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0, // export "memory"
	}
}

func TestURLSet(t *testing.T) {
	tests := map[string]struct {
		href  string
		which uint32
		value string
		want  string
	}{
		"protocol special to special": {"https://a.example/", 0, "http", "http://a.example/"},
		"protocol special to not":     {"https://a.example/", 0, "foo", "https://a.example/"},
		"username":                    {"https://a.example/", 1, "us er", "https://us%20er@a.example/"},
		"host with port":              {"https://a.example/", 3, "b.example:81", "https://b.example:81/"},
		"hostname with a colon":       {"https://a.example/", 4, "b.example:81", "https://a.example/"},
		"default port goes":           {"https://a.example:8443/", 5, "443", "https://a.example/"},
		"pathname":                    {"https://a.example/", 6, "/x y/../z", "https://a.example/z"},
		"search":                      {"https://a.example/?a", 7, "#b c", "https://a.example/?%23b%20c"},
		"empty search":                {"https://a.example/?a#h", 7, "", "https://a.example/#h"},
		"hash":                        {"https://a.example/", 8, "x y", "https://a.example/#x%20y"},
		"opaque path spaces go":       {"data:space   #h", 8, "", "data:space"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u, err := urlSet(tc.href, tc.which, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if u.Href != tc.want {
				t.Errorf("href %q, want %q", u.Href, tc.want)
			}
		})
	}
	if _, err := urlSet("https://a.example/", uint32(len(jsURLSetters)), "x"); err == nil {
		t.Error("an unknown attribute was accepted")
	}
}

func FuzzJSDecode(f *testing.F) {
	f.Add("shift_jis", []byte{0x93, 0xfa, 0x96}, uint32(decodeStream))
	f.Add("iso-2022-jp", []byte("\x1b$B$\"\x1b(B"), uint32(0))
	f.Add("gb18030", []byte{0x84, 0x31, 0xa4, 0x37}, uint32(0x3081<<decodeStateShift|decodeFatal))
	f.Fuzz(func(t *testing.T, label string, in []byte, flags uint32) {
		if len(in) > 1<<16 || len(label) > 64 {
			return
		}
		reply, r := callDecode(t, label, in, flags)
		if r < 0 || flags&decodeNameOnly != 0 {
			return
		}
		if int(r) != len(reply) || len(reply) < 4 || !utf8.Valid(reply[4:]) {
			t.Fatalf("reply of %d bytes (returned %d), valid %v", len(reply), r, utf8.Valid(reply[4:]))
		}
		if flags&decodeStream == 0 && binary.LittleEndian.Uint32(reply) != 0 {
			t.Fatalf("a final call left state %#x", binary.LittleEndian.Uint32(reply))
		}
	})
}

func FuzzURLSet(f *testing.F) {
	f.Add("https://a.example/p?q#h", uint8(3), "b.example:1")
	f.Add("data:x #y", uint8(8), "")
	f.Fuzz(func(t *testing.T, href string, which uint8, value string) {
		u, err := urlSet(href, uint32(which), value)
		if err != nil {
			return
		}
		// what a setter produced parses again to the same URL
		again, err := weburl.Parse(u.Href, "")
		if err != nil || again.Href != u.Href {
			t.Fatalf("setter result %q does not parse to itself: %v", u.Href, err)
		}
	})
}
