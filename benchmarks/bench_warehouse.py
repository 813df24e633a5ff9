"""Warehouse: sync throughput, and cost per model over 10 million steps — DuckDB over
Parquet versus the same query on the SQLite index.

    .venv/bin/python benchmarks/bench_warehouse.py            # 10,000,000 steps
    .venv/bin/python benchmarks/bench_warehouse.py --quick    # 1,000,000 steps

**Sync.** A local-folder bucket is filled through the real code paths: copies of real
transcripts (a Claude Code session with its subagents, a Codex and a Pi session, each
copy with its own session id) mirrored with ``capture.mirror`` (scrubbing off: it is
not what is measured) and coordination events written by ``coord.events``. Then
``warehouse.sync.sync`` is timed on it: the first sync (rows/s; source MB/s = bytes of
the mirrored parts and events read per second; Parquet written), a re-sync with nothing
new, and one after 200 new events.

**Query.** ``STEPS`` synthetic steps (200 per session, 50 per cent agent steps carrying
usage, models spread over six harness/model pairs, sessions over 90 days) are generated
once and written to both stores directly: Parquet files in the warehouse layout with
their manifest (one file per table per day, as a sync writes them), and the SQLite index
(``index/db.py`` schema; no search text, which the query does not read). Then
``tracebox sql "SELECT * FROM cost_per_model"`` (in-process: ``warehouse.query.query``,
manifest read and views included) and ``tracebox stats --by model`` (in-process:
``index.stats.stats``) each run ``REPEAT`` times after one warm-up; medians and their
ratio are reported, and the two results are checked to agree (tokens exactly, cost to
1e-9). One run of each as a new CLI process is timed for context.
Writes benchmarks/results/warehouse.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CORPUS = ROOT / "tests" / "corpus"
REPEAT = 5
SEED = 20261203
STEPS_PER_SESSION = 200
DAYS = 90
PAIRS = [  # (harness, model): weights follow the list order
    ("claude-code", "claude-opus-4-6"),
    ("claude-code", "claude-sonnet-4-5"),
    ("codex", "gpt-5.3-codex"),
    ("pi", "claude-sonnet-4-5"),
    ("gemini-cli", "gemini-2.5-pro"),
    ("claude-code", "claude-haiku-4-5"),
]
SOURCES = [  # (harness, transcript, its session id)
    ("claude-code", CORPUS / "claude-code" / "4d5611e5-241a-462a-8d15-5122611a9569.jsonl"),
    (
        "codex",
        CORPUS / "codex" / "rollout-2026-02-23T12-47-42-019c8a53-a0dd-7130-bcd7-95445d84846a.jsonl",
    ),
    ("pi", CORPUS / "pi" / "large-session.jsonl"),
]
IDS = {
    "claude-code": "4d5611e5-241a-462a-8d15-5122611a9569",
    "codex": "019c8a53-a0dd-7130-bcd7-95445d84846a",
    "pi": "d703a1a9-1b7b-4fb1-b512-c9738b1fe617",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- sync throughput ----------------------------------------------------------------------


def _copies(folder: Path, sets: int) -> list[tuple[str, Path]]:
    """``sets`` copies of each source transcript, each with a new session id."""
    out = []
    for n in range(sets):
        for harness, src in SOURCES:
            new = str(uuid.UUID(int=random.Random(SEED + n * 7 + len(out)).getrandbits(128)))
            name = src.name.replace(IDS[harness], new)
            dst = folder / f"{n:04d}" / (name if new in name else f"{new}.jsonl")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes().replace(IDS[harness].encode(), new.encode()))
            side = src.with_suffix("")
            if side.is_dir():
                shutil.copytree(side, dst.with_suffix(""))
                for f in dst.with_suffix("").rglob("*.jsonl"):
                    f.write_bytes(f.read_bytes().replace(IDS[harness].encode(), new.encode()))
            out.append((harness, dst))
    return out


def bench_sync(tmp: Path, sets: int, n_events: int) -> dict:
    from tracebox.capture import mirror
    from tracebox.coord import events
    from tracebox.project import init_project, open_project
    from tracebox.warehouse import sync as wsync

    bucket = str(tmp / "sync-bucket")
    init_project(bucket, "bench", "alice")
    p = open_project(bucket, "bench", "alice")
    files = _copies(tmp / "transcripts", sets)
    log(f"sync: mirroring {len(files)} transcripts, writing {n_events:,} events")
    with mirror.Mirror(p, scrub=False, final=True) as m:
        done = m.mirror_many([mirror.session_for_path(str(f), h) for h, f in files])
    assert {r.status for r in done} == {"uploaded"}, done
    start = datetime.now(UTC) - timedelta(days=3)
    for i in range(n_events):
        events.append(
            p.ctx,
            "bench.tick",
            step=f"s{i % 50}",
            data={"i": i, "note": "x" * (i % 100)},
            at=start + timedelta(seconds=i * 20),
        )
    source_bytes = sum(
        m.size for pre in ("sessions/", "events/") for m in p.store.list(f"bench/{pre}")
    )
    log("sync: first sync")
    t = time.perf_counter()
    first = wsync.sync(p)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    noop = wsync.sync(p)
    noop_s = time.perf_counter() - t
    for i in range(200):
        events.append(p.ctx, "bench.tock", data={"i": i})
    t = time.perf_counter()
    more = wsync.sync(p)
    more_s = time.perf_counter() - t
    rows = sum(first.rows.values())
    return {
        "sessions": len(files),
        "events": n_events,
        "source_bytes": source_bytes,
        "rows": first.rows,
        "rows_total": rows,
        "files": first.files_written,
        "parquet_bytes": first.bytes_written,
        "first_s": first_s,
        "rows_per_s": rows / first_s,
        "source_mb_per_s": source_bytes / first_s / 1e6,
        "noop_s": noop_s,
        "noop_files": noop.files_written,
        "after_200_events_s": more_s,
        "after_200_events_rows": more.rows,
    }


# -- 10 million steps in both stores --------------------------------------------------------


def _fill(tmp: Path, total_steps: int) -> tuple[str, Path, dict]:
    """The synthetic steps, written to a warehouse (local bucket) and a SQLite index."""
    import pyarrow as pa

    from tracebox.index import db as dbm
    from tracebox.project import init_project
    from tracebox.warehouse import sync as wsync
    from tracebox.warehouse import tables

    rng = random.Random(SEED)
    bucket = str(tmp / "query-bucket")
    init_project(bucket, "bench", "alice")
    wroot = Path(bucket) / "bench" / "warehouse"
    index_path = tmp / "index.db"
    conn = dbm.connect(index_path)
    pool = [
        (
            rng.randint(0, 5000),
            rng.randint(0, 2000),
            rng.randint(0, 120_000),
            rng.randint(0, 10_000),
            rng.randint(0, 500),
        )
        for _ in range(4099)
    ]
    n = STEPS_PER_SESSION
    sources = ["user", "agent", "tool", "agent"] * (n // 4)
    agent = [s == "agent" for s in sources]
    rids = [f"r{i}" if a else None for i, a in enumerate(agent)]
    weights = [1 / (i + 1) for i in range(len(PAIRS))]
    seconds = [
        f"{h:02d}:{m:02d}:{s:02d}.000000Z" for h in range(24) for m in range(60) for s in range(60)
    ]
    sessions = total_steps // n
    per_day = -(-sessions // DAYS)
    day0 = datetime(2026, 9, 1, tzinfo=UTC)
    manifest = {
        "v": 1,
        "format": "tracebox-warehouse",
        "created": "",
        "updated": "",
        "commits": 1,
        "sources": {},
        "files": {},
    }
    key = 0
    stamp = "20261203T000000000000Z"
    parquet_s = sqlite_s = 0.0
    for d in range(DAYS):
        count = min(per_day, sessions - key)
        if count <= 0:
            break
        date = (day0 + timedelta(days=d)).strftime("%Y-%m-%d")
        day_us = int((day0 + timedelta(days=d)).timestamp() * 1_000_000)
        srows: list[tuple] = []
        cols: dict[str, list] = {c: [] for c in ("uid", "harness", "model", "ts", "pool", "sqlts")}
        sess: dict[str, list] = {c: [] for c in ("uid", "sid", "harness", "model", "started")}
        for _ in range(count):
            key += 1
            harness, model = rng.choices(PAIRS, weights)[0]
            sid = f"{key:08d}-0000-4000-8000-000000000000"
            uid = f"{harness}:{sid}"
            start_s = rng.randint(0, 86400 - n * 2)
            srows.append(
                (
                    key,
                    uid,
                    sid,
                    harness,
                    json.dumps([model]),
                    f"{date}T{seconds[start_s]}",
                    f"bench/{uid}",
                )
            )
            sess["uid"].append(uid)
            sess["sid"].append(sid)
            sess["harness"].append(harness)
            sess["model"].append(model)
            sess["started"].append(day_us + start_s * 1_000_000)
            cols["uid"] += [uid] * n
            cols["harness"] += [harness] * n
            cols["model"] += [model if a else None for a in agent]
            cols["ts"] += [day_us + (start_s + i * 2) * 1_000_000 for i in range(n)]
            cols["sqlts"] += [f"{date}T{seconds[start_s + i * 2]}" for i in range(n)]
            off = key * 31
            cols["pool"] += [
                pool[(off + i) % len(pool)] if a else (None,) * 5 for i, a in enumerate(agent)
            ]
        rows = count * n
        usage = list(zip(*cols["pool"], strict=True)) if rows else [[]] * 5
        keys = [k for k in range(key - count + 1, key + 1) for _ in range(n)]
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO sessions(key, uid, id, harness, models, started, origin) VALUES (?,?,?,?,?,?,?)",
            srows,
        )
        conn.executemany(
            "INSERT INTO steps(session, idx, source, ts, model, response_id, input, output,"
            " cache_read, cache_write, reasoning, tool_calls, tool_errors, error, copied)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,0,0,NULL,0)",
            zip(
                keys,
                list(range(n)) * count,
                sources * count,
                cols["sqlts"],
                cols["model"],
                rids * count,
                *usage,
                strict=True,
            ),
        )
        conn.execute("COMMIT")
        sqlite_s += time.perf_counter() - t
        t = time.perf_counter()
        origin = [f"sessions/{u.replace(':', '/')}" for u in sess["uid"]]
        steps = pa.table(
            {
                "origin": pa.array([o for o in origin for _ in range(n)]),
                "session_uid": pa.array(cols["uid"]),
                "session_id": pa.array([s for s in sess["sid"] for _ in range(n)]),
                "harness": pa.array(cols["harness"]),
                "idx": pa.array(list(range(n)) * count, pa.int32()),
                "source": pa.array(sources * count),
                "ts": pa.array(cols["ts"], pa.int64()).cast(tables.TS),
                "model": pa.array(cols["model"]),
                "response_id": pa.array(rids * count),
                **{
                    c: pa.array(u, pa.int64())
                    for c, u in zip(
                        ("input", "output", "cache_read", "cache_write", "reasoning"),
                        usage,
                        strict=True,
                    )
                },
                "tool_calls": pa.array([0] * rows, pa.int32()),
                "tool_errors": pa.array([0] * rows, pa.int32()),
                "copied": pa.array([False] * rows),
            }
        )
        sess_t = pa.table(
            {
                "origin": pa.array(origin),
                "uid": pa.array(sess["uid"]),
                "root": pa.array(sess["uid"]),
                "session_id": pa.array(sess["sid"]),
                "harness": pa.array(sess["harness"]),
                "models": pa.array([[m] for m in sess["model"]]),
                "model": pa.array(sess["model"]),
                "started": pa.array(sess["started"], pa.int64()).cast(tables.TS),
                "steps": pa.array([n] * count, pa.int32()),
                **{
                    f"extra_{c}": pa.array([0] * count, pa.int64())
                    for c in ("input", "output", "cache_read", "cache_write", "reasoning")
                },
            }
        )
        for name, t_ in (("steps", steps), ("sessions", sess_t)):
            t_ = tables.conform(t_, name)
            path = f"{name}/date={date}/part-{stamp}-{d:08x}.parquet"
            data = wsync._parquet(t_)
            (wroot / path).parent.mkdir(parents=True, exist_ok=True)
            (wroot / path).write_bytes(data)
            manifest["files"][path] = {**wsync._file_meta(t_), "bytes": len(data)}
        parquet_s += time.perf_counter() - t
        if d % 10 == 0:
            log(f"query: generated day {d + 1}/{DAYS} ({key * n:,} steps)")
    (wroot / "_manifest.json").write_text(json.dumps(manifest))
    conn.close()
    return (
        bucket,
        index_path,
        {
            "steps": key * n,
            "sessions": key,
            "parquet_bytes": sum(m["bytes"] for m in manifest["files"].values()),
            "parquet_files": len(manifest["files"]),
            "sqlite_bytes": sum(
                os.path.getsize(f"{index_path}{s}")
                for s in ("", "-wal")
                if os.path.exists(f"{index_path}{s}")
            ),
            "write_parquet_s": parquet_s,
            "write_sqlite_s": sqlite_s,
        },
    )


def _timed(fn, repeat: int) -> tuple[list[float], object]:
    fn()  # warm-up: file cache, imports
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def bench_query(tmp: Path, total_steps: int) -> dict:
    from tracebox.index import db as dbm
    from tracebox.index import stats
    from tracebox.project import open_project
    from tracebox.warehouse.query import query

    log(f"query: generating {total_steps:,} steps into Parquet and SQLite")
    bucket, index_path, filled = _fill(tmp, total_steps)
    p = open_project(bucket, "bench", "alice")
    sql = "SELECT * FROM cost_per_model"
    log("query: DuckDB over Parquet")
    duck_t, duck = _timed(lambda: query(p, sql), REPEAT)
    conn = dbm.connect(index_path)
    log("query: SQLite index")
    lite_t, lite = _timed(lambda: stats.stats(conn, by="model"), REPEAT)
    conn.close()
    got = {
        r[duck.columns.index("model")]: dict(zip(duck.columns, r, strict=True)) for r in duck.rows
    }
    for r in lite.rows:
        d = got[r.key]
        for k in ("input", "output", "cache_read", "cache_write", "reasoning"):
            assert d[k] == getattr(r.usage, k), (r.key, k)
        assert abs((d["cost_usd"] or 0) - (r.cost or 0)) <= 1e-9 * max(1.0, r.cost or 0), r.key
    env = {
        **os.environ,
        "TRACEBOX_BUCKET": bucket,
        "TRACEBOX_PROJECT": "bench",
        "TRACEBOX_INDEX": str(index_path),
    }
    cli = {}
    for name, args in (
        ("sql", ["sql", sql, "--json"]),
        ("stats", ["stats", "--by", "model", "--no-refresh", "--json"]),
    ):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tracebox", *args],
            env=env,
            check=True,
            capture_output=True,
            cwd=tmp,
        )
        cli[name] = time.perf_counter() - t
    return {
        **filled,
        "models": len(lite.rows),
        "duckdb_s": duck_t,
        "sqlite_s": lite_t,
        "duckdb_median_s": statistics.median(duck_t),
        "sqlite_median_s": statistics.median(lite_t),
        "ratio": statistics.median(lite_t) / statistics.median(duck_t),
        "cli_sql_s": cli["sql"],
        "cli_stats_s": cli["stats"],
        "agree": True,
    }


# -- run / report ---------------------------------------------------------------------------


def run(quick: bool = False) -> dict:
    import duckdb
    import pyarrow

    total = 1_000_000 if quick else 10_000_000
    sets, n_events = (10, 2_000) if quick else (40, 10_000)
    with tempfile.TemporaryDirectory(prefix="tracebox-bench-warehouse-") as tmp:
        os.environ.setdefault("XDG_STATE_HOME", str(Path(tmp) / "state"))
        os.environ.setdefault("XDG_CACHE_HOME", str(Path(tmp) / "cache"))
        synced = bench_sync(Path(tmp), sets, n_events)
        queried = bench_query(Path(tmp), total)
    return {
        "benchmark": "warehouse",
        "quick": quick,
        "repeat": REPEAT,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "duckdb": duckdb.__version__,
            "pyarrow": pyarrow.__version__,
            "platform": platform.platform(),
            "nproc": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        "sync": synced,
        "query": queried,
    }


def report(results: dict) -> str:
    s, q, m = results["sync"], results["query"], results["machine"]
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(s["rows"].items()))
    return "\n".join(
        [
            f"### Warehouse: sync, and cost per model over {q['steps']:,} steps",
            "",
            "| figure | value |",
            "|---|---|",
            f"| first sync: {s['sessions']} mirrored sessions + {s['events']:,} events "
            f"({s['source_bytes'] / 1e6:,.0f} MB) | {s['first_s']:.2f} s: "
            f"{s['rows_per_s']:,.0f} rows/s, {s['source_mb_per_s']:,.0f} MB/s of source |",
            f"| rows written | {rows} ({s['files']} files, {s['parquet_bytes'] / 1e6:,.1f} MB Parquet) |",
            f"| re-sync, nothing new | {s['noop_s'] * 1000:.0f} ms ({s['noop_files']} files written) |",
            f"| re-sync after 200 new events | {s['after_200_events_s'] * 1000:.0f} ms |",
            f"| `cost_per_model`, DuckDB over Parquet (median of {results['repeat']}) "
            f"| {q['duckdb_median_s'] * 1000:,.0f} ms |",
            f"| `stats --by model`, SQLite index (median of {results['repeat']}) "
            f"| {q['sqlite_median_s'] * 1000:,.0f} ms |",
            f"| SQLite / DuckDB | {q['ratio']:.1f}× |",
            f"| as a new process: `tracebox sql` / `tracebox stats` | {q['cli_sql_s']:.2f} s / "
            f"{q['cli_stats_s']:.2f} s |",
            f"| store size: Parquet / SQLite (steps + sessions, no text) | "
            f"{q['parquet_bytes'] / 1e6:,.0f} MB in {q['parquet_files']} files / "
            f"{q['sqlite_bytes'] / 1e6:,.0f} MB |",
            "",
            f"{q['sessions']:,} synthetic sessions × {STEPS_PER_SESSION} steps over {DAYS} days, "
            f"{q['models']} models; both queries give the same tokens and cost per model. "
            f"Python {m['python']}, DuckDB {m['duckdb']}, pyarrow {m['pyarrow']}, "
            f"{m['nproc']} CPUs, load {m['loadavg'][0]:.1f}, max RSS {m['max_rss_mb']:.0f} MB, "
            f"{results['at']}.",
        ]
    )


def main(argv: list[str]) -> None:
    results = run(quick="--quick" in argv)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "warehouse.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


if __name__ == "__main__":
    main(sys.argv[1:])
