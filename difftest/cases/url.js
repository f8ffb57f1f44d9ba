// URL parsing (WHATWG): many inputs, relative resolution, components,
// searchParams, setters, URLSearchParams.
// request: {"path":"/parse"}
// request: {"path":"/params"}
// request: {"path":"/setters"}
// request: {"path":"/request-url?q=%20x&y=%zz#frag"}
const inputs = [
  ["https://Example.COM:443/a/./b/../c?x=1#f"], ["http://example.com:8080/"], ["../d?q", "https://example.com/a/b/c"],
  ["//other.example/p", "https://example.com/"], ["?only", "https://example.com/path"], ["#h", "https://example.com/p?q"],
  ["https://bücher.example/ä?ö=ü#ß"], ["http://0x7f.1/"], ["http://[::1]:80/"], ["http://[2001:db8::1]/x"],
  ["https://user:pa ss@example.com/"], ["http:\\\\evil.com\\x"], ["file:///etc/passwd"], ["data:text/plain,hello"],
  ["mailto:someone@example.com"], ["ws://example.com/chat"], ["https://example.com/%7Efoo/bar baz"],
  ["HTTPS://EXAMPLE.COM/UPPER"], ["https://example.com/?a=b c&d=é"], ["http://example.com/a/%2e%2E/b"],
  ["blob:https://example.com/uuid"], ["http://1.2.3"], ["https://xn--nxasmq6b.example/"], ["https://example.com:0/"],
  ["not a url"], ["http://"], ["https://example.com:99999/"], ["http://exa mple.com/"], ["relative/path"], ["", "https://example.com/x"],
  ["https://example.com/a", ""], ["custom-scheme://host/path?q#f"], ["javascript:alert(1)"], ["http://a.b/c?d=e&f"],
];
export default {
  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/parse":
        return Response.json(inputs.map(([i, b]) => {
          try {
            const u = b === undefined ? new URL(i) : new URL(i, b);
            return [u.href, u.origin, u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash];
          } catch (e) {
            return [e.constructor.name, String(URL.canParse(i, b))];
          }
        }));
      case "/params": {
        const p = new URLSearchParams("?a=1&b=2&a=3&c=%20x+y&d");
        p.append("e", "é &=");
        p.set("b", "B");
        p.delete("c");
        const sorted = new URLSearchParams("z=1&a=2&m=3&a=1");
        sorted.sort();
        return Response.json({
          s: p.toString(), all: p.getAll("a"), d: p.get("d"), has: p.has("a"), size: p.size, entries: [...p],
          sorted: sorted.toString(), fromObj: new URLSearchParams({ x: "1", y: "2 3" }).toString(),
          fromPairs: new URLSearchParams([["k", "v"], ["k", "w"]]).toString(), special: new URLSearchParams({ q: "a+b/c?d~e*f'g(h)" }).toString(),
        });
      }
      case "/setters": {
        const u = new URL("https://example.com/a?x=1#h");
        const out = [];
        u.searchParams.set("y", "2 3"); out.push(u.href);
        u.pathname = "/new path/ü"; out.push(u.href);
        u.search = "?q=1"; out.push(u.href, u.searchParams.get("q"));
        u.hash = "frag"; out.push(u.href);
        u.hostname = "other.example"; out.push(u.href);
        u.port = "8443"; out.push(u.href);
        u.port = ""; out.push(u.href);
        u.protocol = "http"; out.push(u.href);
        u.username = "me"; u.password = "secret"; out.push(u.href);
        u.host = "h.example:81"; out.push(u.href);
        u.href = "https://reset.example/"; out.push(u.href, String(u), JSON.stringify({ u }));
        return Response.json(out);
      }
      case "/request-url":
        return Response.json({ url: request.url, search: url.search, q: url.searchParams.get("q"), y: url.searchParams.get("y"), hash: url.hash });
    }
    return new Response("?", { status: 400 });
  },
};
