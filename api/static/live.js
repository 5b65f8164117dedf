// Live figures and alerts (METHOD.md section 14).
// follow(): one EventSource per shown account; each `margin` event is a new computation by
// the server's watcher (after a block that may change the account): no polling loop here.
// The alerts view lists a key's alerts (GET /v1/alerts with the key typed in; never stored).

let source = null;
let updates = 0;

export function follow(account, target, onMargin) {
  stop();
  if (typeof EventSource === "undefined") return;
  const q = target ? `?target_chain=${encodeURIComponent(target)}` : "";
  source = new EventSource(`/v1/accounts/${encodeURIComponent(account)}/events${q}`);
  const mine = source;
  source.addEventListener("margin", (e) => {
    if (mine !== source) return;
    let d;
    try {
      d = JSON.parse(e.data);
    } catch {
      return;
    }
    updates += 1;
    document.body.dataset.liveUpdates = String(updates);
    onMargin(d.margin, d.snapshot_id);
  });
}

export function stop() {
  if (source) source.close();
  source = null;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

async function showAlerts(key, box) {
  box.replaceChildren(el("p", { class: "note" }, "Loading\u2026"));
  let resp;
  try {
    resp = await fetch("/v1/alerts?limit=100", { headers: { Accept: "application/json", "X-API-Key": key } });
  } catch (err) {
    box.replaceChildren(el("p", { class: "problem" }, `API not reachable: ${err.message || err}`));
    return;
  }
  const body = await resp.json().catch(() => null);
  if (!resp.ok || !body) {
    const detail = body && body.detail ? body.detail : `the server answered ${resp.status}`;
    box.replaceChildren(el("p", { class: "problem" }, detail));
    return;
  }
  if (!body.alerts.length) {
    box.replaceChildren(el("p", { class: "note" }, "No alerts for this key's watches yet."));
    return;
  }
  const head = ["When (UTC)", "Account", "Condition", "Kind", "Value", "Delivery", "Snapshot"];
  const rows = body.alerts.map((a) =>
    el(
      "tr",
      { "data-alert": a.id },
      el("td", { "data-label": head[0] }, a.created_at.replace("T", " ").slice(0, 19)),
      el("td", { "data-label": head[1] }, el("code", {}, a.account)),
      el("td", { "data-label": head[2] }, a.condition),
      el("td", { "data-label": head[3], class: a.kind === "breached" ? "bad" : "good" }, a.kind),
      el("td", { "data-label": head[4], class: "num" }, String(a.payload.value ?? "unknown")),
      el("td", { "data-label": head[5] }, `${a.status} (${a.attempts} attempt${a.attempts === 1 ? "" : "s"})`),
      el("td", { "data-label": head[6] }, el("a", { href: `/v1/snapshots/${a.snapshot_id}` }, a.snapshot_id.slice(0, 10) + "\u2026")),
    ),
  );
  const thead = el("thead", {}, el("tr", {}, ...head.map((t) => el("th", { scope: "col" }, t))));
  box.replaceChildren(el("div", { class: "table-wrap" }, el("table", { class: "stack" }, thead, el("tbody", {}, ...rows))));
}

export function initAlerts() {
  const form = document.getElementById("alerts-form");
  if (!form) return;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = document.getElementById("alerts-key").value.trim();
    if (key) showAlerts(key, document.getElementById("alerts-list"));
  });
}
