"""CLI: ``tracebox capsule …`` — a failing session as a replayable, scrubbed bug report.

Thin over ``tracebox.capsule``: ``create``/``preview`` (a session → a capsule folder, or
the exact content that would be shared), ``verify``, ``show``, ``push``/``pull`` (the
bucket), ``issue`` (GitHub, through ``gh``), ``replay`` (the only command that runs
anything from a capsule), ``resolve``, ``watch`` and ``status``. CAPSULE is a capsule
folder, its ``capsule.json``, or an id (``cap-…``) pulled from the project's bucket.
"""

from __future__ import annotations

import json
import os
import sys

import click

from ._common import GROUP_SETTINGS, emit_json, json_option, open_project


@click.group("capsule", context_settings=GROUP_SETTINGS)
def capsule_group():
    """Trace Capsules: a failing session packaged for the maintainer who can fix it.

    \b
    tracebox capsule create SESSION            # -> capsules/<id>/ (scrubbed)
    tracebox capsule replay capsules/<id>      # reproduces? (sandboxed)
    tracebox capsule issue capsules/<id> --repo owner/name
    tracebox capsule push capsules/<id> && tracebox capsule watch <id>
    tracebox capsule resolve <id> --fixed-in v1.2.1        # maintainer: unblocks the watcher
    """


def _session_options(f):
    for opt in reversed(
        [
            click.option(
                "--step", type=int, help="The failing step (default: found automatically)."
            ),
            click.option(
                "--repo",
                type=click.Path(file_okay=False),
                help="The repository the session ran in (default: its cwd).",
            ),
            click.option("--harness", help="Parse SESSION with this adapter."),
            click.option(
                "--test-command",
                metavar="CMD",
                help="The command that reproduces the failure (default: the failing command).",
            ),
            click.option(
                "--expect", metavar="TEXT", help="An error line the reproduction must print."
            ),
            click.option(
                "--include-system-prompt",
                is_flag=True,
                help="Also share the system prompt (off by default).",
            ),
        ]
    ):
        f = opt(f)
    return f


def _build(session, step, repo, harness, test_command, expect, include_system_prompt):
    from ..capsule.create import build
    from ..config import load_settings
    from ..scrub import Scrubber
    from .export import load_session

    tree = load_session(session, harness)
    scrubber = Scrubber(config=load_settings().raw.get("scrub"))
    return build(
        tree,
        repo=repo,
        step=step,
        test_command=test_command,
        expect=expect,
        include_system_prompt=include_system_prompt,
        scrubber=scrubber,
    )


@capsule_group.command("create")
@click.argument("session")
@_session_options
@click.option(
    "--out", type=click.Path(file_okay=False), help="Capsule folder (default: capsules/<id>)."
)
@click.option("--push", "push_", is_flag=True, help="Also push it to the project's bucket.")
@json_option
@click.pass_context
def create_cmd(
    ctx,
    session,
    step,
    repo,
    harness,
    test_command,
    expect,
    include_system_prompt,
    out,
    push_,
    as_json,
):
    """Package SESSION's failure (a transcript path or a session id) as a capsule."""
    from ..capsule import model

    built = _build(session, step, repo, harness, test_command, expect, include_system_prompt)
    folder = out or os.path.join("capsules", built.doc["id"])
    c = model.write(folder, built.doc, built.blobs, built.bundle)
    status = None
    if push_:
        status = _push(ctx, c)
    if as_json:
        return emit_json(
            {
                "id": c.id,
                "folder": folder,
                "failure": c.doc["failure"],
                "scrub": c.doc["scrub"],
                "pushed": status,
            }
        )
    f = c.doc["failure"]
    click.echo(f"capsule {c.id} -> {folder}")
    click.echo(
        f"  failure: step {f['step']}: {f.get('command') or f.get('tool')} (exit {f.get('exit_code')})"
    )
    for e in (f.get("signature") or {}).get("errors", [])[:2]:
        click.echo(f"  error:   {e}")
    counts = c.doc["scrub"]["counts"]
    click.echo(
        "  scrubbed: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing to redact")
    )
    if status:
        click.echo(f"  pushed: capsules/{c.id}/ (status {status['state']})")


@capsule_group.command("preview")
@click.argument("session")
@_session_options
@json_option
def preview_cmd(session, step, repo, harness, test_command, expect, include_system_prompt, as_json):
    """Show exactly what a capsule of SESSION would share, field by field; write nothing."""
    built = _build(session, step, repo, harness, test_command, expect, include_system_prompt)
    if as_json:
        return emit_json(
            {
                "capsule": built.doc,
                "bundle": {k: v.decode("utf-8", "replace") for k, v in built.bundle.items()},
            }
        )
    for name, value in built.doc.items():
        click.echo(click.style(f"== {name}", bold=True))
        click.echo(
            json.dumps(value, indent=2, ensure_ascii=False)
            if isinstance(value, dict | list)
            else str(value)
        )
    for name, data in sorted(built.bundle.items()):
        click.echo(click.style(f"== bundle: {name} ({len(data)} bytes)", bold=True))
        click.echo(data.decode("utf-8", "replace"))
    click.echo(click.style("== capsule.md", bold=True))
    click.echo(built.summary)


def _project(ctx):
    """The project, opened once per command however many steps need it."""
    if "capsule.project" not in ctx.meta:
        ctx.meta["capsule.project"] = open_project(ctx, f"capsule {ctx.info_name}")
    return ctx.meta["capsule.project"]


def _maybe_project(ctx):
    from ..errors import ConfigError

    try:
        return _project(ctx)
    except ConfigError:
        return None


def _load(ctx, arg: str):
    """A capsule from a folder/file, or pulled by id from the project's bucket."""
    from ..capsule import model, share
    from ..dirs import user_dir

    if os.path.exists(arg) or not share.is_id(arg):
        return model.load(arg)
    return share.pull(_project(ctx), arg, user_dir("cache", "capsules", arg))


@capsule_group.command("verify")
@click.argument("capsule")
@json_option
@click.pass_context
def verify_cmd(ctx, capsule, as_json):
    """Check CAPSULE: format, id, every file's hash, and a fresh secret scan (exit 1 if not intact)."""
    from ..capsule import model

    c = _load(ctx, capsule)
    problems = model.verify(c)
    if as_json:
        emit_json({"id": c.id, "ok": not problems, "problems": problems})
    else:
        for p in problems:
            click.echo(f"problem: {p}")
        click.echo(
            f"capsule {c.id}: " + ("intact" if not problems else f"{len(problems)} problem(s)")
        )
    if problems:
        ctx.exit(1)


@capsule_group.command("show")
@click.argument("capsule")
@json_option
@click.pass_context
def show_cmd(ctx, capsule, as_json):
    """A human summary of CAPSULE."""
    from ..capsule.render import show

    c = _load(ctx, capsule)
    if as_json:
        return emit_json(c.doc)
    click.echo(show(c.doc))


def _push(ctx, c):
    from ..capsule import share

    return share.push(_project(ctx), c)


@capsule_group.command("push")
@click.argument("capsule")
@json_option
@click.pass_context
def push_cmd(ctx, capsule, as_json):
    """Store CAPSULE in the bucket under capsules/<id>/ so others can pull it by id."""
    c = _load(ctx, capsule)
    status = _push(ctx, c)
    if as_json:
        return emit_json({"id": c.id, "status": status})
    click.echo(
        f"pushed capsules/{c.id}/ (status {status['state']}); pull it with: tracebox capsule pull {c.id}"
    )


@capsule_group.command("pull")
@click.argument("capsule_id")
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default: capsules/<id>).")
@click.pass_context
def pull_cmd(ctx, capsule_id, out):
    """Download capsule CAPSULE_ID from the bucket into a folder."""
    from ..capsule import share

    c = share.pull(_project(ctx), capsule_id, out or os.path.join("capsules", capsule_id))
    click.echo(f"capsule {c.id} -> {c.folder}")


@capsule_group.command("issue")
@click.argument("capsule")
@click.option(
    "--repo", "gh_repo", metavar="OWNER/NAME", help="The GitHub repository to file it in."
)
@click.option("--title", help="Issue title (default: from the error).")
@click.option("--dry-run", is_flag=True, help="Print the issue body; file nothing.")
@json_option
@click.pass_context
def issue_cmd(ctx, capsule, gh_repo, title, dry_run, as_json):
    """File (or update) a GitHub issue for CAPSULE with gh; idempotent."""
    from ..capsule import render, share
    from ..errors import NotFound, UsageError

    c = _load(ctx, capsule)
    project = _maybe_project(ctx)
    where = None
    if project is not None and not project.store.url.startswith(("file:", "/", ".")):
        where = f"project {project.name} in {project.store.url}"  # a bucket others can reach
    # the capsule is scrubbed already; the body adds only rendering and the bucket URL,
    # but everything that leaves the machine goes through the scrubber
    from ..scrub import Scrubber

    body = Scrubber().scrub_text(render.issue_body(c.doc, where))
    if dry_run:
        if as_json:
            return emit_json({"title": title or share.issue_title(c.doc), "body": body})
        click.echo(body)
        return
    if not gh_repo:
        raise UsageError("--repo OWNER/NAME is required (or --dry-run to print the body)")
    issue = share.file_issue(c.doc, body, gh_repo, title)
    if project is not None:
        try:
            share.update_status(
                project, c.id, issue={k: issue[k] for k in ("repo", "number", "url")}
            )
        except NotFound:
            pass  # not pushed: the issue is still filed
    if c.folder:
        with open(os.path.join(c.folder, "issue.json"), "w") as f:
            json.dump(issue, f)
    if as_json:
        return emit_json(issue)
    click.echo(f"issue {issue['action']}: {issue['url']}")


@capsule_group.command("replay")
@click.argument("capsule")
@click.option(
    "--against", metavar="REF", help="Replay on this ref (e.g. the fix) instead of the base commit."
)
@click.option(
    "--repo",
    metavar="PATH_OR_URL",
    help="Where to get the repository (default: the capsule's remote).",
)
@click.option(
    "--command",
    "commands",
    multiple=True,
    metavar="CMD",
    help="Run this instead of the capsule's reproduction (repeatable).",
)
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="Per command (default: the capsule's, 600)."
)
@click.option(
    "--network", is_flag=True, help="Allow network access (isolated by default where possible)."
)
@click.option(
    "--env",
    "env_names",
    multiple=True,
    metavar="NAME",
    help="Pass this environment variable through (repeatable).",
)
@click.option("--keep", is_flag=True, help="Keep the worktree and print where it is.")
@click.option(
    "--agent",
    "agent_cmd",
    metavar="COMMAND",
    help="Also give the capsule's intent to this agent in the worktree ({prompt_file} or "
    "{prompt} is filled in, e.g. 'claude -p \"$(cat {prompt_file})\"'); report its metrics "
    "beside the original's and whether the failure is gone after it.",
)
@click.option("--agent-timeout", default="30m", show_default=True, help="Time the agent may take.")
@json_option
@click.pass_context
def replay_cmd(
    ctx,
    capsule,
    against,
    repo,
    commands,
    timeout,
    network,
    env_names,
    keep,
    agent_cmd,
    agent_timeout,
    as_json,
):
    """Materialize CAPSULE's snapshot in a fresh worktree, run its reproduction, judge.

    Prints reproduces, fixed or inconclusive with the evidence. Exit 0 when the verdict
    is the expected one (reproduces; fixed with --against), 1 otherwise.
    """
    from ..capsule import replay
    from ..config import parse_duration

    c = _load(ctx, capsule)
    pulled = not os.path.exists(capsule)  # by id, from the bucket: the verdict goes back there

    def on_run(cmd, iso):
        if not as_json:
            click.echo(f"running: {cmd}   [network: {iso['network']}]", err=True)

    extra = {n: os.environ[n] for n in env_names if n in os.environ}
    record = replay.replay(
        c,
        repo=repo,
        against=against,
        commands=list(commands) or None,
        timeout=timeout,
        keep=keep,
        network=network,
        extra_env=extra,
        on_run=on_run,
        agent=agent_cmd,
        agent_timeout=parse_duration(agent_timeout, what="--agent-timeout"),
    )
    if pulled:
        from ..capsule import share

        share.record_replay(_project(ctx), c.id, record)
    if as_json:
        emit_json(record)
    else:
        ev = record.get("evidence") or {}
        click.echo(f"verdict: {record['verdict']}  ({ev.get('reason', '')})")
        for key in ("matched_failed", "matched_errors", "still_failing", "now_failing"):
            if ev.get(key):
                click.echo(f"  {key.replace('_', ' ')}: {', '.join(map(str, ev[key]))[:300]}")
        for run in record.get("runs", []):
            click.echo(f"  {run['command']}: exit {run['exit_code']} in {run['seconds']} s")
        if record.get("kept"):
            click.echo(f"  worktree kept: {record['kept']}")
        if record.get("agent"):
            _echo_agent(record["agent"])
    hoped = "fixed" if against else "reproduces"
    if record["verdict"] != hoped:
        ctx.exit(1)


def _echo_agent(a: dict) -> None:
    click.echo(f"agent: {a['command']}: exit {a['exit_code']} in {a['seconds']} s")
    if a.get("session"):
        m, o = a.get("metrics") or {}, a.get("original_metrics") or {}
        click.echo(f"  session {a['session']['harness']} {a['session']['id']}")
        for key in ("steps", "tool_calls", "tool_errors", "retries", "cost_usd", "wall_s"):
            click.echo(f"  {key:11} original {o.get(key)!s:>10}   this agent {m.get(key)!s:>10}")
    else:
        click.echo(f"  {a.get('note')}")
    click.echo(
        f"  after the agent: {a['verdict_after']} ({(a.get('evidence_after') or {}).get('reason', '')})"
    )


@capsule_group.command("resolve")
@click.argument("capsule")
@click.option(
    "--fixed-in", required=True, metavar="REF", help="The commit, tag or release that fixes it."
)
@click.option(
    "--verify", "verify_", is_flag=True, help="Replay against REF first; refuse unless it is fixed."
)
@click.option("--repo", metavar="PATH_OR_URL", help="With --verify: where to get the repository.")
@click.option("--note", help="A note for the reporter.")
@json_option
@click.pass_context
def resolve_cmd(ctx, capsule, fixed_in, verify_, repo, note, as_json):
    """Mark CAPSULE resolved (maintainer side): unblocks `capsule watch` on it."""
    from ..capsule import replay, share
    from ..errors import Refused

    c = _load(ctx, capsule)
    project = _project(ctx)
    share.get_status(project, c.id)  # pushed? (before a replay that may take minutes)
    record = None
    if verify_:
        record = replay.replay(c, repo=repo, against=fixed_in)
        share.record_replay(project, c.id, record)
        if record["verdict"] != "fixed":
            raise Refused(
                f"replay against {fixed_in} says {record['verdict']}: "
                f"{(record.get('evidence') or {}).get('reason', '')}; not marking it resolved"
            )
    status = share.resolve(project, c.id, fixed_in, record, note)
    if as_json:
        return emit_json(status)
    click.echo(
        f"capsule {c.id} resolved in {fixed_in}"
        + (f" (replay: {record['verdict']})" if record else "")
    )


@capsule_group.command("watch")
@click.argument("capsule")
@click.option(
    "--timeout", default="1h", show_default=True, help="Give up (exit 1) after this long."
)
@click.option("--interval", default="2s", show_default=True, help="How often to look.")
@json_option
@click.pass_context
def watch_cmd(ctx, capsule, timeout, interval, as_json):
    """Wait until CAPSULE is resolved (bucket status, or its GitHub issue closed); exit 0
    with the fix, 1 on timeout — so a blocked agent can `watch` and go on."""
    from ..capsule import share
    from ..config import parse_duration

    cid = capsule if share.is_id(capsule) else _load(ctx, capsule).id
    p = _project(ctx)
    issue = None
    if os.path.isdir(capsule) and os.path.isfile(os.path.join(capsule, "issue.json")):
        with open(os.path.join(capsule, "issue.json")) as f:
            issue = json.load(f)
    status = share.watch(
        p,
        cid,
        timeout=parse_duration(timeout, what="--timeout"),
        interval=parse_duration(interval, what="--interval"),
        issue=issue,
    )
    if status is None:
        if as_json:
            emit_json({"id": cid, "resolved": False})
        click.echo(f"capsule {cid}: not resolved within {timeout}", err=True)
        ctx.exit(1)
    if as_json:
        return emit_json({"id": cid, "resolved": True, **status})
    click.echo(
        f"capsule {cid} resolved: fixed in {status.get('fixed_in') or '?'}"
        + (f" ({status['via']})" if status.get("via") else "")
    )
    sys.stdout.flush()


@capsule_group.command("status")
@click.argument("capsule")
@json_option
@click.pass_context
def status_cmd(ctx, capsule, as_json):
    """The shared status of CAPSULE (open or resolved, the fix, the issue)."""
    from ..capsule import share

    cid = capsule if share.is_id(capsule) else _load(ctx, capsule).id
    status = share.get_status(_project(ctx), cid)
    if as_json:
        return emit_json(status)
    click.echo(
        f"capsule {cid}: {status.get('state')}"
        + (f", fixed in {status['fixed_in']}" if status.get("fixed_in") else "")
    )
    if status.get("issue"):
        click.echo(f"  issue: {status['issue'].get('url')}")
