// An endless chain of microtasks after returning a response: not
// ctx.waitUntil work, so no response.
export default {
  async fetch() {
    const spin = () => Promise.resolve().then(spin);
    spin();
    return new Response("too early");
  },
};
