// The crossmargin page: one account, one target chain; reads the public API and draws it.
// State lives in the URL (?account=0x..&target=arbitrum) so a view can be shared or reloaded.

import { usd } from "./format.js";
import { drawChains, drawStress, drawWaterfall } from "./charts.js";
import { follow, initAlerts, stop as stopLive } from "./live.js";
import { debtUnknown, renderBlocks, renderCapacity, renderParams, renderPositions, renderPrices, renderProtocols, renderTotals, renderWarnings } from "./tables.js";

const $ = (id) => document.getElementById(id);
let generation = 0; // answers to an older request are dropped
let drawn = null; // last data, redrawn when the width changes

// GET a JSON resource; errors come back as {problem: {title, detail, status}}.
async function getJSON(url) {
  let resp;
  try {
    resp = await fetch(url, { headers: { Accept: "application/json" } });
  } catch (err) {
    return { problem: { title: "API not reachable", detail: String(err.message || err), status: 0 } };
  }
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
}

async function load(account, target) {
  const mine = ++generation;
  const q = target ? `?target_chain=${encodeURIComponent(target)}` : "";
  const base = `/v1/accounts/${encodeURIComponent(account)}`;
  setStatus("loading", "Loading\u2026", "Reading every chain at a pinned block.");
  $("results").setAttribute("aria-busy", "true");
  const [margin, capacity, stress] = await Promise.all([
    getJSON(`${base}/margin${q}`),
    getJSON(`${base}/capacity${q}`),
    getJSON(`${base}/stress`),
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
  if (m.status === "partial") setStatus("partial", "Partial result", partialDetail(m));
  else setStatus("ok", "Up to date", `Pinned blocks on ${m.as_of.length} chains.`);
  follow(account, target, (next, snapshot) => {
    if (mine !== generation) return;
    liveUpdate(next, snapshot, capacity, stress, `${base}/margin${q}`);
  });
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
  if (!account) {
    setStatus("error", "No address", "Enter an account address (0x followed by 40 hex digits).");
    return;
  }
  const params = new URLSearchParams({ account });
  if (target) params.set("target", target);
  history.replaceState(null, "", `?${params}`);
  load(account, target);
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
    load(account, params.get("target") || $("target").value);
  }
  initAlerts();
  document.body.dataset.ready = "true";
}

init();
