"""The Parquet warehouse: the bucket compacted into tables that SQL engines read.

- ``tables.py`` — the tables (pyarrow schemas, documented column by column) and the rows
  one source object gives them: a session (trace model), a proxy call record, an event,
  a harness run;
- ``sync.py`` — ``sync(project)``: incremental compaction into
  ``warehouse/<table>/date=YYYY-MM-DD/part-<ts>-<rand>.parquet`` with a manifest
  (``warehouse/_manifest.json``) as the commit point, and ``status(project)``;
- ``query.py`` — ``query(project, sql)``: DuckDB over the manifest's files (local folder
  in place; other buckets through a local cache of the immutable files), with a view per
  table and the ready-made ``cost_per_model``, ``failure_patterns`` and
  ``harness_convergence`` views.

Needs the ``warehouse`` extra (``duckdb``, ``pyarrow``). docs/warehouse.md describes the
tables, the incremental semantics, and how Spark, Trino or Snowflake read the same files.
"""

from __future__ import annotations

from ..errors import TraceboxError

EXTRA_HINT = "install it with `pip install 'tracebox[warehouse]'`"


def need_extra() -> None:
    """Raise a one-line error when duckdb or pyarrow is missing."""
    import importlib.util

    missing = [m for m in ("pyarrow", "duckdb") if importlib.util.find_spec(m) is None]
    if missing:
        raise TraceboxError(
            f"the warehouse needs {' and '.join(missing)} (the warehouse extra); {EXTRA_HINT}"
        )
