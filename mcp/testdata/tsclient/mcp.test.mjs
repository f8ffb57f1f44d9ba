// The official TypeScript MCP SDK client against a real leash node, over
// Streamable HTTP and stdio (leash mcp). mcp/ts_test.go starts the node
// and runs this file with Node's built-in test runner; the environment
// names the endpoints and credentials:
//   LEASH_MCP_ENDPOINTS  space-separated Streamable HTTP endpoints
//   LEASH_URL            the node (for stdio)
//   LEASH_BIN            the leash binary (for stdio)
//   LEASH_KEY            a tenant key of demo
//   LEASH_LIMITED_KEY    a tenant key of limited (allowed only "compute")
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const env = process.env;
const endpoints = (env.LEASH_MCP_ENDPOINTS || "").split(" ").filter(Boolean);

function httpTransport(endpoint, key) {
  return new StreamableHTTPClientTransport(new URL(endpoint), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
}

function stdioTransport(key) {
  return new StdioClientTransport({
    command: env.LEASH_BIN,
    args: ["mcp"],
    env: { PATH: env.PATH, LEASH_URL: env.LEASH_URL, LEASH_KEY: key, LEASH_TOKEN: "" },
    stderr: "inherit",
  });
}

async function connect(transport) {
  const client = new Client({ name: "leash-ts-test", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

const transports = [
  ...endpoints.map((e) => [`http ${e}`, (key) => httpTransport(e, key)]),
  ["stdio", (key) => stdioTransport(key)],
];

for (const [name, make] of transports) {
  test(`every tool over ${name}`, async (t) => {
    const client = await connect(make(env.LEASH_KEY));
    t.after(() => client.close());

    await t.test("protocol revision", () => {
      assert.equal(client.getServerVersion().name, "leash");
    });

    await t.test("list tools with schemas", async () => {
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((x) => x.name).sort(), ["get_task", "list_capabilities", "run_javascript", "run_wasm", "session_get", "session_put"]);
      for (const tool of tools) {
        assert.equal(tool.inputSchema.type, "object", tool.name);
        assert.ok(tool.outputSchema, `${tool.name} has an output schema`);
      }
    });

    await t.test("list_capabilities", async () => {
      const res = await client.callTool({ name: "list_capabilities", arguments: {} });
      assert.ok(!res.isError, JSON.stringify(res));
      const caps = res.structuredContent;
      assert.equal(caps.tenant, "demo");
      const fetcher = caps.profiles.find((p) => p.name === "fetcher");
      assert.deepEqual(fetcher.egress.allow.map((a) => a.host), ["api.example.com"]);
      assert.ok(caps.intents.some((i) => i.intent === "compute" && i.profile === "quick"));
    });

    let taskId;
    await t.test("run_javascript", async () => {
      const res = await client.callTool({
        name: "run_javascript",
        arguments: {
          code: 'export default { fetch(req, env) { return new Response("hi " + env.WHO) } }',
          intent: "compute",
          env: { WHO: "ts" },
        },
      });
      assert.ok(!res.isError, JSON.stringify(res));
      assert.equal(res.structuredContent.outcome, "ok");
      assert.equal(res.structuredContent.body, "hi ts");
      assert.equal(typeof res.structuredContent.receipt_index, "number");
      taskId = res.structuredContent.task_id;
    });

    await t.test("get_task", async () => {
      const res = await client.callTool({ name: "get_task", arguments: { task_id: taskId } });
      assert.ok(!res.isError, JSON.stringify(res));
      assert.equal(res.structuredContent.state, "succeeded");
    });

    await t.test("run_wasm of a module not uploaded is refused", async () => {
      const res = await client.callTool({
        name: "run_wasm",
        arguments: { digest: "sha256:" + "0".repeat(64), intent: "compute" },
      });
      assert.equal(res.isError, true);
      assert.equal(res.structuredContent.outcome, "refused");
      assert.equal(res.structuredContent.error.code, "module_not_found");
    });

    await t.test("a terminated task is a tool result", async () => {
      const res = await client.callTool({
        name: "run_javascript",
        arguments: { code: "export default { fetch() { for (;;) {} } }", intent: "compute" },
      });
      assert.equal(res.isError, true);
      assert.match(res.structuredContent.outcome, /^terminated:/);
    });

    await t.test("a blocked fetch names its clause", async () => {
      const res = await client.callTool({
        name: "run_javascript",
        arguments: {
          code: 'export default { async fetch() { await fetch("https://elsewhere.example.org/"); return new Response("no") } }',
          intent: "call_api",
        },
      });
      assert.equal(res.isError, true);
      assert.equal(res.structuredContent.blocked[0].destination, "elsewhere.example.org:443");
      assert.ok(res.structuredContent.blocked[0].clause);
    });

    await t.test("session_put and session_get", async () => {
      const session = "ts-" + name.replace(/[^A-Za-z0-9]/g, "");
      let res = await client.callTool({ name: "session_put", arguments: { session, key: "k", value: "v1", profile: "quick" } });
      assert.ok(!res.isError, JSON.stringify(res));
      res = await client.callTool({ name: "session_get", arguments: { session, key: "k" } });
      assert.equal(res.structuredContent.value, "v1");
    });

    await t.test("arguments that fail the schema", async () => {
      const res = await client.callTool({ name: "run_javascript", arguments: { intent: "compute" } });
      assert.equal(res.isError, true);
    });

    await t.test("an unknown tool is a protocol error", async () => {
      await assert.rejects(client.callTool({ name: "no_such_tool", arguments: {} }), /no_such_tool/);
    });
  });

  test(`a refused call over ${name}`, async (t) => {
    const client = await connect(make(env.LEASH_LIMITED_KEY));
    t.after(() => client.close());
    const res = await client.callTool({
      name: "run_javascript",
      arguments: { code: 'export default { fetch() { return new Response("x") } }', intent: "call_api" },
    });
    assert.equal(res.isError, true);
    assert.equal(res.structuredContent.error.code, "profile_not_allowed");
  });
}
