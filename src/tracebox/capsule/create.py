"""Making a capsule: a parsed Session and its repository → the capsule document.

``build(session, repo=…)`` finds the failing step (``find_failure``: the last real error
that the session did not fix later — a failing command or test, a tool error, an API
error — or the step the user names), the episode that led to it (from the user prompt
that started it), and assembles every section of docs/capsule.md:

* ``intent`` — that prompt, as the agent received it (and the session's first prompt);
* ``trajectory`` — every action of the episode in order: tool calls with arguments and
  results (long text cut with an explicit ``…[cut N chars]…`` marker), what the agent
  said between them, and a compact summary of the steps before the episode;
* ``context`` — instruction files (CLAUDE.md, AGENTS.md, …) as they are at the snapshot,
  files the agent read (their hash when unchanged since it read them, else what it saw),
  the tools it used, the system prompt only when asked, environment facts;
* ``failure`` — the failing step: tool, command, exit code, the output exactly as the
  agent saw it, and its failure signature (``signature.py``);
* ``snapshot`` — the repository: remote URL (credentials removed), base commit, branch;
  the uncommitted diff, unpushed commits (as patches) and untracked files the agent used
  go into the bundle;
* ``reproduce`` — the command(s) that reproduce the failure (the failing command, or
  ``test_command``) and what to expect; ``metrics`` — steps, tool calls, errors, retries,
  loops, tokens, cost, wall time; ``scrub`` — what the scrubber redacted, by category.

Everything — the document, the summary and every bundle member — passes through the
scrubber before it is returned; ``include_system_prompt`` is off by default. The
repository is only read (git commands with a timeout); nothing is executed from the
session. Commits made after the session are never credited to it: the snapshot is the
repository as it is now (``created``), shown next to the session's own times.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..trace import signature
from ..trace.facts import calls as _calls
from ..trace.facts import command_of, read_path
from ..trace.facts import failed as _failed
from ..trace.facts import results as _results
from ..trace.model import Reasoning, Session, Step, Text, ToolCall, ToolResult, summarize
from . import model

OUTPUT_KEEP = 4000  # chars of a tool result kept in the trajectory
ARG_KEEP = 2000  # chars of one string argument
ERROR_KEEP = 20_000  # chars of the failing step's output
SAY_KEEP = 1000  # chars of what the agent said between actions
FILE_KEEP = 20_000  # chars of a file as the agent saw it
INSTRUCTION_KEEP = 50_000
UNTRACKED_MAX = 512 << 10  # one untracked file
BUNDLE_MAX = 32 << 20  # all bundle members together
MAX_ACTIONS = 500
GIT_TIMEOUT = 30.0

INSTRUCTION_FILES = (
    "CLAUDE.md",
    "AGENTS.md",
    "GEMINI.md",
    ".cursorrules",
    ".github/copilot-instructions.md",
    "CONTRIBUTING.md",
)
LOCKFILES = (
    "uv.lock",
    "poetry.lock",
    "Pipfile.lock",
    "requirements.txt",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "Cargo.lock",
    "go.sum",
    "Gemfile.lock",
)


@dataclass
class Failure:
    step: int  # index of the step holding the failing result (or the API error)
    kind: str  # "command", "tool_error", "api_error"
    call: ToolCall | None = None
    result: ToolResult | None = None
    call_step: int | None = None


@dataclass
class Built:
    """A capsule before it is written: the scrubbed, finalized document (id set), the
    files beside it (capsule.md, bundle.tar.gz) and the bundle's members."""

    doc: dict
    blobs: dict[str, bytes]
    bundle: dict[str, bytes] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return self.blobs[model.CAPSULE_MD].decode()


# -- finding the failure ---------------------------------------------------------------------


def find_failure(session: Session, step: int | None = None) -> Failure:
    """The failing step: ``step`` if given, else the last failure the session did not fix
    later (a failing command that later succeeded, run the same way, was fixed)."""
    calls = _calls(session)
    found: list[Failure] = []
    ok_commands: dict[str, int] = {}  # command -> last step where it succeeded
    for st in session.steps:
        if st.error is not None and st.error.kind in ("api_error", "error", "timeout"):
            found.append(Failure(st.index, "api_error"))
        for p in st.parts:
            if not isinstance(p, ToolResult):
                continue
            call_step, call = calls.get(p.call_id, (None, None))
            cmd = command_of(call)
            if _failed(p):
                found.append(
                    Failure(st.index, "command" if cmd else "tool_error", call, p, call_step)
                )
            elif cmd:
                ok_commands[cmd] = st.index
    if step is not None:
        for f in found:
            if step in (f.step, f.call_step):
                return f
        if not 0 <= step < len(session.steps):
            raise UsageError(f"--step {step}: the session has steps 0..{len(session.steps) - 1}")
        raise UsageError(f"step {step} holds no failure (no failing tool result or API error)")
    for f in reversed(found):
        cmd = command_of(f.call)
        if cmd and ok_commands.get(cmd, -1) > f.step:
            continue  # the agent ran it again and it passed: fixed within the session
        return f
    raise UsageError(
        "no failing step found in the session (no failing command, tool error or API error "
        "that was not fixed later); pass --step N to choose one"
    )


def _is_prompt(st: Step) -> bool:
    if st.source != "user" or st.copied:
        return False
    text = "".join(p.text for p in st.parts if isinstance(p, Text)).strip()
    return bool(text) and not text.startswith(("<command-", "<local-command", "Caveat:"))


def _prompt_text(st: Step) -> str:
    return "\n".join(p.text for p in st.parts if isinstance(p, Text)).strip()


def episode_start(session: Session, upto: int) -> int:
    """Index of the user prompt that started the episode ending at step ``upto``."""
    for st in reversed(session.steps[: upto + 1]):
        if _is_prompt(st):
            return st.index
    return 0


# -- text helpers -------------------------------------------------------------------------


def cut(text: str, keep: int, tail: float = 0.4) -> tuple[str, int]:
    """``text`` cut to about ``keep`` chars (head and tail kept, an explicit marker in
    between), and how many chars were cut."""
    if len(text) <= keep:
        return text, 0
    t = int(keep * tail)
    h = keep - t
    n = len(text) - keep
    return f"{text[:h]}\n…[cut {n} chars]…\n{text[len(text) - t :]}", n


def _cut_args(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return cut(value, ARG_KEEP)[0]
    if isinstance(value, dict) and depth < 20:
        return {str(k): _cut_args(v, depth + 1) for k, v in list(value.items())[:200]}
    if isinstance(value, list) and depth < 20:
        return [_cut_args(v, depth + 1) for v in value[:200]]
    return value


# -- git ----------------------------------------------------------------------------------


def _run_git(repo: str, args: tuple[str, ...], env: dict, timeout: float):
    return subprocess.run(
        ["git", "-C", repo, *args],
        capture_output=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C", **env},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def git_ok(repo: str, *args: str, env: dict | None = None, timeout: float = GIT_TIMEOUT) -> bool:
    """Whether ``git -C repo args`` succeeds (False too when git is missing or too slow)."""
    try:
        return _run_git(repo, args, env or {}, timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def git(repo: str, *args: str, check: bool = True, text: bool = True) -> Any:
    """Run ``git -C repo args`` (no pager, no prompts, a timeout); stdout."""
    try:
        p = _run_git(repo, args, {}, GIT_TIMEOUT)
    except FileNotFoundError:
        raise UsageError("git is not installed; a capsule needs it for the snapshot") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"git {' '.join(args[:2])} took longer than {GIT_TIMEOUT:.0f} s") from None
    if check and p.returncode != 0:
        why = p.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(f"git {' '.join(args[:3])} failed: {why[-1] if why else p.returncode}")
    return p.stdout.decode("utf-8", "replace") if text else p.stdout


def _no_credentials(url: str | None) -> str | None:
    if not url:
        return None
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url.strip(), flags=re.I)


def repo_root(path: str) -> str:
    if not os.path.isdir(path):
        raise UsageError(
            f"{path}: no such folder (pass --repo PATH, the repository the session ran in)"
        )
    out = git(path, "rev-parse", "--show-toplevel", check=False).strip()
    if not out:
        raise UsageError(f"{path} is not inside a git repository (pass --repo PATH)")
    return out


def snapshot(root: str, wanted: set[str]) -> tuple[dict, dict[str, bytes]]:
    """The ``snapshot`` section and its bundle members. ``wanted``: repo-relative paths
    the agent used, whose untracked versions go into the bundle."""
    head = git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).strip() or None
    branch = git(root, "rev-parse", "--abbrev-ref", "HEAD", check=False).strip() or None
    remote = _no_credentials(git(root, "remote", "get-url", "origin", check=False).strip())
    members: dict[str, bytes] = {}
    snap: dict[str, Any] = {
        "remote": remote,
        "branch": branch if branch != "HEAD" else None,
        "head": head,
        "base_commit": head,
    }
    total = 0
    if head and remote:
        unpushed = git(root, "rev-list", "--reverse", "HEAD", "--not", "--remotes").split()
        if unpushed:
            base = git(root, "rev-parse", f"{unpushed[0]}^", check=False).strip() or None
            snap["base_commit"] = base
            snap["unpushed_commits"] = len(unpushed)
            for i, sha in enumerate(unpushed[:200], 1):
                patch = git(root, "format-patch", "--stdout", "-1", "--binary", sha, text=False)
                if total + len(patch) > BUNDLE_MAX:
                    snap["bundle_incomplete"] = "unpushed commits beyond the size limit"
                    break
                members[f"snapshot/commits/{i:04d}.patch"] = patch
                total += len(patch)
    if head:
        diff = git(root, "diff", "--binary", "HEAD", text=False)
        if diff and total + len(diff) <= BUNDLE_MAX:
            members["snapshot/diff.patch"] = diff
            total += len(diff)
        snap["changed_files"] = [
            line for line in git(root, "diff", "--name-only", "HEAD").splitlines() if line
        ][:1000]
    untracked = [
        u for u in git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0") if u
    ]
    snap["untracked_files"] = len(untracked)
    kept = []
    for rel in untracked:
        path = os.path.join(root, rel)
        if rel not in wanted or os.path.islink(path) or not os.path.isfile(path):
            continue
        if os.path.getsize(path) > UNTRACKED_MAX or total > BUNDLE_MAX:
            continue
        with open(path, "rb") as f:
            data = f.read()
        members[f"snapshot/untracked/{model.safe_member(rel)}"] = data
        kept.append(rel)
        total += len(data)
    snap["untracked"] = kept
    return snap, members


# -- context ------------------------------------------------------------------------------


def _rel(path: Any, root: str, cwd: str | None) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    full = os.path.normpath(path if os.path.isabs(path) else os.path.join(cwd or root, path))
    rel = os.path.relpath(full, root)
    return None if rel.startswith("..") else rel


def _read_text(path: str, limit: int) -> str | None:
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    return cut(data.decode("utf-8", "replace"), limit)[0]


def _file_sha(path: str) -> str | None:
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return model.sha256(f.read(64 << 20))
    except OSError:
        return None


def _epoch(ts: str | None) -> float | None:
    from ..coord.context import parse_iso
    from ..errors import FormatError

    if not ts:
        return None
    try:
        return parse_iso(ts).timestamp()
    except (FormatError, ValueError):
        return None


def context(session: Session, root: str, upto: int, include_system_prompt: bool) -> dict:
    calls, results = _calls(session), _results(session)
    instructions = []
    for name in INSTRUCTION_FILES:
        path = os.path.join(root, name)
        text = _read_text(path, INSTRUCTION_KEEP)
        if text is not None:
            instructions.append({"path": name, "sha256": _file_sha(path), "content": text})
    read: dict[str, dict] = {}
    tools: Counter[str] = Counter()
    for call_step, call in calls.values():
        if call_step > upto:
            continue
        tools[call.name] += 1
        rel = _rel(read_path(call), root, session.cwd)
        if rel is None or rel in read:
            continue
        full = os.path.join(root, rel)
        entry: dict[str, Any] = {"path": rel, "step": call_step}
        got = results.get(call.id)
        seen_at = _epoch(session.steps[got[0]].timestamp) if got else None
        try:
            mtime = os.stat(full).st_mtime if not os.path.islink(full) else None
        except OSError:
            mtime = None
        entry["sha256_at_snapshot"] = _file_sha(full)
        if mtime is not None and seen_at is not None and mtime <= seen_at:
            entry["unchanged_since_read"] = True  # the snapshot holds what it saw
        elif got is not None:
            entry["seen"] = cut(got[1].output, FILE_KEEP)[0]
        read[rel] = entry
    system = None
    if include_system_prompt:
        system = (
            "\n".join(
                _prompt_text(st) or "".join(p.text for p in st.parts if isinstance(p, Text))
                for st in session.steps
                if st.source == "system"
            )
            or None
        )
    return {
        "instructions": instructions,
        "files_read": list(read.values()),
        "tools_used": dict(tools.most_common()),
        "system_prompt": system,
        "environment": environment(root),
    }


def _version(argv: list[str]) -> str | None:
    try:
        p = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (p.stdout or p.stderr).decode("utf-8", "replace").strip().splitlines()
    return out[0][:200] if p.returncode == 0 and out else None


def environment(root: str) -> dict:
    env: dict[str, Any] = {
        "os": platform.system(),
        "os_release": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "git": _version(["git", "--version"]),
    }
    markers = {
        "node": ("package.json", ["node", "--version"]),
        "go": ("go.mod", ["go", "version"]),
        "cargo": ("Cargo.toml", ["cargo", "--version"]),
    }
    for name, (marker, argv) in markers.items():
        if os.path.exists(os.path.join(root, marker)):
            env[name] = _version(argv)
    env["lockfiles"] = {
        name: sha for name in LOCKFILES if (sha := _file_sha(os.path.join(root, name)))
    }
    return env


# -- metrics ------------------------------------------------------------------------------


def metrics(session: Session) -> dict:
    from ..index.stats import cost, price_for

    s = summarize(session)
    calls = _calls(session)
    runs: Counter[str] = Counter()
    failing: Counter[str] = Counter()
    retries = 0
    last_failed: set[str] = set()
    for st in session.steps:
        for p in st.parts:
            if not isinstance(p, ToolResult):
                continue
            cmd = command_of(calls.get(p.call_id, (0, None))[1])
            if not cmd:
                continue
            runs[cmd] += 1
            if cmd in last_failed:
                retries += 1
            if _failed(p):
                failing[cmd] += 1
                last_failed.add(cmd)
            else:
                last_failed.discard(cmd)
    price = price_for(s.models[0]) if s.models else None
    started, ended = _epoch(session.started), _epoch(session.ended)
    return {
        "steps": s.steps,
        "tool_calls": s.tool_calls,
        "tool_errors": s.tool_errors,
        "api_errors": s.api_errors,
        "retries": retries,
        "loops": [
            {"command": cut(c, 300)[0], "runs": runs[c], "failed": n}
            for c, n in failing.most_common(10)
            if n >= 3
        ],
        "tokens": {
            "input": s.usage.input,
            "output": s.usage.output,
            "cache_read": s.usage.cache_read,
            "cache_write": s.usage.cache_write,
        },
        "cost_usd": round(cost(s.usage, price), 6) if price else None,
        "wall_s": round(ended - started, 3) if started and ended else None,
        "subagents": s.subagents,
        "compactions": s.compactions,
    }


# -- the capsule --------------------------------------------------------------------------


def trajectory(session: Session, start: int, upto: int) -> dict:
    results = _results(session)
    actions: list[dict] = []
    for st in session.steps[start : upto + 1]:
        said = "\n".join(p.text for p in st.parts if isinstance(p, Text)).strip()
        if st.source == "agent" and said:
            actions.append({"step": st.index, "say": cut(said, SAY_KEEP)[0]})
        for p in st.parts:
            if not isinstance(p, ToolCall):
                continue
            action: dict[str, Any] = {"step": st.index, "tool": p.name, "call_id": p.id}
            action["arguments"] = _cut_args(p.arguments)
            r = results.get(p.id, (None, None))[1]
            if r is not None:
                out, n = cut(r.output, OUTPUT_KEEP)
                action["result"] = {"output": out, "is_error": r.is_error, "exit_code": r.exit_code}
                if n:
                    action["result"]["cut_chars"] = n
            actions.append(action)
    earlier = session.steps[:start]
    tools = Counter(p.name for st in earlier for p in st.parts if isinstance(p, ToolCall))
    prompts = [cut(_prompt_text(st), 300)[0] for st in earlier if _is_prompt(st)]
    dropped = max(0, len(actions) - MAX_ACTIONS)
    return {
        "episode_start": start,
        "failing_step": upto,
        "actions": actions[dropped:],
        "actions_dropped": dropped,
        "earlier": {
            "steps": len(earlier),
            "tool_calls": sum(tools.values()),
            "tools": dict(tools.most_common(20)),
            "prompts": prompts[-5:],
            "reasoning_steps": sum(
                1 for st in earlier if any(isinstance(p, Reasoning) for p in st.parts)
            ),
        },
    }


def build(
    session: Session,
    *,
    repo: str | None = None,
    step: int | None = None,
    test_command: str | None = None,
    expect: str | None = None,
    include_system_prompt: bool = False,
    scrubber=None,
) -> Built:
    """The capsule of ``session``'s failure, scrubbed (see the module docstring)."""
    from .. import __version__

    root = repo_root(repo or session.cwd or os.getcwd())
    f = find_failure(session, step)
    upto = max(f.step, f.call_step or 0)
    start = episode_start(session, f.call_step if f.call_step is not None else f.step)
    prompt_step = session.steps[start] if session.steps else None
    first = next((st for st in session.steps if _is_prompt(st)), None)

    cmd = command_of(f.call)
    output = f.result.output if f.result is not None else ""
    if f.kind == "api_error":
        err = session.steps[f.step].error
        output = f"{err.kind}: {err.message}" if err else "api_error"
    exit_code = f.result.exit_code if f.result is not None else None
    sig = signature.extract(output, cmd, exit_code)
    if expect:
        sig = signature.Signature(
            sig.framework, sig.failed, (expect, *sig.errors), sig.summary, sig.exit_code
        )
    error_text, error_cut = cut(output, ERROR_KEEP, tail=0.6)
    failure = {
        "step": f.step,
        "kind": f.kind,
        "tool": f.call.name if f.call else None,
        "call_id": f.call.id if f.call else None,
        "command": cmd,
        "arguments": _cut_args(f.call.arguments) if f.call and not cmd else None,
        "exit_code": exit_code,
        "is_error": f.result.is_error if f.result else None,
        "error": error_text,
        "error_cut_chars": error_cut,
        "signature": sig.to_dict(),
        "timestamp": session.steps[f.step].timestamp,
    }
    cwd_rel = _rel(session.cwd, root, None) if session.cwd else None
    commands = [test_command] if test_command else ([cmd] if cmd else [])
    reproduce = {
        "commands": commands,
        "cwd": cwd_rel or ".",
        "declared": bool(test_command),
        "expect": {"exit_code": exit_code, "signature": sig.to_dict()},
        "timeout_s": 600,
    }

    traj = trajectory(session, start, upto)
    wanted = set(filter(None, (_rel(p, root, session.cwd) for p in session.files_touched)))
    ctx = context(session, root, upto, include_system_prompt)
    wanted |= {e["path"] for e in ctx["files_read"]}
    snap, members = snapshot(root, wanted)
    from ..coord.context import iso, now

    doc: dict[str, Any] = {
        "format": model.FORMAT,
        "version": model.VERSION,
        "created": iso(now()),  # also when the snapshot was taken; not part of the id
        "tool": {"name": "tracebox", "version": __version__},
        "source": {
            "harness": session.harness,
            "session_id": session.id,
            "agent": session.agent,
            "models": session.models,
            "started": session.started,
            "ended": session.ended,
            "git_branch": session.git_branch,
            "git_commit": session.git_commit,
        },
        "intent": {
            "step": start,
            "prompt": _prompt_text(prompt_step)
            if prompt_step and _is_prompt(prompt_step)
            else None,
            "session_prompt": _prompt_text(first) if first and first.index != start else None,
        },
        "trajectory": traj,
        "context": ctx,
        "failure": failure,
        "snapshot": snap,
        "reproduce": reproduce,
        "metrics": metrics(session),
    }
    return _scrubbed(doc, members, scrubber)


def _scrubbed(doc: dict, members: dict[str, bytes], scrubber) -> Built:
    """The document, every bundle member and the summary through one scrubber; its
    counts go into ``scrub``. Redaction keeps JSON valid, so the document is re-read."""
    import json

    if scrubber is None:
        from ..scrub import Scrubber

        scrubber = Scrubber()
    counts: Counter[str] = Counter()
    clean, c = scrubber.scrub_counted(json.dumps(doc, ensure_ascii=False).encode())
    counts.update(c)
    doc = json.loads(clean)
    bundle = {}
    for name, data in members.items():
        out, c = scrubber.scrub_counted(data)
        counts.update(c)
        bundle[name] = out
    if bundle:
        doc["snapshot"]["bundle"] = {
            "file": model.BUNDLE,
            "members": {k: model.sha256(v) for k, v in sorted(bundle.items())},
        }
    doc["scrub"] = {"enabled": True, "counts": dict(sorted(counts.items()))}
    doc, blobs = model.finalize(doc, bundle)
    return Built(doc, blobs, bundle)
