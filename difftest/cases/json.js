// JSON: stringify and parse edge cases, Response.json, request.json errors.
// request: {"path":"/"}
// request: {"method":"POST","path":"/bad","body":"{not json"}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/bad") {
      try { await request.json(); return new Response("parsed"); } catch (e) { return new Response(e.name); }
    }
    const cyc = {};
    cyc.self = cyc;
    let cycErr;
    try { JSON.stringify(cyc); } catch (e) { cycErr = e.name; }
    return Response.json({
      basic: JSON.stringify({ a: 1, b: [true, null, "x"], c: { d: undefined, e: () => 1 } }),
      nums: JSON.stringify([0, -0, 1e21, 1e-7, 0.1 + 0.2, NaN, Infinity, 2 ** 53 + 1, -1.5e-300, 123456789.123]),
      strings: JSON.stringify(["\u0000\u001f", "\ud800", "\u2028\u2029", "é😀", "\"\\/"]),
      indent: JSON.stringify({ a: [1, { b: 2 }] }, null, 2),
      replacer: JSON.stringify({ a: 1, b: 2, c: 3 }, ["c", "a"]),
      fn: JSON.stringify({ a: 5, b: "x" }, (k, v) => (typeof v === "number" ? v * 2 : v)),
      toJSON: JSON.stringify({ d: new Date(0), u: new URL("https://x.example/a b"), m: new Map([[1, 2]]) }),
      parse: JSON.parse('{"__proto__": 1, "a": [1, 2, {"b": "\\u00e9"}], "n": -0.0e1}'),
      reviver: JSON.parse("[1, 2, 3]", (k, v) => (Array.isArray(v) ? v : v * 10)),
      bigint: (() => { try { return JSON.stringify({ b: 1n }); } catch (e) { return e.name; } })(),
      cycErr,
      dates: [new Date(Date.UTC(2024, 1, 29, 12, 0, 0)).toISOString(), new Date("2024-03-10T10:00:00Z").getTime(), Date.UTC(1970, 0, 1)],
    });
  },
};
