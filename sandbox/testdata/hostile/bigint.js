// BigInt arithmetic on huge numbers: each multiplication is long.
export default {
  async fetch() {
    let x = 3n ** 200000n;
    for (;;) { x = (x * x) % (7n ** 300000n); x.toString(); }
  },
};
