// A thin client of leash's HTTP API (docs/api.md). The types come from
// docs/openapi.yaml through openapi-typescript (src/schema.d.ts, generated:
// `npm run generate`); this file only wraps fetch. No runtime dependencies.
import type { components, operations } from "./schema.js";

type Schemas = components["schemas"];
export type Lease = Schemas["Lease"];
export type LeaseRequest = Schemas["LeaseRequest"];
export type TaskRequest = Schemas["TaskRequest"];
export type TaskResult = Schemas["TaskResult"];
export type Task = Schemas["Task"];
export type TaskState = Schemas["TaskState"];
export type ModuleRef = Schemas["ModuleRef"];
export type Capabilities = Schemas["Capabilities"];
export type ReceiptProof = Schemas["ReceiptProof"];
export type LeashEvent = Schemas["Event"];
export type Cluster = Schemas["Cluster"];
export type ErrorBody = Schemas["ErrorBody"];
export type TaskList = operations["listTasks"]["responses"][200]["content"]["application/json"];
export type EventList = operations["listEvents"]["responses"][200]["content"]["application/json"];
export type EventQuery = NonNullable<operations["listEvents"]["parameters"]["query"]>;
export type TaskListQuery = NonNullable<operations["listTasks"]["parameters"]["query"]>;

/** LeashError is a refused call: the API's stable code, its message and the HTTP status. */
export class LeashError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds the node asked the client to wait (Retry-After), when it did. */
  readonly retryAfter?: number;
  constructor(status: number, code: string, message: string, retryAfter?: number) {
    super(`${code}: ${message}`);
    this.name = "LeashError";
    this.status = status;
    this.code = code;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

export interface ClientOptions {
  /** The node's base URL, e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  /** The credential: an API key (lsk_…), the admin token, or a lease token. */
  token?: string;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface WaitOptions {
  /** Give up after this many milliseconds (default 60 000). */
  timeoutMs?: number;
  /** First poll interval (default 100 ms), doubling up to 2 s. */
  intervalMs?: number;
  signal?: AbortSignal;
}

const finalStates: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled", "dead"]);

/** Client of one leash node. Any node answers any call. */
export class LeashClient {
  readonly baseUrl: string;
  readonly token: string | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.token = opts.token;
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** A client for the same node with another credential (a lease token, say). */
  withToken(token: string): LeashClient {
    return new LeashClient({ baseUrl: this.baseUrl, token, fetch: this.fetchImpl });
  }

  private async raw(method: string, path: string, init: { body?: BodyInit; contentType?: string; token?: string; signal?: AbortSignal; accept?: string } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    const token = init.token ?? this.token;
    if (token) headers["Authorization"] = `Bearer ${token}`;
    if (init.contentType) headers["Content-Type"] = init.contentType;
    if (init.accept) headers["Accept"] = init.accept;
    const reqInit: RequestInit = { method, headers };
    if (init.body !== undefined) reqInit.body = init.body;
    if (init.signal) reqInit.signal = init.signal;
    const resp = await this.fetchImpl(this.baseUrl + path, reqInit);
    if (resp.status >= 400) throw await errorOf(resp);
    return resp;
  }

  private async json<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
    const init: { body?: BodyInit; contentType?: string; token?: string } = {};
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.contentType = "application/json";
    }
    if (token !== undefined) init.token = token;
    const resp = await this.raw(method, path, init);
    if (resp.status === 204) return undefined as T;
    return (await resp.json()) as T;
  }

  // Leases.

  /** Issue a lease (201): a tenant key issues for its own tenant. */
  issueLease(req: LeaseRequest): Promise<Lease> {
    return this.json<Lease>("POST", "/v1/leases", req);
  }
  getLease(id: string): Promise<Lease> {
    return this.json<Lease>("GET", `/v1/leases/${encodeURIComponent(id)}`);
  }
  /** Revoke a lease on every node; its running tasks end terminated:revoked. */
  async revokeLease(id: string, reason?: string): Promise<void> {
    const q = reason ? `?reason=${encodeURIComponent(reason)}` : "";
    await this.json<void>("DELETE", `/v1/leases/${encodeURIComponent(id)}${q}`);
  }

  /** What the caller's tenant may do: intents, profiles and their egress allow-lists, budget. */
  capabilities(tenant?: string): Promise<Capabilities> {
    const q = tenant ? `?tenant=${encodeURIComponent(tenant)}` : "";
    return this.json<Capabilities>("GET", `/v1/capabilities${q}`);
  }

  // Tasks.

  /** Run an interactive task under a lease token and return its result, whatever the outcome. */
  async runTask(leaseToken: string, req: TaskRequest): Promise<TaskResult> {
    const resp = await this.raw("POST", "/v1/tasks", { body: JSON.stringify(req), contentType: "application/json", token: leaseToken });
    if (resp.status !== 200) throw new LeashError(resp.status, "unexpected_status", `expected 200 for an interactive task, got ${resp.status} (is the lease bulk?)`);
    return (await resp.json()) as TaskResult;
  }

  /** Queue a bulk task under a bulk lease token (202) and return its id. */
  async submitBulk(leaseToken: string, req: TaskRequest): Promise<string> {
    const resp = await this.raw("POST", "/v1/tasks", { body: JSON.stringify(req), contentType: "application/json", token: leaseToken });
    const body = (await resp.json()) as { task_id: string };
    if (resp.status !== 202) throw new LeashError(resp.status, "unexpected_status", `expected 202 for a bulk task, got ${resp.status} (is the lease interactive?)`);
    return body.task_id;
  }

  getTask(id: string): Promise<Task> {
    return this.json<Task>("GET", `/v1/tasks/${encodeURIComponent(id)}`);
  }

  listTasks(q: TaskListQuery = {}): Promise<TaskList> {
    return this.json<TaskList>("GET", `/v1/tasks${query(q)}`);
  }

  /** Cancel a task: a queued bulk task at once, a running one ends terminated:cancelled. */
  cancelTask(id: string): Promise<Task> {
    return this.json<Task>("DELETE", `/v1/tasks/${encodeURIComponent(id)}`);
  }

  /** Poll a task until it reaches a final state (succeeded, failed, cancelled, dead). */
  async waitForTask(id: string, opts: WaitOptions = {}): Promise<Task> {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    let interval = opts.intervalMs ?? 100;
    for (;;) {
      const t = await this.getTask(id);
      if (finalStates.has(t.state)) return t;
      if (Date.now() + interval > deadline) throw new LeashError(0, "wait_timeout", `task ${id} is still ${t.state}`);
      await sleep(interval, opts.signal);
      interval = Math.min(interval * 2, 2000);
    }
  }

  // Modules.

  /** Store a module: wasm bytes, or JavaScript source. */
  async putModule(module: Uint8Array | string, opts: { tenant?: string } = {}): Promise<ModuleRef> {
    const js = typeof module === "string";
    const q = opts.tenant ? `?tenant=${encodeURIComponent(opts.tenant)}` : "";
    const resp = await this.raw("PUT", `/v1/modules${q}`, { body: js ? module : new Blob([module as BlobPart]), contentType: js ? "application/javascript" : "application/wasm" });
    return (await resp.json()) as ModuleRef;
  }

  async deleteModule(digest: string, opts: { tenant?: string } = {}): Promise<void> {
    const q = opts.tenant ? `?tenant=${encodeURIComponent(opts.tenant)}` : "";
    await this.json<void>("DELETE", `/v1/modules/${encodeURIComponent(digest)}${q}`);
  }

  // Events.

  events(q: EventQuery = {}): Promise<EventList> {
    return this.json<EventList>("GET", `/v1/events${query(q)}`);
  }

  /** Follow the live event stream (SSE) until the signal aborts or the node ends it. */
  async *streamEvents(q: EventQuery = {}, opts: { signal?: AbortSignal } = {}): AsyncGenerator<LeashEvent> {
    const init: { accept: string; signal?: AbortSignal } = { accept: "text/event-stream" };
    if (opts.signal) init.signal = opts.signal;
    const resp = await this.raw("GET", `/v1/events/stream${query(q)}`, init);
    if (!resp.body) return;
    const decoder = new TextDecoder();
    let buf = "";
    const reader = resp.body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const message = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let type = "";
          const data: string[] = [];
          for (const line of message.split("\n")) {
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (type === "lagged") throw new LeashError(0, "stream_lagged", "the client fell behind the event stream; reconnect with since or Last-Event-ID");
          if (data.length > 0) yield JSON.parse(data.join("\n")) as LeashEvent;
        }
      }
    } finally {
      reader.releaseLock();
      await resp.body.cancel().catch(() => {});
    }
  }

  // Ledger.

  /** The newest co-signed checkpoint (a signed note). */
  async checkpoint(): Promise<string> {
    return (await this.raw("GET", "/v1/ledger/checkpoint")).text();
  }
  receipt(index: number): Promise<ReceiptProof> {
    return this.json<ReceiptProof>("GET", `/v1/ledger/receipts/${index}`);
  }
  /** Decode the signed receipt inside a receipt proof (the DSSE payload). */
  static receiptPayload(proof: ReceiptProof): Record<string, unknown> {
    const bin = atob(proof.envelope.payload);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  }
  consistency(oldSize: number, newSize: number): Promise<operations["getConsistency"]["responses"][200]["content"]["application/json"]> {
    return this.json("GET", `/v1/ledger/consistency?old=${oldSize}&new=${newSize}`);
  }

  cluster(): Promise<Cluster> {
    return this.json<Cluster>("GET", "/v1/cluster");
  }
}

async function errorOf(resp: Response): Promise<LeashError> {
  const text = await resp.text();
  const ra = resp.headers.get("Retry-After");
  const retryAfter = ra !== null && /^\d+$/.test(ra) ? Number(ra) : undefined;
  try {
    const body = JSON.parse(text) as Partial<ErrorBody>;
    if (body.error && typeof body.error.code === "string") {
      return new LeashError(resp.status, body.error.code, body.error.message ?? "", retryAfter);
    }
  } catch {
    // not JSON: fall through
  }
  return new LeashError(resp.status, `http_${resp.status}`, text.slice(0, 512), retryAfter);
}

function query(q: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v !== undefined && v !== "") p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });
}
