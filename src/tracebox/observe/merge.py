"""Observations merged across sessions and generations, and their JSONL form.

``merge(observations, into=entries)`` folds observations into entries keyed by
fingerprint: one entry per finding, with how often it was seen (``count``), in how many
sessions, when first and last, and up to ``MAX_EVIDENCE`` evidence links from distinct
sessions. Merging is associative, so generation N's entries are generation N-1's merged
with N's new observations — what the harness carries forward.

``observations.jsonl`` is one entry per line (docs/observe.md): ``{fingerprint, priority,
kind, title, count, sessions, first_seen, last_seen, evidence: [{session, step, quote,
at}], data, generations}``, sorted most important first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from .rules import PRIORITIES, Observation

MAX_EVIDENCE = 5
MAX_ENTRIES_BYTES = 64 << 20  # an observations.jsonl larger than this is not read


def _rank(e: dict) -> tuple:
    llm = e.get("llm_rank")
    return (
        PRIORITIES.index(e["priority"]) if e["priority"] in PRIORITIES else 9,
        llm if isinstance(llm, int) else 1 << 30,  # the optional model pass reorders within
        -e["count"],
        -e["sessions"],
        e["title"],
    )


def merge(
    observations: Iterable[Observation],
    into: dict[str, dict] | None = None,
    generation: int | None = None,
) -> dict[str, dict]:
    entries = {k: dict(v) for k, v in (into or {}).items()}
    session_sets: dict[str, set[str]] = {
        k: set(v.get("session_ids") or []) for k, v in entries.items()
    }
    for o in observations:
        e = entries.get(o.fingerprint)
        if e is None:
            e = entries[o.fingerprint] = {
                "fingerprint": o.fingerprint,
                "priority": o.priority,
                "kind": o.kind,
                "title": o.title,
                "count": 0,
                "sessions": 0,
                "first_seen": None,
                "last_seen": None,
                "evidence": [],
                "data": dict(o.data),
                "generations": [],
            }
            session_sets[o.fingerprint] = set()
        e["count"] += 1
        if PRIORITIES.index(o.priority) < PRIORITIES.index(e["priority"]):
            e["priority"] = o.priority
        seen = session_sets[o.fingerprint]
        for ev in o.evidence:
            if ev.at:
                e["first_seen"] = min(filter(None, [e["first_seen"], ev.at]))
                e["last_seen"] = max(filter(None, [e["last_seen"], ev.at]))
            if ev.session not in seen and len(e["evidence"]) < MAX_EVIDENCE:
                e["evidence"].append(ev.to_dict())
            seen.add(ev.session)
        e["sessions"] = len(seen)
        if generation is not None and generation not in e["generations"]:
            e["generations"].append(generation)
    for k, e in entries.items():
        e["session_ids"] = sorted(session_sets[k])[:1000]
    return entries


def ordered(entries: dict[str, dict]) -> list[dict]:
    return sorted(entries.values(), key=_rank)


def dumps(entries: dict[str, dict]) -> str:
    """The ``observations.jsonl`` text of ``entries``."""
    return "".join(
        json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in ordered(entries)
    )


def loads(text: str) -> dict[str, dict]:
    """Entries from ``observations.jsonl`` text (untrusted: bad lines skipped)."""
    out: dict[str, dict] = {}
    for line in text.split("\n"):  # not splitlines(): U+2028 may sit inside a string
        try:
            e: Any = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(e, dict)
            and isinstance(e.get("fingerprint"), str)
            and e.get("priority") in PRIORITIES
        ):
            e.setdefault("count", 1)
            e.setdefault("sessions", 0)
            e.setdefault("evidence", [])
            e.setdefault("title", "")
            out[e["fingerprint"]] = e
    return out


def write_jsonl(path: str, entries: dict[str, dict]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(entries))
    os.replace(tmp, path)


def read_jsonl(path: str) -> dict[str, dict]:
    """Entries from an ``observations.jsonl`` file (bounded in size; see ``loads``)."""
    if not os.path.exists(path):
        return {}
    if os.path.getsize(path) > MAX_ENTRIES_BYTES:
        from ..errors import FormatError

        raise FormatError(f"{path} is larger than {MAX_ENTRIES_BYTES >> 20} MiB")
    with open(path, encoding="utf-8", errors="replace") as f:
        return loads(f.read())
