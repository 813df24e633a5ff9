"""What every provider parser shares: splitting bodies into JSON events, and the summary.

A response body is framed one of three ways: Server-Sent Events (``data:`` lines),
newline-delimited JSON (Ollama), or one JSON document (non-streamed replies; Gemini's
``streamGenerateContent`` without ``alt=sse`` is one JSON array). ``events`` turns any of
them into a list of dicts; lines that are not JSON objects are skipped, never fatal.

A provider's ``summarize`` fills a ``Summary``: model, token usage (``trace.model.Usage``
semantics: ``input`` excludes cache reads and writes), tool calls (name, id), stop reason
and the provider's error message, if the reply was an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ....trace.model import Usage

MAX_EVENT_BYTES = 16 << 20  # a single event line larger than this is skipped, not decoded
MAX_BODY_BYTES = 64 << 20  # a request/response body larger than this is not decoded (stored cut)

_decode = msgspec.json.decode


@dataclass
class Summary:
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[dict[str, str | None]] = field(default_factory=list)
    stop_reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "usage": msgspec.structs.asdict(self.usage),
            "tool_calls": self.tool_calls,
            "stop_reason": self.stop_reason,
            "error": self.error,
        }


def loads(data: bytes | str, limit: int = MAX_EVENT_BYTES) -> Any:
    """JSON or None (malformed, longer than ``limit`` or invalid UTF-8 input is not an
    error here)."""
    if not data or len(data) > limit:
        return None
    try:
        return _decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def framing(body: bytes, streamed: bool) -> str:
    """``"sse"``, ``"ndjson"`` or ``"json"``, from the first bytes of a body."""
    if not streamed:
        return "json"
    head = body[:64].lstrip()
    if head.startswith((b"data:", b"event:", b"id:", b":", b"retry:")):
        return "sse"
    if head.startswith(b"["):
        return "json"
    return "ndjson"


def sse_data(line: bytes) -> bytes | None:
    """The payload of one SSE ``data:`` line (None for other fields and ``[DONE]``)."""
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    return None if not data or data == b"[DONE]" else data


def events(body: bytes, streamed: bool) -> list[dict]:
    """Every JSON object in a response body, in order."""
    kind = framing(body, streamed)
    if kind == "json":
        return objects(loads(body, MAX_BODY_BYTES))
    out = []
    for line in body.splitlines():
        data = sse_data(line) if kind == "sse" else line.strip()
        if data:
            doc = loads(data)
            if isinstance(doc, dict):
                out.append(doc)
    return out


def objects(doc: Any) -> list[dict]:
    """The JSON objects of a whole-body document: itself, or the items of an array."""
    items = doc if isinstance(doc, list) else [doc]
    return [d for d in items if isinstance(d, dict)]


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def error_message(doc: dict) -> str | None:
    """``{"error": {"message": ...}}`` or ``{"error": "..."}`` (every provider uses one)."""
    err = doc.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        msg = err.get("message")
        kind = err.get("type") or err.get("status") or err.get("code")
        text = msg if isinstance(msg, str) else msgspec.json.encode(err).decode()
        return f"{kind}: {text}" if isinstance(kind, str) else text
    return None


MAX_INDEX = 4096  # a stream's block/choice/tool index beyond this is not believed


def index(value: Any) -> int | None:
    """A stream's ``index`` field: a small non-negative int, 0 when absent, None when it
    is something else (hostile or broken input is skipped, not trusted)."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INDEX:
        return value
    return None


def append(doc: dict, key: str, value: Any) -> None:
    """``doc[key] += value`` for text that arrives in pieces (non-strings ignored)."""
    if isinstance(value, str) and value:
        old = doc.get(key)
        doc[key] = (old if isinstance(old, str) else "") + value
