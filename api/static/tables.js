// Figures and tables. Every value cell keeps the API's exact string in data-value (and in
// its tooltip); the text shown is that string rounded for reading.

import { EM, exactUnits, fixed, pct, ratio, shortHex, units, usd, utc } from "./format.js";

// h("td", {class: "num", "data-label": "Value"}, "text", node, ...): text is never parsed as HTML.
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function money(value, attrs = {}) {
  return h("span", { class: "money", "data-value": value ?? "", title: value === null ? "not computed" : `${value} USD`, ...attrs }, usd(value));
}

// METHOD.md section 4: debt that cannot be valued. The figures it leaves null are shown
// as "unknown" with the reason (the debt_unknown warning), never as 0 or a bare dash.
export function debtUnknown(report) {
  const w = report.warnings.find((x) => x.code === "debt_unknown");
  return w ? w.detail : null;
}

function unknown(reason, cls = "money") {
  return h("span", { class: `${cls} unknown`, "data-value": "", title: reason }, "unknown");
}

// A USD figure, or "unknown" with the reason when it is null because debt cannot be valued.
function figure(value, reason) {
  return value === null && reason ? unknown(reason) : money(value);
}

function table(head, rows, cls = "", stack = true) {
  for (const td of rows.flatMap((r) => [...r.cells])) {
    if (td.textContent === EM) td.classList.add("nil"); // folded away on a phone
  }
  const thead = h("thead", {}, h("tr", {}, ...head.map(([label, c]) => h("th", { class: c || null, scope: "col" }, label))));
  return h("div", { class: "table-wrap" }, h("table", { class: `${stack ? "stack " : ""}${cls}` }, thead, h("tbody", {}, ...rows)));
}

function cell(label, content, cls = null, attrs = {}) {
  return h("td", { "data-label": label, class: cls, ...attrs }, content);
}

function chainNames(m) {
  return new Map(m.chains.map((c) => [c.chain_id, c.name]));
}

const TOTALS = [
  ["collateral_usd", "Collateral"],
  ["debt_usd", "Debt"],
  ["equity_usd", "Equity"],
  ["margin_requirement_usd", "Margin requirement"],
  ["free_margin_usd", "Free margin"],
];

export function renderTotals(container, m) {
  const t = m.totals;
  const why = debtUnknown(m);
  const okChains = m.chains.filter((c) => c.status === "ok").length;
  const cannot = "unknown: debt cannot be valued";
  const sub = {
    collateral_usd: `on ${okChains} of ${m.chains.length} chains`,
    debt_usd: why ? cannot : t.debt_usd === "0.000000" ? "no debt" : "priced at the highest valid feed",
    equity_usd: why ? cannot : "collateral \u2212 debt",
    margin_requirement_usd: why ? "of the positions that could be valued" : "sum of the six components",
    free_margin_usd: why ? `${cannot}; liquidation status unknown` : t.liquidatable ? "liquidatable" : "equity \u2212 requirement",
  };
  const cards = TOTALS.map(([key, label]) => {
    let cls = "kpi";
    if (key === "free_margin_usd" && t[key] !== null) cls += t[key].startsWith("-") ? " bad" : " good";
    if (t[key] === null && why) cls += " unknown";
    return h(
      "div",
      { class: cls, "data-field": key },
      h("div", { class: "kpi-label" }, label),
      h("div", { class: "kpi-value" }, figure(t[key], why)),
      h("div", { class: "kpi-sub" }, sub[key]),
    );
  });
  const noDebt = t.debt_usd === "0.000000";
  const healthSub = t.health !== null ? (t.liquidatable ? "liquidatable" : "(collateral \u2212 requirement) / debt") : why ? cannot : noDebt ? "no debt" : "not computed";
  let healthCls = "kpi";
  if (t.health !== null) healthCls += Number(t.health) < 1 ? " bad" : Number(t.health) < 1.1 ? " warn" : " good";
  else if (why) healthCls += " unknown";
  const healthValue = t.health === null && why ? unknown(why, "ratio") : h("span", { class: "ratio", "data-value": t.health ?? "", title: t.health ?? "not computed" }, ratio(t.health));
  cards.push(
    h(
      "div",
      { class: healthCls, "data-field": "health" },
      h("div", { class: "kpi-label" }, "Health"),
      h("div", { class: "kpi-value" }, healthValue),
      h("div", { class: "kpi-sub" }, healthSub),
    ),
  );
  const boxes = [...cards];
  if (why) boxes.push(h("p", { class: "unknown-reason", id: "debt-unknown" }, h("strong", {}, "Debt cannot be valued. "), why));
  container.replaceChildren(...boxes);
}

export function renderCapacity(container, cap) {
  const rows = cap.capacities.map((c) =>
    h(
      "tr",
      { "data-asset": c.asset },
      cell("Asset", h("span", {}, h("strong", {}, c.asset), c.reason ? h("span", { class: "reason" }, c.reason) : "")),
      cell("Capacity", money(c.capacity_usd), "num", { "data-field": "capacity_usd" }),
      cell("Amount", h("span", { "data-value": c.amount ?? "", title: c.amount ?? "" }, c.amount === null ? EM : `${fixed(c.amount, 4)} ${c.asset}`), "num", { "data-field": "amount" }),
      cell("Debt price", money(c.price_usd), "num wide-only", { "data-field": "price_usd" }),
    ),
  );
  const lead =
    cap.free_margin_usd === null
      ? h("p", { class: "lead" }, "Free margin on ", cap.target_chain.name, " is ", unknown(debtUnknown(cap) || "not computed"), " (debt cannot be valued), so capacity is 0.")
      : h("p", { class: "lead" }, "Free margin ", money(cap.free_margin_usd), ` on ${cap.target_chain.name}: the most each asset could add as new debt there.`);
  container.replaceChildren(lead, table([["Asset"], ["Capacity", "num"], ["Amount", "num"], ["Debt price", "num wide-only"]], rows, "capacity", false));
}

export function renderPositions(container, m) {
  const names = chainNames(m);
  if (m.positions.length === 0) {
    container.replaceChildren(h("p", { class: "empty" }, "No positions: every configured token has a zero balance."));
    return;
  }
  const rows = m.positions.map((p) => {
    const token = h("span", {}, h("strong", {}, p.symbol), p.bridged ? h("span", { class: "tag" }, "bridged") : "", h("br"), h("code", { title: p.token }, p.token === "native" ? "native" : shortHex(p.token)));
    const status = p.status === "ok" ? h("span", { class: "badge ok" }, "ok") : h("span", { class: `badge ${p.status}`, title: p.reason || "" }, p.status);
    return h(
      "tr",
      { "data-chain": p.chain_id, "data-symbol": p.symbol, "data-status": p.status, class: p.status === "ok" ? null : "muted" },
      cell("Chain", names.get(p.chain_id) || p.chain_id),
      cell("Token", token),
      cell("Kind", p.kind),
      cell("Amount", h("span", { title: exactUnits(p.raw_amount, p.decimals), "data-raw": p.raw_amount ?? "" }, units(p.raw_amount, p.decimals)), "num"),
      cell("Price", money(p.price_usd), "num"),
      cell("Value", money(p.value_usd), "num", { "data-field": "value_usd" }),
      cell("Haircut", h("span", { title: p.haircut ?? "" }, pct(p.haircut)), "num"),
      cell("Margin share", money(p.margin_usd), "num"),
      cell("Status", status),
    );
  });
  const head = [["Chain"], ["Token"], ["Kind"], ["Amount", "num"], ["Price", "num"], ["Value", "num"], ["Haircut", "num"], ["Margin share", "num"], ["Status"]];
  container.replaceChildren(table(head, rows, "positions"));
}

export function renderPrices(container, m) {
  const names = chainNames(m);
  const pins = new Map(m.as_of.map((b) => [b.chain_id, b.timestamp]));
  const wide = window.matchMedia("(min-width: 641px)").matches; // sources folded on a phone
  const blocks = m.prices.map((p) => {
    const rows = p.sources.map((s) => {
      const pin = pins.get(s.chain_id);
      const age = s.updated_at !== null && pin !== undefined ? `${pin - s.updated_at} s` : EM;
      const answer = s.answer === null ? EM : units(s.answer, s.decimals);
      const valid = s.valid ? h("span", { class: "badge ok" }, "valid") : h("span", { class: "badge bad", title: s.reason || "" }, s.reason || "invalid");
      return h(
        "tr",
        { "data-chain": s.chain_id, "data-valid": s.valid },
        cell("Chain", names.get(s.chain_id) || s.chain_id),
        cell("Feed", h("span", {}, s.kind && s.kind !== "chainlink" ? h("span", { class: "tag" }, s.kind) : "", " ", h("code", { title: s.price_id ? `${s.feed} ${s.price_id}` : s.feed }, shortHex(s.feed)))),
        cell("Round", s.round_id ?? EM, "num"),
        cell("Answer", h("span", { title: s.confidence ? `${s.answer} \u00b1 ${s.confidence} (raw)` : s.answer ?? "" }, s.confidence ? `${answer} \u00b1 ${units(s.confidence, s.decimals)}` : answer), "num"),
        cell("Updated", utc(s.updated_at)),
        cell("Age at pin", age, "num"),
        cell("Reading", valid),
      );
    });
    const summary = h(
      "summary",
      { class: "price-line" },
      h("strong", {}, p.asset),
      " collateral ",
      money(p.collateral_usd),
      " (lowest valid) \u00b7 debt ",
      money(p.debt_usd),
      " (highest) \u00b7 spread ",
      pct(p.deviation),
    );
    const head = [["Chain"], ["Feed"], ["Round", "num"], ["Answer", "num"], ["Updated (UTC)"], ["Age at pin", "num"], ["Reading"]];
    return h("details", { class: "price", "data-asset": p.asset, open: wide }, summary, table(head, rows, "sources"));
  });
  container.replaceChildren(...blocks);
}

export function renderBlocks(container, m) {
  const pins = new Map(m.as_of.map((b) => [b.chain_id, b]));
  const rows = m.chains.map((c) => {
    const b = pins.get(c.chain_id);
    return h(
      "tr",
      { "data-chain": c.name, class: b ? null : "muted" },
      cell("Chain", `${c.name} (${c.chain_id})`),
      cell("Block", b ? String(b.block_number) : "not read", "num", { "data-field": "block_number" }),
      cell("Hash", b ? h("code", { title: b.block_hash }, shortHex(b.block_hash, 10, 8)) : c.reason || EM),
      cell("Time (UTC)", b ? utc(b.timestamp) : EM),
      cell("Collateral", money(c.collateral_usd), "num"),
      cell("Debt", c.status === "ok" ? figure(c.debt_usd, debtUnknown(m)) : money(c.debt_usd), "num", { "data-field": "debt_usd" }),
      cell("Margin share", money(c.margin_usd), "num"),
    );
  });
  const skew = m.max_time_skew_s === null ? EM : `${m.max_time_skew_s} s`;
  const head = [["Chain"], ["Block", "num"], ["Hash"], ["Time (UTC)"], ["Collateral", "num"], ["Debt", "num"], ["Margin share", "num"]];
  container.replaceChildren(table(head, rows, "blocks"), h("p", { class: "note" }, `Largest gap between pinned block times: ${skew}.`));
}

export function renderWarnings(container, m) {
  if (m.warnings.length === 0) {
    container.replaceChildren(h("p", { class: "empty" }, "No warnings."));
    return;
  }
  const items = m.warnings.map((w) => h("li", { "data-code": w.code }, h("code", {}, w.code), " ", w.detail));
  container.replaceChildren(h("ul", { class: "warnings" }, ...items));
}

export function renderParams(container, m) {
  const p = m.parameters;
  const assets = Object.keys(p.sigma);
  const dl = h(
    "dl",
    { class: "params" },
    h("dt", {}, "method"),
    h("dd", {}, m.method),
    h("dt", {}, "z"),
    h("dd", {}, p.z),
    h("dt", {}, "kappa"),
    h("dd", {}, p.kappa),
    h("dt", {}, "config hash"),
    h("dd", {}, h("code", { title: p.config_hash }, shortHex(p.config_hash, 12, 8))),
  );
  const sigma = table([["Asset"], ["Daily sigma", "num"], ...assets.map((a) => [`\u03c1 ${a}`, "num"])], assets.map((a) =>
    h("tr", {}, cell("Asset", a), cell("Daily sigma", p.sigma[a], "num"), ...assets.map((b) => cell(`\u03c1 ${b}`, p.correlation[a]?.[b] ?? EM, "num"))),
  ));
  const lat = table([["From chain"], [`Bridge days to ${m.target_chain.name}`, "num"]], Object.entries(p.latency_days).map(([c, d]) =>
    h("tr", {}, cell("From chain", c), cell("Bridge days", d, "num")),
  ));
  container.replaceChildren(dl, sigma, lat);
}

// METHOD.md section 12: each lending-protocol account as the protocol itself counts it.
export function renderProtocols(container, m) {
  const accounts = m.protocols || [];
  if (accounts.length === 0) {
    container.replaceChildren(h("p", { class: "empty" }, "No positions in configured lending protocols."));
    return;
  }
  const rows = accounts.map((p) =>
    h(
      "tr",
      { "data-chain": p.chain, "data-protocol": p.protocol, "data-market": p.market || "", class: p.liquidatable ? "bad" : null },
      cell("Protocol", `${p.protocol}${p.market ? " " + p.market : ""} on ${p.chain}`),
      cell("Health factor", p.status === "ok" ? h("span", { "data-value": p.health_factor ?? "", title: p.health_factor_wad ?? "no debt" }, p.health_factor === null ? "no debt" : ratio(p.health_factor)) : p.reason || EM, "num", { "data-field": "health_factor" }),
      cell("Collateral (protocol)", money(p.total_collateral_usd), "num"),
      cell("Debt (protocol)", money(p.total_debt_usd), "num", { "data-field": "total_debt_usd" }),
      cell("Debt listed", money(p.listed_debt_usd), "num"),
      cell("Available borrows", money(p.available_borrows_usd), "num", { "data-field": "available_borrows_usd" }),
      cell("Unlisted debt", p.unlisted_debt === null ? EM : p.unlisted_debt ? "yes" : "no"),
    ),
  );
  const head = [["Protocol"], ["Health factor", "num"], ["Collateral (protocol)", "num"], ["Debt (protocol)", "num"], ["Debt listed", "num"], ["Available borrows", "num"], ["Unlisted debt"]];
  container.replaceChildren(table(head, rows, "protocols"));
}
