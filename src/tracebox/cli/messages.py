"""CLI: ``tracebox send`` and ``tracebox inbox``."""

from __future__ import annotations

import click

from ._common import emit_json, json_option, open_project, short_time


@click.command("send")
@click.argument("agent", required=False)
@click.argument("message", required=False)
@click.option("--all", "to_all", is_flag=True, help="Broadcast to every agent.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    help="Read the message from a file ('-' for stdin) instead of MESSAGE.",
)
@json_option
@click.pass_context
def send_cmd(ctx, agent, message, to_all, path, as_json):
    """Send MESSAGE to AGENT, or `send --all MESSAGE` to everyone."""
    if to_all and message is None and path is None:
        agent, message = None, agent
    if path is not None:
        if message is not None:
            raise click.UsageError("give either MESSAGE or --file, not both")
        message = _read_text(path)
    if message is None or (agent is None and not to_all):
        raise click.UsageError("usage: tracebox send AGENT MESSAGE | tracebox send --all MESSAGE")
    if to_all and agent is not None:
        raise click.UsageError("give either AGENT or --all, not both")
    p = open_project(ctx)
    msg = p.send(agent, message, all=to_all)
    if as_json:
        return emit_json(msg)
    click.echo(f"sent {msg['id']} to {'everyone' if msg['to'] == '_broadcast' else msg['to']}")


def _read_text(path: str) -> str:
    from ..coord.context import MAX_MESSAGE_BYTES
    from ..errors import UsageError

    try:
        with click.open_file(path, "rb") as f:
            raw = f.read(MAX_MESSAGE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if len(raw) > MAX_MESSAGE_BYTES:
        raise UsageError(
            f"message is larger than {MAX_MESSAGE_BYTES >> 10} KiB; "
            "upload an artifact and send its name instead"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not valid UTF-8 text") from None


def inbox_counts(msgs: list[dict]) -> dict:
    """``inbox --count --json``: how many messages, and how many of them unread."""
    return {"count": len(msgs), "unread": sum(not m["read"] for m in msgs)}


@click.command("inbox")
@click.option("--unread", is_flag=True, help="Only messages not yet acknowledged.")
@click.option("--ack", is_flag=True, help="Mark the messages shown as read.")
@click.option("--limit", type=int, help="At most N messages (oldest first).")
@click.option(
    "--count",
    "count_only",
    is_flag=True,
    help="Only count them (a listing, no message bodies fetched).",
)
@json_option
@click.pass_context
def inbox_cmd(ctx, unread, ack, limit, count_only, as_json):
    """Your messages and broadcasts, oldest first."""
    p = open_project(ctx)
    msgs = p.inbox(unread=unread, ack=ack, limit=limit, bodies=not count_only)
    if count_only:
        if as_json:
            return emit_json(inbox_counts(msgs))
        return click.echo(str(len(msgs)))
    if as_json:
        return emit_json(msgs)
    if not msgs:
        return click.echo("(no unread messages)" if unread else "(no messages)")
    for m in msgs:
        flag = " " if m["read"] else "*"
        to = " (all)" if m.get("to") == "_broadcast" else ""
        click.echo(f"{flag} {short_time(m.get('at'))}  {m.get('from')}{to}: {m.get('body')}")
