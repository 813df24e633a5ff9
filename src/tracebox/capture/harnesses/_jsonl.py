"""Defensive line reader for JSONL transcripts, shared by every JSONL harness adapter.

Owns turning an untrusted ``.jsonl`` file into a stream of :class:`Line` records:

* each non-blank line is decoded with ``msgspec.json`` into a dict;
* a line that is not a JSON object (malformed, a bare array, a truncated last line)
  yields ``data=None`` and an ``error`` message, with the first :data:`RAW_KEEP` bytes of
  the line in ``raw`` so the adapter can keep it verbatim (see :func:`unknown_entry`);
* a line longer than ``max_line`` bytes is never held in memory whole: only its first
  :data:`RAW_KEEP` bytes are kept and the rest is skipped in 1 MiB reads;
* invalid UTF-8 inside a line is replaced with U+FFFD and the line still decodes
  (``data`` set *and* ``error`` says what was repaired);
* JSON nested deeper than the decoder allows is an unusable line, not a crash;
* a UTF-8 byte-order mark on the first line is ignored; blank lines are skipped.

Line numbers are 1-based; offsets are byte offsets of the line's first byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec

from ...errors import UsageError

MAX_LINE = 16 * 1024 * 1024  # lines longer than this are not decoded
RAW_KEEP = 4096  # bytes of a bad line kept for Session.unknown
_SKIP_CHUNK = 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_TOO_DEEP = "JSON nested too deeply"

_decode = msgspec.json.decode
_DecodeError = msgspec.DecodeError


class Line(NamedTuple):
    no: int  # 1-based line number
    offset: int  # byte offset of the line in the file
    data: dict[str, Any] | None  # the decoded object, or None when the line is unusable
    error: str | None  # what was wrong (also set, with data, for repaired UTF-8)
    raw: bytes  # first RAW_KEEP bytes of the line when data is None, else b""


def iter_records(path: str | os.PathLike, max_line: int = MAX_LINE) -> Iterator[Line]:
    """Yield one :class:`Line` per non-blank line of the JSONL file at ``path``.

    Raises ``UsageError`` when the file cannot be opened; never raises for bad content.
    """
    try:
        f = open(path, "rb", buffering=64 * 1024)  # noqa: SIM115 - closed below
    except OSError as e:
        raise UsageError(f"cannot read {os.fspath(path)}: {e.strerror}") from None
    with f:
        yield from _records(f, max_line)


def _records(f, max_line: int) -> Iterator[Line]:
    readline = f.readline
    limit = max_line + 1
    offset = 0
    no = 0
    while True:
        line = readline(limit)
        if not line:
            return
        no += 1
        start = offset
        offset += len(line)
        if len(line) == limit and line[-1:] != b"\n":  # too long: skip the rest unread
            raw = line[:RAW_KEEP]
            while True:
                rest = readline(_SKIP_CHUNK)
                offset += len(rest)
                if not rest or rest[-1:] == b"\n":
                    break
            yield Line(no, start, None, f"line too long ({offset - start} bytes)", raw)
            continue
        if no == 1 and line.startswith(_BOM):
            line = line[3:]
        try:
            data = _decode(line)
        except _DecodeError as e:
            if not line.strip():
                continue
            if not line.isascii() and not valid_utf8(line):
                yield _repaired(no, start, line)  # msgspec ≥ 0.20 says DecodeError here
                continue
            terminated = line[-1:] == b"\n"
            msg = str(e) if terminated else f"truncated last line ({e})"
            yield Line(no, start, None, msg, line[:RAW_KEEP])
            continue
        except UnicodeDecodeError:
            yield _repaired(no, start, line)
            continue
        except RecursionError:
            yield Line(no, start, None, _TOO_DEEP, line[:RAW_KEEP])
            continue
        if type(data) is dict:
            yield Line(no, start, data, None, b"")
        else:
            yield Line(no, start, None, "not a JSON object", line[:RAW_KEEP])


def valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _repaired(no: int, start: int, line: bytes) -> Line:
    try:
        data = _decode(line.decode("utf-8", "replace"))
    except _DecodeError as e:
        return Line(no, start, None, f"invalid UTF-8 and {e}", line[:RAW_KEEP])
    except RecursionError:
        return Line(no, start, None, _TOO_DEEP, line[:RAW_KEEP])
    if type(data) is not dict:
        return Line(no, start, None, "not a JSON object", line[:RAW_KEEP])
    return Line(no, start, data, "invalid UTF-8 replaced with U+FFFD", b"")


def unknown_entry(line: Line) -> dict[str, Any]:
    """The ``Session.unknown`` entry for an unusable line: ``{line, error, text}``."""
    return {
        "line": line.no,
        "offset": line.offset,
        "error": line.error,
        "text": line.raw.decode("utf-8", "replace"),
    }


def head_objects(head: bytes, limit: int = 8) -> list[dict[str, Any]]:
    """Up to ``limit`` JSON objects from the lines of ``head`` (for ``sniff``); a last line
    cut by the head's end simply fails to decode and is skipped."""
    if head.startswith(_BOM):
        head = head[3:]
    out: list[dict[str, Any]] = []
    for line in head.split(b"\n"):
        if not line.strip():
            continue
        try:
            data = _decode(line)
        except (_DecodeError, UnicodeDecodeError, RecursionError):
            continue
        if type(data) is dict:
            out.append(data)
            if len(out) >= limit:
                break
    return out
