"""Which provider a request is for, where it goes, and what its reply says.

Routing is by path: Anthropic ``/v1/messages``, OpenAI ``/v1/chat/completions`` and
``/v1/responses``, Ollama ``/api/chat`` and ``/api/generate``, Gemini
``/v1beta/models/*:generateContent|:streamGenerateContent``. A leading ``/anthropic``,
``/openai``, ``/ollama`` or ``/gemini`` names the upstream explicitly (and is stripped);
any other path under such a prefix, or one that clearly belongs to an upstream (``/api/…``
to Ollama, ``/v1beta/…`` to Gemini, other ``/v1/…`` to OpenAI, or to Anthropic when the
client sends ``anthropic-version``), is forwarded as provider ``"other"``.

Parsing is in one module per provider (``anthropic``, ``openai``, ``ollama``, ``gemini``)
behind three entry points: ``summarize`` (a whole exchange, for the feed and the store),
``reassemble`` (a streamed reply rebuilt as the non-streamed one, so the store keeps its
messages as nodes) and ``StreamTracker`` (incremental, cheap: first token and tool calls
as chunks pass).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ....errors import UsageError
from . import anthropic, gemini, ollama, openai
from .wire import MAX_BODY_BYTES, Summary, events, framing, loads, objects, sse_data

UPSTREAMS = ("anthropic", "openai", "ollama", "gemini")
DEFAULT_UPSTREAMS = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com",
    "ollama": "http://127.0.0.1:11434",
    "gemini": "https://generativelanguage.googleapis.com",
}

EventFn = Callable[[dict], tuple[bool, list[dict]]]
SummarizeFn = Callable[[dict, list[dict]], Summary]

# provider → (stream event parser, whole-exchange summarizer, bytes that may start a tool call)
PARSERS: dict[str, tuple[EventFn, SummarizeFn, tuple[bytes, ...]]] = {
    "anthropic": (anthropic.event, anthropic.summarize, anthropic.TOOL_MARKERS),
    "openai-chat": (openai.chat_event, openai.summarize_chat, openai.CHAT_TOOL_MARKERS),
    "openai-responses": (
        openai.responses_event,
        openai.summarize_responses,
        openai.RESPONSES_TOOL_MARKERS,
    ),
    "ollama": (ollama.event, ollama.summarize, ollama.TOOL_MARKERS),
    "gemini": (gemini.event, gemini.summarize, gemini.TOOL_MARKERS),
}


REASSEMBLERS: dict[str, Callable[[list[dict]], dict | None]] = {
    "anthropic": anthropic.reassemble,
    "openai-chat": openai.reassemble_chat,
    "openai-responses": openai.reassemble_responses,
    "ollama": ollama.reassemble,
    "gemini": gemini.reassemble,
}


@dataclass(frozen=True, slots=True)
class Route:
    provider: str  # an exchange.Provider value
    upstream: str  # a key of UPSTREAMS
    path: str  # the path to request upstream (prefix stripped)


def upstreams_from(env: Mapping[str, str], overrides: Iterable[str] = ()) -> dict[str, str]:
    """Base URLs: defaults, then ``TRACEBOX_UPSTREAM_<NAME>``, then ``NAME=URL`` overrides."""
    out = dict(DEFAULT_UPSTREAMS)
    for name in UPSTREAMS:
        if env.get(f"TRACEBOX_UPSTREAM_{name.upper()}"):
            out[name] = env[f"TRACEBOX_UPSTREAM_{name.upper()}"]
    for item in overrides:
        name, sep, url = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in UPSTREAMS:
            raise UsageError(
                f"bad --upstream {item!r}: use PROVIDER=URL with PROVIDER one of "
                + ", ".join(UPSTREAMS)
            )
        out[name] = url.strip()
    for name, url in out.items():
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"upstream {name} URL {url!r} must start with http:// or https://")
        out[name] = url.rstrip("/")
    return out


def route(path: str, anthropic_hint: bool = False) -> Route | None:
    """The route for a request path; ``anthropic_hint``: the client sent ``anthropic-version``."""
    head, _, rest = path[1:].partition("/")
    if head in UPSTREAMS:
        sub = "/" + rest
        return Route(_provider(sub) or "other", head, sub)
    provider = _provider(path)
    if provider is not None:
        return Route(provider, _UPSTREAM_OF[provider], path)
    if path.startswith("/api/"):
        return Route("other", "ollama", path)
    if path.startswith("/v1beta/"):
        return Route("other", "gemini", path)
    if path.startswith("/v1/"):
        return Route("other", "anthropic" if anthropic_hint else "openai", path)
    return None


_UPSTREAM_OF = {
    "anthropic": "anthropic",
    "openai-chat": "openai",
    "openai-responses": "openai",
    "ollama": "ollama",
    "gemini": "gemini",
}


def _provider(path: str) -> str | None:
    if path == "/v1/messages":
        return "anthropic"
    if path == "/v1/chat/completions" or path == "/chat/completions":
        return "openai-chat"
    if path == "/v1/responses" or path == "/responses":
        return "openai-responses"
    if path in ("/api/chat", "/api/generate"):
        return "ollama"
    if "/models/" in path and path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    return None


def summarize(
    provider: str, request_body: bytes, response_body: bytes, streamed: bool, path: str = ""
) -> dict[str, Any]:
    """Model, usage, tool calls, stop reason and error of one exchange (best effort: a
    malformed or truncated body gives what could be read). ``path`` lets Gemini name the
    model, which only its URL carries."""
    request = loads(request_body) if request_body else None
    return read_reply(provider, request, response_body, streamed, path)[0]


def read_reply(
    provider: str, request: Any, response_body: bytes, streamed: bool, path: str = ""
) -> tuple[dict[str, Any], Any]:
    """``(summary, reply)`` of one exchange from one parse of its response body: the
    summary as ``summarize`` gives it, and the reply as a non-streamed call returns it
    (a streamed one reassembled; None when unreadable). ``request`` is the parsed request."""
    if streamed:
        evs = events(response_body, True) if response_body else []
        reply = _reassembled(provider, evs)
    else:
        reply = loads(response_body, MAX_BODY_BYTES)
        evs = objects(reply)
    parser = PARSERS.get(provider)
    if parser is None:
        return Summary().to_dict(), reply
    s = parser[1](request if isinstance(request, dict) else {}, evs)
    if provider == "gemini" and not s.model:
        s.model = gemini.model_from_path(path)
    return s.to_dict(), reply


def reassemble(provider: str, response_body: bytes) -> dict | None:
    """A streamed reply as the reply a non-streamed call would have returned (None when
    the provider is unknown or nothing in the body could be read)."""
    return _reassembled(provider, events(response_body, True))


def _reassembled(provider: str, evs: list[dict]) -> dict | None:
    fn = REASSEMBLERS.get(provider)
    return fn(evs) if fn is not None and evs else None


class StreamTracker:
    """Watches a streamed reply as chunks pass: reports the first generated token and each
    tool call as it starts. Cheap: events are decoded only until the first token, then
    only lines holding a tool-call marker."""

    __slots__ = ("_event", "_markers", "_sse", "_pending", "first_token")

    MAX_PENDING = 1 << 20  # a line longer than this is not inspected

    def __init__(self, provider: str, first_chunk: bytes):
        parser = PARSERS[provider]
        self._event, self._markers = parser[0], parser[2]
        self._sse = framing(first_chunk, True) == "sse"
        self._pending = b""
        self.first_token = False

    def feed(self, chunk: bytes) -> tuple[bool, list[dict]]:
        """(did the first token arrive in this chunk?, tool calls started in it)."""
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:] if len(data) - cut <= self.MAX_PENDING else b""
        if not cut or (self.first_token and not any(m in data for m in self._markers)):
            return False, []
        first, calls = False, []
        for line in data[:cut].splitlines():
            if self.first_token and not any(m in line for m in self._markers):
                continue
            payload = sse_data(line) if self._sse else line.strip()
            ev = loads(payload) if payload else None
            if not isinstance(ev, dict):
                continue
            token, found = self._event(ev)
            if token and not self.first_token:
                self.first_token = first = True
            calls += found
        return first, calls


# -- for live watchers: what a request reports back, and what a reply said ------------------

_FAILED_TEXT = re.compile(
    r"^(?:error\b|Error:|Exit code [1-9]|Traceback \(most recent call last\))"
    r"|\bexit(?: code|_code)?[:= ]+[1-9]\d*\b|^FAILED\b|\bfailed\b.*\bin \d",
    re.I | re.M,
)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content)
    return ""


def _command(args: Any) -> str | None:
    if isinstance(args, str):
        args = loads(args) if args.startswith("{") else args
    if isinstance(args, dict):
        cmd = args.get("command") if "command" in args else args.get("cmd")
        if isinstance(cmd, list):
            cmd = " ".join(map(str, cmd))
        return cmd if isinstance(cmd, str) else None
    return None


def tool_results(provider: str, doc: Any) -> list[dict[str, Any]]:
    """The tool results a request (parsed: ``doc``) sends back in its last turn: ``{tool,
    command, failed}`` each, the command taken from the matching tool call. ``failed`` is
    the API's own flag (Anthropic ``is_error``), else read from the text (``Exit code 1``,
    ``Error:``, ``Traceback``, ``FAILED``…). Best effort; never raises."""
    if not isinstance(doc, dict):
        return []
    items = doc.get("messages") if provider != "openai-responses" else doc.get("input")
    if not isinstance(items, list):
        return []
    calls: dict[str, tuple[str, str | None]] = {}
    out: list[dict[str, Any]] = []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            continue
        last = i >= len(items) - 8  # the latest turn (and a few before it, for parallel tools)
        if provider == "anthropic":
            for b in m.get("content") if isinstance(m.get("content"), list) else []:
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "tool_use":
                    calls[str(b.get("id"))] = (str(b.get("name") or ""), _command(b.get("input")))
                elif b.get("type") == "tool_result" and last and i == len(items) - 1:
                    tool, cmd = calls.get(str(b.get("tool_use_id")), ("", None))
                    failed = b.get("is_error") is True or bool(
                        _FAILED_TEXT.search(_text_of(b.get("content"))[:4000])
                    )
                    out.append({"tool": tool, "command": cmd, "failed": failed})
        elif provider == "openai-chat":
            for tc in m.get("tool_calls") or [] if isinstance(m.get("tool_calls"), list) else []:
                if isinstance(tc, dict):
                    fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
                    calls[str(tc.get("id"))] = (
                        str(fn.get("name") or ""),
                        _command(fn.get("arguments")),
                    )
            if (
                m.get("role") == "tool"
                and last
                and all(isinstance(x, dict) and x.get("role") == "tool" for x in items[i:])
            ):
                tool, cmd = calls.get(str(m.get("tool_call_id")), ("", None))
                text = _text_of(m.get("content"))[:4000]
                out.append(
                    {"tool": tool, "command": cmd, "failed": bool(_FAILED_TEXT.search(text))}
                )
        elif provider == "openai-responses":
            if m.get("type") == "function_call":
                calls[str(m.get("call_id"))] = (
                    str(m.get("name") or ""),
                    _command(m.get("arguments")),
                )
            elif m.get("type") == "function_call_output" and last:
                tool, cmd = calls.get(str(m.get("call_id")), ("", None))
                text = _text_of(m.get("output"))[:4000]
                out.append(
                    {"tool": tool, "command": cmd, "failed": bool(_FAILED_TEXT.search(text))}
                )
    return out[-16:]


def response_digest(provider: str, reply: Any) -> str | None:
    """A short hash of what the model answered (its assistant messages, ids left out), so
    identical answers in a row can be noticed; None when nothing could be read. ``reply``
    is the reply object ``read_reply`` gives."""
    import hashlib

    from ....trace import dag

    messages, _ = dag.response_messages(provider, reply)
    if not messages:
        return None
    text = b"\n".join(dag.canonical(_without_ids(m)) for m in messages)
    return hashlib.sha256(text).hexdigest()[:16]


_ID_KEYS = frozenset(("id", "call_id"))


def _without_ids(value: Any) -> Any:
    """``value`` minus the ids the API mints per answer (tool-call ids differ every time
    the same call is made)."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in _ID_KEYS}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value
