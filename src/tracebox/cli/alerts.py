"""CLI: ``tracebox alerts run|check|flink-sql`` — live alert rules on the event stream."""

from __future__ import annotations

import click

from ._common import GROUP_SETTINGS, emit_json, json_option, table


@click.group("alerts", context_settings=GROUP_SETTINGS)
def alerts_group():
    """Live alert rules, as data: evaluate them on the proxy's live feed, the bucket's
    event log or Kafka, firing to stdout, a webhook, or a stop of the agent; or print
    them as Flink SQL. docs/alerts.md has the rule language.

    \b
    tracebox alerts check RULES.toml
    tracebox alerts run RULES.toml                     # the running proxy's live feed
    tracebox alerts run RULES.toml --log --json        # the bucket's event log
    tracebox alerts run RULES.toml --kafka 127.0.0.1:9092
    tracebox alerts run RULES.toml --file events.jsonl # replay a recorded feed
    tracebox alerts flink-sql RULES.toml --source-path events.jsonl > alerts.sql
    """


@alerts_group.command("check")
@click.argument("rules_file", metavar="RULES.toml")
@json_option
def check_cmd(rules_file, as_json):
    """Validate RULES.toml and show each rule (exit 2 on the first problem)."""
    from ..stream import alerts

    rules = alerts.load(rules_file)
    _warn(alerts.warnings(rules))
    if as_json:
        return emit_json([r.to_dict() for r in rules])
    rows = [
        {
            "name": r.name,
            "where": ", ".join(_pred(p) for p in r.where) or "any event",
            "per": ", ".join(f.label for f in r.group_by) or "-",
            "window": f"{r.window:g} s" if r.window else None,
            "having": r.having,
            "then": ", ".join(r.then),
        }
        for r in rules
    ]
    cols = [("name", "rule"), ("where", "where"), ("per", "group by"), ("window", "window")]
    table(rows, cols + [("having", "having"), ("then", "then")])
    click.echo(f"{len(rules)} rule(s) OK", err=True)


def _warn(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"tracebox alerts: warning: {line}", err=True)


def _pred(p) -> str:
    if p.op == "eq":
        return f"{p.field.label}={p.value}"
    if p.op == "in":
        return f"{p.field.label} in {list(p.value)}"
    return f"{p.field.label} {p.op} {p.value}"


@alerts_group.command("run")
@click.argument("rules_file", metavar="RULES.toml")
@click.option(
    "--proxy", "proxy_url", metavar="URL", help="A proxy's live feed [default: the running one]."
)
@click.option("--kafka", "bootstrap", metavar="HOST:PORT", help="Consume the Kafka topics.")
@click.option(
    "--topic-prefix", default="tracebox", show_default=True, help="With --kafka: topic prefix."
)
@click.option("--from-start", is_flag=True, help="With --kafka: from the oldest kept events.")
@click.option("--log", "use_log", is_flag=True, help="Follow the bucket's event log.")
@click.option("--since", metavar="DURATION", help="With --log: start this long ago (e.g. 10m).")
@click.option(
    "--file",
    "replay",
    metavar="EVENTS.jsonl",
    help="Replay recorded events (tracebox tail --json / log --json), in event time.",
)
@click.option("--session", help="With --proxy: only this session's events.")
@click.option("--once", is_flag=True, help="Stop at the first firing (exit 1 if none fired).")
@click.option("--until", metavar="DURATION", help="Stop after this long (e.g. 10m).")
@click.option("--webhook-timeout", default=5.0, show_default=True, help="Seconds per webhook POST.")
@json_option
@click.pass_context
def run_cmd(
    ctx,
    rules_file,
    proxy_url,
    bootstrap,
    topic_prefix,
    from_start,
    use_log,
    since,
    replay,
    session,
    once,
    until,
    webhook_timeout,
    as_json,
):
    """Evaluate RULES.toml on a live source; one line per firing (JSON Lines with --json).

    Actions: stdout prints; a webhook URL gets the firing as a JSON POST (scrubbed;
    failures are warnings); stop asks the harness running the session to stop it (a
    stop request in the bucket: docs/alerts.md)."""
    import sys

    from ..config import parse_duration
    from ..errors import UsageError
    from ..stream import alerts

    rules = alerts.load(rules_file)
    _warn(alerts.warnings(rules))
    chosen = [n for n, v in (("--proxy", proxy_url), ("--kafka", bootstrap)) if v]
    chosen += [n for n, v in (("--log", use_log), ("--file", replay)) if v]
    if len(chosen) > 1:
        raise UsageError(f"choose one source, not {' and '.join(chosen)}")
    limit = parse_duration(until, what="--until") if until else None
    project = None
    if use_log or any("stop" in r.then for r in rules):
        from ._common import open_project

        project = open_project(ctx, "alerts run", beat=False)
    if since and not use_log:
        raise UsageError("--since goes with --log")
    if use_log:
        from datetime import timedelta

        from ..coord.context import now

        start = None
        if since:
            start = now() - timedelta(seconds=parse_duration(since, what="--since"))
        events = alerts.log_events(project.ctx, since=start)
    elif bootstrap:
        events = alerts.kafka_events(bootstrap, topic_prefix, from_start=from_start)
    elif replay:
        events = alerts.file_events(replay)
    else:
        from .proxy import _find_url

        events = alerts.proxy_events(_find_url(proxy_url), session=session)

    def out(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def warn(msg: str) -> None:
        click.echo(f"tracebox: warning: {msg}", err=True)

    actions = alerts.Actions(
        out=out,
        warn=warn,
        as_json=as_json,
        ctx=project.ctx if project is not None else None,
        timeout=webhook_timeout,
    )
    source = chosen[0] if chosen else "--proxy"
    click.echo(f"tracebox alerts: {len(rules)} rule(s) on {source}", err=True)
    try:
        fired = alerts.run(rules, events, actions, replay=bool(replay), until=limit, once=once)
    finally:
        actions.close()
    if once and not fired:
        click.echo("tracebox: no rule fired", err=True)
        ctx.exit(1)


@alerts_group.command("flink-sql")
@click.argument("rules_file", metavar="RULES.toml")
@click.option(
    "--source-path",
    default="events.jsonl",
    show_default=True,
    help="The events the source table reads (a file or folder of JSON Lines).",
)
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write to this file.")
def flink_sql_cmd(rules_file, source_path, out):
    """Print RULES.toml as Flink SQL: a filesystem JSON source with a watermark, a print
    sink, and one INSERT per rule (MATCH_RECOGNIZE, SESSION windows). Run it with
    Flink's SQL client (sql-client.sh -f FILE) or a PyFlink TableEnvironment."""
    from ..stream import alerts

    sql = alerts.flink_sql(alerts.load(rules_file), source_path=source_path)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(sql)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(sql, nl=False)
