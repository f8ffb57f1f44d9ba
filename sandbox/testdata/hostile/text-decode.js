// TextDecoder and TextEncoder over large inputs.
export default {
  async fetch() {
    const b = new Uint8Array(4 << 20).fill(0xe2);
    const d = new TextDecoder(), e = new TextEncoder();
    for (;;) e.encode(d.decode(b));
  },
};
