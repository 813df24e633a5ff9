"""A harness run: generations of agent variants that learn from each other's failures.

``run(cfg, project)`` creates the run ``<name>-<UTC time>`` and, per generation:

1. renders the prompt of each variant — the task, the variant's strategy, and the
   ``observations.md`` accumulated so far (none in generation 1);
2. runs every variant (``run_variant``) through an executor (``executors``: local
   threads, or Ray), at most ``parallel`` at once;
3. observes what happened: the rules of ``tracebox.observe`` over each variant's
   captured session, plus what the harness itself saw — the validator passing or failing
   the variant's change, a live rule stopping it — merged with earlier generations;
4. stops early with ``stop_when_solved`` once a variant passed the validator.

``run_variant(task)`` is self-contained (a picklable ``VariantTask`` in, a result dict
out), so any executor gives the same artefacts: it claims its slot (a lease on step
``<run>.g<n>.<variant>``), makes a git worktree at the base ref, starts a capture proxy
of its own (every model call → the spool → the bucket, as session ``<run>.g<n>.<variant>``),
runs the agent command in its own process group with the base URLs pointed at that
proxy, watches it with the live rules (``live.Watch``) and kills the group when one fires
or the timeout passes, mirrors the transcripts a known agent (Claude Code, Codex, …) wrote
for the worktree, runs the validator in the worktree, stores the prompt, output,
validator result and diff (scrubbed) under ``harness/<run>/gen-<n>/<variant>/`` and
completes its step with the outcome.

Bucket layout (docs/harness.md): ``harness/<run>/run.json``,
``harness/<run>/gen-<n>/{observations.md, observations.jsonl, summary.json}``,
``harness/<run>/gen-<n>/<variant>/{prompt.md, agent.log, validator.txt, diff.patch,
result.json}``, ``harness/<run>/report.{md,html}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import TraceboxError, UsageError
from ..text import tail
from . import config as cfgmod
from . import live

PREFIX = "harness/"
LOG_KEEP = 256 << 10  # bytes of an agent's output kept
DIFF_KEEP = 1 << 20
POLL_S = 0.2
KILL_GRACE_S = 3.0


@dataclass
class VariantTask:
    run_id: str
    generation: int
    variant: cfgmod.Variant
    cfg: cfgmod.Config
    bucket: str
    project: str
    s3: dict = field(default_factory=dict)
    observations: str = ""  # observations.md given to this generation
    workroot: str = ""

    @property
    def session(self) -> str:
        """The variant's session id, also the name of its step: ``<run>.g<n>.<variant>``."""
        return f"{self.run_id}.g{self.generation}.{self.variant.name}"


def prompt_of(task: str, variant: cfgmod.Variant, observations: str) -> str:
    parts = [f"# Task\n\n{task.strip()}\n"]
    if variant.strategy:
        parts.append(f"# Your strategy\n\n{variant.strategy.strip()}\n")
    if observations.strip():
        parts.append(observations.strip() + "\n")
    return "\n".join(parts)


def key(run_id: str, *parts: str) -> str:
    return PREFIX + "/".join([run_id, *parts])


# -- one variant -----------------------------------------------------------------------------


def run_variant(task: VariantTask) -> dict:
    """Run one variant end to end (see the module docstring); the result record."""
    from ..capture.mirror import make_scrubber
    from ..capture.proxy import providers, record, server
    from ..capture.proxy.app import ProxyApp
    from ..capture.proxy.spool import Spool
    from ..capture.proxy.store import Attributor
    from ..coord import events
    from ..project import open_project

    cfg, variant, step = task.cfg, task.variant, task.session
    # the variant acts as its own tracebox agent (short: the run's name, not its time)
    agent_id = f"{cfg.name}.g{task.generation}.{variant.name}"
    project = open_project(task.bucket, task.project, agent_id, **task.s3)
    scrub = make_scrubber(project).scrub_text
    base = os.path.join(task.workroot, f"g{task.generation}")
    os.makedirs(base, exist_ok=True)
    worktree = os.path.join(base, variant.name)
    prompt_file = os.path.join(base, f"{variant.name}.prompt.md")
    prompt = prompt_of(cfg.task, variant, task.observations)
    with open(prompt_file, "w", encoding="utf-8") as f:
        f.write(prompt)
    lease = project.claim(step, ttl=cfg.timeout + cfg.validator_timeout + 120)
    result: dict[str, Any] = {
        "run": task.run_id,
        "generation": task.generation,
        "variant": variant.name,
        "params": variant.params,
        "session": step,
        "agent": agent_id,
    }
    t0 = time.monotonic()
    with _worktree_lock(cfg.repo):
        _git(cfg.repo, "worktree", "add", "--detach", "--force", worktree, cfg.base)
    try:
        spool = Spool(
            root=os.path.join(task.workroot, "spool", step), project=project, ship="thread"
        )
        app = ProxyApp(providers.upstreams_from(os.environ), spool, attributor=Attributor())
        watch = live.Watch(cfg.rules, stop=live.stop_requests(project, step))
        sub = app.feed.subscribe(session=step, on_event=watch.event)
        proxy = server.start_in_thread(app)
        try:
            env = record.agent_env(
                {**os.environ, "TRACEBOX_AGENT": agent_id},
                record.Proxy(proxy.url, tagged=True),
                step,
                agent_id,
            )
            cmd = cfgmod.command_for(
                cfg,
                variant,
                prompt_file=prompt_file,
                workdir=worktree,
                variant=variant.name,
                generation=str(task.generation),
                run=task.run_id,
            )
            events.record(
                project.ctx,
                "harness.variant.start",
                data={"run": task.run_id, "generation": task.generation, "variant": variant.name},
            )
            code, log, stopped = _run_agent(cmd, worktree, env, cfg.timeout, watch)
            result.update(agent_exit=code, stopped=stopped, calls=watch.calls)
        finally:
            sub.close()
            proxy.stop()
            spool.close(drain_timeout=60)
        result["transcripts"] = _mirror_transcripts(project, worktree)
        v_code, v_out = _validate(cfg.validator, worktree, cfg.validator_timeout)
        diff = _diff(worktree, cfg.base)
        solved = v_code == 0 and not stopped
        result.update(
            solved=solved,
            validator_exit=v_code,
            validator_tail=tail(v_out, 4000),
            changed_files=_changed(diff),
            seconds=round(time.monotonic() - t0, 3),
        )
        store = project.ctx.store
        for name, data in (
            ("prompt.md", prompt),
            ("agent.log", log),
            ("validator.txt", v_out),
            ("diff.patch", diff),
        ):
            store.put(
                project.ctx.key(key(task.run_id, f"gen-{task.generation}", variant.name, name)),
                scrub(data).encode(),
            )
        result = json.loads(scrub(json.dumps(result)))
        store.put(
            project.ctx.key(
                key(task.run_id, f"gen-{task.generation}", variant.name, "result.json")
            ),
            json.dumps(result, indent=2).encode(),
        )
        if stopped:
            events.record(
                project.ctx,
                "harness.variant.stopped",
                data={
                    "run": task.run_id,
                    "variant": variant.name,
                    "generation": task.generation,
                    "reason": stopped,
                },
            )
        outcome = "solved" if solved else ("stopped" if stopped else "failed")
        project.complete(  # a failed or stopped attempt shows as blocked (red) on the timeline
            step,
            note=f"{outcome}: {stopped or tail(v_out, 200)}",
            epoch=lease["epoch"],
            blocked=not solved,
        )
        events.record(
            project.ctx,
            "harness.variant.end",
            data={
                "run": task.run_id,
                "generation": task.generation,
                "variant": variant.name,
                "outcome": outcome,
            },
        )
        return result
    finally:
        with _worktree_lock(cfg.repo):
            _git(cfg.repo, "worktree", "remove", "--force", worktree, check=False)
        project.ctx.flush()


def _mirror_transcripts(project, worktree: str) -> list[str]:
    """Mirror (scrubbed) the transcripts any known agent wrote while working in the
    worktree (Claude Code, Codex, …, found by their recorded working directory)."""
    from ..capture import mirror
    from ..capture.harnesses import ADAPTERS

    found = mirror.find_sessions(list(ADAPTERS), cwd=worktree)
    if not found:
        return []
    with mirror.Mirror(project, final=True) as m:
        done = m.mirror_many(found)
    return [f"{r.harness}:{r.session_id}" for r in done if r.status in ("uploaded", "unchanged")]


@contextlib.contextmanager
def _worktree_lock(repo: str):
    """git's worktree bookkeeping is not safe against concurrent ``worktree add``/``remove``
    in one repository: serialize them across threads and processes (Ray workers too)."""
    gitdir = _git(repo, "rev-parse", "--git-common-dir").strip()
    path = os.path.join(
        gitdir if os.path.isabs(gitdir) else os.path.join(repo, gitdir), "tracebox-worktree.lock"
    )
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _git(repo: str, *args: str, check: bool = True) -> str:
    p = subprocess.run(
        ["git", "-C", repo, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check and p.returncode != 0:
        raise TraceboxError(
            f"git {' '.join(args[:2])} failed in {repo}: {p.stderr.strip().splitlines()[-1:] or p.returncode}"
        )
    return p.stdout


def _run_agent(
    cmd: str, cwd: str, env: dict, timeout: float, watch: live.Watch
) -> tuple[int | None, str, str | None]:
    """Run the agent; returns (exit code, its output, why it was stopped or None)."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", cmd],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    buf = bytearray()

    def pump() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            watch.activity()
            if len(buf) < LOG_KEEP:
                buf.extend(chunk[: LOG_KEEP - len(buf)])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    stopped = None
    while proc.poll() is None:
        why = watch.check()
        if why is None and time.monotonic() > deadline:
            why = f"timeout: still running after {timeout:.0f} s"
        if why:
            stopped = why
            _kill(proc)
            break
        time.sleep(POLL_S)
    proc.wait()
    reader.join(5)
    return proc.returncode, buf.decode("utf-8", "replace"), stopped


def _kill(proc: subprocess.Popen) -> None:
    """Stop the agent's whole process group: SIGTERM, then SIGKILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _validate(cmd: str, cwd: str, timeout: float) -> tuple[int | None, str]:
    try:
        p = subprocess.run(
            ["/bin/sh", "-c", cmd],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as e:
        out = (
            (e.stdout or b"").decode("utf-8", "replace")
            if isinstance(e.stdout, bytes)
            else (e.stdout or "")
        )
        return None, out + f"\n[validator timed out after {timeout:.0f} s]"
    return p.returncode, (p.stdout + p.stderr)[-LOG_KEEP:]


def _diff(worktree: str, base: str) -> str:
    _git(worktree, "add", "-A", "--intent-to-add", ".", check=False)
    out = _git(worktree, "diff", "--binary", base, check=False)
    return out[:DIFF_KEEP]


def _changed(diff: str) -> list[str]:
    return sorted({ln[6:] for ln in diff.splitlines() if ln.startswith("+++ b/")})[:200]


# -- observing a generation ------------------------------------------------------------------


def observe_generation(project, results: list[dict], generation: int, entries: dict) -> dict:
    """Merge this generation's observations (its sessions + the harness's own) into entries.
    The sessions come from the bucket, scrubbed when they were captured."""
    from ..capture.proxy.store import calls_to_sessions
    from ..errors import NotFound
    from ..observe import merge, rules

    found: list = []
    for r in results:
        try:
            s = calls_to_sessions(project, r["session"])
        except NotFound:
            s = None
        if s is not None:
            found += rules.observe_session(s)
        found += _harness_observations(r, s)
    return merge.merge(found, into=entries, generation=generation)


def _last_said(s) -> tuple[int, str] | None:
    from ..trace.model import Text

    for st in reversed(s.steps if s is not None else []):
        if st.source == "agent":
            text = "\n".join(p.text for p in st.parts if isinstance(p, Text)).strip()
            if text:
                return st.index, text
    return None


def _harness_observations(r: dict, s) -> list:
    """What the harness saw of one variant: its change passing or failing the validator,
    or a live rule stopping it. Evidence is the agent's last words in its session."""
    from ..observe.rules import Evidence, Observation, error_line, fingerprint, quote
    from ..text import clip

    said = _last_said(s)
    ev = [Evidence(r["session"], said[0], quote(said[1]), None)] if said else []
    # cut, not clipped: it is part of the fingerprints, which must not change
    approach = " ".join(said[1].split())[:160] if said else "no final message"
    files = ", ".join(r.get("changed_files") or []) or "no files"
    out = []
    if r.get("stopped"):
        rule = str(r["stopped"]).split(":", 1)[0]
        out.append(
            Observation(
                "important",
                "stopped",
                f"an agent was stopped ({r['stopped']}) after: {approach}",
                fingerprint("stopped", rule, approach),
                ev,
                {"reason": r["stopped"], "variant": r["variant"]},
            )
        )
    elif r.get("solved"):
        out.append(
            Observation(
                "important",
                "validator_passed",
                f"PASSED the validator — changed {files}: {approach}",
                fingerprint("validator_passed", files, approach),
                ev,
                {"variant": r["variant"], "files": r.get("changed_files")},
            )
        )
    else:
        err = error_line(r.get("validator_tail") or "", None, r.get("validator_exit"))
        out.append(
            Observation(
                "important",
                "validator_failed",
                f"FAILED the validator ({clip(err, 120)}) — changed {files}: {approach}",
                fingerprint("validator_failed", files, approach),
                ev,
                {"variant": r["variant"], "files": r.get("changed_files"), "error": err[:500]},
            )
        )
    return out


# -- the run ---------------------------------------------------------------------------------


def run(
    cfg: cfgmod.Config,
    project,
    *,
    executor: str = "local",
    use_observations: bool = True,
    on_progress=None,
) -> dict:
    """Run every generation; returns the run summary (also in ``run.json``)."""
    from ..coord import events
    from ..coord.context import now, sortable
    from ..observe import merge, render
    from . import executors

    if not os.path.isdir(os.path.join(cfg.repo, ".git")) and not os.path.isfile(
        os.path.join(cfg.repo, ".git")
    ):
        raise UsageError(f"[run] repo {cfg.repo} is not a git repository")
    _git(cfg.repo, "rev-parse", "--verify", "-q", f"{cfg.base}^{{commit}}")
    run_id = f"{cfg.name}-{sortable(now())[:15]}"
    ctx = project.ctx
    summary: dict[str, Any] = {
        "run": run_id,
        "config": cfg.to_dict(),
        "use_observations": use_observations,
        "generations": [],
    }
    ctx.put_json(key(run_id, "run.json"), summary)
    events.record(ctx, "harness.run.start", data={"run": run_id, "generations": cfg.generations})
    entries: dict = {}
    given = ""  # the observations.md of the generations so far, for the next one
    workroot = tempfile.mkdtemp(prefix=f"tracebox-harness-{run_id}-")
    try:
        for g in range(1, cfg.generations + 1):
            tasks = [
                VariantTask(
                    run_id,
                    g,
                    v,
                    cfg,
                    project.store.url,
                    project.name,
                    dict(project.settings.s3),
                    given,
                    workroot,
                )
                for v in cfg.variants
            ]
            if on_progress:
                on_progress({"type": "generation.start", "generation": g, "variants": len(tasks)})
            results = executors.run(executor, run_variant, tasks, cfg.parallel, on_done=on_progress)
            entries = observe_generation(project, results, g, entries)
            md = render.render(entries, budget=cfg.observations_budget)
            ctx.store.put(ctx.key(key(run_id, f"gen-{g}", "observations.md")), md.encode())
            ctx.store.put(
                ctx.key(key(run_id, f"gen-{g}", "observations.jsonl")),
                merge.dumps(entries).encode(),
            )
            given = md if (use_observations and entries) else ""
            gen = {
                "generation": g,
                "variants": len(results),
                "solved": sum(1 for r in results if r.get("solved")),
                "stopped": sum(1 for r in results if r.get("stopped")),
                "observations": render.counts(entries),
                "results": results,
            }
            ctx.put_json(key(run_id, f"gen-{g}", "summary.json"), gen)
            summary["generations"].append({k: v for k, v in gen.items() if k != "results"})
            events.record(
                ctx,
                "harness.generation.end",
                data={"run": run_id, **{k: gen[k] for k in ("generation", "solved", "stopped")}},
            )
            if on_progress:
                on_progress(
                    {"type": "generation.end", **{k: v for k, v in gen.items() if k != "results"}}
                )
            if cfg.stop_when_solved and gen["solved"]:
                break
        ctx.put_json(key(run_id, "run.json"), summary)
        from .report import write_report

        write_report(project, run_id)
        events.record(ctx, "harness.run.end", data={"run": run_id})
        return summary
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
        _git(cfg.repo, "worktree", "prune", check=False)
        ctx.flush()


def run_sessions(project, run_id: str, generation: int | None = None) -> list:
    """The captured sessions of a run (or of one generation), from the bucket."""
    from ..capture.proxy.store import BY_SESSION, calls_to_sessions

    prefix = project.ctx.key(BY_SESSION)
    mine = f"{run_id}.g{generation}." if generation else f"{run_id}.g"
    found = {m.key[len(prefix) :].partition("/")[0] for m in project.store.list(prefix + mine)}
    return [calls_to_sessions(project, s) for s in sorted(found)]


def list_runs(project) -> list[str]:
    """The ids of the harness runs stored in the project, oldest first."""
    prefix = project.ctx.key(PREFIX)
    return sorted(
        rid
        for m in project.store.list(prefix)
        for rid, sep, rest in [m.key[len(prefix) :].partition("/")]
        if sep and rest == "run.json"
    )
