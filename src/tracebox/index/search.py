"""Full-text search over the index: FTS5 queries, BM25 ranking, filters and snippets.

Owns turning a user's query into an FTS5 ``MATCH`` (falling back to plain words when the
text is not valid FTS5 syntax, so ``src/main.py`` or an unbalanced quote just work),
filtering hits by harness, agent, model, time and kind, ranking them by BM25, and
producing one-line snippets with the matches marked.

Ranking happens in one query that returns only row ids; snippets are built afterwards
for the few hits shown, because computing a snippet for every match of a common word
would cost more than the search itself. Queries matching more than ``RANK_WINDOW``
texts rank only the newest that many (see ``search``), which bounds the latency.
"""

from __future__ import annotations

import re
import sqlite3

import msgspec

from ..errors import UsageError
from .db import KINDS

_START, _END = "\x02", "\x03"  # snippet markers; never in indexed text (sync.py strips them)
SNIPPET_TOKENS = 24
# messages SQLite gives for a MATCH expression it cannot parse
_SYNTAX = ("fts5:", "unterminated string", "no such column", "unknown special query")


RANK_WINDOW = 10_000  # matches ranked at most (the newest), see search()


class Hit(msgspec.Struct, kw_only=True):
    session_id: str
    harness: str
    agent: str | None
    step: int
    kind: str
    source: str
    timestamp: str | None
    model: str | None
    origin: str
    parent_session: str | None
    score: float  # BM25 as SQLite reports it: lower (more negative) is better
    snippet: str


class Results(msgspec.Struct, kw_only=True):
    hits: list[Hit]
    window: int | None = None  # set when more matched: only the newest this many were ranked


def search(
    db: sqlite3.Connection,
    query: str,
    *,
    harness: str | None = None,
    agent: str | None = None,
    model: str | None = None,
    since: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    marks: tuple[str, str] = ("[", "]"),
) -> Results:
    """The best ``limit`` hits for ``query``, best first.

    ``query`` is FTS5 syntax (``"a phrase"``, ``AND``/``OR``/``NOT``, ``prefix*``,
    ``NEAR(a b)``); text that does not parse as FTS5 is searched as plain words.
    ``since`` is a UTC ISO bound (``db.since_bound``); ``model`` matches sessions one of
    whose models contains it (``opus``, ``gpt-5``); ``kind`` is one of ``KINDS``
    (``error`` also matches tool results that failed). Snippets mark matches with
    ``marks`` (give ANSI bold for a terminal) and have control characters removed.

    When more than ``RANK_WINDOW`` texts match, only the newest ``RANK_WINDOW`` matches
    (highest row ids: the most recently indexed) are ranked and ``Results.window`` says
    so; BM25 over hundreds of thousands of matches of a common word would take seconds.
    If the filters leave fewer than ``limit`` hits in that window, all matches are ranked.
    """
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if not query.strip():
        raise UsageError("empty search query")
    where, params = _filters(harness, agent, model, since, kind)
    match = query
    try:
        bound = _window_start(db, match)
    except sqlite3.OperationalError as e:
        if not str(e).startswith(_SYNTAX):
            raise
        match = plain_words(query)
        if not match:
            raise UsageError(f"nothing to search for in {query!r}") from None
        bound = _window_start(db, match)
    top = _rank(db, match, where, params, limit, bound)
    if bound is not None and len(top) < limit:  # the filters left too few: rank them all
        bound = None
        top = _rank(db, match, where, params, limit, None)
    return Results(
        hits=[_hit(db, rowid, score, match, marks) for rowid, score in top],
        window=RANK_WINDOW if bound is not None else None,
    )


def _window_start(db: sqlite3.Connection, match: str) -> int | None:
    """The rowid of the ``RANK_WINDOW``-th newest match, or None when fewer match."""
    row = db.execute(
        "SELECT rowid FROM docs_fts WHERE docs_fts MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
        (match, RANK_WINDOW - 1),
    ).fetchone()
    return row[0] if row else None


def _rank(
    db: sqlite3.Connection,
    match: str,
    where: list[str],
    params: list,
    limit: int,
    bound: int | None,
) -> list[tuple[int, float]]:
    # bm25() sorted by SQLite is faster here than FTS5's own ORDER BY rank
    sql = (
        "SELECT f.rowid, bm25(docs_fts) AS score FROM docs_fts f"
        + (" JOIN docs d ON d.rowid = f.rowid" if where else "")
        + " WHERE docs_fts MATCH ?"
        + (" AND f.rowid >= ?" if bound is not None else "")
        + "".join(f" AND {w}" for w in where)
        + " ORDER BY score LIMIT ?"
    )
    args = (match, *((bound,) if bound is not None else ()), *params, limit)
    return db.execute(sql, args).fetchall()


def plain_words(query: str) -> str:
    """``query`` as an FTS5 expression matching all its words, operators taken literally."""
    words = [w for w in re.split(r"[\s\"]+", query) if w]
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def _filters(harness, agent, model, since, kind) -> tuple[list[str], list]:
    """SQL conditions on the ``docs`` row ``d`` (session ones as one sub-select)."""
    where: list[str] = []
    params: list = []
    of_session: list[str] = []
    if harness:
        of_session.append("harness = ?")
        params.append(harness)
    if agent:
        of_session.append("agent = ?")
        params.append(agent)
    if model:  # a session's models list every model its steps used
        of_session.append("EXISTS (SELECT 1 FROM json_each(models) WHERE value LIKE ? ESCAPE '\\')")
        params.append("%" + re.sub(r"([%_\\])", r"\\\1", model) + "%")
    if of_session:
        where.append(f"d.session IN (SELECT key FROM sessions WHERE {' AND '.join(of_session)})")
    if since:
        where.append("d.ts >= ?")
        params.append(since)
    if kind == "error":
        where.append("(d.kind = 'error' OR d.is_error = 1)")
    elif kind:
        where.append("d.kind = ?")
        params.append(kind)
    return where, params


def _hit(
    db: sqlite3.Connection, rowid: int, score: float, match: str, marks: tuple[str, str]
) -> Hit:
    row = db.execute(
        "SELECT s.id, s.harness, s.agent, d.idx, d.kind, st.source,"
        " d.ts, st.model, s.origin, s.parent_session"
        " FROM docs d JOIN sessions s ON s.key = d.session"
        " LEFT JOIN steps st ON st.session = d.session AND st.idx = d.idx WHERE d.rowid = ?",
        (rowid,),
    ).fetchone()
    snip = db.execute(
        "SELECT snippet(docs_fts, 0, ?, ?, '…', ?) FROM docs_fts"
        " WHERE docs_fts MATCH ? AND rowid = ?",
        (_START, _END, SNIPPET_TOKENS, match, rowid),
    ).fetchone()
    return Hit(
        session_id=row[0],
        harness=row[1],
        agent=row[2],
        step=row[3],
        kind=row[4],
        source=row[5] or "",
        timestamp=row[6],
        model=row[7],
        origin=row[8],
        parent_session=row[9],
        score=score,
        snippet=render_snippet(snip[0] if snip else "", marks),
    )


def render_snippet(raw: str, marks: tuple[str, str]) -> str:
    """One line: whitespace runs collapsed, control characters gone, matches marked."""
    text = " ".join(raw.split())
    text = "".join(c for c in text if c.isprintable() or c in (_START, _END))
    return text.replace(_START, marks[0]).replace(_END, marks[1])


def window_note(window: int) -> str:
    """What to tell when more texts matched than ``search`` ranks (``Result.window``)."""
    return (
        f"more than {window:,} matches; ranked the {window:,} most recently indexed "
        "(add words or filters to narrow)"
    )
