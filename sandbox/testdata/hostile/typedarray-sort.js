// Built-ins over a large typed array, in a loop: sort, reverse, indexOf.
export default {
  async fetch() {
    const a = new Float64Array(1 << 21);
    for (let i = 0; i < a.length; i++) a[i] = (i * 7919) % 1000003;
    for (;;) { a.sort(); a.reverse(); a.indexOf(-1); a.sort((x, y) => 0); }
  },
};
