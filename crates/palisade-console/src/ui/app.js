// Palisade dashboard: hash-routed pages over the admin API, charts as inline SVG.
// The admin key lives in sessionStorage and goes out only as `Authorization: Bearer`.
"use strict";

const $ = (s, el = document) => el.querySelector(s);
const page = $("#page");
const KEY = "palisade.admin.key";
const COLORS = { requests: "#2457c5", blocked: "#c0392b", redacted: "#d68910", held: "#7d3cb5",
  p50: "#2457c5", p95: "#c0392b", errors: "#c0392b" };
const PALETTE = ["#2457c5", "#c0392b", "#d68910", "#7d3cb5", "#1e8449", "#138d90", "#a04000", "#5b6577"];

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function when(ms) { return ms ? new Date(ms).toLocaleString() : ""; }
function tag(v) { return v ? `<span class="tag ${esc(v)}">${esc(v)}</span>` : ""; }

class ApiError extends Error {
  constructor(status, body) { super(body?.error?.message || `HTTP ${status}`); this.status = status; this.body = body; }
}

async function api(path, opts = {}) {
  const headers = { Authorization: "Bearer " + (sessionStorage.getItem(KEY) || "") };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method: opts.method || "GET", headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (r.status === 401) { sessionStorage.removeItem(KEY); showLogin("That key was refused."); }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// ---- charts -------------------------------------------------------------------------------

// A line chart of several series over the same buckets: [{name, color, values}].
function lineChart(buckets, series, fmt = v => v) {
  const W = 600, H = 140, L = 40, B = 18, T = 8;
  const max = Math.max(1e-9, ...series.flatMap(s => s.values.map(v => v ?? 0)));
  const n = Math.max(1, buckets.length - 1);
  const x = i => L + (i / n) * (W - L - 8);
  const y = v => T + (1 - v / max) * (H - T - B);
  const paths = series.map(s => {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`; pen = true;
    });
    return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"/>`;
  }).join("");
  const ticks = [0, max / 2, max].map(v =>
    `<text x="${L - 4}" y="${y(v) + 3}" text-anchor="end">${esc(fmt(Math.round(v * 100) / 100))}</text>` +
    `<line x1="${L}" x2="${W - 8}" y1="${y(v)}" y2="${y(v)}" stroke="#eef0f4"/>`).join("");
  const first = buckets[0], last = buckets[buckets.length - 1];
  const times = first ? `<text x="${L}" y="${H - 4}">${esc(new Date(first.start_ms).toLocaleTimeString())}</text>` +
    `<text x="${W - 8}" y="${H - 4}" text-anchor="end">${esc(new Date(last.start_ms).toLocaleTimeString())}</text>` : "";
  const legend = series.map(s => `<span><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join("");
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img">${ticks}${paths}${times}</svg>` +
    `<div class="legend">${legend}</div>`;
}

// ---- pages --------------------------------------------------------------------------------

const pages = {};

pages.overview = async () => {
  const s = await api("/admin/stats?window_ms=3600000&bucket_ms=60000");
  const b = s.buckets, t = s.total;
  const pick = k => b.map(x => x[k]);
  const detectors = Object.keys(t.findings || {});
  const kpi = (name, v) => `<div class="card"><h3>${esc(name)}</h3><div class="big" data-kpi="${esc(name)}">${esc(v)}</div></div>`;
  page.innerHTML = `<h1>Overview <span class="muted">(last hour${s.truncated ? ", newest " + b.reduce((a, x) => a + x.requests, 0) + " events" : ""})</span></h1>
    <div class="kpis">${kpi("requests", t.requests)}${kpi("blocked", t.blocked)}${kpi("redacted", t.redacted)}${kpi("held", t.held)}
    ${kpi("findings", Object.values(t.findings || {}).reduce((a, v) => a + v, 0))}
    ${kpi("p95 latency ms", t.latency_p95_ms === null ? "–" : t.latency_p95_ms.toFixed(1))}
    ${kpi("error rate", (t.error_rate * 100).toFixed(1) + "%")}</div>
    <div class="grid">
      <div class="card" id="chart-requests"><h3>Requests and decisions</h3>${lineChart(b, [
        { name: "requests", color: COLORS.requests, values: pick("requests") },
        { name: "blocked", color: COLORS.blocked, values: pick("blocked") },
        { name: "redacted", color: COLORS.redacted, values: pick("redacted") },
        { name: "held", color: COLORS.held, values: pick("held") }])}</div>
      <div class="card" id="chart-findings"><h3>Findings by detector</h3>${detectors.length ? lineChart(b,
        detectors.map((d, i) => ({ name: d, color: PALETTE[i % PALETTE.length], values: b.map(x => (x.findings || {})[d] || 0) })))
        : '<p class="muted">No findings in this window.</p>'}</div>
      <div class="card" id="chart-latency"><h3>Latency (ms)</h3>${lineChart(b, [
        { name: "p50", color: COLORS.p50, values: pick("latency_p50_ms") },
        { name: "p95", color: COLORS.p95, values: pick("latency_p95_ms") }])}</div>
      <div class="card" id="chart-errors"><h3>Error rate (%)</h3>${lineChart(b, [
        { name: "errors", color: COLORS.errors, values: b.map(x => x.requests ? 100 * x.error_rate : null) }])}</div>
    </div>`;
};

pages.findings = async (params) => {
  const f = new URLSearchParams(params);
  const qs = new URLSearchParams();
  for (const k of ["detector", "min_severity", "route", "decision", "cursor"]) if (f.get(k)) qs.set(k, f.get(k));
  qs.set("limit", "50");
  const data = await api("/admin/findings?" + qs);
  const rows = data.items.map(x => `<tr class="click" data-id="${esc(x.request_id)}">
      <td>${esc(when(x.time_ms))}</td><td>${esc(x.detector)}</td><td>${esc(x.kind)}</td><td>${tag(x.severity)}</td>
      <td>${tag(x.action)}</td><td>${esc(x.route)}</td><td>${tag(x.decision)}</td><td>${esc(x.snippet)}</td></tr>`).join("");
  const sel = (name, opts) => `<label>${name}<select name="${name}"><option value="">any</option>${opts.map(o =>
    `<option ${f.get(name) === o ? "selected" : ""}>${o}</option>`).join("")}</select></label>`;
  page.innerHTML = `<h1>Findings</h1>
    <form class="filters" id="ff">
      <label>detector<input name="detector" value="${esc(f.get("detector") || "")}" placeholder="pii"></label>
      ${sel("min_severity", ["low", "medium", "high", "critical"])}
      ${sel("decision", ["allow", "redact", "block", "deny", "hold", "error"])}
      <label>route<input name="route" value="${esc(f.get("route") || "")}"></label>
      <button type="submit">Filter</button></form>
    <table id="findings"><thead><tr><th>time</th><th>detector</th><th>kind</th><th>severity</th><th>action</th><th>route</th><th>decision</th><th>snippet</th></tr></thead>
    <tbody>${rows || '<tr><td colspan="8" class="muted">No findings on this page.</td></tr>'}</tbody></table>
    <div class="row">${data.next ? `<button class="secondary" id="older">Older</button>` : ""}</div>
    <div id="detail" class="detail"></div>`;
  $("#ff").onsubmit = e => { e.preventDefault(); location.hash = "findings?" + new URLSearchParams(new FormData(e.target)); };
  if (data.next) $("#older").onclick = () => { f.set("cursor", data.next); location.hash = "findings?" + f; };
  page.querySelectorAll("tr.click").forEach(tr => tr.onclick = () => showEvent(tr.dataset.id));
};

async function showEvent(id) {
  const e = await api("/admin/events/" + encodeURIComponent(id));
  const fs = (e.findings || []).map(x => `<tr><td>${esc(x.detector)}</td><td>${esc(x.kind)}</td><td>${tag(x.severity)}</td>
    <td>${tag(x.action)}</td><td>${esc(x.location)}</td><td>${esc(x.snippet)}</td></tr>`).join("");
  $("#detail").innerHTML = `<div class="card" id="finding-detail"><h3>Event ${esc(e.request_id)}</h3>
    <p>${esc(when(e.time_ms))} · ${esc(e.source)} · route <b>${esc(e.route)}</b> · ${esc(e.method)} ${esc(e.path)}
    ${e.tool ? "· tool <b>" + esc(e.tool) + "</b>" : ""} · status ${esc(e.status)} · ${tag(e.decision)} · risk ${esc(e.risk)}
    · ${e.latency_ms === undefined ? "" : esc(e.latency_ms.toFixed(1)) + " ms"}</p>
    ${e.reasons?.length ? `<p>${e.reasons.map(esc).join("<br>")}</p>` : ""}
    <table><thead><tr><th>detector</th><th>kind</th><th>severity</th><th>action</th><th>location</th><th>snippet</th></tr></thead><tbody>${fs}</tbody></table>
    ${e.body ? `<h3>Body (redacted)</h3><pre>${esc(e.body)}</pre>` : ""}</div>`;
  $("#detail").scrollIntoView({ block: "nearest" });
}

pages.inventory = async () => {
  const [inv, tools] = await Promise.all([api("/admin/inventory"), api("/admin/tools")]);
  const ep = inv.endpoints.map(e => `<tr><td>${esc(e.route)}</td><td>${esc(e.method)}</td><td>${esc(e.path)}</td><td>${esc(e.calls)}</td>
    <td>${esc((e.statuses || []).join(", "))}</td><td>${(e.pii || []).map(tag).join(" ")}</td><td>${esc(when(e.last_seen_ms))}</td></tr>`).join("");
  const pins = tools.tools.map(p => `<tr><td>${esc(p.scope)}</td><td>${esc(p.tool)}</td><td>${tag(p.state)}</td>
    <td><code>${esc((p.pinned_hash || "").slice(0, 12))}</code></td><td>${esc(when(p.last_seen_ms))}</td><td>${esc(p.note)}</td></tr>`).join("");
  const calls = inv.tools.map(t => `<tr><td>${esc(t.route)}</td><td>${esc(t.tool)}</td><td>${esc(t.calls)}</td><td>${esc(t.refused)}</td><td>${esc(when(t.last_seen_ms))}</td></tr>`).join("");
  const models = inv.models.map(m => `<tr><td>${esc(m.route)}</td><td>${esc(m.model)}</td><td>${esc(m.calls)}</td></tr>`).join("");
  const empty = n => `<tr><td colspan="${n}" class="muted">none seen yet</td></tr>`;
  page.innerHTML = `<h1>Inventory</h1>
    <h2>Endpoints</h2><table id="endpoints"><thead><tr><th>route</th><th>method</th><th>path</th><th>calls</th><th>statuses</th><th>personal data</th><th>last seen</th></tr></thead><tbody>${ep || empty(7)}</tbody></table>
    <h2>MCP tools and pins</h2><table id="pins"><thead><tr><th>server (scope)</th><th>tool</th><th>pin</th><th>hash</th><th>last seen</th><th>note</th></tr></thead><tbody>${pins || empty(6)}</tbody></table>
    <h2>Tool calls</h2><table><thead><tr><th>route</th><th>tool</th><th>calls</th><th>refused</th><th>last seen</th></tr></thead><tbody>${calls || empty(5)}</tbody></table>
    <h2>Models</h2><table><thead><tr><th>route</th><th>model</th><th>calls</th></tr></thead><tbody>${models || empty(3)}</tbody></table>`;
};

pages.approvals = async () => {
  const data = await api("/admin/approvals?status=pending");
  const rows = data.approvals.map(a => `<tr data-id="${esc(a.id)}"><td>${esc(when(a.created_ms))}</td><td>${esc(a.agent)}</td>
    <td><b>${esc(a.action)}</b></td><td>${esc(a.route)}</td><td>${esc(a.risk_score)}</td><td>${(a.reasons || []).map(esc).join("<br>")}</td>
    <td>${esc(when(a.expires_ms))}</td><td><button class="approve">Approve</button> <button class="danger deny">Deny</button></td></tr>`).join("");
  page.innerHTML = `<h1>Approvals</h1><p class="muted">Held calls waiting for a decision. Refreshes every 3 s.</p>
    <table id="approvals"><thead><tr><th>held at</th><th>agent</th><th>action</th><th>route</th><th>risk</th><th>why</th><th>expires</th><th></th></tr></thead>
    <tbody>${rows || '<tr><td colspan="8" class="muted">Nothing is waiting.</td></tr>'}</tbody></table><p id="approval-result"></p>`;
  page.querySelectorAll("tr[data-id]").forEach(tr => {
    const decide = async verb => {
      tr.querySelectorAll("button").forEach(b => b.disabled = true);
      try {
        await api(`/admin/approvals/${encodeURIComponent(tr.dataset.id)}/${verb}`, { method: "POST", body: { reason: `from the dashboard (${verb})` } });
        $("#approval-result").innerHTML = `<span class="ok">${verb === "approve" ? "Approved" : "Denied"} ${esc(tr.dataset.id)}</span>`;
        tr.remove();
      } catch (e) { $("#approval-result").innerHTML = `<span class="error">${esc(e.message)}</span>`; }
    };
    $(".approve", tr).onclick = () => decide("approve");
    $(".deny", tr).onclick = () => decide("deny");
  });
  refreshTimer = setTimeout(() => { if (currentPage === "approvals" && !page.querySelector("button:disabled")) route(); }, 3000);
};

pages.policies = async () => {
  const [doc, hist] = await Promise.all([api("/admin/config/document"), api("/admin/config/history")]);
  const rows = hist.versions.map(v => `<tr><td>v${esc(v.version)}${v.version === hist.version ? " (current)" : ""}</td><td>${esc(when(v.at_ms))}</td>
    <td>${esc(v.by)}</td><td>${esc(v.reason || "")}${v.rollback_of ? ` (roll back to v${esc(v.rollback_of)})` : ""}</td>
    <td>${v.version !== hist.version ? `<button class="secondary rollback" data-v="${esc(v.version)}">Apply again</button>` : ""}</td></tr>`).join("");
  page.innerHTML = `<h1>Policies <span class="muted">v${esc(doc.version)}</span></h1>
    <p class="muted">Routes, policies and collectors. Applying switches new requests at once; requests in flight finish under the version they started with. Rate counters, pins and approvals are kept.</p>
    <textarea id="yaml" spellcheck="false">${esc(doc.yaml)}</textarea>
    <div class="row"><label>reason<input id="reason" size="50" placeholder="why this change"></label>
      <button class="secondary" id="validate" type="button">Validate</button><button id="apply" type="button">Apply</button></div>
    <div id="result"></div>
    <h2>History</h2><table id="history"><thead><tr><th>version</th><th>applied</th><th>by</th><th>why</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
  const result = $("#result");
  const show = (e) => {
    const errs = e.body?.errors;
    result.innerHTML = errs ? `<ul class="errors error" id="config-errors">${errs.map(x =>
      `<li>${x.line ? "line " + esc(x.line) + ": " : ""}${x.field ? "<code>" + esc(x.field) + "</code>: " : ""}${esc(x.message)}</li>`).join("")}</ul>`
      : `<p class="error">${esc(e.message)}</p>`;
  };
  $("#validate").onclick = async () => {
    try { const r = await api("/admin/config/validate", { method: "POST", body: { yaml: $("#yaml").value } });
      result.innerHTML = `<p class="ok" id="config-ok">Valid: ${esc(r.routes)} routes, ${esc(r.policies)} policies, ${esc(r.collectors)} collectors.</p>`;
    } catch (e) { show(e); }
  };
  $("#apply").onclick = async () => {
    try { const r = await api("/admin/config", { method: "PUT", body: { yaml: $("#yaml").value, reason: $("#reason").value || null } });
      await pages.policies();
      $("#result").innerHTML = `<p class="ok" id="config-ok">Applied as v${esc(r.version)} in ${esc(r.apply_ms.toFixed(1))} ms.</p>`;
    } catch (e) { show(e); }
  };
  page.querySelectorAll("button.rollback").forEach(b => b.onclick = async () => {
    try { const r = await api("/admin/config/rollback", { method: "POST", body: { version: Number(b.dataset.v), reason: $("#reason").value || "roll back from the dashboard" } });
      await pages.policies();
      $("#result").innerHTML = `<p class="ok" id="config-ok">v${esc(r.rollback_of)} applied again as v${esc(r.version)}.</p>`;
    } catch (e) { show(e); }
  });
};

pages.routes = async () => {
  const { version, config } = await api("/admin/config");
  const routes = (config.routes || []).map(r => `<tr><td>${esc(r.name)}</td><td>${esc(r.path_prefix)}</td><td>${esc(r.upstream)}</td>
    <td>${esc(r.protocol)}</td><td>${tag(r.mode)}</td><td>${esc(r.policy)}</td></tr>`).join("");
  const cols = (config.collectors || []).map(c => `<tr><td>${esc(c.name)}</td><td>${esc(c.policy)}</td><td>${esc(c.log)}</td>
    <td>${c.api_key_env ? "env " + esc(c.api_key_env) : "digest (redacted)"}</td></tr>`).join("");
  const empty = n => `<tr><td colspan="${n}" class="muted">none configured</td></tr>`;
  page.innerHTML = `<h1>Collectors and routes <span class="muted">v${esc(version)}</span></h1>
    <h2>Routes</h2><table id="routes"><thead><tr><th>name</th><th>path prefix</th><th>upstream</th><th>protocol</th><th>mode</th><th>policy</th></tr></thead><tbody>${routes || empty(6)}</tbody></table>
    <p class="muted">Generic proxy <code>/proxy/…</code>: ${config.proxy?.enabled === false ? "off" : "on"}.</p>
    <h2>Collectors (guard API callers)</h2><table id="collectors"><thead><tr><th>name</th><th>policy</th><th>logs</th><th>key</th></tr></thead><tbody>${cols || empty(4)}</tbody></table>
    <p class="muted">Edit them on the Policies page. Secrets are never shown.</p>`;
};

// ---- shell --------------------------------------------------------------------------------

let currentPage = null, refreshTimer = null;

function showLogin(msg) {
  $("#login").hidden = false; page.hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  $("#login-error").textContent = msg || "";
}

async function route() {
  clearTimeout(refreshTimer);
  if (!sessionStorage.getItem(KEY)) return showLogin();
  const [name, params] = (location.hash.slice(1) || "overview").split("?");
  currentPage = pages[name] ? name : "overview";
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("active", a.getAttribute("href") === "#" + currentPage));
  $("#login").hidden = true; page.hidden = false; $("#logout").hidden = false;
  try {
    if (!$("#who").textContent) { const w = await api("/admin/whoami"); $("#who").textContent = `${w.name} (${w.role})`; }
    await pages[currentPage](params || "");
  } catch (e) {
    if (e.status !== 401) page.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

$("#login").onsubmit = e => { e.preventDefault(); sessionStorage.setItem(KEY, $("#key").value.trim()); $("#key").value = ""; route(); };
$("#logout").onclick = () => { sessionStorage.removeItem(KEY); showLogin(); };
window.addEventListener("hashchange", route);
route();
