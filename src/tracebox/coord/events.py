"""The append-only event log: one immutable object per action, listable in time order.

Key: ``events/<yyyy>/<mm>/<dd>/<sortable-ts>-<agent>-<rand>.json``.  Writers never contend
(every key is new); readers list with ``start_after`` and fetch bodies concurrently.
Keys are stamped with the writer's clock, so an event can land slightly "in the past";
``follow`` re-lists a grace window to pick such late arrivals up exactly once.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from ..errors import UsageError
from .context import Ctx, check_name, fetch_many, iso, now, sortable

PREFIX = "events/"


def event_key(ts: datetime, agent: str, rand: str) -> str:
    return f"{PREFIX}{ts:%Y/%m/%d}/{sortable(ts)}-{agent}-{rand}.json"


def append(
    ctx: Ctx,
    type_: str,
    *,
    step: str | None = None,
    data: dict | None = None,
    at: datetime | None = None,
    agent: str | None = None,
) -> dict:
    """Write one event and return it."""
    ts = at or now()
    who = agent or ctx.agent
    rand = os.urandom(4).hex()
    ev = {
        "v": 1,
        "id": f"{sortable(ts)}-{rand}",
        "ts": iso(ts),
        "agent": who,
        "type": type_,
        "step": step,
        "data": data or {},
    }
    ctx.put_json(event_key(ts, who, rand), ev)
    _publish(ctx, ev)
    return ev


def _publish(ctx: Ctx, ev: dict) -> None:
    """Hand the event just written to Kafka when the config has a ``[stream.kafka]``
    table (docs/stream.md); it is in the bucket already, so a broker that is down costs
    a warning, not the event. Without the table the Kafka module is never imported; with
    it, ``publisher`` keeps one producer per process and configuration."""
    stream = ctx.config.get("stream")
    if not (isinstance(stream, dict) and "kafka" in stream):
        return
    from ..stream.kafka import publisher

    pub = publisher(ctx.config)
    if pub is not None:
        pub.coord(ctx, ev)


_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,4}")


def custom(ctx: Ctx, type_: str, *, step: str | None = None, data: dict | None = None) -> dict:
    """A user's own event (``tracebox event``): the type, step and data are checked first."""
    if not isinstance(type_, str) or not _TYPE.fullmatch(type_):
        raise UsageError(f"invalid event type {type_!r}: use dotted lowercase, e.g. test.failed")
    if step is not None:
        check_name(step, "step id")
    if data is not None and not isinstance(data, dict):
        raise UsageError("event data must be a JSON object")
    return append(ctx, type_, step=step, data=data)


def record(ctx: Ctx, type_: str, **kw) -> dict | None:
    """``append`` for an action that already happened: a failed log write becomes a
    warning on ``ctx.warnings`` instead of failing the (already successful) action."""
    from ..errors import BucketError

    try:
        return append(ctx, type_, **kw)
    except BucketError as e:
        ctx.warnings.append(f"the action succeeded but its event was not logged: {e}")
        return None


def _day_start(dt: datetime) -> str:
    return f"{PREFIX}{dt:%Y/%m/%d}/{sortable(dt)}"


def list_keys(ctx: Ctx, *, since: datetime | None = None, after_key: str | None = None):
    start = after_key or (ctx.key(_day_start(since)) if since else None)
    keys = [
        m.key for m in ctx.store.list(ctx.key(PREFIX), start_after=start) if m.key.endswith(".json")
    ]
    keys.sort()  # some S3 servers list folders out of lexicographic order
    return keys


def fetch(ctx: Ctx, keys: list[str]) -> list[dict]:
    """Event bodies for ``keys``; vanished or damaged ones are skipped (never crash a log)."""
    return [d for d in fetch_many(ctx, keys) if d is not None]


def read(
    ctx: Ctx,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    agents: set[str] | None = None,
    types: set[str] | None = None,
) -> list[dict]:
    """Events in time order, filtered by time window, agent and type (prefix match)."""
    keys = list_keys(ctx, since=since)
    if until is not None:
        stop = ctx.key(_day_start(until))
        keys = [k for k in keys if k <= stop + "~"]
    if agents:
        keys = [k for k in keys if _key_agent(k) in agents]
    events = fetch(ctx, keys)
    return [e for e in events if _match(e, types)]


def _key_agent(key: str) -> str:
    leaf = key.rsplit("/", 1)[-1][: -len(".json")]
    parts = leaf.split("-")
    return "-".join(parts[1:-1])


def _match(ev: dict, types: set[str] | None) -> bool:
    if not types:
        return True
    t = str(ev.get("type", ""))
    return any(t == x or t.startswith(x.rstrip(".*") + ".") for x in types)


def follow(
    ctx: Ctx,
    *,
    since: datetime | None = None,
    poll: float = 1.0,
    grace: float = 30.0,
    types: set[str] | None = None,
    stop_after: float | None = None,
) -> Iterator[dict]:
    """Yield events as they appear, forever (or for ``stop_after`` seconds)."""
    seen: dict[str, float] = {}
    t_end = None if stop_after is None else time.monotonic() + stop_after
    start_dt = since
    while True:
        keys = [k for k in list_keys(ctx, since=start_dt) if k not in seen]
        t = time.monotonic()
        for ev in fetch(ctx, keys):
            if _match(ev, types):
                yield ev
        for k in keys:
            seen[k] = t
        # re-list a grace window behind "now" so late-landing keys are not skipped
        start_dt = now() - timedelta(seconds=grace)
        for k in [k for k, ts in seen.items() if t - ts > grace * 4]:
            del seen[k]
        if t_end is not None and time.monotonic() >= t_end:
            return
        time.sleep(poll)
