// Issue 10's web-platform fidelity, as leash-only expectations: golden/
// fidelity.json was written by hand from the standards (workerd was not
// installed to record it); `-update` with a live workerd records it again.
// request: {"method":"GET","path":"/env-keys"}
// request: {"method":"GET","path":"/response-subclass"}
// request: {"method":"GET","path":"/listener-removed"}
class Sneaky extends Response {
  get status() { return 299; }
  get headers() { return new Headers({ "x-fake": "1" }); }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/env-keys":
        // env holds exactly the bindings: nothing of the runtime's own
        return new Response(Object.keys(env).sort().join(","));
      case "/response-subclass":
        // what is sent is the Response's own state, not its getters
        return new Sneaky("real", { status: 201, headers: { "x-real": "1" } });
      case "/listener-removed": {
        // a listener removed during a dispatch is not called (DOM)
        const t = new EventTarget(), seen = [];
        const b = () => seen.push("b");
        t.addEventListener("x", () => { seen.push("a"); t.removeEventListener("x", b); });
        t.addEventListener("x", b);
        t.dispatchEvent(new Event("x"));
        return new Response(seen.join(","));
      }
    }
    return new Response("no such case", { status: 404 });
  },
};
