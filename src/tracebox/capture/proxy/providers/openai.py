"""OpenAI Chat Completions (``/v1/chat/completions``) and Responses (``/v1/responses``).

Chat streams are SSE ``data:`` chunks with ``choices[].delta`` (``content``, ``tool_calls``
whose first fragment carries id and name) ending in ``data: [DONE]``; usage arrives in the
last chunk when the client asked for it. Responses streams are typed SSE events:
``response.output_item.added`` (a ``function_call`` item carries ``call_id`` and name),
``response.*.delta`` (tokens), ``response.completed`` (the whole response with usage).
OpenAI counts cached and reasoning tokens inside the input and output totals.
``reassemble_chat`` / ``reassemble_responses`` rebuild the reply a non-streamed call would
have returned (Responses streams end with it whole, in ``response.completed``).
"""

from __future__ import annotations

from ....trace.model import Usage
from .wire import Summary, append, as_int, as_str, error_message, index, obj

CHAT_TOOL_MARKERS = (b"tool_calls", b"function_call")
RESPONSES_TOOL_MARKERS = (b"function_call", b"tool_call", b"output_item.added")
_TOOL_ITEMS = ("function_call", "custom_tool_call", "local_shell_call", "mcp_call")


# -- chat completions ------------------------------------------------------------------


def chat_event(ev: dict) -> tuple[bool, list[dict]]:
    token, calls = False, []
    for choice in _list(ev.get("choices")):
        delta = obj(choice.get("delta"))
        if delta.get("content") or delta.get("refusal") or delta.get("reasoning_content"):
            token = True
        for tc in _list(delta.get("tool_calls")):
            token = True
            if tc.get("id") or obj(tc.get("function")).get("name"):
                calls.append(_chat_call(tc))
    return token, calls


def summarize_chat(request: dict, events: list[dict]) -> Summary:
    s = Summary(model=as_str(request.get("model")))
    for ev in events:
        s.model = as_str(ev.get("model")) or s.model
        s.error = error_message(ev) or s.error
        for choice in _list(ev.get("choices")):
            s.stop_reason = as_str(choice.get("finish_reason")) or s.stop_reason
            part = obj(choice.get("message") or choice.get("delta"))
            s.tool_calls += [
                _chat_call(tc)
                for tc in _list(part.get("tool_calls"))
                if tc.get("id") or obj(tc.get("function")).get("name")
            ]
        u = obj(ev.get("usage"))
        if u:
            cached = as_int(obj(u.get("prompt_tokens_details")).get("cached_tokens"))
            s.usage = Usage(
                input=max(0, as_int(u.get("prompt_tokens")) - cached),
                output=as_int(u.get("completion_tokens")),
                cache_read=cached,
                reasoning=as_int(obj(u.get("completion_tokens_details")).get("reasoning_tokens")),
            )
    return s


def _chat_call(tc: dict) -> dict[str, str | None]:
    return {"id": as_str(tc.get("id")), "name": as_str(obj(tc.get("function")).get("name"))}


# -- responses -------------------------------------------------------------------------


def responses_event(ev: dict) -> tuple[bool, list[dict]]:
    kind = ev.get("type")
    if kind == "response.output_item.added":
        item = obj(ev.get("item"))
        if item.get("type") in _TOOL_ITEMS:
            return True, [_item_call(item)]
        return False, []
    return isinstance(kind, str) and kind.endswith(".delta"), []


def summarize_responses(request: dict, events: list[dict]) -> Summary:
    s = Summary(model=as_str(request.get("model")))
    for ev in events:
        kind = ev.get("type")
        if kind is None and "object" in ev:  # the non-streamed reply
            _response(s, ev)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            _response(s, obj(ev.get("response")))
        elif kind in ("response.created", "response.in_progress"):
            s.model = as_str(obj(ev.get("response")).get("model")) or s.model
        elif kind == "error":
            s.error = as_str(ev.get("message")) or error_message(ev)
        elif kind is None:
            s.error = error_message(ev) or s.error
    return s


def _response(s: Summary, r: dict) -> None:
    s.model = as_str(r.get("model")) or s.model
    status = as_str(r.get("status"))
    reason = as_str(obj(r.get("incomplete_details")).get("reason"))
    s.stop_reason = reason or status or s.stop_reason
    s.error = error_message(r) or s.error
    s.tool_calls = [_item_call(i) for i in _list(r.get("output")) if i.get("type") in _TOOL_ITEMS]
    u = obj(r.get("usage"))
    if u:
        cached = as_int(obj(u.get("input_tokens_details")).get("cached_tokens"))
        s.usage = Usage(
            input=max(0, as_int(u.get("input_tokens")) - cached),
            output=as_int(u.get("output_tokens")),
            cache_read=cached,
            reasoning=as_int(obj(u.get("output_tokens_details")).get("reasoning_tokens")),
        )


def _item_call(item: dict) -> dict[str, str | None]:
    return {
        "id": as_str(item.get("call_id")) or as_str(item.get("id")),
        "name": as_str(item.get("name")) or as_str(item.get("type")),
    }


def _list(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def reassemble_chat(events: list[dict]) -> dict | None:
    """The ``chat.completion`` a non-streamed call would have returned, or None."""
    out: dict | None = None
    choices: dict[int, dict] = {}
    tools: dict[int, dict[int, dict]] = {}
    for ev in events:
        if not isinstance(ev.get("choices"), list) and not isinstance(ev.get("usage"), dict):
            continue
        if out is None:
            out = {k: ev[k] for k in ("id", "created", "model", "system_fingerprint") if k in ev}
            out["object"] = "chat.completion"
        for ch in _list(ev.get("choices")):
            i = index(ch.get("index"))
            if i is None:
                continue
            c = choices.setdefault(i, {"index": i, "message": {"role": "assistant"}})
            msg, delta = c["message"], obj(ch.get("delta"))
            if isinstance(delta.get("role"), str):
                msg["role"] = delta["role"]
            for key in ("content", "refusal", "reasoning_content"):
                append(msg, key, delta.get(key))
            for tc in _list(delta.get("tool_calls")):
                j = index(tc.get("index"))
                if j is None:
                    continue
                call = tools.setdefault(i, {}).setdefault(
                    j, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                for key in ("id", "type"):
                    if isinstance(tc.get(key), str):
                        call[key] = tc[key]
                fn = obj(tc.get("function"))
                append(call["function"], "name", fn.get("name"))
                append(call["function"], "arguments", fn.get("arguments"))
            if isinstance(ch.get("finish_reason"), str):
                c["finish_reason"] = ch["finish_reason"]
        if isinstance(ev.get("usage"), dict):
            out["usage"] = ev["usage"]
    if out is None:
        return None
    for i, calls in tools.items():
        choices[i]["message"]["tool_calls"] = [calls[j] for j in sorted(calls)]
    for c in choices.values():
        c["message"].setdefault("content", None)
    out["choices"] = [choices[i] for i in sorted(choices)]
    return out


def reassemble_responses(events: list[dict]) -> dict | None:
    """The response object of a Responses stream: whole in its final event; from the
    finished output items when the stream was cut before that."""
    base: dict | None = None
    items: dict[int, dict] = {}
    for ev in events:
        kind = ev.get("type")
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            final = obj(ev.get("response"))
            if final:
                return final
        elif kind in ("response.created", "response.in_progress"):
            base = dict(obj(ev.get("response")))
        elif kind == "response.output_item.done":
            i = index(ev.get("output_index"))
            if i is not None and isinstance(ev.get("item"), dict):
                items[i] = ev["item"]
    if base is None and not items:
        return None
    out = base or {"object": "response"}
    out["output"] = [items[i] for i in sorted(items)]
    return out
