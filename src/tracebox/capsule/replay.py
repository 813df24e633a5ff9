"""Replaying a capsule: its snapshot in a fresh worktree, its reproduction run, a verdict.

``replay(capsule, repo=…, against=…)``:

1. **materialize** — clone the repository (``repo``: a local clone, shared, so nothing is
   copied or changed in it; or a URL; default the capsule's remote) into a temporary
   folder, check out the capsule's base commit (or ``against``, e.g. the fix), then apply
   what the bundle holds: unpushed commits, the uncommitted diff, the untracked files.
   Every patch is checked first: no absolute paths, no ``..``, nothing under ``.git``, no
   symlinks; untracked files are written only to regular paths inside the worktree. On
   ``against``, a change the ref already contains is skipped, and one that no longer
   applies makes the verdict inconclusive (with the reason);
2. **run** the reproduction commands there with ``sandbox.run`` (allow-listed env,
   throwaway HOME, no network when possible, timeout, bounded output);
3. **judge** with ``signature.compare``: ``reproduces`` (the same test fails with the
   same error), ``fixed`` (it passes now) or ``inconclusive`` — with the evidence;
4. with ``agent`` (a command template, ``{prompt_file}``/``{prompt}`` filled in), also
   re-pose the capsule's intent to that agent in the worktree (sandboxed like the rest,
   but with network, which agents need), read the session it recorded in its throwaway
   HOME with the harness adapters, report its process metrics beside the original's,
   and run the reproduction again: did the agent get past the failure?

This module is the only place a capsule's content is executed, and only here on purpose.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tempfile
from typing import Any

from ..errors import FormatError, UsageError
from ..text import tail
from ..trace import signature
from . import sandbox
from .create import GIT_TIMEOUT, git, git_ok
from .model import Capsule

_DIFF_PATHS = re.compile(
    rb"^(?:diff --git a/(\S+) b/(\S+)|(?:\+\+\+|---) [ab]/(\S+)|"
    rb"(?:rename|copy) (?:from|to) (\S+))",
    re.M,
)
_LINK_MODE = re.compile(rb"^(?:new file|old|new|deleted file) mode 120000", re.M)
_COMMITTER = {
    "GIT_AUTHOR_NAME": "tracebox replay",
    "GIT_AUTHOR_EMAIL": "replay@tracebox.invalid",
    "GIT_COMMITTER_NAME": "tracebox replay",
    "GIT_COMMITTER_EMAIL": "replay@tracebox.invalid",
}


def check_patch(data: bytes, what: str) -> None:
    """Refuse a patch that touches anything outside the worktree, ``.git``, or a symlink."""
    if _LINK_MODE.search(data):
        raise FormatError(f"capsule: {what} creates or changes a symbolic link; refusing it")
    for m in _DIFF_PATHS.finditer(data):
        for raw in m.groups():
            if raw is None:
                continue
            path = raw.decode("utf-8", "replace").strip('"')
            norm = posixpath.normpath(path)
            if (
                path.startswith("/")
                or norm == ".."
                or norm.startswith("../")
                or norm == ".git"
                or norm.startswith(".git/")
                or "/.git/" in f"/{norm}/"
            ):
                raise FormatError(f"capsule: {what} touches {path!r}, outside the worktree")


def _inside(root: str, rel: str) -> str:
    """The absolute path of ``rel`` in ``root``; refuses escapes, including via symlinks."""
    norm = posixpath.normpath(rel)
    if (
        rel.startswith("/")
        or norm.startswith("../")
        or norm in ("..", ".")
        or ".git" in norm.split("/")
    ):
        raise FormatError(f"capsule: untracked file {rel!r} points outside the worktree")
    path = os.path.join(root, *norm.split("/"))
    parent = os.path.realpath(os.path.dirname(path))
    real_root = os.path.realpath(root)
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise FormatError(f"capsule: untracked file {rel!r} would be written through a symlink")
    if os.path.islink(path):
        raise FormatError(f"capsule: untracked file {rel!r} would replace a symlink")
    return path


def _git_ok(root: str, *args: str) -> bool:
    return git_ok(root, *args, env=_COMMITTER, timeout=GIT_TIMEOUT * 4)


def _apply(root: str, patch: bytes, name: str, against: bool) -> str:
    """Apply one patch; returns "applied", "already there" (on ``against``) or raises."""
    check_patch(patch, name)
    path = os.path.join(root, ".git", f"tracebox-{os.path.basename(name)}")
    with open(path, "wb") as f:
        f.write(patch)
    try:
        if _git_ok(root, "apply", "--check", path):
            if _git_ok(root, "apply", "--whitespace=nowarn", path):
                return "applied"
        if against and _git_ok(root, "apply", "-R", "--check", path):
            return "already there"
        if _git_ok(root, "apply", "--3way", "--whitespace=nowarn", path):
            return "applied (3-way)"
    finally:
        os.remove(path)
    raise _NotApplied(f"{name} does not apply on this ref")


class _NotApplied(Exception):
    pass


def materialize(c: Capsule, dest: str, *, repo: str | None, against: str | None) -> dict:
    """Build the capsule's worktree in ``dest`` (which must not exist); what was done."""
    snap = c.section("snapshot")
    source = repo or snap.get("remote")
    if not source:
        raise UsageError(
            "the capsule names no remote repository: pass --repo PATH_OR_URL (a clone of it)"
        )
    local = os.path.isdir(source)
    args = ["clone", "--quiet", "--no-checkout"]
    if local:
        args.append("--shared")
        source = os.path.abspath(source)
    git(os.path.dirname(os.path.abspath(dest)) or ".", *args, source, dest)
    target = against or snap.get("base_commit")
    if not target:
        raise UsageError("the capsule has no base commit (an empty repository); nothing to replay")
    ok = _git_ok(dest, "checkout", "--quiet", "--detach", target)
    if not ok and against:  # a branch of the source is a remote-tracking one in the clone
        ok = _git_ok(dest, "checkout", "--quiet", "--detach", f"origin/{target}")
    if not ok:
        if against is None and local:
            raise UsageError(
                f"commit {str(target)[:12]} is not in {source}: fetch it, or pass --repo with "
                "a clone that has it"
            )
        raise UsageError(f"cannot check out {target!r} in {source}")
    commit = git(dest, "rev-parse", "HEAD").strip()
    done: dict[str, Any] = {"source": source, "ref": target, "commit": commit, "changes": []}
    bundle = c.bundle
    names = sorted(n for n in bundle if n.startswith("snapshot/commits/"))
    if "snapshot/diff.patch" in bundle:
        names.append("snapshot/diff.patch")
    for name in names:
        done["changes"].append(
            {"patch": name, "result": _apply(dest, bundle[name], name, bool(against))}
        )
    prefix = "snapshot/untracked/"
    for name in sorted(n for n in bundle if n.startswith(prefix)):
        path = _inside(dest, name[len(prefix) :])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(bundle[name])
        done["changes"].append({"untracked": name[len(prefix) :]})
    return done


def replay(
    c: Capsule,
    *,
    repo: str | None = None,
    against: str | None = None,
    commands: list[str] | None = None,
    timeout: float | None = None,
    keep: bool = False,
    network: bool = False,
    extra_env: dict[str, str] | None = None,
    on_run=None,
    agent: str | None = None,
    agent_timeout: float = 1800.0,
) -> dict:
    """Materialize, run, judge (see the module docstring). Returns the verdict record."""
    rep = c.section("reproduce")
    cmds = commands or [x for x in rep.get("commands") or [] if isinstance(x, str) and x]
    if not cmds:
        raise UsageError(
            "the capsule declares no reproduction command; pass --command CMD to run one"
        )
    expected = signature.Signature.from_dict((rep.get("expect") or {}).get("signature") or {})
    tmp = tempfile.mkdtemp(prefix="tracebox-replay-")
    dest = os.path.join(tmp, "worktree")
    record: dict[str, Any] = {
        "capsule": c.id,
        "against": against,
        "isolation": sandbox.isolation(network),
        "runs": [],
    }
    try:
        try:
            record["worktree"] = materialize(c, dest, repo=repo, against=against)
        except _NotApplied as e:
            record.update(verdict="inconclusive", evidence={"reason": str(e)})
            return record
        cwd_rel = str(rep.get("cwd") or ".")
        cwd = dest if cwd_rel in (".", "") else _inside(dest, cwd_rel)
        if not os.path.isdir(cwd):
            record.update(
                verdict="inconclusive",
                evidence={"reason": f"the working directory {cwd_rel!r} is not in the snapshot"},
            )
            return record
        limit = float(timeout or rep.get("timeout_s") or 600)
        result = None
        for i, cmd in enumerate(cmds):
            if on_run:
                on_run(cmd, record["isolation"])
            result = sandbox.run(cmd, cwd, timeout=limit, network=network, extra_env=extra_env)
            record["runs"].append(
                {
                    "command": cmd,
                    "exit_code": result.exit_code,
                    "seconds": result.seconds,
                    "timed_out": result.timed_out,
                    "output_tail": tail(result.output, 4000),
                }
            )
            last = i == len(cmds) - 1
            if not last and result.exit_code != 0:
                record.update(
                    verdict="inconclusive",
                    evidence={"reason": f"setup command {cmd!r} failed ({result.exit_code})"},
                )
                return record
        assert result is not None
        if result.timed_out:
            record.update(
                verdict="inconclusive",
                evidence={"reason": f"timed out after {limit:g} s", "exit_code": None},
            )
            return record
        verdict, evidence = signature.compare(expected, result.output, result.exit_code)
        record.update(verdict=verdict, evidence=evidence)
        if agent:
            record["agent"] = _with_agent(
                c, agent, cwd, cmds, expected, limit, agent_timeout, extra_env, on_run
            )
        return record
    finally:
        if keep:
            record["kept"] = dest
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _with_agent(c, template, cwd, cmds, expected, limit, timeout, extra_env, on_run) -> dict:
    """Re-pose the intent to an agent command; its session's metrics and a verdict after."""
    import shlex

    from .create import metrics

    prompt = str(c.section("intent").get("prompt") or "")
    prompt_file = os.path.join(cwd, ".tracebox-prompt.txt")
    with open(prompt_file, "w", encoding="utf-8") as f:
        f.write(prompt)
    cmd = template.replace("{prompt_file}", shlex.quote(prompt_file)).replace(
        "{prompt}", shlex.quote(prompt)
    )
    sessions: list = []

    def collect(home: str) -> None:
        sessions.extend(_sessions_in(home))

    if on_run:
        on_run(cmd, sandbox.isolation(network=True))
    ran = sandbox.run(
        cmd, cwd, timeout=timeout, network=True, extra_env=extra_env, before_cleanup=collect
    )
    os.remove(prompt_file)
    out: dict[str, Any] = {
        "command": cmd,
        "exit_code": ran.exit_code,
        "seconds": ran.seconds,
        "timed_out": ran.timed_out,
        "output_tail": tail(ran.output, 2000),
        "original_metrics": c.section("metrics"),
    }
    if sessions:
        s = max(sessions, key=lambda x: len(x.steps))
        out["session"] = {"harness": s.harness, "id": s.id, "models": s.models}
        out["metrics"] = metrics(s)
    else:
        out["session"] = None
        out["note"] = "the agent left no transcript tracebox can read in its HOME"
    after = sandbox.run(cmds[-1], cwd, timeout=limit, extra_env=extra_env)
    verdict, evidence = signature.compare(expected, after.output, after.exit_code)
    out["verdict_after"] = "inconclusive" if after.timed_out else verdict
    out["evidence_after"] = evidence
    return out


def _sessions_in(home: str) -> list:
    """Every session an agent recorded under ``home``, parsed (unreadable ones skipped)."""
    from ..capture import harnesses
    from ..errors import TraceboxError

    env = {"HOME": home}
    out = []
    for name in harnesses.ADAPTERS:
        try:
            adapter = harnesses.get(name)
            for sf in adapter.locate(cwd=None, env=env):
                out.append(adapter.parse(sf.path))
        except (TraceboxError, OSError, ModuleNotFoundError, ValueError):
            continue
    return out
