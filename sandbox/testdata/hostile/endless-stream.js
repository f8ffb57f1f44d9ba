// A response body that never ends.
export default {
  async fetch() {
    const chunk = new Uint8Array(64 << 10).fill(120);
    return new Response(new ReadableStream({ pull(c) { c.enqueue(chunk); } }));
  },
};
