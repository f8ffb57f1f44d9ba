// The client against a real node (clients/typescript/client_test.go
// starts it): LEASH_URL, LEASH_ADMIN_TOKEN, and LEASH_KEY (a tenant key of
// demo, whose bundle is mcp/testdata/policy.yaml).
import { test } from "node:test";
import assert from "node:assert/strict";
import { LeashClient, LeashError } from "../dist/index.js";

const url = process.env.LEASH_URL;
const admin = new LeashClient({ baseUrl: url, token: process.env.LEASH_ADMIN_TOKEN });
const tenant = new LeashClient({ baseUrl: url, token: process.env.LEASH_KEY });
const hello = 'export default { async fetch(req, env) { console.log("hi"); return new Response("hello " + (env.WHO ?? "you")) } }';

test("cluster and capabilities", async () => {
  const c = await tenant.cluster();
  assert.ok(c.members.length >= 1);
  const caps = await tenant.capabilities();
  assert.equal(caps.tenant, "demo");
  assert.ok(caps.intents.some((i) => i.intent === "compute"));
  const limited = await admin.capabilities("limited");
  assert.deepEqual(limited.profiles.map((p) => p.name), ["quick"]);
});

test("interactive task with its receipt", async () => {
  const lease = await tenant.issueLease({ intent: "compute" });
  assert.equal(lease.tenant, "demo");
  assert.ok(lease.token);
  const res = await tenant.runTask(lease.token, { module: { js: hello }, env: { WHO: "ts" } });
  assert.equal(res.outcome, "ok");
  assert.equal(res.response?.body, "hello ts");
  assert.equal(res.logs?.[0]?.message, "hi");
  assert.ok(res.receipt);
  const proof = await tenant.receipt(res.receipt.index);
  assert.equal(LeashClient.receiptPayload(proof).task_id, res.task_id);
  const task = await tenant.getTask(res.task_id);
  assert.equal(task.state, "succeeded");
  const cons = await tenant.consistency(1, proof.tree_size);
  assert.equal(cons.new_size, proof.tree_size);
  assert.match(await tenant.checkpoint(), /\n/);
});

test("a terminated task is a result, not an error", async () => {
  const lease = await tenant.issueLease({ intent: "compute" });
  const res = await tenant.runTask(lease.token, { module: { js: "export default { fetch() { for (;;) {} } }" } });
  assert.match(res.outcome, /^terminated:(cpu|wall)$/);
});

test("refusals are typed errors with the stable code", async () => {
  await assert.rejects(tenant.issueLease({ intent: "no_such_intent" }), (e) => e instanceof LeashError && e.code === "unknown_intent" && e.status === 400);
  await assert.rejects(tenant.issueLease({ intent: "compute", tenant: "limited" }), (e) => e instanceof LeashError && e.code === "forbidden" && e.status === 403);
  const anonymous = new LeashClient({ baseUrl: url });
  await assert.rejects(anonymous.issueLease({ intent: "compute" }), (e) => e instanceof LeashError && e.code === "unauthorized" && e.status === 401);
  await assert.rejects(tenant.getTask("tsk_nosuchtask"), (e) => e instanceof LeashError && e.code === "task_not_found" && e.status === 404);
});

test("modules", async () => {
  const ref = await tenant.putModule(hello);
  assert.match(ref.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(ref.kind, "js");
  const lease = await tenant.issueLease({ intent: "compute" });
  const res = await tenant.runTask(lease.token, { module: { digest: ref.digest } });
  assert.equal(res.response?.body, "hello you");
  await tenant.deleteModule(ref.digest);
  await assert.rejects(tenant.runTask(lease.token, { module: { digest: ref.digest } }), (e) => e instanceof LeashError && e.code === "module_not_found");
});

test("bulk task with waiting, listing and a refused cancel", async () => {
  const lease = await tenant.issueLease({ intent: "compute", class: "bulk" });
  const id = await tenant.submitBulk(lease.token, { module: { js: hello }, idempotency_key: `ts-${Date.now()}` });
  const task = await tenant.waitForTask(id, { timeoutMs: 60_000 });
  assert.equal(task.state, "succeeded", JSON.stringify(task));
  assert.equal(task.result?.response?.body, "hello you");
  const list = await tenant.listTasks({ limit: 100 });
  assert.ok(list.tasks.some((t) => t.task_id === id));
  await assert.rejects(tenant.cancelTask(id), (e) => e instanceof LeashError && e.code === "task_finished" && e.status === 409);
});

test("events, listed and streamed", async () => {
  const page = await tenant.events({ type: "execution_completed", limit: 5 });
  assert.ok(page.events.length >= 1);
  assert.ok(page.events.every((e) => e.leashtenant === "demo"));
  const ac = new AbortController();
  const seen = [];
  const stream = tenant.streamEvents({ since: "1h", type: "execution_completed" }, { signal: ac.signal });
  for await (const e of stream) {
    seen.push(e);
    if (seen.length >= 2) break;
  }
  ac.abort();
  assert.equal(seen.length, 2);
  assert.equal(seen[0].type, "execution_completed");
});

test("a revoked lease is refused", async () => {
  const lease = await tenant.issueLease({ intent: "compute" });
  await tenant.revokeLease(lease.lease_id, "ts test");
  await assert.rejects(tenant.runTask(lease.token, { module: { js: hello } }), (e) => e instanceof LeashError && e.code === "lease_revoked");
});
