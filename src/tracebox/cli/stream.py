"""CLI: ``tracebox stream kafka`` — publish the event log, a proxy's feed and mirrored
sessions to Kafka (docs/stream.md)."""

from __future__ import annotations

import sys

import click

from ._common import emit_json, json_option, open_project


@click.group("stream")
def stream_group():
    """Publish every event to a streaming platform (Kafka), keyed by session.

    \b
    Catch up once:   tracebox stream kafka --bootstrap 127.0.0.1:9092
    Keep going:      tracebox stream kafka --follow --proxy http://127.0.0.1:8787
    Or let commands, the mirror and the proxy publish as they write:
                     [stream.kafka] bootstrap = "HOST:PORT" in .tracebox.toml
    """


@stream_group.command("kafka")
@click.option(
    "--bootstrap",
    metavar="HOST:PORT[,...]",
    help="Kafka brokers [env TRACEBOX_KAFKA_BOOTSTRAP; default: stream.kafka.bootstrap "
    "in .tracebox.toml]",
)
@click.option(
    "--topic-prefix",
    metavar="PREFIX",
    help="Publish to PREFIX.coord and PREFIX.trace [default: stream.kafka.topic_prefix, "
    "then tracebox]",
)
@click.option("--follow", is_flag=True, help="Keep publishing new events until interrupted.")
@click.option(
    "--from-start",
    is_flag=True,
    help="Publish the whole log again, ignoring the checkpoint (same ids: consumers "
    "drop the repeats).",
)
@click.option(
    "--proxy",
    "proxy_url",
    metavar="URL",
    help="Also publish the live feed of the tracebox proxy at URL (implies --follow).",
)
@click.option(
    "--sessions",
    is_flag=True,
    help="Also publish the tool calls, tool results and errors of mirrored sessions.",
)
@click.option(
    "--interval",
    metavar="SECONDS",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between polls of the bucket with --follow.",
)
@click.option(
    "--flush-timeout",
    metavar="SECONDS",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait at the end for the broker's acknowledgements.",
)
@click.option(
    "--connect-timeout",
    metavar="SECONDS",
    type=click.FloatRange(0.1, 600),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the brokers to answer at the start.",
)
@click.option("--no-scrub", is_flag=True, help="Publish without redacting secrets.")
@json_option
@click.pass_context
def kafka_cmd(
    ctx,
    bootstrap,
    topic_prefix,
    follow,
    from_start,
    proxy_url,
    sessions,
    interval,
    flush_timeout,
    connect_timeout,
    no_scrub,
    as_json,
):
    """Publish the event log, a proxy's live feed and mirrored sessions to Kafka.

    Every coordination event (claims, handoffs, messages, memory, artifacts...) goes to
    PREFIX.coord; with --proxy and --sessions, the trace events (calls started and
    finished, tool calls, tool results, errors) go to PREFIX.trace. Keyed by session
    (else step, else agent): one key's events stay in order. Schema: docs/stream.md.

    A checkpoint on this machine (per bucket, project, brokers and prefix) remembers what
    the broker acknowledged: run it again, or after a crash, and it sends only what is
    new. Idempotent producer, acks=all; exit 1 if something was not acknowledged.
    """
    import signal
    import threading

    from ..config import load_settings
    from ..errors import ConfigError, TraceboxError, UsageError
    from ..stream import kafka

    settings = load_settings()
    cfg = kafka.load_config(settings.raw, bootstrap=bootstrap, topic_prefix=topic_prefix)
    if cfg is None:
        raise UsageError(
            "no Kafka brokers: pass --bootstrap HOST:PORT, set TRACEBOX_KAFKA_BOOTSTRAP, "
            "or add bootstrap to [stream.kafka] in .tracebox.toml"
        )
    try:
        project = open_project(ctx, beat=False)
    except ConfigError:
        if not proxy_url:
            raise
        project = None  # only the proxy's feed: no bucket needed
    follow = follow or bool(proxy_url)
    kafka.ensure_topics(cfg.bootstrap, cfg.topic_prefix, timeout=connect_timeout)
    scrub = cfg.scrub and not no_scrub
    producer = kafka.Producer(
        cfg.bootstrap,
        cfg.topic_prefix,
        scrubber=kafka.make_scrubber(settings.raw) if scrub else None,
    )
    bridge = kafka.Bridge(producer, project, sessions=sessions, from_start=from_start)
    stop = threading.Event()
    try:
        if proxy_url:
            bridge.follow_feed(proxy_url, stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        show = not as_json and sys.stderr.isatty()
        stats = bridge.run(
            follow=follow,
            interval=interval,
            stop=stop,
            flush_timeout=flush_timeout,
            on_progress=_progress if show else None,
        )
        if show:
            _progress(stats)
            click.echo("", err=True)
    finally:
        stop.set()
        bridge.close()
    stats["scrubbed"] = scrub
    if as_json:
        emit_json(stats)
    else:
        _print(stats)
    missing = stats["pending"] + stats["failed"]
    if missing:
        why = f": {stats['last_error']}" if stats.get("last_error") else ""
        raise TraceboxError(
            f"{missing} events were not delivered to Kafka at {cfg.bootstrap}{why}; "
            "run `tracebox stream kafka` again to send them"
        )


def _progress(stats: dict) -> None:
    sys.stderr.write(
        f"\rstream kafka: sent {stats['sent']}  delivered {stats['delivered']}  "
        f"pending {stats['pending']}  failed {stats['failed']}   "
    )
    sys.stderr.flush()


def _print(s: dict) -> None:
    src = s["sources"]
    click.echo(
        f"published {s['sent']} events to {s['bootstrap']} ({', '.join(s['topics'])}): "
        f"{s['delivered']} delivered, {s['failed']} failed, {s['pending']} unacknowledged"
    )
    click.echo(
        f"coordination {src['coord']}, proxy feed {src['proxy']}, sessions {src['mirror']}"
        + (f", skipped {s['skipped']}" if s["skipped"] else "")
        + (f", feed events missed {s['feed_dropped']}" if s["feed_dropped"] else "")
    )
    if s["redactions"]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(s["redactions"].items()))
        click.echo(f"redacted: {counts}")
