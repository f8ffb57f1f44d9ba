// TextEncoder/TextDecoder (UTF-8, invalid input, BOM, streaming, fatal),
// atob/btoa.
// request: {"path":"/"}
// request: {"path":"/base64"}
const bytes = (a) => new Uint8Array(a);
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/base64") {
      const out = [btoa("hello"), btoa(""), btoa("\u00ff\u00fe"), atob("aGVsbG8="), atob(" aGVs bG8 "), atob("aGVsbG8"), atob("")];
      for (const f of [() => btoa("€"), () => atob("a"), () => atob("a==="), () => atob("@@@@")]) {
        try { out.push(f()); } catch (e) { out.push(`${e.name}`); }
      }
      return Response.json(out);
    }
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    const out = {
      encoding: enc.encoding + "/" + dec.encoding,
      ascii: [...enc.encode("abc")],
      multi: [...enc.encode("é€😀")],
      lone: [...enc.encode("a\ud800b")],
      empty: enc.encode().length,
      into: enc.encodeInto("héllo", new Uint8Array(4)),
      decode: dec.decode(bytes([104, 195, 169, 240, 159, 152, 128])),
      invalid: [...dec.decode(bytes([0x61, 0xff, 0x62, 0xc3, 0x28, 0xe2, 0x82, 0xf0, 0x9f, 0x98]))].map(c => c.codePointAt(0)),
      overlong: [...dec.decode(bytes([0xc0, 0xaf, 0xe0, 0x80, 0xaf, 0xed, 0xa0, 0x80]))].map(c => c.codePointAt(0)),
      bom: dec.decode(bytes([0xef, 0xbb, 0xbf, 0x78])).length,
      keepBom: new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes([0xef, 0xbb, 0xbf, 0x78])).length,
      labels: ["UTF8", " utf-8 ", "unicode-1-1-utf-8", "latin1", "utf-16le"].map(l => new TextDecoder(l).encoding),
      latin1: new TextDecoder("latin1").decode(bytes([0x41, 0xe9])),
      utf16: new TextDecoder("utf-16le").decode(bytes([0x41, 0, 0x3d, 0xd8, 0, 0xde])),
      view: dec.decode(new DataView(bytes([0x78, 0x79]).buffer)),
    };
    const sdec = new TextDecoder();
    const whole = bytes([0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80]);
    out.stream = [sdec.decode(whole.subarray(0, 2), { stream: true }), sdec.decode(whole.subarray(2, 5), { stream: true }), sdec.decode(whole.subarray(5))];
    try { new TextDecoder("utf-8", { fatal: true }).decode(bytes([0xff])); out.fatal = "no"; } catch (e) { out.fatal = e.constructor.name; }
    try { new TextDecoder("nope"); out.label = "no"; } catch (e) { out.label = e.constructor.name; }
    return Response.json(out);
  },
};
