"""Compacting the bucket into the warehouse, incrementally; and what the warehouse holds.

Layout under ``<project>/warehouse/``::

    _manifest.json                                   the commit point (create / If-Match)
    <table>/date=YYYY-MM-DD/part-<sortable ts>-<rand>.parquet   immutable data files

The **manifest** lists the live files (with their rows, bytes, the source units whose
rows they hold and the models they mention) and, per source unit, the fingerprint it was
compacted at. A sync lists the bucket's sources (``tables`` has the list), compares
fingerprints and, for what is new or changed:

1. parses it into rows (a changed session is re-read whole; a day folder of events or
   calls that only gained keys after its last compacted key gets just those);
2. rewrites, per ``(table, date)`` partition touched, the files that hold rows of a
   replaced or removed source — without those rows — together with the partition's
   small files (< ``SMALL_FILE_BYTES``: so files do not pile up) and the new rows, into
   new files (create-if-absent, unique names);
3. commits a new manifest with ``update(If-Match)`` (``create`` for the first one). A
   sync that loses that race deletes the files it wrote and starts over from the new
   manifest, so two syncs never duplicate rows or lose each other's work;
4. deletes the files the commit replaced.

So every row is in exactly one live file, and after a sync the data folders hold only
live files (readers that glob the folders — Spark, Trino — see no duplicate); readers
that go through the manifest (``tracebox sql``) also see a consistent snapshot while a
sync runs. Files left by a sync that crashed before its commit are deleted by a later
sync once they are older than ``ORPHAN_AGE_S``. Work is committed in batches of about
``BATCH_ROWS`` rows, so an interrupted first sync of a large bucket resumes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..coord.context import iso, now, sortable
from ..errors import AlreadyExists, Conflict, FormatError, NotFound, one_line
from . import need_extra

PREFIX = "warehouse/"
MANIFEST = f"{PREFIX}_manifest.json"
FORMAT_VERSION = 1
SMALL_FILE_BYTES = 16 << 20  # files below this are merged when their partition is rewritten
MAX_FILE_ROWS = 1_000_000  # rows of one data file
BATCH_ROWS = 200_000  # rows parsed before a commit
ORPHAN_AGE_S = 3600.0  # an unlisted data file older than this is a crashed sync's leftover
MAX_MANIFEST_BYTES = 512 << 20
GATE_ENV = "TRACEBOX_TEST_WAREHOUSE_GATE"
_ATTEMPTS = 8  # syncs restarted after losing the manifest race
_LOADERS = 8  # sources read at once
_UPLOADERS = 8
_FILE = re.compile(r"([a-z_]+)/date=(\d{4}-\d{2}-\d{2})/part-(\d{8}T\d{12}Z)-[0-9a-f]{8}\.parquet")
_DAY = re.compile(r"(calls|events)/(\d{4})/(\d{2})/(\d{2})")

Progress = Callable[[int, int], None]  # (sources done, sources to read)


@dataclass
class SyncReport:
    """What one ``sync`` did."""

    new: int = 0  # source units compacted for the first time
    changed: int = 0  # re-read whole (a session that grew, a run that went on)
    appended: int = 0  # day folders that only gained objects: just those were read
    removed: int = 0  # gone from the bucket: their rows were dropped
    unchanged: int = 0
    failed: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # new rows written, per table
    files_written: int = 0
    files_removed: int = 0
    bytes_written: int = 0
    commits: int = 0
    retries: int = 0  # restarts after another sync committed first
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # one line per failed source


@dataclass
class _Unit:
    """A source unit to compact: its origin, what the manifest records once it is done,
    how to read its rows, and whether its earlier rows are replaced."""

    origin: str
    state: dict
    load: Callable[[], dict[str, list[dict]]]
    replace: bool
    status: str  # "new", "changed" or "appended"


class _Retry(Exception):
    """Another sync changed the manifest (or deleted a file being merged): start over."""


# -- the manifest ---------------------------------------------------------------------------


def load_manifest(project) -> tuple[dict | None, str | None]:
    """The manifest and its ETag, or ``(None, None)`` when there is no warehouse yet."""
    key = project.ctx.key(MANIFEST)
    try:
        blob = project.store.get(key)
    except NotFound:
        return None, None
    if len(blob.data) > MAX_MANIFEST_BYTES:
        raise FormatError(f"{key} is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    try:
        doc = json.loads(blob.data)
    except ValueError:
        raise FormatError(f"{key} is not valid JSON; the warehouse manifest is damaged") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise FormatError(f"{key} is not a warehouse manifest")
    if not isinstance(doc.get("v"), int) or doc["v"] > FORMAT_VERSION:
        raise FormatError(
            f"{key} has warehouse format v{doc.get('v')}, newer than this tracebox "
            f"(v{FORMAT_VERSION}); upgrade tracebox to read it"
        )
    doc.setdefault("sources", {})
    return doc, blob.etag


def file_part(path: str) -> tuple[str, str] | None:
    """``(table, date)`` of a data file path (relative to ``warehouse/``), else None."""
    m = _FILE.fullmatch(path)
    return (m[1], m[2]) if m else None


def _empty_manifest() -> dict:
    return {
        "v": FORMAT_VERSION,
        "format": "tracebox-warehouse",
        "created": iso(now()),
        "updated": None,
        "commits": 0,
        "sources": {},
        "files": {},
    }


# -- what the bucket holds ------------------------------------------------------------------


def _digest(keys: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(keys).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _plan(project, man: dict) -> tuple[list[_Unit], set[str], int]:
    """Source units to compact, origins whose rows must go, and how many are unchanged."""
    from ..index.sync import captured_sessions, mirrored_sessions

    sources = man["sources"]
    units: list[_Unit] = []
    seen: set[str] = set()
    unchanged = 0
    for bs in [*mirrored_sessions(project), *captured_sessions(project)]:
        seen.add(bs.key)
        old = sources.get(bs.key)
        if old is not None and old.get("fp") == bs.fingerprint:
            unchanged += 1
            continue
        units.append(
            _Unit(
                bs.key,
                {"fp": bs.fingerprint},
                _session_loader(bs),
                True,
                "changed" if old else "new",
            )
        )
    for folder, keys in _day_folders(project).items():
        seen.add(folder)
        unit = _day_unit(project, folder, keys, sources.get(folder))
        if unit is None:
            unchanged += 1
        else:
            units.append(unit)
    for rid, stamps in _runs(project).items():
        origin = f"harness/{rid}"
        seen.add(origin)
        fp = _digest(stamps)
        old = sources.get(origin)
        if old is not None and old.get("fp") == fp:
            unchanged += 1
            continue
        units.append(
            _Unit(origin, {"fp": fp}, _run_loader(project, rid), True, "changed" if old else "new")
        )
    return units, set(sources) - seen, unchanged


def _session_loader(bs):
    from .tables import session_rows

    return lambda: session_rows(bs.load(), bs.key)


def _day_folders(project) -> dict[str, list[str]]:
    """``{"events/yyyy/mm/dd": [keys relative to the project]}``, also for ``calls/``."""
    ctx = project.ctx
    out: dict[str, list[str]] = {}
    cut = len(ctx.key(""))
    for prefix in ("calls/", "events/"):
        for m in ctx.store.list(ctx.key(prefix)):
            rel = m.key[cut:]
            folder, _, leaf = rel.rpartition("/")
            if leaf.endswith(".json") and _DAY.fullmatch(folder):
                out.setdefault(folder, []).append(rel)
    for keys in out.values():
        keys.sort()  # some S3 servers list folders out of order
    return out


def _day_unit(project, folder: str, keys: list[str], old: dict | None) -> _Unit | None:
    """None when unchanged; only the keys after the last compacted one when the folder
    just grew (every key up to it is still there); else the whole folder again."""
    fp = _digest(keys)
    if old is not None and old.get("fp") == fp:
        return None
    state = {"fp": fp, "last": keys[-1], "count": len(keys)}
    last = old.get("last") if old else None
    if isinstance(last, str) and _digest([k for k in keys if k <= last]) == old.get("fp"):
        todo, replace, status = [k for k in keys if k > last], False, "appended"
    else:
        todo, replace, status = keys, True, "changed" if old else "new"
    return _Unit(folder, state, _day_loader(project, folder, todo), replace, status)


def _day_loader(project, folder: str, keys: list[str]):
    from ..coord.context import fetch_many
    from .tables import call_row, event_row

    kind, y, m, d = _DAY.fullmatch(folder).groups()
    date = f"{y}-{m}-{d}"
    row, table = (call_row, "calls") if kind == "calls" else (event_row, "events")

    def load() -> dict[str, list[dict]]:
        docs = fetch_many(project.ctx, [project.ctx.key(k) for k in keys])
        return {table: [row(doc, folder, date) for doc in docs if doc is not None]}

    return load


def _runs(project) -> dict[str, list[str]]:
    """Harness runs: ``{run id: ["key:etag", ...]}`` of the objects its rows come from."""
    from ..harness.run import PREFIX as RUNS

    ctx = project.ctx
    cut = len(ctx.key(RUNS))
    found: dict[str, list[str]] = {}
    has_run: set[str] = set()
    for m in ctx.store.list(ctx.key(RUNS)):
        rid, _, rest = m.key[cut:].partition("/")
        gen, _, leaf = rest.partition("/")
        if rest == "run.json":
            has_run.add(rid)
        elif not (gen.startswith("gen-") and leaf in ("summary.json", "observations.jsonl")):
            continue
        found.setdefault(rid, []).append(f"{rest}:{m.etag}")
    return {rid: sorted(v) for rid, v in found.items() if rid in has_run}


def _run_loader(project, rid: str):
    from ..harness.report import load
    from ..harness.run import key
    from .tables import harness_rows

    def rows() -> dict[str, list[dict]]:
        run = load(project, rid)
        entries: dict[int, list[dict]] = {}
        for g in run.get("generations") or []:
            n = g.get("generation") if isinstance(g, dict) else None
            if isinstance(n, int):
                try:
                    blob = project.store.get(
                        project.ctx.key(key(rid, f"gen-{n}", "observations.jsonl"))
                    )
                except NotFound:
                    continue
                entries[n] = _jsonl(blob.data)
        return harness_rows(run, entries, f"harness/{rid}")

    return rows


def _jsonl(data: bytes) -> list[dict]:
    """Observation entries of an ``observations.jsonl`` (bad lines skipped)."""
    from ..observe.merge import loads

    return list(loads(data.decode("utf-8", "replace")).values())


# -- writing ----------------------------------------------------------------------------


def _parquet(t) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(t, sink, compression="snappy")
    return sink.getvalue().to_pybytes()


def _read(project, path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        data = project.store.get(project.ctx.key(PREFIX + path)).data
    except NotFound:
        raise _Retry from None  # merged away by a sync that committed meanwhile
    return pq.read_table(pa.BufferReader(data))


def _file_meta(t) -> dict:
    import pyarrow.compute as pc

    meta: dict[str, Any] = {
        "rows": t.num_rows,
        "sources": sorted(pc.unique(t.column("origin")).drop_null().to_pylist()),
    }
    if "model" in t.column_names:
        meta["models"] = sorted(pc.unique(t.column("model")).drop_null().to_pylist())
    return meta


def _new_files(project, man: dict, batch: list[tuple[_Unit, dict]], removed: set[str]):
    """The data files a commit of ``batch`` writes: ``({path: (bytes, meta)}, replaced)``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .tables import conform, to_arrow

    files = man["files"]
    drop = {u.origin for u, _ in batch if u.replace} | removed
    new: dict[tuple[str, str], list[dict]] = {}
    for _, rows in batch:
        for table, rs in rows.items():
            for r in rs:
                new.setdefault((table, r["date"]), []).append(r)
    replaced = {p for p, m in files.items() if drop.intersection(m.get("sources") or ())}
    parts = set(new) | {file_part(p) for p in replaced}
    replaced |= {
        p
        for p, m in files.items()
        if file_part(p) in parts and int(m.get("bytes") or 0) < SMALL_FILE_BYTES
    }
    out: dict[str, tuple[bytes, dict]] = {}
    stamp = sortable(now())
    for table, date in sorted(p for p in parts if p is not None):
        pieces = []
        for path in sorted(p for p in replaced if file_part(p) == (table, date)):
            t = _read(project, path)
            if drop:
                t = t.filter(pc.invert(pc.is_in(t.column("origin"), pa.array(sorted(drop)))))
            pieces.append(conform(t, table))
        if (table, date) in new:
            pieces.append(to_arrow(table, new[(table, date)]))
        merged = pa.concat_tables(pieces) if pieces else None
        if merged is None or merged.num_rows == 0:
            continue
        for start in range(0, merged.num_rows, MAX_FILE_ROWS):
            chunk = merged.slice(start, MAX_FILE_ROWS)
            path = f"{table}/date={date}/part-{stamp}-{os.urandom(4).hex()}.parquet"
            data = _parquet(chunk)
            out[path] = (data, {**_file_meta(chunk), "bytes": len(data)})
    return out, replaced


def _commit(project, man, etag, batch, removed, report: SyncReport):
    """Write the batch's files and commit the manifest; the new (manifest, etag)."""
    store = project.store
    written, replaced = _new_files(project, man, batch, removed)

    def put(item):
        path, (data, _) = item
        store.create(project.ctx.key(PREFIX + path), data)

    def delete(path):
        try:
            store.delete(project.ctx.key(PREFIX + path))
        except NotFound:
            pass

    with ThreadPoolExecutor(_UPLOADERS) as pool:
        list(pool.map(put, written.items()))
        sources = {k: v for k, v in man["sources"].items() if k not in removed}
        for u, _ in batch:
            sources[u.origin] = u.state
        files = {p: m for p, m in man["files"].items() if p not in replaced}
        files |= {p: meta for p, (_, meta) in written.items()}
        doc = {
            **man,
            "updated": iso(now()),
            "commits": int(man.get("commits") or 0) + 1,
            "sources": sources,
            "files": files,
        }
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        key = project.ctx.key(MANIFEST)
        _test_gate()
        try:
            etag = store.update(key, data, etag) if etag else store.create(key, data)
        except (Conflict, AlreadyExists):
            list(pool.map(delete, written))
            raise _Retry from None
        list(pool.map(delete, replaced))
    report.commits += 1
    report.files_written += len(written)
    report.files_removed += len(replaced)
    report.bytes_written += sum(len(d) for d, _ in written.values())
    report.removed += len(removed)
    for u, rows in batch:
        setattr(report, u.status, getattr(report, u.status) + 1)
        for table, rs in rows.items():
            report.rows[table] = report.rows.get(table, 0) + len(rs)
    return doc, etag


def _test_gate() -> None:
    """Fault injection for the concurrency tests (docs/warehouse.md): with
    ``TRACEBOX_TEST_WAREHOUSE_GATE=PATH`` the first commit of this process creates
    ``PATH.ready`` and waits (at most 60 s) until ``PATH`` exists."""
    path = os.environ.get(GATE_ENV)
    if not path or os.path.exists(path):
        return
    open(f"{path}.ready", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


# -- sync -------------------------------------------------------------------------------


def sync(project, *, progress: Progress | None = None) -> SyncReport:
    """Compact what is new or changed in ``project``'s bucket into the warehouse."""
    need_extra()
    project.check_format()  # a missing project, or one in a newer format, is refused
    t0 = time.monotonic()
    report = SyncReport()
    for _ in range(_ATTEMPTS):
        try:
            man = _sync_once(project, report, progress)
            break
        except _Retry:
            report.retries += 1
            time.sleep(0.05 + os.urandom(1)[0] / 1000)
    else:
        raise Conflict(
            f"the warehouse of project {project.name} kept changing under this sync "
            f"(another sync committing?); gave up after {_ATTEMPTS} attempts — try again"
        )
    if man is not None:
        _collect_garbage(project, man)
    report.seconds = round(time.monotonic() - t0, 3)
    return report


def _loaded(units: list[_Unit], report: SyncReport) -> Iterator[tuple[_Unit, dict | None]]:
    """Each unit with its rows (None when it failed: reported), read a few at a time."""

    def one(u: _Unit):
        try:
            return u, u.load(), None
        except Exception as e:  # noqa: BLE001 - one bad source must not stop the sync
            return u, None, one_line(e, 300)

    with ThreadPoolExecutor(_LOADERS) as pool:
        for start in range(0, len(units), _LOADERS * 4):
            for u, rows, err in pool.map(one, units[start : start + _LOADERS * 4]):
                if err is not None:
                    report.failed += 1
                    report.errors.append(f"{u.origin}: {err}")
                yield u, rows


def _sync_once(project, report: SyncReport, progress: Progress | None) -> dict | None:
    man, etag = load_manifest(project)
    man = man or _empty_manifest()
    units, removed, unchanged = _plan(project, man)
    report.unchanged = unchanged
    report.failed, report.errors = 0, []
    batch: list[tuple[_Unit, dict]] = []
    rows = 0
    done = 0
    for unit, got in _loaded(units, report):
        done += 1
        if progress:
            progress(done, len(units))
        if got is None:
            continue
        batch.append((unit, got))
        rows += sum(len(v) for v in got.values())
        if rows >= BATCH_ROWS:
            man, etag = _commit(project, man, etag, batch, removed, report)
            batch, rows, removed = [], 0, set()
    if batch or removed:
        man, etag = _commit(project, man, etag, batch, removed, report)
    return man if etag else None


def _collect_garbage(project, man: dict) -> None:
    """Delete data files no manifest lists that are older than ``ORPHAN_AGE_S`` (left
    by a sync that died between writing them and committing)."""
    ctx = project.ctx
    cut = len(ctx.key(PREFIX))
    limit = datetime.now(UTC).timestamp() - ORPHAN_AGE_S
    for m in list(ctx.store.list(ctx.key(PREFIX))):
        path = m.key[cut:]
        hit = _FILE.fullmatch(path)
        if hit is None or path in man["files"]:
            continue
        born = datetime.strptime(hit[3], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).timestamp()
        if born < limit:
            try:
                ctx.store.delete(m.key)
            except NotFound:
                pass


# -- status -----------------------------------------------------------------------------


def status(project) -> dict:
    """What the warehouse holds: per table files, rows, bytes and date range; sources."""
    man, _ = load_manifest(project)
    if man is None:
        return {"exists": False, "tables": {}, "sources": {}}
    from .tables import TABLES

    tables: dict[str, dict] = {
        t: {"files": 0, "rows": 0, "bytes": 0, "partitions": 0, "first": None, "last": None}
        for t in TABLES
    }
    dates: dict[str, set[str]] = {t: set() for t in TABLES}
    for path, meta in man["files"].items():
        part = file_part(path)
        if part is None or part[0] not in tables:
            continue
        row = tables[part[0]]
        row["files"] += 1
        row["rows"] += int(meta.get("rows") or 0)
        row["bytes"] += int(meta.get("bytes") or 0)
        dates[part[0]].add(part[1])
    for t, ds in dates.items():
        if ds:
            tables[t] |= {"partitions": len(ds), "first": min(ds), "last": max(ds)}
    kinds = Counter(origin.split("/", 1)[0] for origin in man["sources"])
    return {
        "exists": True,
        "created": man.get("created"),
        "updated": man.get("updated"),
        "commits": man.get("commits"),
        "tables": tables,
        "sources": dict(kinds),
    }
