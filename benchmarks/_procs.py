"""Running commands as new processes and timing them: single runs, and barrier-started races."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

RACER = str(Path(__file__).with_name("_racer.py"))


@dataclass
class Run:
    """One finished process: exit code, seconds from start (or release) to exit, output."""

    rc: int
    seconds: float
    stdout: str
    stderr: str
    timed_out: bool = False


def timed(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    timeout: float = 120.0,
) -> Run:
    """Run ``cmd`` as a new process; wall time from spawn to exit (output collected)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            list(cmd),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        return Run(
            -1,
            time.perf_counter() - t0,
            (e.stdout or b"").decode(errors="replace"),
            (e.stderr or b"").decode(errors="replace"),
            timed_out=True,
        )
    dt = time.perf_counter() - t0
    return Run(
        p.returncode, dt, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    )


def race(
    racers: Sequence[tuple[Sequence[str], Mapping[str, str]]],
    *,
    cwd: str | os.PathLike[str],
    timeout: float = 120.0,
) -> list[Run]:
    """Start every ``(cmd, env)`` behind a barrier, release them at once, time each exit.

    Each racer is ``python -I -S _racer.py`` which reports ready, blocks on a pipe and then
    ``exec``s its command. The release instant is the moment the orchestrator closes the
    pipe's write end; ``Run.seconds`` is measured from then to that process's exit
    (via pidfd readiness, so the timing does not depend on reaping order).
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    procs: list[subprocess.Popen] = []
    try:
        for cmd, env in racers:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-I", "-S", RACER, str(ready_w), str(go_r), *cmd],
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=(ready_w, go_r),
                )
            )
        os.close(ready_w)
        ready_w = -1
        os.close(go_r)
        go_r = -1
        got = 0
        deadline = time.monotonic() + 60
        while got < len(procs):  # every racer is up and blocked on the start line
            if time.monotonic() > deadline:
                raise TimeoutError("racers did not get ready in 60 s")
            chunk = os.read(ready_r, 4096)
            if not chunk:
                raise RuntimeError(f"only {got}/{len(procs)} racers got ready")
            got += len(chunk)
        fds = {os.pidfd_open(p.pid): i for i, p in enumerate(procs)}
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        exit_t: dict[int, float] = {}
        t0 = time.perf_counter()
        os.close(go_w)  # the release
        go_w = -1
        end = t0 + timeout
        timed_out = False
        while len(exit_t) < len(procs):
            left = end - time.perf_counter()
            if left <= 0:
                timed_out = True
                break
            for fd, _ in poller.poll(left * 1000):
                t = time.perf_counter() - t0
                exit_t.setdefault(fds[fd], t)
                poller.unregister(fd)
        for fd in fds:
            os.close(fd)
        out: list[Run] = []
        for i, p in enumerate(procs):
            if i not in exit_t:
                p.kill()
            so, se = p.communicate()
            out.append(
                Run(
                    p.returncode if i in exit_t else -1,
                    exit_t.get(i, timeout),
                    so.decode(errors="replace"),
                    se.decode(errors="replace"),
                    timed_out=timed_out and i not in exit_t,
                )
            )
        return out
    finally:
        for fd in (ready_r, ready_w, go_r, go_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict:
    """n, p50, p95, min, max, mean of ``values`` (seconds)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "min": None, "max": None, "mean": None}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def spawn(cmd: list[str], env: Mapping[str, str], cwd, **kw) -> subprocess.Popen:
    """A background process in a session of its own (so ``stop`` ends its whole group)."""
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, text=True, start_new_session=True, **kw
    )


def stop(p: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM to the process group, SIGKILL after ``timeout`` s; waits for the exit."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # already gone: only reap it
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
