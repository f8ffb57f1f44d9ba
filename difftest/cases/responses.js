// Responses: status, statusText, static constructors, null bodies,
// headers set by the worker, clone, stream bodies.
// request: {"path":"/status?s=201"}
// request: {"path":"/status?s=404"}
// request: {"path":"/status?s=599"}
// request: {"path":"/json"}
// request: {"path":"/redirect"}
// request: {"path":"/redirect301"}
// request: {"path":"/nobody"}
// request: {"path":"/headers"}
// request: {"path":"/clone"}
// request: {"path":"/stream"}
// request: {"path":"/transform"}
// request: {"path":"/props"}
// request: {"path":"/errors"}
// request: {"path":"/bytes"}
// request: {"path":"/blob"}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/status": return new Response("s", { status: Number(url.searchParams.get("s")), statusText: "Custom" });
      case "/json": return Response.json({ ok: true, n: [1, 2.5, -0], s: "\u2028" }, { status: 202, headers: { "x-j": "1" } });
      case "/redirect": return Response.redirect("https://example.com/a b?c=d");
      case "/redirect301": return Response.redirect("https://example.com/", 301);
      case "/nobody": return new Response(null, { status: 204 });
      case "/headers": {
        const h = new Headers({ "X-One": "1" });
        h.append("x-two", "2");
        h.append("Set-Cookie", "a=1");
        h.append("Set-Cookie", "b=2; Path=/");
        return new Response("h", { headers: h });
      }
      case "/clone": {
        const r = new Response("cloned body");
        const c = r.clone();
        return new Response((await r.text()) + "/" + (await c.text()));
      }
      case "/stream": {
        const enc = new TextEncoder();
        const s = new ReadableStream({
          start(c) { c.enqueue(enc.encode("chunk1,")); c.enqueue(enc.encode("chunk2")); c.close(); },
        });
        return new Response(s, { headers: { "content-type": "text/plain" } });
      }
      case "/transform": {
        const { readable, writable } = new TransformStream();
        const w = writable.getWriter();
        const enc = new TextEncoder();
        (async () => { for (let i = 0; i < 3; i++) { await w.write(enc.encode(`part${i};`)); } await w.close(); })();
        return new Response(readable);
      }
      case "/props": {
        const r = new Response("x", { status: 299 });
        const e = Response.error();
        return Response.json({ ok: r.ok, status: r.status, statusText: r.statusText, type: r.type, redirected: r.redirected, url: r.url,
          errType: e.type, errStatus: e.status, bodyUsed: r.bodyUsed, ctype: r.headers.get("content-type"),
          nullCtype: new Response(null).headers.get("content-type"), bufCtype: new Response(new Uint8Array(2)).headers.get("content-type"),
          paramsCtype: new Response(new URLSearchParams("a=1")).headers.get("content-type") });
      }
      case "/errors": {
        const out = [];
        for (const f of [() => new Response("x", { status: 99 }), () => new Response("x", { status: 600 }), () => new Response("x", { status: 204 }),
          () => Response.redirect("https://x.example/", 200), () => Response.redirect("not a url")]) {
          try { f(); out.push("ok"); } catch (e) { out.push(e.constructor.name); }
        }
        return Response.json(out);
      }
      case "/bytes": return new Response(new Uint8Array([0, 1, 2, 255, 254]));
      case "/blob": {
        const b = new Blob(["ab", new Uint8Array([99]), "é"], { type: "Text/Plain" });
        return new Response(b);
      }
    }
    return new Response("?", { status: 400 });
  },
};
