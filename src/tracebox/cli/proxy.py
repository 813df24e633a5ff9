"""CLI: ``tracebox proxy`` (run the capture proxy), ``proxy status``, and ``tracebox tail``."""

from __future__ import annotations

import click

from ._common import emit_json, json_option, short_time, table

_URL_HELP = "The proxy's URL [default: the running one, from its state file]"


@click.group("proxy", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="PROVIDER=URL",
    help="Base URL of anthropic, openai, ollama or gemini (repeatable) "
    "[env TRACEBOX_UPSTREAM_<PROVIDER>]",
)
@click.option("--connect-timeout", default=10.0, show_default=True, help="Upstream connect, s.")
@click.option("--read-timeout", default=600.0, show_default=True, help="Upstream silence, s.")
@click.option(
    "--keep-tracebox-headers",
    is_flag=True,
    help="Forward x-tracebox-* headers upstream (stripped by default).",
)
@click.pass_context
def proxy_group(ctx, host, port, upstreams, connect_timeout, read_timeout, keep_tracebox_headers):
    """Run the capture proxy: point agents' base URLs at it and every model call is
    forwarded unchanged and recorded.

    \b
    ANTHROPIC_BASE_URL=http://127.0.0.1:8787        OPENAI_BASE_URL=http://127.0.0.1:8787/v1
    OLLAMA_HOST=http://127.0.0.1:8787               (or prefix /anthropic, /openai, ...)
    Live feed: tracebox tail      Health and spool: tracebox proxy status
    """
    if ctx.invoked_subcommand is not None:
        return
    import os

    from ..capture.proxy import providers, server
    from ..capture.proxy.app import ProxyApp

    bases = providers.upstreams_from(os.environ, upstreams)
    sink, note = _sink(ctx)
    app = ProxyApp(
        bases,
        sink,
        attributor=_attributor(),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        strip_tracebox_headers=not keep_tracebox_headers,
    )
    sock = server.bind(host, port)
    click.echo(f"tracebox proxy on {server.url_of(sock)} ({note})", err=True)
    try:
        server.serve(app, sock)
    finally:
        close = getattr(sink, "close", None)
        if callable(close):
            close()


def _sink(ctx):
    """The spool when it is installed (shipping to the project's bucket when one is
    configured), else an in-memory sink; and a note saying which."""
    try:
        from ..capture.proxy.spool import Spool
    except ImportError:
        from ..capture.proxy.app import MemorySink

        return MemorySink(), "captures kept in memory only: no spool installed"
    from ..errors import ConfigError

    try:
        from ._common import open_project

        project = open_project(ctx, beat=False)
    except ConfigError:
        spool = Spool()
        return spool, f"no bucket configured: captures stay in {spool.root}"
    spool = Spool(project=project, ship="process")  # shipping never slows the request path
    return spool, f"spool {spool.root} → {project.store.url}"


def _attributor():
    try:
        from ..capture.proxy.store import Attributor
    except ImportError:
        return None
    return Attributor()


def _find_url(url: str | None) -> str:
    from ..capture.proxy import server
    from ..errors import TraceboxError

    if url:
        return url.rstrip("/")
    record = server.find_running()
    if record is None:
        raise TraceboxError(
            "no running tracebox proxy found: start one with `tracebox proxy`, or pass --url"
        )
    return record["url"]


@proxy_group.command("status")
@click.option("--url", help=_URL_HELP)
@json_option
def proxy_status(url, as_json):
    """Upstream health, calls in flight, spool depth and feed subscribers."""
    from ..capture.proxy.server import get_json

    base = _find_url(url)
    doc = get_json(base + "/_tracebox/status")
    if as_json:
        return emit_json(doc)
    click.echo(
        f"proxy {base}  pid {doc.get('pid')}  since {short_time(doc.get('started'))}  "
        f"in flight {doc.get('in_flight')}  calls {doc.get('exchanges')}"
    )
    sink = doc.get("sink") or {}
    click.echo("sink: " + ", ".join(_pair(k, v) for k, v in sink.items() if v is not None))
    feed = doc.get("feed") or {}
    click.echo("feed: " + ", ".join(f"{k} {v}" for k, v in feed.items()))
    rows = [
        {
            "name": name,
            "url": h.get("url"),
            "calls": h.get("calls"),
            "errors": h.get("errors"),
            "last_ok": short_time(h.get("last_ok")),
            "last_error": h.get("last_error"),
        }
        for name, h in (doc.get("upstreams") or {}).items()
    ]
    cols = [("name", "upstream"), ("url", "url"), ("calls", "calls"), ("errors", "errors")]
    table(rows, cols + [("last_ok", "last ok"), ("last_error", "last error")])


def _pair(key: str, value) -> str:
    if isinstance(value, dict):
        return f"{key} " + " ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return f"{key} {value}"


@click.command("tail")
@click.option("--session", help="Only this session's calls.")
@click.option("--agent", help="Only this agent's calls.")
@click.option("--url", help=_URL_HELP)
@json_option
def tail_cmd(session, agent, url, as_json):
    """Follow the proxy's live feed: each call's start, first token, tool calls and end.

    With --json, one event per line (JSON Lines)."""
    import sys

    import msgspec

    from ..stream.feed import proxy_feed

    for event in proxy_feed(_find_url(url), session=session, agent=agent, timeout=3600):
        if as_json:
            sys.stdout.write(msgspec.json.encode(event).decode() + "\n")
        else:
            sys.stdout.write(format_event(event) + "\n")
        sys.stdout.flush()


def format_event(e: dict) -> str:
    """One human line: time, agent, session (short), provider, model, event, tokens, status."""
    kind = str(e.get("type", "?")).removeprefix("call.")
    detail = ""
    if kind in ("end", "error"):
        u = e.get("usage") or {}
        detail = (
            f"in {u.get('input', 0)} out {u.get('output', 0)} "
            f"cache {u.get('cache_read', 0)}/{u.get('cache_write', 0)}  "
            f"status {e.get('status') or '-'}  {_ms(e.get('total_ms'))}"
        )
        if e.get("error"):
            detail += f"  {e['error']}"
    elif kind == "first_token":
        detail = _ms(e.get("first_token_ms"))
    elif kind == "tool_call":
        detail = f"{e.get('tool')} {e.get('tool_call_id') or ''}".rstrip()
    elif kind == "feed.dropped":
        detail = f"{e.get('count')} events missed (too slow)"
    session = str(e.get("session") or "-")
    return "  ".join(
        [
            str(e.get("time") or "")[11:23] or "-",
            str(e.get("agent") or "-"),
            session[:8],
            str(e.get("provider") or "-"),
            str(e.get("model") or "-"),
            kind,
            detail,
        ]
    ).rstrip()


def _ms(value) -> str:
    return f"{value:.0f} ms" if isinstance(value, int | float) else "-"
