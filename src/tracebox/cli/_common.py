"""Shared CLI plumbing: lazy command loading, opening the project, printing results."""

from __future__ import annotations

import contextlib
import importlib
import sys

import click

GROUP_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used.

    ``lazy_commands`` maps a section title to ``{name: (module, attribute, short help)}``;
    ``--help`` prints the stored short help by section without importing any command.
    """

    def __init__(self, *a, lazy_commands: dict | None = None, **kw):
        super().__init__(*a, **kw)
        self.sections = lazy_commands or {}
        self.lazy_commands = {n: v for sec in self.sections.values() for n, v in sec.items()}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            mod, attr, _ = self.lazy_commands[name]
            return getattr(importlib.import_module(f"tracebox.cli.{mod}"), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        for title, cmds in self.sections.items():
            with formatter.section(title):
                formatter.write_dl([(n, h) for n, (_, _, h) in cmds.items()])


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def open_project(ctx: click.Context, command: str | None = None, *, beat: bool = True):
    """The project named by global options/env/config; heartbeats on every command
    (``beat=False`` for commands that write the heartbeat themselves)."""
    from ..project import open_project as _open

    o = ctx.find_root().obj or {}
    p = _open(
        o.get("bucket"),
        o.get("project"),
        o.get("agent"),
        **{k: o[k] for k in ("endpoint", "region", "profile") if o.get(k)},
    )
    if beat:
        p.beat_in_background(command or ctx.info_name or "")
    ctx.call_on_close(lambda: finish(p))
    return p


def finish(p) -> None:
    p.ctx.flush()
    for w in p.warnings:
        click.echo(f"tracebox: warning: {w}", err=True)
    p.warnings.clear()


def to_json(obj) -> str:
    """The text ``--json`` prints for ``obj`` (also what `tracebox mcp` tools return)."""
    import msgspec

    return msgspec.json.format(msgspec.json.encode(obj), indent=2).decode()


def emit_json(obj) -> None:
    sys.stdout.write(to_json(obj) + "\n")


def table(rows: list[dict], cols: list[tuple[str, str]], empty: str = "(none)") -> None:
    """Print rows as aligned columns; ``cols`` is [(key, header)]."""
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(cols)]
    click.echo(
        "  ".join(h.upper().ljust(w) for (_, h), w in zip(cols, widths, strict=True)).rstrip()
    )
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def short_time(ts: str | None) -> str:
    """``2026-11-22T04:15:00.123456Z`` → ``04:15:00``; full date if not today."""
    if not ts:
        return "-"
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    return ts[11:19] if ts.startswith(today) else ts[:19].replace("T", " ")


PROGRESS_MIN_BYTES = 8 << 20  # smaller transfers finish before a bar would help


@contextlib.contextmanager
def byte_progress(label: str, total: int | None = None):
    """Yield a ``progress(n)`` callback drawing a transfer bar on stderr, or ``None`` when
    stderr is not a terminal or the transfer is small (``total`` known and below 8 MiB)."""
    if not sys.stderr.isatty() or (total is not None and total < PROGRESS_MIN_BYTES):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
