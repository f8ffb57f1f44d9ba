// crypto.subtle.digest for every algorithm and several inputs,
// randomUUID's format, getRandomValues' checks.
// request: {"path":"/digest"}
// request: {"path":"/random"}
// request: {"path":"/errors"}
const hex = (b) => [...new Uint8Array(b)].map(x => x.toString(16).padStart(2, "0")).join("");
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/digest") {
      const inputs = [new Uint8Array(0), new TextEncoder().encode("abc"), new Uint8Array(1000).fill(7), new TextEncoder().encode("é😀").buffer,
        new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2)];
      const out = {};
      for (const alg of ["SHA-1", "SHA-256", "SHA-384", "SHA-512", "MD5", { name: "sha-256" }]) {
        const name = typeof alg === "string" ? alg : "obj:" + alg.name;
        out[name] = [];
        for (const i of inputs) out[name].push(hex(await crypto.subtle.digest(alg, i)));
      }
      return Response.json(out);
    }
    if (url.pathname === "/random") {
      const ids = new Set();
      let fmt = true;
      for (let i = 0; i < 100; i++) {
        const id = crypto.randomUUID();
        ids.add(id);
        fmt = fmt && /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id);
      }
      const a = new Uint32Array(8);
      const same = crypto.getRandomValues(a) === a;
      const r = Math.random();
      return Response.json({ unique: ids.size, fmt, same, nonzero: a.some(x => x !== 0), range: r >= 0 && r < 1 });
    }
    const out = [];
    for (const f of [() => crypto.getRandomValues(new Float64Array(2)), () => crypto.getRandomValues(new Uint8Array(65537)),
      () => crypto.subtle.digest("SHA-999", new Uint8Array(1)), () => crypto.subtle.digest("SHA-256", "string")]) {
      try { await f(); out.push("ok"); } catch (e) { out.push(e.name); }
    }
    return Response.json(out);
  },
};
