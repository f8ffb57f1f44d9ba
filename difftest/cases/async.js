// Ordering of microtasks, timers and promise combinators; ctx.waitUntil.
// request: {"path":"/order"}
// request: {"path":"/combinators"}
// request: {"path":"/timers"}
// request: {"path":"/waituntil"}
// request: {"path":"/abort"}
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const log = [];
    switch (url.pathname) {
      case "/order": {
        setTimeout(() => log.push("timeout0"), 0);
        setTimeout(() => log.push("timeout1"), 1);
        queueMicrotask(() => log.push("micro1"));
        Promise.resolve().then(() => { log.push("then1"); queueMicrotask(() => log.push("micro-nested")); }).then(() => log.push("then2"));
        (async () => { log.push("async-start"); await null; log.push("async-after-await"); })();
        log.push("sync");
        await new Promise(r => setTimeout(r, 20));
        return Response.json(log);
      }
      case "/combinators": {
        const d = (v, ms, fail) => new Promise((res, rej) => setTimeout(() => (fail ? rej(new Error(v)) : res(v)), ms));
        const all = await Promise.all([d("a", 10), d("b", 1), "c"]);
        const race = await Promise.race([d("slow", 20), d("fast", 1)]);
        const settled = (await Promise.allSettled([d("ok", 1), d("bad", 2, true)])).map(s => s.status + ":" + (s.value || s.reason.message));
        const any = await Promise.any([d("x", 5, true), d("y", 3)]);
        let agg;
        try { await Promise.any([d("e1", 1, true)]); } catch (e) { agg = e.constructor.name + ":" + e.errors.length; }
        return Response.json({ all, race, settled, any, agg });
      }
      case "/timers": {
        const seq = [];
        const id = setTimeout(() => seq.push("cancelled"), 5);
        clearTimeout(id);
        let n = 0;
        await new Promise(res => {
          const iv = setInterval(() => { seq.push("tick" + ++n); if (n === 3) { clearInterval(iv); res(); } }, 2);
        });
        setTimeout((a, b) => seq.push(a + b), 1, "arg", "s");
        await new Promise(r => setTimeout(r, 10));
        return Response.json(seq);
      }
      case "/waituntil": {
        let done = false;
        ctx.waitUntil(new Promise(r => setTimeout(r, 5)).then(() => { done = true; }));
        return new Response("responded before waitUntil: " + !done);
      }
      case "/abort": {
        const c = new AbortController();
        const events = [];
        c.signal.addEventListener("abort", () => events.push("abort:" + c.signal.reason));
        c.abort("why");
        c.abort("again");
        const timeout = AbortSignal.timeout(1);
        await new Promise(r => setTimeout(r, 10));
        const pre = AbortSignal.abort();
        return Response.json({ events, aborted: c.signal.aborted, reason: c.signal.reason, timeout: timeout.reason.name, pre: pre.reason.name,
          throws: (() => { try { pre.throwIfAborted(); return "no"; } catch (e) { return e.name; } })() });
      }
    }
    return new Response("?", { status: 400 });
  },
};
