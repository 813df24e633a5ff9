"""`tracebox ui` on large runs: page times in real headless Chromium.

    .venv/bin/python benchmarks/bench_ui.py            # 10,000 and 50,000 events
    .venv/bin/python benchmarks/bench_ui.py --quick    # 10,000 events

A local-folder bucket gets N events from 40 agents (claims, renewals, handoffs — some
blocked —, messages, memory writes, artifacts, custom events), spread over two hours,
plus one Claude Code session of 5,000 steps (user prompt, tool call, tool result, answer)
mirrored into it. The UI is started as users start it (`tracebox ui`, a new process) and
driven by Chromium (Debian's, through Playwright). Measured, each `REPEAT` times:

- `/runs`: the server's response time and size, and the time from navigation until the
  timeline is drawn (every lane's label present) in the browser;
- a zoom step on the drawn timeline (the "+" button until the next frame is painted);
- live: one event appended by a `tracebox event` process until it is in the page's
  timeline without reloading (the page polls every second);
- the 5,000-step session: the first page and a deep link (`?step=4321`), server time and
  time until the focused step is shown.

Writes benchmarks/results/ui.json. No peer tool is measured: none named for the UI.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CHROMIUM = "/usr/bin/chromium"
AGENTS = 40
SESSION_STEPS = 5000
REPEAT = 5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fill(bucket: str, n: int) -> None:
    """N events written with the real event-log code, as N agents' actions would be."""
    from tracebox.coord import events
    from tracebox.project import init_project, open_project

    init_project(bucket, "big", "a00")
    ctx = open_project(bucket, "big", "a00").ctx
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    kinds = (
        ("claim.acquire", lambda i: {"epoch": 1, "ttl_s": 600}),
        ("claim.renew", lambda i: {"epoch": 1}),
        (
            "step.complete",
            lambda i: {
                "status": "blocked" if i % 50 == 0 else "complete",
                "to": f"a{(i + 1) % AGENTS:02d}",
                "note": f"done {i}",
            },
        ),
        ("message.send", lambda i: {"to": f"a{(i + 3) % AGENTS:02d}", "preview": f"hi {i}"}),
        ("memory.set", lambda i: {"key": f"k{i % 97}", "version": i}),
        ("artifact.upload", lambda i: {"name": f"out{i}.tar", "size": 1000 + i}),
        ("test.ran", lambda i: {"passed": i % 7 != 0}),
    )

    def one(i: int) -> None:
        etype, data = kinds[i % len(kinds)]
        events.append(
            ctx,
            etype,
            step=f"s{i // 7 % 900}" if etype.startswith(("claim", "step")) else None,
            data=data(i),
            at=t0 + timedelta(seconds=i * 7200 / n),
            agent=f"a{i % AGENTS:02d}",
        )

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(n)))


def big_session(home: Path, cwd: str) -> str:
    sid = "5f5f5f5f-0000-4000-8000-00000000b1b1"
    folder = home / ".claude" / "projects" / re.sub("[^A-Za-z0-9]", "-", cwd)
    folder.mkdir(parents=True)
    lines = []
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    for i in range(SESSION_STEPS // 4):

        def ts(k: int, i: int = i) -> str:
            return (t0 + timedelta(seconds=4 * i + k)).isoformat().replace("+00:00", "Z")

        base = {"sessionId": sid, "cwd": cwd}
        lines += [
            {
                **base,
                "type": "user",
                "uuid": f"u{i}",
                "timestamp": ts(0),
                "message": {"role": "user", "content": f"step {i}: run the tests"},
            },
            {
                **base,
                "type": "assistant",
                "uuid": f"a{i}",
                "timestamp": ts(1),
                "message": {
                    "role": "assistant",
                    "id": f"m{i}",
                    "model": "claude-sonnet-4-5",
                    "usage": {"input_tokens": 30, "output_tokens": 20},
                    "content": [
                        {
                            "type": "tool_use",
                            "id": f"t{i}",
                            "name": "Bash",
                            "input": {"command": f"pytest -q tests/test_{i}.py"},
                        }
                    ],
                },
            },
            {
                **base,
                "type": "user",
                "uuid": f"r{i}",
                "timestamp": ts(2),
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": f"t{i}",
                            "is_error": i % 9 == 0,
                            "content": "F\nAssertionError: 1 != 2\n"
                            if i % 9 == 0
                            else "1 passed\n",
                        }
                    ],
                },
            },
            {
                **base,
                "type": "assistant",
                "uuid": f"b{i}",
                "timestamp": ts(3),
                "message": {
                    "role": "assistant",
                    "id": f"n{i}",
                    "model": "claude-sonnet-4-5",
                    "usage": {"input_tokens": 40, "output_tokens": 10},
                    "content": [{"type": "text", "text": f"Test {i} checked."}],
                },
            },
        ]
    (folder / f"{sid}.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return sid


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _fetch(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        size = len(r.read())
    return time.perf_counter() - t, size


def measure(url: str, bucket: str, env: dict, sid: str, n_agents: int) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {}
    server = [_fetch(url + "/runs") for _ in range(REPEAT)]
    out["runs_server_s"] = _median([s for s, _ in server])
    out["runs_bytes"] = server[0][1]
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        drawn, zoom = [], []
        for _ in range(REPEAT):
            page.goto("about:blank")
            t = time.perf_counter()
            page.goto(url + "/runs")
            page.wait_for_function(
                f"() => document.querySelectorAll('#tb-svg text.lane-label').length >= {n_agents}",
                timeout=120_000,
            )
            drawn.append(time.perf_counter() - t)
            zoom.append(
                page.evaluate(
                    """() => new Promise((done) => {
                        const t = performance.now();
                        document.getElementById('tb-in').click();
                        requestAnimationFrame(() => requestAnimationFrame(
                            () => done((performance.now() - t) / 1000)));
                    })"""
                )
            )
        out["runs_drawn_s"] = _median(drawn)
        out["zoom_frame_s"] = _median(zoom)
        live = []
        for k in range(REPEAT):
            before = page.evaluate(
                "() => JSON.parse(document.getElementById('tb-data').textContent).events.length"
            )
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tracebox",
                    "event",
                    "bench.live",
                    "--data",
                    json.dumps({"k": k}),
                ],
                check=True,
                env=env,
                capture_output=True,
            )
            page.wait_for_function(
                "(n) => JSON.parse(document.getElementById('tb-data').textContent).events.length > n",
                arg=before,
                timeout=60_000,
            )
            live.append(time.perf_counter() - t)
        out["live_s"] = _median(live)
        for name, path, focus in (
            ("session_first", f"/sessions/claude-code/{sid}", "step-0"),
            ("session_deep", f"/sessions/claude-code/{sid}?step=4321#step-4321", "step-4321"),
        ):
            srv = [_fetch(url + path.split("#")[0])[0] for _ in range(REPEAT)]
            shown = []
            for _ in range(REPEAT):
                page.goto("about:blank")  # a full load each time, not a same-page hash change
                t = time.perf_counter()
                page.goto(url + path)
                page.wait_for_selector(f"#{focus}", timeout=60_000)
                shown.append(time.perf_counter() - t)
            out[f"{name}_server_s"] = _median(srv)
            out[f"{name}_shown_s"] = _median(shown)
        b.close()
    return out


def run(quick: bool = False) -> dict:
    sizes = [10_000] if quick else [10_000, 50_000]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="tracebox-bench-ui-") as tmp:
            tmp_p = Path(tmp)
            bucket = str(tmp_p / "bucket")
            t = time.perf_counter()
            fill(bucket, n)
            log(f"{n:,} events written in {time.perf_counter() - t:.1f} s")
            home = tmp_p / "home"
            env = {
                **os.environ,
                "HOME": str(home),
                "CLAUDE_CONFIG_DIR": str(home / ".claude"),
                "XDG_DATA_HOME": str(home / ".local" / "share"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "TRACEBOX_INDEX": str(tmp_p / "index.db"),
                "TRACEBOX_BUCKET": bucket,
                "TRACEBOX_PROJECT": "big",
                "TRACEBOX_AGENT": "a00",
            }
            sid = big_session(home, str(tmp_p / "proj"))
            tb = [sys.executable, "-m", "tracebox"]
            subprocess.run(
                [*tb, "session", "mirror", "--all"], check=True, env=env, capture_output=True
            )
            subprocess.run([*tb, "index"], check=True, env=env, capture_output=True)
            proc = subprocess.Popen(
                [*tb, "ui", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True
            )
            try:
                t = time.perf_counter()
                line = proc.stderr.readline()
                url = line.split()[2].rstrip("/")
                started = time.perf_counter() - t
                log(f"ui at {url}; measuring")
                row = {"events": n, "agents": AGENTS, "ui_ready_s": started}
                row.update(measure(url, bucket, env, sid, AGENTS))
                rows.append(row)
            finally:
                proc.terminate()
                proc.wait(10)
    return {
        "benchmark": "ui",
        "quick": quick,
        "repeat": REPEAT,
        "session_steps": SESSION_STEPS,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "nproc": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "chromium": subprocess.run(
                [CHROMIUM, "--version"], capture_output=True, text=True
            ).stdout.strip(),
        },
        "rows": rows,
    }


def report(results: dict) -> str:
    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    out = [
        "### `tracebox ui` on large runs (headless Chromium, local-folder bucket)",
        "",
        "| events | /runs server | /runs size | timeline drawn | zoom frame | live event shown "
        f"| {results['session_steps']:,}-step session: page 1 server / shown | deep link server / shown |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        out.append(
            f"| {r['events']:,} | {ms(r['runs_server_s'])} | {r['runs_bytes'] / 1e6:.1f} MB "
            f"| {ms(r['runs_drawn_s'])} | {ms(r['zoom_frame_s'])} | {ms(r['live_s'])} "
            f"| {ms(r['session_first_server_s'])} / {ms(r['session_first_shown_s'])} "
            f"| {ms(r['session_deep_server_s'])} / {ms(r['session_deep_shown_s'])} |"
        )
    m = results["machine"]
    out += [
        "",
        f"Medians of {results['repeat']}; {m['chromium']}, Python {m['python']}, {m['nproc']} CPUs, "
        f"load {m['loadavg'][0]:.1f}, {results['at']}. The live figure includes starting the "
        "`tracebox event` process and the page's 1 s poll. No peer tool is measured: none "
        "named for the UI.",
    ]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    results = run(quick="--quick" in argv)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ui.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


if __name__ == "__main__":
    main(sys.argv[1:])
