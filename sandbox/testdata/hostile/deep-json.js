// JSON.stringify and JSON.parse of a deep, wide object.
export default {
  async fetch() {
    let o = {};
    for (let i = 0; i < 1000; i++) o = { a: o, b: [1, 2, 3, "x".repeat(100)], c: { d: i } };
    const wide = Array.from({ length: 200000 }, (_, i) => ({ i, s: "v" + i }));
    for (;;) { JSON.parse(JSON.stringify(wide)); JSON.stringify(o); }
  },
};
