"""The UI's pages, rendered on the server as HTML strings (escaped; no template engine).

One function per page; each returns the ``<main>`` content, and ``layout`` wraps it with
the navigation. Everything shown comes from the bucket or the index and is untrusted:
every value goes through ``e()`` (HTML escaping) or ``json_block`` (JSON in a
``<script type="application/json">`` data block, ``<``/``>``/``&`` escaped). Scripts are
only the UI's own files under ``/static/`` (the Content-Security-Policy allows nothing
else), so a hostile string can never run.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from typing import Any

from .. import svg

NAV = (
    ("runs", "/runs", "Runs"),
    ("sessions", "/sessions", "Sessions"),
    ("search", "/search", "Search"),
    ("stats", "/stats", "Stats"),
    ("observations", "/observations", "Observations"),
    ("harness", "/harness", "Harness"),
    ("capsules", "/capsules", "Capsules"),
)
STEPS_PER_PAGE = 200
OUTPUT_SHOWN = 20_000  # chars of one tool output on a page (the rest: a marker)


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def q(**params: Any) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


def json_block(element_id: str, value: Any) -> str:
    text = (
        json.dumps(value, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    return f'<script type="application/json" id="{e(element_id)}">{text}</script>'


def layout(
    title: str,
    active: str,
    body: str,
    *,
    project: str,
    extra_css: str = "",
    scripts: tuple[str, ...] = (),
) -> str:
    nav = "".join(
        f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
        for key, href, label in NAV
    )
    css = '<link rel="stylesheet" href="/static/ui.css">' + (
        f'<link rel="stylesheet" href="{extra_css}">' if extra_css else ""
    )
    js = "".join(f'<script src="{s}" defer></script>' for s in ("/static/ui.js", *scripts))
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        '<link rel="icon" href="/favicon.ico" type="image/svg+xml">'
        f"<title>{e(title)} — tracebox</title>{css}{js}</head><body>"
        f'<header class="nav"><a class="brand" href="/">tracebox</a><nav>{nav}</nav>'
        f'<span class="proj">{e(project)}</span></header>'
        f'<div class="page">{body}</div></body></html>'
    )


def _num(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else ("—" if n is None else e(n))


def _cost(c: Any) -> str:
    return f"${c:,.4f}" if isinstance(c, int | float) else "—"


def _dur(s: Any) -> str:
    if not isinstance(s, int | float):
        return "—"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _time(ts: Any) -> str:
    return f'<span class="nowrap">{e(str(ts)[:19].replace("T", " "))}</span>' if ts else "—"


def _line(text: Any, limit: int = 160) -> str:
    """The first non-blank line of TEXT, clipped; the whole text as its tooltip."""
    t = str(text or "")
    first = next((ln.strip() for ln in t.splitlines() if ln.strip()), "")
    shown = first if len(first) <= limit else first[: limit - 1] + "…"
    return f'<span title="{e(t[:2000])}">{e(shown)}</span>' if t != shown else e(shown)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def session_href(harness: str, sid: str, step: int | None = None, sub: str | None = None) -> str:
    h = f"/sessions/{urllib.parse.quote(str(harness), safe='')}/{urllib.parse.quote(str(sid), safe='')}"
    if step is not None:
        h += f"?{q(step=step, sub=sub)}#" + (f"sub-{e(sub)}-" if sub else "") + f"step-{step}"
    return h


# -- home and runs -------------------------------------------------------------------------------


def _status(status: Any) -> str:
    cls = {"complete": "ok", "blocked": "bad", "needs_review": "warn", "resolved": "ok"}
    return f'<span class="badge {cls.get(str(status), "")}">{e(status or "—")}</span>'


def _solved(run: dict) -> str:
    """Solved per generation, e.g. ``0/4 → 3/4 → 3/4``."""
    return " → ".join(
        f"{g.get('solved', 0)}/{g.get('variants', '?')}" for g in run.get("generations") or []
    )


HOME_ROWS = 60


def _grid(head: tuple[str, ...], rows: list[str] | str, empty: str) -> str:
    """A table; ROWS are ready ``<tr>`` markup (EMPTY is shown when there are none)."""
    body = "".join(rows) or f'<tr><td colspan={len(head)} class="muted">{e(empty)}</td></tr>'
    ths = "".join(f"<th>{h}</th>" for h in head)
    return f'<table class="grid"><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>'


def _table(
    title: str, head: tuple[str, ...], rows: list[str] | str, empty: str, more: str = ""
) -> str:
    """A titled card holding a ``_grid``."""
    return f'<section class="card"><h2>{title}</h2>{_grid(head, rows, empty)}{more}</section>'


CAPSULE_HEAD = ("Capsule", "Harness", "Failure", "State", "Fixed in")


def _capsule_rows(items: list[dict]) -> list[str]:
    """One row per capsule (``data.capsule`` dicts): id, harness, what failed, its state."""
    from ..capsule.model import headline

    rows = []
    for c in items:
        d, st = c["doc"], c["status"] or {}
        rows.append(
            f'<tr><td><a class="mono" href="/capsules/{e(d.get("id"))}">{e(d.get("id"))}</a></td>'
            f"<td>{e((d.get('source') or {}).get('harness'))}</td><td>{e(headline(d)[:120])}</td>"
            f"<td>{_status(st.get('state') or 'local')}</td><td>{e(st.get('fixed_in') or '')}</td></tr>"
        )
    return rows


def home(s: dict) -> str:
    """What happened: who took part, how the work moved between them, what the harness
    learned, which failures became capsules — each linking to its detail page."""
    n_sessions = sum(s["sessions"].values())
    cards = [
        (
            "/runs",
            "Run timeline",
            f"{_plural(s['events'], 'event')} from {_plural(len(s['agents']), 'agent')}",
        ),
        ("/sessions", "Sessions", f"{_plural(n_sessions, 'session')}, step by step"),
        ("/harness", "Harness runs", f"{_plural(len(s['runs']), 'run')} of agent variants"),
        ("/observations", "Observations", "what the agents ran into, by priority"),
        ("/capsules", "Capsules", f"{_plural(len(s['capsules']), 'failure')} packaged for replay"),
        ("/stats", "Stats", "tokens, cost and errors"),
    ]
    tiles = "".join(
        f'<a class="tile" href="{h}"><b>{t}</b><span>{e(d)}</span></a>' for h, t, d in cards
    )

    moves = []
    for h in s["handoffs"][-HOME_ROWS:]:
        if h["type"] == "claim.takeover":
            what = f"{e(h.get('previous_owner') or '?')} → {e(h['agent'])}"
            status, note = '<span class="badge warn">takeover</span>', "their lease expired"
        else:
            what = f"{e(h['agent'])} → {e(h.get('to') or '—')}"
            status, note = _status(h.get("status")), h.get("note") or ""
        next_action = f" · next: {h['next_action']}" if h.get("next_action") else ""
        moves.append(
            f"<tr{' class=row-bad' if h.get('status') == 'blocked' else ''}><td>{_time(h['ts'])}</td>"
            f"<td>{e(h['step'])}</td><td>{what}</td><td>{status}</td>"
            f"<td>{_line(note)}{e(next_action)}</td></tr>"
        )
    steps = [
        f"<tr><td>{e(x['step'])}</td><td>{_status(x.get('status'))}</td><td>{e(x.get('by'))}</td>"
        f"<td>{_time(x.get('at'))}</td><td>{_line(x.get('note'))}</td></tr>"
        for x in s["steps"][-HOME_ROWS:]
    ]
    runs = [
        f'<tr><td><a href="/harness/{urllib.parse.quote(r["run"])}">{e(r["run"])}</a></td>'
        f"<td>{len((r.get('config') or {}).get('variants') or [])}</td><td>{e(_solved(r))}</td>"
        f'<td><a href="/observations?{q(run=r["run"])}">observations</a></td></tr>'
        for r in s["runs"][:HOME_ROWS]
    ]
    agents = [
        f"<tr><td>{e(a['agent'])}</td><td class=num>{a['events']:,}</td>"
        f"<td>{_time(a['first'])}</td><td>{_time(a.get('last'))}</td></tr>"
        for a in s["agents"][:HOME_ROWS]
    ]
    sess = [
        f'<tr><td><a href="/sessions?{q(harness=h)}">{e(h)}</a></td><td class=num>{n:,}</td></tr>'
        for h, n in s["sessions"].items()
    ]
    cut = lambda n: (  # noqa: E731
        f'<p class="muted small">The last {HOME_ROWS} of {n:,}; the <a href="/runs">timeline</a> has them all.</p>'
        if n > HOME_ROWS
        else ""
    )
    return (
        f'<h1>Project {e(s["project"])}</h1><p class="muted">Bucket {e(s["bucket"])}</p>'
        f'<div class="tiles">{tiles}</div><div class="home">'
        + _table(
            "Handoffs, blocks and takeovers",
            ("Time", "Step", "From → to", "Status", "Note"),
            moves,
            "No handoffs yet.",
            cut(len(s["handoffs"])),
        )
        + _table(
            "Steps",
            ("Step", "Status", "Last by", "At", "Note"),
            steps,
            "No steps yet.",
            cut(len(s["steps"])),
        )
        + '<div class="two">'
        + _table(
            "Harness runs",
            ("Run", "Variants", "Solved per generation", ""),
            runs,
            "No harness runs.",
        )
        + _table(
            "Capsules",
            CAPSULE_HEAD,
            _capsule_rows(s["capsules"][:HOME_ROWS]),
            "No capsules pushed.",
        )
        + _table("Agents", ("Agent", "Events", "First seen", "Last seen"), agents, "No agents yet.")
        + _table("Sessions", ("Harness", "Sessions"), sess, "No sessions indexed yet.")
        + "</div></div>"
    )


def runs(parts: dict, last_key: str | None, count: int) -> str:
    return (
        '<div class="runs-top"><h1>Run timeline</h1>'
        f'<span class="muted" id="ev-count">{count:,} events in the log</span>'
        '<label class="live"><input type="checkbox" id="live-toggle" checked> Live</label>'
        '<span class="muted" id="live-status"></span></div>'
        f'<div id="tb-root" data-last="{e(last_key or "")}">{parts["body"]}{parts["data"]}</div>'
        '<section class="card"><h2>Live feed</h2><p class="muted">New events and model calls appear '
        'here as they happen.</p><ol id="live-feed" reversed></ol></section>'
    )


# -- sessions -------------------------------------------------------------------------------------


def sessions_list(rows: list[dict], total: int, page: int, per_page: int, filters: dict) -> str:
    trs = []
    for r in rows:
        trs.append(
            "<tr>"
            f'<td><a href="{session_href(r["harness"], r["id"])}">{e(r["id"][:36])}</a>'
            + (f'<div class="muted small">{e(r["title"][:90])}</div>' if r.get("title") else "")
            + "</td>"
            f"<td>{e(r['harness'])}</td><td>{e(r.get('agent') or '—')}</td>"
            f"<td>{e(', '.join(r['models'][:2]) or '—')}</td><td>{_time(r.get('started'))}</td>"
            f"<td class=num>{_dur(r.get('duration_s'))}</td><td class=num>{_num(r['steps'])}</td>"
            f"<td class=num>{_num(r['input'] + r['output'])}</td>"
            f"<td class=num>{_num(r['cache_read'] + r['cache_write'])}</td>"
            f"<td class=num>{_cost(r['cost'])}</td>"
            f"<td class='num{' err' if r['errors'] else ''}'>{_num(r['errors'])}</td></tr>"
        )
    pages = max(1, -(-total // per_page))
    nav = _pager("/sessions", page, pages, filters)
    body = (
        "".join(trs)
        or "<tr><td colspan=11 class=muted>No sessions indexed yet: run <code>tracebox session mirror</code> or <code>tracebox index</code>.</td></tr>"
    )
    return (
        f"<h1>Sessions</h1><p class=muted>{total:,} sessions</p>"
        '<table class="grid"><thead><tr><th>Session</th><th>Harness</th><th>Agent</th><th>Model</th>'
        "<th>Started (UTC)</th><th>Duration</th><th>Steps</th><th>Tokens</th><th>Cache tokens</th>"
        f"<th>Cost</th><th>Errors</th></tr></thead><tbody>{body}</tbody></table>{nav}"
    )


def _pager(path: str, page: int, pages: int, params: dict) -> str:
    if pages <= 1:
        return ""
    links = []
    if page > 1:
        links.append(f'<a href="{path}?{q(**params, page=page - 1)}" rel=prev>‹ previous</a>')
    links.append(f"<span>page {page} of {pages}</span>")
    if page < pages:
        links.append(f'<a href="{path}?{q(**params, page=page + 1)}" rel=next>next ›</a>')
    return f'<nav class="pager">{"".join(links)}</nav>'


def session_page(row: dict, session, page: int, *, focus: int | None, sub: str | None) -> str:
    from ..trace.model import Reasoning, Text, ToolCall, ToolResult

    s = session
    pages = max(1, -(-len(s.steps) // STEPS_PER_PAGE))
    page = min(max(1, page), pages)
    lo, hi = (page - 1) * STEPS_PER_PAGE, page * STEPS_PER_PAGE
    subs = {x.parent_tool_call_id: x for x in s.subagents if x.parent_tool_call_id}
    compactions = {c.at_step: c for c in s.compactions}

    def steps_html(sess, start: int, end: int, prefix: str) -> str:
        out = []
        for st in sess.steps[start:end]:
            c = compactions.get(st.index) if sess is s else None
            if c is not None:
                out.append(
                    f'<div class="compaction">compaction ({e(c.trigger or "auto")}'
                    + (f", {c.tokens_before:,} tokens before" if c.tokens_before else "")
                    + ")</div>"
                )
            parts = []
            for p in st.parts:
                if isinstance(p, Text):
                    parts.append(f'<div class="text">{e(p.text)}</div>')
                elif isinstance(p, Reasoning):
                    parts.append(
                        f'<details class="reasoning"><summary>reasoning</summary><div class="text">{e(p.text or "(redacted)")}</div></details>'
                    )
                elif isinstance(p, ToolCall):
                    args = (
                        json.dumps(p.arguments, indent=2, ensure_ascii=False)
                        if not isinstance(p.arguments, str)
                        else p.arguments
                    )
                    parts.append(
                        f'<details class="call" open><summary>tool call <b>{e(p.name)}</b> <span class="muted small">{e(p.id)}</span></summary><pre>{e(args[:OUTPUT_SHOWN])}</pre></details>'
                    )
                    child = subs.get(p.id) if sess is s else None
                    if child is not None:
                        parts.append(
                            f'<details class="subagent" id="sub-{e(child.id)}"{" open" if sub == child.id else ""}>'
                            f"<summary>subagent {e(child.agent or '')} {e(child.id)} · {len(child.steps)} steps</summary>"
                            + steps_html(
                                child,
                                0,
                                min(len(child.steps), STEPS_PER_PAGE),
                                f"sub-{e(child.id)}-",
                            )
                            + "</details>"
                        )
                elif isinstance(p, ToolResult):
                    bad = p.is_error or (p.exit_code not in (None, 0))
                    code = (
                        f'<span class="badge{" bad" if bad else ""}">exit {p.exit_code}</span>'
                        if p.exit_code is not None
                        else ('<span class="badge bad">error</span>' if p.is_error else "")
                    )
                    text = (
                        p.output
                        if len(p.output) <= OUTPUT_SHOWN
                        else p.output[:OUTPUT_SHOWN]
                        + f"\n…[{len(p.output) - OUTPUT_SHOWN} more chars]"
                    )
                    parts.append(
                        f'<div class="result{" bad" if bad else ""}"><div class="small">result {code}</div><pre>{e(text)}</pre></div>'
                    )
            if st.error is not None:
                parts.append(
                    f'<div class="result bad"><b>{e(st.error.kind)}</b> {e(st.error.status or "")}<pre>{e(st.error.message)}</pre></div>'
                )
            usage = ""
            if st.usage:
                u = st.usage
                usage = f'<span class="muted small">in {u.input:,} · out {u.output:,} · cache {u.cache_read:,}/{u.cache_write:,}</span>'
            cls = (
                f"step src-{e(st.source)}"
                + (" copied" if st.copied else "")
                + (
                    " focus"
                    if focus == st.index and prefix == ("" if not sub else f"sub-{e(sub)}-")
                    else ""
                )
            )
            out.append(
                f'<article class="{cls}" id="{prefix}step-{st.index}" tabindex="-1">'
                f'<div class="step-head"><a class="anchor" href="#{prefix}step-{st.index}">#{st.index}</a> '
                f'<span class="src">{e(st.source)}</span> <span class="muted small">{_time(st.timestamp)}</span> '
                f"{e(st.model or '')} {usage}{' <span class=badge>copied</span>' if st.copied else ''}</div>"
                f"{''.join(parts) or '<div class=muted small>(no content)</div>'}</article>"
            )
        return "".join(out)

    head = (
        f'<h1>{e(row["harness"])} session <span class="mono">{e(s.id)}</span></h1>'
        f'<p class="muted">{e(", ".join(s.models))} · {len(s.steps):,} steps · {_dur(row.get("duration_s"))} · '
        f"tokens in {row['input']:,} out {row['output']:,} cache {row['cache_read']:,}/{row['cache_write']:,} · "
        f"{_cost(row.get('cost'))} · {row['errors']} errors · cwd {e(s.cwd or '—')}</p>"
        '<p class="muted small">Keys: <kbd>j</kbd>/<kbd>k</kbd> next/previous step, '
        "<kbd>n</kbd>/<kbd>p</kbd> next/previous page, <kbd>e</kbd> next error.</p>"
    )
    pager = _pager(session_href(row["harness"], s.id), page, pages, {})
    data = json_block("session-meta", {"page": page, "pages": pages, "focus": focus, "sub": sub})
    return head + pager + f'<div id="steps">{steps_html(s, lo, hi, "")}</div>' + pager + data


# -- search and stats ------------------------------------------------------------------------------


def search_page(query: str, filters: dict, hits: list[dict] | None, error: str | None) -> str:
    from ..index.db import KINDS

    def opt(name: str, options: tuple[str, ...]) -> str:
        cur = filters.get(name) or ""
        return (
            f'<select name="{name}"><option value="">any {name}</option>'
            + "".join(f"<option{' selected' if o == cur else ''}>{e(o)}</option>" for o in options)
            + "</select>"
        )

    form = (
        '<form class="search" method="get" action="/search">'
        f'<input type="search" name="q" value="{e(query)}" placeholder="connection refused" autofocus>'
        f'<input name="harness" value="{e(filters.get("harness"))}" placeholder="harness">'
        f'<input name="agent" value="{e(filters.get("agent"))}" placeholder="agent">'
        f'<input name="model" value="{e(filters.get("model"))}" placeholder="model">'
        f'<input name="since" value="{e(filters.get("since"))}" placeholder="since (7d)">'
        f"{opt('kind', KINDS)}<button>Search</button></form>"
    )
    if error:
        return f"<h1>Search</h1>{form}<p class=err>{e(error)}</p>"
    if hits is None:
        return f"<h1>Search</h1>{form}<p class=muted>BM25-ranked full-text search over the index, like <code>tracebox search</code>.</p>"
    items = []
    for h in hits:
        snippet = e(h.get("snippet") or "").replace("\x02", "<mark>").replace("\x03", "</mark>")
        parent = h.get("parent_session")
        href = session_href(
            h["harness"], parent or h["session_id"], h["step"], h["session_id"] if parent else None
        )
        items.append(
            f'<li><a class="hit" href="{href}"><span class="mono">{e(h["session_id"][:36])}#{h["step"]}</span> '
            f'<span class="badge">{e(h["kind"])}</span> <span class="muted small">{e(h["harness"])} · '
            f"{e(h.get('agent') or '')} · {e(h.get('model') or '')} · {_time(h.get('timestamp'))}</span>"
            f'<div class="snippet">{snippet}</div></a></li>'
        )
    return f"<h1>Search</h1>{form}<p class=muted>{len(hits)} results</p><ol class=hits>{''.join(items)}</ol>"


def stats_page(st, by: str | None, since: str | None, errors: list[dict]) -> str:
    from ..index.stats import GROUPS

    tabs = " ".join(
        f'<a href="/stats?{q(by=b, since=since)}"{" class=active" if b == by else ""}>{b}</a>'
        for b in GROUPS
    )
    rows = st.rows if by else [st.total]
    labels = [str(r.key or "—") if by else "total" for r in rows]
    tokens = svg.stacked(
        "tokens",
        [
            (lab, [r.usage.input, r.usage.output, r.usage.cache_read, r.usage.cache_write])
            for lab, r in zip(labels, rows, strict=True)
        ],
        ["input", "output", "cache read", "cache write"],
        width=560,
        height=240,
    )
    cost = svg.bars(
        "cost (USD)",
        [(lab, round(r.cost or 0, 4)) for lab, r in zip(labels, rows, strict=True)],
        svg.PALETTE[2],
        width=560,
        height=240,
    )
    trs = "".join(
        f"<tr><td>{e(lab)}</td><td class=num>{r.sessions:,}</td><td class=num>{r.steps:,}</td>"
        f"<td class=num>{r.tool_calls:,}</td><td class=num>{r.tool_errors + r.api_errors:,}</td>"
        f"<td class=num>{r.usage.input:,}</td><td class=num>{r.usage.output:,}</td>"
        f"<td class=num>{r.usage.cache_read:,}</td><td class=num>{r.usage.cache_write:,}</td>"
        f"<td class=num>{_cost(r.cost)}</td></tr>"
        for lab, r in zip(labels, rows, strict=True)
    )
    errs = (
        "".join(
            f'<li><b>{g["count"]}×</b> <a href="{session_href(g["harness"], g["session"], g["step"])}">{e(g["text"])}</a></li>'
            for g in errors
        )
        or "<li class=muted>No errors indexed.</li>"
    )
    return (
        f'<h1>Stats</h1><p class="tabs">by {tabs}</p><div class="charts">{tokens}{cost}</div>'
        '<table class="grid"><thead><tr><th></th><th>Sessions</th><th>Steps</th><th>Tool calls</th>'
        "<th>Errors</th><th>Input</th><th>Output</th><th>Cache read</th><th>Cache write</th><th>Cost</th>"
        f"</tr></thead><tbody>{trs}</tbody></table><h2>Top errors</h2><ol class=errors>{errs}</ol>"
    )


# -- observations, harness, capsules ------------------------------------------------------------------


def _evidence(ev: dict) -> str:
    sid = str(ev.get("session") or "")
    step = ev.get("step")
    return (
        f'<blockquote><a href="/sessions/by-id/{urllib.parse.quote(sid, safe="")}?{q(step=step)}" '
        f'class="mono small">{e(sid[:48])}:{e(step)}</a> {e(ev.get("quote"))}</blockquote>'
    )


def observations_page(entries: list[dict], run_id: str | None, runs: list[str]) -> str:
    pick = " ".join(
        f'<a href="/observations?{q(run=r)}"{" class=active" if r == run_id else ""}>{e(r)}</a>'
        for r in runs[:20]
    )
    cols = []
    for prio in ("important", "possible", "informational"):
        cards = (
            "".join(
                f'<div class="obs"><div><b>{e(x["title"])}</b></div><div class="muted small">seen {x["count"]}× · '
                + (f"{_plural(x['sessions'], 'session')} · " if x.get("sessions") else "")
                + f"{e(x.get('kind'))}</div>"
                + "".join(_evidence(ev) for ev in (x.get("evidence") or [])[:2])
                + "</div>"
                for x in entries
                if x.get("priority") == prio
            )
            or "<p class=muted>none</p>"
        )
        cols.append(f'<section class="col prio-{prio}"><h2>[{prio}]</h2>{cards}</section>')
    head = "<h1>Observations</h1>" + (
        f'<p class="tabs">run {pick}</p>' if runs else "<p class=muted>No harness run yet.</p>"
    )
    return head + f'<div class="board">{"".join(cols)}</div>'


def harness_list(runs: list[dict]) -> str:
    trs = [
        f'<tr><td><a href="/harness/{urllib.parse.quote(r["run"])}">{e(r["run"])}</a></td>'
        f"<td>{len(r.get('generations') or [])}</td><td>{len((r.get('config') or {}).get('variants') or [])}</td>"
        f"<td>{e(_solved(r))}</td></tr>"
        for r in runs
    ]
    return "<h1>Harness runs</h1>" + _grid(
        ("Run", "Generations", "Variants", "Solved per generation"), trs, "No harness runs."
    )


def harness_run(report_html: str) -> str:
    start = report_html.index("<body>") + len("<body>")
    end = report_html.rindex("</body>")
    return f'<div class="report">{report_html[start:end]}</div>'


def capsules_list(items: list[dict]) -> str:
    return "<h1>Capsules</h1>" + _grid(
        CAPSULE_HEAD, _capsule_rows(items), "No capsules pushed to this bucket."
    )


def capsule_page(c: dict) -> str:
    d, st = c["doc"], c["status"] or {}
    f = d.get("failure") or {}
    sig = f.get("signature") or {}
    traj = d.get("trajectory") or {}
    actions = []
    for a in traj.get("actions") or []:
        if "say" in a:
            actions.append(
                f'<li class="say"><span class="muted">#{e(a["step"])}</span> {e(a["say"])}</li>'
            )
        else:
            r = a.get("result") or {}
            bad = r.get("is_error") or r.get("exit_code") not in (None, 0)
            actions.append(
                f'<li><span class="muted">#{e(a["step"])}</span> <b>{e(a.get("tool"))}</b>'
                f"<pre>{e(json.dumps(a.get('arguments'), ensure_ascii=False)[:2000])}</pre>"
                f'<pre class="{"bad" if bad else ""}">{e(str(r.get("output") or "")[:4000])}</pre></li>'
            )
    ctx = d.get("context") or {}
    snap = d.get("snapshot") or {}
    m = d.get("metrics") or {}
    states = [*(st.get("history") or []), st] if st else []
    hist = "".join(
        f"<tr><td>{_time(h.get('at'))}</td><td>{_status(h.get('state'))}</td><td>{e(h.get('by'))}</td>"
        f"<td>{e(h.get('fixed_in') or '')}</td><td>{e(h.get('verdict') or '')}</td></tr>"
        for h in states
    )
    good = {"reproduces": "warn", "fixed": "ok", "inconclusive": ""}
    reps = "".join(
        f"<tr><td>{_time(r.get('at'))}</td><td>{e(r.get('by'))}</td>"
        f"<td>{e(r.get('against') or 'the snapshot')}</td>"
        f'<td><span class="badge {good.get(str(r.get("verdict")), "")}">{e(r.get("verdict"))}</span></td>'
        f"<td>{_line((r.get('evidence') or {}).get('reason'), 200)}</td></tr>"
        for r in c.get("replays") or []
    )
    return (
        f'<h1>Capsule <span class="mono">{e(d.get("id"))}</span></h1>'
        f'<p><span class="badge {"ok" if st.get("state") == "resolved" else ""}">{e(st.get("state") or "not pushed")}</span> '
        + (
            f"fixed in <b>{e(st.get('fixed_in'))}</b> (replay verdict: {e(st.get('verdict') or '—')})"
            if st.get("fixed_in")
            else ""
        )
        + "</p>"
        f'<section class="card"><h2>Intent</h2><pre>{e((d.get("intent") or {}).get("prompt"))}</pre></section>'
        f'<section class="card"><h2>Failure</h2><p>step {e(f.get("step"))} · {e(f.get("tool"))} · '
        f"<code>{e(f.get('command') or '')}</code> · exit {e(f.get('exit_code'))} · {e(sig.get('framework') or '')}</p>"
        + "".join(f"<p class=err>{e(x)}</p>" for x in (sig.get("errors") or [])[:5])
        + f'<pre class="bad">{e(f.get("error"))}</pre></section>'
        f'<section class="card"><h2>Trajectory</h2><p class=muted>steps {e(traj.get("episode_start"))}..{e(traj.get("failing_step"))}; '
        f'{e((traj.get("earlier") or {}).get("steps"))} earlier steps</p><ol class="traj">{"".join(actions)}</ol></section>'
        f'<section class="card"><h2>Context</h2><p>instructions: {e(", ".join(i["path"] for i in ctx.get("instructions") or []))}; '
        f"files read: {e(', '.join(x['path'] for x in ctx.get('files_read') or []))}; tools: {e(', '.join(ctx.get('tools_used') or {}))}</p>"
        f'<dl class="kv">{kv(ctx.get("environment") or {})}</dl></section>'
        f'<section class="card"><h2>Snapshot</h2><dl class="kv">{kv({k: v for k, v in snap.items() if k != "bundle"})}</dl></section>'
        f'<section class="card"><h2>Reproduce</h2><pre>{e(chr(10).join((d.get("reproduce") or {}).get("commands") or []))}</pre></section>'
        f'<section class="card"><h2>Metrics</h2><dl class="kv">{kv(m)}</dl></section>'
        f'<section class="card"><h2>Scrubbed</h2><dl class="kv">{kv((d.get("scrub") or {}).get("counts") or {"nothing": 0})}</dl></section>'
        + _table(
            "Replay verdicts",
            ("Time", "By", "Against", "Verdict", "Why"),
            reps,
            "No replays recorded (replays of the pushed capsule, by id, are).",
        )
        + _table(
            "Status history",
            ("Time", "State", "By", "Fixed in", "Verdict"),
            hist,
            "Not pushed to this bucket.",
        )
    )


def kv(dct: dict) -> str:
    return "".join(
        f"<dt>{e(k)}</dt><dd>{e(json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v)}</dd>"
        for k, v in dct.items()
    )


def error_page(status: int, message: str) -> str:
    return f"<h1>{status}</h1><p>{e(message)}</p>"
