"""Live rules: watch one running agent and stop it when it is stuck.

``Watch(rules)`` is fed what the agent does — every live-feed event of its model calls
(``call.start`` with the tool results it reports back, ``call.end`` with usage and a
digest of the answer) and every chunk of its output — and ``check()`` says, as a short
reason, whether a rule fires:

* ``no_progress`` — no model call and no output for that many seconds;
* ``same_failing_command`` — the same command reported failing that many times;
* ``token_rate`` — more tokens than that per minute (over the last minute, once a minute
  of history exists, or as soon as one minute's budget is spent);
* ``repeated_responses`` — that many identical model answers in a row.

Rules are data (the ``[rules]`` table of the harness file); this module only evaluates
them. ``Watch`` is thread-safe: events arrive on the proxy's thread, output on a reader
thread, ``check`` runs on the monitor's.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

from .config import Rules


class Watch:
    def __init__(self, rules: Rules, clock=time.monotonic):
        self.rules, self.clock = rules, clock
        self._mu = threading.Lock()
        self._last_activity = clock()
        self._failing: Counter[str] = Counter()
        self._tokens: deque[tuple[float, int]] = deque()
        self._digests: deque[str] = deque(maxlen=max(1, rules.repeated_responses or 1))
        self._fired: str | None = None
        self.calls = 0

    def activity(self) -> None:
        with self._mu:
            self._last_activity = self.clock()

    def event(self, ev: dict) -> None:
        kind = ev.get("type")
        now = self.clock()
        with self._mu:
            self._last_activity = now
            if kind == "call.start":
                self.calls += 1
                for r in ev.get("tool_results") or []:
                    cmd = r.get("command") if isinstance(r, dict) else None
                    if cmd and r.get("failed"):
                        self._failing[" ".join(str(cmd).split())] += 1
            elif kind in ("call.end", "call.error"):
                u = ev.get("usage") or {}
                n = sum(
                    int(u.get(k) or 0) for k in ("input", "output", "cache_read", "cache_write")
                )
                if n:
                    self._tokens.append((now, n))
                d = ev.get("response_digest")
                if d:
                    self._digests.append(d)

    def check(self) -> str | None:
        """The reason a rule fires now, or None (once fired, the same reason stays)."""
        with self._mu:
            if self._fired:
                return self._fired
            r, now = self.rules, self.clock()
            why = None
            if r.no_progress and now - self._last_activity >= r.no_progress:
                why = f"no_progress: no model call or output for {now - self._last_activity:.0f} s"
            if why is None and r.same_failing_command:
                cmd, n = next(iter(self._failing.most_common(1)), (None, 0))
                if cmd and n >= r.same_failing_command:
                    why = f"same_failing_command: `{cmd[:120]}` failed {n} times"
            if why is None and r.token_rate:
                while self._tokens and now - self._tokens[0][0] > 60:
                    self._tokens.popleft()
                spent = sum(n for _, n in self._tokens)
                if spent > r.token_rate:
                    why = f"token_rate: {spent} tokens in the last minute (limit {r.token_rate})"
            if why is None and r.repeated_responses and len(self._digests) >= r.repeated_responses:
                if len(set(self._digests)) == 1:
                    why = (
                        f"repeated_responses: the same answer {r.repeated_responses} times in a row"
                    )
            self._fired = why
            return why
