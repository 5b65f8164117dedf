// An account's stored margin snapshots over time (GET /v1/accounts/{a}/snapshots): health
// and free margin, one panel each, hand-drawn SVG like charts.js. Every point is a link to
// its snapshot (the evidence: inputs, pinned blocks, prices); a red mark over a point
// says a chain was unavailable for that computation.

import { el, scale, svgRoot } from "./charts.js";
import { EM, fixed, num, usd } from "./format.js";

const PANEL = 118; // height of one panel
const PAD_TOP = 22; // its title line, and room for the unavailable marks
const PAD_BOTTOM = 10;
const LEFT = 8;
const RIGHT = 8;

// The points of one target chain and method, oldest first, from a page of summaries.
export function historyPoints(page, target, method) {
  return page.items
    .filter((s) => s.kind === "margin" && s.figures && s.target_chain === target && s.figures.method === method)
    .map((s) => ({
      id: s.id,
      at: Date.parse(s.created_at),
      createdAt: s.created_at,
      health: s.figures.health,
      free: s.figures.free_margin_usd,
      down: s.figures.unavailable_chains,
    }))
    .reverse();
}

const PANELS = [
  { key: "health", title: "Health", show: (v) => fixed(v, 2), none: "no debt" },
  { key: "free", title: "Free margin", show: usd, none: "unknown" },
];

function when(p) {
  return new Date(p.at).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function tip(p, panel) {
  const v = p[panel.key];
  const lines = [when(p), `${panel.title}: ${v === null ? panel.none : panel.show(v)}`];
  if (p.down.length) lines.push(`unavailable: ${p.down.join(", ")}`);
  lines.push(`snapshot ${p.id.slice(0, 12)}\u2026`);
  return lines.join("\n");
}

function drawPanel(svg, points, panel, x, top, width, snapshotUrl) {
  const g = el("g", { class: `hist-panel hist-${panel.key}`, "data-panel": panel.key });
  const values = points.map((p) => num(p[panel.key])).filter((v) => v !== null);
  const lo = Math.min(...values, panel.key === "free" ? 0 : Infinity);
  const hi = Math.max(...values, panel.key === "free" ? 0 : -Infinity);
  const bottom = top + PANEL - PAD_BOTTOM;
  const spread = values.length ? hi - lo || Math.abs(hi) || 1 : 1;
  const y = values.length ? scale(lo - spread * 0.05, hi + spread * 0.05, bottom, top + PAD_TOP) : () => bottom;
  g.append(el("text", { x: 0, y: top + 13, class: "hist-title" }, panel.title));
  const known = points.map((p) => p[panel.key]).filter((v) => v !== null);
  const at = (v) => known[values.indexOf(v)]; // the exact string of a plotted value
  const range = values.length ? `${panel.show(at(Math.min(...values)))} \u2013 ${panel.show(at(Math.max(...values)))}` : EM;
  g.append(el("text", { x: width, y: top + 13, "text-anchor": "end", class: "hist-tick" }, range));
  g.append(el("line", { x1: LEFT, x2: width - RIGHT, y1: bottom, y2: bottom, class: "hist-axis" }));
  if (panel.key === "free" && values.length && lo < 0 && hi > 0) {
    g.append(el("line", { x1: LEFT, x2: width - RIGHT, y1: y(0), y2: y(0), class: "hist-zero" }));
  }
  // the line breaks where a figure is null
  let run = [];
  const flush = () => {
    if (run.length > 1) g.append(el("polyline", { points: run.join(" "), class: "hist-line" }));
    run = [];
  };
  for (const p of points) {
    const v = num(p[panel.key]);
    if (v === null) flush();
    else run.push(`${x(p.at).toFixed(2)},${y(v).toFixed(2)}`);
  }
  flush();
  for (const p of points) {
    const v = num(p[panel.key]);
    const cx = x(p.at).toFixed(2);
    const a = el("a", { href: snapshotUrl(p.id), class: "hist-link", "data-id": p.id });
    const cls = `hist-point${v === null ? " missing" : ""}${p.down.length ? " partial" : ""}`;
    const dot = el("circle", { cx, cy: (v === null ? bottom : y(v)).toFixed(2), r: 4.5, class: cls, "data-id": p.id, "data-value": p[panel.key] ?? "" });
    dot.append(el("title", {}, tip(p, panel)));
    a.append(dot);
    if (p.down.length) {
      const t = top + PAD_TOP - 6;
      const mark = el("path", { d: `M${cx} ${t + 7} l-5 -8 h10 z`, class: "hist-down", "data-id": p.id, "data-chains": p.down.join(",") });
      mark.append(el("title", {}, `unavailable: ${p.down.join(", ")}`));
      a.append(mark);
    }
    g.append(a);
  }
  svg.append(g);
}

// Draw `points` (from historyPoints) into `container`; `snapshotUrl(id)` is each link.
export function drawHistory(container, points, snapshotUrl) {
  if (!points.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "No stored margin snapshots for this target chain and method yet.";
    container.replaceChildren(p);
    return;
  }
  const width = Math.max(260, container.clientWidth);
  const first = points[0].at;
  const last = points[points.length - 1].at;
  const pad = first === last ? 60_000 : 0; // one point: centred in a two-minute window
  const x = scale(first - pad, last + pad, LEFT + 6, width - RIGHT - 6);
  const axis = 16;
  const svg = svgRoot(width, PANELS.length * PANEL + axis, "Health and free margin over time");
  PANELS.forEach((panel, i) => drawPanel(svg, points, panel, x, i * PANEL, width, snapshotUrl));
  const h = PANELS.length * PANEL + 12;
  svg.append(el("text", { x: LEFT, y: h, class: "hist-tick" }, when(points[0])));
  if (points.length > 1) {
    svg.append(el("text", { x: width - RIGHT, y: h, "text-anchor": "end", class: "hist-tick" }, when(points[points.length - 1])));
  }
  container.replaceChildren(svg);
}
