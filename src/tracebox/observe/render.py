"""``observations.md``: what earlier sessions learned, most important first, in a budget.

Grouped by priority (``[important]``, ``[possible]``, ``[informational]``), each entry one
line — its title, how often and in how many sessions it was seen — and the first piece
of evidence as a quote with its session and step. Entries are added in rank order until
the next one would pass ``budget`` characters; a last line says how many were left out
(they are all in ``observations.jsonl``). Pure.
"""

from __future__ import annotations

from ..text import clip
from .merge import ordered
from .rules import PRIORITIES

HEADER = (
    "# Observations from earlier attempts\n\n"
    "What previous agents ran into, most important first. Evidence quotes are verbatim "
    "from their traces (session:step).\n"
)


def render(entries: dict[str, dict], *, budget: int = 8000, summary: str | None = None) -> str:
    out = [HEADER]
    if summary:
        out.append(f"\n{summary.strip()}\n")
    used = sum(len(x) for x in out)
    left = 0
    current = None
    for e in ordered(entries):
        block = _entry(e)
        head = f"\n## [{e['priority']}]\n\n" if e["priority"] != current else ""
        if used + len(head) + len(block) > budget:
            left += 1
            continue
        if head:
            current = e["priority"]
            out.append(head)
            used += len(head)
        out.append(block)
        used += len(block)
    if left:
        out.append(f"\n…{left} more in observations.jsonl (over the {budget}-character budget).\n")
    return "".join(out)


def _entry(e: dict) -> str:
    seen = f"seen {e['count']}×" + (
        f" in {e['sessions']} sessions" if e.get("sessions", 0) > 1 else ""
    )
    gens = e.get("generations") or []
    if gens:
        seen += f", generation{'s' if len(gens) > 1 else ''} {', '.join(map(str, gens))}"
    line = f"- **{clip(e['title'], 200)}** ({seen})\n"
    ev = (e.get("evidence") or [None])[0]
    if ev:
        q = clip(str(ev.get("quote") or ""), 200).replace("`", "'")
        sid = str(ev.get("session"))
        sid = sid if len(sid) <= 48 else f"{sid[:12]}…{sid[-12:]}"
        line += f"  > `{q}` — {sid}:{ev.get('step')}\n"
    return line


def counts(entries: dict[str, dict]) -> dict[str, int]:
    return {p: sum(1 for e in entries.values() if e["priority"] == p) for p in PRIORITIES}
