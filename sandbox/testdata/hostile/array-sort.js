// Array.prototype.sort of a large array of strings, and copies of it.
export default {
  async fetch() {
    const a = [];
    for (let i = 0; i < 300000; i++) a.push("k" + ((i * 7919) % 1000003));
    for (;;) { a.slice().sort(); a.reverse(); a.indexOf("none"); a.includes("none"); a.lastIndexOf("none"); }
  },
};
