"""The spool's shipper: reads spooled exchanges in order, writes them to the bucket, then
moves the durable cursor. One loop, run one of two ways:

* in a thread of the writing process (``Spool(ship="thread")``, the Python API's default);
* in a child process of its own (``Spool(ship="process")``, what ``tracebox proxy`` runs),
  started as ``python -m tracebox.capture.proxy.shipper`` at a lower CPU priority, so
  that scrubbing and bucket writes never take the interpreter lock, or a core, from the
  request path. The parent writes its settings as the first line of the child's stdin
  and then one byte per appended record (a wake-up); end of file — the proxy exited or
  was killed — makes the child finish its batch and exit. The parent restarts a child
  that died.

Files it owns in the spool folder (docs/proxy-format.md §spool):

    ship.lock      flock held by the one shipper of this spool
    cursor.json    {"segment", "offset", "shipped"}: everything before it is in the bucket
    shipper.json   {"pid", "rejected", "last_error", "last_error_at"}: what went wrong

The newest segment is the one being written: it is read up to its current size, and a
record cut by that size is simply not complete yet. An older segment is finished; its
unreadable tail (a record torn by a machine crash) is dropped with it once the cursor
passes it. ``TRACEBOX_TEST_SPOOL_DIE_AFTER_BATCHES=n`` makes the shipper ``os._exit(137)``
right after its n-th batch reached the bucket and before the cursor moves (crash tests).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable

from ...errors import BucketError, Refused
from . import spool as sp
from .exchange import Exchange, from_bytes

BATCH_RECORDS = 64  # records shipped per batch (one cursor write each)
BATCH_BYTES = 32 << 20
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
IDLE_POLL_S = 1.0  # an idle shipper looks at the spool at least this often
NICE = 19  # the lowest CPU priority


class Shipper:
    """Ships the spool at ``root`` through ``store`` (``ship(exchanges, on_reject)``).

    ``wait(seconds)`` blocks until woken (new records) or the time passes and returns
    False once the shipper should stop; the loop then returns after its current batch."""

    def __init__(self, root: str, store, wait: Callable[[float], bool]) -> None:
        self.root, self.store, self._wait = root, store, wait
        self._lock_fd = os.open(os.path.join(root, "ship.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise Refused(f"the spool {root} already has a shipper") from None
        self.cursor = sp.load_cursor(root)
        # a restarted shipper goes on counting where the one before it stopped
        before = sp.read_json(os.path.join(root, sp.SHIPPER)) or {}
        self.rejected = int(before.get("rejected") or 0)
        self._die_after = int(os.environ.get("TRACEBOX_TEST_SPOOL_DIE_AFTER_BATCHES") or 0)
        self._batches = 0

    def close(self) -> None:
        self.store.close()
        os.close(self._lock_fd)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        backoff, running = BACKOFF_FIRST, True
        while running:
            payloads, seg, off = self._next_batch()
            if not payloads:
                running = self._wait(IDLE_POLL_S)
                continue
            try:
                self._ship(payloads)
            except (BucketError, OSError) as e:
                self._error(e)
                running = self._wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_FIRST
            self._batches += 1
            if self._die_after and self._batches >= self._die_after:
                os._exit(137)
            self._save_cursor(seg, off, self.cursor["shipped"] + len(payloads))

    def _next_batch(self) -> tuple[list[bytes], int, int]:
        """The next records to ship and the cursor position after them (segments the
        cursor has passed are deleted on the way)."""
        while True:
            seg, off = self.cursor["segment"], self.cursor["offset"]
            segs = [s for s in sp.segments(self.root) if s >= seg]
            if not segs:
                return [], seg, off
            if segs[0] != seg:  # the cursor's segment is gone (or new): start the next one
                seg, off = segs[0], 0
            newest = seg == segs[-1]
            payloads: list[bytes] = []
            size = 0
            for off_after, payload in sp.read_records(sp.segment_path(self.root, seg), off):
                payloads.append(payload)
                off = off_after
                size += len(payload)
                if len(payloads) >= BATCH_RECORDS or size >= BATCH_BYTES:
                    break
            if payloads or newest:
                return payloads, seg, off
            # an older segment is exhausted (or its tail is torn): drop it, move on
            self._save_cursor(seg + 1, 0, self.cursor["shipped"])
            try:
                os.remove(sp.segment_path(self.root, seg))
            except FileNotFoundError:
                pass

    def _ship(self, payloads: list[bytes]) -> None:
        exchanges: list[Exchange] = []
        for p in payloads:
            try:
                exchanges.append(from_bytes(p))
            except Exception as e:  # noqa: BLE001 - a record we cannot read is skipped
                self._reject(e)
        self.store.ship(exchanges, on_reject=self._reject)

    # -- what others read -------------------------------------------------------------------
    def _save_cursor(self, seg: int, off: int, shipped: int) -> None:
        self.cursor = {"segment": seg, "offset": off, "shipped": shipped}
        sp.write_json(os.path.join(self.root, sp.CURSOR), self.cursor, fsync=True)

    def _reject(self, e: BaseException) -> None:
        self.rejected += 1
        self._error(e)

    def _error(self, e: BaseException) -> None:
        _report(self.root, e, self.rejected)


def _report(root: str, e: BaseException, rejected: int | None = None) -> None:
    """Write ``shipper.json``: the last error (one line) and the rejected count (kept as
    it was when ``rejected`` is None)."""
    from ...coord.context import iso, now

    path = os.path.join(root, sp.SHIPPER)
    if rejected is None:
        rejected = int((sp.read_json(path) or {}).get("rejected") or 0)
    error, at = " ".join(f"{type(e).__name__}: {e}".split())[:300], iso(now())
    doc = {"pid": os.getpid(), "rejected": rejected, "last_error": error, "last_error_at": at}
    sp.write_json(path, doc, fsync=False)


# -- running it -----------------------------------------------------------------------------


def start_thread(root: str, store) -> tuple[threading.Thread, Callable[[], None], Callable]:
    """A shipper in a daemon thread: ``(thread, poke, stop)``."""
    wake = threading.Event()
    stopping = threading.Event()

    def wait(seconds: float) -> bool:
        wake.wait(seconds)
        wake.clear()
        return not stopping.is_set()

    shipper = Shipper(root, store, wait)

    def run() -> None:
        try:
            shipper.run()
        finally:
            shipper.close()

    def stop() -> None:
        stopping.set()
        wake.set()

    t = threading.Thread(target=run, name="spool-shipper", daemon=True)
    t.start()
    return t, wake.set, stop


def spawn(root: str, project) -> tuple[object, int]:
    """Start ``python -m tracebox.capture.proxy.shipper`` for ``project``; returns
    ``(Popen, fd of its stdin)``. Its stderr goes to ``<root>/shipper.log``."""
    import subprocess

    settings = {
        "root": root,
        "bucket": project.store.url,
        "project": project.name,
        "agent": project.agent,
        "s3": dict(project.settings.s3),
        "cwd": os.getcwd(),
    }
    with open(os.path.join(root, "shipper.log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracebox.capture.proxy.shipper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log,
            close_fds=True,
        )
    proc.stdin.write(json.dumps(settings).encode() + b"\n")
    proc.stdin.flush()
    fd = proc.stdin.fileno()
    os.set_blocking(fd, False)
    return proc, fd


def _yield_cpu() -> None:
    """Run at the lowest CPU priority that still makes progress: the shipper must not
    delay the proxy's forwarding (a burst of calls ending together wakes it just as the
    next calls start), yet must not starve on a busy machine either. ``SCHED_BATCH``
    (never preempts a running task on wake-up) at nice 19 (about 1.5% of a core against
    one busy task of normal priority). Not ``SCHED_IDLE``: with every core busy it got so
    little (weight 3 of 1024) that a new shipper took over 20 s to start, and an
    unprivileged process cannot leave that policy again. (16 paced streams: the same TTFT
    with either policy.) At exit the spool takes over from it (``Spool.close``)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    try:
        os.nice(NICE)
    except OSError:
        pass


def _child() -> int:
    """The child's main: settings from the first stdin line, then ship until stdin ends."""
    import select

    fd = sys.stdin.fileno()
    line = b""
    while b"\n" not in line:
        more = os.read(fd, 65536)
        if not more:
            return 0
        line += more
    first = line.partition(b"\n")[0]  # what follows is wake-up bytes
    cfg = json.loads(first)
    _yield_cpu()
    os.chdir(cfg["cwd"])
    from ...errors import TraceboxError
    from ...project import open_project
    from ...scrub.engine import precompile
    from .store import CallStore

    eof = False

    def wait(seconds: float) -> bool:
        nonlocal eof
        if eof:
            return False
        ready, _, _ = select.select([fd], [], [], seconds)
        if ready:
            time.sleep(0.002)  # let a burst of wake-ups arrive: one read drains them
            if not os.read(fd, 65536):
                eof = True
        return not eof

    backoff = BACKOFF_FIRST
    while True:  # the bucket may be unreachable right now: report it and retry
        try:
            project = open_project(cfg["bucket"], cfg["project"], cfg["agent"], **cfg["s3"])
            precompile(project.settings.raw.get("scrub"))  # this process lives long
            store = CallStore(project)
            break
        except (TraceboxError, OSError) as e:
            _report(cfg["root"], e)
            if not wait(backoff):
                return 0
            backoff = min(backoff * 2, BACKOFF_MAX)
    while True:
        try:
            shipper = Shipper(cfg["root"], store, wait)
            break
        except Refused:  # an older shipper of this spool is still finishing
            if not wait(0.5):
                return 0
    try:
        shipper.run()
    finally:
        shipper.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
