// Known differences (docs/javascript.md): only the status is compared.
// request: {"path":"/intl","known":"QuickJS has no Intl: toLocaleString and Intl.* differ"}
// request: {"path":"/messages","known":"engine error messages are QuickJS's, not V8's"}
// request: {"path":"/stack","known":"stack traces are QuickJS's format"}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/intl":
        return Response.json({ intl: typeof Intl, n: (1234567.891).toLocaleString(), d: new Date(0).toLocaleDateString("en-US") });
      case "/messages": {
        const out = [];
        for (const f of [() => null.x, () => undefined(), () => JSON.parse("{bad"), () => new Array(-1), () => x.y]) {
          try { f(); } catch (e) { out.push(`${e.name}: ${e.message}`); }
        }
        return Response.json(out);
      }
      case "/stack":
        return new Response(new Error("where").stack);
    }
    return new Response("?", { status: 400 });
  },
};
