// The crossmargin page: one account, one target chain; reads the public API and draws it.
// State lives in the URL (?account=0x..&target=arbitrum[&at=unix seconds]) so a view can be
// shared or reloaded; `at` (METHOD.md §15) is sent to the API as is.

import { usd } from "./format.js";
import { drawChains, drawStress, drawWaterfall } from "./charts.js";
import { drawHistory, historyPoints } from "./history.js";
import { follow, initAlerts, stop as stopLive } from "./live.js";
import { debtUnknown, renderBlocks, renderCapacity, renderParams, renderPositions, renderPrices, renderProtocols, renderTotals, renderWarnings } from "./tables.js";

const $ = (id) => document.getElementById(id);
let generation = 0; // answers to an older request are dropped
let drawn = null; // last data, redrawn when the width changes

// The API key of a deployment that requires one: entered in the key field, kept in this
// tab's session storage, sent as X-API-Key with every request.
const KEY = "crossmargin.apiKey";
const KEY_HEADER = "X-API-Key";

function storedKey() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

function apiHeaders() {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers[KEY_HEADER] = key;
  return headers;
}

function showKeyForm(status) {
  const form = $("key-form");
  form.hidden = false;
  $("key-forget").hidden = !storedKey();
  if (status === 401 || status === 403) $("api-key").focus();
}

// GET a JSON resource; errors come back as {problem: {title, detail, status}}.
async function getJSON(url) {
  let resp;
  try {
    resp = await fetch(url, { headers: apiHeaders() });
  } catch (err) {
    return { problem: { title: "API not reachable", detail: String(err.message || err), status: 0 } };
  }
  if (resp.status === 401 || resp.status === 403) showKeyForm(resp.status);
  const type = resp.headers.get("content-type") || "";
  let body = null;
  if (type.includes("json")) {
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
  }
  if (!resp.ok) {
    const p = body && typeof body === "object" ? body : {};
    return {
      problem: {
        title: p.title || resp.statusText || "Error",
        detail: p.detail || `the server answered ${resp.status}`,
        status: p.status || resp.status,
      },
    };
  }
  if (body === null) return { problem: { title: "Bad answer", detail: "not JSON", status: resp.status } };
  // every computation the API serves is stored as a snapshot; its id comes in a header
  return { data: body, snapshot: resp.headers.get("Snapshot-Id") || body.snapshot_id || null };
}

function setStatus(state, title, detail = "") {
  const box = $("status");
  box.dataset.state = state;
  box.hidden = state === "idle";
  $("status-title").textContent = title;
  $("status-detail").textContent = detail;
}

function problemBox(node, problem) {
  const div = document.createElement("div");
  div.className = "problem";
  const strong = document.createElement("strong");
  strong.textContent = `${problem.title}${problem.status ? ` (${problem.status})` : ""}: `;
  const span = document.createElement("span");
  span.className = "problem-detail";
  span.textContent = problem.detail;
  div.append(strong, span);
  node.replaceChildren(div);
}

function fillChains(chains, selected) {
  const sel = $("target");
  const keep = selected || sel.value;
  sel.replaceChildren(
    ...chains.map((c) => {
      const o = document.createElement("option");
      o.value = c.name;
      o.textContent = `${c.name} (${c.chain_id})`;
      return o;
    }),
  );
  if (keep && chains.some((c) => c.name === keep)) sel.value = keep;
}

function fillDemo(accounts) {
  const box = $("demo");
  box.hidden = accounts.length === 0;
  const list = $("demo-list");
  const chips = $("demo-chips");
  list.replaceChildren();
  chips.replaceChildren();
  for (const a of accounts) {
    const opt = document.createElement("option");
    opt.value = a.address;
    opt.label = a.name;
    list.append(opt);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = a.name;
    b.title = `${a.address}\n${a.about}`;
    b.dataset.address = a.address;
    b.addEventListener("click", () => {
      $("address").value = a.address;
      submit();
    });
    chips.append(b);
  }
}

function link(href, text, cls) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  if (cls) a.className = cls;
  return a;
}

const snapshotUrl = (id) => `/v1/snapshots/${encodeURIComponent(id)}`;

// The margin snapshot's id and JSON; the capacity and stress snapshots; the raw answer.
function jsonLinks(margin, capacity, stress, url) {
  const box = $("snapshot");
  box.replaceChildren();
  if (margin.snapshot) {
    const code = document.createElement("code");
    code.id = "snapshot-id";
    code.textContent = margin.snapshot;
    code.title = "snapshot id: sha256 of its canonical JSON";
    box.append("Snapshot ", code, " \u00b7 ", link(snapshotUrl(margin.snapshot), "snapshot JSON", "snapshot-link"));
    for (const [name, r] of [["capacity", capacity], ["stress", stress]]) {
      if (r.snapshot) box.append(" \u00b7 ", link(snapshotUrl(r.snapshot), `${name} snapshot`));
    }
    box.append(" \u00b7 ", link(url, "margin JSON", "raw-link"));
  } else {
    box.append("Raw ", link(url, "margin JSON", "raw-link"), " (no snapshot id in this answer)");
  }
}

function renderHeader(margin) {
  $("account").textContent = margin.account;
  $("account-target").textContent = `${margin.target_chain.name} (${margin.target_chain.chain_id})`;
  $("account-method").textContent = margin.method === "es" ? "expected shortfall" : "value at risk";
  const badge = $("result-status");
  badge.textContent = margin.status;
  badge.className = `badge ${margin.status}`;
  document.querySelectorAll(".target-name").forEach((n) => (n.textContent = margin.target_chain.name));
}

function partialDetail(margin) {
  const down = margin.chains.filter((c) => c.status !== "ok");
  const parts = down.map((c) => `${c.name} (${c.chain_id}) unavailable: ${c.reason || "not read"}`);
  if (down.length) parts.push("its positions count 0 as collateral");
  if (debtUnknown(margin)) parts.push("debt, equity, free margin and health unknown: debt cannot be valued; capacity 0");
  if (!parts.length) parts.push("some positions could not be read or priced (see warnings)");
  return `${parts.join("; ")}.`;
}

function draw() {
  if (!drawn) return;
  drawWaterfall($("waterfall"), drawn.margin);
  drawChains($("chains"), drawn.margin);
  if (drawn.stress) drawStress($("stress-chart"), drawn.stress);
  if (drawn.history) drawHistory($("history"), drawn.history, snapshotUrl);
}

const HISTORY_LIMIT = 100;

// The account's latest margin snapshots (after this load's own was stored), as a chart.
async function loadHistory(mine, base, m) {
  const page = await getJSON(`${base}/snapshots?kind=margin&limit=${HISTORY_LIMIT}`);
  if (mine !== generation || !drawn) return;
  if (page.problem) {
    problemBox($("history"), page.problem);
    return;
  }
  drawn.history = historyPoints(page.data, m.target_chain.name, m.method);
  const more = page.data.next_cursor ? ` (the latest ${HISTORY_LIMIT} snapshots of any kind)` : "";
  $("history-note").textContent =
    `${drawn.history.length} stored margin snapshot(s) on ${m.target_chain.name}, ${m.method === "es" ? "expected shortfall" : "value at risk"}, oldest to newest${more}.`;
  drawHistory($("history"), drawn.history, snapshotUrl);
  $("history").dataset.ready = "true";
}

// The picker's value (a UTC wall time, "YYYY-MM-DDTHH:MM[:SS]") as unix seconds, and back.
function pickerSeconds(value) {
  if (!value) return null;
  const ms = Date.parse(`${value.length === 16 ? `${value}:00` : value}Z`);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
}

function pickerValue(seconds) {
  return new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
}

async function load(account, target, at) {
  const mine = ++generation;
  delete $("history").dataset.ready;
  const query = new URLSearchParams();
  if (target) query.set("target_chain", target);
  if (at) query.set("at", String(at));
  const q = query.toString() ? `?${query}` : "";
  const sq = at ? `?at=${at}` : "";
  const base = `/v1/accounts/${encodeURIComponent(account)}`;
  setStatus("loading", "Loading\u2026", "Reading every chain at a pinned block.");
  $("results").setAttribute("aria-busy", "true");
  const [margin, capacity, stress] = await Promise.all([
    getJSON(`${base}/margin${q}`),
    getJSON(`${base}/capacity${q}`),
    getJSON(`${base}/stress${sq}`),
  ]);
  if (mine !== generation) return;
  $("results").removeAttribute("aria-busy");
  if (margin.problem) {
    stopLive();
    $("results").hidden = true;
    drawn = null;
    setStatus("error", margin.problem.title, margin.problem.detail);
    return;
  }
  const m = margin.data;
  if ($("target").options.length === 0) fillChains(m.chains, m.target_chain.name);
  renderHeader(m);
  renderTotals($("totals"), m);
  jsonLinks(margin, capacity, stress, `${base}/margin${q}`);
  if (capacity.problem) problemBox($("capacity"), capacity.problem);
  else renderCapacity($("capacity"), capacity.data);
  renderPositions($("positions"), m);
  renderProtocols($("protocols"), m);
  renderPrices($("prices"), m);
  renderBlocks($("blocks"), m);
  renderWarnings($("warnings"), m);
  renderParams($("params"), m);
  $("results").hidden = false;
  drawn = { margin: m, stress: stress.data || null };
  if (stress.problem) {
    problemBox($("stress-chart"), stress.problem);
    $("stress-note").textContent = "";
  } else {
    const partial = stress.data.status === "partial" ? " Partial: unread chains count 0." : "";
    $("stress-note").textContent =
      stress.data.equity_usd === null
        ? `Equity now unknown: debt cannot be valued, so equity and solvency after each shock are unknown (bars: collateral after the shock).${partial}`
        : `Equity now ${usd(stress.data.equity_usd)} (dashed line); worst: ${stress.data.worst ?? "none"}.${partial}`;
  }
  draw();
  loadHistory(mine, base, m);
  if (m.status === "partial") setStatus("partial", "Partial result", partialDetail(m));
  else if (at) setStatus("ok", "As of a past time", `Each chain at its last block at or before ${pickerValue(at)} UTC.`);
  else setStatus("ok", "Up to date", `Pinned blocks on ${m.as_of.length} chains.`);
  if (at) stopLive(); // a past time does not change: nothing to follow
  else follow(account, target, (next, snapshot) => {
    if (mine !== generation) return;
    liveUpdate(next, snapshot, capacity, stress, `${base}/margin${q}`);
  }, apiHeaders());
}

// A new computation of the shown account, pushed by the server: its margin figures are
// redrawn in place (capacity and stress stay as loaded, with their own snapshot links).
function liveUpdate(m, snapshot, capacity, stress, url) {
  renderHeader(m);
  renderTotals($("totals"), m);
  jsonLinks({ snapshot }, capacity, stress, url);
  renderPositions($("positions"), m);
  renderProtocols($("protocols"), m);
  renderPrices($("prices"), m);
  renderBlocks($("blocks"), m);
  renderWarnings($("warnings"), m);
  if (drawn) drawn.margin = m;
  draw();
  const blocks = m.as_of.map((b) => `${b.name} #${b.block_number}`).join(", ");
  if (m.status === "partial") setStatus("partial", "Partial result (live)", partialDetail(m));
  else setStatus("ok", "Up to date (live)", `Recomputed after new blocks: ${blocks}.`);
}

function submit() {
  const account = $("address").value.trim();
  const target = $("target").value;
  const at = pickerSeconds($("at").value);
  if (!account) {
    setStatus("error", "No address", "Enter an account address (0x followed by 40 hex digits).");
    return;
  }
  const params = new URLSearchParams({ account });
  if (target) params.set("target", target);
  if (at) params.set("at", String(at));
  history.replaceState(null, "", `?${params}`);
  load(account, target, at);
}

async function init() {
  const params = new URLSearchParams(location.search);
  // `?account=..&target=..` (what the page writes) or the API's own `target_chain`.
  if (!params.get("target") && params.get("target_chain")) {
    params.set("target", params.get("target_chain"));
  }
  $("query").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("api-key").value = "";
    $("key-forget").hidden = false;
    if ($("address").value.trim()) submit();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("key-forget").hidden = true;
  });
  if (storedKey()) showKeyForm(0);
  // With a key, links to API resources (snapshots, raw JSON) are fetched with it and opened
  // as a document: a plain navigation could not send the header.
  document.addEventListener("click", async (e) => {
    const a = e.target instanceof Element ? e.target.closest("a[href^='/v1/']") : null;
    if (!a || !storedKey() || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    const resp = await fetch(a.getAttribute("href"), { headers: apiHeaders() });
    const blob = new Blob([await resp.arrayBuffer()], { type: "application/json" });
    window.open(URL.createObjectURL(blob), "_blank", "noopener");
  });
  const ctx = await getJSON("/v1/web/context");
  if (ctx.data) {
    fillChains(ctx.data.chains, params.get("target") || ctx.data.settlement_chain);
    fillDemo(ctx.data.demo_accounts || []);
  }
  let timer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(timer);
    timer = setTimeout(draw, 120);
  });
  const account = params.get("account");
  if (account) {
    $("address").value = account;
    const at = /^[0-9]{1,12}$/.test(params.get("at") || "") ? params.get("at") : null;
    if (at) $("at").value = pickerValue(at);
    load(account, params.get("target") || $("target").value, at);
  }
  initAlerts();
  document.body.dataset.ready = "true";
}

init();
