// Incoming requests: method, URL, headers, bodies (text, JSON, binary,
// form), clone and bodyUsed.
// request: {"method":"GET","path":"/info?a=1&b=two","headers":{"X-Custom":"Value","Accept":"text/html"}}
// request: {"method":"POST","path":"/text","headers":{"content-type":"text/plain"},"body":"héllo wörld"}
// request: {"method":"POST","path":"/json","headers":{"content-type":"application/json"},"body":"{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\"}"}
// request: {"method":"PUT","path":"/binary","headers":{"content-type":"application/octet-stream"},"body_base64":"AAECA/8A/v0gIA=="}
// request: {"method":"POST","path":"/form","headers":{"content-type":"application/x-www-form-urlencoded"},"body":"a=1&b=x+y&c=%E2%9C%93&a=2"}
// request: {"method":"POST","path":"/clone","body":"twice"}
// request: {"method":"DELETE","path":"/empty"}
// request: {"method":"PATCH","path":"/patch","body":"p"}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/info":
        return Response.json({
          method: request.method, url: request.url, x: request.headers.get("x-custom"),
          accept: request.headers.get("ACCEPT"), a: url.searchParams.get("a"), missing: request.headers.get("nope"),
          hasBody: request.body !== null, bodyUsed: request.bodyUsed, redirect: request.redirect,
        });
      case "/text": {
        const t = await request.text();
        return new Response(`${t.length}:${t}:${request.bodyUsed}`);
      }
      case "/json":
        return Response.json(await request.json());
      case "/binary": {
        const b = new Uint8Array(await request.arrayBuffer());
        return new Response(b.reverse(), { headers: { "content-type": "application/octet-stream" } });
      }
      case "/form": {
        const f = await request.formData();
        return Response.json({ a: f.getAll("a"), b: f.get("b"), c: f.get("c"), keys: [...f.keys()] });
      }
      case "/clone": {
        const c = request.clone();
        const [a, b] = [await request.text(), await c.text()];
        let again = "";
        try { await request.text(); } catch (e) { again = e.constructor.name; }
        return new Response(`${a}|${b}|${again}`);
      }
      case "/empty":
        return new Response(`${request.method} ${request.body === null} ${(await request.text()).length}`);
      default:
        return new Response(`${request.method} ${await request.text()}`);
    }
  },
};
