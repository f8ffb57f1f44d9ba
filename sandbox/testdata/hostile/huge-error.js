// An uncaught error with a 50 MiB message.
export default {
  async fetch() {
    throw new Error("x".repeat(50 << 20));
  },
};
