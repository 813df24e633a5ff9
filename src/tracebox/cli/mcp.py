"""CLI: ``tracebox mcp`` — coordination as MCP tools, over stdio or streamable HTTP."""

from __future__ import annotations

import click

from ._common import open_project
from .search import db_option
from .ui import http_token, url_host


@click.command("mcp")
@click.option("--http", "http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="With --http: listen address; anything but loopback needs a token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8790,
    show_default=True,
    help="With --http: the port (0: a free one).",
)
@click.option(
    "--token",
    envvar="TRACEBOX_MCP_TOKEN",
    help="With --http: require `Authorization: Bearer TOKEN` (default off loopback: a "
    "random one, printed) [env TRACEBOX_MCP_TOKEN]",
)
@click.option(
    "--observations",
    "observations",
    type=click.Path(file_okay=False),
    help="Folder whose observations.{md,jsonl} (from `tracebox observe --out`) are the "
    "current ones [default: the newest harness run in the bucket].",
)
@db_option
@click.pass_context
def mcp_cmd(ctx, http, host, port, token, observations, db_path):
    """Serve this project's coordination as MCP tools, for agents that speak the Model
    Context Protocol: claim, renew, release, complete, reopen, handoff, steps, agents,
    wait_for, memory_get/set/list, send, inbox, artifact_upload/list/download, search
    and observations — the same operations, JSON and errors as the CLI — plus the
    resources tracebox://inbox and tracebox://observations.

    One server acts as one agent (--agent, as for every command). stdio by default: an
    MCP client starts `tracebox mcp` itself; stdout carries only the protocol, logs go
    to stderr. With --http: streamable HTTP at http://127.0.0.1:PORT/mcp; a --host other
    than loopback requires a token.

    \b
    Claude Code:  claude mcp add tracebox -- tracebox --agent alice mcp
    HTTP:         tracebox --agent alice mcp --http --port 8790
    """
    from click.core import ParameterSource

    from ..mcp.tools import State

    given = [
        f"--{n}"
        for n in ("host", "port", "token")
        if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE
    ]
    if given and not http:
        raise click.UsageError(f"{', '.join(given)}: only with --http")
    try:
        from ..mcp.server import serve_http, serve_stdio
    except ImportError as e:
        if (e.name or "").partition(".")[0] not in ("mcp", "mcp_types"):
            raise
        from ..errors import TraceboxError

        raise TraceboxError(
            "tracebox mcp needs the MCP SDK 2.x: pip install 'tracebox[mcp]'"
        ) from None
    p = open_project(ctx, "mcp")
    p.ctx.guard()  # a missing project or a newer format: refuse now, not on every call
    state = State(p, index_path=db_path, observations=observations)
    if not http:
        return serve_stdio(state)

    token, generated = http_token(host, token)

    def ready(actual_port: int) -> None:
        # a token the user chose is never echoed; a generated one must be, to be usable
        auth = f"  (send: Authorization: Bearer {token})" if generated else ""
        click.echo(
            f"tracebox mcp: http://{url_host(host)}:{actual_port}/mcp{auth}  "
            f"(agent {p.agent}, project {p.name}; Ctrl-C to stop)",
            err=True,
        )

    serve_http(state, host=host, port=port, token=token, ready=ready)
