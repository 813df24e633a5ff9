"""CLI: ``tracebox index``, ``tracebox search`` and ``tracebox stats`` — the local index.

The index is a SQLite file (``--db``, env ``TRACEBOX_INDEX``, default
``$XDG_DATA_HOME/tracebox/index.db``); these commands are thin faces over
``tracebox.index`` (docs/search.md).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import click

from ..capture.harnesses import ADAPTERS
from ..index.db import KINDS
from ._common import emit_json, json_option, table

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    help="Index file [env TRACEBOX_INDEX; default $XDG_DATA_HOME/tracebox/index.db]",
)
since_option = click.option(
    "--since", metavar="WHEN", help="Only steps from this time on: 7d, 12h, 2026-11-01, ISO time."
)


def _connect(db_path):
    from ..index import db

    return db.connect(db_path)


# -- index -------------------------------------------------------------------------------


@click.command("index")
@click.option("--local", "local", is_flag=True, help="Index transcripts on this machine.")
@click.option("--bucket", "bucket", is_flag=True, help="Index sessions mirrored to the bucket.")
@click.option(
    "--harness",
    "harnesses",
    multiple=True,
    type=click.Choice(list(ADAPTERS)),
    help="Only this agent's transcripts (repeatable).",
)
@click.option("--rebuild", is_flag=True, help="Delete the index and build it from scratch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no summary.")
@db_option
@json_option
@click.pass_context
def index_cmd(ctx, local, bucket, harnesses, rebuild, quiet, db_path, as_json):
    """Build or refresh the search index (only changed sessions are read again).

    With neither --local nor --bucket: local transcripts, plus the bucket when one is
    configured.
    """
    from ..index import db

    if rebuild:
        db.remove(db_path)
    from ..index import refresh

    with _progress(quiet or as_json) as progress:
        report = refresh.refresh(
            _connect(db_path),
            db_path,
            _project_of(ctx),
            local=local,
            bucket=bucket,
            harnesses=harnesses,
            progress=progress,
        )
    path = str(db_path or db.default_path())
    if as_json:
        return emit_json({"index": path, **report.__dict__})
    for line in report.errors[:20]:
        click.echo(f"tracebox: warning: {line}", err=True)
    if len(report.errors) > 20:
        click.echo(f"tracebox: warning: … and {len(report.errors) - 20} more", err=True)
    if not quiet:
        for line in report.skipped:
            click.echo(f"tracebox: note: skipped {line}", err=True)
        seen = report.added + report.updated + report.unchanged + report.failed
        click.echo(
            f"{seen} session sources: {report.added} added, {report.updated} updated, "
            f"{report.unchanged} unchanged, {report.failed} failed; "
            f"{report.steps:,} steps written to {path}"
        )


def _project_of(ctx):
    """Opens the configured project when first called (``index.refresh``'s ``project``)."""
    from ._common import open_project

    return lambda: open_project(ctx, "index", beat=False)


refresh_option = click.option(
    "--refresh/--no-refresh",
    default=None,
    help="Re-index changed sessions first [default: when the index is over a minute old].",
)


@contextmanager
def _progress(hidden: bool):
    """A progress callback drawing a rich bar on stderr when it is a terminal."""
    if hidden or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bars = Progress(
        TextColumn("indexing {task.description:<6}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, int] = {}

    def update(done: int, total: int, what: str) -> None:
        if what not in tasks:
            tasks[what] = bars.add_task(what, total=total)
        bars.update(tasks[what], completed=done, total=total)

    with bars:
        yield update


# -- search ------------------------------------------------------------------------------


@click.command("search")
@click.argument("query")
@click.option("--harness", help="Only sessions of this agent (claude-code, codex, ...).")
@click.option("--agent", help="Only sessions with this agent name (e.g. a subagent type).")
@click.option("--model", help="Only steps/sessions whose model contains this text.")
@since_option
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind of text.")
@click.option("--limit", "-n", type=click.IntRange(1, 10_000), default=20, show_default=True)
@refresh_option
@db_option
@json_option
@click.pass_context
def search_cmd(ctx, query, harness, agent, model, since, kind, limit, refresh, db_path, as_json):
    """Full-text search (BM25-ranked) over every indexed session.

    \b
    QUERY is FTS5 syntax: words (all must match), "a phrase", OR, NOT, prefix*,
    NEAR(a b). Text that is not valid syntax is searched as plain words.
    \b
    tracebox search '"connection refused"' --kind tool_result --since 7d
    """
    from ..index import db, search
    from ..index.refresh import fresh_connection

    color = not as_json and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    marks = ("\x1b[1m", "\x1b[22m") if color else ("[", "]")
    result = search.search(
        fresh_connection(db_path, refresh, _project_of(ctx)),
        query,
        harness=harness,
        agent=agent,
        model=model,
        since=db.since_bound(since) if since else None,
        kind=kind,
        limit=limit,
        marks=marks,
    )
    if result.window:
        click.echo(f"tracebox: note: {search.window_note(result.window)}", err=True)
    hits = result.hits
    if as_json:
        return emit_json(hits)
    if not hits:
        click.echo("(no matches)")
        return
    for h in hits:
        where = f"{h.session_id}#{h.step}"
        parent = f"  (subagent of {h.parent_session})" if h.parent_session else ""
        when = (h.timestamp or "")[:19].replace("T", " ")
        head = "  ".join(filter(None, (where, h.kind, h.harness, h.model, when)))
        click.echo(click.style(head, fg="cyan") if color else head, nl=False)
        click.echo(parent)
        click.echo(f"    {h.snippet}")
        click.echo(click.style(f"    {h.origin}", dim=True) if color else f"    {h.origin}")


# -- stats -------------------------------------------------------------------------------


@click.command("stats")
@click.option("--by", type=click.Choice(["model", "agent", "harness", "day"]), help="Group rows.")
@since_option
@refresh_option
@db_option
@json_option
@click.pass_context
def stats_cmd(ctx, by, since, refresh, db_path, as_json):
    """Sessions, steps, tool calls, errors, tokens and cost (from the price table)."""
    from ..index import db, stats
    from ..index.refresh import fresh_connection

    result = stats.stats(
        fresh_connection(db_path, refresh, _project_of(ctx)),
        by=by,
        since=db.since_bound(since) if since else None,
    )
    if as_json:
        return emit_json(result)
    if not result.total.sessions:
        click.echo("(nothing indexed; run `tracebox index`)")
        return
    rows = [*result.rows, result.total] if by else [result.total]
    cells = [_stats_cells(r, "total" if r is result.total else r.key) for r in rows]
    cols = [
        ("key", by or ""),
        ("sessions", "sessions"),
        ("subagents", "subagents"),
        ("steps", "steps"),
        ("tool_calls", "tool calls"),
        ("tool_errors", "tool errors"),
        ("api_errors", "api errors"),
        ("input", "input"),
        ("output", "output"),
        ("cache_read", "cache read"),
        ("cache_write", "cache write"),
        ("cost", "cost"),
    ]
    table(cells, cols)
    unpriced = sorted({m for r in rows for m in r.unpriced_models})
    if unpriced:
        click.echo(
            f"cost unknown for {', '.join(unpriced)} (not in the price table); "
            "'≥' marks a partial sum"
        )


def _stats_cells(r, key) -> dict:
    if r.cost is None:
        cost = "unknown"
    else:
        amount = f"${r.cost:,.2f}" if r.cost >= 1 else f"${r.cost:.4f}"
        cost = ("" if r.cost_complete else "≥") + amount
    u = r.usage
    return {
        "key": key if key is not None else "-",
        "sessions": f"{r.sessions:,}",
        "subagents": f"{r.subagents:,}",
        "steps": f"{r.steps:,}",
        "tool_calls": f"{r.tool_calls:,}",
        "tool_errors": f"{r.tool_errors:,}",
        "api_errors": f"{r.api_errors:,}",
        "input": f"{u.input:,}",
        "output": f"{u.output:,}",
        "cache_read": f"{u.cache_read:,}",
        "cache_write": f"{u.cache_write:,}",
        "cost": cost,
    }
