"""Short text for people: a value as one clipped line, the tail of a long output.

Pure; imports nothing from tracebox, so every layer may use it.
"""

from __future__ import annotations


def clip(text: object, n: int) -> str:
    """``text`` on one line (whitespace runs → one space), at most ``n`` chars ("…" ends a cut)."""
    one = " ".join(str(text).split())
    return one if len(one) <= n else one[: n - 1] + "…"


def tail(text: str, n: int) -> str:
    """The last ``n`` chars of ``text``, "…" first when some were dropped."""
    return text if len(text) <= n else "…" + text[-n:]
