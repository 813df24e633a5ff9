"""Where variants run: ``local`` (threads of this process, each driving its agent as a
subprocess; the default) or ``ray`` (Ray tasks, so a generation can spread over a
cluster; ``pip install tracebox[ray]``). Both call the same ``run_variant`` on the same
picklable tasks, so the same run gives the same artefacts on either.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import UsageError

EXECUTORS = ("local", "ray")


def run(name: str, fn: Callable, tasks: list, parallel: int, on_done=None) -> list:
    """``[fn(t) for t in tasks]``, at most ``parallel`` at once, results in task order;
    ``on_done(result)`` as each one finishes."""
    if name == "local":
        from .local import run as go
    elif name == "ray":
        from .ray import run as go
    else:
        raise UsageError(f"unknown executor {name!r}: {', '.join(EXECUTORS)}")
    return go(fn, tasks, parallel, on_done)
