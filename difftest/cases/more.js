// More of the same surfaces: Request construction and cloning, body
// types, stream reading, Blob slicing, FormData bodies.
// request: {"method":"POST","path":"/request-init","headers":{"x-in":"1","content-type":"text/plain"},"body":"payload"}
// request: {"path":"/bodies"}
// request: {"path":"/stream-read"}
// request: {"path":"/formdata"}
// request: {"path":"/misc"}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/request-init": {
        const copy = new Request(request, { headers: { "x-new": "2" } });
        const r2 = new Request("https://other.example/p?q", { method: "post", body: "b", headers: [["a", "1"]] });
        const c = r2.clone();
        return Response.json({
          copyUrl: copy.url, copyMethod: copy.method, copyIn: copy.headers.get("x-in"), copyNew: copy.headers.get("x-new"),
          copyBody: await copy.text(), origUsed: request.bodyUsed,
          r2: [r2.method, r2.url, r2.headers.get("content-type"), await r2.text(), await c.text()],
          lower: new Request("https://x.example/", { method: "get" }).method, custom: (() => { try { return new Request("https://x.example/", { method: "Custom" }).method; } catch (e) { return e.name + ": " + e.message; } })(),
          purge: new Request("https://x.example/", { method: "purge" }).method,
        });
      }
      case "/bodies": {
        const out = [];
        for (const b of [new Uint8Array([1, 2, 3]).buffer, new DataView(new Uint8Array([4, 5, 6, 7]).buffer, 1, 2), new Blob(["xyz"]).slice(1), new Uint16Array([258]), "", null]) {
          const r = new Response(b);
          out.push([r.headers.get("content-type"), [...new Uint8Array(await r.arrayBuffer())]]);
        }
        return Response.json(out);
      }
      case "/stream-read": {
        const enc = new TextEncoder();
        let i = 0;
        const s = new ReadableStream({ pull(c) { if (i < 3) c.enqueue(enc.encode("p" + i++)); else c.close(); } });
        const chunks = [];
        for await (const chunk of s) chunks.push(new TextDecoder().decode(chunk));
        const r = new Response(new ReadableStream({ start(c) { c.enqueue(enc.encode("a")); c.enqueue(enc.encode("b")); c.close(); } }));
        const reader = r.body.getReader();
        const first = await reader.read();
        return Response.json({ chunks, first: [first.done, first.value.length], used: r.bodyUsed, locked: r.body.locked });
      }
      case "/formdata": {
        const fd = new FormData();
        fd.append("a", "1");
        fd.append("a", "2");
        fd.set("b", "x");
        fd.append("f", new Blob(["file body"], { type: "text/plain" }), "f.txt");
        const r = new Response(fd);
        const ct = r.headers.get("content-type");
        const back = await r.formData();
        const f = back.get("f");
        return Response.json({ multipart: ct.startsWith("multipart/form-data; boundary="), a: back.getAll("a"), b: back.get("b"),
          f: [f.name, f.type, await f.text()], keys: [...back.keys()] });
      }
      case "/misc": {
        const h = new Headers(new Map([["k", "v"]]));
        const p = new URLSearchParams("a=1&b=2");
        const seen = [];
        for (const [k] of p) { seen.push(k); }
        return Response.json({ h: [...h], seen, td: new TextDecoder().decode(new Uint8Array([104, 105]).buffer),
          sc: [...structuredClone(new Map([["z", 1], ["a", 2]])).keys()], typeofFetch: typeof fetch, ab: AbortSignal.abort().aborted,
          dom: [new DOMException("m", "NotFoundError").code, new DOMException("m").name, DOMException.ABORT_ERR] });
      }
    }
    return new Response("?", { status: 400 });
  },
};
