"""The local index database: where it lives, its schema and migrations, opening it safely.

Owns the SQLite file (``$XDG_DATA_HOME/tracebox/index.db``, or ``TRACEBOX_INDEX``, or an
explicit path), its schema (versioned with ``PRAGMA user_version``, stamped with a
tracebox ``application_id`` so we never take over someone else's database), WAL mode, and
the normalization of the values it stores (UTC timestamps, ``--since`` bounds).

Tables (docs/search.md has the full description):

``sources``   one row per place a session was read from (local path or bucket key) and
              the fingerprint (size+mtime, or ETag) it had then;
``sessions``  one row per session or subagent session (``root`` points subagents at
              their top-level session; deleting a root removes its subagents);
``steps``     one row per step, with the usage of its model response stored on exactly
              one step per response;
``extra_usage`` model calls not attached to a step: compaction summaries, and the
              session-level totals of sources that record usage per session only;
``docs``      one row per (step, kind) of searchable text: where it is (session, step),
              its kind, error flag and time (the step's, else the session's start);
``doc_text``  that text, the external content of the FTS5 table ``docs_fts``. Kept apart
              from ``docs`` so filtering hits reads small rows, not the text. ``sync.py``
              keeps ``docs_fts`` in step with bulk inserts and deletes (row triggers
              would make FTS5 flush once per row, about 4x slower).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..dirs import user_dir
from ..errors import UsageError

APPLICATION_ID = 0x54425831  # "TBX1": marks a file as a tracebox index
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"

KINDS = ("user", "assistant", "system", "reasoning", "tool_call", "tool_result", "error")

_SCHEMA_V1 = """
CREATE TABLE sources (
    origin      TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    session     INTEGER REFERENCES sessions(key) ON DELETE SET NULL,
    indexed_at  TEXT NOT NULL
);
CREATE TABLE sessions (
    key                 INTEGER PRIMARY KEY,
    uid                 TEXT NOT NULL UNIQUE,
    id                  TEXT NOT NULL,
    harness             TEXT NOT NULL,
    agent               TEXT,
    agent_version       TEXT,
    title               TEXT,
    models              TEXT NOT NULL DEFAULT '[]',
    cwd                 TEXT,
    git_branch          TEXT,
    git_commit          TEXT,
    started             TEXT,
    ended               TEXT,
    origin              TEXT NOT NULL,
    parent_session      TEXT,
    parent_tool_call_id TEXT,
    root                INTEGER REFERENCES sessions(key) ON DELETE CASCADE
);
CREATE INDEX sessions_root ON sessions(root);
CREATE INDEX sessions_id ON sessions(id);
CREATE TABLE steps (
    session     INTEGER NOT NULL REFERENCES sessions(key) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    source      TEXT NOT NULL,
    ts          TEXT,
    model       TEXT,
    response_id TEXT,
    input       INTEGER,
    output      INTEGER,
    cache_read  INTEGER,
    cache_write INTEGER,
    reasoning   INTEGER,
    tool_calls  INTEGER NOT NULL DEFAULT 0,
    tool_errors INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    copied      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session, idx)
) WITHOUT ROWID;
CREATE TABLE extra_usage (
    session     INTEGER NOT NULL REFERENCES sessions(key) ON DELETE CASCADE,
    what        TEXT NOT NULL,
    ts          TEXT,
    input       INTEGER NOT NULL,
    output      INTEGER NOT NULL,
    cache_read  INTEGER NOT NULL,
    cache_write INTEGER NOT NULL,
    reasoning   INTEGER NOT NULL
);
CREATE INDEX extra_usage_session ON extra_usage(session);
CREATE TABLE docs (
    rowid    INTEGER PRIMARY KEY,
    session  INTEGER NOT NULL REFERENCES sessions(key) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    is_error INTEGER NOT NULL DEFAULT 0,
    ts       TEXT
);
CREATE INDEX docs_session ON docs(session);
CREATE TABLE doc_text (
    rowid INTEGER PRIMARY KEY REFERENCES docs(rowid) ON DELETE CASCADE,
    text  TEXT NOT NULL
);
CREATE VIRTUAL TABLE docs_fts USING fts5(
    text, content='doc_text', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2'
);
"""

# index i holds the script that takes the schema from version i to i + 1
MIGRATIONS: list[str] = [_SCHEMA_V1]


def default_path() -> Path:
    """``TRACEBOX_INDEX``, else ``$XDG_DATA_HOME/tracebox/index.db`` (~/.local/share)."""
    explicit = os.environ.get("TRACEBOX_INDEX")
    if explicit:
        return Path(explicit).expanduser()
    return Path(user_dir("data", "index.db"))


def _header(path: Path) -> bytes | None:
    """The file's first 100 bytes (the SQLite header), or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read(100)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"cannot read the index {path}: {e.strerror}") from None


def _identify(path: Path) -> str:
    """``missing``, ``ours`` (a tracebox index, even a damaged one), ``empty`` (a SQLite
    file with no tables yet), ``not-sqlite`` or ``foreign`` (someone else's database)."""
    head = _header(path)
    if not head:
        return "missing"
    if not head.startswith(_SQLITE_MAGIC) or len(head) < 72:
        return "not-sqlite"
    if int.from_bytes(head[68:72], "big") == APPLICATION_ID:
        return "ours"
    try:  # in WAL mode a fresh header may still be in the -wal file: ask SQLite
        c = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            if c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
                return "ours"
            tables = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            c.close()
    except sqlite3.DatabaseError:
        return "foreign"
    return "foreign" if tables else "empty"


def _check_ours(path: Path) -> None:
    """Refuse files that are not (empty or) a tracebox index, before SQLite writes to them."""
    kind = _identify(path)
    if kind == "not-sqlite":
        raise UsageError(f"{path} is not a SQLite database; point --db / TRACEBOX_INDEX elsewhere")
    if kind == "foreign":
        raise UsageError(f"{path} is a SQLite database but not a tracebox index")


def connect(path: str | os.PathLike | None = None) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the index at ``path`` or :func:`default_path`.

    The connection is in autocommit mode: writers open their own transactions.
    """
    p = Path(path) if path is not None else default_path()
    _check_ours(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {p.parent}: {e.strerror}") from None
    try:
        db = sqlite3.connect(p, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db, p)
    except sqlite3.DatabaseError as e:
        raise UsageError(
            f"cannot open the index {p}: {e}; rebuild it with `tracebox index --rebuild`"
        ) from None
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"the index {path} has schema version {version}, newer than this tracebox "
            f"knows ({SCHEMA_VERSION}); upgrade tracebox or use --db for a separate index"
        )
    if version == SCHEMA_VERSION:
        return
    if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise UsageError(f"{path} is a SQLite database but not a tracebox index")
    db.execute("BEGIN IMMEDIATE")
    try:
        # another process may have migrated while we waited for the write lock
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for script in MIGRATIONS[version:]:
            for statement in _statements(script):
                db.execute(statement)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (``executescript`` would commit midway)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def remove(path: str | os.PathLike | None = None) -> Path:
    """Delete the index file (and its WAL/SHM) for ``--rebuild``; refuses foreign files."""
    p = Path(path) if path is not None else default_path()
    if _identify(p) not in ("missing", "ours", "empty"):
        raise UsageError(f"{p} is not a tracebox index; refusing to delete it")
    for suffix in ("", "-wal", "-shm", ".refreshed"):
        try:
            os.remove(f"{p}{suffix}")
        except FileNotFoundError:
            pass
        except OSError as e:
            raise UsageError(f"cannot remove {p}{suffix}: {e.strerror}") from None
    return p


# -- values ------------------------------------------------------------------------------


def utc_iso(ts: str | None) -> str | None:
    """An ISO 8601 timestamp as fixed-width UTC (``…T…​.ffffffZ``); None when unparseable.

    Naive timestamps are taken as UTC. Fixed width makes string order equal time order.
    """
    if not ts or not isinstance(ts, str) or len(ts) > 64:
        return None
    try:
        dt = datetime.fromisoformat(ts.strip())
    except ValueError:
        return None
    return _fmt(dt)


def _fmt(dt: datetime) -> str | None:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, ValueError):
        return None


def since_bound(text: str, now: datetime | None = None) -> str:
    """``7d``, ``12h``, ``90m`` (ago) or a date/time (``2026-11-01``, ISO 8601) → UTC ISO."""
    from ..config import parse_duration

    t = text.strip()
    if t and t[0].isdigit() and t[-1].lower() in "smhd" and "-" not in t and ":" not in t:
        seconds = parse_duration(t, what="--since")
        bound = _fmt((now or datetime.now(UTC)) - timedelta(seconds=seconds))
    else:
        bound = utc_iso(t)
    if bound is None:
        raise UsageError(f"invalid --since {text!r}; use e.g. 7d, 12h or 2026-11-01")
    return bound
