"""What the UI shows, read from the bucket and the local index (read-only, never writes
to the bucket).

* ``EventCache`` — the project's event log, fetched once and then only what is new
  (event objects are immutable, their keys sort by time), for the runs timeline and its
  live mode;
* sessions (list with usage, cost and errors; one session loaded from where the index
  found it: a local transcript, the bucket mirror, or captured proxy calls), search,
  stats and top errors — from the SQLite index (``tracebox.index``);
* observations, harness runs and capsules — from their places in the bucket.

Every function returns plain dicts and lists; rendering is ``pages.py``'s job.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from ..errors import FormatError, NotFound

MAX_EVENTS = 200_000


class EventCache:
    """The event log of one project, kept in memory and extended incrementally."""

    def __init__(self, project):
        self.project = project
        self._mu = threading.Lock()
        self._keys: list[str] = []
        self._events: list[dict] = []

    def refresh(self) -> int:
        """Fetch events added since the last call; returns how many arrived."""
        from ..coord import events as ev
        from ..coord.context import fetch_many

        with self._mu:
            after = self._keys[-1] if self._keys else None
            keys = ev.list_keys(self.project.ctx, after_key=after)
            keys = [k for k in keys if not after or k > after][: MAX_EVENTS - len(self._keys)]
            if not keys:
                return 0
            docs = fetch_many(self.project.ctx, keys)
            for k, d in zip(keys, docs, strict=True):
                if isinstance(d, dict):
                    d = {**d, "_key": k}
                    self._events.append(d)
                self._keys.append(k)
            return len(keys)

    def events(self) -> list[dict]:
        with self._mu:
            return list(self._events)

    def last_key(self) -> str | None:
        with self._mu:
            return self._keys[-1] if self._keys else None

    def since(self, key: str | None) -> list[dict]:
        with self._mu:
            return [e for e in self._events if not key or e["_key"] > key]


# -- sessions (the index) -------------------------------------------------------------------

_SESSION_COLS = (
    "s.uid, s.id, s.harness, s.agent, s.models, s.started, s.ended, s.origin, s.title,"
    " (SELECT count(*) FROM steps st WHERE st.session = s.key) AS steps,"
    " (SELECT COALESCE(sum(st.tool_calls), 0) FROM steps st WHERE st.session = s.key) AS tool_calls,"
    " (SELECT COALESCE(sum(st.tool_errors), 0) + count(st.error) FROM steps st WHERE st.session = s.key) AS errors,"
    " (SELECT COALESCE(sum(input), 0) FROM steps st WHERE st.session = s.key) AS input,"
    " (SELECT COALESCE(sum(output), 0) FROM steps st WHERE st.session = s.key) AS output,"
    " (SELECT COALESCE(sum(cache_read), 0) FROM steps st WHERE st.session = s.key) AS cache_read,"
    " (SELECT COALESCE(sum(cache_write), 0) FROM steps st WHERE st.session = s.key) AS cache_write"
)


def _session_row(r: sqlite3.Row) -> dict:
    from ..index.stats import cost, price_for
    from ..trace.model import Usage

    d = dict(r)
    d["models"] = json.loads(d.get("models") or "[]")
    usage = Usage(
        input=d["input"],
        output=d["output"],
        cache_read=d["cache_read"],
        cache_write=d["cache_write"],
    )
    price = price_for(d["models"][0]) if d["models"] else None
    d["cost"] = round(cost(usage, price), 6) if price else None
    d["duration_s"] = _seconds(d.get("started"), d.get("ended"))
    return d


def _seconds(a: str | None, b: str | None) -> float | None:
    from ..coord.context import parse_iso

    try:
        return (parse_iso(b) - parse_iso(a)).total_seconds() if a and b else None
    except FormatError:
        return None


def sessions(
    db: sqlite3.Connection,
    *,
    page: int = 1,
    per_page: int = 50,
    harness: str | None = None,
    agent: str | None = None,
) -> tuple[list[dict], int]:
    """Top-level sessions, newest first, one page; and how many there are."""
    where, args = ["s.root IS NULL"], []
    if harness:
        where.append("s.harness = ?")
        args.append(harness)
    if agent:
        where.append("s.agent = ?")
        args.append(agent)
    w = " AND ".join(where)
    total = db.execute(f"SELECT count(*) FROM sessions s WHERE {w}", args).fetchone()[0]
    rows = db.execute(
        f"SELECT {_SESSION_COLS} FROM sessions s WHERE {w}"
        " ORDER BY COALESCE(s.started, '') DESC, s.key DESC LIMIT ? OFFSET ?",
        [*args, per_page, (max(1, page) - 1) * per_page],
    ).fetchall()
    return [_session_row(r) for r in rows], total


def session_row(db: sqlite3.Connection, harness: str, sid: str) -> dict:
    r = db.execute(
        f"SELECT {_SESSION_COLS} FROM sessions s WHERE s.harness = ? AND s.id = ? AND s.root IS NULL",
        (harness, sid),
    ).fetchone()
    if r is None:
        raise NotFound(f"no session {harness}/{sid} in the index")
    return _session_row(r)


def load_session(project, row: dict):
    """The trace-model Session behind an index row, from where it was indexed."""
    import os

    origin = str(row["origin"])
    base = f"{str(project.store.url).rstrip('/')}/{project.name}/" if project is not None else None
    if base and origin.startswith(base + "calls-by-session/"):
        from ..capture.proxy.store import calls_to_sessions

        return calls_to_sessions(project, origin[len(base + "calls-by-session/") :])
    if base and origin.startswith(base + "sessions/"):
        from ..capture.mirror import load_session as from_bucket

        harness, _, sid = origin[len(base + "sessions/") :].partition("/")
        return from_bucket(project, harness, sid)
    if os.path.isfile(origin.partition("#")[0]):
        from ..capture import harnesses

        return harnesses.get(row["harness"]).parse(origin)
    raise NotFound(f"the source of session {row['harness']}/{row['id']} is not reachable: {origin}")


MAX_CALL_MARKS = 50_000


def call_events(db: sqlite3.Connection, agents: set[str]) -> list[dict]:
    """The model calls and tool calls of every indexed session whose agent is one of
    AGENTS (the run's lanes), as timeline events (``llm.call``, ``tool.call``) that link
    to their step. A tool call whose result was an error gets ``data.error``."""
    if not agents:
        return []
    marks = ",".join("?" * len(agents))
    sql = (
        "SELECT s.harness, COALESCE(r.id, s.id), CASE WHEN r.key IS NULL THEN NULL ELSE s.id END,"
        " s.agent, {cols} FROM {table} JOIN sessions s ON s.key = x.session"
        " LEFT JOIN sessions r ON r.key = s.root"
        f" WHERE s.agent IN ({marks}) AND {{where}} ORDER BY x.session, {{order}} LIMIT ?"
    )
    args = [*sorted(agents), MAX_CALL_MARKS]
    out: list[dict] = []
    for harness, sid, sub, agent, idx, ts, model, tin, tout, cread, err in db.execute(
        sql.format(
            cols="x.idx, x.ts, x.model, x.input, x.output, x.cache_read, x.error",
            table="steps x",
            where="x.source = 'agent'",
            order="x.idx",
        ),
        args,
    ):
        d = {"model": model, "input": tin, "output": tout, "cache_read": cread}
        d = {k: v for k, v in d.items() if v} | {"session": f"{harness}/{sid}", "step": idx}
        if err:
            d["error"] = str(err)[:300]
        out.append(
            {
                "ts": ts,
                "agent": agent,
                "type": "llm.call",
                "data": d,
                "_href": (harness, sid, idx, sub),
            }
        )
    pending: dict[tuple, list[dict]] = {}
    for harness, sid, sub, agent, idx, ts, kind, is_error, text, _, _ in db.execute(
        sql.format(
            cols="x.idx, x.ts, x.kind, x.is_error, substr(t.text, 1, 300), NULL, NULL",
            table="docs x JOIN doc_text t ON t.rowid = x.rowid",
            where="x.kind IN ('tool_call', 'tool_result')",
            order="x.rowid",
        ),
        args,
    ):
        queue = pending.setdefault((harness, sid, sub), [])
        if kind == "tool_result":  # results answer the calls in order
            if queue:
                call = queue.pop(0)
                if is_error:
                    call["data"]["error"] = next(iter(str(text).splitlines()), "")[:200]
            continue
        name, _, args_text = str(text).partition(" ")
        ev = {
            "ts": ts,
            "agent": agent,
            "type": "tool.call",
            "data": {
                "tool": name,
                "arguments": args_text[:200],
                "session": f"{harness}/{sid}",
                "step": idx,
            },
            "_href": (harness, sid, idx, sub),
        }
        queue.append(ev)
        out.append(ev)
    return out


def search(db: sqlite3.Connection, q: str, **filters) -> list[dict]:
    from ..index.search import search as run

    res = run(db, q, marks=("\x02", "\x03"), **{k: v for k, v in filters.items() if v})
    return [h.__dict__ if hasattr(h, "__dict__") else _struct(h) for h in res.hits]


def _struct(x) -> dict:
    import msgspec

    return msgspec.structs.asdict(x)


def stats(db: sqlite3.Connection, by: str | None, since: str | None):
    from ..index.stats import stats as run

    return run(db, by, since)


def top_errors(db: sqlite3.Connection, limit: int = 15) -> list[dict]:
    """The most frequent error texts (first line, numbers abstracted) with one example."""
    import re

    rows = db.execute(
        "SELECT t.text, s.harness, s.id, d.idx FROM docs d JOIN doc_text t ON t.rowid = d.rowid"
        " JOIN sessions s ON s.key = d.session WHERE d.is_error = 1 ORDER BY d.rowid DESC LIMIT 20000"
    ).fetchall()
    groups: dict[str, dict] = {}
    for text, harness, sid, idx in rows:
        first = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")[:200]
        norm = re.sub(r"\d+", "N", first)
        g = groups.setdefault(
            norm, {"text": first, "count": 0, "harness": harness, "session": sid, "step": idx}
        )
        g["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["count"])[:limit]


# -- the bucket: observations, harness runs, capsules ---------------------------------------------


def harness_runs(project) -> list[dict]:
    """Every harness run's ``run.json`` (with its id as ``run``), newest first."""
    from ..harness.run import key, list_runs

    out = []
    for rid in reversed(list_runs(project)):
        got = project.ctx.get_json(key(rid, "run.json"))
        if got:
            out.append({"run": rid, **got[0]})
    return out


def observations(
    project, run_id: str | None = None, runs: list[dict] | None = None
) -> tuple[list[dict], str | None]:
    """The observations of the newest harness run (or ``run_id``): its last generation's
    ``observations.jsonl``, most important first. ``runs``: ``harness_runs``, if at hand."""
    from ..harness.run import key
    from ..observe.merge import loads, ordered

    runs = harness_runs(project) if runs is None else runs
    run = (
        next((r for r in runs if r["run"] == run_id), None)
        if run_id
        else (runs[0] if runs else None)
    )
    if run is None:
        return [], None
    gens = [g["generation"] for g in run.get("generations") or []]
    if not gens:
        return [], run["run"]
    try:
        blob = project.store.get(
            project.ctx.key(key(run["run"], f"gen-{max(gens)}", "observations.jsonl"))
        )
    except NotFound:
        return [], run["run"]
    return ordered(loads(blob.data.decode("utf-8", "replace"))), run["run"]


def capsules(project) -> list[dict]:
    from ..capsule.share import PREFIX, is_id

    ids = sorted(
        {
            m.key.split("/")[-2]
            for m in project.store.list(project.ctx.key(PREFIX))
            if m.key.endswith("/capsule.json")
        }
    )
    out = []
    for cid in ids:
        if not is_id(cid):
            continue
        c = capsule(project, cid)
        if c:
            out.append(c)
    return out


def capsule(project, cid: str) -> dict | None:
    from ..capsule import share

    if not share.is_id(cid):
        raise NotFound(f"invalid capsule id {cid!r}")
    try:
        _, doc = share.fetch_doc(project, cid)
    except NotFound:
        return None
    got = project.ctx.get_json(f"{share.PREFIX}{cid}/status.json")
    return {"doc": doc, "status": got[0] if got else None, "replays": share.replays(project, cid)}


def project_summary(project, cache: EventCache, db: sqlite3.Connection) -> dict[str, Any]:
    """The home page: what happened in this project, from the event log (agents, the
    steps' latest state, handoffs and takeovers), the index (sessions per harness) and
    the bucket (harness runs, capsules)."""
    evs = cache.events()
    agents: dict[str, dict] = {}
    steps: dict[str, dict] = {}
    handoffs: list[dict] = []
    for x in evs:
        who, step, etype = x.get("agent"), x.get("step"), str(x.get("type") or "")
        d = x.get("data") if isinstance(x.get("data"), dict) else {}
        if who:
            a = agents.setdefault(str(who), {"agent": str(who), "events": 0, "first": x.get("ts")})
            a["events"] += 1
            a["last"] = x.get("ts")
        if not step or not etype.startswith(("claim.", "step.")):
            continue
        s = steps.setdefault(str(step), {"step": str(step)})
        s.update(by=who, at=x.get("ts"))
        if etype in ("claim.acquire", "claim.takeover"):
            s.update(status="claimed", note="")
        elif etype == "claim.release":
            s.update(status="open", note="released")
        elif etype == "step.reopen":
            s.update(status="open", note=str(d.get("reason") or "reopened"))
        elif etype == "step.complete":
            s.update(status=str(d.get("status") or "complete"), note=str(d.get("note") or ""))
        if etype == "claim.takeover" or (
            etype == "step.complete" and (d.get("to") or d.get("status") != "complete")
        ):
            handoffs.append({"ts": x.get("ts"), "agent": who, "step": step, "type": etype, **d})
    by_harness = db.execute(
        "SELECT harness, count(*) FROM sessions WHERE root IS NULL GROUP BY harness ORDER BY 2 DESC"
    ).fetchall()
    return {
        "project": project.name,
        "bucket": project.store.url,
        "events": len(evs),
        "agents": sorted(agents.values(), key=lambda a: str(a["first"] or "")),
        "steps": sorted(steps.values(), key=lambda s: str(s.get("at") or "")),
        "handoffs": handoffs,
        "sessions": {h: n for h, n in by_harness},
        "runs": harness_runs(project),
        "capsules": capsules(project),
    }
