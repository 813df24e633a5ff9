"""Live rules: watch one running agent and stop it when it is stuck.

``Watch(rules)`` is fed what the agent does — every live-feed event of its model calls
(``call.start`` with the tool results it reports back, ``call.end`` with usage and a
digest of the answer) and every chunk of its output — and ``check()`` says, as a short
reason, whether a rule fires:

* ``no_progress`` — no model call and no output for that many seconds;
* ``same_failing_command`` — the same command reported failing that many times;
* ``token_rate`` — more tokens than that within the last minute;
* ``repeated_responses`` — that many identical model answers in a row.

Rules are data (the ``[rules]`` table of the harness file): each is a preset of the alert
rule language, evaluated by the one alert engine (``tracebox.stream.alerts``), watching the
agent as one group. A ``stop`` callable (``stop_requests``) lets a ``tracebox alerts`` rule
stop the agent from outside. ``Watch`` is thread-safe: events arrive on the proxy's thread,
output on a reader thread, ``check`` runs on the monitor's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import TraceboxError
from ..stream import alerts
from .config import Rules

ORDER = ("no_progress", "same_failing_command", "token_rate", "repeated_responses")
STOP_POLL_S = 1.0


def harness_rules(rules: Rules) -> list[alerts.Rule]:
    """The alert rules of a harness ``[rules]`` table, watching one agent (no grouping)."""
    return [
        alerts.preset(name, getattr(rules, name), group_by=(), source="[rules]")
        for name in ORDER
        if getattr(rules, name)
    ]


class Watch:
    def __init__(
        self,
        rules: Rules,
        clock=time.monotonic,
        stop: Callable[[], str | None] | None = None,
    ):
        self.clock, self.stop = clock, stop
        self._mu = threading.Lock()
        self._engine = alerts.Engine(harness_rules(rules), clock())
        self._pending: list[alerts.Firing] = []
        self._fired: str | None = None
        self.calls = 0

    def activity(self) -> None:
        self.event({"type": alerts.OUTPUT_EVENT})

    def event(self, ev: dict) -> None:
        with self._mu:
            if ev.get("type") == "call.start":
                self.calls += 1
            self._pending += self._engine.process(ev, self.clock())

    def check(self) -> str | None:
        """The reason a rule fires now, or None (once fired, the same reason stays)."""
        with self._mu:
            if self._fired:
                return self._fired
            self._pending += self._engine.tick(self.clock())
            if self._pending:
                self._fired = min(self._pending, key=lambda f: ORDER.index(f.rule.name)).message
            elif self.stop is not None:
                why = self.stop()
                self._fired = f"alert: {why}" if why else None
            return self._fired


def stop_requests(project, session: str, *, every: float = STOP_POLL_S, clock=time.monotonic):
    """A ``Watch(stop=…)`` callable: the stop request an alert wrote for ``session``
    (``tracebox alerts`` rules with ``then = ["stop"]``), read at most every ``every``
    seconds; a bucket error reads as "no request" (it is asked again next time)."""
    last = -every

    def poll() -> str | None:
        nonlocal last
        now = clock()
        if now - last < every:
            return None
        last = now
        try:
            return alerts.stop_requested(project.ctx, session)
        except TraceboxError:
            return None

    return poll
