"""Sharing a capsule and closing the loop: the bucket, the status object, the issue.

Bucket layout under ``<project>/capsules/<id>/`` (docs/capsule.md §sharing)::

    capsule.json, capsule.md, bundle.tar.gz   the capsule's files, immutable
    status.json                               {state, fixed_in, verdict, by, at, issue,
                                               history} — changed only by CAS
    replays/<time>-<agent>.json               one per replay of the pushed capsule:
                                               {at, by, against, verdict, evidence, runs}

``push`` uploads the files (create-if-absent: the id names the content) and creates the
status (``open``); ``pull`` downloads them and loads the capsule (which checks it);
``resolve`` records ``resolved`` with the fix ref and the replay verdict; ``watch``
waits until the capsule is resolved — in the bucket, or by its GitHub issue closing
(through ``gh``) — and returns the status. ``issue`` renders the issue body and files or
updates it with ``gh``, found again by the marker in its body, so running it twice
changes one issue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import Any

from ..errors import AlreadyExists, NotFound, Refused, TraceboxError, UsageError
from . import model
from .model import Capsule

PREFIX = "capsules/"
_ID = re.compile(r"cap-[0-9a-f]{24}")
GH_TIMEOUT = 60.0


def is_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def _key(cid: str, name: str) -> str:
    if not is_id(cid):
        raise UsageError(f"invalid capsule id {cid!r} (cap- and 24 hex digits)")
    return f"{PREFIX}{cid}/{name}"


def push(project, c: Capsule) -> dict:
    """Upload the capsule's files and create its status; returns the status."""
    from ..coord import events
    from ..coord.context import iso, now

    if c.folder is None:
        raise UsageError("only a capsule written to a folder can be pushed")
    ctx = project.ctx
    names = [model.CAPSULE_JSON, *sorted(c.doc.get("files") or {})]
    for name in names:
        with open(os.path.join(c.folder, name), "rb") as f:
            data = f.read()
        try:
            ctx.store.create(ctx.key(_key(c.id, name)), data)
        except AlreadyExists:
            pass  # the same id names the same bytes
    status = {
        "state": "open",
        "capsule": c.id,
        "by": project.agent,
        "at": iso(now()),
        "history": [],
    }
    try:
        ctx.create_json(_key(c.id, "status.json"), status)
        events.record(ctx, "capsule.pushed", data={"capsule": c.id})
    except AlreadyExists:
        status = get_status(project, c.id)
    return status


def fetch_doc(project, cid: str) -> tuple[bytes, dict]:
    """The ``capsule.json`` of pushed capsule ``cid``: its bytes and its document
    (checked by ``model.parse``); NotFound when it was never pushed."""
    ctx = project.ctx
    try:
        data = ctx.store.get(ctx.key(_key(cid, model.CAPSULE_JSON))).data
    except NotFound:
        raise NotFound(f"no capsule {cid} in project {project.name}") from None
    return data, model.parse(data)


def pull(project, cid: str, folder: str) -> Capsule:
    """Download capsule ``cid`` into ``folder`` and load it."""
    ctx = project.ctx
    doc_bytes, doc = fetch_doc(project, cid)
    tmp = f"{folder}.{os.getpid()}.tmp"
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, model.CAPSULE_JSON), "wb") as f:
        f.write(doc_bytes)
    for name in doc.get("files") or {}:
        if name not in (model.CAPSULE_MD, model.BUNDLE):
            continue  # untrusted: only the two names the format has
        blob = ctx.store.get(ctx.key(_key(cid, name))).data
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(blob)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.rename(tmp, folder)
    c = model.load(folder)
    if c.id != cid:
        raise Refused(f"capsule {cid}: the stored capsule.json has id {c.id}")
    return c


def get_status(project, cid: str) -> dict:
    got = project.ctx.get_json(_key(cid, "status.json"))
    if got is None:
        raise NotFound(f"capsule {cid} was never pushed to project {project.name}")
    return got[0]


def update_status(project, cid: str, **changes: Any) -> dict:
    """Merge ``changes`` into the status (CAS); the previous state goes to ``history``."""
    from ..coord.context import cas_loop, iso, now

    def change(old: dict | None) -> dict:
        if old is None:
            raise NotFound(f"capsule {cid} was never pushed to project {project.name}")
        hist = list(old.get("history") or [])[-50:]
        hist.append({k: old.get(k) for k in ("state", "fixed_in", "verdict", "by", "at")})
        return {**old, **changes, "by": project.agent, "at": iso(now()), "history": hist}

    return cas_loop(project.ctx, _key(cid, "status.json"), change)[1]


MAX_REPLAYS_LISTED = 200


def record_replay(project, cid: str, record: dict) -> dict:
    """Keep a replay's verdict beside the pushed capsule (create-only, one object per
    replay) and log ``capsule.replayed``; what maintainers found is then visible to the
    reporter and in `tracebox ui`."""
    from ..coord import events
    from ..coord.context import iso, now, sortable

    t = now()
    at = iso(t)
    ev = record.get("evidence") or {}
    doc = {
        "capsule": cid,
        "at": at,
        "by": project.agent,
        "against": record.get("against"),
        "verdict": record.get("verdict"),
        "evidence": {
            k: ev.get(k) for k in ("reason", "summary", "exit_code", "expected_exit_code")
        },
        "runs": [
            {k: r.get(k) for k in ("command", "exit_code", "seconds")}
            for r in record.get("runs") or []
        ][:20],
    }
    if record.get("agent"):
        a = record["agent"]
        doc["agent"] = {k: a.get(k) for k in ("command", "exit_code", "seconds", "metrics")}
    ctx = project.ctx
    ctx.create_json(_key(cid, f"replays/{sortable(t)}-{project.agent}.json"), doc)
    events.record(
        ctx,
        "capsule.replayed",
        data={"capsule": cid, "against": doc["against"], "verdict": doc["verdict"]},
    )
    return doc


def replays(project, cid: str) -> list[dict]:
    """The recorded replays of a pushed capsule, oldest first."""
    from ..coord.context import fetch_many

    prefix = project.ctx.key(_key(cid, "replays/"))
    keys = sorted(m.key for m in project.store.list(prefix) if m.key.endswith(".json"))
    return [d for d in fetch_many(project.ctx, keys[-MAX_REPLAYS_LISTED:]) if d]


def resolve(
    project, cid: str, fixed_in: str, verdict: dict | None = None, note: str | None = None
) -> dict:
    from ..coord import events

    status = update_status(
        project,
        cid,
        state="resolved",
        fixed_in=fixed_in,
        verdict=verdict.get("verdict") if verdict else None,
        evidence=(verdict or {}).get("evidence"),
        note=note,
    )
    events.record(project.ctx, "capsule.resolved", data={"capsule": cid, "fixed_in": fixed_in})
    return status


def watch(
    project,
    cid: str,
    *,
    timeout: float,
    interval: float = 2.0,
    issue: dict | None = None,
) -> dict | None:
    """The status once the capsule is resolved, or None on timeout. ``issue``
    (``{repo, number}``) is also polled with ``gh``: closed as completed counts."""
    deadline = time.monotonic() + timeout
    while True:
        status = get_status(project, cid)
        if status.get("state") == "resolved":
            return status
        issue = issue or status.get("issue")
        if issue and shutil.which("gh"):
            state = _gh_issue_state(issue)
            if (
                state
                and state.get("state") == "CLOSED"
                and state.get("stateReason") != "NOT_PLANNED"
            ):
                return {
                    **status,
                    "state": "resolved",
                    "fixed_in": status.get("fixed_in"),
                    "via": "issue closed",
                }
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))


# -- GitHub issues through gh -----------------------------------------------------------------


def _gh(*args: str, stdin: str | None = None) -> str:
    if not shutil.which("gh"):
        raise TraceboxError("gh (GitHub CLI) is not installed: use --dry-run and file it by hand")
    try:
        p = subprocess.run(
            ["gh", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=GH_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise TraceboxError(f"gh {args[0]} {args[1]} took longer than {GH_TIMEOUT:.0f} s") from None
    if p.returncode != 0:
        why = (p.stderr or p.stdout).strip().splitlines()
        raise TraceboxError(f"gh {' '.join(args[:2])} failed: {why[-1] if why else p.returncode}")
    return p.stdout


def _gh_issue_state(issue: dict) -> dict | None:
    try:
        out = _gh(
            "issue",
            "view",
            str(issue["number"]),
            "--repo",
            str(issue["repo"]),
            "--json",
            "state,stateReason,url",
        )
        return json.loads(out)
    except (TraceboxError, ValueError, KeyError):
        return None


def file_issue(doc: dict, body: str, repo: str, title: str | None = None) -> dict:
    """Create the issue, or edit the one that already carries this capsule's marker."""
    from .render import MARKER

    marker = MARKER.format(id=doc.get("id"))
    found = json.loads(
        _gh(
            "issue",
            "list",
            "--repo",
            repo,
            "--state",
            "all",
            "--search",
            f"{doc.get('id')} in:body",
            "--json",
            "number,body,url",
            "--limit",
            "20",
        )
        or "[]"
    )
    title = title or issue_title(doc)
    for item in found:
        if isinstance(item, dict) and marker in str(item.get("body") or ""):
            _gh(
                "issue", "edit", str(item["number"]), "--repo", repo, "--body-file", "-", stdin=body
            )
            return {
                "repo": repo,
                "number": item["number"],
                "url": item.get("url"),
                "action": "updated",
            }
    url = _gh(
        "issue", "create", "--repo", repo, "--title", title, "--body-file", "-", stdin=body
    ).strip()
    number = url.rstrip("/").rsplit("/", 1)[-1]
    return {
        "repo": repo,
        "number": int(number) if number.isdigit() else number,
        "url": url,
        "action": "created",
    }


def issue_title(doc: dict) -> str:
    return f"[tracebox capsule] {model.headline(doc)[:100]}"
