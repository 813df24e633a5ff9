"""CLI: ``tracebox warehouse sync|status`` and ``tracebox sql`` — the Parquet warehouse.

Thin faces over ``tracebox.warehouse`` (docs/warehouse.md): ``sync`` compacts the bucket
into ``warehouse/<table>/date=…/`` incrementally, ``status`` says what it holds, and
``sql`` runs DuckDB over it.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from ..text import size as human_size
from ._common import GROUP_SETTINGS, emit_json, json_option, open_project, table

DEFAULT_MAX_ROWS = 1000


@click.group("warehouse", context_settings=GROUP_SETTINGS)
def warehouse_group():
    """The bucket as Parquet tables (sessions, steps, tool_calls, calls, events,
    harness_results, observations) that DuckDB, Spark, Trino or Snowflake read.

    \b
    tracebox warehouse sync          # incremental: only what changed is compacted
    tracebox warehouse status        # tables, files, rows, date range
    tracebox sql "SELECT * FROM cost_per_model"
    """


@warehouse_group.command("sync")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no summary.")
@json_option
@click.pass_context
def sync_cmd(ctx, quiet, as_json):
    """Compact new and changed sessions, steps, tool calls, proxy calls, events,
    harness results and observations into partitioned Parquet in the bucket.

    A source already compacted and unchanged is not read again; a session that grew
    replaces its earlier rows; two syncs at once neither corrupt nor duplicate.
    """
    from ..warehouse.sync import sync

    p = open_project(ctx, "warehouse sync")
    with _progress(quiet or as_json) as progress:
        report = sync(p, progress=progress)
    if as_json:
        return emit_json(report.__dict__)
    for line in report.errors[:20]:
        click.echo(f"tracebox: warning: {line}", err=True)
    if quiet:
        return
    read = report.new + report.changed + report.appended
    click.echo(
        f"{read} source(s) compacted ({report.new} new, {report.changed} changed, "
        f"{report.appended} appended), {report.removed} removed, {report.unchanged} "
        f"unchanged, {report.failed} failed"
    )
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(report.rows.items()) if n) or "no rows"
    click.echo(
        f"{rows}; {report.files_written} file(s) written ({human_size(report.bytes_written)}), "
        f"{report.files_removed} replaced, in {report.seconds:.1f} s"
    )


@warehouse_group.command("status")
@json_option
@click.pass_context
def status_cmd(ctx, as_json):
    """What the warehouse holds: per table files, rows, size and date range."""
    from ..warehouse.sync import status

    doc = status(open_project(ctx, "warehouse status"))
    if as_json:
        return emit_json(doc)
    if not doc["exists"]:
        click.echo("(no warehouse yet; run `tracebox warehouse sync`)")
        return
    rows = [
        {"table": t, **v, "bytes": human_size(v["bytes"]), "rows": f"{v['rows']:,}"}
        for t, v in doc["tables"].items()
    ]
    table(
        rows,
        [
            ("table", "table"),
            ("files", "files"),
            ("rows", "rows"),
            ("bytes", "size"),
            ("partitions", "days"),
            ("first", "first"),
            ("last", "last"),
        ],
    )
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(doc["sources"].items()))
    click.echo(f"updated {doc['updated']} ({doc['commits']} commits); sources: {kinds or '-'}")


@click.command("sql")
@click.argument("query", required=False, metavar="SQL")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (a header row, then the rows).")
@click.option(
    "--max-rows",
    type=click.IntRange(0),
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Print at most this many rows (0: all).",
)
@click.option("--views", "list_views", is_flag=True, help="List the tables and views, then exit.")
@json_option
@click.pass_context
def sql_cmd(ctx, query, as_csv, max_rows, list_views, as_json):
    """Run SQL (DuckDB) over the Parquet warehouse of the current bucket.

    SQL is one statement, or '-' to read it from stdin. Tables: sessions, steps,
    tool_calls, calls, events, harness_results, observations (each with a `date`
    partition column); views: cost_per_model, failure_patterns, harness_convergence,
    model_prices (`--views` lists them with their columns).

    \b
    tracebox sql "SELECT * FROM cost_per_model"
    tracebox sql "SELECT date, count(*) FROM steps GROUP BY date ORDER BY date" --csv
    tracebox sql "SELECT * FROM failure_patterns LIMIT 20" --json
    """
    from ..errors import UsageError

    if as_csv and as_json:
        raise UsageError("give --csv or --json, not both")
    if list_views:
        return _views(as_json)
    if query is None:
        raise UsageError("give a SQL statement (or --views); see `tracebox sql --help`")
    if query == "-":
        query = sys.stdin.read()
    from ..warehouse.query import query as run

    result = run(open_project(ctx, "sql"), query, max_rows=max_rows or None)
    if as_json:
        emit_json([dict(zip(result.columns, r, strict=True)) for r in result.rows])
    elif as_csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        if result.columns:
            w.writerow(result.columns)
        w.writerows([("" if v is None else v) for v in r] for r in result.rows)
    elif result.columns:
        rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
        table(rows, [(c, c) for c in result.columns], empty="(no rows)")
        if rows:
            click.echo(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})")
    else:
        click.echo("ok")
    if result.truncated:
        click.echo(
            f"tracebox: note: only the first {max_rows:,} rows are shown (--max-rows)", err=True
        )


def _views(as_json: bool) -> None:
    from ..warehouse.query import catalog

    items = catalog()
    if as_json:
        return emit_json(items)
    table(
        [{**v, "columns": len(v["columns"])} for v in items],
        [("name", "name"), ("kind", "kind"), ("columns", "columns"), ("description", "what")],
    )


@contextmanager
def _progress(hidden: bool):
    """A ``progress(done, total)`` callback drawing a bar on stderr when it is a terminal."""
    if hidden or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("compacting sources"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("sources", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)
