"""`tracebox mcp`: tool-call latency over stdio and streamable HTTP, next to the CLI.

    .venv/bin/python benchmarks/bench_mcp.py            # 300 calls per tool and transport
    .venv/bin/python benchmarks/bench_mcp.py --quick    # 60

A project in a local-folder bucket; the server is started as MCP clients start it
(`python -m tracebox --agent bench mcp`, a new process) and driven by the official
`mcp` SDK client. Measured:

- start: spawn until the client's handshake is done (stdio), `REPEAT_START` times;
- per tool (`steps`, `memory_set`, `memory_get`, `send`): the round trip of one
  call, sequentially, over stdio and over streamable HTTP (loopback), p50/p95;
- in flight: `CONCURRENT` `memory_set` calls at once (different keys), calls/s;
- the same operations as one CLI process each (`tracebox memory get --json`, …), the
  way an agent without MCP calls tracebox: p50 of `CLI_RUNS`.

Writes benchmarks/results/mcp.json. No peer tool is measured: none named for MCP.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPEAT_START = 5
CONCURRENT = 16
CLI_RUNS = 9
OPS = {
    "steps": ({}, ["steps"]),
    "memory_set": (
        {"key": "bench.value", "value": {"n": 1}},
        ["memory", "set", "bench.value", "1"],
    ),
    "memory_get": ({"key": "bench.value"}, ["memory", "get", "bench.value"]),
    "send": ({"to": "peer", "message": "hello"}, ["send", "peer", "hello"]),
}


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEBOX_", "AWS_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "cfg"), XDG_DATA_HOME=str(home / "d"))
    env.update(XDG_STATE_HOME=str(home / "st"), PYTHONUNBUFFERED="1")
    return env


async def _calls(client, n: int) -> dict:
    out = {}
    for name, (args, _) in OPS.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = await client.call_tool(name, args)
            times.append(time.perf_counter() - t0)
            assert not r.is_error, r.content[0].text
        out[name] = {"p50": statistics.median(times), "p95": _pct(times, 0.95), "n": n}
    return out


async def _in_flight(client, total: int) -> float:
    async def one(i: int) -> None:
        r = await client.call_tool("memory_set", {"key": f"bench.k{i % 64}", "value": i})
        assert not r.is_error, r.content[0].text

    t0 = time.perf_counter()
    for start in range(0, total, CONCURRENT):
        async with anyio.create_task_group() as tg:
            for i in range(start, min(total, start + CONCURRENT)):
                tg.start_soon(one, i)
    return total / (time.perf_counter() - t0)


async def _stdio(work: Path, env: dict, n: int) -> dict:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tracebox", "--agent", "bench", "mcp"],
        cwd=str(work),
        env=env,
    )
    starts = []
    for _ in range(REPEAT_START):
        t0 = time.perf_counter()
        async with Client(params) as c:
            starts.append(time.perf_counter() - t0)
    async with Client(params) as c:
        calls = await _calls(c, n)
        rate = await _in_flight(c, n * 2)
    return {"start_p50": statistics.median(starts), "calls": calls, "in_flight_per_s": rate}


async def _http(url: str, n: int) -> dict:
    from mcp import Client

    async with Client(url) as c:
        calls = await _calls(c, n)
        rate = await _in_flight(c, n * 2)
    return {"calls": calls, "in_flight_per_s": rate}


@contextlib.contextmanager
def _http_server(work: Path, env: dict):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracebox", "--agent", "bench", "mcp", "--http", "--port", "0"],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        m = re.search(r"(http://\S+/mcp)", line)
        if not m:
            raise RuntimeError(f"tracebox mcp --http did not start: {line}{proc.stderr.read()}")
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


def _cli(work: Path, env: dict) -> dict:
    out = {}
    for name, (_, argv) in OPS.items():
        times = []
        for _ in range(CLI_RUNS):
            t0 = time.perf_counter()
            p = subprocess.run(
                [sys.executable, "-m", "tracebox", "--agent", "bench", *argv, "--json"],
                cwd=work,
                env=env,
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - t0)
            assert p.returncode == 0, p.stderr.decode()
        out[name] = statistics.median(times)
    return out


def run(quick: bool = False) -> dict:
    n = 60 if quick else 300
    tmp = Path(tempfile.mkdtemp(prefix="tracebox-bench-mcp-"))
    try:
        work = tmp / "work"
        work.mkdir()
        env = _env(tmp / "home")
        subprocess.run(
            [sys.executable, "-m", "tracebox", "init", "--bucket", str(tmp / "bucket")]
            + ["--project", "bench", "--agent", "bench"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
        stdio = anyio.run(_stdio, work, env, n)
        with _http_server(work, env) as url:
            http = anyio.run(_http, url, n)
        cli = _cli(work, env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "calls_per_tool": n,
        "stdio": stdio,
        "http": http,
        "cli_p50": cli,
        "machine": {
            "python": platform.python_version(),
            "nproc": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
    }


def report(results: dict) -> str:
    s, h, c, m = results["stdio"], results["http"], results["cli_p50"], results["machine"]

    def ms(x: float) -> str:
        return f"{x * 1000:.1f} ms"

    out = [
        f"### `tracebox mcp` ({results['calls_per_tool']} calls per tool and transport, "
        "local-folder bucket)",
        "",
        "| tool | stdio p50 / p95 | HTTP p50 / p95 | CLI process p50 | CLI ÷ stdio |",
        "|---|---|---|---|---|",
    ]
    for name in OPS:
        a, b = s["calls"][name], h["calls"][name]
        out.append(
            f"| `{name}` | {ms(a['p50'])} / {ms(a['p95'])} | {ms(b['p50'])} / {ms(b['p95'])} "
            f"| {ms(c[name])} | {c[name] / a['p50']:.0f}× |"
        )
    out += [
        "",
        f"Server start (spawn to handshake done, stdio, p50 of {REPEAT_START}): "
        f"{ms(s['start_p50'])}. {CONCURRENT} `memory_set` calls in flight: "
        f"{s['in_flight_per_s']:,.0f} calls/s over stdio, {h['in_flight_per_s']:,.0f} over HTTP. "
        f"Python {m['python']}, {m['nproc']} CPUs, load {m['loadavg'][0]:.1f}, {results['at']}. "
        "No peer tool is measured: none named for MCP.",
    ]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    results = run(quick="--quick" in argv)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mcp.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


if __name__ == "__main__":
    main(sys.argv[1:])
