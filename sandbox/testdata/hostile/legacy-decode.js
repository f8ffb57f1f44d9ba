// The host's legacy decoders over large inputs, streamed so that every
// call hands a decoder state back (an odd length leaves gb18030 a lead).
export default {
  async fetch() {
    const b = new Uint8Array(8 << 20).fill(0x81); // 0x81 0x81: a two-byte character
    const gb = new TextDecoder("gb18030"), jp = new TextDecoder("iso-2022-jp");
    for (;;) {
      gb.decode(b.subarray(0, b.length - 1), { stream: true });
      jp.decode(b, { stream: true });
    }
  },
};
