"""Kafka sink: events/s sustained into Kafka from a simulated fleet of 100 agents, and
the rate ``consume_events`` reads them back.

    .venv/bin/python benchmarks/bench_kafka.py            # 10 s per fleet scenario
    .venv/bin/python benchmarks/bench_kafka.py --quick    # 3 s per fleet scenario

A private noida-db broker (``tests/kafka.py``; ``TRACEBOX_TEST_KAFKA=host:port`` for a
real Kafka) on a free 127.0.0.1 port. Each agent is a thread that loops through one
realistic turn after another — the proxy's ``call.start``, ``call.first_token``,
``call.tool_call``, ``call.end``, the mirror's ``tool.call`` and ``tool.result`` (a
tool output of 200 B-4 KB, sometimes with a secret in it), and now and then a
coordination event (claim, complete, message) — built with the real envelope builders
and sent through ``tracebox.stream.kafka.Producer`` (idempotent, acks=all, scrubbed),
as fast as the producer takes them; the producer's own queue is the backpressure.

Scenarios: one process with 100 agent threads (one producer: the proxy / bridge shape),
the same without the scrubber, 4 processes × 25 agents (4 producers), and the fleet
paced at 20 envelopes/s per agent (2,000/s: the acknowledgement latency when the
producer is not saturated; at full speed it is time spent in its queue). Reported:
events sent and acknowledged per second over the run (acknowledged = delivery report
received), failures, acknowledgement latency p50/p99 (send → delivery report), and how
long the final flush took; **sustained** = every envelope acknowledged ÷ the time from
the start until the last acknowledgement. Then the in-line path commands use (one event, waited for:
``Inline.send``) as a latency, and ``consume_events`` reading every envelope back from
the start. Writes benchmarks/results/kafka.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "tests"))
AGENTS = 100
PACED = 20.0  # envelopes/s per agent in the paced scenario (2,000/s for the fleet)
SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2  # a token the scrubber must take out

import kafka as broker_launcher  # noqa: E402  (tests/kafka.py)


def _turns(agent: int, project: str):
    """Endless realistic envelopes of one agent: proxy calls, tool calls/results, coord."""
    from tracebox.stream import kafka as tk

    rng = random.Random(agent)
    name, session = f"agent-{agent:03d}", f"sess-{agent:03d}-{rng.getrandbits(32):08x}"
    words = "the build failed because the test suite could not import the module".split()
    n = 0
    while True:
        n += 1
        call = f"{agent:03d}-{n:08d}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        head = {"time": stamp, "session": session, "agent": name, "id": call}
        feed = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
        yield tk.from_feed(project, {**head, **feed, "type": "call.start", "method": "POST"})
        yield tk.from_feed(
            project,
            {**head, **feed, "type": "call.first_token", "first_token_ms": rng.uniform(200, 900)},
        )
        tool = f"toolu_{call}"
        yield tk.from_feed(
            project,
            {**head, **feed, "type": "call.tool_call", "tool": "Bash", "tool_call_id": tool},
        )
        usage = {"input": rng.randint(500, 80_000), "output": rng.randint(20, 2000)}
        yield tk.from_feed(
            project,
            {
                **head,
                **feed,
                "type": "call.end",
                "status": 200,
                "usage": usage,
                "total_ms": rng.uniform(500, 9000),
            },
        )
        common = {"time": stamp, "project": project, "session": session, "agent": name}
        yield tk.envelope(
            "mirror",
            "tool.call",
            id=f"mirror:{call}.0",
            **common,
            data={
                "harness": "claude-code",
                "tool": "Bash",
                "tool_call_id": tool,
                "arguments": {"command": "make test"},
            },
        )
        output = " ".join(rng.choice(words) for _ in range(rng.randint(30, 700)))
        if rng.random() < 0.05:
            output += f" token={SECRET}"
        yield tk.envelope(
            "mirror",
            "tool.result",
            id=f"mirror:{call}.1",
            **common,
            data={
                "harness": "claude-code",
                "tool_call_id": tool,
                "output": output,
                "is_error": rng.random() < 0.1,
            },
        )
        if n % 5 == 0:
            kind = rng.choice(["claim.acquire", "step.complete", "message.send"])
            yield tk.envelope(
                "coord",
                kind,
                id=f"coord:{project}:{call}",
                time=stamp,
                project=project,
                agent=name,
                step=f"step-{agent}-{n // 5}",
                data={"epoch": 1, "note": "done"},
            )


def fleet(
    bootstrap: str, prefix: str, agents: int, seconds: float, scrub: bool, rate: float | None = None
) -> dict:
    """``agents`` threads sending through one producer for ``seconds``: as fast as the
    producer takes them, or ``rate`` envelopes/s per agent."""
    from tracebox.stream import kafka as tk

    producer = tk.Producer(bootstrap, prefix, scrubber=tk.make_scrubber({}) if scrub else None)
    producer.send(next(_turns(agents + 1, "warm-up")))  # connected, ProducerId acquired
    assert producer.flush(30) == 0, producer.last_error
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def agent(i: int) -> None:
        start = time.perf_counter()
        for n, env in enumerate(_turns(i, "fleet")):
            if stop.is_set():
                return
            if rate is not None:
                ahead = start + n / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            t = time.perf_counter()

            def done(ok: bool, t=t) -> None:
                if ok:
                    with lock:
                        latencies.append(time.perf_counter() - t)

            producer.send(env, on_done=done)

    def pump() -> None:  # delivery reports are served here, as in the proxy's thread
        while not stop.is_set():
            producer.poll(0.05)

    threads = [threading.Thread(target=agent, args=(i,), daemon=True) for i in range(agents)]
    threads.append(threading.Thread(target=pump, daemon=True))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    sent, acked, run_s = producer.sent, producer.delivered, time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join()
    t1 = time.perf_counter()
    left = producer.flush(120)
    flush_s = time.perf_counter() - t1
    total_s = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "agents": agents,
        "rate_per_agent": rate,
        "seconds": run_s,
        "sent": producer.sent,
        "acked": producer.delivered,
        "failed": producer.failed,
        "unacked_after_flush": left,
        "sent_per_s": sent / run_s,
        "acked_per_s": acked / run_s,
        # every envelope the agents handed over, acknowledged: over the whole time it took
        "sustained_per_s": (producer.delivered - 1) / total_s,
        "ack_p50_ms": _pct(lat, 0.50) * 1000,
        "ack_p99_ms": _pct(lat, 0.99) * 1000,
        "final_flush_s": flush_s,
        "total_s": total_s,
        "redactions": producer.redactions,
        "scrub": scrub,
    }


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    i = q * (len(xs) - 1)
    lo = int(i)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def fleet_processes(bootstrap: str, prefix: str, procs: int, seconds: float) -> dict:
    """``procs`` processes of AGENTS // procs agents each, started together."""
    cmd = [sys.executable, __file__, "--worker", bootstrap, prefix, str(AGENTS // procs)]
    workers = [
        subprocess.Popen([*cmd, str(seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(procs)
    ]
    parts = [json.loads(w.communicate(timeout=seconds + 180)[0]) for w in workers]
    run_s = max(p["seconds"] for p in parts)
    return {
        "agents": AGENTS,
        "processes": procs,
        "seconds": run_s,
        "sent": sum(p["sent"] for p in parts),
        "acked": sum(p["acked"] for p in parts),
        "failed": sum(p["failed"] for p in parts),
        "unacked_after_flush": sum(p["unacked_after_flush"] for p in parts),
        "sent_per_s": sum(p["sent_per_s"] for p in parts),
        "acked_per_s": sum(p["acked_per_s"] for p in parts),
        "sustained_per_s": sum(p["acked"] - 1 for p in parts) / max(p["total_s"] for p in parts),
        "ack_p50_ms": statistics.median(p["ack_p50_ms"] for p in parts),
        "ack_p99_ms": max(p["ack_p99_ms"] for p in parts),
        "final_flush_s": max(p["final_flush_s"] for p in parts),
        "total_s": max(p["total_s"] for p in parts),
        "scrub": True,
    }


def inline(bootstrap: str, prefix: str, n: int) -> dict:
    """What a command does: one event, waited for (non-idempotent, acks=all)."""
    from tracebox.stream import kafka as tk

    pub = tk.Inline(tk.Config(bootstrap=bootstrap, topic_prefix=prefix), {})
    turns = _turns(7, "inline")
    first = time.perf_counter()
    assert pub.send([next(turns)]) is None, pub.broken
    first = time.perf_counter() - first
    times = []
    for _ in range(n):
        t = time.perf_counter()
        assert pub.send([next(turns)]) is None, pub.broken
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "events": n,
        "first_ms": first * 1000,
        "p50_ms": _pct(times, 0.5) * 1000,
        "p99_ms": _pct(times, 0.99) * 1000,
    }


def consume(bootstrap: str, prefix: str, expected: int) -> dict:
    from tracebox.stream import kafka as tk

    t0 = time.perf_counter()
    n = 0
    for _ in tk.consume_events(bootstrap, prefix, from_start=True, timeout=3):
        n += 1
    seconds = time.perf_counter() - t0 - 3  # minus the idle timeout that ends it
    return {"expected": expected, "read": n, "seconds": seconds, "per_s": n / seconds}


def run(quick: bool = False) -> dict:
    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    seconds = 3.0 if quick else 10.0
    with tempfile.TemporaryDirectory(prefix="tracebox-bench-kafka-") as tmp:
        broker = broker_launcher.start(Path(tmp))
        try:
            k, stamp = broker.bootstrap, f"b{os.getpid()}{int(time.time())}"
            out: dict = {"broker": "external" if broker_launcher.EXTERNAL else "noida-db"}
            log(f"broker {k} ({out['broker']}); fleet of {AGENTS} agents, {seconds:.0f} s each")
            from tracebox.stream import kafka as tk

            for name in ("one", "noscrub", "procs", "paced"):
                tk.ensure_topics(k, f"{stamp}{name}")
            out["one_process"] = fleet(k, f"{stamp}one", AGENTS, seconds, scrub=True)
            log(f"one process: {out['one_process']['sustained_per_s']:,.0f} acked/s sustained")
            out["no_scrub"] = fleet(k, f"{stamp}noscrub", AGENTS, seconds, scrub=False)
            log(
                f"without the scrubber: {out['no_scrub']['sustained_per_s']:,.0f} acked/s sustained"
            )
            out["processes"] = fleet_processes(k, f"{stamp}procs", 4, seconds)
            log(f"4 processes: {out['processes']['sustained_per_s']:,.0f} acked/s sustained")
            out["paced"] = fleet(k, f"{stamp}paced", AGENTS, seconds, scrub=True, rate=PACED)
            log(f"paced: ack p50 {out['paced']['ack_p50_ms']:.1f} ms")
            out["inline"] = inline(k, f"{stamp}inline", 200 if quick else 1000)
            log(f"in-line publish p50 {out['inline']['p50_ms']:.2f} ms")
            out["consume"] = consume(k, f"{stamp}one", out["one_process"]["acked"])
            log(f"consume_events: {out['consume']['per_s']:,.0f} envelopes/s")
        finally:
            broker.stop()
    return {
        "benchmark": "kafka",
        "quick": quick,
        "seconds_per_scenario": seconds,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "nproc": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "confluent_kafka": _versions(),
        },
        **out,
    }


def _versions() -> str:
    import confluent_kafka

    return f"confluent-kafka {confluent_kafka.version()} (librdkafka {confluent_kafka.libversion()[0]})"


def report(results: dict) -> str:
    m = results["machine"]
    out = [
        f"### Kafka sink: a fleet of {AGENTS} agents ({results['broker']} broker, "
        f"{results['seconds_per_scenario']:.0f} s per scenario)",
        "",
        "| scenario | sustained (acked/s) | acked | failed | unacked after flush "
        "| ack p50 / p99 | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("1 process × 100 agents, scrubbed", results["one_process"]),
        ("1 process × 100 agents, no scrubber", results["no_scrub"]),
        ("4 processes × 25 agents, scrubbed", results["processes"]),
        (f"paced: 100 agents × {PACED:.0f} events/s, scrubbed", results["paced"]),
    ]
    for label, r in rows:
        out.append(
            f"| {label} | **{r['sustained_per_s']:,.0f}** | {r['acked']:,} | {r['failed']} "
            f"| {r['unacked_after_flush']} | {r['ack_p50_ms']:.1f} / {r['ack_p99_ms']:.1f} ms "
            f"| {r['total_s']:.1f} s |"
        )
    i, c = results["inline"], results["consume"]
    out += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| in-line publish (a command's event, acknowledged before it returns), p50 / p99 "
        f"| {i['p50_ms']:.2f} / {i['p99_ms']:.2f} ms (first, with connecting: "
        f"{i['first_ms']:.0f} ms) |",
        f"| `consume_events` from the start | {c['per_s']:,.0f} envelopes/s "
        f"({c['read']:,} of {c['expected']:,}) |",
        "",
        f"Python {m['python']}, {m['confluent_kafka']}, {m['nproc']} CPUs (broker on the "
        f"same machine), load {m['loadavg'][0]:.1f}, max RSS {m['max_rss_mb']:.0f} MB, "
        f"{results['at']}. Sustained: every envelope the agents handed over, acknowledged, "
        "divided by the time from the start until the last acknowledgement (stopping the "
        "agents and the final flush included). Unpaced agents send as fast as the "
        "producer takes them (its queue of 100,000 is the backpressure), so their ack "
        "latency is mostly time in that queue; the paced row shows it unsaturated. "
        "No peer tool is measured: none named for the Kafka sink.",
    ]
    return "\n".join(out)


def _worker(argv: list[str]) -> None:
    bootstrap, prefix, agents, seconds = argv[0], argv[1], int(argv[2]), float(argv[3])
    print(json.dumps(fleet(bootstrap, prefix, agents, seconds, scrub=True)))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    results = run(quick="--quick" in argv)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kafka.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


if __name__ == "__main__":
    main(sys.argv[1:])
