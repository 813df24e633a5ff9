"""Keeping the local index fresh: what ``tracebox index`` runs, and the refresh that
``search``, ``stats`` and the MCP ``search`` tool do first when the index is over a minute
old — so a search right after ``session mirror`` finds what was just mirrored.

``refresh`` indexes local transcripts unless asked for the bucket only, and the bucket of
``project()`` (a callable, so the project is opened only when needed) unless asked for
local transcripts only; a missing bucket config is fine then. The time of the last
refresh is the mtime of ``<index>.refreshed``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, TraceboxError
from . import db, sync

REFRESH_AFTER = 60.0  # seconds: search and stats refresh an index older than this first


def refresh(
    conn,
    db_path,
    project: Callable,
    *,
    local: bool = False,
    bucket: bool = False,
    harnesses=(),
    progress=None,
) -> sync.SyncReport:
    """Index what changed (``progress(done, total, what)`` is told as it goes)."""
    report = sync.SyncReport()
    if local or not bucket:
        report.merge(sync.index_local(conn, list(harnesses) or None, progress=progress))
    if bucket or not local:
        try:
            p = project()
            report.merge(sync.index_bucket(conn, p, list(harnesses) or None, progress=progress))
            report.merge(sync.index_calls(conn, p))  # after transcripts: links
        except ConfigError:
            if bucket:
                raise  # asked for the bucket, and none is configured
        except TraceboxError as e:
            if bucket:
                raise
            report.skipped.append(f"bucket: {' '.join(str(e).split())}")
    Path(f"{db_path or db.default_path()}.refreshed").touch()
    return report


def fresh_connection(db_path, when: bool | None, project: Callable):
    """The index, refreshed first when ``when`` is True, or when None (the default) and it
    was last refreshed more than ``REFRESH_AFTER`` seconds ago."""
    conn = db.connect(db_path)
    if when is None:
        try:
            age = time.time() - os.stat(f"{db_path or db.default_path()}.refreshed").st_mtime
        except OSError:
            age = float("inf")
        when = age > REFRESH_AFTER
    if when:
        refresh(conn, db_path, project)
    return conn
