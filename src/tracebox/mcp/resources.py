"""The MCP resources: documents an agent (or its user) can attach as context.

* ``tracebox://inbox`` — the server's agent's messages and broadcasts, oldest first, as
  ``tracebox inbox --json`` prints them; reading never marks them read (the ``inbox``
  tool with ack=true does);
* ``tracebox://observations`` — the current ``observations.md`` (``observations.py``
  says where it comes from), the text to read before starting work;
* ``tracebox://observations.jsonl`` — the same observations, one JSON entry a line.

Every read is fresh from the bucket (or the observations folder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .tools import State


@dataclass
class Resource:
    uri: str
    name: str
    mime_type: str
    description: str
    read: Callable[[State], str]


def _inbox(s: State) -> str:
    from ..cli._common import to_json

    return to_json(s.project.inbox())


def _observations_md(s: State) -> str:
    from .observations import current

    return current(s.project, s.observations).markdown


def _observations_jsonl(s: State) -> str:
    from .observations import current

    return current(s.project, s.observations).jsonl


def resources(s: State) -> list[Resource]:
    agent = s.project.agent
    return [
        Resource(
            "tracebox://inbox",
            f"inbox of {agent}",
            "application/json",
            f"Messages to {agent} and broadcasts, oldest first (as `tracebox inbox --json`); "
            "reading does not mark them read.",
            _inbox,
        ),
        Resource(
            "tracebox://observations",
            "observations.md",
            "text/markdown",
            "What earlier sessions ran into, most important first, with evidence: read "
            "before starting work.",
            _observations_md,
        ),
        Resource(
            "tracebox://observations.jsonl",
            "observations.jsonl",
            "application/jsonl",
            "The current observations, one JSON entry per line (docs/observe.md).",
            _observations_jsonl,
        ),
    ]
