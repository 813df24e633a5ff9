"""The durable local spool between the proxy and the bucket, and its background shipper.

``Spool.submit(x)`` (the proxy's ``Sink``) appends one ``Exchange`` to a local append-only
segment file and returns; it never waits on the bucket. A shipper thread reads the
segments in order, hands batches to ``CallStore`` (``store.py``), which writes message
nodes, call records and session markers to the bucket, and only then advances a durable
cursor. docs/proxy-format.md documents the layout and the guarantees; in short:

Files under ``root`` (default ``$XDG_STATE_HOME/tracebox/proxy-spool/<bucket+project>``)::

    lock                   flock held by the one process using this spool
    <seq, 16 digits>.seg   segments: magic ``TBSPOOL1``, then records
    cursor.json            {"segment", "offset", "shipped"}: everything before is shipped

A **record** is ``u32 length, u32 crc32(payload)`` (big endian) then the payload, the
msgpack encoding of the Exchange (``exchange.to_bytes``). Each record is one ``write(2)``
of a file opened ``O_APPEND``.

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

``TRACEBOX_TEST_SPOOL_DIE_AFTER_BATCHES=n`` makes the process ``os._exit(137)`` right
after its n-th batch reached the bucket and before the cursor moves: a fault-injection
hook for the crash tests.
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
from ...errors import BucketError, Refused, UsageError
from .exchange import Exchange, from_bytes, to_bytes

MAGIC = b"TBSPOOL1"
HEADER = struct.Struct(">II")  # payload length, crc32 of payload
MAX_RECORD_BYTES = 256 << 20  # bodies beyond this are cut before spooling
SEGMENT_BYTES = 16 << 20  # a segment is closed once it grows past this
BATCH_RECORDS = 64  # records shipped per batch (one cursor write each)
BATCH_BYTES = 32 << 20
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0
_O_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)

Fsync = Literal["always", "interval", "never"]


def default_root(project=None) -> str:
    """``$XDG_STATE_HOME/tracebox/proxy-spool/<16 hex of bucket URL + project>``."""
    name = "local"
    if project is not None:
        name = hashlib.sha256(f"{project.store.url}\0{project.name}".encode()).hexdigest()[:16]
    return user_dir("state", "proxy-spool", name)


def _seg_name(seq: int) -> str:
    return f"{seq:016d}.seg"


def _segments(root: str) -> list[int]:
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


def read_records(path: str, offset: int, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """``(offset after, payload)`` of each whole, valid record from ``offset`` (at most up to
    ``end``). Stops at the first incomplete or damaged record."""
    with open(path, "rb") as f:
        if offset == 0:
            if f.read(len(MAGIC)) != MAGIC:
                return
            offset = len(MAGIC)
        f.seek(offset)
        limit = end if end is not None else os.fstat(f.fileno()).st_size
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
    """The proxy's sink: local append, background shipping (``store=None``: no shipping)."""

    def __init__(
        self,
        root: str | None = None,
        project=None,
        *,
        store=None,
        fsync: Fsync = "interval",
        fsync_ms: float = 200.0,
        segment_bytes: int = SEGMENT_BYTES,
        ship: bool = True,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise UsageError(f"unknown spool fsync policy {fsync!r}: always, interval or never")
        self.root = root or default_root(project)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise Refused(f"the spool {self.root} is in use by another tracebox process") from None
        if store is None and project is not None and ship:
            from .store import CallStore

            store = CallStore(project)
        self.store = store if ship else None
        self.fsync, self.fsync_ms, self.segment_bytes = fsync, fsync_ms, segment_bytes
        self._die_after = int(os.environ.get("TRACEBOX_TEST_SPOOL_DIE_AFTER_BATCHES") or 0)
        self._batches = 0
        self._mu = threading.Lock()  # guards the writer and the counters
        self._wake = threading.Condition(self._mu)
        self._closed = False
        self._stop = threading.Event()
        self._dirty = False
        self._cursor = self._load_cursor()
        existing = _segments(self.root)
        self._seq = (existing[-1] + 1) if existing else 1
        self._fd = -1
        self._end = 0
        self._open_segment()
        self._appended = 0
        self._pending_records, self._pending_bytes = self._count_backlog()
        self._oldest: str | None = None
        self._last_error: str | None = None
        self._last_error_at: str | None = None
        self._rejected = 0
        self._shipped_run = 0
        self._threads: list[threading.Thread] = []
        if self.store is not None:
            self._start(self._ship_loop, "spool-shipper")
        if fsync == "interval":
            self._start(self._fsync_loop, "spool-fsync")

    # -- writing --------------------------------------------------------------------------
    def _open_segment(self) -> None:
        path = os.path.join(self.root, _seg_name(self._seq))
        fd = os.open(path, _O_APPEND, 0o600)
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
            self._pending_records += 1
            self._pending_bytes += len(record)
            if self._oldest is None:
                self._oldest = exchange.started
            if self.fsync == "always":
                os.fsync(self._fd)
            else:
                self._dirty = True
            self._wake.notify_all()

    def _fsync_loop(self) -> None:
        while not self._stop.wait(self.fsync_ms / 1000):
            with self._mu:
                fd, dirty, self._dirty = self._fd, self._dirty, False
            if dirty:
                try:
                    os.fsync(fd)
                except OSError:  # closed by a rotation meanwhile: its successor is synced next
                    pass

    # -- cursor ---------------------------------------------------------------------------
    def _load_cursor(self) -> dict:
        try:
            with open(os.path.join(self.root, "cursor.json"), "rb") as f:
                doc = json.loads(f.read(4096))
            seg, off, shipped = int(doc["segment"]), int(doc["offset"]), int(doc["shipped"])
            if seg < 0 or off < 0 or shipped < 0:
                raise ValueError
            return {"segment": seg, "offset": off, "shipped": shipped}
        except FileNotFoundError:
            return {"segment": 0, "offset": 0, "shipped": 0}
        except (ValueError, KeyError, TypeError, OSError):
            # a damaged cursor: start over; re-shipping is idempotent
            return {"segment": 0, "offset": 0, "shipped": 0}

    def _save_cursor(self, seg: int, off: int, shipped: int) -> None:
        path = os.path.join(self.root, "cursor.json")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(json.dumps({"segment": seg, "offset": off, "shipped": shipped}).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.root)
        self._cursor = {"segment": seg, "offset": off, "shipped": shipped}

    def _count_backlog(self) -> tuple[int, int]:
        """Records and bytes not yet shipped (a scan of older segments, at start)."""
        records = size = 0
        for seq in _segments(self.root):
            if seq < self._cursor["segment"] or seq == self._seq:
                continue
            start = self._cursor["offset"] if seq == self._cursor["segment"] else 0
            path = os.path.join(self.root, _seg_name(seq))
            prev = max(start, len(MAGIC))
            for off, _ in read_records(path, start):
                records += 1
                size += off - prev
                prev = off
        return records, size

    # -- shipping -------------------------------------------------------------------------
    def _start(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _next_batch(self) -> tuple[list[bytes], int, int]:
        """The next records to ship and the cursor position after them (segments the
        cursor has passed are deleted on the way)."""
        while True:
            with self._mu:
                active, active_end = self._seq, self._end
            seg, off = self._cursor["segment"], self._cursor["offset"]
            segs = [s for s in _segments(self.root) if s >= seg]
            if not segs:
                return [], seg, off
            if segs[0] != seg:  # the cursor's segment is gone (or new): start the next one
                seg, off = segs[0], 0
            path = os.path.join(self.root, _seg_name(seg))
            payloads: list[bytes] = []
            size = 0
            end = active_end if seg == active else None
            for off_after, payload in read_records(path, off, end):
                payloads.append(payload)
                off = off_after
                size += len(payload)
                if len(payloads) >= BATCH_RECORDS or size >= BATCH_BYTES:
                    break
            if payloads or seg == active:
                return payloads, seg, off
            # an older segment is exhausted (or its tail is torn): drop it, move on
            self._save_cursor(seg + 1, 0, self._cursor["shipped"])
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def _ship_loop(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            with self._mu:
                if self._closed:
                    return
            payloads, seg, off = self._next_batch()
            if not payloads:
                with self._mu:
                    if self._pending_records == 0:
                        self._oldest = None
                    if not self._closed and self._seq == seg and self._end == off:
                        self._wake.wait(1.0)
                continue
            try:
                self._ship(payloads)
            except (BucketError, OSError) as e:
                self._error(e)
                with self._mu:
                    if not self._closed:
                        self._wake.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = _BACKOFF_FIRST
            self._batches += 1
            if self._die_after and self._batches >= self._die_after:
                os._exit(137)
            self._save_cursor(seg, off, self._cursor["shipped"] + len(payloads))
            with self._mu:
                self._shipped_run += len(payloads)
                self._pending_records = max(0, self._pending_records - len(payloads))
                self._pending_bytes = max(
                    0, self._pending_bytes - sum(HEADER.size + len(p) for p in payloads)
                )
                self._wake.notify_all()

    def _ship(self, payloads: list[bytes]) -> None:
        exchanges: list[Exchange] = []
        for p in payloads:
            try:
                exchanges.append(from_bytes(p))
            except Exception as e:  # noqa: BLE001 - a record we cannot read is skipped
                self._reject(e)
        if exchanges:
            with self._mu:
                self._oldest = exchanges[0].started  # the oldest record not yet shipped
        self.store.ship(exchanges, on_reject=self._reject)

    def _reject(self, e: BaseException) -> None:
        with self._mu:
            self._rejected += 1
        self._error(e)

    def _error(self, e: BaseException) -> None:
        from ...coord.context import iso, now

        with self._mu:
            self._last_error = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            self._last_error_at = iso(now())

    # -- status and shutdown --------------------------------------------------------------
    def status(self) -> dict:
        """Depth (records, bytes), oldest unshipped exchange's age, shipping counters."""
        from ...coord.context import now, parse_iso

        with self._mu:
            age = None
            if self._oldest and self._pending_records:
                try:
                    age = max(0.0, (now() - parse_iso(self._oldest)).total_seconds())
                except Exception:  # noqa: BLE001 - a malformed timestamp only hides the age
                    age = None
            return {
                "root": self.root,
                "shipping": self.store is not None,
                "fsync": self.fsync,
                "depth_records": self._pending_records,
                "depth_bytes": self._pending_bytes,
                "oldest_unshipped_age_s": age,
                "appended": self._appended,
                "shipped": self._shipped_run,
                "shipped_total": self._cursor["shipped"],
                "rejected": self._rejected,
                "last_error": self._last_error,
                "last_error_at": self._last_error_at,
                "segments": len(_segments(self.root)),
            }

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything appended so far is shipped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._mu:
            while self._pending_records > 0 and self.store is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.5))
            return self._pending_records == 0

    def close(self, drain_timeout: float = 10.0) -> None:
        """Ship what can be shipped within ``drain_timeout``, then stop. Unshipped records
        stay in the spool for the next start."""
        if self._closed:
            return
        if self.store is not None and drain_timeout > 0:
            self.drain(drain_timeout)
        with self._mu:
            self._closed = True
            self._wake.notify_all()
        self._stop.set()
        for t in self._threads:
            t.join(timeout=max(drain_timeout, 1.0))
        with self._mu:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self.store is not None:
            self.store.close()
        os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
