// A regular expression with catastrophic backtracking.
export default {
  async fetch() {
    const s = "a".repeat(40) + "!";
    return new Response(String(/^(a+)+$/.test(s)));
  },
};
