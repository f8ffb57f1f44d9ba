// Copies and fills over a large typed array: set, copyWithin, fill, slice.
export default {
  async fetch() {
    const a = new Uint8Array(16 << 20), b = new Uint8Array(16 << 20);
    for (;;) { b.set(a); a.copyWithin(1, 0); a.fill(7); a.slice(1); b.lastIndexOf(9); b.includes(9); }
  },
};
