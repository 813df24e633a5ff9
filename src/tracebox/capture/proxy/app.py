"""The capture proxy's ASGI app: forward each model call unchanged, record it, publish it.

``ProxyApp`` is a raw ASGI app (no framework: every microsecond here is added latency).
For each request it picks the upstream by path (``providers.route``), forwards method,
raw path, query, headers (minus hop-by-hop ones) and body over a pool of keep-alive
connections per upstream (``upstream.py``), and streams the reply back chunk by chunk as
it arrives. Upstream bytes pass through untouched (no decompression; the proxy asks
upstream for ``accept-encoding: identity`` so captured bodies are readable).

While forwarding it fills an ``Exchange`` — secrets removed: authorization, API-key and
cookie headers, and query parameters that look like keys, never enter it — and when the
call ends (success, non-2xx, upstream unreachable → 502, upstream timeout → 504, stream
failing midway, client gone) hands it to the sink and publishes ``call.*`` events on the
live feed. Its own endpoints live under ``/_tracebox/`` (``health``, ``status``,
``events``; ``/events`` too), never forwarded.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from ...errors import one_line
from ...stream.feed import KEEPALIVE, Feed, sse
from . import providers, tags
from .exchange import Exchange, Sink
from .upstream import Pool

CAPTURE_LIMIT = 64 << 20  # bytes of a response (or request) body kept in the exchange
KEEPALIVE_S = 15.0
WHOLE_BODY_MAX = 1 << 20  # non-streamed replies up to this size are relayed in one write

# never forwarded either way (RFC 9110 §7.6.1), plus host and content-length, which the
# upstream client sets again for the upstream request
HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization proxy-connection te "
    b"trailer trailers transfer-encoding upgrade".split()
)
_NOT_FORWARDED_UP = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"accept-encoding"}
SECRET_HEADERS = frozenset(
    b"authorization proxy-authorization x-api-key api-key x-goog-api-key cookie set-cookie".split()
)
_SECRETISH = re.compile(rb"auth|api[-_]?key|token|secret|passw|cookie|credential|signature", re.I)
_SECRET_PARAM = re.compile(rb"key|token|secret|passw|auth|sig|credential", re.I)
# where the session id comes from: ours first, then the agents' own headers
SESSION_HEADERS = (
    b"x-tracebox-session",
    b"x-claude-code-session-id",  # Claude Code >= 2.1.86
    b"session-id",  # Codex CLI
    b"session_id",  # pi
    b"x-opencode-session",
)
STREAM_TYPES = (b"text/event-stream", b"application/x-ndjson", b"application/jsonl")


_STAMPS = ("last_ok", "last_error_at")  # kept as epoch seconds, shown as ISO 8601


class MemorySink:
    """Keeps the last ``limit`` exchanges in memory (tests, and when no spool is installed)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.exchanges: deque[Exchange] = deque(maxlen=limit)
        self.submitted = 0

    def submit(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        self.submitted += 1

    def status(self) -> dict[str, Any]:
        return {"kind": "memory", "held": len(self.exchanges), "submitted": self.submitted}


class _ClientGone(Exception):
    """The client disconnected before its request body was read."""


class ProxyApp:
    """The ASGI app. ``upstreams`` maps provider name → base URL (``providers.upstreams_from``).

    ``attributor`` (optional) has ``session_for(provider, request_body, headers) ->
    (session, agent)``; headers naming the session or agent win over it. It runs only
    while the live feed has subscribers (they need the session at once)."""

    def __init__(
        self,
        upstreams: Mapping[str, str],
        sink: Sink,
        *,
        feed: Feed | None = None,
        attributor: Any = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        strip_tracebox_headers: bool = True,
        capture_limit: int = CAPTURE_LIMIT,
    ) -> None:
        self.upstreams = dict(upstreams)
        self.sink = sink
        self.feed = feed if feed is not None else Feed()
        self.attributor = attributor
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.strip_tracebox_headers = strip_tracebox_headers
        self.capture_limit = capture_limit
        self.started = _iso(datetime.now(UTC))
        self.in_flight = 0
        self.exchanges = 0
        self.health: dict[str, dict[str, Any]] = {
            name: {"url": url, "calls": 0, "errors": 0} for name, url in self.upstreams.items()
        }
        self._pools: dict[str, Pool] = {}

    # -- ASGI entry --------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(tags.PREFIX):  # `tracebox record` tags in the URL
                scope = tags.untag(scope) or scope
            path = scope["path"]
            if path.startswith("/_tracebox/") or path == "/events":
                await self._own(scope, receive, send)
            else:
                await self._forward(scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    # what start-up built lives as long as the proxy: out of the collector's
                    # sight, a full collection is ~0.2 ms, not ~10 ms in the middle of a call;
                    # then small, frequent collections (the CLI starts with rare ones)
                    gc.collect()
                    gc.freeze()
                    gc.set_threshold(700, 10, 10)
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await self.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    def _pool(self, upstream: str) -> Pool:
        pool = self._pools.get(upstream)
        if pool is None:
            pool = self._pools[upstream] = Pool(
                self.upstreams[upstream],
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
        return pool

    # -- forwarding --------------------------------------------------------------------

    async def _forward(self, scope, receive, send) -> None:
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        path: str = scope["path"]
        route = providers.route(path, any(k == b"anthropic-version" for k, _ in raw_headers))
        if route is None or route.upstream not in self.upstreams:
            await _reply_error(send, 404, "no_route", f"tracebox proxy: no upstream for {path}")
            return
        base = self.upstreams[route.upstream]
        client_path: bytes = scope.get("raw_path") or path.encode()
        raw_path = client_path[len(path) - len(route.path) :]  # minus a routing prefix
        query: bytes = scope.get("query_string") or b""
        kept = _redact_query(query)
        shown = client_path + (b"?" + kept if kept else b"")
        x = Exchange(
            id=_new_id(now),
            provider=route.provider,  # type: ignore[arg-type]
            method=scope["method"],
            path=shown.decode("latin-1"),
            upstream=base,
            started=_iso(now),
            request_headers=_captured(raw_headers),
        )
        _attribute(x, raw_headers)
        forward = [
            (k, v)
            for k, v in raw_headers
            if k not in _NOT_FORWARDED_UP
            and not (self.strip_tracebox_headers and k.startswith(b"x-tracebox-"))
        ]
        forward.append((b"accept-encoding", b"identity"))
        health = self.health[route.upstream]
        health["calls"] += 1
        self.in_flight += 1
        task = asyncio.current_task()
        state = _CallState()
        watcher: asyncio.Future | None = None
        try:
            body = await _read_body(receive)
            x.request_body = body[: self.capture_limit]
            if len(body) > self.capture_limit:
                x.extra = {"request_truncated": len(body)}
            if self.feed.has_subscribers:
                # only live watchers need the request read now (it may mean parsing a large
                # history); the store attributes every call again when it ships it
                state.request = request = _request_doc(body)
                if self.attributor is not None:
                    self._attributor_says(x, request)
                state.model = _model(route, request)
                event = {**self._event(x, "call.start", state), "method": x.method}
                results = providers.tool_results(route.provider, request)
                if results:
                    event["tool_results"] = results  # what the agent reports back this turn
                self.feed.publish(event)
            watcher = asyncio.ensure_future(_watch(receive, state, task))
            target = raw_path + (b"?" + query if query else b"")
            await self._relay(x, route, target, forward, body, send, state, t0)
        except _ClientGone:
            x.client_disconnected, x.error = True, "client_disconnected"
        except asyncio.CancelledError:
            if not state.client_gone:
                raise
            if task is not None:
                task.uncancel()
            x.client_disconnected = True
            x.error = x.error or "client_disconnected"
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
            self.in_flight -= 1
            self._finish(x, state, health, t0)

    async def _relay(self, x, route, target, headers, body, send, state, t0) -> None:
        try:
            pool = self._pool(route.upstream)
            resp = await pool.request(x.method, pool.prefix + target, headers, body)
        except TimeoutError:
            x.error = "upstream_timeout"
            await _reply_error(send, 504, "upstream_timeout", _why("timed out", x.upstream))
            return
        except (OSError, ValueError) as e:
            x.error = f"upstream_unreachable: {one_line(e, 300)}"
            await _reply_error(
                send, 502, "upstream_unreachable", _why(one_line(e, 300), x.upstream)
            )
            return
        try:
            x.ttfb_ms = _ms(t0)
            x.status = resp.status
            headers_out = _response_headers(resp.raw_headers)
            x.response_headers = _captured(headers_out)
            ctype = resp.header(b"content-type").lower()
            x.streamed = ctype.startswith(STREAM_TYPES) or x.path.split("?", 1)[0].endswith(
                ":streamGenerateContent"
            )
            await send(
                {"type": "http.response.start", "status": resp.status, "headers": headers_out}
            )
            length = resp.header(b"content-length")
            if not x.streamed and length.isdigit() and int(length) <= WHOLE_BODY_MAX:
                # a small plain reply: one read, one write (the client needs all of it anyway)
                try:
                    x.response_body = await resp.read()
                except (OSError, TimeoutError) as e:
                    x.error = f"stream_error: {one_line(e, 300)}"
                    return
                state.done = True
                await send({"type": "http.response.body", "body": x.response_body})
                return
            await self._stream(x, route, resp, send, state, t0)
        finally:
            resp.release()

    async def _stream(self, x, route, resp, send, state, t0) -> None:
        chunks: list[bytes] = []
        kept = 0
        tracker = None
        parse = x.streamed and route.provider in providers.PARSERS
        try:
            async for chunk in resp.chunks():
                arrived = time.perf_counter()
                if kept < self.capture_limit:
                    chunks.append(chunk)
                    kept += len(chunk)
                # the client first, the bookkeeping after: it never waits for it
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if parse:
                    if tracker is None:
                        tracker = providers.StreamTracker(route.provider, chunk)
                    first, calls = tracker.feed(chunk)
                    if first:
                        self._first_token(x, state, t0, arrived)
                    for call in calls:
                        self._tool_call(x, state, call)
            state.done = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, TimeoutError) as e:
            # the client keeps what it got; returning without the final message makes
            # the server drop the connection, so the client sees a truncated reply
            x.error = f"stream_error: {one_line(e, 300)}"
        finally:
            x.response_body = b"".join(chunks)
            if kept > self.capture_limit:
                x.response_body = x.response_body[: self.capture_limit]
                x.extra = {**(x.extra or {}), "response_truncated": True}

    def _attributor_says(self, x: Exchange, request: Any) -> None:
        try:
            session, agent = self.attributor.session_for(x.provider, request, x.request_headers)
        except Exception as e:  # attribution must never break forwarding
            x.extra = {**(x.extra or {}), "attribution_error": one_line(e, 300)}
            return
        x.session = x.session or session
        x.agent = x.agent or agent

    # -- results: sink, health, feed -----------------------------------------------------

    def _finish(self, x: Exchange, state: _CallState, health: dict, t0: float) -> None:
        x.total_ms = _ms(t0)
        if state.first_token_ms is not None:
            x.extra = {**(x.extra or {}), "first_token_ms": state.first_token_ms}
        failed = x.error is not None or x.status is None or x.status >= 400
        stamp = time.time()
        if x.error and x.status is None:
            health["errors"] += 1
            health["last_error"], health["last_error_at"] = x.error, stamp
        else:
            health["last_ok"] = stamp
            health["last_status"] = x.status
        self.exchanges += 1
        try:
            self.sink.submit(x)
        except Exception as e:  # a broken sink must not break the proxy; status shows it
            health["sink_error"] = one_line(e, 300)
        if not self.feed.has_subscribers:
            return
        request = state.request if state.request is not _UNREAD else _request_doc(x.request_body)
        summary, reply = providers.read_reply(
            x.provider, request, x.response_body, x.streamed, x.path
        )
        event = self._event(x, "call.error" if failed else "call.end", state)
        event.update(
            model=summary["model"] or state.model,
            status=x.status,
            error=x.error or summary["error"],
            usage=summary["usage"],
            stop_reason=summary["stop_reason"],
            tool_calls=len(summary["tool_calls"]),
            streamed=x.streamed,
            ttfb_ms=x.ttfb_ms,
            first_token_ms=state.first_token_ms,
            total_ms=x.total_ms,
            client_disconnected=x.client_disconnected,
            response_digest=None if failed else providers.response_digest(x.provider, reply),
        )
        if not x.streamed:  # streamed tool calls were published as they arrived
            for call in summary["tool_calls"]:
                self._tool_call(x, state, call)
        self.feed.publish(event)

    def _first_token(self, x: Exchange, state: _CallState, t0: float, at: float) -> None:
        state.first_token_ms = _ms(t0, at)
        if self.feed.has_subscribers:
            event = self._event(x, "call.first_token", state)
            event["first_token_ms"] = state.first_token_ms
            self.feed.publish(event)

    def _tool_call(self, x: Exchange, state: _CallState, call: dict) -> None:
        if self.feed.has_subscribers:
            event = self._event(x, "call.tool_call", state)
            event.update(tool=call.get("name"), tool_call_id=call.get("id"))
            self.feed.publish(event)

    def _event(self, x: Exchange, kind: str, state: _CallState) -> dict[str, Any]:
        return {
            "type": kind,
            "time": _iso(datetime.now(UTC)),
            "id": x.id,
            "session": x.session,
            "agent": x.agent,
            "provider": x.provider,
            "model": state.model,
        }

    # -- own endpoints -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        sink_status = getattr(self.sink, "status", None)
        return {
            "pid": os.getpid(),
            "started": self.started,
            "in_flight": self.in_flight,
            "exchanges": self.exchanges,
            "upstreams": {
                name: {
                    k: _iso(datetime.fromtimestamp(v, UTC)) if k in _STAMPS and v else v
                    for k, v in h.items()
                }
                for name, h in self.health.items()
            },
            "sink": sink_status() if callable(sink_status) else {"kind": type(self.sink).__name__},
            "feed": self.feed.status(),
        }

    async def _own(self, scope, receive, send) -> None:
        path = scope["path"]
        if path in ("/_tracebox/events", "/events"):
            await self._events(scope, receive, send)
        elif path == "/_tracebox/health":
            await _reply_json(send, 200, {"ok": True, "pid": os.getpid()})
        elif path == "/_tracebox/status":
            await _reply_json(send, 200, self.status())
        else:
            await _reply_error(send, 404, "not_found", f"tracebox proxy: no endpoint {path}")

    async def _events(self, scope, receive, send) -> None:
        """``GET /_tracebox/events?session=&agent=``: the live feed as Server-Sent Events."""
        params = _params(scope.get("query_string") or b"")
        try:
            await _read_body(receive)
        except _ClientGone:
            return
        gone = asyncio.ensure_future(receive())
        with self.feed.subscribe(params.get("session"), params.get("agent")) as sub:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            hello = {"type": "feed.subscribed", "seq": self.feed.seq, **params}
            await send({"type": "http.response.body", "body": sse(hello), "more_body": True})
            try:
                while True:
                    nxt = asyncio.ensure_future(sub.get(KEEPALIVE_S))
                    await asyncio.wait((nxt, gone), return_when=asyncio.FIRST_COMPLETED)
                    if gone.done():
                        nxt.cancel()
                        return
                    event = nxt.result()
                    body = KEEPALIVE if event is None else sse(event)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            finally:
                gone.cancel()


class _CallState:
    """What one call's parts share while it runs."""

    __slots__ = ("client_gone", "done", "first_token_ms", "model", "request")

    def __init__(self) -> None:
        self.client_gone = False
        self.done = False
        self.first_token_ms: float | None = None
        self.model: str | None = None
        self.request: Any = _UNREAD  # the parsed request body, once something needed it


_UNREAD = object()


async def _watch(receive, state: _CallState, task: asyncio.Task | None) -> None:
    """Cancel the call if the client disconnects before the reply is complete."""
    msg = await receive()
    if msg["type"] == "http.disconnect" and not state.done and task is not None:
        state.client_gone = True
        task.cancel()


async def _read_body(receive) -> bytes:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise _ClientGone
    body = msg.get("body", b"")
    if not msg.get("more_body"):
        return body
    parts = [body]
    while msg.get("more_body"):
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _ClientGone
        parts.append(msg.get("body", b""))
    return b"".join(parts)


# -- headers, secrets, attribution ---------------------------------------------------------


_secret_names: dict[bytes, bool] = {}


def is_secret_header(name: bytes) -> bool:
    known = _secret_names.get(name)
    if known is None:
        known = name in SECRET_HEADERS or _SECRETISH.search(name) is not None
        if len(_secret_names) < 4096:  # header names repeat; hostile ones must not grow it
            _secret_names[name] = known
    return known


def _captured(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as stored: lower-cased names, repeated ones joined, secrets left out."""
    out: dict[str, str] = {}
    for k, v in headers:
        name = k.lower()
        if is_secret_header(name):
            continue
        key, value = name.decode("latin-1"), v.decode("latin-1")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _redact_query(query: bytes) -> bytes:
    """The query string without parameters whose name looks like a key or token."""
    return b"&".join(p for p in query.split(b"&") if not _SECRET_PARAM.search(p.split(b"=")[0]))


def _params(query: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query.decode("latin-1")))


def _response_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    out = [(k.lower(), v) for k, v in raw]
    named = {
        t.strip().lower().encode()
        for k, v in out
        if k == b"connection"
        for t in v.decode("latin-1").split(",")
    }
    return [(k, v) for k, v in out if k not in HOP_BY_HOP and k not in named]


def _attribute(x: Exchange, headers: list[tuple[bytes, bytes]]) -> None:
    found = {k: v for k, v in headers if k in SESSION_HEADERS or k == b"x-tracebox-agent"}
    for name in SESSION_HEADERS:
        if found.get(name):
            x.session = found[name].decode("latin-1")[:200]
            break
    if found.get(b"x-tracebox-agent"):
        x.agent = found[b"x-tracebox-agent"].decode("latin-1")[:200]


def _request_doc(body: bytes) -> Any:
    return providers.wire.loads(body, providers.wire.MAX_BODY_BYTES) if body[:1] == b"{" else None


def _model(route: providers.Route, request: Any) -> str | None:
    if route.provider == "gemini":
        return providers.gemini.model_from_path(route.path)
    model = request.get("model") if isinstance(request, dict) else None
    return model if isinstance(model, str) else None


# -- replies of the proxy's own -------------------------------------------------------------


async def _reply_json(send, status: int, doc: Any) -> None:
    body = msgspec.json.encode(doc)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _reply_error(send, status: int, kind: str, message: str) -> None:
    """An error body both SDK families read: Anthropic's ``{"type": "error", "error":
    {...}}`` carries OpenAI's ``error.message`` and ``error.type`` too."""
    await _reply_json(send, status, {"type": "error", "error": {"type": kind, "message": message}})


def _why(what: str, upstream: str) -> str:
    return f"tracebox proxy: upstream {upstream}: {what}"


def _ms(t0: float, t: float | None = None) -> float:
    """Milliseconds from ``t0`` to ``t`` (default: now), both ``perf_counter`` readings."""
    return round(((time.perf_counter() if t is None else t) - t0) * 1000, 3)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id(dt: datetime) -> str:
    """Sortable time + random, like ``coord.context.new_id``."""
    return f"{dt.strftime('%Y%m%dT%H%M%S%fZ')}-{os.urandom(4).hex()}"
