"""CLI: ``tracebox session mirror|list|show`` — agents' transcripts, scrubbed, in the bucket."""

from __future__ import annotations

import os
import sys

import click

from ..text import size as human_size
from ._common import emit_json, json_option, open_project, short_time, table


def _counts(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "-"


@click.command("mirror")
@click.argument("payload", nargs=-1)
@click.option(
    "--harness",
    "harness_names",
    multiple=True,
    metavar="H",
    help="Only this agent's sessions (repeatable): claude-code, codex, pi, ...",
)
@click.option("--all", "all_harnesses", is_flag=True, help="Every agent tracebox knows (default).")
@click.option(
    "--all-projects",
    is_flag=True,
    help="Every session on this machine, not only those run under this project's folder.",
)
@click.option(
    "--session",
    "session_path",
    type=click.Path(dir_okay=False),
    help="Mirror this one transcript file.",
)
@click.option("--session-id", metavar="ID", help="Only the session with this id.")
@click.option(
    "--final", is_flag=True, help="The sessions have ended: also send an unfinished last line."
)
@click.option("--follow", is_flag=True, help="Keep mirroring new lines until interrupted.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@click.option(
    "--no-scrub", is_flag=True, help="Upload without redacting secrets and personal data."
)
@click.option(
    "--hook",
    is_flag=True,
    help="Run as an agent hook: read its JSON (stdin, or the last argument for Codex), "
    "mirror that session in the background, always exit 0.",
)
@json_option
@click.pass_context
def mirror_cmd(
    ctx,
    payload,
    harness_names,
    all_harnesses,
    all_projects,
    session_path,
    session_id,
    final,
    follow,
    interval,
    no_scrub,
    hook,
    as_json,
):
    """Copy agents' transcripts, scrubbed, into the bucket (incremental, crash-safe).

    Finds the sessions of every agent run under this project's folder (where
    .tracebox.toml is) and uploads what is new as immutable, line-aligned parts under
    sessions/<harness>/<session>/. Re-running is always safe.
    """
    if hook:
        from ..capture import hooks

        harness = harness_names[0] if harness_names else None
        stdin = b"" if harness == "codex" or payload else hooks.read_stdin()
        hooks.handle(harness, payload, stdin)
        return
    if payload:
        raise click.UsageError(f"unexpected argument {payload[0]!r}")
    if all_harnesses and harness_names:
        raise click.UsageError("give --harness or --all, not both")
    from ..capture.harnesses import ADAPTERS

    for h in harness_names:
        if h not in ADAPTERS:
            raise click.BadParameter(f"unknown harness {h!r}; known: {', '.join(ADAPTERS)}")
    p = open_project(ctx, "session mirror")  # its bucket client builds while we import
    from ..capture import mirror as m

    names = list(harness_names or ADAPTERS)
    if session_path:
        if len(names) > 1 and harness_names:
            raise click.UsageError("--session takes at most one --harness")
        one = m.session_for_path(
            session_path, harness_names[0] if harness_names else None, session_id
        )

        def find():
            return [one]
    else:
        cwd = None
        if not (all_projects or session_id):
            cfg = p.settings.config_path
            cwd = (
                str(cfg.parent) if cfg is not None and cfg.name == ".tracebox.toml" else os.getcwd()
            )

        def find():
            return m.find_sessions(names, cwd=cwd, session_id=session_id)

    with m.Mirror(p, scrub=not no_scrub, final=final) as mirror:
        if follow:
            return _follow(mirror, find, interval, as_json)
        sessions = find()
        results = _run_once(mirror, sessions, as_json)
    _report(results, as_json, scrubbed=not no_scrub)
    if any(r.status == "failed" for r in results):
        ctx.exit(1)


def _run_once(mirror, sessions, as_json: bool):
    if as_json or not sys.stderr.isatty() or len(sessions) < 2:
        return mirror.mirror_many(sessions)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("mirroring", total=len(sessions))
        return mirror.mirror_many(sessions, on_done=lambda r: bar.advance(task))


def _follow(mirror, find, interval: float, as_json: bool) -> None:
    """Until Ctrl-C (or SIGTERM): the pass under way then finishes and is reported, so
    what was uploaded is always said; a second Ctrl-C stops at once."""
    import signal
    import threading

    from ..capture.mirror import follow

    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    if not as_json:
        click.echo(f"following sessions every {interval:g} s (Ctrl-C to stop)", err=True)
    try:
        for results in follow(mirror, find, interval=interval, stop=stop):
            for r in results:
                if r.status == "unchanged":
                    continue
                if as_json:
                    sys.stdout.write(_json_line(r.to_dict()))
                    sys.stdout.flush()
                else:
                    click.echo(_line(r))
    except KeyboardInterrupt:
        pass
    if not as_json:
        click.echo("stopped", err=True)


def _json_line(obj) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False) + "\n"


def _line(r) -> str:
    who = f"{r.harness} {r.session_id}"
    if r.status == "failed":
        return f"{who}: failed: {r.error}"
    if r.status == "skipped":
        return f"{who}: skipped: {r.error}"
    gen = f" (new generation {r.generation})" if r.new_generation else ""
    subs = f", {r.subagents} subagent file(s)" if r.subagents else ""
    held = f", {human_size(r.held_back, 1000)} unfinished line held back" if r.held_back else ""
    text = (
        f"{who}: +{human_size(r.uploaded, 1000)} in {r.uploaded_parts} part(s){gen}; "
        f"{r.lines} lines{subs}; redacted: {_counts(r.redactions)}{held}"
    )
    for w in r.warnings:
        text += f"\n  warning: {w}"
    return text


def _report(results, as_json: bool, *, scrubbed: bool) -> None:
    uploaded = [r for r in results if r.status == "uploaded"]
    totals = {
        "sessions": len(results),
        "uploaded_sessions": len(uploaded),
        "unchanged": sum(r.status == "unchanged" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "uploaded_bytes": sum(r.uploaded for r in results),
        "parts": sum(r.uploaded_parts for r in results),
        "scrubbed": scrubbed,
        "redactions": {},
    }
    for r in results:
        for k, v in r.redactions.items():
            totals["redactions"][k] = totals["redactions"].get(k, 0) + v
    if as_json:
        return emit_json({"sessions": [r.to_dict() for r in results], "totals": totals})
    for r in results:
        if r.status != "unchanged":
            click.echo(_line(r))
    if not results:
        click.echo("no sessions found (use --all-projects for sessions of other folders)")
        return
    if not totals["parts"] and not totals["failed"]:
        click.echo(f"nothing new in {len(results)} session(s)")
        return
    click.echo(
        f"mirrored {totals['uploaded_sessions']} of {len(results)} session(s): "
        f"{human_size(totals['uploaded_bytes'], 1000)} in {totals['parts']} part(s)"
        + ("" if scrubbed else " (NOT scrubbed)")
        + (f"; redacted: {_counts(totals['redactions'])}" if totals["redactions"] else "")
        + (f"; {totals['failed']} failed" if totals["failed"] else "")
    )


@click.command("list")
@click.option("--harness", metavar="H", help="Only this agent's sessions.")
@json_option
@click.pass_context
def list_cmd(ctx, harness, as_json):
    """List the sessions mirrored into the bucket, most recently updated first."""
    from ..capture.mirror import list_sessions

    p = open_project(ctx, "session list")
    rows = list_sessions(p, harness)
    rows.sort(key=lambda r: r.get("updated") or "", reverse=True)
    if as_json:
        return emit_json(rows)
    for r in rows:
        r["size"] = human_size(r["bytes"], 1000)
        r["when"] = short_time(r.get("updated"))
        r["gen"] = r["generation"]
    table(
        rows,
        [
            ("harness", "harness"),
            ("session_id", "session"),
            ("size", "size"),
            ("lines", "lines"),
            ("gen", "gen"),
            ("subagents", "subagents"),
            ("when", "updated"),
            ("cwd", "cwd"),
        ],
        empty="(no mirrored sessions)",
    )


@click.command("show")
@click.argument("session_id")
@click.option("--harness", metavar="H", help="The session's agent (when the id is ambiguous).")
@click.option("--tail", type=click.IntRange(min=1), metavar="N", help="Only the last N steps.")
@json_option
@click.pass_context
def show_cmd(ctx, session_id, harness, tail, as_json):
    """Print a mirrored session's steps (ID may be a unique prefix)."""
    from ..capture.mirror import list_sessions, load_session
    from ..errors import NotFound, UsageError

    p = open_project(ctx, "session show")
    rows = [
        r
        for r in list_sessions(p, harness)
        if r["session_id"] == session_id or r["session_id"].startswith(session_id)
    ]
    exact = [r for r in rows if r["session_id"] == session_id]
    rows = exact or rows
    if not rows:
        raise NotFound(f"no mirrored session {session_id!r} (see `tracebox session list`)")
    if len(rows) > 1:
        shown = ", ".join(f"{r['harness']}/{r['session_id']}" for r in rows[:5])
        raise UsageError(f"{session_id!r} matches several sessions ({shown}); be more specific")
    session = load_session(p, rows[0]["harness"], rows[0]["session_id"])
    from ..trace.model import summarize, to_json

    summary = summarize(session)
    if tail:
        session.steps = session.steps[-tail:]
    if as_json:
        sys.stdout.write(to_json(session).decode() + "\n")
        return
    _print_session(session, summary)


def _print_session(session, s) -> None:
    click.echo(
        f"{session.harness} {session.id}  models: {', '.join(s.models) or '-'}  "
        f"steps: {s.steps}  tool calls: {s.tool_calls}  errors: {s.tool_errors}  "
        f"subagents: {s.subagents}"
    )
    if session.cwd:
        click.echo(f"cwd: {session.cwd}")
    for st in session.steps:
        head = f"#{st.index} {short_time(st.timestamp)} {st.source}"
        if st.model:
            head += f" [{st.model}]"
        if st.error is not None:
            head += f" ERROR {st.error.kind}: {_short(st.error.message, 200)}"
        click.echo(head)
        for part in st.parts:
            click.echo(f"    {_part(part)}")


def _short(text, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _part(part) -> str:
    from ..trace import model

    if isinstance(part, model.Text):
        return _short(part.text)
    if isinstance(part, model.Reasoning):
        return "(reasoning, redacted)" if part.redacted else f"(reasoning) {_short(part.text)}"
    if isinstance(part, model.ToolCall):
        import json

        args = part.arguments if isinstance(part.arguments, str) else json.dumps(part.arguments)
        return f"-> {part.name} {_short(args, 200)}"
    if isinstance(part, model.ToolResult):
        flag = " ERROR" if part.is_error else ""
        code = f" exit {part.exit_code}" if part.exit_code is not None else ""
        return f"<- result{flag}{code}: {_short(part.output, 200)}"
    if isinstance(part, model.Attachment):
        return f"[attachment {part.media_type} {part.name or part.ref}]"
    return type(part).__name__
