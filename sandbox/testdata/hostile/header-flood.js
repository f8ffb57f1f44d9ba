// A response with very many headers (3,000: more than the 1,000 a response may have;
// few enough that building them stays far below cpu_ms on a loaded, race-built node).
export default {
  async fetch() {
    const h = new Headers();
    for (let i = 0; i < 3000; i++) h.set("x-h" + i, "v" + i);
    return new Response("flood", { headers: h });
  },
};
