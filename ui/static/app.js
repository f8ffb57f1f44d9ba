// leash usage dashboard (docs/budgets.md, "The dashboard"). Every figure
// comes from the node's authenticated API with the key the user typed,
// kept in this tab's sessionStorage. Text from the API is set with
// textContent only, never parsed as HTML.
"use strict";

const KEY = "leash.key";
const charts = {};
const state = { key: "", staff: false, tenant: "" };

// What went wrong in the page (a CSP refusal, an uncaught error), for
// the browser test to read.
window.leashProblems = [];
document.addEventListener("securitypolicyviolation", (e) => window.leashProblems.push("csp: " + e.violatedDirective + " " + e.blockedURI));
window.addEventListener("error", (e) => window.leashProblems.push("error: " + e.message));

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + state.key }, cache: "no-store" });
  const body = await resp.text();
  let json = null;
  try { json = JSON.parse(body); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const e = (json && json.error) || {};
    throw new APIError(resp.status, e.code || "http_" + resp.status, e.message || body.slice(0, 200));
  }
  return json;
}

function fmt(n) { return Number(n || 0).toLocaleString("en-US"); }
function money(n) { return Number(n || 0).toFixed(6); }

function fillTable(id, rows) {
  const tb = $(id).tBodies[0];
  tb.replaceChildren();
  for (const cells of rows) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? wrapTd(c) : el("td", c));
    tb.appendChild(tr);
  }
}
function wrapTd(node) { const td = document.createElement("td"); td.appendChild(node); return td; }

function chart(id, config) {
  if (charts[id]) charts[id].destroy();
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  charts[id] = new Chart($(id), config);
}

const palette = ["#1a56db", "#0e9f6e", "#c27803", "#9061f9", "#e02424", "#0694a2", "#ff5a1f", "#6b7280"];

// signIn finds out who the key is: staff list every tenant (and switch
// between them); a tenant's key sees its own.
async function signIn(key) {
  state.key = key;
  try {
    const t = await api("/v1/tenants");
    state.staff = true;
    const names = (t.tenants || []).map((x) => x.name).sort();
    const sel = $("tenant-select");
    sel.replaceChildren(...names.map((n) => { const o = el("option", n); o.value = n; return o; }));
    $("tenant-pick").hidden = false;
    $("blast").hidden = false;
    state.tenant = names[0] || "";
    $("who").textContent = "staff";
  } catch (e) {
    if (!(e instanceof APIError) || e.status !== 403) throw e;
    const c = await api("/v1/capabilities");
    state.staff = false;
    state.tenant = c.tenant;
    $("tenant-pick").hidden = true;
    $("blast").hidden = true;
    $("who").textContent = "tenant " + c.tenant;
  }
  sessionStorage.setItem(KEY, key);
  $("signin").hidden = true;
  $("dash").hidden = false;
  $("signout").hidden = false;
  await load();
}

async function load() {
  const t = encodeURIComponent(state.tenant);
  $("status").textContent = "loading " + state.tenant + "…";
  document.body.dataset.loaded = "";
  const [budget, usage, calls, blocked, tasks] = await Promise.all([
    api("/v1/budgets/" + t),
    api("/v1/usage?tenant=" + t + "&group_by=profile,day"),
    api("/v1/events?tenant=" + t + "&type=tool_call_attempted&since=24h&limit=1000&order=desc"),
    api("/v1/events?tenant=" + t + "&type=tool_call_blocked&since=24h&limit=1000&order=desc"),
    api("/v1/events?tenant=" + t + "&type=execution_completed,execution_terminated&limit=20&order=desc"),
  ]);
  showBudget(budget);
  showUsage(usage);
  showDestinations(calls.events || []);
  showBlocked(blocked.events || []);
  showTasks(tasks.events || []);
  $("status").textContent = "tenant " + state.tenant + ", as of " + new Date().toISOString();
  document.body.dataset.loaded = state.tenant;
}

function showBudget(b) {
  $("today").textContent = b.day;
  $("warn-pct").textContent = b.warn_percent;
  $("envelope-source").textContent = b.source;
  $("resets-at").textContent = b.resets_at;
  const dims = b.dimensions || [];
  fillTable("budget-table", dims.map((d) => {
    const st = d.exhausted ? "exhausted" : d.warned ? "warned" : "";
    return [d.name, fmt(d.used), d.limit ? fmt(d.limit) : "unlimited", d.limit ? d.percent + "%" : "–", el("span", st, st)];
  }));
  for (const [i, d] of dims.entries()) $("budget-table").tBodies[0].rows[i].dataset.dim = d.name;
  const n = dims.length;
  chart("chart-budget", {
    type: "bar",
    data: {
      labels: dims.map((d) => d.name),
      datasets: [
        { label: "% of the daily limit used", data: dims.map((d) => (d.limit ? Math.min(d.percent, 150) : 0)),
          backgroundColor: dims.map((d) => (d.exhausted || d.percent >= 100 ? "#e02424" : d.percent >= b.warn_percent ? "#c27803" : "#1a56db")) },
        { type: "line", label: b.warn_percent + "% warning", data: Array(n).fill(b.warn_percent), borderColor: "#c27803", borderDash: [6, 4], pointRadius: 0, fill: false },
        { type: "line", label: "100% cap", data: Array(n).fill(100), borderColor: "#e02424", pointRadius: 0, fill: false },
      ],
    },
    options: { scales: { y: { min: 0, suggestedMax: 110, title: { display: true, text: "% of limit" } } } },
  });
}

function showUsage(u) {
  $("usage-from").textContent = u.from;
  $("usage-to").textContent = u.to;
  const tot = u.total.usage;
  $("total-tasks").textContent = tot.tasks;
  $("total-cpu").textContent = tot.cpu_ms;
  $("total-egress").textContent = tot.egress_bytes_in + tot.egress_bytes_out;
  $("total-tool-calls").textContent = tot.tool_calls;
  $("total-cost").textContent = u.total.cost ? money(u.total.cost.total) : "–";
  $("currency").textContent = u.currency || "(no price list)";
  // Days of the range, and per profile a series.
  const days = [];
  for (let d = new Date(u.from + "T00:00:00Z"); d <= new Date(u.to + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1)) days.push(d.toISOString().slice(0, 10));
  const byProfile = new Map();
  for (const r of u.rows || []) {
    let p = byProfile.get(r.profile);
    if (!p) { p = { cost: {}, tasks: {}, sum: {} }; byProfile.set(r.profile, p); }
    p.cost[r.day] = r.cost ? r.cost.total : 0;
    p.tasks[r.day] = r.usage.tasks;
    for (const [k, v] of Object.entries(r.usage)) p.sum[k] = (p.sum[k] || 0) + v;
    p.sum.cost = (p.sum.cost || 0) + (r.cost ? r.cost.total : 0);
  }
  const profiles = [...byProfile.keys()].sort();
  const series = (field) => profiles.map((p, i) => ({ label: p, data: days.map((d) => byProfile.get(p)[field][d] || 0), backgroundColor: palette[i % palette.length], stack: "s" }));
  chart("chart-cost", { type: "bar", data: { labels: days, datasets: series("cost") },
    options: { plugins: { title: { display: true, text: "cost per day (" + (u.currency || "no price list") + ")" } }, scales: { x: { stacked: true }, y: { stacked: true } } } });
  chart("chart-tasks", { type: "bar", data: { labels: days, datasets: series("tasks") },
    options: { plugins: { title: { display: true, text: "tasks per day" } }, scales: { x: { stacked: true }, y: { stacked: true } } } });
  fillTable("profile-table", profiles.map((p) => {
    const s = byProfile.get(p).sum;
    return [p, fmt(s.tasks), fmt(s.cpu_ms), fmt((s.egress_bytes_in || 0) + (s.egress_bytes_out || 0)), fmt(s.tool_calls), fmt(s.blocked_calls), u.currency ? money(s.cost) : "–"];
  }));
}

function showDestinations(evs) {
  const m = new Map();
  for (const e of evs) {
    const d = (e.data && e.data.destination) || "(" + ((e.data && e.data.tool) || "call") + ")";
    const x = m.get(d) || { calls: 0, out: 0, in: 0 };
    x.calls++; x.out += e.data.bytes_sent || 0; x.in += e.data.bytes_received || 0;
    m.set(d, x);
  }
  const top = [...m.entries()].sort((a, b) => (b[1].out + b[1].in) - (a[1].out + a[1].in)).slice(0, 10);
  fillTable("dest-table", top.length ? top.map(([d, x]) => [d, fmt(x.calls), fmt(x.out), fmt(x.in)]) : [["no outbound calls", "", "", ""]]);
}

function showBlocked(evs) {
  const m = new Map();
  for (const e of evs) { const c = (e.data && e.data.clause) || "unknown"; m.set(c, (m.get(c) || 0) + 1); }
  const rows = [...m.entries()].sort((a, b) => b[1] - a[1]);
  fillTable("blocked-table", rows.length ? rows.map(([c, n]) => [c, fmt(n)]) : [["no blocked calls", ""]]);
  chart("chart-blocked", { type: "bar", data: { labels: rows.map((r) => r[0]), datasets: [{ label: "blocked calls", data: rows.map((r) => r[1]), backgroundColor: "#e02424" }] },
    options: { indexAxis: "y" } });
}

function showTasks(evs) {
  fillTable("tasks-table", evs.map((e) => {
    const d = e.data || {};
    const outcome = e.type === "execution_terminated" ? "terminated:" + d.reason : d.outcome;
    let receipt = "pending";
    if (d.receipt_index !== undefined && d.receipt_index !== null) {
      receipt = el("button", "#" + d.receipt_index, "link");
      receipt.dataset.receipt = d.receipt_index;
      receipt.addEventListener("click", () => showReceipt(d.receipt_index));
    }
    return [e.time, e.leashtask || "", d.profile || "", outcome, fmt(d.cpu_ms), receipt];
  }));
}

async function showReceipt(index) {
  const pre = $("receipt");
  pre.hidden = false;
  try {
    pre.textContent = JSON.stringify(await api("/v1/ledger/receipts/" + encodeURIComponent(index)), null, 2);
  } catch (e) {
    pre.textContent = "receipt " + index + ": " + e.message;
  }
}

// The blast-radius map (staff): GET /v1/runbook/blast-radius with the
// selector, drawn as SVG in four columns, tenant → profile → module →
// destination; an edge's width grows with its count of receipts.
const SVGNS = "http://www.w3.org/2000/svg";
const BLAST_COLUMNS = ["tenant", "profile", "module", "destination"];
const BLAST_MAX_PER_COLUMN = 80;

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function blastQuery() {
  const q = new URLSearchParams();
  const kind = $("blast-kind").value, value = $("blast-value").value.trim(), hours = Number($("blast-window").value || 0);
  if (kind && value) q.set(kind, value);
  if (hours) q.set("since", new Date(Date.now() - hours * 3600e3).toISOString());
  return q.toString();
}

async function blast() {
  const seq = (state.blastSeq = (state.blastSeq || 0) + 1);
  document.body.dataset.blast = "";
  $("blast-summary").textContent = "mapping…";
  const q = blastQuery();
  try {
    const b = await api("/v1/runbook/blast-radius?" + q);
    if (seq !== state.blastSeq) return;
    const n = (m) => Object.keys(m || {}).length;
    $("blast-summary").textContent = fmt(b.matched) + " receipts matched, " + fmt(b.verified) + " verified, " + fmt(b.pending) +
      " pending (checkpoint of " + fmt(b.checkpoint_size) + "): " + n(b.tenants) + " tenants, " + n(b.leases) + " leases, " +
      n(b.profiles) + " profiles, " + n(b.modules) + " modules, " + n(b.destinations) + " destinations; egress " +
      fmt(b.egress_bytes_out) + " bytes out, " + fmt(b.egress_bytes_in) + " in; " + fmt(b.blocked_attempts) + " blocked attempts; " + b.ms + " ms.";
    $("blast-summary").dataset.matched = b.matched;
    $("blast-summary").dataset.verified = b.verified;
    drawBlast(b.graph || []);
  } catch (e) {
    if (seq !== state.blastSeq) return;
    $("blast-summary").textContent = e instanceof APIError ? e.code + ": " + e.message : String(e);
    $("blast-graph").replaceChildren();
  }
  document.body.dataset.blast = seq + ":" + q;
}

function blastLabel(id) {
  const i = id.indexOf(":");
  const kind = id.slice(0, i), name = id.slice(i + 1);
  if (kind === "module" && name.startsWith("sha256:")) return name.slice(0, 19) + "…";
  return name.length > 30 ? name.slice(0, 29) + "…" : name;
}

function drawBlast(edges) {
  const box = $("blast-graph");
  box.replaceChildren();
  if (!edges.length) { box.appendChild(el("p", "nothing matched", "note")); return; }
  const cols = BLAST_COLUMNS.map(() => new Set());
  for (const e of edges) for (const id of [e.from, e.to]) {
    const c = BLAST_COLUMNS.indexOf(id.slice(0, id.indexOf(":")));
    if (c >= 0) cols[c].add(id);
  }
  const pos = new Map();
  let hidden = 0, rows = 0;
  const colW = 250, nodeW = 200, rowH = 26, top = 28;
  cols.forEach((set, c) => {
    const ids = [...set].sort();
    hidden += Math.max(0, ids.length - BLAST_MAX_PER_COLUMN);
    ids.slice(0, BLAST_MAX_PER_COLUMN).forEach((id, r) => pos.set(id, { x: 10 + c * colW, y: top + r * rowH }));
    rows = Math.max(rows, Math.min(ids.length, BLAST_MAX_PER_COLUMN));
  });
  const width = 10 + BLAST_COLUMNS.length * colW, height = top + rows * rowH + 10;
  const s = svgEl("svg", { width, height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "blast-radius map", id: "blast-svg" });
  BLAST_COLUMNS.forEach((k, c) => s.appendChild(svgEl("text", { x: 10 + c * colW, y: 16, class: "bhead" }, k)));
  const maxCount = Math.max(...edges.map((e) => e.count));
  for (const e of edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + nodeW, y1 = a.y + 10, x2 = b.x, y2 = b.y + 10, mx = (x1 + x2) / 2;
    const p = svgEl("path", { d: `M${x1} ${y1} C${mx} ${y1} ${mx} ${y2} ${x2} ${y2}`, class: "bedge",
      "stroke-width": (1 + 5 * Math.log1p(e.count) / Math.log1p(maxCount)).toFixed(2) });
    p.dataset.from = e.from; p.dataset.to = e.to; p.dataset.count = e.count;
    p.appendChild(svgEl("title", {}, e.from + " → " + e.to + ": " + e.count + " receipts"));
    s.appendChild(p);
  }
  for (const [id, q] of pos) {
    const g = svgEl("g", { class: "bnode k-" + id.slice(0, id.indexOf(":")) });
    g.dataset.node = id;
    g.appendChild(svgEl("title", {}, id));
    g.appendChild(svgEl("rect", { x: q.x, y: q.y, width: nodeW, height: 20, rx: 4 }));
    g.appendChild(svgEl("text", { x: q.x + 6, y: q.y + 14 }, blastLabel(id)));
    s.appendChild(g);
  }
  box.appendChild(s);
  if (hidden) box.appendChild(el("p", hidden + " more nodes not drawn (at most " + BLAST_MAX_PER_COLUMN + " a column): narrow the selector", "note"));
}

function signOut() {
  sessionStorage.removeItem(KEY);
  state.key = "";
  location.reload();
}

function fail(e) {
  const msg = e instanceof APIError ? e.code + ": " + e.message : String(e);
  if ($("dash").hidden) $("signin-error").textContent = msg;
  else $("status").textContent = msg;
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    signIn($("key").value.trim()).catch(fail);
  });
  $("tenant-select").addEventListener("change", (ev) => { state.tenant = ev.target.value; load().catch(fail); });
  $("signout").addEventListener("click", signOut);
  $("blast-form").addEventListener("submit", (ev) => { ev.preventDefault(); blast().catch(fail); });
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved).catch(fail);
});
