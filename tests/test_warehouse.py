"""``tracebox warehouse sync|status`` and ``tracebox sql``: the bucket as Parquet tables.

One bucket is built through the real code paths — coordination through the Project API,
real Claude Code / Codex / Pi transcripts mirrored by ``capture.mirror``, and a real
two-generation harness run (its agents' model calls through the capture proxy, its
results and observations) — then copied object by object to a fresh S3 prefix on a real
SeaweedFS, as any bucket may be (docs/format.md §4). On each, the warehouse is synced and
queried with the CLI as a subprocess, and every figure is checked against what the trace
model, the bucket or ``tracebox stats`` says. Incremental syncs, a session that grows,
and two syncs at once run on fresh buckets of each kind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from conftest import isolate
from tracebox.bucket.store import open_bucket
from tracebox.capture import mirror
from tracebox.capture.proxy.store import calls_to_sessions, list_call_sessions
from tracebox.coord import events
from tracebox.harness import report
from tracebox.project import init_project, open_project
from tracebox.trace import facts
from tracebox.trace.model import summarize, walk
from tracebox.warehouse.sync import MANIFEST, PREFIX, file_part

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
sys.path.insert(0, str(ROOT / "examples" / "harness_demo"))
import scenario  # noqa: E402

TABLES = ("sessions", "steps", "tool_calls", "calls", "events", "harness_results", "observations")
TRANSCRIPTS = [
    ("claude-code", CORPUS / "claude-code" / "short.jsonl"),
    ("claude-code", CORPUS / "claude-code" / "tool_heavy.jsonl"),
    ("claude-code", CORPUS / "claude-code" / "subagent.jsonl"),
    (
        "codex",
        CORPUS / "codex" / "rollout-2026-02-23T12-41-04-019c8a4d-8f45-7010-8b5d-7fad920aa6f9.jsonl",
    ),
    ("pi", CORPUS / "pi" / "large-session.jsonl"),
]


class World:
    """A bucket with a project in it, and how the CLI reaches it."""

    def __init__(self, url: str, env: dict[str, str], root: Path):
        self.url, self.root = url, root
        self.env = {
            **env,
            "TRACEBOX_BUCKET": url,
            "TRACEBOX_PROJECT": "demo",
            "TRACEBOX_AGENT": "alice",
            "TRACEBOX_INDEX": str(root / "index.db"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }

    def project(self):
        return open_project(self.url, "demo", "alice")

    def run(self, *args: str, check: bool = True, extra: dict | None = None, stdin=None):
        proc = subprocess.run(
            [sys.executable, "-m", "tracebox", *args],
            env={**os.environ, **self.env, **(extra or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            input=stdin,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"tracebox {args} exited {proc.returncode}: {proc.stderr}")
        return proc

    def json(self, *args: str):
        return json.loads(self.run(*args, "--json").stdout)

    def sql(self, query: str):
        return self.json("sql", query, "--max-rows", "0")

    def data_files(self) -> set[str]:
        """Data files in the bucket's warehouse folders (what a folder reader sees)."""
        store = self.project().store
        cut = len(f"demo/{PREFIX}")
        return {m.key[cut:] for m in store.list(f"demo/{PREFIX}") if m.key.endswith(".parquet")}

    def manifest(self) -> dict:
        return json.loads(self.project().store.get(f"demo/{MANIFEST}").data)


def _mirror(p, files: list[tuple[str, Path]]) -> None:
    with mirror.Mirror(p, final=True) as m:
        done = m.mirror_many([mirror.session_for_path(str(f), h) for h, f in files])
    assert {r.status for r in done} == {"uploaded"}, done


def _build(root: Path) -> str:
    """The shared content, in a local bucket; returns the harness run id."""
    bucket = str(root / "bucket")
    init_project(bucket, "demo", "alice")
    p = {a: open_project(bucket, "demo", a) for a in ("alice", "bob")}
    p["alice"].claim("plan", ttl="10m")
    p["alice"].complete("plan", note="plan done", to="bob")
    p["bob"].claim("deploy", ttl="10m")
    p["bob"].complete("deploy", blocked=True, note="no credentials")
    p["alice"].send("bob", "can you deploy?")
    p["bob"].memory.set("build.status", {"ok": True})
    _mirror(p["alice"], TRANSCRIPTS)
    server = scenario.ModelServer()
    os.environ["TRACEBOX_UPSTREAM_OPENAI"] = server.url
    from tracebox.harness import config, run

    try:
        repo = scenario.make_repo(root)
        cfg = config.load(str(scenario.write_harness(root, repo, generations=2)))
        return run.run(cfg, p["alice"])["run"]
    finally:
        server.close()
        del os.environ["TRACEBOX_UPSTREAM_OPENAI"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("wh-src")
        isolate(mp, root / "env")
        yield root, _build(root)


def _copy(src_url: str, dst_url: str) -> None:
    """Every object of the project but its warehouse, copied as is (any tool may)."""
    src, dst = open_bucket(src_url), open_bucket(dst_url)
    for m in src.list("demo/"):
        if not m.key.startswith(f"demo/{PREFIX}"):
            dst.put(m.key, src.get(m.key).data)


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def world(request, source, tmp_path_factory):
    """(World, expected figures, the first sync's report) after `tracebox warehouse sync`."""
    src_root, run_id = source
    root = tmp_path_factory.mktemp(f"wh-{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, root / "env")
        if request.param == "local":
            w = World(str(src_root / "bucket"), {}, root)
        else:
            server = request.getfixturevalue("seaweed")
            for k, v in server.env().items():
                mp.setenv(k, v)
            w = World(server.url(uuid.uuid4().hex), server.env(), root)
            _copy(str(src_root / "bucket"), w.url)
        first = w.json("warehouse", "sync")
        yield w, _expected(w.project(), run_id), first


def _expected(p, run_id: str) -> dict:
    """Every figure the warehouse must hold, from the bucket through the trace model."""
    trees = [mirror.load_session(p, e["harness"], e["session_id"]) for e in mirror.list_sessions(p)]
    trees += [calls_to_sessions(p, e["session"]) for e in list_call_sessions(p)]
    sums = [summarize(t) for t in trees]
    failed = 0
    for t in trees:
        for s in walk(t):
            failed += sum(1 for _, r in facts.results(s).values() if facts.failed(r))
    run = report.load(p, run_id)
    entries = {}
    for g in run["generations"]:
        n = g["generation"]
        blob = p.store.get(p.ctx.key(f"harness/{run_id}/gen-{n}/observations.jsonl")).data
        entries[n] = [json.loads(line) for line in blob.decode().splitlines() if line]
    return {
        "counts": {
            "sessions": sum(1 + s.subagents for s in sums),
            "steps": sum(s.steps for s in sums),
            "tool_calls": sum(s.tool_calls for s in sums),
            "calls": sum(1 for m in p.store.list("demo/calls/") if m.key.endswith(".json")),
            "events": len(events.read(p.ctx)),
            "harness_results": sum(len(g["results"]) for g in run["generations"]),
            "observations": sum(len(v) for v in entries.values()),
        },
        "failed_tool_calls": failed,
        "run": run,
        "entries": entries,
    }


def _counts_sql() -> str:
    return "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in TABLES)


# -- the tables -------------------------------------------------------------------------


def test_every_table_holds_what_the_bucket_holds(world):
    w, want, first = world
    assert first["failed"] == 0 and first["errors"] == [], first["errors"]
    assert first["commits"] == 1 and first["files_written"] == len(w.manifest()["files"])
    (counts,) = w.sql(_counts_sql())
    assert counts == want["counts"]
    assert all(n > 0 for n in counts.values()), counts
    assert {t: n for t, n in first["rows"].items()} == want["counts"]
    # no duplicate keys anywhere
    (dupes,) = w.sql(
        "SELECT (SELECT count(*) - count(DISTINCT uid) FROM sessions) AS s,"
        " (SELECT count(*) - count(DISTINCT (session_uid, idx)) FROM steps) AS st,"
        " (SELECT count(*) - count(DISTINCT id) FROM events) AS e,"
        " (SELECT count(*) - count(DISTINCT call_id) FROM calls) AS c"
    )
    assert dupes == {"s": 0, "st": 0, "e": 0, "c": 0}
    status = w.json("warehouse", "status")
    assert {t: v["rows"] for t, v in status["tables"].items()} == want["counts"]


def test_plain_pyarrow_reads_the_folders_as_spark_would(world):
    """Folder readers (Spark, Trino) see exactly the manifest's files: the same rows."""
    w, want, _ = world
    assert w.data_files() == set(w.manifest()["files"])
    if w.url.startswith("s3://"):
        env = w.env
        fs = pafs.S3FileSystem(
            access_key=env["AWS_ACCESS_KEY_ID"],
            secret_key=env["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=env["AWS_ENDPOINT_URL"].split("://", 1)[1],
            scheme="http",
            region=env["AWS_REGION"],
        )
        base = f"{w.url[len('s3://') :]}/demo/warehouse"
    else:
        fs, base = pafs.LocalFileSystem(), f"{w.url}/demo/warehouse"
    for table, n in want["counts"].items():
        ds = pads.dataset(f"{base}/{table}", filesystem=fs, format="parquet", partitioning="hive")
        assert ds.count_rows() == n, table
        assert "date" in ds.schema.names and "origin" in ds.schema.names
    steps = pads.dataset(f"{base}/steps", filesystem=fs, format="parquet", partitioning="hive")
    got = steps.to_table(columns=["input"], filter=pads.field("input").is_valid())
    assert got.num_rows > 0


def test_cost_per_model_equals_tracebox_stats(world):
    w, _, _ = world
    w.run("index", "--bucket", "-q")
    stats = w.json("stats", "--by", "model", "--no-refresh")
    rows = {r["model"]: r for r in w.sql("SELECT * FROM cost_per_model")}
    priced = [r for r in stats["rows"] if r["cost"]]
    assert len(priced) >= 3 and any(r["key"] == "scripted-coder" for r in stats["rows"])
    for r in stats["rows"]:
        got = rows.pop(r["key"])
        for k in ("input", "output", "cache_read", "cache_write", "reasoning"):
            assert got[k] == r["usage"].get(k, 0), (r["key"], k)
        if r["cost"] is None:
            assert got["cost_usd"] is None and got["priced"] is False
        else:
            assert got["cost_usd"] == pytest.approx(r["cost"], rel=1e-12), r["key"]
    assert rows == {}
    prices = {r["model"]: r for r in w.sql("SELECT * FROM model_prices")}
    assert prices["claude-opus-4-6"]["cache_read"] == 0.5  # cache reads at their own rate


def test_failure_patterns_and_harness_convergence(world):
    w, want, _ = world
    patterns = w.sql("SELECT * FROM failure_patterns")
    tool = [r for r in patterns if r["source"] == "tool_error"]
    assert sum(r["occurrences"] for r in tool) == want["failed_tool_calls"] > 0
    assert all(r["fingerprint"] and r["title"] and r["example"] for r in tool)
    last = max(want["entries"])
    important = {e["fingerprint"]: e for e in want["entries"][last] if e["priority"] == "important"}
    obs = {r["fingerprint"]: r for r in patterns if r["source"] == "observation"}
    assert set(obs) == set(important) and important
    for fp, e in important.items():
        assert (obs[fp]["occurrences"], obs[fp]["runs"], obs[fp]["kind"]) == (
            e["count"],
            1,
            e["kind"],
        )
    conv = w.sql("SELECT * FROM harness_convergence")
    gens = want["run"]["generations"]
    assert [(r["generation"], r["variants"], r["solved"], r["stopped"]) for r in conv] == [
        (g["generation"], g["variants"], g["solved"], g["stopped"]) for g in gens
    ]
    assert conv[-1]["solved_so_far"] == sum(g["solved"] for g in gens) > 0
    assert [r["observations"] for r in conv] == [
        len(want["entries"][g["generation"]]) for g in gens
    ]


def test_resync_with_nothing_new_writes_nothing(world):
    w, want, _ = world
    before = w.manifest()
    again = w.json("warehouse", "sync")
    assert (again["commits"], again["files_written"], again["rows"]) == (0, 0, {})
    assert again["unchanged"] == len(before["sources"])
    assert w.manifest() == before


def test_sql_output_forms_and_errors(world):
    w, _, _ = world
    proc = w.run(
        "sql", "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type", "--csv"
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "type,n" and any(ln.startswith("claim.acquire,") for ln in lines[1:])
    human = w.run("sql", "SELECT harness, count(*) AS n FROM sessions GROUP BY 1 ORDER BY 1")
    assert human.stdout.splitlines()[0].split() == ["HARNESS", "N"] and "rows)" in human.stdout
    cut = w.run("sql", "SELECT * FROM steps", "--max-rows", "2", "--json")
    assert len(json.loads(cut.stdout)) == 2 and "--max-rows" in cut.stderr
    piped = w.run("sql", "-", "--json", stdin="SELECT count(*) AS n FROM calls")
    assert json.loads(piped.stdout)[0]["n"] > 0
    views = {v["name"]: v for v in w.json("sql", "--views")}
    assert set(TABLES) | {"cost_per_model", "failure_patterns", "harness_convergence"} <= set(views)
    assert "cost_usd" in {c["name"] for c in views["cost_per_model"]["columns"]}
    for bad in ("SELEC * FROM steps", "SELECT nope FROM steps", "SELECT * FROM no_such_table"):
        p = w.run("sql", bad, check=False)
        assert p.returncode == 2, (bad, p.stderr)
        assert p.stderr.startswith("tracebox: error: SQL: ") and p.stderr.count("\n") == 1
        assert "Traceback" not in p.stderr and p.stdout == ""
    p = w.run("sql", check=False)
    assert p.returncode == 2 and "give a SQL statement" in p.stderr


# -- incremental, growth, concurrency (fresh buckets) -----------------------------------


@pytest.fixture
def fresh(bucket_url, tmp_path) -> World:
    init_project(bucket_url, "demo", "alice")
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    return World(bucket_url, env, tmp_path)


def test_missing_warehouse_is_a_clear_error(fresh):
    p = fresh.run("sql", "SELECT 1", check=False)
    assert p.returncode == 1 and "run `tracebox warehouse sync` first" in p.stderr
    assert p.stderr.count("\n") == 1
    assert fresh.json("warehouse", "status")["exists"] is False


def test_grown_session_and_new_events_are_not_duplicated(fresh, tmp_path):
    p = fresh.project()
    src = CORPUS / "claude-code" / "tool_heavy.jsonl"
    lines = src.read_bytes().splitlines(keepends=True)
    grow = tmp_path / "0f1e2d3c-4b5a-4968-8776-655443322110.jsonl"
    grow.write_bytes(b"".join(lines[: len(lines) // 2]))
    _mirror(p, [("claude-code", grow), ("claude-code", CORPUS / "claude-code" / "short.jsonl")])
    p.claim("build", ttl="10m")
    first = fresh.json("warehouse", "sync")
    assert (first["new"], first["commits"]) == (3, 1)
    sid = grow.stem
    origin = f"sessions/claude-code/{sid}"  # the transcript names its own session id
    q = f"SELECT count(*) AS n FROM steps WHERE origin = '{origin}'"
    half = fresh.sql(q)[0]["n"]
    assert half == summarize(mirror.load_session(p, "claude-code", sid)).steps > 0

    grow.write_bytes(src.read_bytes())
    _mirror(p, [("claude-code", grow)])
    p.complete("build", note="done")
    p.send("bob", "built")
    second = fresh.json("warehouse", "sync")
    assert (second["changed"], second["appended"], second["new"]) == (1, 1, 0), second
    full = summarize(mirror.load_session(p, "claude-code", sid))
    assert fresh.sql(q)[0]["n"] == full.steps > half
    (row,) = fresh.sql(f"SELECT steps, tool_calls FROM sessions WHERE origin = '{origin}'")
    assert (row["steps"], row["tool_calls"]) == (full.steps, full.tool_calls)
    want_events = len(events.read(p.ctx))
    got = fresh.sql("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events")[0]
    assert got == {"n": want_events, "d": want_events}
    assert second["rows"]["events"] == want_events - first["rows"]["events"]  # only the new
    assert fresh.data_files() == set(fresh.manifest()["files"])  # replaced files are gone
    third = fresh.json("warehouse", "sync")
    assert (third["commits"], third["files_written"]) == (0, 0)


def test_two_syncs_at_once_neither_corrupt_nor_duplicate(fresh, tmp_path):
    p = fresh.project()
    _mirror(p, [(h, f) for h, f in TRANSCRIPTS if f.stat().st_size < 50_000])
    for i in range(5):
        p.send("bob", f"message {i}")
    # deterministic interleaving: A writes its files and stops before its commit, B syncs
    # fully, then A commits — and must lose, clean up and find nothing left to do
    gate = tmp_path / "gate"
    env = {**os.environ, **fresh.env, "TRACEBOX_TEST_WAREHOUSE_GATE": str(gate)}
    a = subprocess.Popen(
        [sys.executable, "-m", "tracebox", "warehouse", "sync", "--json"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3000):
            if (tmp_path / "gate.ready").exists() or a.poll() is not None:
                break
            time.sleep(0.01)
        assert (tmp_path / "gate.ready").exists(), a.communicate()
        b = fresh.json("warehouse", "sync")
        gate.touch()
        out, err = a.communicate(timeout=60)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 0, err
    ra = json.loads(out)
    assert b["commits"] == 1 and b["rows"]["sessions"] > 0
    assert (ra["commits"], ra["retries"], ra["files_written"]) == (0, 1, 0)
    assert fresh.data_files() == set(fresh.manifest()["files"])  # A deleted what it wrote

    # and two unconstrained syncs racing over new work: exactly one commits it
    for i in range(3):
        p.send("carol", f"more {i}")
    _mirror(p, [("claude-code", CORPUS / "claude-code" / "subagent.jsonl")])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tracebox", "warehouse", "sync", "--json"],
            env={**os.environ, **fresh.env},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [json.loads(pr.communicate(timeout=60)[0]) for pr in procs]
    assert [pr.returncode for pr in procs] == [0, 0]
    assert sum(r["commits"] for r in results) == 1
    assert fresh.data_files() == set(fresh.manifest()["files"])
    trees = [mirror.load_session(p, e["harness"], e["session_id"]) for e in mirror.list_sessions(p)]
    (got,) = fresh.sql(
        "SELECT (SELECT count(*) FROM sessions) AS s, (SELECT count(DISTINCT uid) FROM sessions) AS u,"
        " (SELECT count(*) FROM steps) AS st, (SELECT count(*) FROM events) AS e"
    )
    assert got == {
        "s": sum(1 + summarize(t).subagents for t in trees),
        "u": sum(1 + summarize(t).subagents for t in trees),
        "st": sum(summarize(t).steps for t in trees),
        "e": len(events.read(p.ctx)),
    }


def test_a_removed_source_loses_its_rows(fresh):
    """A session deleted from the bucket loses its rows at the next sync."""
    p = fresh.project()
    _mirror(p, [("claude-code", CORPUS / "claude-code" / "short.jsonl")])
    fresh.json("warehouse", "sync")
    assert fresh.sql("SELECT count(*) AS n FROM sessions")[0]["n"] == 1
    for m in list(p.store.list("demo/sessions/")):
        p.store.delete(m.key)
    out = fresh.json("warehouse", "sync")
    assert out["removed"] == 1
    assert fresh.sql("SELECT count(*) AS n FROM steps")[0]["n"] == 0
    assert all(file_part(f)[0] == "events" for f in fresh.data_files())
