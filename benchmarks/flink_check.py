"""Prove the Flink SQL of `tracebox alerts flink-sql` on a real Flink engine (`make flink`).

    python benchmarks/flink_check.py [--flink-python .venv-flink/bin/python] [--keep DIR]

1. records a live feed: a real ``tracebox proxy`` in front of the fake upstream
   (tests/fake_upstream.py), driven by a stuck agent (the same failing command, the same
   answer, again and again), an explorer (a new failing command each turn), a run of
   upstream errors and a pause, recorded with ``tracebox tail --json``;
2. ``tracebox alerts flink-sql RULES --source-path events.jsonl`` writes alerts.sql;
3. ``tracebox alerts run RULES --file events.jsonl --json`` gives tracebox's own firings;
4. alerts.sql runs unchanged on PyFlink (``--flink SQL``, a streaming TableEnvironment in
   the separate .venv-flink that ``make flink`` creates: apache-flink is ~840 MB, so it is
   no dependency of tracebox), its print sink read back;
5. both sets of firings — (rule, group, time to the millisecond, value) — must be equal,
   and every rule must have fired. Exit 0 if so, 1 otherwise, with a table either way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from _procs import spawn, stop  # noqa: E402

RULES = """\
[rules]                                  # the harness's own rules, as presets
same_failing_command = 3
repeated_responses = 3
token_rate = 1000
no_progress = "1500ms"

[[alert]]
name = "explorer"                        # new failing commands, per session
where = { type = "call.start", "tool_results.failed" = true }
each = "tool_results"
window = "1m"
having = "count(distinct tool_results.command) >= 3"

[[alert]]
name = "upstream-errors"
where = { type = "call.error", status = { ge = 500 } }
group_by = "agent"
window = "30s"
having = "count(*) >= 2"

[[alert]]
name = "chatty-gpt"
where = { type = ["call.end"], model = { prefix = "gpt" }, "usage.output" = { gt = 5 } }
group_by = []
window = "10s"
having = "count(*) > 5"
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flink", metavar="SQL", help="(inside .venv-flink) run SQL, print sink rows")
    ap.add_argument("--flink-python", default=os.path.join(ROOT, ".venv-flink", "bin", "python"))
    ap.add_argument("--keep", metavar="DIR", help="Write events, rules and SQL here.")
    args = ap.parse_args()
    if args.flink:
        return run_flink(args.flink)
    args.flink_python = os.path.abspath(args.flink_python)
    if not os.path.exists(args.flink_python):
        print(f"flink_check: no {args.flink_python}: `make flink` creates it", file=sys.stderr)
        return 2
    work = args.keep or tempfile.mkdtemp(prefix="tracebox-flink-")
    os.makedirs(work, exist_ok=True)
    try:
        return check(work, args.flink_python)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


# -- inside .venv-flink ----------------------------------------------------------------------


def run_flink(path: str) -> int:
    """Run a generated script as it is: DDL one by one, the INSERTs as one job."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    statements, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not cur and (not line.strip() or line.startswith("--")):
                continue
            cur.append(line.rstrip("\n"))
            if line.rstrip().endswith(";"):
                statements.append("\n".join(cur).rstrip()[:-1])
                cur = []
    inserts = env.create_statement_set()
    for s in statements:
        if s.lstrip().upper().startswith("INSERT"):
            inserts.add_insert_sql(s)
        else:
            env.execute_sql(s)
    inserts.execute().wait()
    return 0


# -- in tracebox's venv -----------------------------------------------------------------------


def _env(work: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEBOX_")}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = os.path.join(work, var.lower())
        os.makedirs(env[var], exist_ok=True)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _chat(url: str, session: str, agent: str, command: str, *, turn: int, scenario: str = "ok"):
    """One agent turn (OpenAI chat): report that ``command`` failed, ask for the next step."""
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "run", "arguments": json.dumps({"command": command})},
    }
    body = {
        "model": "gpt-x",
        "messages": [
            {"role": "user", "content": f"make the tests pass (turn {turn})"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "Exit code 1\nFAILED tests/t.py"},
        ],
    }
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {
            "content-type": "application/json",
            "x-tracebox-session": session,
            "x-tracebox-agent": agent,
            "x-fake-scenario": scenario,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
    except urllib.error.HTTPError as e:
        e.read()


def record(work: str, env: dict) -> str:
    """Drive the scenario through a real proxy; the recorded feed's path."""
    fake = spawn(
        [sys.executable, os.path.join(ROOT, "tests", "fake_upstream.py"), "--port", "0"],
        env,
        work,
        stdout=subprocess.PIPE,
    )
    procs = [fake]
    try:
        upstream = fake.stdout.readline().strip()
        proxy = spawn(
            [
                sys.executable,
                "-m",
                "tracebox",
                "proxy",
                "--port",
                "0",
                "--upstream",
                f"openai={upstream}",
            ],
            env,
            work,
            stderr=subprocess.PIPE,
        )
        procs.append(proxy)
        line = proxy.stderr.readline()
        if " on " not in line:
            raise SystemExit(f"flink_check: the proxy did not start: {line}")
        url = line.split(" on ", 1)[1].split()[0]
        path = os.path.join(work, "events.jsonl")
        out = open(path, "w", encoding="utf-8")  # noqa: SIM115
        tail = spawn(
            [sys.executable, "-m", "tracebox", "tail", "--url", url, "--json"],
            env,
            work,
            stdout=out,
        )
        procs.append(tail)
        _wait_subscribed(url)
        for turn in range(7):  # the stuck loop: same command, same request, same answer
            _chat(url, "loop", "looper", "pytest -q", turn=0)
            if turn == 3:
                time.sleep(2.0)  # a pause longer than no_progress
        for turn, cmd in enumerate(["ls", "cat a.py", "git diff", "make", "cat a.py"]):
            _chat(url, "explore", "explorer", cmd, turn=turn)
        for turn in range(3):
            _chat(url, "errors", "erratic", "pytest", turn=turn, scenario="error:503")
        time.sleep(0.5)  # the last events reach the recorder
    finally:
        for p in reversed(procs):
            stop(p)
    out.close()
    return path


def _wait_subscribed(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/_tracebox/status", timeout=5) as r:
            if json.loads(r.read())["feed"]["subscribers"] >= 1:
                return
        time.sleep(0.05)
    raise SystemExit("flink_check: the recorder never subscribed to the proxy's feed")


def _ms(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def tracebox_firings(rules: str, events: str, env: dict, work: str) -> list[tuple]:
    p = subprocess.run(
        [sys.executable, "-m", "tracebox", "alerts", "run", rules, "--file", events, "--json"],
        env=env, cwd=work, capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = []
    for line in p.stdout.splitlines():
        f = json.loads(line)
        silence = f["rule"] == "no_progress"
        out.append((f["rule"], tuple(f["group"].values()), _ms(f["time"]), None if silence else round(f["value"], 6)))  # fmt: skip
    return sorted(out, key=repr)


def flink_firings(sql: str, python: str, env: dict, work: str) -> tuple[list[tuple], str]:
    p = subprocess.run(
        [python, os.path.abspath(__file__), "--flink", sql],
        env=env, cwd=work, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if p.returncode != 0:
        raise SystemExit(f"flink_check: Flink failed:\n{p.stderr[-4000:]}")
    out = []
    for line in (p.stdout + p.stderr).splitlines():
        if "+I[" not in line:
            continue
        row = line.split("+I[", 1)[1].rstrip().removesuffix("]")
        rule, rest = row.split(", ", 1)
        group, fired, value = rest.rsplit(", ", 2)
        silence = rule == "no_progress"
        out.append((rule, tuple(json.loads(group)), _ms(fired), None if silence else round(float(value), 6)))  # fmt: skip
    return sorted(out, key=repr), p.stdout + p.stderr


def check(work: str, flink_python: str) -> int:
    env = _env(work)
    t0 = time.monotonic()
    events = record(work, env)
    n_events = sum(1 for _ in open(events, encoding="utf-8"))
    rules = os.path.join(work, "rules.toml")
    with open(rules, "w", encoding="utf-8") as f:
        f.write(RULES)
    sql = os.path.join(work, "alerts.sql")
    subprocess.run(
        [sys.executable, "-m", "tracebox", "alerts", "flink-sql", rules, "--source-path", events, "-o", sql],
        env=env, cwd=work, check=True, capture_output=True,
    )  # fmt: skip
    ours = tracebox_firings(rules, events, env, work)
    t1 = time.monotonic()
    theirs, _ = flink_firings(sql, flink_python, env, work)
    t2 = time.monotonic()
    checked = subprocess.run(
        [sys.executable, "-m", "tracebox", "alerts", "check", rules, "--json"],
        env=env, cwd=work, check=True, capture_output=True, text=True,
    )  # fmt: skip
    names = [r["name"] for r in json.loads(checked.stdout)]
    print(
        f"flink_check: {n_events} recorded events; tracebox {len(ours)} firings, Flink {len(theirs)}"
    )
    print(f"  (recording + tracebox {t1 - t0:.1f} s, Flink {t2 - t1:.1f} s)\n")
    print("| rule | tracebox | Flink | same |\n|---|---|---|---|")
    ok = True
    for name in names:
        a = [f for f in ours if f[0] == name]
        b = [f for f in theirs if f[0] == name]
        same = a == b and bool(a)
        ok &= same
        print(f"| {name} | {len(a)} | {len(b)} | {'yes' if same else 'NO'} |")
    if ours != theirs:
        ok = False
        print("\nonly tracebox:", [f for f in ours if f not in theirs])
        print("only Flink:   ", [f for f in theirs if f not in ours])
    print("\nflink_check:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
