/*
 * leash JS engine shim: QuickJS embedded in a wasm32-wasi reactor.
 *
 * The host (sandbox/js.go) drives everything. ABI version 1:
 *
 * Exports (called by the host):
 *   leash_abi() -> i32                      the ABI version (1)
 *   leash_init() -> i32                     create the runtime and context,
 *                                           run the prelude; called once,
 *                                           before the snapshot is taken
 *   leash_alloc(n) -> ptr, leash_free(ptr)  guest buffers for the host
 *   leash_begin(seed i64, mem_limit i32, stack_size i32)
 *                                           per task: reseed Math.random,
 *                                           set QuickJS's memory and stack
 *                                           limits
 *   leash_load(ptr, len, flags) -> i32      compile (flags&1: read
 *                                           bytecode; flags&2: also hand
 *                                           the bytecode to the host;
 *                                           flags&4: compile only) and
 *                                           evaluate the worker module;
 *                                           0 ok, else the error went to
 *                                           leash.error
 *   leash_dispatch(meta, mlen, body, blen) -> i64
 *                                           call the default export's
 *                                           fetch, then as leash_poll
 *   leash_deliver(id, ok, meta, mlen, body, blen) -> i64
 *                                           settle the fetch promise id,
 *                                           then as leash_poll
 *   leash_poll() -> i64                     run jobs and due timers; returns
 *                                           (waitUntil count << 32) | ms to
 *                                           the next timer (0xffffffff:
 *                                           none), or -1 when stopped
 *
 * Imports (module "leash", implemented by the host):
 *   interrupt() -> i32                      nonzero: stop (CPU/wall/...)
 *   oom()                                   memory exhausted
 *   now() -> f64                            ms since the epoch
 *   random(ptr, len)                        fill with random bytes
 *   log(level, ptr, len)                    one console line
 *   digest(alg, ptr, len, out) -> i32       hash; length written or -1
 *   url_parse(in, ilen, base, blen) -> i32  reply length (JSON of the
 *                                           parts), or -(length) of an
 *                                           error message reply; blen
 *                                           0xffffffff: no base
 *   reply(dst)                              copy the pending reply
 *   url_set(href, hlen, which, v, vlen) -> i32  a URL setter: reply length
 *                                           (JSON of the parts) or -1
 *   decode(label, llen, in, ilen, flags) -> i32  WHATWG label lookup (flags
 *                                           4: reply is the name) or legacy
 *                                           decode (1 fatal, 2 stream, bits
 *                                           8-31 the decoder's state; reply
 *                                           is 4 bytes of the next state,
 *                                           then UTF-8; all input consumed);
 *                                           -1 unknown/invalid, -2 too large
 *   fetch(meta, mlen, body, blen) -> i32    start a subrequest; its id
 *   respond(meta, mlen, body, blen) -> i32  the response; nonzero: refused
 *   error(code, clen, msg, mlen)            the worker failed
 *   bytecode(ptr, len)                      compiled worker, for the cache
 *   kv(req, rlen, val, vlen) -> i32         one session KV call (req: JSON of
 *                                           the operation; val: a put's
 *                                           value): reply length (4 bytes
 *                                           of the JSON header's length,
 *                                           little-endian, the header, then
 *                                           a got value's bytes), or -1
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <stdio.h>

#include "quickjs.h"

#define IMPORT(n) __attribute__((import_module("leash"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

IMPORT("interrupt") int32_t host_interrupt(void);
IMPORT("oom") void host_oom(void);
IMPORT("now") double host_now(void);
IMPORT("random") void host_random(uint8_t *p, uint32_t n);
IMPORT("log") void host_log(int32_t level, const char *p, uint32_t n);
IMPORT("digest") int32_t host_digest(int32_t alg, const uint8_t *p, uint32_t n, uint8_t *out);
IMPORT("url_parse") int32_t host_url_parse(const char *in, uint32_t n, const char *base, uint32_t bn);
IMPORT("reply") void host_reply(uint8_t *dst);
IMPORT("url_set") int32_t host_url_set(const char *href, uint32_t hn, int32_t which, const char *v, uint32_t vn);
IMPORT("decode") int32_t host_decode(const char *label, uint32_t ln, const uint8_t *in, uint32_t n, int32_t flags);
IMPORT("fetch") int32_t host_fetch(const char *meta, uint32_t mn, const uint8_t *body, uint32_t bn);
IMPORT("respond") int32_t host_respond(const char *meta, uint32_t mn, const uint8_t *body, uint32_t bn);
IMPORT("error") void host_error(const char *code, uint32_t cn, const char *msg, uint32_t mn);
IMPORT("bytecode") void host_bytecode(const uint8_t *p, uint32_t n);
IMPORT("kv") int32_t host_kv(const char *req, uint32_t rn, const uint8_t *val, uint32_t vn);

#define ABI_VERSION 1
#define MALLOC_OVERHEAD 8

extern char leash_prelude[];
extern const uint32_t leash_prelude_len;
extern char leash_polyfills[]; /* engine/polyfill: core-js */
extern const uint32_t leash_polyfills_len;

static JSRuntime *rt;
static JSContext *ctx;
static JSValue hooks;     /* what the prelude returned */
static JSValue h_dispatch, h_deliver, h_tick, h_worker;
static JSValue h_report = JS_UNDEFINED;
static JSValue h_rejected = JS_UNDEFINED;
static int oom_seen;
static JSMallocState *mstate; /* the runtime's, seen by lm_malloc */

/* ---- memory: QuickJS's limit, and any failure, end the task as
 * terminated:memory through leash.oom ---- */

static void note_oom(void)
{
    if (!oom_seen) {
        oom_seen = 1;
        host_oom();
    }
}

static void *lm_malloc(JSMallocState *s, size_t size)
{
    void *p;
    mstate = s;
    if (s->malloc_size + size + MALLOC_OVERHEAD > s->malloc_limit) {
        note_oom();
        return NULL;
    }
    p = malloc(size);
    if (!p) {
        note_oom();
        return NULL;
    }
    s->malloc_count++;
    s->malloc_size += malloc_usable_size(p) + MALLOC_OVERHEAD;
    return p;
}

static void lm_free(JSMallocState *s, void *p)
{
    if (!p)
        return;
    s->malloc_count--;
    s->malloc_size -= malloc_usable_size(p) + MALLOC_OVERHEAD;
    free(p);
}

static void *lm_realloc(JSMallocState *s, void *p, size_t size)
{
    size_t old;
    void *q;
    if (!p)
        return size ? lm_malloc(s, size) : NULL;
    old = malloc_usable_size(p);
    if (size == 0) {
        lm_free(s, p);
        return NULL;
    }
    if (size > old && s->malloc_size + (size - old) > s->malloc_limit) {
        note_oom();
        return NULL;
    }
    q = realloc(p, size);
    if (!q) {
        note_oom();
        return NULL;
    }
    s->malloc_size += malloc_usable_size(q) - old;
    return q;
}

static size_t lm_usable(const void *p)
{
    return malloc_usable_size((void *)p);
}

static const JSMallocFunctions mallocs = {
    lm_malloc, lm_free, lm_realloc, lm_usable,
};

static int on_interrupt(JSRuntime *r, void *opaque)
{
    (void)r;
    (void)opaque;
    return oom_seen || host_interrupt();
}

/* ---- helpers ---- */

/* bytes of an ArrayBuffer or ArrayBuffer view, NULL with *len 0 when v is
 * undefined/null. Returns -1 (with an exception) for other values. */
static int get_bytes(JSContext *c, JSValueConst v, uint8_t **p, size_t *len)
{
    size_t off, n, el;
    JSValue buf;
    uint8_t *b;

    *p = NULL;
    *len = 0;
    if (JS_IsUndefined(v) || JS_IsNull(v))
        return 0;
    b = JS_GetArrayBuffer(c, &n, v);
    if (b) {
        *p = b;
        *len = n;
        return 0;
    }
    JS_FreeValue(c, JS_GetException(c));
    buf = JS_GetTypedArrayBuffer(c, v, &off, &n, &el);
    if (JS_IsException(buf))
        return -1;
    b = JS_GetArrayBuffer(c, &el, buf);
    JS_FreeValue(c, buf);
    if (!b)
        return -1;
    *p = b + off;
    *len = n;
    return 0;
}

/* the error text the host shows: "Name: message" and the stack */
static void report_exception(const char *code)
{
    JSValue e = JS_GetException(ctx);
    JSValue r;
    const char *s;
    size_t n;

    if (oom_seen) {
        JS_FreeValue(ctx, e);
        return;
    }
    if (JS_IsUndefined(h_report)) {
        /* before the prelude ran: the error's text and its stack */
        JSValue st = JS_GetPropertyStr(ctx, e, "stack");
        const char *m = JS_ToCString(ctx, e), *t = JS_ToCString(ctx, st);
        char buf[1024];
        n = snprintf(buf, sizeof(buf), "%s\n%s", m ? m : "exception", t ? t : "");
        if (m)
            JS_FreeCString(ctx, m);
        if (t)
            JS_FreeCString(ctx, t);
        JS_FreeValue(ctx, st);
        JS_FreeValue(ctx, e);
        host_error(code, strlen(code), buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
        return;
    }
    r = JS_Call(ctx, h_report, JS_UNDEFINED, 1, (JSValueConst *)&e);
    JS_FreeValue(ctx, e);
    if (JS_IsException(r)) {
        JS_FreeValue(ctx, JS_GetException(ctx));
        host_error(code, strlen(code), "exception", 9);
        return;
    }
    s = JS_ToCStringLen(ctx, &n, r);
    JS_FreeValue(ctx, r);
    if (!s) {
        JS_FreeValue(ctx, JS_GetException(ctx));
        host_error(code, strlen(code), "exception", 9);
        return;
    }
    host_error(code, strlen(code), s, n);
    JS_FreeCString(ctx, s);
}

/* ---- natives the prelude uses (on the host object it receives; never
 * global) ---- */

static JSValue n_log(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    int32_t level;
    size_t n;
    const char *s;
    if (JS_ToInt32(c, &level, argv[0]))
        return JS_EXCEPTION;
    s = JS_ToCStringLen(c, &n, argv[1]);
    if (!s)
        return JS_EXCEPTION;
    host_log(level, s, n);
    JS_FreeCString(c, s);
    return JS_UNDEFINED;
}

static JSValue n_now(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    return JS_NewFloat64(c, host_now());
}

static JSValue n_random(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    uint8_t *p;
    size_t n;
    if (get_bytes(c, argv[0], &p, &n))
        return JS_EXCEPTION;
    if (n)
        host_random(p, n);
    return JS_UNDEFINED;
}

static JSValue n_digest(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    int32_t alg, n;
    uint8_t *p, out[64];
    size_t len;
    if (JS_ToInt32(c, &alg, argv[0]) || get_bytes(c, argv[1], &p, &len))
        return JS_EXCEPTION;
    n = host_digest(alg, p, len, out);
    if (n < 0)
        return JS_ThrowTypeError(c, "unsupported digest");
    return JS_NewArrayBufferCopy(c, out, n);
}

/* the host's pending reply as a string */
static JSValue take_reply(JSContext *c, int32_t n)
{
    uint8_t *buf;
    JSValue s;
    buf = malloc(n ? n : 1);
    if (!buf) {
        note_oom();
        return JS_ThrowOutOfMemory(c);
    }
    host_reply(buf);
    s = JS_NewStringLen(c, (const char *)buf, n);
    free(buf);
    return s;
}

/* urlParse(input, base) -> JSON string of the parts, or null when invalid */
static JSValue n_url_parse(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    const char *in, *base = NULL;
    size_t n, bn = 0;
    int32_t r;
    JSValue s;
    in = JS_ToCStringLen(c, &n, argv[0]);
    if (!in)
        return JS_EXCEPTION;
    if (!JS_IsUndefined(argv[1])) {
        base = JS_ToCStringLen(c, &bn, argv[1]);
        if (!base) {
            JS_FreeCString(c, in);
            return JS_EXCEPTION;
        }
    }
    r = host_url_parse(in, n, base ? base : "", base ? (uint32_t)bn : 0xffffffffu);
    JS_FreeCString(c, in);
    if (base)
        JS_FreeCString(c, base);
    if (r < 0) {
        s = take_reply(c, -r);
        JS_FreeValue(c, s);
        return JS_NULL;
    }
    return take_reply(c, r);
}

/* urlSet(href, which, value) -> JSON string of the parts, or null */
static JSValue n_url_set(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    const char *href, *v;
    size_t hn, vn;
    int32_t which, r;
    if (JS_ToInt32(c, &which, argv[1]))
        return JS_EXCEPTION;
    href = JS_ToCStringLen(c, &hn, argv[0]);
    if (!href)
        return JS_EXCEPTION;
    v = JS_ToCStringLen(c, &vn, argv[2]);
    if (!v) {
        JS_FreeCString(c, href);
        return JS_EXCEPTION;
    }
    r = host_url_set(href, hn, which, v, vn);
    JS_FreeCString(c, href);
    JS_FreeCString(c, v);
    if (r < 0)
        return JS_NULL;
    return take_reply(c, r);
}

/* decode(label, bytes, flags) -> the encoding's name (flags 4), or
 * [text, state]; null for an unknown label, a bad state or (fatal)
 * invalid input */
static JSValue n_decode(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    const char *label;
    size_t ln, n;
    uint8_t *p, *buf;
    int32_t flags, r;
    uint32_t state;
    JSValue arr, s;
    if (JS_ToInt32(c, &flags, argv[2]) || get_bytes(c, argv[1], &p, &n))
        return JS_EXCEPTION;
    label = JS_ToCStringLen(c, &ln, argv[0]);
    if (!label)
        return JS_EXCEPTION;
    r = host_decode(label, ln, p, n, flags);
    JS_FreeCString(c, label);
    if (r == -2)
        return JS_ThrowRangeError(c, "input too large to decode in one call");
    if (r < 0)
        return JS_NULL;
    if (flags & 4)
        return take_reply(c, r);
    buf = malloc(r ? r : 1);
    if (!buf) {
        note_oom();
        return JS_ThrowOutOfMemory(c);
    }
    host_reply(buf);
    if (r < 4) {
        free(buf);
        return JS_NULL;
    }
    state = (uint32_t)buf[0] | ((uint32_t)buf[1] << 8) | ((uint32_t)buf[2] << 16) | ((uint32_t)buf[3] << 24);
    s = JS_NewStringLen(c, (const char *)buf + 4, r - 4);
    free(buf);
    if (JS_IsException(s))
        return s;
    arr = JS_NewArray(c);
    if (JS_IsException(arr)) {
        JS_FreeValue(c, s);
        return arr;
    }
    JS_DefinePropertyValueUint32(c, arr, 0, s, JS_PROP_C_W_E);
    JS_DefinePropertyValueUint32(c, arr, 1, JS_NewUint32(c, state), JS_PROP_C_W_E);
    return arr;
}

/* kv(request, value) -> the reply as an ArrayBuffer (the prelude reads
 * its header); throws for a call the host could not read */
static JSValue n_kv(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    const char *req;
    size_t rn, vn;
    uint8_t *v, *buf;
    int32_t r;
    JSValue out;
    if (get_bytes(c, argv[1], &v, &vn))
        return JS_EXCEPTION;
    req = JS_ToCStringLen(c, &rn, argv[0]);
    if (!req)
        return JS_EXCEPTION;
    r = host_kv(req, rn, v ? v : (const uint8_t *)"", vn);
    JS_FreeCString(c, req);
    if (r < 0)
        return JS_ThrowTypeError(c, "invalid_kv_argument: the KV call could not be read");
    buf = malloc(r ? r : 1);
    if (!buf) {
        note_oom();
        return JS_ThrowOutOfMemory(c);
    }
    host_reply(buf);
    out = JS_NewArrayBufferCopy(c, buf, r);
    free(buf);
    return out;
}

static JSValue n_fetch(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    const char *meta;
    size_t mn, bn;
    uint8_t *body;
    int32_t id;
    if (get_bytes(c, argv[1], &body, &bn))
        return JS_EXCEPTION;
    meta = JS_ToCStringLen(c, &mn, argv[0]);
    if (!meta)
        return JS_EXCEPTION;
    id = host_fetch(meta, mn, body, bn);
    JS_FreeCString(c, meta);
    return JS_NewInt32(c, id);
}

static JSValue n_respond(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    const char *meta;
    size_t mn, bn;
    uint8_t *body;
    int32_t r;
    if (get_bytes(c, argv[1], &body, &bn))
        return JS_EXCEPTION;
    meta = JS_ToCStringLen(c, &mn, argv[0]);
    if (!meta)
        return JS_EXCEPTION;
    r = host_respond(meta, mn, body, bn);
    JS_FreeCString(c, meta);
    return JS_NewInt32(c, r);
}

static JSValue n_fail(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    const char *code, *msg;
    size_t cn, mn;
    code = JS_ToCStringLen(c, &cn, argv[0]);
    if (!code)
        return JS_EXCEPTION;
    msg = JS_ToCStringLen(c, &mn, argv[1]);
    if (!msg) {
        JS_FreeCString(c, code);
        return JS_EXCEPTION;
    }
    host_error(code, cn, msg, mn);
    JS_FreeCString(c, code);
    JS_FreeCString(c, msg);
    return JS_UNDEFINED;
}

/* utf8Encode(wellFormedString) -> ArrayBuffer */
static JSValue n_utf8_encode(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    size_t n;
    const char *s = JS_ToCStringLen(c, &n, argv[0]);
    JSValue r;
    if (!s)
        return JS_EXCEPTION;
    r = JS_NewArrayBufferCopy(c, (const uint8_t *)s, n);
    JS_FreeCString(c, s);
    return r;
}

/* WHATWG UTF-8 decode: each maximal invalid subpart becomes U+FFFD. Writes
 * valid UTF-8 to out (capacity 3*n suffices) and returns its length, or -1
 * at the first error when fatal. */
static long utf8_sanitize(const uint8_t *p, size_t n, uint8_t *out, int fatal)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t b = p[i];
        uint32_t need, lo = 0x80, hi = 0xbf, k;
        if (b < 0x80) {
            out[o++] = b;
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf) {
            need = 1;
        } else if (b >= 0xe0 && b <= 0xef) {
            need = 2;
            if (b == 0xe0)
                lo = 0xa0;
            if (b == 0xed)
                hi = 0x9f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            need = 3;
            if (b == 0xf0)
                lo = 0x90;
            if (b == 0xf4)
                hi = 0x8f;
        } else {
            goto bad1;
        }
        for (k = 1; k <= need; k++) {
            if (i + k >= n || p[i + k] < lo || p[i + k] > hi) {
                if (fatal)
                    return -1;
                out[o++] = 0xef;
                out[o++] = 0xbf;
                out[o++] = 0xbd;
                i += k;
                goto next;
            }
            lo = 0x80;
            hi = 0xbf;
        }
        memcpy(out + o, p + i, need + 1);
        o += need + 1;
        i += need + 1;
        continue;
    bad1:
        if (fatal)
            return -1;
        out[o++] = 0xef;
        out[o++] = 0xbf;
        out[o++] = 0xbd;
        i++;
    next:;
    }
    return (long)o;
}

/* utf8Decode(bytes, fatal) -> string, or null when fatal and invalid */
static JSValue n_utf8_decode(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    uint8_t *p, *out;
    size_t n;
    long m;
    JSValue r;
    int fatal = JS_ToBool(c, argv[1]);
    if (get_bytes(c, argv[0], &p, &n))
        return JS_EXCEPTION;
    out = malloc(n * 3 + 1);
    if (!out) {
        note_oom();
        return JS_ThrowOutOfMemory(c);
    }
    m = utf8_sanitize(p, n, out, fatal);
    if (m < 0) {
        free(out);
        return JS_NULL;
    }
    r = JS_NewStringLen(c, (const char *)out, m);
    free(out);
    return r;
}

/* detach(arrayBuffer): detach it (ArrayBuffer.prototype.transfer,
 * structuredClone's transfer); a TypeError for anything else */
static JSValue n_detach(JSContext *c, JSValueConst this, int argc, JSValueConst *argv)
{
    size_t n;
    if (!JS_GetArrayBuffer(c, &n, argv[0]))
        return JS_EXCEPTION;
    JS_DetachArrayBuffer(c, argv[0]);
    return JS_UNDEFINED;
}

static const JSCFunctionListEntry host_funcs[] = {
    JS_CFUNC_DEF("log", 2, n_log),
    JS_CFUNC_DEF("now", 0, n_now),
    JS_CFUNC_DEF("random", 1, n_random),
    JS_CFUNC_DEF("digest", 2, n_digest),
    JS_CFUNC_DEF("urlParse", 2, n_url_parse),
    JS_CFUNC_DEF("urlSet", 3, n_url_set),
    JS_CFUNC_DEF("decode", 3, n_decode),
    JS_CFUNC_DEF("detach", 1, n_detach),
    JS_CFUNC_DEF("fetch", 2, n_fetch),
    JS_CFUNC_DEF("kv", 2, n_kv),
    JS_CFUNC_DEF("respond", 2, n_respond),
    JS_CFUNC_DEF("fail", 2, n_fail),
    JS_CFUNC_DEF("utf8Encode", 1, n_utf8_encode),
    JS_CFUNC_DEF("utf8Decode", 2, n_utf8_decode),
};

/* No module may be imported: there is no std, no os, no file system. */
static JSModuleDef *no_modules(JSContext *c, const char *name, void *opaque)
{
    JS_ThrowReferenceError(c, "No such module \"%s\"", name);
    return NULL;
}

/* the prelude's rejected(promise, reason, handled) keeps unhandled
 * rejections and logs those still unhandled after the jobs ran, as V8 does */
static void on_rejection(JSContext *c, JSValueConst promise, JSValueConst reason,
                         JS_BOOL is_handled, void *opaque)
{
    JSValue r;
    if (oom_seen || JS_IsUndefined(h_rejected))
        return;
    r = JS_Call(c, h_rejected, JS_UNDEFINED, 3,
                (JSValueConst[]){promise, reason, JS_NewBool(c, is_handled)});
    if (JS_IsException(r))
        JS_FreeValue(c, JS_GetException(c));
    JS_FreeValue(c, r);
}

/* ---- exports ---- */

EXPORT("leash_abi") int32_t leash_abi(void)
{
    return ABI_VERSION;
}

EXPORT("leash_alloc") void *leash_alloc(uint32_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        note_oom();
    return p;
}

EXPORT("leash_free") void leash_free(void *p)
{
    free(p);
}

EXPORT("leash_init") int32_t leash_init(void)
{
    JSValue host, fn, r;

    rt = JS_NewRuntime2(&mallocs, NULL);
    if (!rt)
        return 1;
    /* the shadow stack is the first 1 MiB of memory (--stack-first): the
     * limit must stay below its top. leash_begin sets the task's. */
    JS_SetMaxStackSize(rt, 512 * 1024);
    JS_SetInterruptHandler(rt, on_interrupt, NULL);
    JS_SetModuleLoaderFunc(rt, NULL, no_modules, NULL);
    JS_SetHostPromiseRejectionTracker(rt, on_rejection, NULL);
    ctx = JS_NewContext(rt);
    if (!ctx)
        return 2;
    host = JS_NewObject(ctx);
    JS_SetPropertyFunctionList(ctx, host, host_funcs,
                               sizeof(host_funcs) / sizeof(host_funcs[0]));
    /* the prelude's functions keep no copy of their source (each nested
     * function would hold its own slice of the prelude's text in every
     * snapshot); their toString is "[native code]", as built-ins' are.
     * Line numbers stay, for stacks. A worker's functions keep theirs. */
    JS_SetStripInfo(rt, JS_STRIP_SOURCE);
    /* first the built-ins core-js gives (engine/polyfill), so that the
     * prelude captures them like the engine's own */
    r = JS_Eval(ctx, leash_polyfills, leash_polyfills_len, "polyfills.js", JS_EVAL_TYPE_GLOBAL);
    if (JS_IsException(r)) {
        JS_SetStripInfo(rt, 0);
        JS_FreeValue(ctx, host);
        report_exception("polyfills");
        return 5;
    }
    JS_FreeValue(ctx, r);
    fn = JS_Eval(ctx, leash_prelude, leash_prelude_len, "prelude.js",
                 JS_EVAL_TYPE_GLOBAL | JS_EVAL_FLAG_STRICT);
    JS_SetStripInfo(rt, 0);
    /* nothing refers to the sources once compiled (no source is kept):
     * cleared, their pages are zero in the snapshot, which instances
     * neither copy nor touch */
    memset(leash_polyfills, 0, leash_polyfills_len);
    memset(leash_prelude, 0, leash_prelude_len);
    if (JS_IsException(fn)) {
        JS_FreeValue(ctx, host);
        report_exception("prelude");
        return 3;
    }
    r = JS_Call(ctx, fn, JS_UNDEFINED, 1, (JSValueConst *)&host);
    JS_FreeValue(ctx, fn);
    JS_FreeValue(ctx, host);
    if (JS_IsException(r)) {
        report_exception("prelude");
        return 4;
    }
    hooks = r;
    h_dispatch = JS_GetPropertyStr(ctx, hooks, "dispatch");
    h_deliver = JS_GetPropertyStr(ctx, hooks, "deliver");
    h_tick = JS_GetPropertyStr(ctx, hooks, "tick");
    h_worker = JS_GetPropertyStr(ctx, hooks, "worker");
    h_report = JS_GetPropertyStr(ctx, hooks, "report");
    h_rejected = JS_GetPropertyStr(ctx, hooks, "rejected");
    /* everything the snapshot holds is reachable; collect the garbage so
     * that tasks start from a compact heap */
    JS_RunGC(rt);
    return 0;
}

EXPORT("leash_begin") void leash_begin(uint64_t seed, uint32_t mem_limit, uint32_t stack_size)
{
    JS_SetRandomSeed(ctx, seed);
    JS_SetMemoryLimit(rt, mem_limit ? mem_limit : (size_t)-1);
    JS_SetMaxStackSize(rt, stack_size);
    JS_UpdateStackTop(rt);
    /* a collection touches every object of the snapshot, which costs a
     * copy of every heap page: short tasks should never collect. The
     * first collection comes after this many bytes of new allocations. */
    if (mstate) {
        size_t budget = mem_limit ? mem_limit / 4 : 16 << 20;
        if (budget > (16 << 20))
            budget = 16 << 20;
        JS_SetGCThreshold(rt, mstate->malloc_size + budget);
    }
}

/* drain the job queue; -1 when a job failed with an uncatchable error */
static int run_jobs(void)
{
    JSContext *c;
    int r;
    for (;;) {
        r = JS_ExecutePendingJob(rt, &c);
        if (r == 0)
            return 0;
        if (r < 0) {
            report_exception("exception");
            return -1;
        }
    }
}

EXPORT("leash_load") int32_t leash_load(const uint8_t *src, uint32_t len, uint32_t flags)
{
    JSValue fn, ns, def, r, p;
    JSModuleDef *m;
    uint8_t *bc;
    size_t bn;

    if (flags & 1) {
        fn = JS_ReadObject(ctx, src, len, JS_READ_OBJ_BYTECODE);
        if (!JS_IsException(fn) && JS_ResolveModule(ctx, fn) < 0) {
            JS_FreeValue(ctx, fn);
            fn = JS_EXCEPTION;
        }
    } else {
        /* JS_Eval wants a NUL-terminated buffer */
        char *s = malloc(len + 1);
        if (!s) {
            note_oom();
            return 1;
        }
        memcpy(s, src, len);
        s[len] = 0;
        fn = JS_Eval(ctx, s, len, "worker.js",
                     JS_EVAL_TYPE_MODULE | JS_EVAL_FLAG_COMPILE_ONLY);
        free(s);
    }
    if (JS_IsException(fn)) {
        report_exception("script_error");
        return 1;
    }
    if (flags & 2) {
        bc = JS_WriteObject(ctx, &bn, fn, JS_WRITE_OBJ_BYTECODE);
        if (bc) {
            host_bytecode(bc, bn);
            js_free(ctx, bc);
        } else {
            JS_FreeValue(ctx, JS_GetException(ctx));
        }
    }
    if (flags & 4) {
        /* compile only (the host caches the bytecode): run nothing */
        JS_FreeValue(ctx, fn);
        return 0;
    }
    /* the worker's code is compiled: from here on, as in workerd, no
     * code is generated from strings */
    JS_DisallowEval(ctx);
    m = JS_VALUE_GET_PTR(fn);
    p = JS_EvalFunction(ctx, fn);
    if (JS_IsException(p)) {
        report_exception("script_error");
        return 1;
    }
    if (run_jobs() < 0) {
        JS_FreeValue(ctx, p);
        return 1;
    }
    if (JS_PromiseState(ctx, p) == JS_PROMISE_REJECTED) {
        JS_Throw(ctx, JS_PromiseResult(ctx, p));
        JS_FreeValue(ctx, p);
        report_exception("script_error");
        return 1;
    }
    JS_FreeValue(ctx, p);
    ns = JS_GetModuleNamespace(ctx, m);
    if (JS_IsException(ns)) {
        report_exception("script_error");
        return 1;
    }
    def = JS_GetPropertyStr(ctx, ns, "default");
    JS_FreeValue(ctx, ns);
    r = JS_Call(ctx, h_worker, JS_UNDEFINED, 1, (JSValueConst *)&def);
    JS_FreeValue(ctx, def);
    if (JS_IsException(r)) {
        report_exception("script_error");
        return 1;
    }
    /* worker() returns true when the default export is usable; it
     * reported invalid_worker otherwise */
    bn = JS_ToBool(ctx, r);
    JS_FreeValue(ctx, r);
    return bn ? 0 : 1;
}

static JSValue bytes_value(const uint8_t *p, uint32_t n)
{
    return JS_NewArrayBufferCopy(ctx, p, n);
}

static int32_t call_hook(JSValueConst h, int argc, JSValue *argv)
{
    JSValue r = JS_Call(ctx, h, JS_UNDEFINED, argc, (JSValueConst *)argv);
    int i;
    for (i = 0; i < argc; i++)
        JS_FreeValue(ctx, argv[i]);
    if (JS_IsException(r)) {
        report_exception("exception");
        return 1;
    }
    JS_FreeValue(ctx, r);
    return run_jobs() < 0 ? 1 : 0;
}

EXPORT("leash_poll") int64_t leash_poll(void);

/* dispatch and deliver run the event loop until it waits, and return
 * what leash_poll returns: one call for a task that does no I/O */
EXPORT("leash_dispatch") int64_t leash_dispatch(const char *meta, uint32_t mn, const uint8_t *body, uint32_t bn)
{
    JSValue argv[2];
    JS_UpdateStackTop(rt);
    argv[0] = JS_NewStringLen(ctx, meta, mn);
    argv[1] = bytes_value(body, bn);
    if (call_hook(h_dispatch, 2, argv))
        return -1;
    return leash_poll();
}

EXPORT("leash_deliver") int64_t leash_deliver(int32_t id, int32_t ok, const char *meta, uint32_t mn,
                                              const uint8_t *body, uint32_t bn)
{
    JSValue argv[4];
    JS_UpdateStackTop(rt);
    argv[0] = JS_NewInt32(ctx, id);
    argv[1] = JS_NewBool(ctx, ok);
    argv[2] = JS_NewStringLen(ctx, meta, mn);
    argv[3] = bytes_value(body, bn);
    if (call_hook(h_deliver, 4, argv))
        return -1;
    return leash_poll();
}

EXPORT("leash_poll") int64_t leash_poll(void)
{
    JSValue r;
    double next;
    int32_t waits;
    JSValue a, b;

    JS_UpdateStackTop(rt);
    for (;;) {
        if (run_jobs() < 0)
            return -1;
        /* tick runs at most one due timer and returns
         * [ran, ms to the next timer or -1, pending waitUntil] */
        r = JS_Call(ctx, h_tick, JS_UNDEFINED, 0, NULL);
        if (JS_IsException(r)) {
            report_exception("exception");
            return -1;
        }
        a = JS_GetPropertyUint32(ctx, r, 0);
        if (JS_ToBool(ctx, a)) {
            JS_FreeValue(ctx, r);
            continue;
        }
        a = JS_GetPropertyUint32(ctx, r, 1);
        b = JS_GetPropertyUint32(ctx, r, 2);
        JS_FreeValue(ctx, r);
        if (JS_ToFloat64(ctx, &next, a) || JS_ToInt32(ctx, &waits, b)) {
            JS_FreeValue(ctx, JS_GetException(ctx));
            return -1;
        }
        if (run_jobs() < 0)
            return -1;
        if (next < 0)
            return ((int64_t)waits << 32) | 0xffffffffu;
        if (next > 0xfffffffe)
            next = 0xfffffffe;
        return ((int64_t)waits << 32) | (uint32_t)next;
    }
}
