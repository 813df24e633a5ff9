"""Capsules as text for people: ``capsule.md``, ``capsule show``, and the issue body.

Pure functions over an already scrubbed capsule document; nothing here reads files or
runs anything. The issue body carries a marker line, ``<!-- tracebox-capsule: <id> -->``,
by which ``capsule issue`` finds the issue it filed before (idempotence).
"""

from __future__ import annotations

from typing import Any

from ..text import clip

MARKER = "<!-- tracebox-capsule: {id} -->"


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _get(doc: dict, *path: str) -> Any:
    for p in path:
        doc = doc.get(p) if isinstance(doc, dict) else None
    return doc


def summary(doc: dict, *, replay_hint: bool = True) -> str:
    """The ``capsule.md`` of a capsule document."""
    cid = doc.get("id") or "(id set when written)"
    src = doc.get("source") or {}
    f = doc.get("failure") or {}
    sig = f.get("signature") or {}
    snap = doc.get("snapshot") or {}
    m = doc.get("metrics") or {}
    rep = doc.get("reproduce") or {}
    lines = [
        f"# Trace Capsule {cid}",
        "",
        f"A {src.get('harness')} session ({src.get('session_id')}) failed at step "
        f"{f.get('step')}: {_what(f)}.",
        "",
        "## Intent",
        "",
        _fence(_get(doc, "intent", "prompt") or "(no user prompt found)"),
        "",
        "## Failure",
        "",
        f"- tool: {f.get('tool') or '-'}; exit code: {f.get('exit_code')}",
    ]
    if f.get("command"):
        lines.append(f"- command: `{f['command']}`")
    if sig.get("framework"):
        lines.append(
            f"- framework: {sig['framework']}; failing: {', '.join(sig.get('failed') or []) or '-'}"
        )
    for e in (sig.get("errors") or [])[:5]:
        lines.append(f"- error: `{e}`")
    lines += ["", _fence(_tail(f.get("error") or "", 60)), "", "## Reproduce", ""]
    cmds = rep.get("commands") or []
    if cmds:
        lines.append(f"In `{rep.get('cwd') or '.'}` of the snapshot:")
        lines += ["", _fence("\n".join(cmds), "sh")]
    else:
        lines.append("No command reproduces it on its own (declare one with --test-command).")
    if replay_hint:
        lines += ["", "Replay it: `tracebox capsule replay <this folder> [--against REF]`."]
    lines += [
        "",
        "## Snapshot",
        "",
        f"- remote: {snap.get('remote') or '(none: replay needs --repo PATH)'}",
        f"- base commit: {snap.get('base_commit')}; branch: {snap.get('branch') or '-'}",
        f"- unpushed commits: {snap.get('unpushed_commits') or 0}; changed files: "
        f"{len(snap.get('changed_files') or [])}; untracked files kept: {len(snap.get('untracked') or [])}",
        "",
        "## Process",
        "",
        f"- steps {m.get('steps')}, tool calls {m.get('tool_calls')}, tool errors "
        f"{m.get('tool_errors')}, retries {m.get('retries')}, loops {len(m.get('loops') or [])}",
        f"- tokens: {_tokens(m.get('tokens') or {})}; cost: {_cost(m.get('cost_usd'))}; "
        f"wall time: {_secs(m.get('wall_s'))}",
        "",
        f"Scrubbed before writing: {_counts(_get(doc, 'scrub', 'counts') or {})}.",
    ]
    return "\n".join(lines) + "\n"


def show(doc: dict) -> str:
    """A short terminal summary."""
    f = doc.get("failure") or {}
    src = doc.get("source") or {}
    m = doc.get("metrics") or {}
    rep = doc.get("reproduce") or {}
    traj = doc.get("trajectory") or {}
    out = [
        f"capsule {doc.get('id')}  ({src.get('harness')} session {src.get('session_id')})",
        f"intent:   {clip(_get(doc, 'intent', 'prompt') or '-', 100)}",
        f"failure:  step {f.get('step')}, {_what(f)}",
    ]
    for e in ((f.get("signature") or {}).get("errors") or [])[:3]:
        out.append(f"          {clip(e, 100)}")
    out += [
        f"episode:  steps {traj.get('episode_start')}..{traj.get('failing_step')}, "
        f"{sum(1 for a in traj.get('actions') or [] if 'tool' in a)} actions",
        f"reproduce: {' && '.join(rep.get('commands') or []) or '-'}  (in {rep.get('cwd')})",
        f"snapshot: {(doc.get('snapshot') or {}).get('remote') or '-'} @ "
        f"{str((doc.get('snapshot') or {}).get('base_commit') or '-')[:12]}",
        f"metrics:  {m.get('steps')} steps, {m.get('tool_calls')} tool calls, "
        f"{m.get('retries')} retries, {_tokens(m.get('tokens') or {})}, {_cost(m.get('cost_usd'))}",
        f"scrubbed: {_counts(_get(doc, 'scrub', 'counts') or {})}",
    ]
    return "\n".join(out)


def issue_body(doc: dict, where: str | None) -> str:
    """The body of an issue for this capsule (``where``: how to get it: a bucket id or URL)."""
    body = summary(doc, replay_hint=False).replace("# Trace Capsule", "## Trace Capsule", 1)
    get = (
        f"`tracebox capsule pull {doc.get('id')}` from {where}" if where else "the attached capsule"
    )
    body += (
        "\n## Replay\n\n"
        f"Get the capsule ({get}), then:\n\n"
        + _fence(
            f"tracebox capsule replay {doc.get('id')} --repo <your clone>             # reproduces?\n"
            f"tracebox capsule replay {doc.get('id')} --repo <your clone> --against <fix ref>\n"
            f"tracebox capsule resolve {doc.get('id')} --fixed-in <fix ref>        # unblocks the reporter",
            "sh",
        )
        + "\n\n"
        + MARKER.format(id=doc.get("id"))
        + "\n"
    )
    return body


def _what(f: dict) -> str:
    if f.get("kind") == "api_error":
        return f"API error: {clip(f.get('error') or '', 100)}"
    if f.get("command"):
        return f"`{clip(f['command'], 80)}` exited {f.get('exit_code')}"
    return f"{f.get('tool') or 'a tool'} failed"


def _tail(text: str, lines: int) -> str:
    parts = text.splitlines()
    return "\n".join(parts[-lines:]) if len(parts) > lines else text


def _tokens(t: dict) -> str:
    return (
        f"in {t.get('input', 0)} out {t.get('output', 0)} "
        f"cache {t.get('cache_read', 0)}/{t.get('cache_write', 0)}"
    )


def _cost(c: Any) -> str:
    return f"${c:.4f}" if isinstance(c, int | float) else "-"


def _secs(s: Any) -> str:
    return f"{s:.0f} s" if isinstance(s, int | float) else "-"


def _counts(c: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "nothing"
