"""Gemini (``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``).

Every reply (or stream chunk: SSE with ``alt=sse``, else one JSON array) is a
``GenerateContentResponse``: ``candidates[].content.parts[]`` holding ``text`` or a
``functionCall`` (name, optional id), ``candidates[].finishReason``, ``usageMetadata``
(``promptTokenCount`` includes ``cachedContentTokenCount``; ``thoughtsTokenCount`` is
reported apart from ``candidatesTokenCount``) and ``modelVersion``. ``reassemble`` merges
a stream's chunks into the one response a non-streamed call returns (consecutive text
parts of the same kind joined).
"""

from __future__ import annotations

from ....trace.model import Usage
from .wire import Summary, as_int, as_str, error_message, obj

TOOL_MARKERS = (b"functionCall",)


def model_from_path(path: str) -> str | None:
    """``/v1beta/models/gemini-2.5-pro:generateContent`` → ``gemini-2.5-pro``."""
    _, sep, rest = path.partition("/models/")
    return (rest.split(":", 1)[0].split("?", 1)[0] or None) if sep else None


def event(ev: dict) -> tuple[bool, list[dict]]:
    token, calls = False, []
    for part in _parts(ev):
        if "functionCall" in part:
            calls.append(_call(part))
        if part.get("text") or "functionCall" in part:
            token = True
    return token, calls


def summarize(request: dict, events: list[dict]) -> Summary:
    s = Summary(model=as_str(request.get("model")))
    for ev in events:
        s.model = as_str(ev.get("modelVersion")) or s.model
        s.error = error_message(ev) or s.error
        s.tool_calls += [_call(p) for p in _parts(ev) if "functionCall" in p]
        for cand in _list(ev.get("candidates")):
            s.stop_reason = as_str(cand.get("finishReason")) or s.stop_reason
        u = obj(ev.get("usageMetadata"))
        if u:
            cached = as_int(u.get("cachedContentTokenCount"))
            thoughts = as_int(u.get("thoughtsTokenCount"))
            s.usage = Usage(
                input=max(0, as_int(u.get("promptTokenCount")) - cached),
                output=as_int(u.get("candidatesTokenCount")) + thoughts,
                cache_read=cached,
                reasoning=thoughts,
            )
    return s


def _parts(ev: dict) -> list[dict]:
    return [
        p for c in _list(ev.get("candidates")) for p in _list(obj(c.get("content")).get("parts"))
    ]


def _call(part: dict) -> dict[str, str | None]:
    fc = obj(part.get("functionCall"))
    return {"id": as_str(fc.get("id")), "name": as_str(fc.get("name"))}


def _list(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def reassemble(events: list[dict]) -> dict | None:
    """The ``GenerateContentResponse`` a non-streamed call would have returned, or None."""
    chunks = [ev for ev in events if isinstance(ev.get("candidates"), list)]
    if not chunks:
        return None
    out: dict = {}
    parts: list[dict] = []
    cand: dict = {}
    role = "model"
    for ev in chunks:
        for k, v in ev.items():
            if k != "candidates":
                out[k] = v
        first = next(iter(_list(ev.get("candidates"))), {})
        for k, v in first.items():
            if k != "content":
                cand[k] = v
        content = obj(first.get("content"))
        role = content.get("role") if isinstance(content.get("role"), str) else role
        for part in _list(content.get("parts")):
            last = parts[-1] if parts else None
            if (
                last is not None
                and set(part) <= {"text", "thought"}
                and set(last) <= {"text", "thought"}
                and isinstance(part.get("text"), str)
                and isinstance(last.get("text"), str)
                and bool(part.get("thought")) == bool(last.get("thought"))
            ):
                last["text"] += part["text"]
            else:
                parts.append(dict(part))
    cand["content"] = {"role": role, "parts": parts}
    out["candidates"] = [cand]
    return out
