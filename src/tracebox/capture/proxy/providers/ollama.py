"""Ollama (``POST /api/chat``, ``/api/generate``): NDJSON streams, one JSON when not streamed.

Each line carries ``message.content`` (chat) or ``response`` (generate); tool calls come as
``message.tool_calls[].function.name`` (Ollama gives them no id). The final line has
``done: true``, ``done_reason``, ``prompt_eval_count`` (input) and ``eval_count`` (output).
``reassemble`` joins a stream's lines into the one reply a non-streamed call returns.
"""

from __future__ import annotations

from ....trace.model import Usage
from .wire import Summary, append, as_int, as_str, obj

TOOL_MARKERS = (b"tool_calls",)


def event(ev: dict) -> tuple[bool, list[dict]]:
    msg = obj(ev.get("message"))
    calls = _calls(msg)
    token = bool(calls or msg.get("content") or msg.get("thinking") or ev.get("response"))
    return token, calls


def summarize(request: dict, events: list[dict]) -> Summary:
    s = Summary(model=as_str(request.get("model")))
    for ev in events:
        s.model = as_str(ev.get("model")) or s.model
        s.tool_calls += _calls(obj(ev.get("message")))
        if isinstance(ev.get("error"), str):
            s.error = ev["error"]
        if ev.get("done") is True:
            s.stop_reason = as_str(ev.get("done_reason")) or "stop"
            s.usage = Usage(
                input=as_int(ev.get("prompt_eval_count")), output=as_int(ev.get("eval_count"))
            )
    return s


def _calls(msg: dict) -> list[dict]:
    out = []
    for tc in msg.get("tool_calls") or ():
        if isinstance(tc, dict):
            fn = obj(tc.get("function"))
            out.append({"id": as_str(tc.get("id")), "name": as_str(fn.get("name"))})
    return out


def reassemble(events: list[dict]) -> dict | None:
    """The reply a non-streamed call would have returned (the last line's fields, the
    message or response text joined), or None."""
    if not events:
        return None
    out: dict = {}
    message: dict | None = None
    text: dict = {}
    for ev in events:
        for k, v in ev.items():
            if k not in ("message", "response"):
                out[k] = v
        append(text, "response", ev.get("response"))
        msg = obj(ev.get("message"))
        if msg:
            if message is None:
                message = {"role": msg.get("role") or "assistant", "content": ""}
            append(message, "content", msg.get("content"))
            append(message, "thinking", msg.get("thinking"))
            calls = [c for c in msg.get("tool_calls") or () if isinstance(c, dict)]
            if calls:
                message.setdefault("tool_calls", []).extend(calls)
    if message is not None:
        out["message"] = message
    elif "response" in text or any("response" in ev for ev in events):
        out["response"] = text.get("response", "")
    return out
