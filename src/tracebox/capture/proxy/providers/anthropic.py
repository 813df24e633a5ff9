"""Anthropic Messages (``POST /v1/messages``): model, usage, tool calls, stop reason.

Streams are SSE: ``message_start`` (model, input and cache usage), ``content_block_start``
(a ``tool_use`` block carries the call's id and name), ``content_block_delta`` (tokens),
``message_delta`` (stop reason, cumulative output tokens), ``message_stop``, ``error``.
A non-streamed reply is the message object itself; ``reassemble`` rebuilds it from a
stream (text, thinking and signature deltas joined, tool inputs parsed from their JSON
fragments).
"""

from __future__ import annotations

from ....trace.model import Usage
from .wire import Summary, append, as_int, as_str, error_message, index, loads, obj

TOOL_MARKERS = (b"tool_use",)
_TOOL_BLOCKS = ("tool_use", "server_tool_use", "mcp_tool_use")


def event(ev: dict) -> tuple[bool, list[dict]]:
    """(is this a generated token?, tool calls it starts) for one stream event."""
    kind = ev.get("type")
    if kind == "content_block_delta":
        return True, []
    if kind == "content_block_start":
        block = obj(ev.get("content_block"))
        if block.get("type") in _TOOL_BLOCKS:
            return True, [_call(block)]
    return False, []


def summarize(request: dict, events: list[dict]) -> Summary:
    s = Summary(model=as_str(request.get("model")))
    for ev in events:
        kind = ev.get("type")
        if kind == "message":  # the non-streamed reply
            _message(s, ev)
            s.tool_calls += [_call(b) for b in _blocks(ev) if b.get("type") in _TOOL_BLOCKS]
        elif kind == "message_start":
            _message(s, obj(ev.get("message")))
        elif kind == "content_block_start":
            block = obj(ev.get("content_block"))
            if block.get("type") in _TOOL_BLOCKS:
                s.tool_calls.append(_call(block))
        elif kind == "message_delta":
            s.stop_reason = as_str(obj(ev.get("delta")).get("stop_reason")) or s.stop_reason
            _usage(s, obj(ev.get("usage")))
        elif kind == "error":
            s.error = error_message(ev)
    return s


def _message(s: Summary, msg: dict) -> None:
    s.model = as_str(msg.get("model")) or s.model
    s.stop_reason = as_str(msg.get("stop_reason")) or s.stop_reason
    _usage(s, obj(msg.get("usage")))


def _usage(s: Summary, u: dict) -> None:
    """Later events carry cumulative counts: keep the largest seen per field."""
    if not u:
        return
    old = s.usage
    s.usage = Usage(
        input=max(old.input, as_int(u.get("input_tokens"))),
        output=max(old.output, as_int(u.get("output_tokens"))),
        cache_read=max(old.cache_read, as_int(u.get("cache_read_input_tokens"))),
        cache_write=max(old.cache_write, as_int(u.get("cache_creation_input_tokens"))),
    )


def _blocks(msg: dict) -> list[dict]:
    content = msg.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _call(block: dict) -> dict[str, str | None]:
    return {"id": as_str(block.get("id")), "name": as_str(block.get("name"))}


def reassemble(events: list[dict]) -> dict | None:
    """The message object a non-streamed call would have returned, or None."""
    msg: dict | None = None
    blocks: dict[int, dict] = {}
    fragments: dict[int, list[str]] = {}
    for ev in events:
        kind = ev.get("type")
        if kind == "message_start":
            msg = dict(obj(ev.get("message")))
        elif kind == "content_block_start":
            i = index(ev.get("index"))
            if i is not None:
                blocks[i] = dict(obj(ev.get("content_block")))
        elif kind == "content_block_delta":
            i = index(ev.get("index"))
            block, delta = blocks.get(i) if i is not None else None, obj(ev.get("delta"))
            if block is None:
                continue
            dt = delta.get("type")
            if dt == "text_delta":
                append(block, "text", delta.get("text"))
            elif dt == "thinking_delta":
                append(block, "thinking", delta.get("thinking"))
            elif dt == "signature_delta":
                append(block, "signature", delta.get("signature"))
            elif dt == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                fragments.setdefault(i, []).append(delta["partial_json"])
            elif dt == "citations_delta" and isinstance(delta.get("citation"), dict):
                block.setdefault("citations", []).append(delta["citation"])
        elif kind == "message_delta" and msg is not None:
            for k, v in obj(ev.get("delta")).items():
                msg[k] = v
            usage = {**obj(msg.get("usage")), **obj(ev.get("usage"))}
            if usage:
                msg["usage"] = usage
    if msg is None:
        return None
    for i, parts in fragments.items():
        text = "".join(parts)
        value = loads(text) if text.strip() else {}
        blocks[i]["input"] = value if isinstance(value, dict) else text
    msg["content"] = [blocks[i] for i in sorted(blocks)]
    return msg
