"""Running a capsule's reproduction commands as isolated as this machine allows.

``run(command, cwd)`` runs one shell command with:

* an **environment allow-list** (``PATH``, locale and terminal variables, plus names the
  user adds with ``--env``); everything else — tokens, keys, cloud credentials — is left
  out;
* a **throwaway HOME** (and ``TMPDIR``) in a fresh temporary folder, removed afterwards;
  ``CI=1`` and ``PYTHONDONTWRITEBYTECODE=1`` are set;
* **no network** when ``unshare -n`` (or, without root, ``unshare -rn``) works here; when
  it does not, the command runs with the host's network and ``isolation`` says so;
* a **timeout** (the whole process group is killed) and **bounded output** (the first
  256 KiB and the last 1.75 MiB of stdout and stderr, interleaved as they came, are kept).

``isolation()`` reports what was actually achieved. This is not a security boundary
against a hostile capsule — commands run as the current user on the real file system;
docs/capsule.md says so — but it keeps credentials and the network out of a replay.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

ENV_ALLOW = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "SHELL",
    "USER",
    "LOGNAME",
    "VIRTUAL_ENV",
)
HEAD_KEEP = 256 << 10
TAIL_KEEP = 1792 << 10

_unshare: list[str] | None | bool = False  # False: not probed yet


@dataclass
class Result:
    exit_code: int | None  # None: killed by the timeout
    output: str
    seconds: float
    timed_out: bool = False
    cut_bytes: int = 0


def _probe_unshare() -> list[str] | None:
    """The ``unshare`` prefix that gives a process no network here, or None."""
    global _unshare
    if _unshare is not False:
        return _unshare  # type: ignore[return-value]
    _unshare = None
    exe = shutil.which("unshare")
    if exe:
        for prefix in ([exe, "-n"], [exe, "-rn"]):
            try:
                p = subprocess.run(
                    [*prefix, "true"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if p.returncode == 0:
                _unshare = prefix
                break
    return _unshare


def isolation(network: bool = False) -> dict:
    prefix = None if network else _probe_unshare()
    if network:
        net = "host network (asked for with --network)"
    elif prefix:
        net = f"none ({' '.join(['unshare', *prefix[1:]])})"
    else:
        net = "host network: unshare -n is not available here"
    return {
        "network": net,
        "network_isolated": bool(prefix),
        "home": "throwaway temporary folder",
        "environment": "allow-list: " + ", ".join(ENV_ALLOW),
        "filesystem": "not isolated: the command runs as the current user",
    }


def run(
    command: str,
    cwd: str,
    *,
    timeout: float = 600.0,
    extra_env: dict[str, str] | None = None,
    network: bool = False,
    before_cleanup=None,
) -> Result:
    """Run ``command`` with ``sh -c`` in ``cwd``, isolated (see the module docstring).
    ``before_cleanup(home)`` is called with the throwaway HOME before it is removed (to
    read what the command left there, e.g. an agent's transcript)."""
    prefix = None if network else _probe_unshare()
    home = tempfile.mkdtemp(prefix="tracebox-replay-home-")
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    # no bytecode caches: a replay leaves no files behind, and an edit made within the
    # same second as a run (same size, same mtime) can never be masked by a stale .pyc
    env.update(HOME=home, TMPDIR=os.path.join(home, "tmp"), CI="1", PYTHONDONTWRITEBYTECODE="1")
    os.makedirs(env["TMPDIR"])
    env.update(extra_env or {})
    argv = [*(prefix or []), "/bin/sh", "-c", command]
    t0 = time.monotonic()
    head = bytearray()
    tail = bytearray()
    dropped = 0
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def pump() -> None:
            nonlocal dropped, tail
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(65536):
                room = HEAD_KEEP - len(head)
                if room > 0:
                    head.extend(chunk[:room])
                    chunk = chunk[room:]
                tail.extend(chunk)
                if len(tail) > TAIL_KEEP:
                    dropped += len(tail) - TAIL_KEEP
                    tail = tail[-TAIL_KEEP:]

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out, code = True, None
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        reader.join(10)
        if before_cleanup is not None:
            before_cleanup(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    text = head.decode("utf-8", "replace")
    if dropped:
        text += f"\n…[cut {dropped} bytes]…\n"
    text += tail.decode("utf-8", "replace")
    if code is not None and code < 0:
        code = 128 - code  # killed by a signal, as a shell reports it
    return Result(
        exit_code=code,
        output=text,
        seconds=round(time.monotonic() - t0, 3),
        timed_out=timed_out,
        cut_bytes=dropped,
    )
