"""The MCP server: the SDK's low-level ``Server`` over ``tools`` and ``resources``, and
its two transports.

Results: a tool's text content is exactly what the CLI's ``--json`` prints for the same
operation (``cli._common.to_json``); when that JSON is an object it is also the
``structuredContent``. Errors: a ``TraceboxError`` becomes a tool result with
``isError`` whose text is the CLI's one line (``tracebox: error: …``) and whose
structured content is ``{"error": {kind, exit_code, message}}`` — the exception class
and the exit status the CLI would have used (1 refused/failed, 2 bad input). Anything
else is a bug: its traceback goes to the server's stderr and the call fails with
``kind: "InternalError"``.

Each call runs in a worker thread with the one ``Project`` the server opened, so a
slow call never holds up the others; the tools that may wait long (``wait_for``,
``claim`` with ``wait``) have a pool of their own, and give up their wait when the
client cancels the call.

Transports: ``serve_stdio`` (stdout carries only the protocol; the SDK points fd 1 at
stderr while serving) and ``serve_http`` — streamable HTTP at ``/mcp``, bound to
127.0.0.1 by the CLI; with a token, every request must carry ``Authorization: Bearer
<token>``.
"""

from __future__ import annotations

import hmac
import json
import logging
import sys
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from .. import __version__
from ..errors import NotFound, TraceboxError, UsageError, one_line
from .resources import resources
from .tools import TOOLS, Reply, State, Tool, input_schemas

log = logging.getLogger("tracebox.mcp")

RESOURCE_NOT_FOUND = -32002  # the MCP spec's code for an unknown or absent resource
WAITERS = 256  # concurrent waiting calls (wait_for, claim --wait) per server


def error_result(kind: str, exit_code: int, message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=f"tracebox: error: {message}")],
        structured_content={"error": {"kind": kind, "exit_code": exit_code, "message": message}},
        is_error=True,
    )


def ok_result(value) -> types.CallToolResult:
    from ..cli._common import to_json

    notes = []
    if isinstance(value, Reply):
        value, notes = value.value, value.notes
    text = to_json(value)
    return types.CallToolResult(
        content=[types.TextContent(text=text)]
        + [types.TextContent(text=f"tracebox: note: {n}") for n in notes],
        # only an object is structured content: nothing else is parsed back
        structured_content=json.loads(text) if text.startswith("{") else None,
    )


def _instructions(state: State) -> str:
    p = state.project
    return (
        f"tracebox coordination: you act as agent {p.agent!r} in project {p.name!r}. "
        "Before working on a step, `claim` it (a lease); `renew` it while you work; finish "
        "with `complete` and a handoff note (`to`, `next_action`) or give it back with "
        "`release`. `wait_for` the steps you depend on; read `handoff` to see what the "
        "last agent left. Shared state: `memory_get`/`memory_set` (compare-and-swap with "
        "if_version), `send`/`inbox`, `artifact_upload`/`artifact_list`. Read "
        "`observations` (or the tracebox://observations resource) before starting: what "
        "earlier sessions ran into. Errors read like the CLI's: `tracebox: error: …`."
    )


def build_server(state: State) -> Server:
    """The MCP server for ``state`` (its project is opened once, by the caller)."""
    schemas = input_schemas()
    listed = [
        types.Tool(
            name=t.name,
            description=t.description,
            input_schema=schemas[t.name],
            annotations=types.ToolAnnotations(read_only_hint=t.read_only, open_world_hint=False),
        )
        for t in TOOLS.values()
    ]
    served = {r.uri: r for r in resources(state)}
    pools: dict[str, anyio.CapacityLimiter] = {}
    state.poll = anyio.from_thread.check_cancelled

    def pool(t: Tool) -> anyio.CapacityLimiter | None:
        if not t.waits:
            return None  # anyio's default pool
        if "waits" not in pools:  # created in the event loop that uses it
            pools["waits"] = anyio.CapacityLimiter(WAITERS)
        return pools["waits"]

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        t = TOOLS.get(params.name)
        if t is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        try:
            args = t.parse(params.arguments)
            value = await anyio.to_thread.run_sync(_call, state, t.fn, args, limiter=pool(t))
        except TraceboxError as e:
            return error_result(type(e).__name__, e.exit_code, one_line(e))
        except Exception as e:
            log.exception("tool %s failed", t.name)
            return error_result("InternalError", 1, f"{t.name} failed (a bug): {one_line(e)}")
        return ok_result(value)

    async def list_resources(ctx, params) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=r.uri, name=r.name, mime_type=r.mime_type, description=r.description
                )
                for r in served.values()
            ]
        )

    async def read_resource(ctx, params: types.ReadResourceRequestParams):
        r = served.get(str(params.uri))
        if r is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"no resource {params.uri}")
        try:
            text = await anyio.to_thread.run_sync(_call, state, r.read)
        except TraceboxError as e:
            code = (
                RESOURCE_NOT_FOUND
                if isinstance(e, NotFound)
                else types.INVALID_PARAMS
                if isinstance(e, UsageError)
                else types.INTERNAL_ERROR
            )
            data = {"kind": type(e).__name__, "exit_code": e.exit_code}
            raise MCPError(code, f"tracebox: error: {one_line(e)}", data) from None
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=r.uri, mime_type=r.mime_type, text=text)]
        )

    return Server(
        "tracebox",
        version=__version__,
        title="tracebox",
        instructions=_instructions(state),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def _call(state: State, fn: Callable, *args):
    """``fn(state, *args)`` (a tool or a resource read), then the CLI's ``finish``."""
    from ..cli._common import finish

    try:
        return fn(state, *args)
    finally:
        finish(state.project)  # background writes done; warnings to stderr


# -- transports ------------------------------------------------------------------------


def serve_stdio(state: State) -> None:
    """Serve one client over stdin/stdout until it closes stdin."""
    from mcp.server.stdio import stdio_server

    server = build_server(state)

    async def run() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(run)


class BearerToken:
    """ASGI middleware: refuse any request without ``Authorization: Bearer <token>``."""

    def __init__(self, app, token: str):
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = b'{"error": "a token is required: Authorization: Bearer <token>"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve_http(
    state: State,
    *,
    host: str = "127.0.0.1",
    port: int = 8790,
    token: str | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted."""
    import uvicorn

    from ..capture.proxy.server import bind

    app = build_server(state).streamable_http_app(host=host)
    if token:
        app.add_middleware(BearerToken, token=token)
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    if ready:
        ready(sock.getsockname()[1])
    sys.stderr.flush()
    uvicorn.Server(config).run(sockets=[sock])
