// Failures: thrown errors, rejections, wrong return values, and what a
// worker sees of common Web API errors.
// request: {"path":"/throw"}
// request: {"path":"/reject"}
// request: {"path":"/string"}
// request: {"path":"/undefined"}
// request: {"path":"/used"}
// request: {"path":"/caught"}
// request: {"path":"/error-response"}
// request: {"path":"/hang","known":"workerd detects a promise that can never settle and fails at once; leash ends it at the wall limit (issue 3)"}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/throw": throw new Error("thrown");
      case "/reject": return Promise.reject(new TypeError("rejected"));
      case "/string": return "not a response";
      case "/undefined": return undefined;
      case "/used": {
        const r = new Response("once");
        await r.text();
        return r;
      }
      case "/caught": {
        const out = [];
        for (const f of [() => new Request("/relative"), () => new Request("https://x.example/", { method: "GET", body: "x" }),
          () => new Request("https://x.example/", { method: "bad method" }), () => fetch("ftp://x.example/"),
          () => new Response("x").text().then(() => 1), () => structuredClone(() => 1), () => new URL("https://x.example/").searchParams.get()]) {
          try { await f(); out.push("ok"); } catch (e) { out.push(e.name); }
        }
        return Response.json(out);
      }
      case "/error-response": return Response.error();
      case "/hang": return new Promise(() => {});
    }
    return new Response("?", { status: 400 });
  },
};
