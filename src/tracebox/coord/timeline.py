"""Render a coordination event log as one self-contained, offline HTML timeline.

This module owns the timeline viewer: it turns a list of event dicts (the append-only log
under ``events/``) into a single HTML file with inline CSS and vanilla JavaScript. The page
makes no network requests (a Content-Security-Policy with ``default-src 'none'`` enforces
it) and treats every string in the events as untrusted: the data is embedded as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, and the
script builds the DOM with ``textContent`` only.

The page shows one swim-lane per agent on a shared UTC time axis, with claim leases drawn
as bars, takeovers marked, blocked handoffs in red and messages as arrows between lanes;
filters per agent and per category; zoom and pan; a details panel with the event's JSON;
and a virtualised event table. Derived shapes (leases, links, one-line summaries) are
computed here in Python so the script only draws.

Pure and stdlib-only on purpose: it must import fast, so the only tracebox module it uses
is ``tracebox.text`` (stdlib-only itself).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from ..text import clip
from ..text import size as human_size

__all__ = ["CATEGORIES", "category_of", "parts", "render_html"]

#: Event categories, in legend order. The ``type`` prefix before the first dot picks one.
CATEGORIES: tuple[str, ...] = (
    "claim",
    "step",
    "message",
    "memory",
    "artifact",
    "llm",
    "tool",
    "other",
)
_CATEGORY_INDEX = {name: i for i, name in enumerate(CATEGORIES)}

_SUMMARY_MAX = 240
_MAX_LEASE_SLOTS = 4
_BROADCAST = "_broadcast"
_PLACEHOLDER = re.compile(r"@@([A-Z]+)@@")


def category_of(event_type: str) -> str:
    """The display category of an event type: ``claim.renew`` -> ``claim``; unknown -> ``other``."""
    prefix = event_type.split(".", 1)[0]
    return prefix if prefix in _CATEGORY_INDEX and prefix != "other" else "other"


def render_html(events: list[dict], *, title: str = "tracebox run") -> str:
    """Render ``events`` (any order) as a complete, self-contained HTML document."""
    payload = _build_payload(events, title)
    data = _json_for_script(payload)
    csp = (
        "default-src 'none'; "
        f"script-src {_csp_hash(_JS)}; style-src {_csp_hash(_CSS)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    values = {
        "CSP": csp,
        "TITLE": _html_text(title),
        "CSS": _CSS,
        "DATA": data,
        "JS": _JS,
    }
    # One pass, so nothing inserted (the data above all) is ever scanned for placeholders.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _TEMPLATE)


# --------------------------------------------------------------------------- payload


def parts(events: list[dict], *, title: str = "tracebox run") -> dict[str, str]:
    """What `tracebox ui` embeds in its own page: ``css``, ``js`` (to serve as files),
    ``body`` (the timeline's markup) and ``data`` (the ``<script type="application/json"
    id="tb-data">`` block holding the events, escaped like in ``render_html``)."""
    start = _TEMPLATE.index('<header class="top">')
    end = _TEMPLATE.index('<script type="application/json"')
    data = _json_for_script(_build_payload(events, title))
    return {
        "css": _CSS,
        "js": _JS,
        "body": _TEMPLATE[start:end].replace("@@TITLE@@", _html_text(title)),
        "data": f'<script type="application/json" id="tb-data">{data}</script>',
    }


def _build_payload(events: list[dict], title: str) -> dict[str, Any]:
    items = []
    for order, event in enumerate(events):
        ev = event if isinstance(event, dict) else {}
        items.append((_parse_ts(ev.get("ts")), order, event))
    # Sort by time; events without a usable timestamp go last, in their original order.
    items.sort(key=lambda item: (item[0] is None, item[0] or 0.0, item[1]))

    agents: list[str] = []
    agent_index: dict[str, int] = {}
    rows: list[list[Any]] = []
    raw: list[Any] = []
    datas: list[dict] = []
    for t, _, event in items:
        ev = event if isinstance(event, dict) else {}
        agent = _text(ev.get("agent")) or "(no agent)"
        if agent not in agent_index:
            agent_index[agent] = len(agents)
            agents.append(agent)
        etype = _text(ev.get("type")) or "(no type)"
        data = ev.get("data") if isinstance(ev.get("data"), dict) else {}
        datas.append(data)
        rows.append(
            [
                None if t is None else round(t, 3),
                agent_index[agent],
                _CATEGORY_INDEX[category_of(etype)],
                _variant(etype, data),
                etype,
                _text(ev.get("step")),
                clip(_summary(etype, data), _SUMMARY_MAX),
            ]
        )
        raw.append(event)

    leases, slots = _leases(rows, datas, len(agents))
    links = _links(rows, datas, agent_index)
    times = [row[0] for row in rows if row[0] is not None]
    times += [lease[2] for lease in leases]
    return {
        "title": str(title),
        "agents": agents,
        "categories": list(CATEGORIES),
        "events": raw,
        "rows": rows,
        "leases": leases,
        "slots": slots,
        "links": links,
        "range": [min(times), max(times)] if times else None,
    }


def _leases(
    rows: list[list[Any]], datas: list[dict], n_agents: int
) -> tuple[list[list[Any]], list[int]]:
    """Claim leases as ``[agent, start, end, slot, event, kind, end_reason, step]``.

    A lease starts at ``claim.acquire``/``claim.takeover`` and ends at the owner's
    ``claim.release`` or ``step.complete`` on that step, at a takeover by someone else (its
    expiry, if earlier), or else at its last known ``data.expires`` (renewals extend it).
    A lease still held when the log ends is drawn past the last event by at most a quarter
    of the run (a far-future or bogus expiry must not squash the whole axis).
    """
    open_by_step: dict[str, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    last_t = None

    def close(lease: dict[str, Any], end: float, reason: str) -> None:
        lease["end"], lease["reason"] = max(end, lease["start"]), reason
        done.append(lease)

    for i, row in enumerate(rows):
        t, agent, _, _, etype, step, _ = row
        if t is None:
            continue
        last_t = t
        data = datas[i]
        current = open_by_step.get(step)
        if etype in ("claim.acquire", "claim.takeover"):
            if current is not None:
                del open_by_step[step]
                exp = current["expires"]
                reason = "takeover" if current["agent"] != agent else "reacquired"
                close(current, t if exp is None else min(t, exp), reason)
            open_by_step[step] = {
                "agent": agent,
                "start": t,
                "expires": _parse_ts(data.get("expires")),
                "event": i,
                "kind": "takeover" if etype == "claim.takeover" else "acquire",
                "step": step,
            }
        elif etype == "claim.renew" and current is not None and current["agent"] == agent:
            current["expires"] = _parse_ts(data.get("expires")) or current["expires"]
        elif etype in ("claim.release", "step.complete") and current is not None:
            if current["agent"] == agent:
                del open_by_step[step]
                close(current, t, "released" if etype == "claim.release" else "completed")

    first_t = next((row[0] for row in rows if row[0] is not None), None)
    for lease in open_by_step.values():
        exp, end = lease["expires"], last_t if last_t is not None else lease["start"]
        if exp is None:
            close(lease, end, "open")
        elif exp <= end:
            close(lease, exp, "expired")
        else:
            horizon = end + max(60_000.0, (end - (first_t or end)) / 4)
            close(lease, min(exp, horizon), "held")

    # Pack each agent's leases into a few non-overlapping rows ("slots") within its lane.
    done.sort(key=lambda lease: (lease["start"], lease["event"]))
    slot_ends: list[list[float]] = [[] for _ in range(n_agents)]
    out = []
    for lease in done:
        ends = slot_ends[lease["agent"]]
        slot = next((k for k, end in enumerate(ends) if end <= lease["start"]), None)
        if slot is None:
            if len(ends) < _MAX_LEASE_SLOTS:
                slot = len(ends)
                ends.append(lease["end"])
            else:
                slot = min(range(len(ends)), key=ends.__getitem__)
        ends[slot] = max(ends[slot], lease["end"])
        out.append(
            [
                lease["agent"],
                lease["start"],
                round(lease["end"], 3),
                slot,
                lease["event"],
                lease["kind"],
                lease["reason"],
                lease["step"],
            ]
        )
    return out, [max(1, len(ends)) for ends in slot_ends]


def _links(
    rows: list[list[Any]], datas: list[dict], agent_index: dict[str, int]
) -> list[list[Any]]:
    """Arrows between lanes as ``[event, to_agent, kind]`` (kind: message|handoff|blocked)."""
    links = []
    for i, row in enumerate(rows):
        etype, agent = row[4], row[1]
        if etype not in ("message.send", "step.complete"):
            continue
        to = datas[i].get("to")
        if not isinstance(to, str) or to not in agent_index or agent_index[to] == agent:
            continue
        kind = (
            "message"
            if etype == "message.send"
            else ("blocked" if row[3] == "blocked" else "handoff")
        )
        links.append([i, agent_index[to], kind])
    return links


def _variant(etype: str, data: dict) -> str:
    """A sub-kind that changes how a mark is drawn (shape or colour)."""
    if etype == "claim.takeover":
        return "takeover"
    if etype == "claim.release":
        return "release"
    if etype == "step.complete":
        status = data.get("status")
        return (
            {"blocked": "blocked", "needs_review": "review"}.get(status, "")
            if isinstance(status, str)
            else ""
        )
    if etype == "step.reopen":
        return "reopen"
    if etype == "message.send" and data.get("to") == _BROADCAST:
        return "broadcast"
    if etype == "memory.delete":
        return "delete"
    if etype in ("llm.call", "tool.call") and data.get("error"):
        return "error"
    return ""


def _summary(etype: str, d: dict) -> str:
    """One line for the event table and tooltips."""
    g = lambda key: _text(d.get(key))  # noqa: E731
    if etype == "claim.acquire":
        parts = [f"acquired lease, epoch {g('epoch')}" if g("epoch") else "acquired lease"]
        if g("ttl_s"):
            parts.append(f"ttl {g('ttl_s')}s")
        if g("expires"):
            parts.append(f"expires {_short_time(d.get('expires'))}")
        return ", ".join(parts)
    if etype == "claim.takeover":
        prev = g("previous_owner") or "?"
        epochs = f" (epoch {g('previous_epoch') or '?'} → {g('epoch') or '?'})"
        expired = g("previous_expires")
        tail = f", their lease expired {_short_time(d.get('previous_expires'))}" if expired else ""
        return f"took over from {prev}{epochs}{tail}"
    if etype == "claim.renew":
        return f"renewed, epoch {g('epoch') or '?'}, expires {_short_time(d.get('expires'))}"
    if etype == "claim.release":
        return f"released, epoch {g('epoch') or '?'}"
    if etype == "step.complete":
        text = g("status") or "complete"
        if g("to"):
            text += f" → {g('to')}"
        if g("note"):
            text += f": {g('note')}"
        if g("next_action"):
            text += f" · next: {g('next_action')}"
        files = d.get("changed_files")
        if isinstance(files, list) and files:
            text += f" · {len(files)} file{'s' if len(files) != 1 else ''} changed"
        return text
    if etype == "step.reopen":
        text = f"reopened (was {g('previous_status')})" if g("previous_status") else "reopened"
        return f"{text}: {g('reason')}" if g("reason") else text
    if etype == "message.send":
        to = "everyone" if d.get("to") == _BROADCAST else (g("to") or "?")
        return f"→ {to}: {g('preview')}" if g("preview") else f"→ {to}"
    if etype == "message.ack":
        return f"acknowledged {g('count') or '?'} message(s)"
    if etype == "memory.set":
        return f"{g('key') or '?'} = v{g('version') or '?'}"
    if etype == "memory.delete":
        return f"deleted {g('key') or '?'} (v{g('version') or '?'})"
    if etype == "artifact.upload":
        text = g("name") or "?"
        size = d.get("size")
        extra = [human_size(size)] if isinstance(size, int | float) else []
        if g("sha256"):
            extra.append(f"sha256 {g('sha256')[:12]}")
        return f"{text} ({', '.join(extra)})" if extra else text
    if etype == "agent.heartbeat":
        return "heartbeat"
    if etype == "llm.call":
        tokens = [f"{k} {d[k]:,}" for k in ("input", "output") if isinstance(d.get(k), int)]
        text = " · ".join([g("model") or "model call", *tokens])
        return f"{text} · error: {g('error')}" if g("error") else text
    if etype == "tool.call":
        text = f"{g('tool') or 'tool'} {g('arguments')}".strip()
        return f"{text} → error: {g('error')}" if g("error") else text
    return _text(d) if d else ""


# --------------------------------------------------------------------------- helpers


def _parse_ts(value: Any) -> float | None:
    """Milliseconds since the epoch for an ISO 8601 string (naive means UTC), else None."""
    if not isinstance(value, str) or not 10 <= len(value) <= 64:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp() * 1000.0
    except (OverflowError, ValueError, OSError):
        return None


def _short_time(value: Any) -> str:
    t = _parse_ts(value)
    if t is None:
        return _text(value)
    return datetime.fromtimestamp(t / 1000.0, UTC).strftime("%H:%M:%S")


def _text(value: Any) -> str:
    """A display string for any JSON-ish value: strings as-is, others as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)[:1000]
    except (TypeError, ValueError, RecursionError):
        return str(value)[:1000]


def _json_for_script(payload: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ASCII, no ``<``, ``>`` or ``&``."""
    try:
        text = json.dumps(
            payload, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=str
        )
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(
            _sanitize(payload), ensure_ascii=True, allow_nan=False, separators=(",", ":")
        )
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sanitize(value: Any, depth: int = 0) -> Any:
    """Make a value JSON-encodable: string keys, finite floats, bounded depth (no cycles)."""
    if depth > 64:
        return "…"
    if isinstance(value, dict):
        return {str(k): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitize(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _html_text(value: Any) -> str:
    """Escaped, ASCII-only HTML text (non-ASCII as character references)."""
    escaped = html.escape(str(value))
    return escaped.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


# --------------------------------------------------------------------------- page

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@@CSP@@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>@@TITLE@@</title>
<style>@@CSS@@</style>
</head>
<body>
<header class="top">
  <div>
    <div class="brand">tracebox timeline</div>
    <h1 id="tb-title">@@TITLE@@</h1>
  </div>
  <div class="stats" id="tb-stats"></div>
</header>
<main>
  <section class="card timeline" aria-label="Timeline">
    <div class="filters">
      <div class="fgroup"><span class="flabel">Agents</span>
        <span class="fbtns"><button type="button" id="tb-all">all</button><button type="button"
          id="tb-none">none</button></span>
        <div class="chips" id="tb-f-agents"></div></div>
      <div class="fgroup"><span class="flabel">Categories</span>
        <div class="chips" id="tb-f-cats"></div></div>
    </div>
    <div class="toolbar">
      <div class="legend" id="tb-legend"></div>
      <div class="zoom">
        <button type="button" id="tb-left" title="Pan left">&#8592;</button>
        <button type="button" id="tb-out" title="Zoom out">&#8722;</button>
        <button type="button" id="tb-in" title="Zoom in">+</button>
        <button type="button" id="tb-right" title="Pan right">&#8594;</button>
        <button type="button" id="tb-reset" title="Show the whole run">Reset</button>
      </div>
    </div>
    <div class="lanes" id="tb-lanes">
      <div class="empty" id="tb-empty" hidden>No events</div>
      <svg id="tb-svg" role="img" aria-label="Agent swim-lanes"></svg>
    </div>
    <div class="hintbar"><span id="tb-status"></span><span>Scroll to zoom, drag to pan,
      click a mark for details.</span></div>
  </section>
  <aside class="card details" id="tb-det" aria-label="Event details">
    <div class="det-top"><h2>Details</h2>
      <span class="fbtns"><button type="button" id="tb-prev" title="Previous event">&#8249;</button
      ><button type="button" id="tb-next" title="Next event">&#8250;</button></span></div>
    <p class="muted" id="tb-det-empty">Click an event mark or a table row to see its JSON.</p>
    <div id="tb-det-body" hidden>
      <div class="det-type"><span class="dot" id="tb-det-dot"></span><b id="tb-det-type"></b></div>
      <dl id="tb-det-meta"></dl>
      <details id="tb-json-box" open><summary>Event JSON</summary><pre id="tb-json"></pre></details>
    </div>
  </aside>
  <section class="card events" aria-label="Event list">
    <div class="list-top"><h2>Events</h2><span class="muted" id="tb-list-count"></span></div>
    <div class="list-head"><span>Time (UTC)</span><span>Agent</span><span>Type</span><span>Step</span
      ><span>Summary</span></div>
    <div class="list" id="tb-list"><div id="tb-list-inner"></div></div>
  </section>
</main>
<div class="tip" id="tb-tip" hidden></div>
<script type="application/json" id="tb-data">@@DATA@@</script>
<script>@@JS@@</script>
</body>
</html>
"""

_CSS = """
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1f2430; --muted: #6b7280; --line: #e4e7ec;
  --accent: #4f46e5; --claim: #7c3aed; --step: #16a34a; --message: #2563eb;
  --memory: #db2777; --artifact: #ea580c; --llm: #0d9488; --tool: #a16207;
  --other: #64748b; --blocked: #dc2626;
  --review: #eab308;
}
* { box-sizing: border-box; }
html, body { margin: 0; }
body {
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", sans-serif;
  color: var(--ink); background: var(--bg);
}
button {
  font: inherit; font-size: 12.5px; color: var(--ink); background: #fff; cursor: pointer;
  border: 1px solid var(--line); border-radius: 7px; padding: 3px 10px; min-width: 30px;
}
button:hover { background: #f3f4f6; border-color: #d0d5dd; }
button:active { background: #e9eaee; }
h2 { font-size: 14px; margin: 0; font-weight: 650; }
.muted { color: var(--muted); }
.top {
  display: flex; justify-content: space-between; align-items: flex-end; gap: 16px;
  flex-wrap: wrap; padding: 18px 24px 10px;
}
.brand {
  font-size: 11px; font-weight: 600; letter-spacing: .08em; text-transform: uppercase;
  color: var(--accent);
}
h1 { font-size: 21px; margin: 2px 0 0; font-weight: 680; letter-spacing: -.01em;
  overflow-wrap: anywhere; }
.stats { display: flex; gap: 8px; flex-wrap: wrap; }
.stat {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 5px 12px; font-size: 12px; color: var(--muted);
}
.stat b { display: block; color: var(--ink); font-size: 14px; font-weight: 620;
  font-variant-numeric: tabular-nums; }
main {
  display: grid; grid-template-columns: minmax(0, 1fr) 360px; gap: 16px;
  align-items: start; padding: 6px 24px 28px;
}
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .05); min-width: 0;
}
.details {
  position: sticky; top: 12px; max-height: calc(100vh - 24px); overflow: auto;
  padding: 14px 16px;
}
.events { grid-column: 1 / -1; }
@media (max-width: 1100px) {
  main { grid-template-columns: minmax(0, 1fr); }
  .details { position: static; max-height: none; }
}
.filters { display: flex; flex-direction: column; gap: 8px; padding: 12px 16px 4px; }
.fgroup { display: flex; align-items: flex-start; gap: 10px; }
.flabel {
  flex: 0 0 78px; font-size: 11px; font-weight: 650; letter-spacing: .06em;
  text-transform: uppercase; color: var(--muted); padding-top: 5px;
}
.fgroup .fbtns { order: 3; margin-left: auto; }
.fbtns { display: inline-flex; gap: 4px; white-space: nowrap; }
.fbtns button { padding: 1px 8px; font-size: 11.5px; }
.chips { display: flex; flex-wrap: wrap; gap: 6px; min-width: 0; }
.chip {
  display: inline-flex; align-items: center; gap: 6px; max-width: 260px;
  padding: 3px 10px 3px 7px; font-size: 12.5px; border: 1px solid var(--line);
  border-radius: 999px; background: #fff; cursor: pointer; user-select: none;
}
.chip:hover { border-color: #cdd2da; }
.chip input { margin: 0; accent-color: var(--accent); }
.chip:has(input:not(:checked)) { opacity: .5; background: #f3f4f6; }
.chip .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.chip .n { color: var(--muted); font-size: 11.5px; font-variant-numeric: tabular-nums; }
.chip svg, .legend svg { flex: none; overflow: visible; }
.toolbar {
  display: flex; justify-content: space-between; align-items: center; gap: 12px;
  flex-wrap: wrap; padding: 8px 16px 8px; border-bottom: 1px solid var(--line);
}
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: var(--muted); }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.zoom { display: inline-flex; gap: 4px; }
.lanes { position: relative; min-height: 90px; }
.empty {
  padding: 40px 16px; text-align: center; color: var(--muted); font-size: 15px;
}
.hintbar {
  display: flex; justify-content: space-between; gap: 12px; flex-wrap: wrap;
  padding: 6px 16px 10px; font-size: 11.5px; color: var(--muted);
  border-top: 1px solid var(--line);
}
#tb-svg { display: block; cursor: grab; user-select: none; touch-action: none; }
#tb-svg.dragging { cursor: grabbing; }
.lane { fill: #fff; }
.lane.odd { fill: #fafbfc; }
.lane-sep { stroke: #eef0f3; }
.lane-label { font-size: 12.5px; font-weight: 600; fill: var(--ink); }
.lane-sub { font-size: 10.5px; fill: var(--muted); }
.labels-bg { fill: #fff; }
.grid { stroke: #eceef2; }
.tick { font-size: 11px; fill: var(--muted); font-variant-numeric: tabular-nums; }
.tick.cap { font-weight: 600; }
.axis-line { stroke: #d0d5dd; }
.c-claim { --c: var(--claim); } .c-step { --c: var(--step); }
.c-message { --c: var(--message); } .c-memory { --c: var(--memory); }
.c-artifact { --c: var(--artifact); } .c-other { --c: var(--other); }
.c-llm { --c: var(--llm); } .c-tool { --c: var(--tool); } .v-error { --c: var(--blocked); }
.v-blocked { --c: var(--blocked); } .v-review { --c: var(--review); }
.m { fill: var(--c); stroke: #fff; stroke-width: 1.2; cursor: pointer; }
.m:hover { stroke: var(--ink); stroke-width: 1.6; }
.m.v-blocked { fill: var(--blocked); stroke: #7f1d1d; stroke-width: 1.6; }
.m.v-takeover { stroke: #2e1065; stroke-width: 1.8; }
.m.v-release, .m.v-reopen, .m.v-delete, .m.v-broadcast {
  fill: #fff; stroke: var(--c); stroke-width: 2;
}
.lease {
  fill: color-mix(in srgb, var(--claim) 14%, #fff);
  stroke: color-mix(in srgb, var(--claim) 50%, #fff); stroke-width: 1; cursor: pointer;
}
.lease.k-takeover { fill: color-mix(in srgb, var(--claim) 26%, #fff); stroke: var(--claim); }
.lease.e-takeover, .lease.e-expired { stroke-dasharray: 3 2; }
.lease-label { font-size: 9.5px; fill: #4c1d95; pointer-events: none; }
.takeover-line { stroke: var(--claim); stroke-width: 1.5; stroke-dasharray: 2 2; }
.link { fill: none; stroke-width: 1.4; pointer-events: none; }
.l-message { stroke: var(--message); opacity: .55; }
.dense .l-message { opacity: .25; }
.m.bulk { cursor: pointer; stroke: none; }
.m.bulk.v-release, .m.bulk.v-reopen, .m.bulk.v-delete, .m.bulk.v-broadcast {
  fill: var(--c); fill-opacity: .45;
}
.dense .lease { stroke: none; }
.l-handoff { stroke: var(--step); stroke-dasharray: 4 3; opacity: .8; }
.l-blocked { stroke: var(--blocked); stroke-dasharray: 4 3; }
.arr-message { fill: var(--message); } .arr-handoff { fill: var(--step); }
.arr-blocked { fill: var(--blocked); }
.selring { fill: none; stroke: var(--ink); stroke-width: 2; pointer-events: none; }
.hint { fill: var(--muted); font-size: 13px; }
.det-top { display: flex; justify-content: space-between; align-items: center;
  margin-bottom: 10px; }
.det-type { display: flex; align-items: center; gap: 8px; font-size: 15px;
  overflow-wrap: anywhere; }
.dot { width: 10px; height: 10px; border-radius: 50%; background: var(--c, var(--other));
  flex: none; display: inline-block; }
dl { display: grid; grid-template-columns: 64px minmax(0, 1fr); gap: 4px 10px;
  margin: 10px 0 12px; font-size: 12.5px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
details summary { cursor: pointer; font-size: 12.5px; font-weight: 600; color: var(--muted);
  margin-bottom: 6px; }
pre {
  margin: 0; padding: 10px 12px; background: #f7f8fa; border: 1px solid var(--line);
  border-radius: 8px; font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas,
    "Liberation Mono", monospace;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 60vh; overflow: auto;
}
.list-top { display: flex; align-items: baseline; gap: 10px; padding: 12px 16px 8px; }
.list-top .muted { font-size: 12px; }
.list-head, .row {
  display: grid; gap: 12px; align-items: center; padding: 0 16px;
  grid-template-columns: 150px 150px 170px 150px minmax(0, 1fr);
}
.list-head {
  font-size: 11px; font-weight: 650; letter-spacing: .05em; text-transform: uppercase;
  color: var(--muted); padding-bottom: 6px; border-bottom: 1px solid var(--line);
}
.list { position: relative; height: 420px; overflow: auto; }
#tb-list-inner { position: relative; }
.row {
  position: absolute; left: 0; right: 0; height: 28px; font-size: 12.5px; cursor: pointer;
  border-bottom: 1px solid #f1f2f5;
}
.row span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.row:hover { background: #f6f7ff; }
.row.sel { background: #eef0ff; box-shadow: inset 3px 0 0 var(--accent); }
.row .time { font-variant-numeric: tabular-nums; color: var(--muted); }
.row .type { display: inline-flex; align-items: center; gap: 7px; }
.row.blocked .type, .row.blocked .sum { color: var(--blocked); font-weight: 600; }
.list .none { padding: 24px 16px; color: var(--muted); }
.tip {
  position: fixed; z-index: 10; max-width: 380px; pointer-events: none;
  background: #111827; color: #f9fafb; border-radius: 8px; padding: 7px 10px;
  font-size: 12px; box-shadow: 0 6px 20px rgba(0, 0, 0, .18); overflow-wrap: anywhere;
}
.tip .h { color: #c7cbd4; font-size: 11px; }
.tip .t { font-weight: 650; }
"""

_JS = r"""
// tbTimeline() draws #tb-data into the page; `tracebox ui` calls it again after a live
// update (new data, fresh container) and the view, filters and selection carry over
// through window.tbTimelineState.
window.tbTimeline = function tbTimeline() {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const D = JSON.parse(document.getElementById("tb-data").textContent);
  const EV = D.events, R = D.rows, AG = D.agents, CATS = D.categories;
  const T = 0, A = 1, C = 2, V = 3, TY = 4, ST = 5, SU = 6;  // row fields
  // lane labels: wide enough for the longest agent name (within 130..250 px)
  const LABEL_CH = Math.min(34, Math.max(16, ...AG.map((a) => a.length)));
  const LABEL_W = Math.round(LABEL_CH * 7.2 + 30), RIGHT = 20, AXIS_H = 32, MARK_Y = 18, LANE_BASE = 32, SLOT_H = 13;
  const ROW_H = 28, DENSE = 600;
  // Mark shapes as relative path commands from the mark's centre: "M x,y" + SHAPES[name].
  const poly = (pts) => `m${pts[0]}l` + pts.slice(1).map((p, j) =>
    `${+(p[0] - pts[j][0]).toFixed(2)},${+(p[1] - pts[j][1]).toFixed(2)}`).join(" ") + "z";
  const circle = (r) => `m${-r},0a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0`;
  const star = Array.from({ length: 10 }, (_, j) => {
    const a = (Math.PI * j) / 5 - Math.PI / 2, r = j % 2 ? 2.8 : 6.6;
    return [r * Math.cos(a), r * Math.sin(a)];
  });
  const SHAPES = {
    claim: poly([[-4.5, -4.5], [4.5, -4.5], [4.5, 4.5], [-4.5, 4.5]]),
    takeover: poly([[0, -7.5], [7.5, 0], [0, 7.5], [-7.5, 0]]),
    step: circle(5),
    message: poly([[0, -5.5], [5.5, 4.5], [-5.5, 4.5]]),
    memory: poly([[-5.5, 0], [-2.75, -4.8], [2.75, -4.8], [5.5, 0], [2.75, 4.8], [-2.75, 4.8]]),
    artifact: poly(star),
    llm: poly([[-1.6, -6.5], [1.6, -6.5], [1.6, 6.5], [-1.6, 6.5]]),
    tool: poly([[-4.5, -4], [4.5, -4], [0, 5]]),
    other: circle(3.5),
  };
  const CAT_LABEL = { claim: "Claims", step: "Steps & handoffs", message: "Messages",
    memory: "Memory", artifact: "Artifacts", llm: "Model calls", tool: "Tool calls",
    other: "Other" };
  const $ = (id) => document.getElementById(id);

  function h(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function add(parent, tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    parent.appendChild(e);
    return e;
  }
  function swatch(shape, cls, w = 16) {
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", w); svg.setAttribute("height", 14);
    if (shape === "lease") add(svg, "rect", { x: 0, y: 3, width: w, height: 8, rx: 2, class: cls });
    else if (shape === "arrow") add(svg, "line", { x1: 1, y1: 7, x2: w - 1, y2: 7, class: cls });
    else add(svg, "path", { d: `M${w / 2},7${SHAPES[shape]}`, class: cls });
    return svg;
  }
  const plural = (n, word) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
  const clip = (s, n) => (s.length > n ? s.slice(0, Math.max(1, n - 1)) + "\u2026" : s);
  const shapeOf = (r) => (r[V] === "takeover" ? "takeover" : CATS[r[C]]);

  // ---- time formatting (always UTC)
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const fmtDate = (t) => new Date(t).toISOString().slice(0, 10);
  function fmtTime(t, withDate) {
    const d = new Date(t);
    const s = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}` +
      `.${pad(d.getUTCMilliseconds(), 3)}`;
    return withDate ? `${fmtDate(t)} ${s}` : s;
  }
  function fmtDur(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
    const hr = Math.floor(m / 60);
    return hr < 48 ? `${hr} h ${m % 60} min` : `${Math.floor(hr / 24)} d ${hr % 24} h`;
  }
  const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4,
    3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5, 2592e6, 31536e6];
  function tickStep(span, px) {
    const want = Math.max(2, px / 100);
    return STEPS.find((x) => span / x <= want) || Math.ceil(span / want / 31536e6) * 31536e6;
  }
  function tickLabel(t, step) {
    if (step >= 864e5) return fmtDate(t).slice(5);
    const d = new Date(t), hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (step >= 6e4) return hm;
    if (step >= 1e3) return `${hm}:${pad(d.getUTCSeconds())}`;
    return `${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
  }

  // ---- state
  let full = null;
  if (D.range) {
    const span = D.range[1] - D.range[0], p = span > 0 ? span * 0.04 : 30e3;
    full = [D.range[0] - p, D.range[1] + p];
  }
  const multiDay = !!D.range && D.range[1] - D.range[0] > 864e5;
  const kept = window.tbTimelineState || null;  // from before a live update
  const state = { agentOn: AG.map((n) => !(kept && kept.agentsOff.includes(n))),
    catOn: CATS.map((c) => !(kept && kept.catsOff.includes(c))), sel: -1,
    view: kept && kept.view && full ? kept.view.slice() : full && full.slice() };
  window.tbTimelineSave = () => {
    window.tbTimelineState = { view: state.view && state.view.slice(),
      agentsOff: AG.filter((_, a) => !state.agentOn[a]),
      catsOff: CATS.filter((_, j) => !state.catOn[j]) };
  };
  const linkOf = new Map(D.links.map((l) => [l[0], l]));
  const nTimed = R.reduce((n, r) => n + (r[T] !== null ? 1 : 0), 0);  // timed rows come first
  const svg = $("tb-svg"), lanesBox = $("tb-lanes"), tip = $("tb-tip");
  let geom = null, filtered = [], raf = 0;
  const perAgent = AG.map(() => 0), perCat = CATS.map(() => 0);
  for (const r of R) { perAgent[r[A]]++; perCat[r[C]]++; }

  function lowerBound(t) {
    let lo = 0, hi = nTimed;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (R[mid][T] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  const schedule = () => { if (!raf) raf = requestAnimationFrame(() => { raf = 0; render(); }); };

  // ---- header, filters, legend
  function buildChrome() {
    const stats = $("tb-stats");
    const stat = (label, value) => {
      const s = h("div", "stat", label);
      s.prepend(h("b", "", value));
      stats.append(s);
    };
    stat(EV.length === 1 ? "event" : "events", EV.length.toLocaleString("en-US"));
    stat(AG.length === 1 ? "agent" : "agents", String(AG.length));
    if (D.range) {
      stat("span", fmtDur(D.range[1] - D.range[0]));
      stat("UTC", `${fmtDate(D.range[0])} ${fmtTime(D.range[0]).slice(0, 8)} \u2192 ` +
        (multiDay ? fmtDate(D.range[1]) + " " : "") + fmtTime(D.range[1]).slice(0, 8));
    }
    AG.forEach((name, a) => {
      const lab = h("label", "chip"), cb = h("input");
      cb.type = "checkbox"; cb.checked = state.agentOn[a]; cb.value = name; cb.dataset.agent = a;
      cb.addEventListener("change", () => { state.agentOn[a] = cb.checked; changed(); });
      lab.title = name;
      lab.append(cb, h("span", "name", name), h("span", "n", String(perAgent[a])));
      $("tb-f-agents").append(lab);
    });
    CATS.forEach((c, j) => {
      const lab = h("label", "chip"), cb = h("input");
      cb.type = "checkbox"; cb.checked = state.catOn[j]; cb.value = c;
      cb.addEventListener("change", () => { state.catOn[j] = cb.checked; changed(); });
      lab.append(cb, swatch(c, `m c-${c}`, 12), h("span", "name", CAT_LABEL[c] || c),
        h("span", "n", String(perCat[j])));
      $("tb-f-cats").append(lab);
    });
    const setAll = (on) => {
      for (const cb of $("tb-f-agents").querySelectorAll("input")) cb.checked = on;
      state.agentOn.fill(on); changed();
    };
    $("tb-all").addEventListener("click", () => setAll(true));
    $("tb-none").addEventListener("click", () => setAll(false));
    const legend = [["lease", "lease", "claim lease"], ["takeover", "m c-claim v-takeover", "takeover"],
      ["step", "m c-step", "handoff"], ["step", "m c-step v-blocked", "blocked"],
      ["step", "m c-step v-review", "needs review"], ["arrow", "link l-message", "message"],
      ["message", "m c-message v-broadcast", "broadcast"], ["arrow", "link l-handoff", "handoff to"],
      ["tool", "m c-tool v-error", "failed tool call"]];
    for (const [shape, cls, text] of legend) {
      const s = h("span");
      s.append(swatch(shape, cls, shape === "lease" || shape === "arrow" ? 20 : 14), text);
      $("tb-legend").append(s);
    }
  }

  // ---- timeline drawing
  function render() {
    if (!full) return;
    const W = Math.max(480, lanesBox.clientWidth), plotW = W - LABEL_W - RIGHT;
    const [t0, t1] = state.view, k = plotW / (t1 - t0), X = (t) => LABEL_W + (t - t0) * k;
    const laneY = AG.map(() => null), lanes = [];
    let y = AXIS_H;
    AG.forEach((_, a) => {
      if (!state.agentOn[a]) return;
      const hgt = LANE_BASE + SLOT_H * D.slots[a] + 6;
      lanes.push({ a, y, h: hgt }); laneY[a] = y; y += hgt;
    });
    const H = Math.max(y, AXIS_H + 44);
    geom = { t0, k, lanes };
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.replaceChildren();
    const defs = add(svg, "defs", {});
    add(add(defs, "clipPath", { id: "tb-clip" }), "rect",
      { x: LABEL_W - 8, y: 0, width: plotW + 16, height: H });
    for (const kind of ["message", "handoff", "blocked"]) {
      const m = add(defs, "marker", { id: `tb-arr-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto" });
      add(m, "path", { d: "M0,0L10,5L0,10z", class: `arr-${kind}` });
    }
    const gBg = add(svg, "g", {}), gGrid = add(svg, "g", {});
    const plot = add(svg, "g", { "clip-path": "url(#tb-clip)" });
    const gLease = add(plot, "g", {}), gLink = add(plot, "g", {}), gMark = add(plot, "g", {});
    const gTop = add(plot, "g", {});  // takeovers and blocked handoffs stay on top
    const gLabel = add(svg, "g", {});
    lanes.forEach((ln, j) => {
      add(gBg, "rect", { x: 0, y: ln.y, width: W, height: ln.h, class: j % 2 ? "lane odd" : "lane" });
      const sep = ln.y + ln.h - 0.5;
      add(gBg, "line", { x1: 0, x2: W, y1: sep, y2: sep, class: "lane-sep" });
      const g = add(gLabel, "g", {});
      add(g, "title", {}).textContent = AG[ln.a];
      add(g, "text", { x: 16, y: ln.y + MARK_Y + 4, class: "lane-label" }).textContent =
        clip(AG[ln.a], LABEL_CH);
      add(g, "text", { x: 16, y: ln.y + MARK_Y + 19, class: "lane-sub" }).textContent =
        plural(perAgent[ln.a], "event");
    });
    if (!lanes.length) {
      add(gBg, "text", { x: W / 2, y: AXIS_H + 26, "text-anchor": "middle", class: "hint" })
        .textContent = "All agents are filtered out";
    }
    // axis and grid
    const step = tickStep(t1 - t0, plotW);
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = X(t);
      add(gGrid, "line", { x1: x, x2: x, y1: AXIS_H - 5, y2: H, class: "grid" });
      if (x > LABEL_W + 24 && x < W - RIGHT - 20) {
        add(gGrid, "text", { x, y: AXIS_H - 11, "text-anchor": "middle", class: "tick" })
          .textContent = tickLabel(t, step);
      }
    }
    add(gGrid, "line", { x1: 0, x2: W, y1: AXIS_H - 0.5, y2: AXIS_H - 0.5, class: "axis-line" });
    add(gLabel, "text", { x: 16, y: AXIS_H - 11, class: "tick cap" }).textContent = `${fmtDate(t0)} UTC`;
    // When many events are in view, marks, links and leases of one look are merged into a
    // single <path> each (clicks then use hitTest); otherwise every mark is its own element.
    const lo = lowerBound(t0 - 10 / k), hi = lowerBound(t1 + 10 / k), dense = hi - lo > DENSE;
    const bulk = new Map(), merged = (g, cls, d) => {
      const key = `${cls}\n${g === gTop ? 1 : 0}`;
      if (!bulk.has(key)) bulk.set(key, { g, cls, d: [] });
      bulk.get(key).d.push(d);
    };
    // claim leases
    if (state.catOn[CATS.indexOf("claim")]) {
      for (const L of D.leases) {  // [agent, start, end, slot, event, kind, reason, step]
        const ly = laneY[L[0]];
        if (ly === null || L[2] < t0 || L[1] > t1) continue;
        const x1 = Math.max(X(L[1]), LABEL_W - 10), x2 = Math.min(X(L[2]), W + 10);
        const w = Math.max(2, x2 - x1), top = ly + LANE_BASE + L[3] * SLOT_H;
        const cls = `lease k-${L[5]} e-${L[6]}`, bh = SLOT_H - 3;
        const x = x1.toFixed(1), wd = w.toFixed(1);
        if (dense) merged(gLease, cls, `M${x},${top}h${wd}v${bh}h-${wd}z`);
        else add(gLease, "rect", { x, y: top, width: wd, height: bh, rx: 3, class: cls, "data-i": L[4] });
        if (w > 44 && L[7]) {
          const tx = Math.max(x1, LABEL_W) + 5;
          add(gLease, "text", { x: tx, y: top + SLOT_H - 5.5, class: "lease-label" })
            .textContent = clip(L[7], Math.floor((w - 10) / 5.5));
        }
      }
    }
    // marks, with arrows to the recipient's lane
    let inView = 0;
    for (let i = lo; i < hi; i++) {
      const r = R[i], ly = laneY[r[A]];
      if (ly === null || !state.catOn[r[C]]) continue;
      inView++;
      const x = +X(r[T]).toFixed(1), my = ly + MARK_Y, v = r[V];
      const top = v === "blocked" || v === "takeover";
      const link = linkOf.get(i);
      if (link && laneY[link[1]] !== null) {
        const ty = laneY[link[1]] + MARK_Y, dir = ty > my ? 1 : -1, cls = `link l-${link[2]}`;
        if (dense && !top) merged(gLink, cls, `M${x},${my + 7 * dir}V${ty - 2 * dir}`);
        else add(gLink, "line", { x1: x, y1: my + 7 * dir, x2: x, y2: ty - 8 * dir, class: cls,
          "marker-end": `url(#tb-arr-${link[2]})` });
      }
      if (v === "takeover") {
        add(gLink, "line", { x1: x, x2: x, y1: ly + 3, y2: ly + LANE_BASE + SLOT_H * D.slots[r[A]],
          class: "takeover-line" });
      }
      const d = `M${x},${my}${SHAPES[shapeOf(r)]}`, cls = `m c-${CATS[r[C]]} v-${v || "none"}`;
      if (dense && !top) merged(gMark, `${cls} bulk`, d);
      else add(top ? gTop : gMark, "path", { d, class: cls, "data-i": i, "data-a": r[A] });
    }
    for (const b of bulk.values()) add(b.g, "path", { d: b.d.join(""), class: b.cls });
    svg.classList.toggle("dense", dense);
    const sr = state.sel >= 0 ? R[state.sel] : null;
    if (sr && sr[T] !== null && laneY[sr[A]] !== null && state.catOn[sr[C]]) {
      add(gTop, "circle", { cx: X(sr[T]), cy: laneY[sr[A]] + MARK_Y, r: 10, class: "selring" });
    }
    $("tb-status").textContent = `${plural(inView, "event")} in view` +
      ` \u00b7 ${fmtDur(t1 - t0)} shown`;
  }

  // ---- zoom and pan
  const spanLimits = () => [5, Math.max(60e3, (full[1] - full[0]) * 4)];
  function setView(t0, span) {
    const [lo, hi] = spanLimits(), s = Math.min(hi, Math.max(lo, span));
    state.view = [t0, t0 + s]; schedule();
  }
  function zoom(f, tc) {
    const [t0, t1] = state.view, span = t1 - t0, c = tc === undefined ? (t0 + t1) / 2 : tc;
    const [lo, hi] = spanLimits(), s = Math.min(hi, Math.max(lo, span * f));
    setView(c - ((c - t0) / span) * s, s);
  }
  const pan = (frac) => setView(state.view[0] + (state.view[1] - state.view[0]) * frac,
    state.view[1] - state.view[0]);
  const timeAt = (clientX) => geom.t0 + (clientX - svg.getBoundingClientRect().left - LABEL_W) / geom.k;

  svg.addEventListener("wheel", (e) => {
    if (!geom || e.clientX - svg.getBoundingClientRect().left < LABEL_W) return;
    e.preventDefault();
    hideTip();
    const unit = e.deltaMode === 1 ? 16 : 1;
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) pan((e.deltaX * unit) / (svg.clientWidth - LABEL_W));
    else zoom(Math.exp(e.deltaY * unit * 0.0015), timeAt(e.clientX));
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || !geom) return;
    drag = { x: e.clientX, view: state.view.slice(), moved: false, id: e.pointerId, i: eventAt(e) };
  });
  svg.addEventListener("pointermove", (e) => {
    if (drag) {
      const dx = e.clientX - drag.x;
      if (!drag.moved && Math.abs(dx) > 3) {
        drag.moved = true; svg.setPointerCapture(drag.id); svg.classList.add("dragging"); hideTip();
      }
      if (drag.moved) { setView(drag.view[0] - dx / geom.k, drag.view[1] - drag.view[0]); return; }
    }
    showTip(e);
  });
  const endDrag = (e) => {
    const d = drag; drag = null; svg.classList.remove("dragging");
    if (d && !d.moved && d.i >= 0 && e.type === "pointerup") select(d.i, "mark");
  };
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  svg.addEventListener("pointerleave", () => hideTip());
  $("tb-in").addEventListener("click", () => zoom(0.5));
  $("tb-out").addEventListener("click", () => zoom(2));
  $("tb-left").addEventListener("click", () => pan(-0.25));
  $("tb-right").addEventListener("click", () => pan(0.25));
  $("tb-reset").addEventListener("click", () => { state.view = full.slice(); schedule(); });

  // The event nearest the pointer in its lane (within a few pixels), or -1.
  function hitTest(e) {
    if (!geom) return -1;
    const b = svg.getBoundingClientRect(), x = e.clientX - b.left, y = e.clientY - b.top;
    const lane = geom.lanes.find((ln) => y >= ln.y && y < ln.y + ln.h);
    if (x < LABEL_W || !lane || Math.abs(y - lane.y - MARK_Y) > 9) return -1;
    const t = geom.t0 + (x - LABEL_W) / geom.k, tol = 7 / geom.k;
    let best = -1, bestD = Infinity;
    for (let i = lowerBound(t - tol), end = lowerBound(t + tol); i < end; i++) {
      const r = R[i], d = Math.abs(r[T] - t);
      if (r[A] === lane.a && state.catOn[r[C]] && d < bestD) { best = i; bestD = d; }
    }
    return best;
  }
  const eventAt = (e) => {
    const m = e.target.closest ? e.target.closest("[data-i]") : null;
    return m ? Number(m.getAttribute("data-i")) : hitTest(e);
  };

  // ---- tooltip
  function showTip(e) {
    const i = eventAt(e);
    if (i < 0) return hideTip();
    const r = R[i];
    tip.replaceChildren(h("div", "h", `${fmtTime(r[T], multiDay)} UTC \u00b7 ${AG[r[A]]}`),
      h("div", "t", r[TY] + (r[ST] ? ` \u00b7 ${r[ST]}` : "")), h("div", "s", r[SU]));
    tip.hidden = false;
    const flip = e.clientX + 400 > window.innerWidth;
    tip.style.left = `${flip ? Math.max(4, e.clientX - tip.offsetWidth - 12) : e.clientX + 14}px`;
    tip.style.top = `${e.clientY + 16}px`;
  }
  function hideTip() { tip.hidden = true; }

  // ---- details panel
  function renderDetails() {
    const i = state.sel;
    $("tb-det-empty").hidden = i >= 0; $("tb-det-body").hidden = i < 0;
    if (i < 0) return;
    const r = R[i];
    $("tb-det-dot").className = `dot c-${CATS[r[C]]} v-${r[V] || "none"}`;
    $("tb-det-type").textContent = r[TY];
    const dl = $("tb-det-meta");
    dl.replaceChildren();
    const when = r[T] === null ? "(no valid timestamp)" : `${fmtTime(r[T], true)} UTC`;
    const fields = [["time", when], ["agent", AG[r[A]]], ["step", r[ST] || "\u2014"],
      ["summary", r[SU] || "\u2014"]];
    for (const [k, v] of fields) {
      dl.append(h("dt", "", k), h("dd", "", v));
    }
    if (window.tbDetails) window.tbDetails(EV[i], dl, h);  // a host page's extra fields
    $("tb-json").textContent = JSON.stringify(EV[i], null, 2);
  }
  function stepSel(delta) {
    if (!filtered.length) return;
    const j = filtered.indexOf(state.sel);
    const next = j < 0 ? 0 : Math.min(filtered.length - 1, Math.max(0, j + delta));
    select(filtered[next], "nav");
  }
  $("tb-prev").addEventListener("click", () => stepSel(-1));
  $("tb-next").addEventListener("click", () => stepSel(1));

  function select(i, from) {
    state.sel = i;
    renderDetails();
    const t = R[i][T];
    if (from !== "mark" && t !== null && full && (t < state.view[0] || t > state.view[1])) {
      const span = state.view[1] - state.view[0];
      state.view = [t - span / 2, t + span / 2];
    }
    if (from !== "list") {
      const j = filtered.indexOf(i), box = $("tb-list"), top = j * ROW_H;
      if (j >= 0 && (top < box.scrollTop || top > box.scrollTop + box.clientHeight - ROW_H)) {
        box.scrollTop = top - box.clientHeight / 2;
      }
    }
    renderList(); schedule();
  }

  // ---- event table (virtualised: only the visible rows exist)
  function refilter() {
    filtered = [];
    for (let i = 0; i < R.length; i++) {
      if (state.agentOn[R[i][A]] && state.catOn[R[i][C]]) filtered.push(i);
    }
    $("tb-list-inner").style.height = `${filtered.length * ROW_H}px`;
    $("tb-list").style.height = `${Math.min(420, Math.max(2, filtered.length) * ROW_H + 2)}px`;
    $("tb-list-count").textContent = filtered.length === R.length
      ? plural(R.length, "event")
      : `${filtered.length.toLocaleString("en-US")} of ${plural(R.length, "event")}`;
    renderList();
  }
  function renderList() {
    const box = $("tb-list"), inner = $("tb-list-inner");
    if (!filtered.length) {
      inner.replaceChildren(h("div", "none", R.length ? "No events match the filters." : "No events"));
      return;
    }
    const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 6);
    const last = Math.min(filtered.length, first + Math.ceil(box.clientHeight / ROW_H) + 12);
    const frag = document.createDocumentFragment();
    for (let j = first; j < last; j++) {
      const i = filtered[j], r = R[i];
      const row = h("div", `row${i === state.sel ? " sel" : ""}${r[V] === "blocked" ? " blocked" : ""}`);
      row.style.top = `${j * ROW_H}px`; row.dataset.i = i;
      const type = h("span", "type");
      type.append(h("span", `dot c-${CATS[r[C]]} v-${r[V] || "none"}`), r[TY]);
      const time = r[T] === null ? "\u2014" : fmtTime(r[T], multiDay);
      row.append(h("span", "time", time), h("span", "agent", AG[r[A]]), type,
        h("span", "step", r[ST]), h("span", "sum", r[SU]));
      row.title = r[SU];
      frag.append(row);
    }
    inner.replaceChildren(frag);
  }
  let listRaf = 0;
  $("tb-list").addEventListener("scroll", () => {
    if (!listRaf) listRaf = requestAnimationFrame(() => { listRaf = 0; renderList(); });
  });
  // select on press: a scroll re-renders the rows, and one between press and release
  // would leave no element to receive a click
  $("tb-list-inner").addEventListener("mousedown", (e) => {
    const row = e.button === 0 && e.target.closest(".row");
    if (row) select(Number(row.dataset.i), "list");
  });

  function changed() { refilter(); schedule(); }

  buildChrome();
  if (!full) {
    const empty = $("tb-empty");
    empty.hidden = false; svg.style.display = "none";
    empty.textContent = EV.length ? "No events with a valid timestamp" : "No events";
    for (const id of ["tb-in", "tb-out", "tb-left", "tb-right", "tb-reset"]) $(id).disabled = true;
  }
  refilter();
  render();
  if (window.tbTimelineResize) window.removeEventListener("resize", window.tbTimelineResize);
  window.tbTimelineResize = schedule;
  window.addEventListener("resize", schedule);
};
window.tbTimeline();
"""
