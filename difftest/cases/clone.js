// structuredClone and the globals a worker finds.
// request: {"path":"/clone"}
// request: {"path":"/globals"}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/globals") {
      const names = ["fetch", "Request", "Response", "Headers", "URL", "URLSearchParams", "TextEncoder", "TextDecoder", "atob", "btoa",
        "structuredClone", "crypto", "AbortController", "AbortSignal", "setTimeout", "clearTimeout", "setInterval", "clearInterval",
        "console", "queueMicrotask", "ReadableStream", "WritableStream", "TransformStream", "Blob", "FormData", "Event", "EventTarget",
        "DOMException", "navigator", "performance", "self"];
      return Response.json({ types: names.map(n => typeof globalThis[n]), ua: navigator.userAgent, selfIsGlobal: self === globalThis,
        tags: [Object.prototype.toString.call(new Headers()), Object.prototype.toString.call(new URL("https://x.example/")), Object.prototype.toString.call(crypto)] });
    }
    const src = { n: 1, s: "x", d: new Date(0), r: /a+/gi, m: new Map([["k", { v: 1 }]]), set: new Set([1, 2]), arr: [1, , 3], u8: new Uint8Array([1, 2]),
      nested: { deep: [{ x: null, u: undefined }] }, big: 10n, err: new RangeError("bad") };
    src.self = src;
    const c = structuredClone(src);
    return Response.json({
      sameObj: c === src, selfRef: c.self === c, date: c.d instanceof Date && c.d.getTime(), re: String(c.r), map: [...c.m].map(([k, v]) => k + v.v),
      set: [...c.set], holes: c.arr.length + ":" + (1 in c.arr), u8: [...c.u8], nested: c.nested, big: typeof c.big, err: c.err instanceof RangeError && c.err.message,
      fnErr: (() => { try { structuredClone({ f() {} }); return "ok"; } catch (e) { return e.name; } })(),
    });
  },
};
