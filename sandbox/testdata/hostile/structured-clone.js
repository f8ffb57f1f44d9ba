// structuredClone of a large object graph.
export default {
  async fetch() {
    const g = Array.from({ length: 100000 }, (_, i) => ({ i, s: "n" + i, l: [i, i + 1] }));
    for (;;) structuredClone(g);
  },
};
