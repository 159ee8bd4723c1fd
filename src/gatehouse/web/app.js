// Gatehouse admin UI: plain DOM, no framework, no build step, no inline script (see the CSP).
// Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

const state = { csrf: null, role: null };
const canWrite = () => state.role === "admin";

// ---- DOM helpers ------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function field(id, label, attrs) {
  return el("div", {}, el("label", { for: id }, label), el("input", { id, name: id, ...attrs }),
    el("p", { class: "error", id: `${id}-error`, role: "alert" }));
}

function table(columns, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, columns.map(([, title]) => el("th", { scope: "col" }, title)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, columns.map(([key]) => el("td", {}, typeof key === "function" ? key(r) : fmt(r[key])))))));
}

function fmt(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
  if (Array.isArray(v)) return v.join(", ");
  return String(v);
}

function when(ts) { return ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 16) : "—"; }

// A bar chart as SVG, drawn here: a few dozen lines instead of a vendored charting library.
function barChart(rows, labelKey, valueKey, title) {
  const ns = "http://www.w3.org/2000/svg";
  const w = 320, barH = 18, pad = 96, h = Math.max(30, rows.length * (barH + 6) + 10);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart"); svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w); svg.setAttribute("height", h);  // drawn at its own size: one bar is not blown up
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", title);
  const max = Math.max(1e-9, ...rows.map((r) => Number(r[valueKey]) || 0));
  rows.forEach((r, i) => {
    const y = 5 + i * (barH + 6), v = Number(r[valueKey]) || 0, bw = ((w - pad - 50) * v) / max;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 0); label.setAttribute("y", y + 13); label.textContent = String(r[labelKey] ?? "—").slice(0, 14);
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("class", "bar"); bar.setAttribute("x", pad); bar.setAttribute("y", y);
    bar.setAttribute("width", Math.max(1, bw)); bar.setAttribute("height", barH);
    const num = document.createElementNS(ns, "text");
    num.setAttribute("x", pad + bw + 6); num.setAttribute("y", y + 13); num.textContent = fmt(v);
    svg.append(label, bar, num);
  });
  return svg;
}

// ---- API --------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status; this.param = e.param || null; this.code = e.code || null;
  }
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = state.csrf || "";
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  const data = text && (resp.headers.get("content-type") || "").includes("json") ? JSON.parse(text) : text;
  if (resp.status === 401 && path !== "/ui/login") { showSignIn(); throw new ApiError(401, data); }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function showError(where, err) {
  where.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
}

// ---- sign in ----------------------------------------------------------------------------------

function showSignIn() {
  state.csrf = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("view").replaceChildren();
  const form = document.getElementById("sign-in");
  form.hidden = false;
  document.getElementById("admin-key").focus();
  api("GET", "/ui/login").then((o) => { document.getElementById("token-sign-in").hidden = !o.methods.includes("token"); }).catch(() => {});
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("admin-key"), token = document.getElementById("id-token");
  const error = document.getElementById("sign-in-error");
  try {
    const session = await api("POST", "/ui/login", token.value ? { token: token.value } : { key: input.value });
    input.value = ""; token.value = "";  // the key or token goes no further than this one request
    error.textContent = "";
    start(session);
  } catch (err) { error.textContent = err.message; }
}

function start(session) {
  state.csrf = session.csrf;
  state.role = session.role;
  document.getElementById("role-badge").hidden = canWrite();
  document.querySelector('#nav a[href="#/playground"]').hidden = !canWrite();  // it makes a key
  document.getElementById("sign-in").hidden = true;
  document.getElementById("nav").hidden = false;
  if (!location.hash) location.hash = "#/overview"; else route();
}

// ---- pages ------------------------------------------------------------------------------------

async function overview(view) {
  const range = new URLSearchParams(location.hash.split("?")[1] || "").get("since") || "1d";
  const pick = el("select", { id: "range", "aria-label": "Time range", on: { change: (e) => { location.hash = `#/overview?since=${e.target.value}`; } } },
    [["1h", "last hour"], ["1d", "last day"], ["30d", "last 30 days"]].map(([v, t]) => el("option", { value: v, selected: v === range }, t)));
  view.append(el("h1", {}, "Overview"), el("div", { class: "row" }, el("div", {}, el("label", { for: "range" }, "Range"), pick)));
  const [byModel, byGroup, byConsumer, byDay] = await Promise.all(["model", "group", "consumer", "day"].map(
    (by) => api("GET", `/admin/usage?by=${by}&since=${range}`)));
  const t = byModel.total;
  view.append(el("div", { class: "grid" },
    [["Requests", byModel.data.reduce((a, r) => a + r.requests, 0)], ["Tokens in", t.input_tokens],
     ["Tokens out", t.output_tokens], ["Cost (USD)", fmt(t.cost_usd)], ["Errors", t.errors]].map(
      ([k, v]) => el("div", { class: "card" }, el("div", { class: "muted" }, k), el("div", { class: "stat" }, fmt(v))))));
  const chart = (title, data, key, value) => el("div", { class: "card" }, el("h2", {}, title), barChart(data, key, value, title));
  view.append(el("div", { class: "grid" },
    chart("Requests by model", byModel.data, "model", "requests"),
    chart("Tokens by group", byGroup.data.map((r) => ({ ...r, tokens: r.input_tokens + r.output_tokens })), "group", "tokens"),
    chart("Cost by day (USD)", byDay.data, "day", "cost_usd"),
    chart("Top consumers by requests", byConsumer.data.slice().sort((a, b) => b.requests - a.requests).slice(0, 10), "consumer", "requests")));
}

function keySnippet(key) {
  const base = location.origin;
  return [`export ANTHROPIC_BASE_URL=${base} ANTHROPIC_AUTH_TOKEN=${key}   # Claude Code`,
    `export OPENAI_BASE_URL=${base}/v1 OPENAI_API_KEY=${key}   # OpenAI SDK, Codex`].join("\n");
}

function showNewKey(where, created) {
  const copy = el("button", { type: "button", class: "secondary", on: { click: () => navigator.clipboard.writeText(created.key).then(() => { copy.textContent = "Copied"; }) } }, "Copy");
  where.replaceChildren(el("div", { class: "card", id: "new-key" },
    el("h2", {}, `New key for ${created.consumer}`), el("p", {}, "Shown once. It cannot be shown again."),
    el("div", { class: "secret", id: "new-key-value" }, created.key), copy, el("pre", {}, keySnippet(created.key))));
}

async function consumers(view) {
  const [cons, keys, groups] = await Promise.all([api("GET", "/admin/consumers"), api("GET", "/admin/keys"), api("GET", "/admin/groups")]);
  const fresh = el("div", {});
  const search = el("input", { id: "consumer-search", type: "search", placeholder: "Filter by name" });
  const createForm = el("form", { class: "card", id: "create-consumer" }, el("h2", {}, "New consumer"),
    el("div", { class: "row" }, field("consumer-name", "Name", { required: true }),
      el("div", {}, el("label", { for: "consumer-group" }, "Group"), el("select", { id: "consumer-group" }, groups.data.map((g) => el("option", { value: g.name }, g.name))),
        el("p", { class: "error", id: "consumer-group-error" }))),
    el("button", { type: "submit" }, "Create consumer"));
  createForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = document.getElementById("consumer-name-error");
    try {
      await api("POST", "/admin/consumers", { name: document.getElementById("consumer-name").value, group: document.getElementById("consumer-group").value });
      route();
    } catch (x) { err.textContent = x.message; }
  });
  const keysOf = (name) => keys.data.filter((k) => k.consumer === name);
  const rows = el("tbody", {});
  const render = () => {
    const q = search.value.toLowerCase();
    rows.replaceChildren(...cons.data.filter((c) => c.name.toLowerCase().includes(q)).map((c) => el("tr", {},
      el("td", {}, c.name), el("td", {}, fmt(c.group)), el("td", {}, c.source || "—"),
      el("td", {}, keysOf(c.name).map((k) => el("div", {}, `${k.prefix}… ${k.active ? "active" : "inactive"} `,
        k.active && canWrite() ? el("button", { type: "button", class: "secondary", "data-revoke": k.id, "data-consumer": c.name, on: { click: async () => { await api("POST", `/admin/keys/${k.id}/revoke`); route(); } } }, `Revoke ${k.prefix}`) : null,
        k.active && canWrite() ? el("button", { type: "button", class: "secondary", on: { click: async () => { showNewKey(fresh, await api("POST", `/admin/keys/${k.id}/rotate`, { grace_seconds: 3600 })); } } }, "Rotate (1 h grace)") : null))),
      el("td", {}, !canWrite() ? null : el("button", { type: "button", "data-new-key": c.name, on: { click: async () => {
        try { const made = await api("POST", "/admin/keys", { consumer: c.name }); keys.data.push({ ...made, key: undefined }); render(); showNewKey(fresh, made); } catch (x) { showError(fresh, x); } } } }, "New key")))));
  };
  search.addEventListener("input", render);
  render();
  view.append(el("h1", {}, "Consumers & keys"), fresh, ...(canWrite() ? [createForm] : []),
    el("div", { class: "card" }, el("label", { for: "consumer-search" }, "Search"), search,
      el("table", {}, el("thead", {}, el("tr", {}, ["Consumer", "Group", "Defined in", "Keys", ""].map((h) => el("th", { scope: "col" }, h)))), rows)));
}

const LIMITS = [["tokens_per_minute", "Tokens per minute"], ["requests_per_minute", "Requests per minute"],
  ["max_concurrent", "Max concurrent"], ["max_tokens", "max_tokens cap"], ["budget_usd_per_day", "Budget USD / day"],
  ["budget_usd_per_month", "Budget USD / month"]];

// Spend against a group's budgets: the ledger's cost since 00:00 UTC and since the 1st of the month.
// With limit_scope "consumer" each member has the budget, so the member who spent most is shown.
async function budgetLine(g) {
  if (typeof g.budget_usd_per_day !== "number" && typeof g.budget_usd_per_month !== "number") return el("p", { class: "muted" }, "No budget set.");
  const now = new Date().toISOString(), q = `by=consumer&group=${encodeURIComponent(g.name)}&since=`;
  const [day, month] = await Promise.all([api("GET", `/admin/usage?${q}${now.slice(0, 10)}`), api("GET", `/admin/usage?${q}${now.slice(0, 7)}-01`)]);
  const spent = (rows) => (g.limit_scope === "group" ? rows.total.cost_usd || 0 : Math.max(0, ...rows.data.map((r) => r.cost_usd)));
  const part = (label, rows, budget) => (typeof budget !== "number" ? null : `${label}: $${spent(rows).toFixed(4)} / $${Number(budget).toFixed(2)}`);
  const who = g.limit_scope === "group" ? "shared by the group" : "each consumer; the highest shown";
  return el("p", { class: "spend", "data-spend": g.name }, [part("Spent today", day, g.budget_usd_per_day), part("this month", month, g.budget_usd_per_month)].filter(Boolean).join(" · "), ` (budget ${who})`);
}

// A group's policy routing (docs/policy-routing.md): its default model and its data class.
const ROUTE_FIELDS = [["default_model", "Default model (requests without one)"], ["data_class", "Data class (compliance)"]];

async function groups(view) {
  const data = await api("GET", "/admin/groups");
  const spend = await Promise.all(data.data.map((g) => budgetLine(g).catch((x) => el("p", { class: "error" }, x.message))));
  const create = el("form", { class: "card", id: "create-group" }, el("h2", {}, "New group"),
    el("div", { class: "row" }, field("group-name", "Name", { required: true }), field("group-models", "Models (comma-separated)", { value: "*" })),
    el("button", { type: "submit" }, "Create group"));
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/admin/groups", { name: document.getElementById("group-name").value,
        models: document.getElementById("group-models").value.split(",").map((x) => x.trim()).filter(Boolean) });
      route();
    } catch (x) { document.getElementById(x.param === "models" ? "group-models-error" : "group-name-error").textContent = x.message; }
  });
  view.append(el("h1", {}, "Groups"), ...(canWrite() ? [create] : []));
  for (const [i, g] of data.data.entries()) {
    const locked = g.source === "config" || !canWrite();
    const id = (k) => `g-${g.name}-${k}`.replace(/[^A-Za-z0-9_-]/g, "_");
    const form = el("form", { class: "card", "data-group": g.name }, el("h2", {}, g.name, g.source === "config" ? el("span", { class: "muted" }, " (config file: read-only)") : null),
      spend[i],
      field(id("models"), "Models (comma-separated, patterns allowed)", { value: (g.models || []).join(", "), readonly: locked }),
      el("div", { class: "row" }, LIMITS.map(([k, label]) => field(id(k), label, { value: g[k] ?? "", inputmode: "decimal", readonly: locked }))),
      el("div", { class: "row" }, ROUTE_FIELDS.map(([k, label]) => field(id(k), label, { value: g[k] ?? "", readonly: locked }))),
      locked ? null : el("button", { type: "submit" }, "Save"),
      el("p", { class: "ok", role: "status", id: id("saved") }));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      form.querySelectorAll(".error").forEach((p) => { p.textContent = ""; });
      const body = { models: document.getElementById(id("models")).value.split(",").map((s) => s.trim()).filter(Boolean) };
      for (const [k] of LIMITS) {
        const v = document.getElementById(id(k)).value.trim();
        body[k] = v === "" ? null : (v === "unlimited" ? v : Number.isNaN(Number(v)) ? v : Number(v));
      }
      for (const [k] of ROUTE_FIELDS) body[k] = document.getElementById(id(k)).value.trim() || null;
      try {
        await api("PATCH", `/admin/groups/${encodeURIComponent(g.name)}`, body);
        document.getElementById(id("saved")).textContent = "Saved.";
      } catch (x) {
        const target = x.param && document.getElementById(`${id(x.param.split(".").pop())}-error`);
        (target || document.getElementById(id("saved"))).textContent = x.message;
      }
    });
    view.append(form);
  }
}

// Each deployment's health as the router sees it now (GET /admin/deployments): breaker state,
// ejection, upstream connections in flight, and the ledger's last 15 minutes.
function healthBadge(h) {
  if (!h) return el("span", { class: "muted" }, "—");
  const text = ["ejected", "cooling"].includes(h.state) ? `${h.state}, ${Math.ceil(h.retry_in_seconds)} s left` : h.state;
  return el("span", { class: `badge state-${h.state}` }, text);
}

// Per deployment when the router tracks it (in_flight), else the provider's upstream connections.
function inFlight(h) {
  if (!h) return "—";
  if (typeof h.in_flight === "number") return h.max_in_flight ? `${h.in_flight} / ${h.max_in_flight}` : String(h.in_flight);
  const c = h.provider_connections;
  return c ? `${c.in_use} / ${c.max} (provider)` : "—";
}

function recentLine(h) {
  const r = h && h.recent;
  if (!r) return "no requests";
  const lat = r.latency_ms_avg === null ? "" : `, avg ${Math.round(r.latency_ms_avg)} ms, max ${Math.round(r.latency_ms_max)} ms`;
  return `${r.requests} req, ${r.errors} err${lat}`;
}

async function models(view) {
  const [data, live] = await Promise.all([api("GET", "/admin/models"), api("GET", "/admin/deployments")]);
  const health = new Map();
  for (const m of live.models) for (const d of m.deployments) health.set(`${m.name}|${d.provider}|${d.model}`, d);
  const per = (render) => (m) => m.deployments.map((d) => el("div", { class: "dep" }, render(d, health.get(`${m.name}|${d.provider}|${d.model}`))));
  view.append(el("h1", {}, "Models"), el("div", { class: "card" }, table([
    ["name", "Model"], [(m) => (m.private ? "private" : "managed ok"), "Data"],
    [per((d) => `${d.provider} (${d.type}) → ${d.model}`), "Deployments"],
    [per((d, h) => el("span", { "data-health": `${d.provider}/${d.model}` }, healthBadge(h))), "Health"],
    [per((d, h) => inFlight(h)), "In flight"],
    [per((d, h) => recentLine(h)), `Last ${Math.round(live.window_seconds / 60)} min`],
    [per((d) => (d.input_per_mtok !== null ? `$${d.input_per_mtok} / $${d.output_per_mtok} per Mtok` : d.gpu_cost_per_hour !== null ? `$${d.gpu_cost_per_hour}/h GPU` : "unpriced")), "Price"],
  ], data.data)), el("p", { class: "muted" }, "Health is each deployment's circuit breaker now: ejected after consecutive failures, then one probe request. " +
    "In flight counts the provider's upstream connections in use (shared by its deployments). Requests, errors and latency come from the ledger."));
}

async function usage(view) {
  const p = new URLSearchParams(location.hash.split("?")[1] || "");
  const q = { by: p.get("by") || "model", since: p.get("since") || "7d", consumer: p.get("consumer") || "", group: p.get("group") || "", model: p.get("model") || "", status: p.get("status") || "" };
  const form = el("form", { class: "card row", id: "usage-filters" },
    el("div", {}, el("label", { for: "u-by" }, "Group by"), el("select", { id: "u-by" }, ["model", "group", "consumer", "day", "deployment", "provider", "key"].map((v) => el("option", { value: v, selected: v === q.by }, v)))),
    field("u-since", "Since (e.g. 1h, 7d, 2026-12-01)", { value: q.since }), field("u-consumer", "Consumer", { value: q.consumer }),
    field("u-group", "Group", { value: q.group }), field("u-model", "Model", { value: q.model }),
    el("div", {}, el("label", { for: "u-status" }, "Status"), el("select", { id: "u-status" }, [["", "any"], ["ok", "ok"], ["error", "error (4xx/5xx)"]].map(([v, t]) => el("option", { value: v, selected: v === q.status }, t)))),
    el("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const k of ["by", "since", "consumer", "group", "model", "status"]) { const v = document.getElementById(`u-${k}`).value.trim(); if (v) next.set(k, v); }
    const hash = `#/usage?${next}`;
    if (location.hash === hash) route(); else location.hash = hash;  // Apply again re-reads the same filters
  });
  const params = new URLSearchParams(Object.entries(q).filter(([, v]) => v));
  const out = el("div", {});
  view.append(el("h1", {}, "Usage"), form, out);
  try {
    const data = await api("GET", `/admin/usage?${params}`);
    const csv = el("a", { href: `/admin/usage?${params}&format=csv`, download: "usage.csv", id: "csv-export" }, "Export CSV");
    out.append(el("div", { class: "card" }, barChart(data.data, q.by, "requests", "Requests")), el("div", { class: "card" }, csv,
      table([[q.by, q.by], ["requests", "Requests"], ["input_tokens", "Tokens in"], ["output_tokens", "Tokens out"], ["cost_usd", "Cost USD"], ["errors", "Errors"]], data.data)));
  } catch (x) { showError(out, x); }
}

// What the gateway recorded for one playground answer (GET /admin/requests/{id}): route, tokens,
// cost and guardrail verdicts. The ledger and the audit log are written in batches off the request
// path, so the first look waits a moment and a 404 means "not yet".
async function requestFacts(rid, facts) {
  const sleep = (ms) => new Promise((ok) => { setTimeout(ok, ms); });
  const started = Date.now();
  let got = null;
  await sleep(800);
  while (!got && Date.now() - started < 10000) {
    try { got = await api("GET", `/admin/requests/${encodeURIComponent(rid)}`); } catch (x) { if (x.status !== 404) throw x; await sleep(300); }
  }
  if (got && !got.guardrails.length && Date.now() - started < 1500) { await sleep(1500 - (Date.now() - started)); got = await api("GET", `/admin/requests/${encodeURIComponent(rid)}`); }
  if (!got) { facts.replaceChildren(el("p", { class: "muted" }, "Not in the ledger yet; see the usage page.")); return; }
  const verdicts = got.guardrails.map((g) => el("li", {}, el("span", { class: `badge verdict-${g.action}` }, g.action), ` ${g.policy}/${g.check} (${g.stage})`));
  const row = (id, term, value) => [el("dt", {}, term), el("dd", { id }, value)];
  facts.replaceChildren(el("dl", { class: "facts" },
    row("pg-route", "Route", got.route || "—"), row("pg-tokens", "Tokens", `${got.input_tokens} in, ${got.output_tokens} out`),
    row("pg-cost", "Cost", `$${Number(got.cost_usd).toFixed(6)}`),
    row("pg-guardrails", "Guardrails", verdicts.length ? el("ul", { class: "plain" }, verdicts) : "no check matched"),
    row("pg-request-id", "Request id", rid)));
}

async function playground(view) {
  if (!canWrite()) { view.append(el("h1", {}, "Playground"), el("p", {}, "The playground needs a full admin sign-in (it makes a key).")); return; }
  const data = await api("GET", "/admin/models");
  const answer = el("pre", { id: "pg-answer", "aria-live": "polite" }), meta = el("p", { class: "muted", id: "pg-meta" });
  const facts = el("div", { id: "pg-facts", "aria-live": "polite" });
  const form = el("form", { class: "card", id: "playground" },
    el("label", { for: "pg-model" }, "Model"), el("select", { id: "pg-model" }, data.data.filter((m) => !m.embeddings).map((m) => el("option", { value: m.name }, m.name))),
    el("label", { for: "pg-prompt" }, "Message"), el("textarea", { id: "pg-prompt", rows: 4, required: true }),
    el("button", { type: "submit" }, "Send (streamed)"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    answer.textContent = ""; meta.textContent = ""; facts.replaceChildren();
    try {
      if (!state.playgroundKey) state.playgroundKey = (await api("POST", "/admin/playground/key")).key;  // memory only
      const resp = await fetch("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${state.playgroundKey}` },
        body: JSON.stringify({ model: document.getElementById("pg-model").value, stream: true, stream_options: { include_usage: true },
          messages: [{ role: "user", content: document.getElementById("pg-prompt").value }] }) });
      const rid = resp.headers.get("x-request-id");
      if (!resp.ok) { const body = await resp.json().catch(() => ({})); if (rid) requestFacts(rid, facts).catch(() => {}); throw new ApiError(resp.status, body); }
      const reader = resp.body.getReader(), decoder = new TextDecoder();
      let buf = "", usage = null, failed = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const line = frame.split("\n").find((l) => l.startsWith("data: "));
          if (!line || line === "data: [DONE]") continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.error) { failed = new Error(chunk.error.message || "stream error"); continue; }
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) answer.textContent += delta.content;
          if (chunk.usage) usage = chunk.usage;
        }
      }
      meta.textContent = failed ? failed.message : usage ? `tokens: ${usage.prompt_tokens} in, ${usage.completion_tokens} out` : "done";
      facts.replaceChildren(el("p", { class: "muted" }, "Looking up route, cost and guardrail verdicts…"));
      if (rid) await requestFacts(rid, facts);
    } catch (x) { meta.textContent = x.message; }
  });
  view.append(el("h1", {}, "Playground"), form, el("div", { class: "card" }, el("h2", {}, "Answer"), answer, meta, facts));
}

// Admin actions (who changed what) and guardrail events (which check matched which request;
// never the matched text), filtered by kind.
function auditDetail(r) {
  const d = r.detail || {};
  if (r.actor === "guardrails") return `${d.stage} · model ${d.model} · group ${d.group ?? "—"} · consumer ${d.consumer ?? "—"}`;
  return Object.entries(d).map(([k, v]) => `${k}: ${v !== null && typeof v === "object" ? JSON.stringify(v) : fmt(v)}`).join(", ");
}

async function audit(view) {
  const kind = new URLSearchParams(location.hash.split("?")[1] || "").get("kind") || "";
  const select = el("select", { id: "audit-kind" }, [["", "Everything"], ["admin", "Admin actions"], ["guardrail", "Guardrail events"]]
    .map(([v, t]) => el("option", { value: v, selected: v === kind }, t)));
  select.addEventListener("change", () => { location.hash = select.value ? `#/audit?kind=${select.value}` : "#/audit"; });
  view.append(el("h1", {}, "Audit"), el("div", { class: "card row" }, el("div", {}, el("label", { for: "audit-kind" }, "Show"), select)));
  try {
    const data = await api("GET", `/admin/audit${kind ? `?kind=${kind}` : ""}`);
    view.append(el("div", { class: "card" }, table([[(r) => when(r.ts), "When"],
      [(r) => (r.actor === "guardrails" ? el("span", { class: "badge verdict-flag" }, "guardrail") : r.actor), "Who"],
      ["action", "Action"], ["target", "Target"], [auditDetail, "Details"], ["request_id", "Request id"]], data.data || [])));
  } catch (x) { showError(view, x); }
}

const PAGES = { overview, consumers, groups, models, usage, playground, audit };

async function route() {
  if (!state.csrf) return;
  const name = (location.hash.slice(2).split("?")[0]) || "overview";
  const page = PAGES[name] || overview;
  for (const a of document.querySelectorAll("#nav a")) a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${name}`);
  if (document.querySelector('#nav a[aria-current]')) document.querySelector('#nav a[aria-current]').setAttribute("aria-current", "page");
  // A fresh container per visit: a page still loading from the previous route draws into a
  // detached node, not over this one.
  const view = el("div", {});
  document.getElementById("view").replaceChildren(view);
  try { await page(view); } catch (x) { if (x.status !== 401) showError(view, x); }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("sign-in").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", async () => { await api("POST", "/ui/logout"); showSignIn(); });
  window.addEventListener("hashchange", route);
  try { start(await api("GET", "/ui/session")); } catch (x) { showSignIn(); }
});
