// Strings built by built-ins: repeat, padStart, join, replaceAll, split.
export default {
  async fetch() {
    const parts = Array.from({ length: 100000 }, (_, i) => "p" + i);
    for (;;) {
      const s = parts.join(",");
      s.split(",").join(";").replaceAll(";", ",").padEnd(8 << 20, "x").indexOf("zz");
      "ab".repeat(4 << 20).lastIndexOf("ba!");
    }
  },
};
