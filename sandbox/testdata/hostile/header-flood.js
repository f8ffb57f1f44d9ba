// A response with very many headers (20,000: more than the 1,000 a response may have).
export default {
  async fetch() {
    const h = new Headers();
    for (let i = 0; i < 20000; i++) h.set("x-h" + i, "v" + i);
    return new Response("flood", { headers: h });
  },
};
