"""`tracebox mcp`: coordination as Model Context Protocol tools and resources.

An MCP-speaking agent (Claude Code, Codex, Cursor, …) gets tracebox's coordination —
claims, handoffs, wait-for, shared memory, messages, artifacts — plus search and the
current observations, as tools that call the same ``tracebox.project.Project`` methods
the CLI does and return the JSON its ``--json`` prints (docs/mcp.md).

* ``tools`` — every tool: its arguments (one msgspec struct each, which is also its JSON
  schema and description) and what it calls;
* ``resources`` — ``tracebox://inbox`` and ``tracebox://observations`` (+ ``.jsonl``);
* ``observations`` — where the current observations are read from;
* ``server`` — the SDK's low-level server over those, tracebox errors as tool errors,
  and the two transports: stdio and streamable HTTP on loopback (a token elsewhere).

Inside this package ``import mcp`` is the official SDK (imports are absolute).
"""

from __future__ import annotations
