"""Filling the index: one session at a time, incrementally, from local files or the bucket.

Owns turning a trace-model ``Session`` into index rows and deciding when that work can be
skipped. Every source (a local transcript path, or a mirrored session in a bucket) is
remembered in ``sources`` with a fingerprint (size + mtime of the file and its sidecar
folder, or the bucket's ETag); an unchanged fingerprint means no parsing and no writes.
A changed one replaces the session's rows (with its subagents) in one transaction, so a
reader never sees half a session.

Rows written per session (see ``db.py``): one ``sessions`` row per session and subagent,
one ``steps`` row per step — token usage kept on the first step of each model response
only, so sums count each response once — one ``extra_usage`` row per model call that is
not a step (compactions, session totals), and one ``docs`` + ``doc_text`` row per
(step, kind) of text.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import msgspec

from ..errors import one_line
from ..trace.model import Reasoning, Session, Step, Text, ToolCall, ToolResult, Usage
from .db import utc_iso

MAX_DOC_CHARS = 100_000  # text of one (step, kind) kept searchable; the rest is cut
_STAMP_MAX_FILES = 10_000  # files of a session's sidecar folder looked at for its fingerprint
_TEXT_KIND = {"user": "user", "agent": "assistant", "system": "system", "tool": "tool_result"}
# control characters become spaces: \x02/\x03 mark highlights in snippets, the rest could
# drive a terminal; tab and newline stay
_CONTROL = {c: " " for c in range(32) if c not in (9, 10)} | {127: " "}

Progress = Callable[[int, int, str], None]  # (done, total, "local" or "bucket")


class Indexed(NamedTuple):
    status: Literal["added", "updated", "unchanged"]
    steps: int  # steps written (0 when unchanged)


@dataclass
class SyncReport:
    """What one ``index_local`` / ``index_bucket`` run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    steps: int = 0  # steps written
    errors: list[str] = field(default_factory=list)  # one line per failed source
    skipped: list[str] = field(default_factory=list)  # sources not available in this build

    def count(self, result: Indexed) -> None:
        setattr(self, result.status, getattr(self, result.status) + 1)
        self.steps += result.steps

    def merge(self, other: SyncReport) -> None:
        for name in ("added", "updated", "unchanged", "failed", "steps"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.skipped += other.skipped


# -- one session -------------------------------------------------------------------------


def is_current(db: sqlite3.Connection, origin: str, fingerprint: str) -> bool:
    """True when ``origin`` was indexed with this fingerprint.

    Also true when that session has since been replaced by a newer copy from another
    origin (a local file and its bucket mirror): re-reading the older copy would only make
    the two take turns.
    """
    row = db.execute("SELECT fingerprint FROM sources WHERE origin = ?", (origin,)).fetchone()
    return row is not None and row[0] == fingerprint


def index_session(
    db: sqlite3.Connection, session: Session, origin: str, fingerprint: str
) -> Indexed:
    """Index ``session`` (with its subagents) as read from ``origin``.

    Idempotent: the same origin with the same fingerprint is skipped. Otherwise the
    session's previous rows, from whatever origin, are replaced atomically.
    """
    if is_current(db, origin, fingerprint):
        return Indexed("unchanged", 0)
    db.execute("BEGIN IMMEDIATE")
    try:
        existed = _delete(db, uid(session, None))
        first_doc = db.execute("SELECT COALESCE(max(rowid), 0) + 1 FROM docs").fetchone()[0]
        next_doc = first_doc
        root_key = None
        steps = 0
        for s, parent_id in walk(session):
            # a subagent indexed before on its own (or under another origin) is replaced too
            _delete(db, uid(s, parent_id))
            key = _insert_session(db, s, parent_id, origin, root_key)
            root_key = root_key or key
            n, next_doc = _insert_steps(db, key, s, next_doc)
            steps += n
            _insert_extra_usage(db, key, s)
        # one bulk insert into the FTS index (an insert trigger would make FTS5 flush
        # its pending terms once per row: about 4x slower)
        db.execute(
            "INSERT INTO docs_fts(rowid, text) SELECT rowid, text FROM doc_text WHERE rowid >= ?",
            (first_doc,),
        )
        db.execute(
            "INSERT INTO sources(origin, fingerprint, session, indexed_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(origin) DO UPDATE SET fingerprint = excluded.fingerprint,"
            " session = excluded.session, indexed_at = excluded.indexed_at",
            (origin, fingerprint, root_key, _now()),
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return Indexed("updated" if existed else "added", steps)


def walk(s: Session, parent_id: str | None = None) -> Iterator[tuple[Session, str | None]]:
    """The session and its subagent sessions, depth first, each with its parent's id."""
    yield s, parent_id
    for sub in s.subagents:
        yield from walk(sub, s.id)


def uid(s: Session, parent_id: str | None) -> str:
    """The key of a session among all harnesses: ``harness:id``, or
    ``harness:parent/id`` for a subagent (ids are only unique within a parent)."""
    parent = parent_id or s.parent_session
    return f"{s.harness}:{parent}/{s.id}" if parent else f"{s.harness}:{s.id}"


class StepFacts(NamedTuple):
    """What a step adds to usage counts, with the rules every consumer applies."""

    idx: int  # the step's index (its position when the adapter gave none)
    usage: Usage | None  # its response's usage, on the first step of each response only
    tool_calls: int  # tool-call ids first seen in this step
    tool_errors: int  # call ids whose first failing result is in this step


def step_facts(s: Session) -> list[StepFacts]:
    """One ``StepFacts`` per step of ``s`` (not its subagents), in order.

    The trace model promises usage on exactly one step per response id; this makes sure,
    so sums over steps count each model response once."""
    out: list[StepFacts] = []
    responses: set[str] = set()
    calls: set[str] = set()
    failed: set[str] = set()
    for pos, st in enumerate(s.steps):
        idx = st.index if isinstance(st.index, int) else pos
        usage = None
        if st.usage is not None:
            rid = st.response_id or f"#{idx}"
            if rid not in responses:
                responses.add(rid)
                usage = st.usage
        new_calls = new_errors = 0
        for p in st.parts:
            if isinstance(p, ToolCall) and p.id not in calls:
                calls.add(p.id)
                new_calls += 1
            elif isinstance(p, ToolResult) and p.is_error and p.call_id not in failed:
                failed.add(p.call_id)
                new_errors += 1
        out.append(StepFacts(idx, usage, new_calls, new_errors))
    return out


def extra_usage(s: Session) -> list[tuple[str, str | None, Usage]]:
    """``(what, when, usage)`` of model calls that are not a step, counted the way
    ``trace.model.summarize`` does: compaction calls always (``"compaction"``), a
    session-level total (``"session_total"``) only when no step carries usage."""
    rows = [("compaction", c.timestamp, c.usage) for c in s.compactions if c.usage]
    if s.usage_total is not None and all(st.usage is None for st in s.steps):
        rows.append(("session_total", s.started, s.usage_total))
    return rows


def _delete(db: sqlite3.Connection, uid: str) -> bool:
    """Remove the session ``uid`` (with its subagents, if it is a top-level session) and its
    text from the FTS index; False when there was none. The only way rows leave the index."""
    row = db.execute("SELECT key FROM sessions WHERE uid = ?", (uid,)).fetchone()
    if row is None:
        return False
    keys = [row[0], *(k for (k,) in db.execute("SELECT key FROM sessions WHERE root = ?", row))]
    marks = ",".join("?" * len(keys))
    db.execute(
        "INSERT INTO docs_fts(docs_fts, rowid, text) SELECT 'delete', t.rowid, t.text"
        f" FROM docs d JOIN doc_text t ON t.rowid = d.rowid WHERE d.session IN ({marks})",
        keys,
    )
    db.execute(f"DELETE FROM sessions WHERE key IN ({marks})", keys)  # cascades to all rows
    return True


def _insert_session(
    db: sqlite3.Connection, s: Session, parent_id: str | None, origin: str, root: int | None
) -> int:
    cur = db.execute(
        "INSERT INTO sessions(uid, id, harness, agent, agent_version, title, models, cwd,"
        " git_branch, git_commit, started, ended, origin, parent_session,"
        " parent_tool_call_id, root) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            uid(s, parent_id),
            s.id,
            s.harness,
            s.agent,
            s.agent_version,
            s.title,
            msgspec.json.encode(s.models).decode(),
            s.cwd,
            s.git_branch,
            s.git_commit,
            utc_iso(s.started),
            utc_iso(s.ended),
            origin,
            s.parent_session or parent_id,
            s.parent_tool_call_id,
            root,
        ),
    )
    return cur.lastrowid  # type: ignore[return-value]


def _insert_steps(db: sqlite3.Connection, key: int, s: Session, rowid: int) -> tuple[int, int]:
    """Insert the steps and their text (text rows numbered from ``rowid``); returns the
    number of steps and the next free text row id."""
    step_rows: list[tuple[Any, ...]] = []
    doc_rows: list[tuple[Any, ...]] = []
    text_rows: list[tuple[int, str]] = []
    started = utc_iso(s.started)
    for st, (idx, u, new_calls, new_errors) in zip(s.steps, step_facts(s), strict=True):
        usage: tuple[int | None, ...] = (None,) * 5
        if u is not None:
            usage = (u.input, u.output, u.cache_read, u.cache_write, u.reasoning)
        when = utc_iso(st.timestamp)
        step_rows.append(
            (
                key,
                idx,
                st.source,
                when,
                st.model,
                st.response_id,
                *usage,
                new_calls,
                new_errors,
                st.error.kind if st.error is not None else None,
                int(st.copied),
            )
        )
        for kind, err, text in step_docs(st):
            doc_rows.append((rowid, key, idx, kind, err, when or started))
            text_rows.append((rowid, text))
            rowid += 1
    db.executemany(
        "INSERT OR REPLACE INTO steps(session, idx, source, ts, model, response_id, input,"
        " output, cache_read, cache_write, reasoning, tool_calls, tool_errors, error, copied)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        step_rows,
    )
    db.executemany(
        "INSERT INTO docs(rowid, session, idx, kind, is_error, ts) VALUES (?,?,?,?,?,?)",
        doc_rows,
    )
    db.executemany("INSERT INTO doc_text(rowid, text) VALUES (?,?)", text_rows)
    return len(step_rows), rowid


def _insert_extra_usage(db: sqlite3.Connection, key: int, s: Session) -> None:
    """Usage of calls that are not steps (``extra_usage``)."""
    db.executemany(
        "INSERT INTO extra_usage(session, what, ts, input, output, cache_read, cache_write,"
        " reasoning) VALUES (?,?,?,?,?,?,?,?)",
        [
            (key, what, utc_iso(ts), u.input, u.output, u.cache_read, u.cache_write, u.reasoning)
            for what, ts, u in extra_usage(s)
        ],
    )


def step_docs(st: Step) -> list[tuple[str, int, str]]:
    """The searchable text of one step: ``(kind, is_error, text)`` per kind present."""
    texts: dict[tuple[str, int], list[str]] = {}
    for p in st.parts:
        if isinstance(p, Text):
            key, text = (_TEXT_KIND.get(st.source, "user"), 0), p.text
        elif isinstance(p, Reasoning):
            key, text = ("reasoning", 0), p.text
        elif isinstance(p, ToolCall):
            key, text = ("tool_call", 0), f"{p.name} {_arguments(p.arguments)}"
        elif isinstance(p, ToolResult):
            key, text = ("tool_result", int(bool(p.is_error))), p.output
        else:  # attachments are references, not text
            continue
        if text:
            texts.setdefault(key, []).append(text)
    if st.error is not None:
        status = str(st.error.status) if st.error.status is not None else ""
        texts[("error", 1)] = [" ".join(filter(None, (st.error.kind, status, st.error.message)))]
    out = []
    for (kind, err), parts in texts.items():
        text = _clean("\n".join(parts))
        if text.strip():
            out.append((kind, err, text))
    return out


def _arguments(args: Any) -> str:
    if args is None:
        return ""
    if isinstance(args, str):
        return args[:MAX_DOC_CHARS]
    try:
        return msgspec.json.encode(args).decode()[:MAX_DOC_CHARS]
    except (TypeError, ValueError, OverflowError):
        return str(args)[:MAX_DOC_CHARS]


def _clean(text: str) -> str:
    text = text[:MAX_DOC_CHARS].translate(_CONTROL)
    if not text.isascii():  # lone surrogates (from undecodable bytes) cannot go to SQLite
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- local transcripts -------------------------------------------------------------------


def local_fingerprint(path: str, size: int = 0, mtime: float = 0.0) -> str:
    """Size + mtime of ``path`` and of the files in its sidecar folder (``<stem>/…``,
    where Claude Code keeps subagents), plus what the adapter reported (``size``,
    ``mtime``: stores spread over many files report their newest change there)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{size}:{mtime}".encode())
    st = os.stat(path)
    h.update(f"|{st.st_size}:{st.st_mtime_ns}".encode())
    root, ext = os.path.splitext(path)
    sidecar = path if os.path.isdir(path) else root if ext else None
    if sidecar and os.path.isdir(sidecar):
        for rel, fsize, fmtime in _tree_stamp(sidecar):
            h.update(f"|{rel}:{fsize}:{fmtime}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _tree_stamp(top: str, depth: int = 2) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of regular files up to ``depth`` levels under
    ``top``, symlinks not followed, at most ``_STAMP_MAX_FILES``."""
    out: list[tuple[str, int, int]] = []
    pending = [(top, 0)]
    while pending and len(out) < _STAMP_MAX_FILES:
        folder, level = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if level + 1 < depth:
                        pending.append((e.path, level + 1))
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.append((os.path.relpath(e.path, top), st.st_size, st.st_mtime_ns))
            except OSError:
                continue
    return sorted(out)


def index_local(
    db: sqlite3.Connection,
    harnesses: list[str] | None = None,
    cwd: str | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Index every session the harness adapters locate on this machine (optionally only
    those of ``harnesses``, and only those recorded under ``cwd``).

    Adapters not available in this build are listed in ``report.skipped``; a file that
    fails to parse is counted in ``report.failed`` and does not stop the run.
    """
    from ..capture import harnesses as registry

    report = SyncReport()
    jobs = []
    for name in harnesses or list(registry.ADAPTERS):
        try:
            adapter = registry.get(name)
        except ImportError:
            report.skipped.append(f"harness {name} (adapter not available)")
            continue
        try:
            jobs += [(adapter, f) for f in adapter.locate(cwd=cwd)]
        except Exception as e:  # noqa: BLE001 - one broken adapter must not stop the others
            report.errors.append(f"{name}: cannot list sessions: {one_line(e, 300)}")
    # oldest first: row ids then follow recency, which search's rank window relies on
    jobs.sort(key=lambda job: job[1].mtime)
    for done, (adapter, sf) in enumerate(jobs, 1):
        origin = os.path.abspath(sf.path)
        try:
            fp = local_fingerprint(origin, sf.size, sf.mtime)
            if is_current(db, origin, fp):
                report.unchanged += 1
            else:
                report.count(index_session(db, adapter.parse(origin), origin, fp))
        except Exception as e:  # noqa: BLE001 - a hostile file must not stop the run
            report.failed += 1
            report.errors.append(f"{origin}: {one_line(e, 300)}")
        if progress:
            progress(done, len(jobs), "local")
    return report


# -- the bucket --------------------------------------------------------------------------


class BucketSession(NamedTuple):
    """One session stored in a project's bucket, listed but not read yet."""

    key: str  # relative to the project: sessions/<harness>/<id> or calls-by-session/<id>
    origin: str  # <bucket url>/<project>/<key>
    fingerprint: str  # changes whenever the session's objects do
    load: Callable[[], Session]  # reads and parses it


def mirrored_sessions(project, harnesses: list[str] | None = None) -> list[BucketSession]:
    """The sessions mirrored into ``project``'s bucket (``tracebox.capture.mirror``),
    optionally only those of ``harnesses``, oldest first. The fingerprint is the one the
    mirror lists, so a session is known unchanged without downloading it."""
    from ..errors import NotSupported

    try:
        from ..capture import mirror
    except ImportError:
        mirror = None
    if mirror is None or not all(hasattr(mirror, f) for f in ("list_sessions", "load_session")):
        raise NotSupported(
            "indexing the bucket needs tracebox.capture.mirror (list_sessions, "
            "load_session), which this build does not have; use --local"
        )
    listed = [
        e for e in mirror.list_sessions(project) if not harnesses or e.get("harness") in harnesses
    ]
    listed.sort(key=lambda e: str(e.get("updated") or ""))
    base = f"{str(project.store.url).rstrip('/')}/{project.name}"
    out = []
    for entry in listed:
        harness, sid = str(entry.get("harness")), str(entry.get("session_id"))
        key = str(entry.get("key") or f"sessions/{harness}/{sid}").lstrip("/")
        fp = entry.get("fingerprint") or entry.get("etag")
        fingerprint = str(fp) if fp else msgspec.json.encode(entry, order="sorted").decode()
        out.append(
            BucketSession(
                key,
                f"{base}/{key}",
                fingerprint,
                lambda h=harness, i=sid: mirror.load_session(project, h, i),
            )
        )
    return out


def captured_sessions(project) -> list[BucketSession]:
    """The sessions the proxy captured into ``project``'s bucket
    (``tracebox.capture.proxy.store``; harness ``proxy``), by session id; the fingerprint
    changes when a call is added."""
    from ..capture.proxy import store

    base = f"{str(project.store.url).rstrip('/')}/{project.name}"
    return [
        BucketSession(
            f"{store.BY_SESSION}{e['session']}",
            f"{base}/{store.BY_SESSION}{e['session']}",
            str(e["fingerprint"]),
            lambda i=str(e["session"]): store.calls_to_sessions(project, i),
        )
        for e in store.list_call_sessions(project)
    ]


def index_bucket(
    db: sqlite3.Connection,
    project,
    harnesses: list[str] | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Index the sessions mirrored into ``project``'s bucket (``mirrored_sessions``),
    optionally only those of ``harnesses``.

    Each session's origin is ``<bucket url>/<project>/sessions/<harness>/<id>``; its
    fingerprint the one the mirror lists, so unchanged sessions are not downloaded again.
    """
    report = SyncReport()
    listed = mirrored_sessions(project, harnesses)
    for done, bs in enumerate(listed, 1):
        try:
            if is_current(db, bs.origin, bs.fingerprint):
                report.unchanged += 1
            else:
                report.count(index_session(db, bs.load(), bs.origin, bs.fingerprint))
        except Exception as e:  # noqa: BLE001 - one bad object must not stop the run
            report.failed += 1
            report.errors.append(f"{bs.origin}: {one_line(e, 300)}")
        if progress:
            progress(done, len(listed), "bucket")
    return report


# -- captured calls ----------------------------------------------------------------------


def index_calls(db: sqlite3.Connection, project, progress: Progress | None = None) -> SyncReport:
    """Index the sessions the proxy captured into ``project``'s bucket
    (``captured_sessions``), harness ``proxy``.

    Each session's origin is ``<bucket url>/<project>/calls-by-session/<session>``; its
    fingerprint changes when a call is added. A captured session whose id is also a
    transcript session in the index (Claude Code sends its session id with every call) is
    **linked**, not duplicated: it is stored as a child of the transcript session
    (``root`` = that session, ``parent_session`` = its id, so it is not counted as a
    session of its own), keeps only what transcripts lack (system prompts) and no token
    usage, and carries ``extra["linked"] = "<harness>:<id>"``. Run it after
    ``index_local``/``index_bucket``: a transcript indexed later turns the link on at the
    next run (the fingerprint includes the link).
    """
    report = SyncReport()
    listed = captured_sessions(project)
    for done, bs in enumerate(listed, 1):
        sid = bs.key.rsplit("/", 1)[-1]
        linked = db.execute(
            "SELECT key, harness FROM sessions WHERE id = ? AND harness != 'proxy'"
            " AND root IS NULL ORDER BY key LIMIT 1",
            (sid,),
        ).fetchone()
        fingerprint = bs.fingerprint + (f"|linked:{linked[1]}" if linked else "")
        try:
            row = db.execute(
                "SELECT session FROM sources WHERE origin = ?", (bs.origin,)
            ).fetchone()
            if is_current(db, bs.origin, fingerprint) and row is not None and row[0] is not None:
                report.unchanged += 1
            else:
                session = bs.load()
                # the other form (linked / not linked) of this session goes first
                _delete(db, f"proxy:{sid}" if linked else f"proxy:{sid}/{sid}")
                if linked:
                    session = _as_link(session, f"{linked[1]}:{sid}")
                report.count(index_session(db, session, bs.origin, fingerprint))
                if linked:
                    db.execute(
                        "UPDATE sessions SET root = ? WHERE uid = ?",
                        (linked[0], f"proxy:{sid}/{sid}"),
                    )
        except Exception as e:  # noqa: BLE001 - one bad session must not stop the run
            report.failed += 1
            report.errors.append(f"{bs.origin}: {one_line(e, 300)}")
        if progress:
            progress(done, len(listed), "bucket")
    return report


def _as_link(session: Session, linked: str) -> Session:
    """A captured session reduced to what its transcript lacks: system prompts, no usage."""
    steps = [
        msgspec.structs.replace(st, index=i, usage=None)
        for i, st in enumerate(s for s in session.steps if s.source == "system")
    ]
    return msgspec.structs.replace(
        session,
        parent_session=session.id,
        steps=steps,
        extra={**(session.extra or {}), "linked": linked},
    )
