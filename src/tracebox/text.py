"""Short text for people: a value as one clipped line, the tail of a long output, a size.

Pure; imports nothing from tracebox, so every layer may use it.
"""

from __future__ import annotations

import math


def clip(text: object, n: int) -> str:
    """``text`` on one line (whitespace runs → one space), at most ``n`` chars ("…" ends a cut)."""
    one = " ".join(str(text).split())
    return one if len(one) <= n else one[: n - 1] + "…"


def tail(text: str, n: int) -> str:
    """The last ``n`` chars of ``text``, "…" first when some were dropped."""
    return text if len(text) <= n else "…" + text[-n:]


def size(n: float | None, base: int = 1024) -> str:
    """A byte count for people: ``812 B``, ``3.4 MB`` (units of ``base``; ``-`` for None)."""
    if n is None:
        return "-"
    if not math.isfinite(n):
        return str(n)
    for unit in ("B", "KB", "MB"):
        if abs(n) < base:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= base
    return f"{n:.1f} GB"
