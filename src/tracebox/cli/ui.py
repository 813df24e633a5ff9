"""CLI: ``tracebox ui`` — the bucket's runs, sessions, observations and capsules in a browser."""

from __future__ import annotations

import click

from ._common import open_project

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def http_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token a server listening on ``host`` requires (`tracebox ui`, `tracebox mcp
    --http`): ``token``, else off loopback a random one — then ``True``: it was
    generated, so it must be printed to be usable."""
    if token or host in _LOOPBACK:
        return token, False
    import secrets

    return secrets.token_urlsafe(18), True


def url_host(host: str) -> str:
    """``host`` as written in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


@click.command("ui")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8788, show_default=True, help="0: a free port."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Listen address; anything but loopback needs a token.",
)
@click.option(
    "--token",
    envvar="TRACEBOX_UI_TOKEN",
    help="Required to open the UI (default off loopback: a random one, printed).",
)
@click.option(
    "--index",
    "index_path",
    type=click.Path(dir_okay=False),
    envvar="TRACEBOX_INDEX",
    help="The SQLite index [default: $XDG_DATA_HOME/tracebox/index.db].",
)
@click.pass_context
def ui_cmd(ctx, port, host, token, index_path):
    """Serve a read-only web UI of this project's bucket: the run timeline (live), every
    session step by step, search, stats, observations, harness runs and capsules.

    Bound to 127.0.0.1 unless --host is given; then a token is required. No page makes a
    request outside the UI's own origin (no CDN, works offline).
    """
    from ..ui.app import serve

    token, _ = http_token(host, token)
    p = open_project(ctx, "ui", beat=False)

    def ready(actual_port: int) -> None:
        url = f"http://{url_host(host)}:{actual_port}/" + (f"?token={token}" if token else "")
        click.echo(f"tracebox ui: {url}  (project {p.name}; Ctrl-C to stop)", err=True)

    serve(p, host=host, port=port, index_path=index_path, token=token, ready=ready)
