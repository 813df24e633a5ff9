"""The generational harness on a real git repository with a real concurrency bug.

Scripted agents (examples/harness_demo/agent.py: a real tool loop) talk through each
variant's capture proxy to a scripted OpenAI-compatible model the test serves on
loopback; its policy reads the prompt, observations included. Generation 1 explores
blind and fails; a stubborn variant loops on the failing test until a live rule stops
its process group; generation 2 reads what generation 1 learned and solves it. Without
the observations (the ablation) it does not. The Ray executor runs the same run on a
local Ray instance. Config and live rules are also tested on their own.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "harness_demo"))
import scenario  # noqa: E402

from tracebox.errors import ConfigError  # noqa: E402
from tracebox.harness import config, live, run  # noqa: E402
from tracebox.project import init_project, open_project  # noqa: E402


@pytest.fixture
def world(tmp_path, monkeypatch):
    repo = scenario.make_repo(tmp_path)
    server = scenario.ModelServer()
    monkeypatch.setenv("TRACEBOX_UPSTREAM_OPENAI", server.url)
    init_project(str(tmp_path / "bucket"), "demo", "harness")
    project = open_project(str(tmp_path / "bucket"), "demo", "harness")
    yield {"root": tmp_path, "repo": repo, "project": project, "server": server}
    server.close()


def _get(project, key: str) -> bytes:
    return project.store.get(project.ctx.key(key)).data


def test_two_generations_learn_and_a_stuck_agent_is_stopped(world):
    p = world["project"]
    h = scenario.write_harness(world["root"], world["repo"], generations=2, stubborn=True)
    summary = run.run(config.load(str(h)), p)
    g1, g2 = summary["generations"]
    assert g1["variants"] == 4 and g1["solved"] == 0  # blind: every first guess is wrong
    assert g1["stopped"] == 1
    assert g2["solved"] >= 2  # they read generation 1's observations
    rid = summary["run"]
    gen1 = json.loads(_get(p, f"harness/{rid}/gen-1/summary.json"))
    stub = next(r for r in gen1["results"] if r["variant"] == "stubborn")
    assert stub["stopped"].startswith("same_failing_command")
    obs = _get(p, f"harness/{rid}/gen-1/observations.md").decode()
    assert "FAILED the validator" in obs and "lost updates" in obs and "was stopped" in obs
    given = _get(p, f"harness/{rid}/gen-2/timing/prompt.md").decode()
    assert "# Observations from earlier attempts" in given and "FAILED the validator" in given
    assert "# Observations" not in _get(p, f"harness/{rid}/gen-1/timing/prompt.md").decode()
    # artefacts of a solving variant: its diff is the fix, its validator passed
    gen2 = json.loads(_get(p, f"harness/{rid}/gen-2/summary.json"))
    win = next(r for r in gen2["results"] if r["solved"])
    diff = _get(p, f"harness/{rid}/gen-2/{win['variant']}/diff.patch").decode()
    assert "service/counter.py" in diff and ("_lock" in diff or "itertools.count" in diff)
    assert win["validator_exit"] == 0 and win["calls"] >= 4
    # coordination: each variant's step was claimed and completed (blocked unless it
    # solved the task); events were logged
    st = p.handoff(f"{rid}.g1.stubborn")
    assert st["status"] == "blocked"
    assert st["handoffs"][-1]["note"].startswith("stopped: same_failing")
    assert p.handoff(f"{rid}.g2.{win['variant']}")["status"] == "complete"
    types = [e["type"] for e in p.log()]
    assert (
        types.count("harness.variant.stopped") == 2 and "harness.run.end" in types
    )  # per generation
    # the captured model calls are sessions the observer (and `observe --run`) can read
    sessions = run.run_sessions(p, rid, 1)
    assert len(sessions) == 4 and all(len(s.steps) >= 6 for s in sessions)
    # the report: self-contained HTML, Markdown with the winning diff
    page = _get(p, f"harness/{rid}/report.html").decode()
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    md = _get(p, f"harness/{rid}/report.md").decode()
    assert (
        "## The winning change" in md and "```diff" in md and "stopped: same_failing_command" in md
    )


def test_without_observations_convergence_is_worse(world):
    """The ablation: the same run, observations not given to later generations."""
    p = world["project"]
    h = scenario.write_harness(world["root"], world["repo"], generations=2)
    cfg = config.load(str(h))
    with_obs = run.run(cfg, p)
    without = run.run(cfg, p, use_observations=False)
    solved_with = sum(g["solved"] for g in with_obs["generations"])
    solved_without = sum(g["solved"] for g in without["generations"])
    assert solved_with >= 3 and solved_without == 0
    rid = without["run"]
    assert "# Observations" not in _get(p, f"harness/{rid}/gen-2/timing/prompt.md").decode()
    assert "NOT given (ablation)" in _get(p, f"harness/{rid}/report.md").decode()


def test_the_cli_runs_a_harness_file(world, tmp_path):
    import subprocess

    h = scenario.write_harness(world["root"], world["repo"], generations=1)
    env = {
        **os.environ,
        "TRACEBOX_BUCKET": str(world["root"] / "bucket"),
        "TRACEBOX_PROJECT": "demo",
    }
    p = subprocess.run(
        [sys.executable, "-m", "tracebox", "harness", "run", str(h), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    rid = json.loads(p.stdout)["run"]
    out = tmp_path / "rep"
    p = subprocess.run(
        [sys.executable, "-m", "tracebox", "harness", "report", rid, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0 and (out / "report.html").exists()
    p = subprocess.run(
        [sys.executable, "-m", "tracebox", "observe", "--run", rid, "--generation", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sessions"] == 3
    p = subprocess.run(
        [sys.executable, "-m", "tracebox", "harness", "list"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert rid in p.stdout


def test_a_killed_agent_leaves_no_process_behind(world, tmp_path):
    """A live rule stops the whole process group, grandchildren included."""
    pidfile = tmp_path / "grandchild.pid"
    agent = tmp_path / "hang.py"
    agent.write_text(
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen(['sleep', '300'])\nopen({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    h = world["root"] / "H.toml"
    h.write_text(
        f'[run]\nname = "hang"\nrepo = {json.dumps(str(world["repo"]))}\nbase = "main"\n'
        f'task = "x"\nagent = "{sys.executable} {agent}"\nvalidator = "true"\n'
        '[rules]\nno_progress = "2s"\n'
    )
    t = time.monotonic()
    summary = run.run(config.load(str(h)), world["project"])
    r = json.loads(_get(world["project"], f"harness/{summary['run']}/gen-1/summary.json"))[
        "results"
    ][0]
    assert r["stopped"].startswith("no_progress") and not r["solved"]
    assert time.monotonic() - t < 60
    pid = int(pidfile.read_text())
    time.sleep(0.5)
    assert (
        not os.path.exists(f"/proc/{pid}")
        or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def test_the_ray_executor_gives_the_same_artefacts(world):
    import ray  # a dev dependency: missing, the test fails

    p = world["project"]
    h = scenario.write_harness(world["root"], world["repo"], generations=1)
    cfg = config.load(str(h))
    local = run.run(cfg, p, executor="local")
    ray.init(
        include_dashboard=False,
        log_to_driver=False,
        num_cpus=2,
        runtime_env={"env_vars": {"TRACEBOX_UPSTREAM_OPENAI": world["server"].url}},
    )
    try:
        remote = run.run(cfg, p, executor="ray")
    finally:
        ray.shutdown()

    def files(rid):
        prefix = p.ctx.key(f"harness/{rid}/")
        return sorted(m.key[len(prefix) :] for m in p.store.list(prefix))

    assert files(local["run"]) == files(remote["run"])
    assert [g["solved"] for g in local["generations"]] == [
        g["solved"] for g in remote["generations"]
    ]
    assert len(run.run_sessions(p, remote["run"])) == 3


# -- the harness file -------------------------------------------------------------------------


def test_config_list_matrix_and_errors(tmp_path):
    base = '[run]\nname = "r"\nrepo = "."\ntask = "t"\nagent = "a {focus} {prompt_file}"\nvalidator = "v"\n'
    (tmp_path / "m.toml").write_text(
        base
        + '[matrix]\nfocus = ["a", "b"]\nfix = [1, 2]\nstrategy = "look at {focus}, fix {fix}"\n'
    )
    cfg = config.load(str(tmp_path / "m.toml"))
    assert [v.name for v in cfg.variants] == ["a-1", "a-2", "b-1", "b-2"]
    assert cfg.variants[3].strategy == "look at b, fix 2"
    assert config.command_for(cfg, cfg.variants[0], prompt_file="/p f") == "a a '/p f'"
    bad = {
        "no run": "",
        "no agent": '[run]\nname = "r"\ntask = "t"\nvalidator = "v"\n',
        "bad name": base.replace('name = "r"', 'name = "../x"'),
        "unknown placeholder": base.replace("{focus}", "{nope}"),
        "unknown rule": base + "[rules]\nfoo = 1\n",
        "bad duration": base.replace('validator = "v"', 'validator = "v"\ntimeout = "soon"'),
        "dup variants": base.replace("{focus} ", "")
        + '[[variants]]\nname = "x"\n[[variants]]\nname = "x"\n',
        "not toml": "[run\n",
    }
    for what, text in bad.items():
        (tmp_path / "b.toml").write_text(text)
        with pytest.raises(ConfigError):
            config.load(str(tmp_path / "b.toml"))
        assert what


def test_live_rules(monkeypatch):
    now = [0.0]
    w = live.Watch(
        config.Rules(no_progress=10, same_failing_command=3, token_rate=1000, repeated_responses=2),
        clock=lambda: now[0],
    )
    assert w.check() is None
    for _ in range(2):
        w.event({"type": "call.start", "tool_results": [{"command": "make  test", "failed": True}]})
    assert w.check() is None
    w.event({"type": "call.start", "tool_results": [{"command": "make test", "failed": True}]})
    assert w.check().startswith("same_failing_command")
    w = live.Watch(config.Rules(no_progress=10), clock=lambda: now[0])
    now[0] = 9
    w.activity()
    now[0] = 18
    assert w.check() is None
    now[0] = 19.5
    assert w.check().startswith("no_progress")
    w = live.Watch(config.Rules(token_rate=1000), clock=lambda: now[0])
    w.event({"type": "call.end", "usage": {"input": 600, "output": 500}})
    assert w.check().startswith("token_rate")
    w = live.Watch(config.Rules(repeated_responses=3), clock=lambda: now[0])
    for d in ("a", "b", "b"):
        w.event({"type": "call.end", "response_digest": d})
    assert w.check() is None
    w.event({"type": "call.end", "response_digest": "b"})
    assert w.check().startswith("repeated_responses")


CLAUDE_LIKE = r"""
import json, os, re, sys, uuid
cwd = os.getcwd()  # Claude Code names the folder after it: every non-alphanumeric is "-"
folder = os.path.join(os.environ["HOME"], ".claude", "projects", re.sub("[^A-Za-z0-9]", "-", cwd))
os.makedirs(folder, exist_ok=True)
sid = str(uuid.uuid4())
line = {"type": "user", "sessionId": sid, "cwd": cwd, "uuid": str(uuid.uuid4()),
        "timestamp": "2026-12-02T10:00:00.000Z", "message": {"role": "user", "content": "hi"}}
open(os.path.join(folder, sid + ".jsonl"), "w").write(json.dumps(line) + "\n")
print(sid)
"""


def test_transcripts_of_known_agents_are_mirrored(world, tmp_path):
    agent = tmp_path / "claude_like.py"
    agent.write_text(CLAUDE_LIKE)
    h = world["root"] / "H.toml"
    h.write_text(
        f'[run]\nname = "mirror"\nrepo = {json.dumps(str(world["repo"]))}\nbase = "main"\n'
        f'task = "x"\nagent = "{sys.executable} {agent}"\nvalidator = "true"\n'
    )
    p = world["project"]
    summary = run.run(config.load(str(h)), p)
    r = json.loads(_get(p, f"harness/{summary['run']}/gen-1/summary.json"))["results"][0]
    assert len(r["transcripts"]) == 1 and r["transcripts"][0].startswith("claude-code:")
    sid = r["transcripts"][0].split(":", 1)[1]
    keys = [m.key for m in p.store.list(p.ctx.key(f"sessions/claude-code/{sid}/"))]
    assert any("part-" in k for k in keys)


def test_an_alert_stops_a_running_variant(world, tmp_path, cli):
    """`tracebox alerts run` with ``then = ["stop"]``, as a process of its own, stops a
    variant the harness is running (its watch polls the stop request in the bucket)."""
    import threading

    agent = tmp_path / "hang.py"
    agent.write_text("import time\ntime.sleep(300)\n")
    h = world["root"] / "H.toml"
    h.write_text(
        f'[run]\nname = "halt"\nrepo = {json.dumps(str(world["repo"]))}\nbase = "main"\n'
        f'task = "x"\nagent = "{sys.executable} {agent}"\nvalidator = "true"\n'
    )
    done: dict = {}
    worker = threading.Thread(
        target=lambda: done.update(run.run(config.load(str(h)), world["project"]))
    )
    worker.start()
    try:
        deadline, session = time.monotonic() + 60, None
        while session is None and time.monotonic() < deadline:
            running = [s for s in world["project"].steps() if s.get("status") == "claimed"]
            session = running[0]["step"] if running else None
            time.sleep(0.2)
        assert session, "the variant never started"
        failing = {"command": "make test", "failed": True}
        events = tmp_path / "events.jsonl"
        events.write_text(
            "".join(
                json.dumps({"type": "call.start", "session": session, "tool_results": [failing]})
                + "\n"
                for _ in range(3)
            )
        )
        rules = tmp_path / "rules.toml"
        rules.write_text(
            '[[alert]]\nuse = "same_failing_command"\nthreshold = 3\nthen = ["stop"]\n'
        )
        bucket = str(world["root"] / "bucket")
        r = cli("--bucket", bucket, "--project", "demo", "alerts", "run", rules, "--file", events)
        assert r.returncode == 0, r.stderr
    finally:
        worker.join(90)
    assert not worker.is_alive()
    r = json.loads(_get(world["project"], f"harness/{done['run']}/gen-1/summary.json"))["results"]
    assert r[0]["stopped"].startswith("alert: same_failing_command") and not r[0]["solved"]
