"""Every benchmark, side by side with the peer tools in one run (``make bench``).

    .venv/bin/python benchmarks/run.py            # full run (~19 min on 2 quiet cores)
    .venv/bin/python benchmarks/run.py --quick    # ~4 min: fewer trials, N <= 16, burst 8x20

Benchmarks (details in benchmarks/README.md):

- latency:  CLI cold start and end-to-end latency of one command as a new process
            (``--help``, ``claim <new step>``, ``send bob hi``), p50/p95 of many runs;
- stampede: N processes race the real CLI ``claim`` for one fresh step behind a barrier;
            winners verified in the bucket; winner latency and time until all finished;
- burst:    S sender processes x M ``send`` each to one agent; delivered count, sends/s;
- inbox:    read a 10,000-message inbox as a new process (full bodies, and count-only).

Coordination runs against tracecraft on one private SeaweedFS server. The capture
benchmarks are modules of their own, each also runnable alone:

- parse:    bench_parse.py  — transcript parse MB/s per agent format (vs opentraces);
- scrub:    bench_scrub.py  — scrubber recall/precision and MB/s (vs secret scanners);
- mirror:   bench_mirror.py — mirror + scrub MB/s into S3 (vs tracecraft session mirror);
- index:    bench_index.py  — index build steps/s, search p50/p95 at 1M steps;
- proxy:    bench_proxy.py  — added latency, req/s, TTFT vs LiteLLM; stored bytes; RSS;
- ui:       bench_ui.py     — `tracebox ui` page times in Chromium at 10,000/50,000 events;
- kafka:    bench_kafka.py  — events/s into Kafka from a simulated fleet of 100 agents;
- alerts:   bench_alerts.py — event -> alert fires p50/p99 (proxy feed, Kafka), engine events/s;
- warehouse: bench_warehouse.py — sync rows/s; cost per model over 10M steps, DuckDB vs SQLite;
- mcp:      bench_mcp.py    — `tracebox mcp` tool call latency (stdio, HTTP) vs one CLI process.

Results: ``benchmarks/results/<name>.json`` (raw figures + machine info) and
``benchmarks/results/latest.md`` (the tables, also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _procs  # noqa: E402
import _report  # noqa: E402
import _seaweed  # noqa: E402
from _tools import Tracebox, Tracecraft, base_env  # noqa: E402

RESULTS = HERE / "results"

FULL = {
    "ns": [2, 4, 8, 16, 32, 50],
    "tb_trials": 50,
    # tracecraft is ~3x slower per process: fewer trials at large N keep the run short
    "tc_trials": {2: 10, 4: 10, 8: 5, 16: 5, 32: 3, 50: 3},
    "burst": (32, 30),
    "inbox_n": 10_000,
    "inbox_long_n": 10_000,  # 1 KiB bodies: too long to ride in the key, one GET each
    "tc_inbox_timeout": 120.0,
    "runs": 20,
}
QUICK = {
    "ns": [2, 4, 8, 16],
    "tb_trials": 5,
    "tc_trials": {2: 5, 4: 5, 8: 5, 16: 5},
    "burst": (8, 20),
    "inbox_n": 10_000,
    "inbox_long_n": 2_000,
    "tc_inbox_timeout": 60.0,
    "runs": 10,
}
COORD_SECTIONS = ("latency", "stampede", "burst", "inbox")
# capture benchmarks live in benchmarks/bench_<name>.py: run(quick) -> dict, report(dict) -> str
CAPTURE_SECTIONS = (
    "parse",
    "scrub",
    "mirror",
    "index",
    "proxy",
    "ui",
    "kafka",
    "alerts",
    "warehouse",
    "mcp",
)
SECTIONS = COORD_SECTIONS + CAPTURE_SECTIONS


def render(results: dict) -> str:
    """The markdown report: coordination tables, then each capture benchmark's own."""
    import importlib

    parts = [_report.render(results)]
    for section in CAPTURE_SECTIONS:
        if section in results:
            parts.append(importlib.import_module(f"bench_{section}").report(results[section]))
    return "\n\n".join(parts)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(server: _seaweed.S3Server) -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "mem_gib": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "seaweedfs": _seaweed.weed_version(),
        "seaweedfs_startup_s": round(server.startup_s, 3),
        "tracebox": _version("tracebox"),
        "tracebox_git": _git("rev-parse", "--short", "HEAD")
        + (" (dirty)" if _git("status", "--porcelain", "--", "src") else ""),
        "tracecraft": _version("tracecraft-ai"),
        "obstore": _version("obstore"),
        "boto3": _version("boto3"),
        "click": _version("click"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --------------------------------------------------------------------------- latency


def bench_latency(tb: Tracebox, tbl: Tracebox, tc: Tracecraft, runs: int, floor_dir: Path) -> dict:
    """Each command ``runs`` times as a new process, round-robin so drift hits all rows."""
    py = sys.executable
    floor_env = base_env(floor_dir / "home")
    rows: list[tuple[str, str, object, dict, Path]] = [
        ("python -c pass", "floor", [py, "-c", "pass"], floor_env, floor_dir),
        ("python -c 'import boto3'", "floor", [py, "-c", "import boto3"], floor_env, floor_dir),
    ]
    for tool in (tb, tbl, tc):
        if tool is not tbl:
            rows.append(("--help", tool.label, tool.cmd("--help"), tool.env("alice"), tool.workdir))
        rows.append(
            (
                "claim <new step>",
                tool.label,
                lambda i, t=tool: t.cmd("claim", f"lat-{i}"),
                tool.env("alice"),
                tool.workdir,
            )
        )
        rows.append(
            (
                "send bob hi",
                tool.label,
                tool.cmd("send", "bob", "hi"),
                tool.env("alice"),
                tool.workdir,
            )
        )
    times: dict[tuple[str, str], list[float]] = {(r[0], r[1]): [] for r in rows}
    fails: dict[tuple[str, str], list[str]] = {(r[0], r[1]): [] for r in rows}
    warmup = 2
    for i in range(-warmup, runs):
        for cmd_name, col, cmd, env, cwd in rows:
            argv = cmd(i + warmup) if callable(cmd) else cmd
            r = _procs.timed(argv, env=env, cwd=cwd, timeout=60)
            if i < 0:
                continue
            times[(cmd_name, col)].append(r.seconds)
            if r.rc != 0:
                fails[(cmd_name, col)].append(f"rc={r.rc}: {r.stderr.strip()[-300:]}")
    out = []
    for cmd_name, col, *_ in rows:
        k = (cmd_name, col)
        out.append(
            {
                "command": cmd_name,
                "tool": col,
                "runs": runs,
                "failures": len(fails[k]),
                "failure_sample": fails[k][:3],
                "stats": _procs.summary(times[k]),
                "raw_s": [round(x, 5) for x in times[k]],
            }
        )
    return {"warmup_runs": warmup, "rows": out}


# --------------------------------------------------------------------------- stampede


def _one_race(tool, n: int, step: str) -> dict:
    racers = [(tool.cmd("claim", step), tool.env(f"r{i:02d}")) for i in range(n)]
    runs = _procs.race(racers, cwd=tool.workdir, timeout=180)
    winners = [f"r{i:02d}" for i, r in enumerate(runs) if r.rc == 0]
    stored = tool.claim_owner(step)
    rcs: dict[str, int] = {}
    for r in runs:
        rcs[str(r.rc)] = rcs.get(str(r.rc), 0) + 1
    errors = [r.stderr.strip()[-300:] for r in runs if r.rc not in (0, 1)]
    # a loser must say the step is taken (not fail for some other reason with exit 1)
    odd_losers = [r.stderr.strip()[-300:] for r in runs if r.rc == 1 and "claimed" not in r.stderr]
    ok = len(winners) == 1 and stored == winners[0]
    win_t = min((r.seconds for r in runs if r.rc == 0), default=None)
    return {
        "step": step,
        "ok": ok,
        "winners": winners,
        "stored_owner": stored,
        "rc_counts": rcs,
        "errors": errors[:3],
        "losers": sum(r.rc == 1 for r in runs),
        "odd_losers": len(odd_losers),
        "odd_loser_sample": odd_losers[:2],
        "winner_s": win_t,
        "all_finished_s": max(r.seconds for r in runs),
    }


def _race_summary(trials: list[dict]) -> dict:
    return {
        "trials": len(trials),
        "bad_trials": sum(not t["ok"] for t in trials),
        "multi_winner_trials": sum(len(t["winners"]) > 1 for t in trials),
        "no_winner_trials": sum(len(t["winners"]) == 0 for t in trials),
        "stored_mismatch_trials": sum(
            len(t["winners"]) == 1 and t["stored_owner"] != t["winners"][0] for t in trials
        ),
        "error_exits": sum(
            c for t in trials for rc, c in t["rc_counts"].items() if rc not in ("0", "1")
        ),
        "losers": sum(t["losers"] for t in trials),
        "odd_losers": sum(t["odd_losers"] for t in trials),
        "winner_s": _procs.summary([t["winner_s"] for t in trials if t["winner_s"] is not None]),
        "all_finished_s": _procs.summary([t["all_finished_s"] for t in trials]),
    }


def bench_stampede(tb: Tracebox, tc: Tracecraft, ns, tb_trials: int, tc_trials: dict) -> dict:
    out: dict = {"tracebox": {}, "tracecraft": {}, "trial_counts": {}}
    for n in ns:
        k = tc_trials.get(n, tb_trials)
        log(f"stampede N={n}: tracebox {tb_trials} trials, tracecraft {k} trials")
        t0 = time.monotonic()
        res: dict[str, list[dict]] = {"tracebox": [], "tracecraft": []}
        for t in range(max(tb_trials, k)):  # interleaved, so both see the same conditions
            if t < tb_trials:
                res["tracebox"].append(_one_race(tb, n, f"race-n{n}-t{t}"))
            if t < k:
                res["tracecraft"].append(_one_race(tc, n, f"race-n{n}-t{t}"))
        for name, trials in res.items():
            s = _race_summary(trials)
            s["raw"] = trials
            out[name][str(n)] = s
            log(
                f"  {name}: bad {s['bad_trials']}/{s['trials']}, winner p50 "
                f"{s['winner_s']['p50'] or 0:.3f} s, all finished p50 "
                f"{s['all_finished_s']['p50']:.3f} s"
            )
        out["trial_counts"][str(n)] = {"tracebox": tb_trials, "tracecraft": k}
        log(f"  N={n} took {time.monotonic() - t0:.1f} s")
    return out


# --------------------------------------------------------------------------- burst


def _burst_cli(tool, senders: int, sends: int, to: str) -> dict:
    failures: list[str] = []
    lock = threading.Lock()

    def sender(i: int) -> None:
        env = tool.env(f"s{i:02d}")
        for j in range(sends):
            r = _procs.timed(
                tool.cmd("send", to, f"burst s{i:02d} {j}"), env=env, cwd=tool.workdir, timeout=120
            )
            if r.rc != 0:
                with lock:
                    failures.append(f"rc={r.rc}: {r.stderr.strip()[-300:]}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "failed_sends": len(failures), "failure_sample": failures[:3]}


def _burst_api(tool: Tracebox, senders: int, sends: int, to: str) -> dict:
    script = str(HERE / "_api_sender.py")
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, script, tool.bucket_url, tool.project, f"s{i:02d}", to, str(sends)],
            env=tool.env(),
            cwd=tool.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(senders)
    ]
    failed, sample = 0, []
    for p in procs:
        so, se = p.communicate(timeout=600)
        try:
            failed += int(so.strip().splitlines()[-1])
        except (ValueError, IndexError):
            failed += sends
            sample.append(f"rc={p.returncode}: {se.strip()[-300:]}")
        if se.strip() and len(sample) < 3:
            sample.append(se.strip()[-300:])
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "failed_sends": failed, "failure_sample": sample[:3]}


def _inbox_count(tool, to: str) -> tuple[int | None, float]:
    if isinstance(tool, Tracebox):
        r = _procs.timed(
            tool.cmd("inbox", "--count", "--json"), env=tool.env(to), cwd=tool.workdir, timeout=300
        )
        try:
            return json.loads(r.stdout)["count"], r.seconds
        except (ValueError, KeyError):
            return None, r.seconds
    r = _procs.timed(tool.cmd("inbox"), env=tool.env(to), cwd=tool.workdir, timeout=300)
    if r.rc != 0:
        return None, r.seconds
    return sum(1 for line in r.stdout.splitlines() if line.startswith("[")), r.seconds


def bench_burst(rows: list[tuple[str, object, str]], senders: int, sends: int) -> dict:
    out = []
    for label, tool, mode in rows:
        log(f"burst {senders}x{sends}: {label}")
        r = (
            _burst_cli(tool, senders, sends, "bob")
            if mode == "cli"
            else _burst_api(tool, senders, sends, "bob")
        )
        delivered = tool.mailbox_count("bob")
        via_inbox, inbox_s = _inbox_count(tool, "bob")
        total = senders * sends
        row = {
            "label": label,
            "tool": tool.name,
            "mode": mode,
            "senders": senders,
            "sends_each": sends,
            "expected": total,
            "delivered_listing": delivered,
            "delivered_inbox": via_inbox,
            "inbox_read_s": inbox_s,
            "sends_per_s": total / r["wall_s"],
            **r,
        }
        log(
            f"  {row['wall_s']:.1f} s, {row['sends_per_s']:.1f} sends/s, delivered "
            f"{delivered}/{total} (inbox says {via_inbox}), failed {r['failed_sends']}"
        )
        out.append(row)
    return {"senders": senders, "sends_each": sends, "rows": out}


# --------------------------------------------------------------------------- inbox


def _seed_tracebox(tb: Tracebox, n: int, to: str, workers: int = 32, size: int = 0) -> float:
    t0 = time.perf_counter()
    projects = [tb.open_api(f"seed{i}") for i in range(8)]

    def body(i: int) -> str:
        text = f"message {i} "
        return text + "x" * max(0, size - len(text))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: projects[i % 8].send(to, body(i)), range(n)))
    return time.perf_counter() - t0


def _seed_tracecraft(tc: Tracecraft, n: int, to: str, workers: int = 32) -> float:
    """Direct puts in tracecraft 0.2.5's own format (key scheme and body, as its send)."""
    import obstore

    store = tc.server.store()
    prefix = f"{tc.project}/messages/{to}/"

    def put(i: int) -> None:
        sender = f"seed{i % 8}"
        doc = {
            "from": sender,
            "to": to,
            "message": f"message {i}",
            "sent_at": datetime.now(UTC).isoformat(),
        }
        key = f"{prefix}{time.time_ns()}_{sender}_{uuid.uuid4().hex[:8]}.json"
        obstore.put(store, key, json.dumps(doc, indent=2).encode())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, range(n)))
    return time.perf_counter() - t0


def bench_inbox(
    tb: Tracebox, tc: Tracecraft, n: int, n_long: int, tc_timeout: float, reps: int = 3
) -> dict:
    to, to_long = "bob", "carol"
    log(f"inbox: seeding {n} messages for each tool, and {n_long} x 1 KiB for tracebox")
    seed_tb = _seed_tracebox(tb, n, to)
    seed_tc = _seed_tracecraft(tc, n, to)
    seed_long = _seed_tracebox(tb, n_long, to_long, size=1024)
    out: dict = {
        "messages": n,
        "long_messages": n_long,
        "seed_s": {"tracebox": seed_tb, "tracecraft": seed_tc, "tracebox_1k": seed_long},
        "listed": {"tracebox": tb.mailbox_count(to), "tracecraft": tc.mailbox_count(to)},
        "rows": [],
    }
    log(f"  seeded in {seed_tb:.1f} s (tracebox API) / {seed_tc:.1f} s (tracecraft format)")

    def tb_json(r):
        try:
            return len(json.loads(r.stdout))
        except ValueError:
            return None

    def tb_count(r):
        try:
            return json.loads(r.stdout)["count"]
        except (ValueError, KeyError):
            return None

    def tc_lines(r):
        return sum(1 for line in r.stdout.splitlines() if line.startswith("["))

    cases = [
        ("tracebox", "inbox --json (full read, bodies)", tb, ["inbox", "--json"], tb_json, reps),
        (
            "tracebox",
            "inbox --count --json (listing only)",
            tb,
            ["inbox", "--count", "--json"],
            tb_count,
            reps,
        ),
        ("tracecraft", "inbox (full read, bodies)", tc, ["inbox"], tc_lines, 1),
    ]
    long_case = ("tracebox", f"inbox --json, {n_long:,} x 1 KiB bodies (a GET each)", tb)
    cases.append((*long_case, ["inbox", "--json"], tb_json, reps))
    for name, what, tool, args, parse, k in cases:
        to = to_long if "1 KiB" in what else "bob"
        times, got, timeouts, rcs = [], [], 0, []
        timeout = tc_timeout if name == "tracecraft" else 300.0
        for _ in range(k):
            r = _procs.timed(tool.cmd(*args), env=tool.env(to), cwd=tool.workdir, timeout=timeout)
            times.append(r.seconds)
            rcs.append(r.rc)
            if r.timed_out:
                timeouts += 1
                got.append(None)
            else:
                got.append(parse(r))
        row = {
            "tool": name,
            "command": what,
            "runs": k,
            "timeout_s": timeout,
            "timed_out": timeouts,
            "rcs": rcs,
            "returned": got,
            "stats": _procs.summary(times),
            "raw_s": [round(x, 4) for x in times],
        }
        log(f"  {name} {what}: p50 {row['stats']['p50']:.2f} s, returned {got}")
        out["rows"].append(row)
    return out


# --------------------------------------------------------------------------- main


def _estimate(latency: dict | None, cfg: dict, ncpu: int) -> dict:
    """Rough seconds for stampede + burst from the measured per-process latencies."""

    def p50(cmd, tool, default):
        for r in (latency or {}).get("rows", []):
            if r["command"] == cmd and r["tool"] == tool and r["stats"]["p50"]:
                return r["stats"]["p50"]
        return default

    tb_claim, tc_claim = (
        p50("claim <new step>", "tracebox (s3)", 0.2),
        p50("claim <new step>", "tracecraft (s3)", 0.45),
    )
    tb_send, tc_send = (
        p50("send bob hi", "tracebox (s3)", 0.2),
        p50("send bob hi", "tracecraft (s3)", 0.45),
    )
    st = 0.0
    for n in cfg["ns"]:
        st += cfg["tb_trials"] * (max(tb_claim, n * tb_claim / ncpu) + 0.1)
        st += cfg["tc_trials"].get(n, cfg["tb_trials"]) * (max(tc_claim, n * tc_claim / ncpu) + 0.1)
    s, m = cfg["burst"]
    burst = s * m * (tb_send + tc_send) / ncpu + s * m * 0.05
    # x1.3: racer start-up, the server's own CPU and the API row (calibrated on 2 cores)
    st, burst = st * 1.3, burst * 1.3
    return {"stampede_s": round(st), "burst_s": round(burst), "rest_s": 75}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials/runs, N up to 16")
    ap.add_argument("--only", help=f"comma-separated sections to run ({','.join(SECTIONS)})")
    ap.add_argument("--trials", type=int, help="tracebox stampede trials per N")
    ap.add_argument("--tc-trials", type=int, help="tracecraft stampede trials per N (all N)")
    ap.add_argument("--ns", help="stampede N values, e.g. 2,4,8")
    ap.add_argument("--runs", type=int, help="runs per command in the latency benchmark")
    ap.add_argument("--burst", help="burst size SENDERSxSENDS, e.g. 8x20")
    ap.add_argument("--inbox-n", type=int, help="messages in the inbox benchmark")
    ap.add_argument("--name", help="results file name (default: <mode>-<UTC time>)")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temp dir (server data)")
    ap.add_argument("--render", metavar="JSON", help="only re-render latest.md from a results file")
    a = ap.parse_args(argv)
    if a.render:
        md = render(json.loads(Path(a.render).read_text()))
        (RESULTS / "latest.md").write_text(md)
        print(md)
        return 0

    mode = "quick" if a.quick else "full"
    cfg = dict(QUICK if a.quick else FULL)
    cfg["tc_trials"] = dict(cfg["tc_trials"])
    if a.ns:
        cfg["ns"] = [int(x) for x in a.ns.split(",")]
    if a.trials:
        cfg["tb_trials"] = a.trials
    if a.tc_trials:
        cfg["tc_trials"] = {n: a.tc_trials for n in cfg["ns"]}
    if a.runs:
        cfg["runs"] = a.runs
    if a.burst:
        s_, m_ = a.burst.lower().split("x")
        cfg["burst"] = (int(s_), int(m_))
    if a.inbox_n:
        cfg["inbox_n"] = a.inbox_n
    sections = [s.strip() for s in a.only.split(",")] if a.only else list(SECTIONS)
    for s in sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    if a.only:
        mode += "-partial"
    name = a.name or f"{mode}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"

    tmp = Path(tempfile.mkdtemp(prefix="tracebox-bench-"))
    run_id = uuid.uuid4().hex[:8]
    t_start = time.monotonic()
    log(f"mode {mode}; temp dir {tmp}; starting SeaweedFS")
    server = _seaweed.start(tmp / "server")
    log(f"SeaweedFS {server.endpoint} ready in {server.startup_s:.2f} s (pid {server.proc.pid})")
    results: dict = {
        "name": name,
        "mode": mode,
        "config": {**cfg, "burst": list(cfg["burst"]), "sections": sections},
        "argv": sys.argv[1:] if argv is None else argv,
        "durations_s": {},
        "loadavg_after": {},
    }
    try:
        results["machine"] = machine_info(server)
        ncpu = results["machine"]["nproc"]

        def pair(section: str) -> tuple[Tracebox, Tracecraft]:
            d = tmp / section
            tb = Tracebox(d / "tb", d / "home-tb", f"{section}-{run_id}", server=server)
            tc = Tracecraft(d / "tc", d / "home-tc", f"{section}-{run_id}", server=server)
            tb.setup()
            tc.setup()
            return tb, tc

        if "latency" in sections:
            t0 = time.monotonic()
            log(f"latency: {cfg['runs']} runs per command (+2 warm-up)")
            tb, tc = pair("latency")
            tbl = Tracebox(
                tmp / "latency" / "tbl",
                tmp / "latency" / "home-tbl",
                f"latency-{run_id}",
                local_bucket=tmp / "local-bucket",
            )
            tbl.setup()
            results["latency"] = bench_latency(tb, tbl, tc, cfg["runs"], tmp / "latency" / "floor")
            results["durations_s"]["latency"] = round(time.monotonic() - t0, 1)
            results["loadavg_after"]["latency"] = [round(x, 2) for x in os.getloadavg()]
        est = _estimate(results.get("latency"), cfg, ncpu)
        results["estimate_s"] = est
        log(
            f"estimate: stampede ~{est['stampede_s']} s, burst ~{est['burst_s']} s, "
            f"inbox ~{est['rest_s']} s (from the latencies just measured)"
        )

        if "stampede" in sections:
            t0 = time.monotonic()
            tb, tc = pair("stampede")
            results["stampede"] = bench_stampede(
                tb, tc, cfg["ns"], cfg["tb_trials"], cfg["tc_trials"]
            )
            results["durations_s"]["stampede"] = round(time.monotonic() - t0, 1)
            results["loadavg_after"]["stampede"] = [round(x, 2) for x in os.getloadavg()]

        if "burst" in sections:
            t0 = time.monotonic()
            s, m = cfg["burst"]
            tb, tc = pair("burst")
            tba, _ = pair("burstapi")
            results["burst"] = bench_burst(
                [
                    ("tracebox CLI", tb, "cli"),
                    ("tracebox Python API (1 process per sender)", tba, "api"),
                    ("tracecraft CLI", tc, "cli"),
                ],
                s,
                m,
            )
            results["durations_s"]["burst"] = round(time.monotonic() - t0, 1)
            results["loadavg_after"]["burst"] = [round(x, 2) for x in os.getloadavg()]

        if "inbox" in sections:
            t0 = time.monotonic()
            tb, tc = pair("inbox")
            results["inbox"] = bench_inbox(
                tb, tc, cfg["inbox_n"], cfg["inbox_long_n"], cfg["tc_inbox_timeout"]
            )
            results["durations_s"]["inbox"] = round(time.monotonic() - t0, 1)
            results["loadavg_after"]["inbox"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        server.stop()
        log("SeaweedFS stopped")
        if not a.keep_temp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    for section in [s for s in sections if s in CAPTURE_SECTIONS]:
        import importlib

        t0 = time.monotonic()
        log(f"{section}: benchmarks/bench_{section}.py")
        results[section] = importlib.import_module(f"bench_{section}").run(a.quick)
        results["durations_s"][section] = round(time.monotonic() - t0, 1)
        results["loadavg_after"][section] = [round(x, 2) for x in os.getloadavg()]
    results["durations_s"]["total"] = round(time.monotonic() - t_start, 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    md = render(results)
    # a partial run (--only) must not replace the report of the last complete one
    report = RESULTS / ("partial.md" if a.only else "latest.md")
    report.write_text(md)
    print(md)
    log(f"wrote {path} and {report} (total {results['durations_s']['total']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
