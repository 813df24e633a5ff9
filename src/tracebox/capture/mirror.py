"""Mirror agents' transcript files, scrubbed, into the bucket as immutable line-aligned parts.

Owns the ``sessions/`` part of the bucket format (docs/mirror.md) and everything that
writes or reads it:

    sessions/<harness>/<session>/meta.json                                   state (CAS)
    sessions/<harness>/<session>/part-g<gen>-<start>-<end>-<sha>.jsonl       main transcript
    sessions/<harness>/<session>/subagents/<name>/part-g<gen>-…jsonl         one subagent file

A **part** holds the scrubbed bytes of the source range ``[start, end)`` (12-digit byte
offsets), as they are (``.jsonl``) or as one zstd frame (``.jsonl.zst``: ``[mirror]
compress``, by default for every bucket but a local folder); it always ends at a
newline, so a JSON line is never split and a secret can never straddle two uploads.
``sha`` is the first 16 hex digits of the SHA-256 of the *raw* source range, so a later
run can tell whether the source still holds what was mirrored. Parts are created with
create-if-absent and never changed.

The bucket is the source of truth: the cursor of a stream (one source file) is the end
of the longest chain of parts of its newest generation that starts at offset 0. A
re-run after a crash (``kill -9`` anywhere) lists the parts, continues from that end
and so uploads exactly what is missing. Cutting is memoryless (each part is the longest
run of whole lines of at most ``part_bytes`` from its start), so a re-run re-creates a
part lost in flight under the very same key. When the source shrank below the cursor or
the bytes of the first or last mirrored part changed, the stream starts a new
generation from offset 0 instead of appending to a history it no longer matches.

A local cursor file per (bucket URL, project, source path) in the user state dir is only
a cache: it lets an unchanged file be skipped without asking the bucket.

``TRACEBOX_TEST_DIE_AFTER_PARTS=n`` makes the process ``os._exit(137)`` right after its
n-th part is stored: a fault-injection hook for the crash-safety tests, documented in
docs/mirror.md. ``TRACEBOX_MIRROR_PART_BYTES`` overrides the part size (tests, tuning).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait

import msgspec

from ..dirs import user_dir
from ..errors import (
    AlreadyExists,
    ConfigError,
    FormatError,
    NotSupported,
    TraceboxError,
    UsageError,
    one_line,
)
from .harnesses import SessionFile

PREFIX = "sessions/"
PART_BYTES = 1 << 20  # the usual size of one part; a longer single line gets a part of its own
MAX_LINE_BYTES = 64 << 20  # a longer line stops its file's mirror (with a warning)
ENDED_AFTER = 3600.0  # a file untouched this long has ended: its partial last line goes too
_UPLOAD_AHEAD = 4  # parts of one file in flight while the next one is read and scrubbed
_SESSION_WORKERS = 4  # sessions mirrored at once
_STREAM_WORKERS = 4  # files of all those sessions (main + subagents) read and scrubbed at once
_UPLOAD_WORKERS = 8  # part uploads in flight

_PART = re.compile(r"part-g(\d{4,9})-(\d{12})-(\d{12})-([0-9a-f]{16})\.jsonl(\.zst)?")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


# -- part keys and chains -----------------------------------------------------------------


class Part(msgspec.Struct, frozen=True):
    gen: int
    start: int
    end: int
    digest: str  # sha256 of the raw source range, 16 hex digits
    key: str = ""  # the full object key (set when listed)
    zst: bool = False  # stored as one zstd frame (``.jsonl.zst``)

    @property
    def name(self) -> str:
        ext = ".jsonl.zst" if self.zst else ".jsonl"
        return f"part-g{self.gen:04d}-{self.start:012d}-{self.end:012d}-{self.digest}{ext}"


def parse_part(name: str, key: str = "") -> Part | None:
    m = _PART.fullmatch(name)
    if m is None:
        return None
    gen, start, end = int(m[1]), int(m[2]), int(m[3])
    if end < start or gen < 1:
        return None
    return Part(gen, start, end, m[4], key, zst=m[5] is not None)


class Chain(msgspec.Struct, frozen=True):
    """The current state of one stream in the bucket."""

    gen: int  # newest generation (1 when nothing is stored yet)
    end: int  # source bytes mirrored in that generation
    parts: tuple[Part, ...]  # the parts that cover [0, end), in order
    top_gen: int  # highest generation number seen (a new one is top_gen + 1)


def chain(parts: Iterable[Part]) -> Chain:
    """The longest run of parts of the newest generation that starts at offset 0.

    Parts left over by racing or crashed writers (same start, another end) are ignored
    unless they reach further; any path through them covers the same source bytes."""
    parts = list(parts)
    top = max((p.gen for p in parts), default=1)
    reach: dict[int, Part | None] = {0: None}
    for p in sorted((p for p in parts if p.gen == top), key=lambda p: (p.start, p.end)):
        if p.end > p.start and p.start in reach and p.end not in reach:
            reach[p.end] = p
    end = max(reach)
    path: list[Part] = []
    e = end
    while (p := reach[e]) is not None:
        path.append(p)
        e = p.start
    return Chain(top, end, tuple(reversed(path)), top)


def fingerprint(chains: Mapping[str, Chain]) -> str:
    """Changes whenever any stream of the session gets new parts or a new generation."""
    text = ";".join(f"{n}:{c.gen}:{c.end}" for n, c in sorted(chains.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def safe_segment(name: str) -> str:
    """``name`` as one key segment: unchanged when safe, else sanitized plus a short hash."""
    if _SEGMENT.fullmatch(name) and not name.endswith(".json"):
        return name
    clean = re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)[:96].lstrip("._@+-") or "x"
    return f"{clean}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def session_prefix(harness: str, session_id: str) -> str:
    return f"{PREFIX}{safe_segment(harness)}/{safe_segment(session_id)}/"


# -- the streams of one session -------------------------------------------------------------


class Stream(msgspec.Struct, frozen=True):
    name: str  # "main" or "subagents/<file stem>"
    path: str  # the source file
    prefix: str  # key prefix of its parts, relative to the project


def streams_of(sf: SessionFile) -> list[Stream]:
    """The session's main file plus, for Claude Code, ``<session>/subagents/*.jsonl``."""
    base = session_prefix(sf.harness, sf.session_id)
    out = [Stream("main", sf.path, base)]
    folder = os.path.join(os.path.splitext(sf.path)[0], "subagents")
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        if e.name.endswith(".jsonl") and e.is_file(follow_symlinks=False):
            name = f"subagents/{safe_segment(e.name[: -len('.jsonl')])}"
            out.append(Stream(name, e.path, f"{base}{name}/"))
    return out


def _stream_of_key(rel: str) -> tuple[str, Part] | None:
    """(stream name, part) for a key relative to a session prefix, else None."""
    head, _, leaf = rel.rpartition("/")
    part = parse_part(leaf)
    if part is None:
        return None
    if head == "":
        return "main", part
    if head.startswith("subagents/") and head.count("/") == 1:
        return head, part
    return None


# -- results --------------------------------------------------------------------------------


class StreamResult(msgspec.Struct):
    name: str
    generation: int = 1
    new_generation: bool = False
    bytes: int = 0  # source bytes mirrored in the current generation
    lines: int = 0
    parts: int = 0  # parts in the current generation's chain
    uploaded: int = 0  # source bytes uploaded by this run
    uploaded_parts: int = 0
    held_back: int = 0  # bytes of an unfinished last line left for a later run
    redactions: dict[str, int] = msgspec.field(default_factory=dict)
    warning: str | None = None


class SessionResult(msgspec.Struct):
    harness: str
    session_id: str
    source: str  # the source path, home dir shown as ~
    status: str = "unchanged"  # uploaded | unchanged | skipped | failed
    generation: int = 1
    new_generation: bool = False
    bytes: int = 0
    lines: int = 0
    parts: int = 0
    uploaded: int = 0
    uploaded_parts: int = 0
    held_back: int = 0
    subagents: int = 0
    redactions: dict[str, int] = msgspec.field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = msgspec.field(default_factory=list)

    def to_dict(self) -> dict:
        return msgspec.structs.asdict(self)


# -- local cursor cache -----------------------------------------------------------------


def state_dir() -> str:
    return user_dir("state", "mirror")


def _cache_id(bucket: str, project: str, path: str) -> str:
    real = os.path.realpath(path)
    return hashlib.sha256(
        f"{bucket}\0{project}\0{real}".encode("utf-8", "surrogateescape")
    ).hexdigest()[:32]


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class _Cache:
    """Cursor cache files: ``<state dir>/<sha of (bucket, project, source)>.json``."""

    def __init__(self, bucket: str, project: str):
        self.bucket, self.project = bucket, project
        self.dir = state_dir()

    def _file(self, path: str, ext: str) -> str:
        return os.path.join(self.dir, _cache_id(self.bucket, self.project, path) + ext)

    def get(self, path: str) -> dict | None:
        try:
            with open(self._file(path, ".json"), "rb") as f:
                doc = json.loads(f.read(64 << 10))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def put(self, path: str, doc: dict) -> None:
        target = self._file(path, ".json")
        tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(self.dir, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            os.replace(tmp, target)
        except OSError:  # a cache: failing to write it only costs a bucket listing later
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def lock(self, path: str) -> int | None:
        """An exclusive lock on one session for this destination (blocks while another
        tracebox process on this machine mirrors it); None if locking is unavailable."""
        try:
            os.makedirs(self.dir, exist_ok=True)
            fd = os.open(self._file(path, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            return None
        return fd


def _fresh(cached: dict | None, st: os.stat_result, ended: bool) -> bool:
    """True if the cache says this exact file state is already mirrored."""
    if not cached or cached.get("stat") != _stat_key(st):
        return False
    return not ended or cached.get("end") == st.st_size


# -- reading sources ------------------------------------------------------------------------


def _read_parts(
    fd: int, start: int, size: int, ended: bool, part_bytes: int
) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, raw) for each part from ``start``: whole lines, at most ``part_bytes``
    each unless one line is longer. An unfinished last line is included only if
    ``ended``. Raises ``_LineTooLong`` for a line over ``MAX_LINE_BYTES``."""
    pos = start
    while pos < size:
        buf = os.pread(fd, min(part_bytes, size - pos), pos)
        if not buf:
            return  # the file shrank while we read it: the next run sees it
        at_eof = pos + len(buf) >= size
        nl = buf.rfind(b"\n")
        if nl < 0 and not at_eof:  # one line longer than a part: read to its end
            chunks = [buf]
            got = len(buf)
            while True:
                if got > MAX_LINE_BYTES:
                    raise _LineTooLong(pos, got)
                more = os.pread(fd, min(part_bytes, size - pos - got), pos + got)
                if not more:
                    at_eof = True
                    break
                chunks.append(more)
                got += len(more)
                i = more.find(b"\n")
                if i >= 0:
                    chunks[-1] = more[: i + 1]
                    got += i + 1 - len(more)
                    break
                if pos + got >= size:
                    at_eof = True
                    break
            buf = b"".join(chunks)
            nl = len(buf) - 1 if buf.endswith(b"\n") else -1
        if at_eof and ended:
            cut = len(buf)
        elif nl >= 0:
            cut = nl + 1
        else:
            return  # only an unfinished line is left
        yield pos, pos + cut, buf[:cut]
        pos += cut


class _LineTooLong(Exception):
    def __init__(self, offset: int, size: int):
        super().__init__(offset, size)
        self.offset, self.size = offset, size


def _verified(fd: int, size: int, ch: Chain) -> bool:
    """The source still holds the raw bytes of the chain's first and last parts."""
    if ch.end > size:
        return False
    for p in {ch.parts[0], ch.parts[-1]} if ch.parts else ():
        if _digest(os.pread(fd, p.end - p.start, p.start)) != p.digest:
            return False
    return True


def _count_lines(fd: int, end: int) -> int:
    """Lines in the source's first ``end`` bytes (an unfinished last one counts)."""
    n, pos, buf = 0, 0, b""
    while pos < end:
        buf = os.pread(fd, min(8 << 20, end - pos), pos)
        if not buf:
            break
        n += buf.count(b"\n")
        pos += len(buf)
    return n + (1 if buf and not buf.endswith(b"\n") else 0)


# -- paths shown in the bucket --------------------------------------------------------------


def home_scrubbed(path: str | None) -> str | None:
    """``path`` with the home directory shown as ``~`` (also in Claude's encoded form)."""
    if not path:
        return path
    home = os.path.expanduser("~").rstrip("/")
    if not home or home == "/":
        return path
    out = path
    if out == home or out.startswith(home + "/"):
        out = "~" + out[len(home) :]
    encoded = re.escape(re.sub(r"[^A-Za-z0-9]", "-", home))
    return re.sub(encoded + r"(?=[-/]|$)", "~", out)


# -- the mirror ---------------------------------------------------------------------------


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}")
    return value


def make_scrubber(project, *, env: Mapping[str, str] | None = None):
    """The project's scrubber (its ``[scrub]`` rules from .tracebox.toml)."""
    try:
        from ..scrub import Scrubber
    except ImportError as e:
        raise TraceboxError(
            f"the scrubber is not available ({e}); refusing to upload unscrubbed "
            "transcripts (pass --no-scrub to mirror them as they are)"
        ) from None
    return Scrubber(
        config=project.settings.raw.get("scrub"), env=os.environ if env is None else env
    )


class Mirror:
    """Mirrors sessions into one project; one per process (it holds the upload threads,
    the scrubber and the fault-injection counter). ``scrub=False`` uploads raw bytes."""

    def __init__(self, project, *, scrub: bool = True, final: bool = False):
        self.p = project
        self.ctx = project.ctx
        self.store = project.ctx.store
        self.scrub = scrub
        self.final = final
        self.compress = compress_parts(project)
        self.part_bytes = _env_int("TRACEBOX_MIRROR_PART_BYTES", PART_BYTES, 1024)
        self._die_after = _env_int("TRACEBOX_TEST_DIE_AFTER_PARTS", 0, 0)
        self._stored = 0
        self._lock = threading.Lock()
        self._scrub_lock = threading.Lock()
        self._scrubber = None  # built on first use (or by warm_up): it costs more than a no-op run
        self._warming: threading.Thread | None = None
        self._warm_error: BaseException | None = None
        self._uploads: ThreadPoolExecutor | None = None
        self._streams: ThreadPoolExecutor | None = None
        self.cache = _Cache(self.store.url, project.name)
        self.host = os.uname().nodename

    # -- plumbing ---------------------------------------------------------------------
    def close(self) -> None:
        for pool in (self._streams, self._uploads):  # streams first: they feed uploads
            if pool is not None:
                pool.shutdown(wait=True)
        self._streams = self._uploads = None

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._uploads is None:
                self._uploads = ThreadPoolExecutor(_UPLOAD_WORKERS, thread_name_prefix="upload")
            return self._uploads

    def _stream_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._streams is None:
                self._streams = ThreadPoolExecutor(_STREAM_WORKERS, thread_name_prefix="stream")
            return self._streams

    def warm_up(self) -> None:
        """Start building the scrubber in the background (its rule compiler releases the
        GIL), overlapping it with listing the bucket and reading; called as soon as a
        session turns out to have something new, so a run with nothing new never pays."""

        def build() -> None:
            try:
                self._scrubber = make_scrubber(self.p)
            except BaseException as e:  # re-raised where the scrubber is first needed
                self._warm_error = e

        with self._lock:
            if not self.scrub or self._warming is not None:
                return
            self._warming = threading.Thread(target=build, name="scrubber", daemon=True)
            self._warming.start()

    def _scrub(self, raw: bytes) -> tuple[bytes, dict[str, int]]:
        """``raw`` scrubbed, and the counts of what was redacted in it."""
        if not self.scrub:
            return raw, {}
        scrubber = self._scrubber
        if scrubber is None:
            with self._scrub_lock:
                if self._warming is not None:
                    self._warming.join()
                    if self._warm_error is not None:
                        raise self._warm_error
                if self._scrubber is None:
                    self._scrubber = make_scrubber(self.p)
                scrubber = self._scrubber
        return scrubber.scrub_counted(raw)

    def _upload(self, key: str, data: bytes) -> bool:
        """Store one part's scrubbed bytes, compressed first when parts are (in the
        upload thread: zstd releases the GIL while the next part is scrubbed)."""
        return self._store_part(key, compress(data) if self.compress else data)

    def _store_part(self, key: str, data: bytes) -> bool:
        """Create one part; False if an earlier run had already stored it."""
        try:
            self.store.create(key, data)
            created = True
        except AlreadyExists:
            created = False  # the same source range with the same bytes, from an earlier run
        except NotSupported:  # no conditional writes (HF): the key is unique anyway
            self.store.put(key, data)
            created = True
        if self._die_after and created:
            with self._lock:
                self._stored += 1
                if self._stored >= self._die_after:
                    os._exit(137)
        return created

    # -- one session ------------------------------------------------------------------
    def mirror_session(self, sf: SessionFile, *, final: bool | None = None) -> SessionResult:
        """Upload what is new in one session (all its files); never raises for a
        session-level problem (the result says ``failed`` and why)."""
        res = SessionResult(sf.harness, safe_segment(sf.session_id), home_scrubbed(sf.path) or "")
        try:
            self._mirror(sf, res, self.final if final is None else final)
        except (TraceboxError, OSError) as e:
            res.status = "failed"
            res.error = _one_line(e)
        return res

    def _mirror(self, sf: SessionFile, res: SessionResult, final: bool) -> None:
        if not os.path.isfile(sf.path):
            res.status = "skipped"
            res.error = (
                f"{res.source} is not a plain file (this agent keeps sessions in a database "
                "or folder, which the mirror does not copy yet)"
                if os.path.exists(sf.path.rpartition("#")[0] or sf.path)
                else f"{res.source}: no such file"
            )
            return
        streams = streams_of(sf)
        main_st = os.stat(sf.path)
        res.subagents = len(streams) - 1
        lock = self.cache.lock(sf.path)
        try:
            cached = {s.name: self.cache.get(s.path) for s in streams}
            now = time.time()
            stats = {}
            for s in streams:
                try:
                    stats[s.name] = os.stat(s.path) if s.name != "main" else main_st
                except OSError:
                    stats[s.name] = None
            ended = {
                n: final or (st is not None and now - st.st_mtime > ENDED_AFTER)
                for n, st in stats.items()
            }
            if all(st is not None and _fresh(cached[n], st, ended[n]) for n, st in stats.items()):
                main = cached["main"] or {}
                res.generation, res.bytes, res.lines = (
                    main.get("gen", 1),
                    main.get("end", 0),
                    main.get("lines", 0),
                )
                res.parts = main.get("parts", 0)
                return
            self.warm_up()
            base = session_prefix(sf.harness, sf.session_id)
            found: dict[str, list[Part]] = {}
            has_meta = False
            full = self.ctx.key(base)
            for m in self.store.list(full):
                rel = m.key[len(full) :]
                if rel == "meta.json":
                    has_meta = True
                    continue
                hit = _stream_of_key(rel)
                if hit is not None:
                    found.setdefault(hit[0], []).append(msgspec.structs.replace(hit[1], key=m.key))
            results: dict[str, StreamResult] = {}
            counts: dict[str, int] = {}
            live = [s for s in streams if stats[s.name] is not None]
            for s, r in zip(live, self._each_stream(live, found, ended, cached), strict=True):
                if isinstance(r, OSError):
                    if s.name == "main":
                        raise r
                    res.warnings.append(f"{s.name}: not mirrored: {_one_line(r)}")
                    continue
                results[s.name] = r
                for k, v in r.redactions.items():
                    counts[k] = counts.get(k, 0) + v
                if r.warning:
                    res.warnings.append(f"{s.name}: {r.warning}")
            main = results["main"]
            res.generation = main.generation
            res.bytes, res.lines, res.parts = main.bytes, main.lines, main.parts
            res.held_back = sum(r.held_back for r in results.values())
            res.uploaded = sum(r.uploaded for r in results.values())
            res.uploaded_parts = sum(r.uploaded_parts for r in results.values())
            res.new_generation = any(r.new_generation for r in results.values())
            res.redactions = counts
            res.status = "uploaded" if res.uploaded_parts else "unchanged"
            self._write_meta(
                sf, base, results, counts, uploaded=bool(res.uploaded_parts), has_meta=has_meta
            )
            if res.uploaded_parts or res.new_generation:
                self._event(res)
                self._publish(sf, res)
            for s in streams:
                r = results.get(s.name)
                if r is not None and stats[s.name] is not None:
                    self.cache.put(
                        s.path,
                        {
                            "bucket": self.store.url,
                            "project": self.p.name,
                            "source": os.path.realpath(s.path),
                            "gen": r.generation,
                            "end": r.bytes,
                            "lines": r.lines,
                            "parts": r.parts,
                            "stat": _stat_key(stats[s.name]),
                        },
                    )
        finally:
            if lock is not None:
                os.close(lock)

    def _each_stream(
        self,
        streams: list[Stream],
        found: dict[str, list[Part]],
        ended: dict[str, bool],
        cached: dict[str, dict | None],
    ) -> list[StreamResult | OSError]:
        """Mirror the streams of one session, concurrently when there are several (a
        session's files are independent); an ``OSError`` reading one is returned in its
        place. Every stream has finished before this returns or raises."""

        def one(s: Stream) -> StreamResult | OSError:
            try:
                return self._mirror_stream(s, found.get(s.name, []), ended[s.name], cached[s.name])
            except OSError as e:
                return e

        if len(streams) <= 1:
            return [one(s) for s in streams]
        futures = [self._stream_pool().submit(one, s) for s in streams]
        wait(futures)
        return [f.result() for f in futures]

    def _mirror_stream(
        self, s: Stream, parts: list[Part], ended: bool, cached: dict | None
    ) -> StreamResult:
        r = StreamResult(s.name)
        fd = os.open(s.path, _O_READ)
        try:
            size = os.fstat(fd).st_size
            ch = chain(parts)
            gen, start, chain_parts = ch.gen, ch.end, list(ch.parts)
            if ch.parts and not _verified(fd, size, ch):
                gen, start, chain_parts = ch.top_gen + 1, 0, []
                r.new_generation = True
            if cached and cached.get("gen") == gen and cached.get("end") == start:
                lines = int(cached.get("lines") or 0)
            else:
                lines = _count_lines(fd, start)
            pending: deque[tuple[Future, int]] = deque()

            def settle() -> None:
                future, n = pending.popleft()
                if future.result():
                    r.uploaded += n
                    r.uploaded_parts += 1

            pos = start
            try:
                for a, b, raw in _read_parts(fd, start, size, ended, self.part_bytes):
                    data, c = self._scrub(raw)
                    for k, v in c.items():
                        r.redactions[k] = r.redactions.get(k, 0) + v
                    part = Part(gen, a, b, _digest(raw), zst=self.compress)
                    key = self.ctx.key(s.prefix + part.name)
                    pending.append((self._pool().submit(self._upload, key, data), b - a))
                    chain_parts.append(part)
                    lines += raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
                    pos = b
                    while len(pending) > _UPLOAD_AHEAD:
                        settle()
            except _LineTooLong as e:
                r.warning = (
                    f"a line at byte {e.offset} is over {MAX_LINE_BYTES >> 20} MiB; "
                    "mirrored up to it"
                )
            finally:
                errors = []
                while pending:  # no upload may outlive this call, even on an error
                    try:
                        settle()
                    except BaseException as e:
                        errors.append(e)
                if errors:
                    raise errors[0]
            if r.new_generation and pos == 0:
                # an empty new generation still needs a marker, or readers keep the old one
                marker = Part(gen, 0, 0, _digest(b""))
                self._store_part(self.ctx.key(s.prefix + marker.name), b"")
            r.generation, r.bytes, r.lines, r.parts = gen, pos, lines, len(chain_parts)
            r.held_back = max(0, size - pos)
            return r
        finally:
            os.close(fd)

    def _write_meta(
        self,
        sf: SessionFile,
        base: str,
        results: dict[str, StreamResult],
        counts: dict[str, int],
        *,
        uploaded: bool,
        has_meta: bool,
    ) -> None:
        from ..coord.context import cas_loop, iso, now

        main = results["main"]
        stamp = iso(now())
        scrubbed = self.scrub

        def change(old: dict | None) -> dict:
            old = old or {}
            subs = dict(old.get("subagents") or {})
            for name, r in results.items():
                if name != "main":
                    subs[name.split("/", 1)[1]] = {
                        "generation": r.generation,
                        "bytes": r.bytes,
                        "lines": r.lines,
                        "parts": r.parts,
                    }
            total = dict((old.get("scrub") or {}).get("counts") or {})
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
            was_scrubbed = (old.get("scrub") or {}).get("enabled", True)
            return {
                "v": 1,
                "harness": sf.harness,
                "session_id": sf.session_id,
                "cwd": self._shown_path(sf.cwd),
                "source_path": self._shown_path(sf.path),
                "source_name": os.path.basename(sf.path),
                "generation": main.generation,
                "bytes": main.bytes,
                "lines": main.lines,
                "parts": main.parts,
                "subagents": subs,
                "scrub": {
                    "enabled": bool(was_scrubbed and (scrubbed or not uploaded)),
                    "counts": total,
                },
                "host": self.host,
                "mirrored_by": self.p.agent,
                "created": old.get("created", stamp),
                "updated": stamp,
            }

        rel = f"{base}meta.json"
        if not uploaded and has_meta:
            cur = self.ctx.get_json(rel)
            if cur is not None and _meta_current(cur[0], results):
                return  # the common "nothing new" case writes nothing
        try:
            cas_loop(self.ctx, rel, change, absent=not has_meta)
        except NotSupported:
            cur = self.ctx.get_json(rel)
            self.ctx.put_json(rel, change(cur[0] if cur else None))

    def _shown_path(self, path: str | None) -> str | None:
        """A path as stored in meta.json: home folder as ``~``, then scrubbed."""
        shown = home_scrubbed(path)
        if shown and self.scrub:
            shown, _ = self._scrub(shown.encode("utf-8", "surrogateescape"))
            shown = shown.decode("utf-8", "replace")
        return shown

    def _publish(self, sf: SessionFile, res: SessionResult) -> None:
        """Publish the session's new tool calls, results and errors to Kafka when the
        config has a ``[stream.kafka]`` table (docs/stream.md); never fails the mirror."""
        raw = self.p.settings.raw
        stream = raw.get("stream")
        if not (isinstance(stream, dict) and "kafka" in stream):
            return
        from ..stream.kafka import publisher
        from . import harnesses

        pub = publisher(raw)
        if pub is not None:
            parse = harnesses.get(sf.harness).parse
            pub.session(
                self.ctx, sf.harness, res.session_id, res.generation, lambda: parse(sf.path)
            )

    def _event(self, res: SessionResult) -> None:
        from ..coord import events

        events.record(
            self.ctx,
            "session.mirrored",
            data={
                "harness": res.harness,
                "session": res.session_id,
                "generation": res.generation,
                "new_generation": res.new_generation,
                "bytes": res.bytes,
                "lines": res.lines,
                "uploaded": res.uploaded,
                "parts": res.uploaded_parts,
                "subagents": res.subagents,
                "redactions": res.redactions,
            },
        )

    # -- many sessions ------------------------------------------------------------------
    def mirror_many(
        self,
        sessions: list[SessionFile],
        *,
        on_done: Callable[[SessionResult], None] | None = None,
    ) -> list[SessionResult]:
        """Mirror sessions concurrently; results in the order given."""
        if len(sessions) <= 1:
            out = [self.mirror_session(sf) for sf in sessions]
            for r in out:
                if on_done:
                    on_done(r)
            return out
        with ThreadPoolExecutor(min(_SESSION_WORKERS, len(sessions))) as pool:
            # the biggest first, so that one big session does not start last and finish alone
            order = sorted(range(len(sessions)), key=lambda i: -sessions[i].size)
            started = {i: pool.submit(self.mirror_session, sessions[i]) for i in order}
            futures = [started[i] for i in range(len(sessions))]
            out = []
            for f in futures:
                r = f.result()
                if on_done:
                    on_done(r)
                out.append(r)
        return out


def _meta_current(meta: dict, results: dict[str, StreamResult]) -> bool:
    """True if ``meta`` already records the state of every stream in ``results``."""
    subs = meta.get("subagents") or {}
    for name, r in results.items():
        doc = meta if name == "main" else subs.get(name.split("/", 1)[1]) or {}
        if [doc.get(k) for k in ("generation", "bytes", "lines", "parts")] != [
            r.generation,
            r.bytes,
            r.lines,
            r.parts,
        ]:
            return False
    return True


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {home_scrubbed(e.filename) if e.filename else ''}".rstrip(": ")
    return one_line(e)


# -- finding sessions on this machine -------------------------------------------------------


def find_sessions(
    harness_names: Iterable[str],
    *,
    cwd: str | None,
    session_id: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[SessionFile]:
    """Session files of the given harnesses (adapters not installed are skipped),
    optionally only those recorded under ``cwd`` and/or with ``session_id``."""
    from . import harnesses

    out: list[SessionFile] = []
    for name in harness_names:
        try:
            adapter = harnesses.get(name)
        except ModuleNotFoundError:
            continue
        for sf in adapter.locate(cwd=cwd, env=env):
            if os.path.basename(os.path.dirname(sf.path)) == "subagents":
                continue  # mirrored with its parent session
            if session_id is None or sf.session_id == session_id:
                out.append(sf)
    return out


def session_for_path(path: str, harness: str | None, session_id: str | None = None) -> SessionFile:
    """A ``SessionFile`` for one explicit file (``--session PATH``)."""
    from . import harnesses

    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    adapter = harnesses.get(harness) if harness else harnesses.detect(path)
    if session_id is None:
        stem = os.path.splitext(os.path.basename(path))[0]
        ids = _UUID.findall(stem)
        session_id = ids[-1].lower() if ids else stem
    st = os.stat(path)
    return SessionFile(
        adapter.NAME, session_id, os.path.abspath(path), None, st.st_mtime, st.st_size
    )


def follow(
    m: Mirror,
    find: Callable[[], list[SessionFile]],
    *,
    interval: float,
    stop: threading.Event | None = None,
) -> Iterator[list[SessionResult]]:
    """Mirror, wait ``interval`` seconds, repeat (like ``tail -F``) until ``stop`` is set;
    a pass under way when it is set finishes first, and its results are yielded."""
    stop = stop or threading.Event()
    while True:
        yield m.mirror_many(find())
        if stop.wait(interval):
            return


# -- reading the bucket back ----------------------------------------------------------------


def _scan_sessions(ctx, prefix: str) -> dict[tuple[str, str], dict]:
    """{(harness, session): {"streams": {name: [Part]}, "meta": bool}} under ``prefix``."""
    out: dict[tuple[str, str], dict] = {}
    root = ctx.key(PREFIX)
    for m in ctx.store.list(ctx.key(prefix)):
        bits = m.key[len(root) :].split("/", 2)
        if len(bits) != 3:
            continue
        h, sid, rel = bits
        entry = out.setdefault((h, sid), {"streams": {}, "meta": False})
        if rel == "meta.json":
            entry["meta"] = True
            continue
        hit = _stream_of_key(rel)
        if hit is not None:
            p = hit[1]
            entry["streams"].setdefault(hit[0], []).append(msgspec.structs.replace(p, key=m.key))
    return out


def list_sessions(project, harness: str | None = None) -> list[dict]:
    """Every mirrored session: harness, session_id, fingerprint (changes when its parts
    do), generation, bytes, parts, subagents, plus cwd/updated/... from its meta.json."""
    from ..coord.context import fetch_many

    ctx = project.ctx
    prefix = PREFIX if harness is None else f"{PREFIX}{safe_segment(harness)}/"
    found = _scan_sessions(ctx, prefix)
    keys = sorted(found)
    metas = fetch_many(ctx, [ctx.key(f"{PREFIX}{h}/{s}/meta.json") for h, s in keys])
    rows = []
    for (h, sid), meta in zip(keys, metas, strict=True):
        chains = {n: chain(ps) for n, ps in found[(h, sid)]["streams"].items()}
        main = chains.get("main") or chain([])
        meta = meta or {}
        rows.append(
            {
                "harness": h,
                "session_id": sid,
                "fingerprint": fingerprint(chains),
                "generation": main.gen,
                "bytes": main.end,
                "parts": len(main.parts),
                "lines": meta.get("lines") if meta.get("bytes") == main.end else None,
                "subagents": sum(1 for n in chains if n != "main"),
                "cwd": meta.get("cwd"),
                "source_path": meta.get("source_path"),
                "created": meta.get("created"),
                "updated": meta.get("updated"),
                "scrubbed": (meta.get("scrub") or {}).get("enabled"),
                "redactions": (meta.get("scrub") or {}).get("counts") or {},
            }
        )
    return rows


def read_parts(project, parts: Iterable[Part], out) -> int:
    """Write the parts' (scrubbed, decompressed) bytes to the binary file ``out`` in
    order; returns bytes written."""
    parts = list(parts)
    store = project.ctx.store
    n = 0
    with ThreadPoolExecutor(min(8, max(1, len(parts)))) as pool:
        for data in pool.map(lambda p: part_bytes(p, store.get(p.key).data), parts):
            out.write(data)
            n += len(data)
    return n


# -- compression ----------------------------------------------------------------------------

ZSTD_LEVEL = 3  # transcripts shrink ~9x at ~500 MB/s (benchmarks/results/mirror.json)
COMPRESS_MODES = ("auto", "zstd", "none")


def compress_parts(project) -> bool:
    """Whether this project stores new parts zstd-compressed: ``[mirror] compress`` in
    the config, ``auto`` (the default) for every bucket except a local folder, where
    ``grep`` and ``jq`` keep working on the files as they are."""
    table = project.settings.raw.get("mirror", {})
    if not isinstance(table, dict):
        raise ConfigError('[mirror] must be a table, e.g. [mirror] compress = "auto"')
    mode = table.get("compress", "auto")
    if mode not in COMPRESS_MODES:
        raise ConfigError(f"[mirror] compress must be one of {', '.join(COMPRESS_MODES)}: {mode!r}")
    return mode == "zstd" or (mode == "auto" and not project.store.local)


@functools.cache  # a failed import is not cached by Python: it would search again each call
def _zstd():
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd
    return zstd


def compress(data: bytes) -> bytes:
    """``data`` as one zstd frame (its size recorded in the frame header)."""
    return _zstd().compress(data, level=ZSTD_LEVEL)


def part_bytes(part: Part, data: bytes) -> bytes:
    """The scrubbed bytes of a part from its stored object. A compressed part may not
    expand past 8x its source range plus 64 KiB (scrubbing rewrites secrets as longer
    markers, never that much), nor carry data after its frame."""
    if not part.zst:
        return data
    zstd = _zstd()
    limit = 8 * (part.end - part.start) + (64 << 10)
    d = zstd.ZstdDecompressor()
    try:
        out = d.decompress(data, max_length=limit)
    except zstd.ZstdError as e:
        raise FormatError(f"{part.key or part.name}: not a valid zstd part ({e})") from None
    if not d.eof or d.unused_data:
        why = "expands past its bound" if not d.eof else "has data after its frame"
        raise FormatError(f"{part.key or part.name}: damaged zstd part ({why})")
    return out


def session_chains(project, harness: str, session_id: str) -> tuple[dict[str, Chain], dict]:
    """The current chain of each stream of one mirrored session, and its meta.json."""
    ctx = project.ctx
    base = session_prefix(harness, session_id)
    found = _scan_sessions(ctx, base).get((safe_segment(harness), safe_segment(session_id)))
    if found is None:
        from ..errors import NotFound

        raise NotFound(f"no mirrored session {harness}/{session_id} in project {project.name}")
    cur = ctx.get_json(f"{base}meta.json")
    return {n: chain(ps) for n, ps in found["streams"].items()}, (cur[0] if cur else {})


def load_session(project, harness: str, session_id: str):
    """The mirrored session parsed with its harness adapter (subagents included).

    Adapters parse paths, so the current generation's parts are concatenated into a
    temporary folder laid out like the agent's own (``<id>.jsonl`` + ``<id>/subagents/``).
    """
    import tempfile

    from . import harnesses

    try:
        adapter = harnesses.get(harness)
    except ModuleNotFoundError:
        raise FormatError(f"no adapter for harness {harness!r} in this tracebox") from None
    chains, meta = session_chains(project, harness, session_id)
    name = meta.get("source_name")
    if not isinstance(name, str) or name != os.path.basename(name) or name in ("", ".", ".."):
        name = f"{safe_segment(session_id)}.jsonl"
    with tempfile.TemporaryDirectory(prefix="tracebox-session-") as tmp:
        main_path = os.path.join(tmp, name)
        for stream, ch in chains.items():
            if stream == "main":
                target = main_path
            else:
                folder = os.path.join(os.path.splitext(main_path)[0], "subagents")
                os.makedirs(folder, exist_ok=True)
                target = os.path.join(folder, stream.split("/", 1)[1] + ".jsonl")
            with open(target, "wb") as f:
                read_parts(project, ch.parts, f)
        if "main" not in chains:
            open(main_path, "wb").close()
        session = adapter.parse(main_path)
    session.source_path = (
        f"{project.store.url.rstrip('/')}/{project.name}/{session_prefix(harness, session_id)}"
    )
    return session
