"""The durable local spool between the proxy and the bucket.

``Spool.submit(x)`` (the proxy's ``Sink``) appends one ``Exchange`` to a local append-only
segment file and returns; it never waits on the bucket. A shipper (``shipper.py``: a
thread of this process, or a child process of its own) reads the segments in order,
hands batches to ``CallStore`` (``store.py``), which writes message nodes, call records
and session markers to the bucket, and only then advances a durable cursor.
docs/proxy-format.md documents the layout and the guarantees; in short:

Files under ``root`` (default ``$XDG_STATE_HOME/tracebox/proxy-spool/<bucket+project>``)::

    lock                   flock held by the one process writing this spool
    <seq, 16 digits>.seg   segments: magic ``TBSPOOL1``, then records
    cursor.json            {"segment", "offset", "shipped"}: everything before is shipped
    ship.lock, shipper.json, shipper.log   the shipper's (see shipper.py)

A **record** is ``u32 length, u32 crc32(payload)`` (big endian) then the payload, the
msgpack encoding of the Exchange (``exchange.to_bytes``). Each record is one ``write(2)``
of a file opened ``O_APPEND``; a reader never sees a byte the writer has not written, so
a record cut by the file's current end is simply not complete yet.

**Durability.** Once ``submit`` returns, the record is in the kernel: a crash or
``kill -9`` of the proxy loses nothing acknowledged. Only a machine crash (power loss,
kernel panic) can lose page-cache data; the ``fsync`` policy bounds that:
``"always"`` fsyncs each record before ``submit`` returns (nothing acknowledged is ever
lost), ``"interval"`` (default) fsyncs at most every ``fsync_ms`` (200 ms) from a
background thread (at most that window is lost on power failure), ``"never"`` leaves
it to the OS. A record torn by a machine crash fails its length or CRC check and is
skipped with the rest of its segment; each process starts a fresh segment, so nothing
is ever appended after a torn tail.

**Exactly once.** Every bucket key a record produces is deterministic (node ids are
content hashes; call keys come from the exchange id), and all writes are
create-if-absent, so re-shipping after a crash between the bucket writes and the cursor
update rewrites nothing and duplicates nothing. The cursor file is replaced atomically
(write, fsync, rename, fsync the folder). A segment is deleted once the cursor has
passed its end.

**Bucket down.** A failed batch is retried with exponential backoff (0.5 s doubling to
30 s); meanwhile the spool grows on disk and drains when the bucket is back. A record
the store cannot turn into objects at all (a bug, or a hostile body that breaks a
parser) is skipped and counted in ``status()["rejected"]`` rather than blocking the spool.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Literal

from ...dirs import user_dir
from ...errors import Refused, TraceboxError, UsageError
from .exchange import Exchange, from_bytes, to_bytes

MAGIC = b"TBSPOOL1"
HEADER = struct.Struct(">II")  # payload length, crc32 of payload
MAX_RECORD_BYTES = 256 << 20  # bodies beyond this are cut before spooling
SEGMENT_BYTES = 16 << 20  # a segment is closed once it grows past this
CURSOR, SHIPPER = "cursor.json", "shipper.json"
_RESPAWN_AFTER_S = 1.0  # a shipper process that died is started again after this
HANDOVER_S = 1.0  # at close, a shipper process's time to drain before this process takes over
_O_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)

Fsync = Literal["always", "interval", "never"]
ShipMode = Literal["thread", "process"]


def default_root(project=None) -> str:
    """``$XDG_STATE_HOME/tracebox/proxy-spool/<16 hex of bucket URL + project>``."""
    name = "local"
    if project is not None:
        name = hashlib.sha256(f"{project.store.url}\0{project.name}".encode()).hexdigest()[:16]
    return user_dir("state", "proxy-spool", name)


def _seg_name(seq: int) -> str:
    return f"{seq:016d}.seg"


def segment_path(root: str, seq: int) -> str:
    return os.path.join(root, _seg_name(seq))


def segments(root: str) -> list[int]:
    out = []
    for name in os.listdir(root):
        if name.endswith(".seg") and len(name) == 20 and name[:16].isdigit():
            out.append(int(name[:16]))
    return sorted(out)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str, doc: dict, *, fsync: bool) -> None:
    """Replace ``path`` atomically (write a temp file, rename; with ``fsync`` both durable)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(doc).encode())
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(os.path.dirname(path))


def read_json(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def load_cursor(root: str) -> dict:
    """The shipped-up-to position; a missing or damaged cursor starts over (re-shipping
    is idempotent)."""
    doc = read_json(os.path.join(root, CURSOR)) or {}
    try:
        seg, off, shipped = int(doc["segment"]), int(doc["offset"]), int(doc["shipped"])
        if seg >= 0 and off >= 0 and shipped >= 0:
            return {"segment": seg, "offset": off, "shipped": shipped}
    except (KeyError, TypeError, ValueError):
        pass
    return {"segment": 0, "offset": 0, "shipped": 0}


def encode_record(x: Exchange) -> bytes:
    """Header + payload of one record; bodies are cut so the payload stays bounded."""
    payload = to_bytes(x)
    if len(payload) > MAX_RECORD_BYTES:
        half = MAX_RECORD_BYTES // 2 - 4096
        extra = dict(x.extra or {})
        extra["truncated"] = {"request": len(x.request_body), "response": len(x.response_body)}
        import msgspec

        x = msgspec.structs.replace(
            x, request_body=x.request_body[:half], response_body=x.response_body[:half], extra=extra
        )
        payload = to_bytes(x)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: str, offset: int) -> Iterator[tuple[int, bytes]]:
    """``(offset after, payload)`` of each whole, valid record from ``offset``. Stops at the
    first incomplete or damaged record."""
    with open(path, "rb") as f:
        if offset == 0:
            if f.read(len(MAGIC)) != MAGIC:
                return
            offset = len(MAGIC)
        f.seek(offset)
        limit = os.fstat(f.fileno()).st_size
        while offset + HEADER.size <= limit:
            size, crc = HEADER.unpack(f.read(HEADER.size))
            if size > MAX_RECORD_BYTES or offset + HEADER.size + size > limit:
                return
            payload = f.read(size)
            if len(payload) != size or zlib.crc32(payload) != crc:
                return
            offset += HEADER.size + size
            yield offset, payload


class Spool:
    """The proxy's sink: local append, with a shipper to the bucket.

    ``ship``: ``"thread"`` (or ``True``, the default) ships from a thread of this process
    through ``store`` (default ``CallStore(project)``); ``"process"`` from a child process
    of its own (``shipper.py``), restarted if it dies; ``False`` appends only. Without a
    ``project`` (and no ``store``) nothing ships."""

    def __init__(
        self,
        root: str | None = None,
        project=None,
        *,
        store=None,
        fsync: Fsync = "interval",
        fsync_ms: float = 200.0,
        segment_bytes: int = SEGMENT_BYTES,
        ship: bool | ShipMode = True,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise UsageError(f"unknown spool fsync policy {fsync!r}: always, interval or never")
        mode = "thread" if ship is True else ship or None
        if mode not in (None, "thread", "process"):
            raise UsageError(f"unknown spool ship mode {ship!r}: thread, process or False")
        if mode == "process" and store is not None:
            raise UsageError("a store object ships from a thread, not a process")
        if mode is not None and store is None and project is None:
            mode = None
        self.root = root or default_root(project)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise Refused(f"the spool {self.root} is in use by another tracebox process") from None
        self.project, self.ship_mode = project, mode
        self.fsync, self.fsync_ms, self.segment_bytes = fsync, fsync_ms, segment_bytes
        self._mu = threading.Lock()  # guards the writer and the counters
        self._closed = False
        self._stop = threading.Event()
        self._dirty = False
        try:  # errors reported by an earlier run's shipper are history now
            os.remove(os.path.join(self.root, SHIPPER))
        except FileNotFoundError:
            pass
        self._cursor0 = load_cursor(self.root)
        existing = segments(self.root)
        self._seq = (existing[-1] + 1) if existing else 1
        self._backlog0 = self._count_backlog()
        self._fd = -1
        self._end = 0
        self._open_segment()
        self._appended = 0
        self._poke = lambda: None
        self._thread: threading.Thread | None = None
        self._stop_shipper = None
        self._child = None
        self._child_fd = -1
        self._restarts = 0
        self._died_at = 0.0
        if mode == "thread":
            from . import shipper

            if store is None:
                from .store import CallStore

                store = CallStore(project)
            self._thread, self._poke, self._stop_shipper = shipper.start_thread(self.root, store)
        elif mode == "process":
            self._spawn()
        self._housekeeper = threading.Thread(target=self._housekeep, name="spool", daemon=True)
        self._housekeeper.start()

    # -- writing --------------------------------------------------------------------------
    def _open_segment(self) -> None:
        fd = os.open(segment_path(self.root, self._seq), _O_APPEND, 0o600)
        os.write(fd, MAGIC)
        if self.fsync != "never":
            os.fsync(fd)
            _fsync_dir(self.root)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._end = fd, len(MAGIC)

    def submit(self, exchange: Exchange) -> None:
        """Append ``exchange``; once this returns it survives a crash of this process."""
        record = encode_record(exchange)
        with self._mu:
            if self._closed:
                raise Refused("the spool is closed")
            if self._end >= self.segment_bytes:
                self._seq += 1
                self._open_segment()
            n = os.write(self._fd, record)
            while n < len(record):  # a short write (signal, full disk): finish it
                n += os.write(self._fd, record[n:])
            self._end += len(record)
            self._appended += 1
            if self.fsync == "always":
                os.fsync(self._fd)
            else:
                self._dirty = True
        self._poke()

    def _count_backlog(self) -> int:
        """Records not yet shipped when this spool opened (a scan of older segments)."""
        n = 0
        for seq in segments(self.root):
            if seq >= self._cursor0["segment"] and seq < self._seq:
                start = self._cursor0["offset"] if seq == self._cursor0["segment"] else 0
                n += sum(1 for _ in read_records(segment_path(self.root, seq), start))
        return n

    # -- the shipper ----------------------------------------------------------------------
    def _spawn(self) -> None:
        from . import shipper

        self._child, self._child_fd = shipper.spawn(self.root, self.project)

        def poke() -> None:
            try:
                os.write(self._child_fd, b".")
            except (BlockingIOError, BrokenPipeError, OSError):
                pass  # a full pipe already says "wake up"; a dead child is restarted

        self._poke = poke

    def _housekeep(self) -> None:
        """fsync on the interval policy; restart a shipper process that died."""
        period = self.fsync_ms / 1000 if self.fsync == "interval" else 0.2
        while not self._stop.wait(period):
            with self._mu:
                fd, dirty, self._dirty = self._fd, self._dirty, False
            if dirty and self.fsync == "interval":
                try:
                    os.fsync(fd)
                except OSError:  # closed by a rotation meanwhile: its successor is synced next
                    pass
            child = self._child
            if child is not None and child.poll() is not None and not self._closed:
                now = time.monotonic()
                if not self._died_at:
                    self._died_at = now
                elif now - self._died_at >= _RESPAWN_AFTER_S:
                    self._close_child_pipe()
                    self._restarts += 1
                    self._died_at = 0.0
                    self._spawn()

    def _close_child_pipe(self) -> None:
        if self._child is not None and self._child.stdin is not None:
            try:
                self._child.stdin.close()
            except OSError:
                pass

    # -- status and shutdown --------------------------------------------------------------
    def _progress(self) -> tuple[dict, int]:
        """The cursor now and the records still to ship."""
        cur = load_cursor(self.root)
        shipped = cur["shipped"] - self._cursor0["shipped"]
        with self._mu:
            appended = self._appended
        return cur, max(0, self._backlog0 + appended - shipped)

    def status(self) -> dict:
        """Depth (records, bytes), oldest unshipped exchange's age, shipping counters."""
        cur, pending = self._progress()
        depth_bytes, oldest = 0, None
        present = segments(self.root)
        for seq in present:
            if seq < cur["segment"]:
                continue
            try:
                size = os.path.getsize(segment_path(self.root, seq))
            except OSError:
                continue
            start = cur["offset"] if seq == cur["segment"] else 0
            depth_bytes += max(0, size - max(start, len(MAGIC)))
            if oldest is None and pending:
                for _, payload in read_records(segment_path(self.root, seq), start):
                    oldest = _started(payload)
                    break
        report = read_json(os.path.join(self.root, SHIPPER)) or {}
        shipper: dict = {"mode": self.ship_mode}
        if self._child is not None:
            shipper.update(
                pid=self._child.pid, alive=self._child.poll() is None, restarts=self._restarts
            )
        return {
            "root": self.root,
            "shipping": self.ship_mode is not None,
            "shipper": shipper,
            "fsync": self.fsync,
            "depth_records": pending,
            "depth_bytes": depth_bytes if pending else 0,
            "oldest_unshipped_age_s": _age(oldest),
            "appended": self._appended,
            "shipped": cur["shipped"] - self._cursor0["shipped"],
            "shipped_total": cur["shipped"],
            "rejected": int(report.get("rejected") or 0),
            "last_error": report.get("last_error"),
            "last_error_at": report.get("last_error_at"),
            "segments": len(present),
        }

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything appended so far is shipped; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            pending = self._progress()[1]
            if pending == 0 or self.ship_mode is None:
                return pending == 0
            if time.monotonic() >= deadline:
                return False
            self._poke()
            time.sleep(0.02)

    def close(self, drain_timeout: float = 10.0) -> None:
        """Ship what can be shipped within ``drain_timeout``, then stop. Unshipped records
        stay in the spool for the next start.

        A shipper process runs at the lowest CPU priority, so on a busy machine it may be
        slow to finish: it gets ``HANDOVER_S`` to drain and exit, then it is killed
        (shipping is idempotent: a batch it had not recorded is shipped again) and this
        process ships the rest from a thread at its own priority."""
        if self._closed:
            return
        deadline = time.monotonic() + drain_timeout
        drained = self.ship_mode is None or drain_timeout <= 0
        if not drained:
            first = min(drain_timeout, HANDOVER_S) if self._child is not None else drain_timeout
            drained = self.drain(first)
        with self._mu:
            self._closed = True
        self._stop.set()
        self._housekeeper.join()
        if self._thread is not None:
            self._stop_shipper()
            self._thread.join(timeout=max(deadline - time.monotonic(), 1.0))
        if self._child is not None:
            self._close_child_pipe()  # end of file: the child finishes its batch and exits
            try:
                self._child.wait(HANDOVER_S if drained else 0.2)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                self._child.kill()
                self._child.wait()
            if not drained and deadline > time.monotonic():
                self._ship_here(deadline)
        with self._mu:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        os.close(self._lock_fd)

    def _ship_here(self, deadline: float) -> None:
        """Ship what is left from a thread of this process until done or ``deadline``."""
        from . import shipper
        from .store import CallStore

        try:
            store = CallStore(self.project)
        except (TraceboxError, OSError):
            return  # the bucket is unreachable: the records wait for the next start
        thread, self._poke, stop = shipper.start_thread(self.root, store)
        try:
            self.drain(max(deadline - time.monotonic(), 0.0))
        finally:
            stop()
            thread.join(max(deadline - time.monotonic(), 1.0))

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _started(payload: bytes) -> str | None:
    try:
        return from_bytes(payload).started
    except Exception:  # noqa: BLE001 - an unreadable record only hides the age
        return None


def _age(started: str | None) -> float | None:
    if not started:
        return None
    from ...coord.context import now, parse_iso

    try:
        return max(0.0, (now() - parse_iso(started)).total_seconds())
    except Exception:  # noqa: BLE001 - a malformed timestamp only hides the age
        return None
