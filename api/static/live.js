// Live figures and alerts (METHOD.md section 14).
// follow(): one event stream per shown account (fetch, so it carries the key); each `margin` event is a new computation by
// the server's watcher (after a block that may change the account): no polling loop here.
// The alerts view lists a key's alerts (GET /v1/alerts with the key typed in; never stored).

let current = null; // the AbortController of the stream followed now
let updates = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One server-sent-events stream, read with fetch (not EventSource, which cannot send
// the X-API-Key header a keyed deployment needs); reconnects after a drop, stops when
// the page follows another account.
export function follow(account, target, onMargin, headers = {}) {
  stop();
  const ctrl = new AbortController();
  current = ctrl;
  const q = target ? `?target_chain=${encodeURIComponent(target)}` : "";
  const url = `/v1/accounts/${encodeURIComponent(account)}/events${q}`;
  const onEvent = (block) => {
    let name = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trimStart();
    }
    if (name !== "margin" || ctrl !== current) return;
    let d;
    try {
      d = JSON.parse(data);
    } catch {
      return;
    }
    updates += 1;
    document.body.dataset.liveUpdates = String(updates);
    onMargin(d.margin, d.snapshot_id);
  };
  (async () => {
    while (!ctrl.signal.aborted) {
      try {
        const resp = await fetch(url, {
          headers: { ...headers, Accept: "text/event-stream" },
          signal: ctrl.signal,
        });
        if (resp.ok && resp.body) {
          const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value.replace(/\r\n?/g, "\n");
            let i;
            while ((i = buf.indexOf("\n\n")) >= 0) {
              onEvent(buf.slice(0, i));
              buf = buf.slice(i + 2);
            }
          }
        } else if (resp.status === 401 || resp.status === 403) {
          return; // no key (yet): the page asks for one and follows again with it
        }
      } catch {
        if (ctrl.signal.aborted) return;
      }
      await sleep(2000);
    }
  })();
}

export function stop() {
  if (current) current.abort();
  current = null;
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
