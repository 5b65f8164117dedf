// Inline SVG charts, drawn to the container's width. Every chart is a list of rows: a text
// line (label left, value right) over a horizontal bar, so it reads the same at 390 px as
// on a desktop. Bars carry classes and data attributes that tests and CSS rely on.

import { EM, num, usd } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const ROW = 40; // text line + bar
const BAR = 14;
const TEXT_Y = 13;
const BAR_Y = 19;

export function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function svgRoot(width, height, label) {
  return el("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    class: "chart-svg",
  });
}

export function scale(lo, hi, x0, x1) {
  const span = hi - lo || 1;
  return (v) => x0 + ((v - lo) / span) * (x1 - x0);
}

// A horizontal bar between a and b (any order), at least 2 px wide unless a === b.
function bar(x, a, b, y, h, cls, extra = {}) {
  let left = Math.min(x(a), x(b));
  let w = Math.abs(x(a) - x(b));
  if (a !== b && w < 2) {
    left -= (2 - w) / 2;
    w = 2;
  }
  return el("rect", { x: left.toFixed(2), y, width: w.toFixed(2), height: h, rx: 2, class: cls, ...extra });
}

function rowText(g, width, y, label, value, cls = "") {
  g.append(el("text", { x: 0, y: y + TEXT_Y, class: `lbl ${cls}` }, label));
  g.append(el("text", { x: width, y: y + TEXT_Y, "text-anchor": "end", class: `val ${cls}` }, value));
}

const COMPONENTS = [
  ["market", "Market risk"],
  ["bridge_latency", "Bridge latency"],
  ["correlation", "Correlation stress"],
  ["bridge_risk", "Bridge risk"],
  ["concentration", "Concentration"],
  ["floor", "Floor"],
];

// Gross collateral, minus each margin component, (plus the no-debt cap), minus debt,
// equals free margin (METHOD.md section 7). Values stay strings for the labels.
export function waterfallSteps(report) {
  const t = report.totals;
  const steps = [{ key: "collateral", label: "Gross collateral", kind: "total", value: t.collateral_usd }];
  let sum = 0;
  for (const [key, label] of COMPONENTS) {
    const v = report.haircuts[key];
    sum += num(v) ?? 0;
    steps.push({ key, label, kind: "haircut", value: v });
  }
  const m = num(t.margin_requirement_usd);
  if (m !== null && sum - m > 1e-5) {
    // the requirement is capped at collateral when there is no debt
    steps.push({ key: "cap", label: "Cap at collateral", kind: "cap", value: (sum - m).toFixed(6) });
  }
  steps.push({ key: "debt", label: "Debt", kind: "debt", value: t.debt_usd });
  steps.push({ key: "free_margin", label: "Free margin", kind: "free", value: t.free_margin_usd });
  return steps;
}

export function drawWaterfall(container, report) {
  const steps = waterfallSteps(report);
  const width = Math.max(260, container.clientWidth);
  let run = 0;
  const spans = steps.map((s) => {
    const v = num(s.value);
    if (s.kind === "total") return [0, (run = v ?? 0)];
    if (s.kind === "free") return v === null ? null : [0, v];
    const start = run;
    run = s.kind === "cap" ? run + (v ?? 0) : run - (v ?? 0);
    return [start, run];
  });
  const flat = spans.filter(Boolean).flat();
  const x = scale(Math.min(0, ...flat), Math.max(0, ...flat), 0, width);
  const svg = svgRoot(width, steps.length * ROW + 4, "Waterfall from gross collateral to free margin");
  if (Math.min(...flat) < 0) {
    svg.append(el("line", { x1: x(0), x2: x(0), y1: 0, y2: steps.length * ROW, class: "zero" }));
  }
  steps.forEach((s, i) => {
    const y = i * ROW;
    const g = el("g", { class: `wf-step wf-${s.kind}`, "data-step": s.key });
    const unknown = s.value === null || s.value === undefined;
    const zero = !unknown && num(s.value) === 0;
    const sign = zero ? "" : s.kind === "haircut" || s.kind === "debt" ? "\u2212" : s.kind === "cap" ? "+" : "";
    // free margin and debt are null only when debt cannot be valued (METHOD.md section 4)
    const text = unknown ? (s.kind === "free" || s.kind === "debt" ? "unknown" : EM) : `${sign}${usd(s.value).replace("-", "\u2212")}`;
    rowText(g, width, y, s.label, text);
    const span = spans[i] ?? [0, 0];
    let cls = `wf-bar wf-${s.kind}`;
    if (s.kind === "free" && num(s.value) !== null && num(s.value) < 0) cls += " negative";
    if (unknown) cls += " unknown";
    const r = bar(x, span[0], span[1], y + BAR_Y, BAR, cls, { "data-value": s.value ?? "" });
    r.append(el("title", {}, `${s.label}: ${unknown ? "not computed" : s.value + " USD"}`));
    g.append(r);
    if (i + 1 < steps.length && spans[i] && s.kind !== "free") {
      const at = x(span[1]);
      g.append(el("line", { x1: at, x2: at, y1: y + BAR_Y + BAR, y2: y + ROW + BAR_Y, class: "connector" }));
    }
    svg.append(g);
  });
  container.replaceChildren(svg);
}

const CHAIN_SERIES = [
  ["collateral_usd", "collateral"],
  ["debt_usd", "debt"],
  ["margin_usd", "margin"],
];

// Per chain: collateral, debt and the chain's share of the margin requirement.
export function drawChains(container, report) {
  const width = Math.max(260, container.clientWidth);
  const sub = 9;
  const rowH = TEXT_Y + 6 + CHAIN_SERIES.length * (sub + 2) + 8;
  const values = report.chains.flatMap((c) => CHAIN_SERIES.map(([k]) => num(c[k]) ?? 0));
  const x = scale(Math.min(0, ...values), Math.max(0, ...values), 0, width);
  const svg = svgRoot(width, report.chains.length * rowH, "Collateral, debt and margin per chain");
  report.chains.forEach((c, i) => {
    const y = i * rowH;
    const g = el("g", { class: `chain-row ${c.status}`, "data-chain": c.name });
    if (c.status !== "ok") {
      rowText(g, width, y, `${c.name} (${c.chain_id})`, "unavailable", "bad");
      g.append(el("rect", { x: 0, y: y + BAR_Y, width, height: 3 * (sub + 2) - 2, class: "chain-missing" }));
      const why = el("text", { x: 6, y: y + BAR_Y + 17, class: "note" }, c.reason || "could not be read");
      g.append(why);
    } else {
      // an ok chain's debt is null when a debt position on it could not be read or priced
      const debtUnknown = c.debt_usd === null;
      const debt = debtUnknown ? " \u00b7 debt unknown" : num(c.debt_usd) ? ` \u00b7 debt ${usd(c.debt_usd)}` : "";
      rowText(g, width, y, `${c.name} (${c.chain_id})`, `${usd(c.collateral_usd)}${debt}`);
      CHAIN_SERIES.forEach(([key, cls], j) => {
        const v = num(c[key]) ?? 0;
        const missing = c[key] === null;
        const r = bar(x, 0, v, y + BAR_Y + j * (sub + 2), sub, `chain-bar ${cls}${missing ? " unknown" : ""}`, { "data-value": c[key] ?? "" });
        r.append(el("title", {}, `${c.name} ${cls}: ${missing ? "unknown (could not be valued)" : `${c[key]} USD`}`));
        g.append(r);
      });
    }
    svg.append(g);
  });
  container.replaceChildren(svg);
}

// Equity after each configured scenario; the dashed line is today's equity. When debt
// cannot be valued (METHOD.md section 9) equity and solvency are null: the row says
// "unknown" and its bar is an outline over the collateral after the shock.
export function drawStress(container, stress) {
  const width = Math.max(260, container.clientWidth);
  const now = num(stress.equity_usd);
  const values = [now, ...stress.scenarios.map((s) => num(s.equity_usd ?? s.collateral_usd))].filter((v) => v !== null);
  const x = scale(Math.min(0, ...values), Math.max(0, ...values), 0, width);
  const h = stress.scenarios.length * ROW;
  const svg = svgRoot(width, h + 4, "Equity after each stress scenario");
  stress.scenarios.forEach((s, i) => {
    const y = i * ROW;
    const worst = s.name === stress.worst;
    const g = el("g", { class: `stress-row${worst ? " worst" : ""}`, "data-scenario": s.name });
    const verdict = s.solvent === null ? "unknown" : s.solvent ? "solvent" : "insolvent";
    const shown = s.equity_usd === null ? `collateral ${usd(s.collateral_usd)} \u00b7 solvency unknown` : `${usd(s.equity_usd)} \u00b7 ${verdict}`;
    rowText(g, width, y, worst ? `${s.name} (worst)` : s.name, shown);
    const to = num(s.equity_usd ?? s.collateral_usd);
    const r = bar(x, 0, to, y + BAR_Y, BAR, `stress-bar ${verdict}`, { "data-value": s.equity_usd ?? "" });
    const debt = s.debt_usd ?? "unknown";
    const equity = s.equity_usd === null ? "unknown" : `${s.equity_usd} USD`;
    r.append(el("title", {}, `${s.name}: collateral ${s.collateral_usd}, debt ${debt}, equity ${equity}`));
    g.append(r);
    svg.append(g);
  });
  if (now !== null) svg.append(el("line", { x1: x(now), x2: x(now), y1: 16, y2: h, class: "now" }));
  container.replaceChildren(svg);
}
