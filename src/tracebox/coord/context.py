"""What every coordination operation needs: the store, the project, who is acting, a clock.

Also the shared conventions of the bucket format (docs/format.md): UTC timestamps with
microseconds, sortable ids, JSON encoding, the size limits, and the rules for names
(agent ids, step ids, memory keys) that become parts of object keys.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..bucket.store import Store
from ..errors import AlreadyExists, Conflict, FormatError, NotFound, UsageError

FORMAT_VERSION = 1
MAX_STATE_BYTES = 1 << 20  # state objects we read (claims, memory values, messages)
MAX_MESSAGE_BYTES = 256 << 10
MAX_VALUE_BYTES = 1 << 20

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
# stdlib json, not msgspec, on this path: state objects are tiny and importing msgspec
# costs ~10 ms of every CLI call's start-up (benchmarks/README.md)
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        raise FormatError(f"invalid timestamp {text!r} in bucket object") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def sortable(dt: datetime) -> str:
    """Fixed-width, lexicographically time-ordered: ``20261122T041500123456Z``."""
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def new_id(dt: datetime | None = None) -> str:
    return f"{sortable(dt or now())}-{os.urandom(4).hex()}"


def check_name(value: str, what: str, *, json_suffix_ok: bool = False) -> str:
    """Agent ids and step ids become one key segment: a safe, bounded charset.

    Names used as a *file* (``agents/<id>.json``) may not end in ``.json``; names used
    as a *folder* (artifact names) may (``json_suffix_ok``)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = value if isinstance(value, str) else type(value).__name__
        raise UsageError(
            f"invalid {what} {shown!r}: use 1-128 letters, digits, '.', '_', '@', '+' or '-', "
            "starting with a letter or digit"
        )
    if value.endswith(".json") and not json_suffix_ok:
        raise UsageError(f"invalid {what} {value!r}: may not end in '.json'")
    return value


def encode(obj) -> bytes:
    try:
        return _encoder.encode(obj).encode("utf-8")
    except UnicodeEncodeError:
        # lone surrogates: bytes that were not UTF-8 (argv, files) decoded with
        # surrogateescape; refuse them here rather than write an unreadable object
        raise UsageError("text is not valid UTF-8; tracebox stores UTF-8 only") from None
    except (ValueError, TypeError) as e:  # NaN/Infinity, or a type JSON cannot hold
        raise UsageError(f"value has no JSON form: {e}") from None


def check_text(value: str, what: str) -> str:
    """``value`` if it is text that can be stored (valid UTF-8, no lone surrogates)."""
    if not isinstance(value, str):
        raise UsageError(f"{what} must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text") from None
    return value


def decode(data: bytes, what: str):
    if len(data) > MAX_STATE_BYTES * 8:
        raise FormatError(f"{what} is {len(data)} bytes, larger than any tracebox object")
    try:
        return json.loads(data, parse_constant=_no_constants)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FormatError(f"{what} is not valid JSON ({e}); the bucket object is damaged") from None
    except RecursionError:
        raise FormatError(f"{what} is nested too deeply; the bucket object is damaged") from None


@dataclass
class Ctx:
    """One actor in one project: ``store`` + ``project`` + ``agent`` (+ settings)."""

    store: Store
    project: str
    agent: str
    skew: float = 2.0
    alive_after: float = 300.0
    claims_allowed: bool = True
    claims_refusal: str = ""
    config: dict = field(default_factory=dict)  # the whole config file (features' tables)
    warnings: list = field(default_factory=list)
    _bg: list = field(default_factory=list, repr=False)
    _format: list = field(default_factory=list, repr=False)  # [thread, {"error": exc}]

    def key(self, rel: str) -> str:
        return f"{self.project}/{rel}"

    def get_json(self, rel: str) -> tuple[dict, str] | None:
        """(document, etag) or None when absent."""
        try:
            blob = self.store.get(self.key(rel))
        except NotFound:
            return None
        doc = decode(blob.data, rel)
        if not isinstance(doc, dict):
            raise FormatError(f"{rel} is not a JSON object; the bucket object is damaged")
        return doc, blob.etag

    def put_json(self, rel: str, doc) -> str:
        self.guard()
        return self.store.put(self.key(rel), encode(doc))

    def create_json(self, rel: str, doc) -> str:
        self.guard()
        return self.store.create(self.key(rel), encode(doc))

    def update_json(self, rel: str, doc, etag: str) -> str:
        self.guard()
        return self.store.update(self.key(rel), encode(doc), etag)

    def check_in_background(self, check) -> None:
        """Run ``check`` (the project's format check) alongside the command's first reads;
        ``guard()`` waits for it and re-raises its error, so nothing is written into a
        missing project or one in a newer format, at no extra latency."""
        holder: dict = {}

        def run():
            try:
                check()
            except Exception as e:  # re-raised by guard() in the caller's thread
                holder["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._format[:] = [t, holder]

    def guard(self) -> None:
        if self._format:
            t, holder = self._format
            t.join()
            if "error" in holder:
                raise holder["error"]

    def background(self, fn, *args) -> None:
        """Run a best-effort write (heartbeat, event) alongside the main operation."""
        t = threading.Thread(target=_quiet, args=(fn, *args), daemon=True)
        t.start()
        self._bg.append(t)

    def flush(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self._bg:
            t.join(max(0.0, deadline - time.monotonic()))
        self._bg.clear()


def fetch_many(ctx: Ctx, keys: list[str], *, workers: int = 32) -> list[dict | None]:
    """GET many JSON objects concurrently (full keys); ``None`` where absent or damaged.

    obstore releases the GIL during I/O, so threads overlap the round trips.
    """

    def one(k: str):
        try:
            doc = decode(ctx.store.get(k).data, k)
        except (NotFound, FormatError):
            return None
        return doc if isinstance(doc, dict) else None

    if len(keys) < 3:
        return [one(k) for k in keys]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(workers, len(keys))) as pool:
        return list(pool.map(one, keys))


def _quiet(fn, *args):
    try:
        fn(*args)
    except Exception:  # a heartbeat must never fail the command it rides on
        pass


def cas_loop(ctx: Ctx, rel: str, change, *, attempts: int = 50, absent: bool = False):
    """Read-modify-write ``rel`` with compare-and-swap until it sticks.

    ``change(doc_or_None)`` returns the new document, or raises to abort (e.g. Refused).
    Returns ``(old_doc, new_doc)``. ``absent=True`` (the caller just listed and did not
    see ``rel``) tries a create first, saving the read; a lost race reads and retries.
    """
    delay = 0.005
    for attempt in range(attempts):
        cur = None if absent and attempt == 0 else ctx.get_json(rel)
        old = cur[0] if cur else None
        new = change(old)
        try:
            if cur is None:
                ctx.create_json(rel, new)
            else:
                ctx.update_json(rel, new, cur[1])
            return old, new
        except (Conflict, AlreadyExists):
            time.sleep(delay * (0.5 + os.urandom(1)[0] / 255))
            delay = min(delay * 2, 0.5)
    raise Conflict(f"{rel} is changing too fast: gave up after {attempts} attempts")
