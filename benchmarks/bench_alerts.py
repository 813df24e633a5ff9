"""Live alerts: end-to-end latency from an event to its rule firing, p50/p99, per source.

    .venv/bin/python benchmarks/bench_alerts.py            # 200 stuck loops per source
    .venv/bin/python benchmarks/bench_alerts.py --quick    # 30

The scenario is a stuck loop: an agent (plain HTTP, OpenAI chat format) re-runs the same
failing command and reports it, turn after turn, through a real ``tracebox proxy``
(subprocess) in front of the fake upstream (tests/fake_upstream.py, subprocess); the
rule is the harness preset ``same_failing_command = 3``. Each loop is a new session, so
the rule fires once per loop, on the third turn. A ``tracebox alerts run --json``
subprocess watches, and this process reads its stdout:

* **event → fire**: from just before the third turn's request is sent (its
  ``call.start`` is published as soon as the proxy has read the request) to the firing's
  line arriving on the runner's stdout;
* **loop start → fire**: from the first turn's request (what "within a second of a stuck
  loop starting" means).

Sources: ``--proxy`` (the live feed over SSE), and ``--kafka`` — the same feed published
by ``tracebox stream kafka --proxy`` to a Kafka-protocol broker (noida-db, tests/kafka.py)
and consumed by the runner. Also the engine on its own: events per second through
``Engine.process`` with the four harness presets and a windowed count, in-process.
Writes benchmarks/results/alerts.json.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from _procs import percentile, spawn, stop  # noqa: E402
from _tools import base_env  # noqa: E402

TARGET_S = 1.0  # the "within a second of a stuck loop starting"
RULES = "[rules]\nsame_failing_command = 3\n"


def _turn(url: str, session: str, turn: int) -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "run", "arguments": json.dumps({"command": "pytest -q"})},
    }
    body = {
        "model": "gpt-x",
        "messages": [
            {"role": "user", "content": f"make the tests pass ({session})"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": f"Exit code 1\nFAILED ({turn})"},
        ],
    }
    headers = {"content-type": "application/json", "x-tracebox-session": session}
    req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(), headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def _subscribers(url: str) -> int:
    with urllib.request.urlopen(url + "/_tracebox/status", timeout=5) as r:
        return json.loads(r.read())["feed"]["subscribers"]


def _wait(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Runner:
    """A ``tracebox alerts run`` subprocess; its firings (session, arrival time) queued."""

    def __init__(self, args: list[str], env: dict, cwd: Path):
        self.proc = spawn(
            [sys.executable, "-m", "tracebox", "alerts", "run", *args, "--json"],
            env,
            cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.fired: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            t = time.perf_counter()
            self.fired.put((json.loads(line)["session"], t))

    def wait_for(self, session: str, timeout: float = 30.0) -> float:
        while True:
            got, t = self.fired.get(timeout=timeout)
            if got == session:
                return t


def loops(url: str, runner: Runner, n: int, tag: str) -> dict:
    """n stuck loops (after one warm-up); latencies in seconds."""
    event, start = [], []
    for i in range(n + 1):
        session = f"{tag}-{i}"
        t_start = time.perf_counter()
        _turn(url, session, 1)
        _turn(url, session, 2)
        t_event = time.perf_counter()
        _turn(url, session, 3)
        t_fire = runner.wait_for(session)
        if i:  # the first loop warms up connections, imports and the consumer
            event.append(t_fire - t_event)
            start.append(t_fire - t_start)
    return {
        "n": n,
        "event_p50": percentile(event, 50),
        "event_p99": percentile(event, 99),
        "event_max": max(event),
        "start_p50": percentile(start, 50),
        "start_p99": percentile(start, 99),
    }


def engine_throughput(n: int) -> dict:
    from tracebox.stream import alerts

    rules = alerts.parse(
        {
            "rules": {
                "same_failing_command": 3,
                "token_rate": 200000,
                "repeated_responses": 3,
                "no_progress": "90s",
            },
            "alert": [
                {
                    "name": "errors",
                    "where": {"type": "call.error", "status": {"ge": 500}},
                    "window": "1m",
                    "having": "count(*) >= 5",
                }
            ],
        }
    )
    evs = []
    for i in range(1000):
        s = f"s{i % 50}"
        evs.append({"type": "call.start", "session": s, "tool_results": [{"command": f"cmd {i % 7}", "failed": i % 3 == 0}]})  # fmt: skip
        evs.append({"type": "call.end", "session": s, "usage": {"input": 900, "output": 40}, "response_digest": f"d{i % 4}"})  # fmt: skip
    e = alerts.Engine(rules, 0.0)
    fired = 0
    t0 = time.perf_counter()
    for k in range(n):
        fired += len(e.process(evs[k % len(evs)], k * 0.01))
        if k % 20 == 0:
            fired += len(e.tick(k * 0.01))
    dt = time.perf_counter() - t0
    return {"events": n, "rules": len(rules), "seconds": dt, "events_per_s": n / dt, "fired": fired}


def run(quick: bool = False) -> dict:
    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    n = 30 if quick else 200
    tmp = Path(tempfile.mkdtemp(prefix="tracebox-bench-alerts-"))
    env = {**base_env(tmp / "home"), "PYTHONUNBUFFERED": "1"}
    rules = tmp / "rules.toml"
    rules.write_text(RULES)
    procs: list[subprocess.Popen] = []
    out: dict = {}
    try:
        fake = spawn([sys.executable, str(ROOT / "tests" / "fake_upstream.py"), "--port", "0"], env, tmp, stdout=subprocess.PIPE)  # fmt: skip
        procs.append(fake)
        upstream = fake.stdout.readline().strip()
        proxy = spawn([sys.executable, "-m", "tracebox", "proxy", "--port", "0", "--upstream", f"openai={upstream}"], env, tmp, stderr=subprocess.PIPE)  # fmt: skip
        procs.append(proxy)
        url = proxy.stderr.readline().split(" on ", 1)[1].split()[0]

        log(f"feed source: {n} stuck loops through {url}")
        feed = Runner([str(rules), "--proxy", url], env, tmp)
        procs.append(feed.proc)
        _wait(lambda: _subscribers(url) >= 1, "the runner to subscribe")
        out["feed"] = loops(url, feed, n, "feed")
        stop(feed.proc)
        _wait(lambda: _subscribers(url) == 0, "the runner to unsubscribe")

        try:
            import kafka as broker_mod

            broker = broker_mod.start(tmp / "kafka")
        except (ImportError, RuntimeError, TimeoutError) as e:
            log(f"kafka source skipped: {e}")
            out["kafka"] = {"skipped": str(e)}
        else:
            try:
                bucket = str(tmp / "bucket")
                subprocess.run([sys.executable, "-m", "tracebox", "init", "--bucket", bucket, "--project", "b", "--agent", "bench"], env=env, cwd=tmp, check=True, capture_output=True)  # fmt: skip
                kenv = {**env, "TRACEBOX_BUCKET": bucket, "TRACEBOX_PROJECT": "b"}
                k = ["--bootstrap", broker.bootstrap, "--topic-prefix", "bench"]
                bridge = spawn([sys.executable, "-m", "tracebox", "stream", "kafka", *k, "--proxy", url], kenv, tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                procs.append(bridge)
                _wait(lambda: _subscribers(url) >= 1, "the Kafka bridge to subscribe")
                log(f"kafka source: {n} stuck loops, proxy → stream kafka → {broker.bootstrap}")
                consumer = Runner([str(rules), "--kafka", broker.bootstrap, "--topic-prefix", "bench", "--from-start"], env, tmp)  # fmt: skip
                procs.append(consumer.proc)
                out["kafka"] = loops(url, consumer, n, "kafka")
            finally:
                for p in reversed(procs[2:]):
                    stop(p)
                broker.stop()
        log("engine throughput, in-process")
        out["engine"] = engine_throughput(20_000 if quick else 200_000)
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "alerts",
        "quick": quick,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "nproc": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        **out,
    }


def report(results: dict) -> str:
    def ms(x) -> str:
        return "—" if x is None else f"{x * 1000:.1f} ms"

    rows = []
    for name, label in (("feed", "proxy live feed (SSE)"), ("kafka", "Kafka (stream kafka → consumer)")):  # fmt: skip
        r = results.get(name) or {}
        if "skipped" in r or not r:
            rows.append(f"| {label} | — | — | — | — | skipped: {r.get('skipped', 'not run')} |")
            continue
        ok = "✅" if r["start_p99"] <= TARGET_S else "❌"
        rows.append(
            f"| {label} | {r['n']} | {ms(r['event_p50'])} | {ms(r['event_p99'])} "
            f"| {ms(r['start_p50'])} / {ms(r['start_p99'])} | {ok} (≤ {TARGET_S:.0f} s) |"
        )
    e, m = results["engine"], results["machine"]
    return "\n".join(
        [
            "### Live alerts: event → rule fires (stuck loop, `same_failing_command = 3`)",
            "",
            "| source | loops | event → fire p50 | p99 | loop start → fire p50 / p99 | target |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Engine alone: {e['events_per_s']:,.0f} events/s through {e['rules']} rules "
            f"({e['events']:,} events, {e['fired']:,} firings, in-process).",
            "",
            f"Python {m['python']}, {m['nproc']} CPUs, load {m['loadavg'][0]:.1f}, {results['at']}. "
            "Real `tracebox proxy`, `tracebox alerts run` and `tracebox stream kafka` "
            "subprocesses; the fake upstream and noida-db on loopback. No peer tool measured.",
        ]
    )


def main(argv: list[str]) -> None:
    results = run(quick="--quick" in argv)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "alerts.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


if __name__ == "__main__":
    main(sys.argv[1:])
