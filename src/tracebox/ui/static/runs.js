// The runs page's live mode: new bucket events (polled) and model calls (the proxy's
// feed, relayed by the UI server) appear without reloading; the timeline is redrawn
// with its view and filters kept.
"use strict";
(() => {
  const root = document.getElementById("tb-root");
  if (!root) return;
  const feed = document.getElementById("live-feed");
  const status = document.getElementById("live-status");
  const count = document.getElementById("ev-count");
  const toggle = document.getElementById("live-toggle");
  let last = root.dataset.last || "";
  let busy = false;
  let source = null;

  function addFeed(text, cls) {
    const li = tb.el("li", "new " + (cls || ""), text);
    feed.prepend(li);
    while (feed.children.length > 200) feed.lastChild.remove();
  }

  async function redraw() {
    if (window.tbTimelineSave) window.tbTimelineSave();
    const resp = await fetch("/runs/fragment", { cache: "no-store" });
    if (!resp.ok) return;
    root.innerHTML = await resp.text();
    last = resp.headers.get("x-last-key") || last;
    const n = Number(resp.headers.get("x-count"));
    if (n) count.textContent = `${n.toLocaleString("en")} events in the log`;
    window.tbTimeline();
  }

  async function poll() {
    if (busy || !toggle.checked) return;
    busy = true;
    try {
      const resp = await fetch("/api/events?after=" + encodeURIComponent(last), { cache: "no-store" });
      if (!resp.ok) { status.textContent = "live: the server did not answer"; return; }
      const d = await resp.json();
      if (d.events.length) {
        for (const ev of d.events) {
          addFeed(`${(ev.ts || "").slice(11, 23)}  ${ev.agent || "?"}  ${ev.type}${ev.step ? "  " + ev.step : ""}`, "c-" + ev.category);
        }
        await redraw();
        last = d.last || last;
      }
      status.textContent = "live: up to date " + new Date().toISOString().slice(11, 19) + " UTC";
    } catch (err) {
      status.textContent = "live: " + err;
    } finally {
      busy = false;
    }
  }

  function connectFeed() {
    if (source || !toggle.checked || !window.EventSource) return;
    source = new EventSource("/api/feed");
    const show = (m) => {
      try {
        const ev = JSON.parse(m.data);
        if (!ev.type || !ev.type.startsWith("call.")) return;
        const what = ev.type === "call.tool_call" ? `${ev.model || ""} → ${ev.tool || "tool"}` : ev.model || "";
        addFeed(`${(ev.time || "").slice(11, 23)}  ${ev.agent || ev.session || "?"}  ${ev.type}  ${what}`,
          ev.type === "call.error" ? "call bad" : "call");
      } catch (_) { /* not an event */ }
    };
    // the proxy names each event by its type (SSE "event:" lines)
    for (const t of ["call.start", "call.first_token", "call.tool_call", "call.end", "call.error"]) {
      source.addEventListener(t, show);
    }
    source.onmessage = show;
    source.onerror = () => { source.close(); source = null; };  // no proxy running: retried later
  }

  // a model or tool call's details link to its step in the session (paths on this site only)
  window.tbDetails = (ev, dl, h) => {
    const href = ev && ev.data && ev.data.href;
    if (typeof href !== "string" || !href.startsWith("/") || href.startsWith("//")) return;
    const a = h("a", "", "open this step in its session");
    a.setAttribute("href", href);
    const dd = h("dd", "");
    dd.append(a);
    dl.append(h("dt", "", "session"), dd);
  };

  toggle.addEventListener("change", () => { if (toggle.checked) { poll(); connectFeed(); } else if (source) { source.close(); source = null; } });
  setInterval(poll, 1000);
  setInterval(connectFeed, 15000);
  connectFeed();
})();
