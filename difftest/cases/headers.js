// The Headers class: case, combining, iteration order, set-cookie,
// validation errors, immutability of the incoming request's headers.
// request: {"path":"/"}
// request: {"path":"/errors"}
// request: {"path":"/incoming","headers":{"X-B":"2","x-a":"1"}}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/errors") {
      const out = [];
      for (const f of [() => new Headers({ "bad name": "x" }), () => new Headers({ "x": "a\nb" }), () => new Headers([["a"]]),
        () => new Headers().append("é", "x"), () => new Headers({ "x": "  padded  " }).get("x"), () => new Headers({ "x": "" }).get("x")]) {
        try { out.push(String(f())); } catch (e) { out.push(e.constructor.name); }
      }
      return Response.json(out);
    }
    if (url.pathname === "/incoming") {
      let mutable = "yes";
      try { request.headers.set("x-c", "3"); } catch (e) { mutable = e.constructor.name; }
      return Response.json({ a: request.headers.get("x-a"), b: request.headers.get("X-B"), mutable });
    }
    const h = new Headers([["B", "2"], ["a", "1"], ["c", "3"]]);
    h.append("b", "22");
    h.set("C", "33");
    h.delete("nope");
    h.append("set-cookie", "x=1");
    h.append("set-cookie", "y=2");
    const seen = [];
    h.forEach((v, k) => seen.push(`${k}=${v}`));
    return Response.json({
      entries: [...h], keys: [...h.keys()], values: [...h.values()], seen,
      b: h.get("b"), has: h.has("A"), cookies: h.getSetCookie(), cookie: h.get("set-cookie"),
      copy: [...new Headers(h)].length, fromObj: [...new Headers({ Z: "z", y: "y" })],
    });
  },
};
