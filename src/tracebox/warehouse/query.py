"""SQL over the warehouse: DuckDB with a view per table and the ready-made views.

``query(project, sql)`` opens an in-memory DuckDB, defines the views the statement
refers to over the files the manifest lists (one consistent snapshot, even while a sync
runs) and runs it. A local-folder bucket is read in place (``read_parquet`` with hive
partitioning); any other bucket (S3, GCS, Azure, ...) through a local cache of the data
files, fetched with the bucket layer itself (same endpoint and credentials; DuckDB's
httpfs extension is not needed). Data files are immutable, so a cached file is never
stale; files the manifest no longer lists are dropped from the cache.

``model_prices`` maps every model the warehouse mentions to its rates in the price table
``tracebox stats`` uses (``index.stats.price_for``), so ``cost_per_model`` prices each
token class exactly like ``tracebox stats --by model``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import NotFound, TraceboxError, UsageError
from . import need_extra
from .sync import PREFIX, file_part, load_manifest

# ready-made views: name -> (what it shows, SQL, the tables it reads)
VIEWS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "cost_per_model": (
        "tokens (input, output, cache read/write, reasoning) and USD cost per model, "
        "priced per token class like `tracebox stats --by model`",
        """
WITH linked AS (  -- captured sessions that are a transcript session too: counted once
    SELECT p.uid FROM sessions p
    WHERE p.harness = 'proxy' AND EXISTS (
        SELECT 1 FROM sessions t WHERE t.session_id = p.session_id
        AND t.harness <> 'proxy' AND t.parent_session IS NULL)
), usage AS (
    SELECT COALESCE(st.model, s.model) AS model, s.root, st.input, st.output,
           st.cache_read, st.cache_write, st.reasoning
    FROM steps st JOIN sessions s ON s.uid = st.session_uid
    WHERE st.input IS NOT NULL AND s.uid NOT IN (SELECT uid FROM linked)
    UNION ALL
    SELECT s.model, s.root, s.extra_input, s.extra_output, s.extra_cache_read,
           s.extra_cache_write, s.extra_reasoning
    FROM sessions s
    WHERE s.extra_input + s.extra_output + s.extra_cache_read + s.extra_cache_write
          + s.extra_reasoning > 0 AND s.uid NOT IN (SELECT uid FROM linked)
), totals AS (
    SELECT model, count(DISTINCT root) AS sessions, count(*) AS model_calls,
           sum(input)::BIGINT AS input, sum(output)::BIGINT AS output,
           sum(cache_read)::BIGINT AS cache_read, sum(cache_write)::BIGINT AS cache_write,
           sum(reasoning)::BIGINT AS reasoning
    FROM usage GROUP BY model
)
SELECT t.*,
       CASE WHEN p.input IS NOT NULL THEN (t.input * p.input + t.output * p.output
                 + t.cache_read * p.cache_read + t.cache_write * p.cache_write) / 1e6
            WHEN t.input + t.output + t.cache_read + t.cache_write = 0 THEN 0.0
       END AS cost_usd,
       p.input IS NOT NULL AS priced
FROM totals t LEFT JOIN model_prices p ON p.model = t.model
ORDER BY cost_usd DESC NULLS LAST, model_calls DESC, model
""",
        ("steps", "sessions"),
    ),
    "failure_patterns": (
        "failures across sessions and runs: failed tool calls grouped by error "
        "fingerprint, and [important] observations grouped by fingerprint",
        """
WITH tool AS (
    SELECT 'tool_error' AS source, 'error' AS kind, t.error_fingerprint AS fingerprint,
           COALESCE(arg_min(COALESCE('`' || t.command || '`', t.name) || ' failed: ' || t.error, t.ts),
                    any_value(COALESCE('`' || t.command || '`', t.name) || ' failed: ' || t.error)) AS title,
           count(*) AS occurrences, count(DISTINCT t.session_uid) AS sessions,
           count(DISTINCT h.run) AS runs, min(t.ts) AS first_seen, max(t.ts) AS last_seen,
           COALESCE(arg_min(t.session_id, t.ts), any_value(t.session_id)) AS example
    FROM tool_calls t
    LEFT JOIN (SELECT DISTINCT session, run FROM harness_results) h ON h.session = t.session_id
    WHERE t.failed
    GROUP BY t.error_fingerprint
), obs AS (  -- each run's entries after its last generation (entries accumulate)
    SELECT 'observation' AS source, any_value(o.kind) AS kind, o.fingerprint,
           arg_max(o.title, o.generation) AS title, sum(o.count)::BIGINT AS occurrences,
           sum(o.sessions)::BIGINT AS sessions, count(DISTINCT o.run) AS runs,
           min(o.first_seen) AS first_seen, max(o.last_seen) AS last_seen,
           arg_min(json_extract_string(o.evidence, '$[0].session'), o.first_seen) AS example
    FROM observations o
    WHERE o.priority = 'important' AND o.generation = (
        SELECT max(x.generation) FROM observations x WHERE x.run = o.run)
    GROUP BY o.fingerprint
)
SELECT * FROM tool UNION ALL SELECT * FROM obs
ORDER BY occurrences DESC, runs DESC, sessions DESC, fingerprint
""",
        ("tool_calls", "harness_results", "observations"),
    ),
    "harness_convergence": (
        "per harness run and generation, over time: variants, solved, stopped, "
        "solved so far, observations known",
        """
WITH gens AS (
    SELECT run, any_value(name) AS name, min(run_started) AS run_started, generation,
           count(*) AS variants, count(*) FILTER (WHERE solved) AS solved,
           count(*) FILTER (WHERE stopped IS NOT NULL) AS stopped,
           sum(calls)::BIGINT AS calls, sum(seconds) AS seconds
    FROM harness_results GROUP BY run, generation
), obs AS (
    SELECT run, generation, count(*) AS observations,
           count(*) FILTER (WHERE priority = 'important') AS important
    FROM observations GROUP BY run, generation
)
SELECT g.run, g.name, g.run_started, g.generation, g.variants, g.solved, g.stopped,
       round(g.solved / g.variants, 3) AS solved_rate,
       sum(g.solved) OVER (PARTITION BY g.run ORDER BY g.generation)::BIGINT AS solved_so_far,
       min(CASE WHEN g.solved > 0 THEN g.generation END) OVER (PARTITION BY g.run)
           AS first_solved_generation,
       COALESCE(o.observations, 0) AS observations, COALESCE(o.important, 0) AS important,
       g.calls, g.seconds
FROM gens g LEFT JOIN obs o USING (run, generation)
ORDER BY g.run_started, g.run, g.generation
""",
        ("harness_results", "observations"),
    ),
}
MODEL_PRICES = (
    "each model the warehouse mentions, with its USD rates per million tokens "
    "(null: not in the price table)"
)


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    truncated: bool  # more rows than max_rows


def catalog() -> list[dict]:
    """Every table and view ``tracebox sql`` defines: name, kind, description, columns."""
    from .tables import TABLES

    need_extra()
    con = _connect()
    try:
        _define(con, {t: [] for t in TABLES}, set())
        out = []
        for name, (what, cols) in TABLES.items():
            out.append(
                {
                    "name": name,
                    "kind": "table",
                    "description": what,
                    "columns": [{"name": c, "type": str(t), "description": d} for c, t, d in cols]
                    + [{"name": "date", "type": "date", "description": "the partition"}],
                }
            )
        for name, what in [("model_prices", MODEL_PRICES), *((n, v[0]) for n, v in VIEWS.items())]:
            cols = con.execute(f"DESCRIBE {name}").fetchall()
            out.append(
                {
                    "name": name,
                    "kind": "view",
                    "description": what,
                    "columns": [{"name": c[0], "type": c[1].lower()} for c in cols],
                }
            )
        return out
    finally:
        con.close()


def query(project, sql: str, *, max_rows: int | None = None) -> Result:
    """Run ``sql`` over ``project``'s warehouse; at most ``max_rows`` rows are returned."""
    need_extra()
    import duckdb

    if not sql.strip():
        raise UsageError("empty SQL statement")
    for attempt in (1, 2):
        man, _ = load_manifest(project)
        if man is None:
            project.check_format()  # no project at all says so first
            raise NotFound(
                f"project {project.name} has no warehouse yet; run `tracebox warehouse sync` first"
            )
        con = _connect()
        try:
            tables = _tables_of(con, sql)
            _define(con, _files(project, man, tables), _models(man))
            cur = con.execute(sql)
            if cur.description is None:
                return Result([], [], [], False)
            columns = [d[0] for d in cur.description]
            types = [str(d[1]).lower() for d in cur.description]
            rows = cur.fetchall() if max_rows is None else cur.fetchmany(max_rows + 1)
            truncated = max_rows is not None and len(rows) > max_rows
            return Result(columns, types, rows[:max_rows] if truncated else rows, truncated)
        except duckdb.IOException as e:
            if attempt == 1 and _vanished(e):
                continue  # a sync replaced a file meanwhile: read the new manifest
            raise UsageError(f"SQL: {_first_line(e)}") from None
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except duckdb.Error as e:
            raise UsageError(f"SQL: {_first_line(e)}") from None
        finally:
            con.close()
    raise TraceboxError("the warehouse kept changing during the query; run it again")


def _first_line(e: Exception) -> str:
    text = " ".join(str(e).split("\n", 1)[0].split())
    return text[:500] or type(e).__name__


def _vanished(e: Exception) -> bool:
    return bool(re.search(r"No files found|Cannot open file|No such file", str(e)))


def _connect():
    import duckdb

    # nothing is ever downloaded: extensions DuckDB would fetch are refused, not tried
    return duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )


def _tables_of(con, sql: str) -> set[str] | None:
    """The warehouse tables ``sql`` reads (its views expanded); None: could not tell."""
    from .tables import TABLES

    try:
        text = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
        tree = json.loads(text)
    except Exception:  # noqa: BLE001 - the real run reports what is wrong with it
        return None
    if not isinstance(tree, dict) or tree.get("error"):
        return None
    names = {n.lower() for n in re.findall(r'"table_name":\s*"((?:[^"\\]|\\.)*)"', text)}
    out = {n for n in names if n in TABLES}
    for name in names & set(VIEWS):
        out |= set(VIEWS[name][2])
    return out


def _files(project, man: dict, tables: set[str] | None) -> dict[str, list[str]]:
    """Local paths of the data files of ``tables`` (all when None), by table."""
    from ..bucket.url import parse_bucket_url
    from .tables import TABLES

    wanted = set(TABLES) if tables is None else tables
    by_table: dict[str, list[str]] = {t: [] for t in wanted}
    for path in sorted(man["files"]):
        part = file_part(path)
        if part is not None and part[0] in by_table:
            by_table[part[0]].append(path)
    if parse_bucket_url(project.store.url).scheme == "file":
        root = os.path.join(project.store.url, project.name, *PREFIX.strip("/").split("/"))
        return {t: [os.path.join(root, p) for p in ps] for t, ps in by_table.items()}
    return _cached(project, man, by_table)


def cache_dir(project) -> str:
    """Where data files of a remote bucket's warehouse are cached."""
    from ..dirs import user_dir

    ident = hashlib.sha256(f"{project.store.url}\0{project.name}".encode()).hexdigest()[:16]
    return user_dir("cache", "warehouse", ident)


def _cached(project, man: dict, by_table: dict[str, list[str]]) -> dict[str, list[str]]:
    root = cache_dir(project)
    todo = []
    for paths in by_table.values():
        for p in paths:
            local = os.path.join(root, p)
            try:
                if os.path.getsize(local) == int(man["files"][p].get("bytes") or -1):
                    continue
            except OSError:
                pass
            todo.append((p, local))

    def fetch(item: tuple[str, str]) -> None:
        path, local = item
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = f"{local}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            project.store.get_file(project.ctx.key(PREFIX + path), tmp)
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    if todo:
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(fetch, todo))
        except NotFound:
            raise TraceboxError(
                "the warehouse changed while its files were fetched; run the query again"
            ) from None
    _evict(root, set(man["files"]))
    return {t: [os.path.join(root, p) for p in ps] for t, ps in by_table.items()}


def _evict(root: str, live: set[str]) -> None:
    """Drop cached data files the manifest no longer lists."""
    for folder, _, names in os.walk(root):
        for n in names:
            if not n.endswith(".parquet"):
                continue
            full = os.path.join(folder, n)
            if os.path.relpath(full, root).replace(os.sep, "/") not in live:
                try:
                    os.unlink(full)
                except OSError:
                    pass


def _models(man: dict) -> set[str]:
    return {m for meta in man["files"].values() for m in meta.get("models") or ()}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _define(con, files: dict[str, list[str]], models: set[str]) -> None:
    """The table views (over ``files``; an empty table when there are none), the
    ``model_prices`` table, and every ready-made view whose tables are defined."""
    import pyarrow as pa

    from ..index.stats import price_for
    from .tables import SCHEMAS

    for table, paths in files.items():
        if paths:
            listed = ", ".join(_quote(p) for p in paths)
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], "
                "hive_partitioning = true, union_by_name = true, hive_types = {'date': DATE})"
            )
        else:
            empty = SCHEMAS[table].append(pa.field("date", pa.date32())).empty_table()
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
    prices: dict[str, list[Any]] = {
        k: [] for k in ("model", "input", "output", "cache_read", "cache_write", "source", "as_of")
    }
    for m in sorted(models):
        p = price_for(m)
        prices["model"].append(m)
        for k in ("input", "output", "cache_read", "cache_write", "source", "as_of"):
            prices[k].append(getattr(p, k) if p is not None else None)
    con.register(
        "_model_prices",
        pa.table(
            prices,
            schema=pa.schema(
                [("model", pa.string())]
                + [(k, pa.float64()) for k in ("input", "output", "cache_read", "cache_write")]
                + [("source", pa.string()), ("as_of", pa.string())]
            ),
        ),
    )
    con.execute("CREATE VIEW model_prices AS SELECT * FROM _model_prices")
    for name, (_, sql, needs) in VIEWS.items():
        if set(needs) <= set(files):
            con.execute(f"CREATE VIEW {name} AS {sql}")
