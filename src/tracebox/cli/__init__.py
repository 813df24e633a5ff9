"""The ``tracebox`` command line: a thin face over ``tracebox.project``.

Conventions (docs/cli.md): human output by default, ``--json`` on every command that
prints data; exit 0 on success, 1 when the operation was refused or failed, 2 on bad
usage or input; errors are one line on stderr, never a traceback for expected failures.
Heavy modules are imported inside commands so ``tracebox --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ._common import GROUP_SETTINGS, LazyGroup

COMMANDS = {
    # section: {name: (module, attribute, short help)} — a command's module is imported
    # only when it runs; --help prints these lines without importing anything
    "Coordinate": {
        "init": ("init", "init_cmd", "Create a project in a bucket (probes conditional writes)."),
        "agents": ("coord", "agents_cmd", "Who is registered, and who is alive."),
        "heartbeat": ("coord", "heartbeat_cmd", "Refresh this agent's heartbeat."),
        "claim": ("coord", "claim_cmd", "Claim STEP: a lease with an epoch (fencing token)."),
        "renew": ("coord", "renew_cmd", "Extend your lease on STEP."),
        "release": ("coord", "release_cmd", "Give STEP back without completing it."),
        "complete": ("coord", "complete_cmd", "Finish STEP and write its handoff."),
        "reopen": ("coord", "reopen_cmd", "Re-open a finished STEP on purpose."),
        "handoff": ("coord", "handoff_group", "Read handoff records."),
        "steps": ("coord", "steps_cmd", "List steps: status, owner, epoch, lease expiry."),
        "wait-for": (
            "coord",
            "wait_for_cmd",
            "Block until steps complete (fails fast if blocked).",
        ),
        "memory": (
            "memory",
            "memory_group",
            "Shared JSON memory, versioned, with compare-and-swap.",
        ),
        "send": ("messages", "send_cmd", "Send a message to an agent, or --all."),
        "inbox": ("messages", "inbox_cmd", "Your messages and broadcasts, oldest first."),
        "artifact": ("artifacts", "artifact_group", "Share files: content-addressed, streamed."),
    },
    "Capture and search": {
        "session": (
            "session",
            "session_group",
            "Agents' transcripts: inspect, mirror, list, show.",
        ),
        "hooks": ("hooks", "hooks_group", "Install agent hooks that mirror sessions as they end."),
        "scrub": ("scrub", "scrub_cmd", "Show what the scrubber would redact in a file."),
        "index": ("search", "index_cmd", "Build the local search index (incremental)."),
        "search": ("search", "search_cmd", "Full-text search over every indexed session."),
        "stats": ("search", "stats_cmd", "Sessions, tool calls, errors, tokens and cost."),
        "export": ("export", "export_cmd", "Export a session: ATIF, OpenTelemetry, STS, JSONL."),
    },
    "LLM proxy": {
        "proxy": ("proxy", "proxy_group", "Run the capture proxy; `proxy status` shows its spool."),
        "tail": ("proxy", "tail_cmd", "Follow the proxy's live feed of calls."),
        "record": ("record", "record_cmd", "Run an agent with every model call captured."),
    },
    "Learn": {
        "observe": (
            "observe",
            "observe_cmd",
            "Observations from sessions: errors, failed fixes, loops…",
        ),
        "harness": (
            "harness",
            "harness_group",
            "Generations of agent variants that learn from each other.",
        ),
    },
    "Capsules": {
        "capsule": (
            "capsule",
            "capsule_group",
            "A failing session as a replayable, scrubbed bug report.",
        ),
    },
    "See": {
        "ui": ("ui", "ui_cmd", "A web UI of the bucket: timeline (live), sessions, search, stats…"),
    },
    "At scale": {
        "stream": ("stream", "stream_group", "Publish every event to Kafka, keyed by session."),
        "alerts": ("alerts", "alerts_group", "Live alert rules on the feed or Kafka; Flink SQL."),
        "warehouse": ("warehouse", "warehouse_group", "Compact the bucket into Parquet tables."),
        "sql": ("warehouse", "sql_cmd", "Run SQL (DuckDB) over the Parquet warehouse."),
        "mcp": ("mcp", "mcp_cmd", "Serve coordination as MCP tools (stdio or HTTP)."),
    },
    "Record and replay": {
        "log": ("log", "log_cmd", "Print the run's timeline from the event log."),
        "event": ("log", "event_cmd", "Append a custom event to the log."),
        "replay": ("log", "replay_cmd", "Write one self-contained HTML timeline of the run."),
        "import": ("migrate", "import_group", "Import runs recorded by other tools."),
    },
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings=GROUP_SETTINGS)
@click.version_option(__version__, prog_name="tracebox")
@click.option(
    "--bucket",
    envvar="TRACEBOX_BUCKET",
    metavar="URL",
    help="Bucket URL: ./folder, file:///…, s3://b/prefix, gs://, az://, "
    "hf://buckets/u/n, memory:// [env TRACEBOX_BUCKET; default from "
    ".tracebox.toml]",
)
@click.option("--project", envvar="TRACEBOX_PROJECT", help="Project name [env TRACEBOX_PROJECT]")
@click.option(
    "--agent",
    envvar="TRACEBOX_AGENT",
    help="Who is acting [env TRACEBOX_AGENT; default: config, then your username]",
)
@click.option("--endpoint", help="S3 endpoint URL (S3-compatible servers) [env AWS_ENDPOINT_URL]")
@click.option("--region", help="S3 region [env AWS_REGION]")
@click.option("--profile", help="AWS profile from ~/.aws [env AWS_PROFILE]")
@click.pass_context
def cli(ctx, bucket, project, agent, endpoint, region, profile):
    """tracebox: the flight recorder and black box for coding agents.

    Agents coordinate through a bucket you own (a local folder by default): leased
    claims with fencing, handoffs, shared memory, messages and artifacts, with every
    action in an append-only event log that replays as a timeline. Every agent's own
    transcripts are parsed into one model, scrubbed, mirrored, searched and exported.

    \b
    Start:    tracebox init --bucket ./runs --project demo --agent alice
    Work:     tracebox claim build && tracebox complete build --note "done" --to bob
    Watch:    tracebox ui    tracebox log --follow    tracebox replay --out run.html
    Capture:  tracebox session mirror    tracebox search "connection refused"
    """
    ctx.obj = {
        "bucket": bucket,
        "project": project,
        "agent": agent,
        "endpoint": endpoint,
        "region": region,
        "profile": profile,
    }


# A command's start-up allocates tens of thousands of objects that live as long as the
# process (modules, classes, rules); with the default threshold (700) the collector runs
# ~45 times during one `session mirror` (~8 ms) and finds nothing. Long-running servers
# go back to small collections once started (the proxy: ``ProxyApp`` start-up).
START_GC_THRESHOLD = 50_000


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. As a process (``argv`` None) it collects garbage rarely and ends
    with ``os._exit`` once output is flushed, skipping interpreter teardown (~10 ms per
    call; every write has completed)."""
    if argv is None:
        import gc

        gc.set_threshold(START_GC_THRESHOLD, *gc.get_threshold()[1:])
    code = _run(argv)
    if argv is not None:
        sys.exit(code)
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


def _run(argv: list[str] | None) -> int:
    from ..errors import TraceboxError, one_line

    try:
        # outside standalone mode click returns ``ctx.exit(n)``'s code instead of raising
        rv = cli.main(args=argv, prog_name="tracebox", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("tracebox: aborted", err=True)
        return 130
    except click.ClickException as e:
        # one line, like every other tracebox error (click's default is a usage block)
        msg = " ".join(e.format_message().split()) or type(e).__name__
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"tracebox: error: {msg}{hint}", err=True)
        return e.exit_code
    except TraceboxError as e:
        msg = one_line(e)
        click.echo(f"tracebox: error: {msg}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("tracebox: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 1
    return 0
