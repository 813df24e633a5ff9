"""Harness adapters: one module per coding agent, each locating and parsing its transcripts.

Every adapter module exposes the same small interface:

``NAME: str``
    The harness name used in the CLI and in ``Session.harness``.
``locate(cwd: str | None = None, env: Mapping[str, str] | None = None) -> list[SessionFile]``
    Find the agent's session files on this machine: its default folders and its own env
    overrides (``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ...). With ``cwd``, only sessions
    whose recorded working directory is ``cwd`` or below it.
``sniff(head: bytes) -> bool``
    True when the first bytes of a file look like this agent's format (parse by content).
``parse(path: str | os.PathLike) -> Session``
    Parse one session file (plus, for Claude Code, its ``<session>/subagents/`` folder)
    into the trace model. Malformed lines are kept in ``Session.unknown`` as
    ``{"line": n, "error": "...", "text": <first 4 KiB>}``; nothing raises for bad
    content except ``tracebox.errors.FormatError`` when the file is not this format at all.

``SessionFile.path`` is a file, or ``<database>#<session id>`` for agents that keep
sessions in SQLite (OpenCode, Hermes); ``split_ref`` tells the two apart.

``get(name)`` imports an adapter lazily; ``detect(path)`` picks one by content.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import msgspec

from ...errors import FormatError, UsageError

# name -> module (imported only when used)
ADAPTERS = {
    "claude-code": "claude_code",
    "codex": "codex",
    "pi": "pi",
    "openclaw": "openclaw",
    "gemini-cli": "gemini_cli",
    "opencode": "opencode",
    "hermes": "hermes",
}

SNIFF_BYTES = 64 * 1024


class SessionFile(msgspec.Struct, frozen=True):
    harness: str
    session_id: str
    path: str  # the main transcript file (or the session's folder/db for stores that need one)
    cwd: str | None = None
    mtime: float = 0.0
    size: int = 0


def split_ref(path: str | os.PathLike) -> tuple[str, str | None]:
    """``(file, session id or None)`` for a ``SessionFile.path``."""
    from ._sources import split_ref as split

    return split(path)


def get(name: str) -> ModuleType:
    mod = ADAPTERS.get(name)
    if mod is None:
        raise UsageError(f"unknown harness {name!r}; known: {', '.join(ADAPTERS)}")
    return importlib.import_module(f"{__name__}.{mod}")


def detect(path: str | os.PathLike) -> ModuleType:
    """The adapter whose format the file's content matches."""
    try:
        with open(split_ref(path)[0], "rb") as f:
            head = f.read(SNIFF_BYTES)
    except IsADirectoryError:
        head = b""
    except OSError as e:
        raise UsageError(f"cannot read {os.fspath(path)}: {e.strerror}") from None
    for name in ADAPTERS:
        try:
            adapter = get(name)
        except ModuleNotFoundError:
            continue
        if adapter.sniff(head):
            return adapter
    raise FormatError(
        f"{os.fspath(path)}: not a transcript format tracebox knows "
        f"(pass --harness; known: {', '.join(ADAPTERS)})"
    )
