"""Helpers the harness adapters share for finding and reading agents' local stores.

Owns the small, untrusted-input-safe building blocks that locate/parse code repeats:

* resolving ``HOME`` and ``~`` from an env mapping (tests pass fake homes);
* matching a recorded working directory against a ``cwd`` filter (:func:`within`);
* listing candidate files without following symlinks out of a store (:func:`list_files`);
* building :class:`SessionFile` rows (:func:`session_file`);
* reading a bounded whole-file JSON document (:func:`load_json`);
* normalizing ISO strings and epoch numbers to UTC ISO 8601 (:func:`iso`);
* the ``<database>#<session id>`` reference SQLite-backed stores use as
  ``SessionFile.path`` (:func:`db_ref`, :func:`split_ref`) and read-only database access
  (:func:`connect_ro`);
* inline (base64) media turned into an :class:`Attachment` reference (:func:`inline_attachment`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ...trace.model import Attachment
from . import SessionFile
from ._jsonl import valid_utf8

if TYPE_CHECKING:  # sqlite3 is imported where a database is opened, not to locate files
    import sqlite3

MAX_JSON = 256 * 1024 * 1024  # whole-file JSON documents larger than this are not decoded
REF_SEP = "#"


def environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def home_dir(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def expand_user(value: str, env: Mapping[str, str]) -> str:
    """``~`` and ``~/x`` against the env's ``HOME``; other values unchanged (absolutized)."""
    if value == "~":
        return home_dir(env)
    if value.startswith("~/"):
        return os.path.join(home_dir(env), value[2:])
    return os.path.abspath(value)


def within(path: str | None, root: str | None) -> bool:
    """True when ``path`` is ``root`` or below it (textual, after normalization).

    ``root`` is also tried with symlinks resolved, since agents usually record the real
    path while a user may pass a symlinked one.
    """
    if not root:
        return True
    if not path:
        return False
    p = os.path.normpath(path)
    for r in {os.path.normpath(os.path.abspath(root)), os.path.realpath(root)}:
        if p == r or p.startswith(r.rstrip(os.sep) + os.sep):
            return True
    return False


def list_files(directory: str, suffixes: tuple[str, ...]) -> Iterator[str]:
    """Regular files (not symlinks) directly in ``directory`` whose names end with a suffix."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        try:
            if e.name.endswith(suffixes) and e.is_file(follow_symlinks=False):
                yield e.path
        except OSError:
            continue


def list_dirs(directory: str) -> Iterator[str]:
    """Real subdirectories (not symlinks) of ``directory``, sorted by name."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                yield e.path
        except OSError:
            continue


def session_file(harness: str, session_id: str, path: str, cwd: str | None) -> SessionFile:
    """A :class:`SessionFile` with size and mtime of the file behind ``path`` (ref-aware)."""
    try:
        st = os.stat(split_ref(path)[0])
        mtime, size = st.st_mtime, st.st_size
    except OSError:
        mtime, size = 0.0, 0
    return SessionFile(harness, session_id, path, cwd, mtime, size)


def read_head(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def load_json(path: str, limit: int = MAX_JSON) -> tuple[Any, str | None]:
    """Decode a whole-file JSON document: ``(value, None)`` or ``(None, error)``.

    Never raises for bad content; invalid UTF-8 is replaced with U+FFFD and reported.
    """
    try:
        size = os.path.getsize(path)
        if size > limit:
            return None, f"file too large to decode ({size} bytes)"
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, f"cannot read: {e.strerror}"
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return msgspec.json.decode(data), None
    except (UnicodeDecodeError, msgspec.DecodeError) as e:
        # msgspec < 0.20 raises UnicodeDecodeError for bad UTF-8, later ones DecodeError
        if not isinstance(e, UnicodeDecodeError) and (data.isascii() or valid_utf8(data)):
            return None, str(e)
    try:
        return msgspec.json.decode(data.decode("utf-8", "replace")), None
    except msgspec.DecodeError as e:
        return None, f"invalid UTF-8 and {e}"


def iso(value: Any) -> str | None:
    """UTC ISO 8601 with microseconds from an ISO string or epoch seconds/milliseconds."""
    if isinstance(value, bool) or value is None:
        return None
    if type(value) is str and len(value) == 24 and value[19] == "." and value[23] == "Z":
        if value[20:23].isdigit() and value[10] == "T":  # the common ms shape: fast path
            return value[:23] + "000Z"
    try:
        if isinstance(value, int | float):
            seconds = value / 1000 if abs(value) > 1e11 else value
            dt = datetime.fromtimestamp(seconds, UTC)
        elif isinstance(value, str) and value:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
            dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def db_ref(db: str, session_id: str) -> str:
    """``SessionFile.path`` for a session stored in a database: ``<db path>#<session id>``."""
    return f"{db}{REF_SEP}{session_id}"


def split_ref(path: str | os.PathLike) -> tuple[str, str | None]:
    """``(file, session id or None)``: a real file wins over a ``#`` reading of its name."""
    p = os.fspath(path)
    if REF_SEP in p and not os.path.exists(p):
        file, _, ref = p.rpartition(REF_SEP)
        if os.path.isfile(file):
            return file, ref or None
    return p, None


def connect_ro(db: str) -> sqlite3.Connection:
    """Open a SQLite database read-only (never creating or migrating it); rows as dicts.

    Falls back to ``immutable=1`` when the WAL cannot be read without write access.
    """
    import sqlite3

    uri = "file:" + _quote(os.path.abspath(db))
    last: sqlite3.Error | None = None
    for mode in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(uri + mode, uri=True, timeout=5)
            conn.row_factory = _dict_row
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as e:
            last = e
    raise sqlite3.DatabaseError(str(last))


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The column names of ``table`` (empty when it does not exist)."""
    import sqlite3

    try:
        return {r["name"] for r in conn.execute(f"PRAGMA table_info({_ident(table)})")}
    except sqlite3.Error:
        return set()


def json_value(text: Any) -> Any:
    """A JSON column's value decoded, or the text itself when it is not JSON."""
    if not isinstance(text, str | bytes):
        return text
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return text


def inline_attachment(media_type: str, data: Any, name: str | None = None) -> Attachment:
    """An attachment for base64 inline bytes: referenced by ``sha256:<hex>``, never inlined."""
    raw: bytes
    if isinstance(data, str):
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            raw = data.encode("utf-8", "replace")
    else:
        raw = b""
    return Attachment(
        media_type=media_type or "",
        ref="sha256:" + hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        name=name,
    )


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=False)}


def _quote(path: str) -> str:
    return path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
