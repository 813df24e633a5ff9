"""Live alert rules: the rule language, the engine, the harness presets, and real sources.

The presets are checked against the harness's original ``Watch`` (kept here, verbatim, as
the oracle) on generated event sequences. The sources run for real: a ``tracebox proxy``
subprocess in front of the fake upstream, driven by the official OpenAI SDK as a stuck
agent, watched by a ``tracebox alerts run --proxy`` subprocess that prints and POSTs to a
webhook served by the test; the bucket's event log written by ``tracebox event`` CLI
calls; the recorded feed (``tracebox tail --json``) replayed with ``--file``. The Flink SQL
is run on a real Flink engine by ``make flink`` (benchmarks/flink_check.py), not here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fake_upstream
from tracebox.errors import ConfigError
from tracebox.harness import config, live
from tracebox.project import init_project, open_project
from tracebox.stream import alerts

# -- the harness's Watch as it was before it ran on the alert engine: the oracle --------------


class LegacyWatch:
    def __init__(self, rules, clock):
        self.rules, self.clock = rules, clock
        self._last_activity = clock()
        self._failing: Counter[str] = Counter()
        self._tokens: deque[tuple[float, int]] = deque()
        self._digests: deque[str] = deque(maxlen=max(1, rules.repeated_responses or 1))
        self._fired: str | None = None

    def activity(self) -> None:
        self._last_activity = self.clock()

    def event(self, ev: dict) -> None:
        kind = ev.get("type")
        now = self.clock()
        self._last_activity = now
        if kind == "call.start":
            for r in ev.get("tool_results") or []:
                cmd = r.get("command") if isinstance(r, dict) else None
                if cmd and r.get("failed"):
                    self._failing[" ".join(str(cmd).split())] += 1
        elif kind in ("call.end", "call.error"):
            u = ev.get("usage") or {}
            n = sum(int(u.get(k) or 0) for k in ("input", "output", "cache_read", "cache_write"))
            if n:
                self._tokens.append((now, n))
            d = ev.get("response_digest")
            if d:
                self._digests.append(d)

    def check(self) -> str | None:
        if self._fired:
            return self._fired
        r, now = self.rules, self.clock()
        why = None
        if r.no_progress and now - self._last_activity >= r.no_progress:
            why = f"no_progress: no model call or output for {now - self._last_activity:.0f} s"
        if why is None and r.same_failing_command:
            cmd, n = next(iter(self._failing.most_common(1)), (None, 0))
            if cmd and n >= r.same_failing_command:
                why = f"same_failing_command: `{cmd[:120]}` failed {n} times"
        if why is None and r.token_rate:
            while self._tokens and now - self._tokens[0][0] > 60:
                self._tokens.popleft()
            spent = sum(n for _, n in self._tokens)
            if spent > r.token_rate:
                why = f"token_rate: {spent} tokens in the last minute (limit {r.token_rate})"
        if why is None and r.repeated_responses and len(self._digests) >= r.repeated_responses:
            if len(set(self._digests)) == 1:
                why = f"repeated_responses: the same answer {r.repeated_responses} times in a row"
        self._fired = why
        return why


COMMANDS = ["make test", "make  test", " make test\n", "pytest -q", ""]
_result = st.fixed_dictionaries(
    {"tool": st.just("run"), "command": st.sampled_from([*COMMANDS, None]), "failed": st.booleans()}
)
_op = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([0, 0.5, 1, 5, 9.5, 10, 30, 59, 60, 61])),
    st.tuples(st.just("output")),
    st.tuples(st.just("call.start"), st.lists(_result, max_size=3)),
    st.tuples(
        st.sampled_from(["call.end", "call.error"]),
        st.integers(0, 700),
        st.integers(0, 700),
        st.sampled_from([None, "", "d1", "d2"]),
    ),
    st.tuples(st.just("call.first_token")),
)
_rules = st.builds(
    config.Rules,
    no_progress=st.sampled_from([None, 5.0, 10.0]),
    same_failing_command=st.sampled_from([None, 1, 2, 3]),
    token_rate=st.sampled_from([None, 300, 1000]),
    repeated_responses=st.sampled_from([None, 1, 2, 3]),
)


def _event(op) -> dict | None:
    kind = op[0]
    if kind == "call.start":
        return {"type": kind, "session": "s", "tool_results": op[1]}
    if kind in ("call.end", "call.error"):
        return {"type": kind, "session": "s", "usage": {"input": op[1], "output": op[2]}, "response_digest": op[3]}  # fmt: skip
    return {"type": kind, "session": "s"} if kind == "call.first_token" else None


def _same(new: str | None, old: str | None) -> bool:
    """The same reason. The engine counts one tool result at a time, so when one turn
    reports several failing commands, it names the first to cross the threshold (and its
    count then), where the old Watch named the most frequent after the whole turn."""
    if new and old and new.startswith("same_failing_command:"):
        return old.startswith("same_failing_command:")
    return new == old


@settings(max_examples=300, deadline=None)
@given(rules=_rules, ops=st.lists(_op, max_size=40))
def test_the_harness_presets_fire_exactly_when_the_old_watch_did(rules, ops):
    now = [100.0]
    clock = lambda: now[0]  # noqa: E731
    old, new = LegacyWatch(rules, clock), live.Watch(rules, clock=clock)
    # each preset on its own, from a rule file, on an Engine: fires when the old Watch
    # with only that rule first fires
    singles = {}
    for name in live.ORDER:
        if getattr(rules, name):
            one = config.Rules(**{name: getattr(rules, name)})
            doc = {"alert": [{"use": name, "threshold": getattr(rules, name), "group_by": []}]}
            singles[name] = [
                LegacyWatch(one, clock),
                alerts.Engine(alerts.parse(doc), now[0]),
                None,
            ]
    for step, op in enumerate(ops):
        ev = _event(op)
        if op[0] == "advance":
            now[0] += op[1]
        for w in (old, new, *(s[0] for s in singles.values())):
            if op[0] == "output":
                w.activity()
            elif ev is not None:
                w.event(ev)
        assert _same(new.check(), old.check()), (step, op)
        for s in singles.values():
            engine = s[1]
            feed = {"type": alerts.OUTPUT_EVENT} if op[0] == "output" else ev
            fired = (engine.process(feed, now[0]) if feed else []) + engine.tick(now[0])
            if s[2] is None and fired:
                s[2] = fired[0].message
            assert _same(s[2], s[0].check()), (step, op)


def test_live_rules_keep_the_harness_order():
    now = [0.0]
    w = live.Watch(config.Rules(token_rate=10, repeated_responses=1), clock=lambda: now[0])
    w.event({"type": "call.start"})
    assert w.check() is None and w.calls == 1
    w.event({"type": "call.end", "usage": {"output": 50}, "response_digest": "x"})  # both fire
    assert w.check() == "token_rate: 50 tokens in the last minute (limit 10)"


# -- the rule language ----------------------------------------------------------------------


def _load(tmp_path, text: str) -> list[alerts.Rule]:
    f = tmp_path / "rules.toml"
    f.write_text(text)
    return alerts.load(str(f))


BAD = {
    "no rules": ("", "no rules"),
    "not toml": ("[[alert]\n", "not valid TOML"),
    "unknown key": ('[[alert]]\nname = "a"\nhaving = "count(*) >= 1"\nwhen = 1\n', "a: unknown key 'when'"),
    "no having": ('[[alert]]\nname = "a"\n', "a: having is required"),
    "no name": ('[[alert]]\nhaving = "count(*) >= 1"\n', "alert 1: name is required"),
    "bad agg": ('[[alert]]\nname = "a"\nhaving = "avg(x) > 1"\n', "a: having 'avg(x) > 1'"),
    "count(field)": ('[[alert]]\nname = "a"\nhaving = "count(x) >= 1"\n', "a: having: use count(*)"),
    "bad number": ('[[alert]]\nname = "a"\nhaving = "count(*) >= lots"\n', "not a number"),
    "bad silence": ('[[alert]]\nname = "a"\nhaving = "silence >= soon"\n', "a: having: invalid silence"),
    "silence window": ('[[alert]]\nname = "a"\nwindow = 5\nhaving = "silence >= 5s"\n', "window does not apply"),
    "bad window": ('[[alert]]\nname = "a"\nwindow = "never"\nhaving = "count(*) >= 1"\n', "a: invalid window"),
    "bad op": ('[[alert]]\nname = "a"\nwhere = { status = { above = 3 } }\nhaving = "count(*) >= 1"\n', "a: where: status: unknown operator 'above'"),
    "gt string": ('[[alert]]\nname = "a"\nwhere = { status = { gt = "x" } }\nhaving = "count(*) >= 1"\n', "gt takes a number"),
    "mixed in": ('[[alert]]\nname = "a"\nwhere = { status = [1, "x"] }\nhaving = "count(*) >= 1"\n', "of one kind"),
    "bad path": ('[[alert]]\nname = "a"\ngroup_by = ["a..b"]\nhaving = "count(*) >= 1"\n', "group_by: 'a..b' is not a field path"),
    "bad action": ('[[alert]]\nname = "a"\nhaving = "count(*) >= 1"\nthen = ["email"]\n', "unknown action 'email'"),
    "bad message": ('[[alert]]\nname = "a"\nhaving = "count(*) >= 1"\nmessage = "{nope}"\n', "message uses {nope}"),
    "dup": ('[[alert]]\nname = "a"\nhaving = "count(*) >= 1"\n[[alert]]\nname = "a"\nhaving = "count(*) >= 2"\n', "a: two rules have this name"),
    "preset": ('[[alert]]\nuse = "nope"\nthreshold = 1\n', "nope: unknown preset 'nope'"),
    "preset key": ('[[alert]]\nuse = "token_rate"\nthreshold = 1\nwindow = 5\n', "token_rate: 'window' cannot be set on a preset"),
    "preset threshold": ('[[alert]]\nuse = "token_rate"\n', "needs a threshold"),
    "harness rule": ("[rules]\nfoo = 3\n", "foo: unknown preset"),
    "harness duration": ('[rules]\nno_progress = "soon"\n', "no_progress: having: invalid silence"),
    "each field": ('[[alert]]\nname = "a"\neach = "tool_results"\ngroup_by = ["tool_results"]\nhaving = "count(*) >= 1"\n', "name a field of each"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_rule_files_are_one_line_errors_naming_file_and_rule(tmp_path, case):
    text, expected = BAD[case]
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "rules.toml") + ":") and "\n" not in msg
    assert expected in msg, msg


def test_check_cli(tmp_path, cli):
    f = tmp_path / "rules.toml"
    f.write_text(
        '[rules]\nsame_failing_command = 3\nno_progress = "90s"\n'
        '[[alert]]\nname = "errors"\nwhere = { type = "call.error" }\nwindow = "1m"\n'
        'having = "count(*) >= 5"\nthen = ["stdout", "http://127.0.0.1:9/hook"]\n'
    )
    doc = cli.json("alerts", "check", f)
    assert [r["name"] for r in doc] == ["errors", "same_failing_command", "no_progress"]
    assert doc[0]["window"] == 60 and doc[1]["group_by"] == [
        "session",
        "squash(tool_results.command)",
    ]
    human = cli("alerts", "check", f, check=True)
    assert "count(*) >= 5" in human.stdout and "3 rule(s) OK" in human.stderr
    f.write_text('[[alert]]\nname = "x"\nhaving = "count(*) >= 1"\nwindow = "x"\n')
    for args in (["alerts", "check", f], ["alerts", "check", tmp_path / "missing.toml"]):
        r = cli(*args)
        assert (
            r.returncode == 2
            and r.stderr.count("\n") == 1
            and r.stderr.startswith("tracebox: error: ")
        )


def test_a_type_close_to_a_known_one_is_a_warning_not_an_error(tmp_path, cli):
    f = tmp_path / "rules.toml"
    f.write_text(
        '[[alert]]\nname = "claims"\nwhere = { type = "claim.acquired" }\n'
        'having = "count(*) >= 1"\n'
        '[[alert]]\nname = "ends"\nwhere = { type = ["call.end", "call.eror"] }\n'
        'having = "count(*) >= 1"\n'
        '[[alert]]\nname = "mine"\nwhere = { type = "deploy.done" }\nhaving = "count(*) >= 1"\n'
    )
    r = cli("alerts", "check", f, check=True)
    warned = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warned) == 2, r.stderr
    assert "claims: no tracebox source emits type 'claim.acquired'" in warned[0]
    assert "did you mean 'claim.acquire'?" in warned[0]
    assert "'call.eror'" in warned[1] and "'call.error'" in warned[1]
    assert "3 rule(s) OK" in r.stderr  # a custom type (deploy.done) is fine


def test_every_documented_event_type_is_known():
    """No warning for a type tracebox documents (docs/format.md, docs/stream.md)."""
    docs = Path(__file__).resolve().parent.parent / "docs"
    text = (docs / "format.md").read_text() + (docs / "stream.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    rows += [line for line in text.splitlines() if line.startswith("| `coord` |")]
    found = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", "\n".join(rows)))
    types = {t for t in found if t.split(".")[0] in {
        "project", "agent", "claim", "step", "message", "memory", "artifact", "session",
        "import", "call", "tool",
    }}  # fmt: skip
    assert len(types) >= 20, types
    assert types <= set(alerts.EVENT_TYPES), types - set(alerts.EVENT_TYPES)
    for p in alerts.PRESETS.values():  # the presets' own types
        t = p.get("where", {}).get("type", [])
        assert set([t] if isinstance(t, str) else t) <= set(alerts.EVENT_TYPES)


# -- the engine -----------------------------------------------------------------------------


def _fire(rules, timed_events, *, end: float | None = None):
    """[(time, event)] through an Engine; the firings as (rule, time, group values, value)."""
    e = alerts.Engine(rules, timed_events[0][0] if timed_events else 0)
    out = []
    for t, ev in timed_events:
        out += e.tick(t) + e.process(ev, t)
    if end is not None:
        out += e.tick(end)
    return [(f.rule.name, f.time, tuple(f.group.values()), f.value) for f in out]


def _rule(**table) -> alerts.Rule:
    return alerts.parse({"alert": [{"name": "r", **table}]})[0]


def test_count_in_a_sliding_window_starts_over_after_firing():
    r = _rule(where={"type": "call.error"}, window=10, having="count(*) >= 3")
    err = {"type": "call.error", "session": "a"}
    evs = [(t, err) for t in (0, 1, 20, 25, 29, 30, 31, 32)] + [
        (33, {"type": "call.end", "session": "a"})
    ]
    # 0, 1 age out before 20; 20,25,29 fire; then 30,31,32 fire again (a fresh three)
    assert _fire([r], evs) == [("r", 29, ("a",), 3.0), ("r", 32, ("a",), 3.0)]
    # the window is inclusive: exactly 10 s apart still counts
    assert _fire([r], [(0, err), (5, err), (10, err)]) == [("r", 10, ("a",), 3.0)]
    strict = _rule(where={"type": "call.error"}, having="count(*) > 2", group_by=[])
    assert _fire([strict], [(t, err) for t in range(6)]) == [("r", 2, (), 3.0), ("r", 5, (), 3.0)]


def test_sum_distinct_repeated_and_each():
    tokens = _rule(window=60, having="sum(usage.input + usage.output) > 1000")
    evs = [
        (0, {"session": "a", "usage": {"input": 600}}),
        (30, {"session": "b", "usage": {"input": 900}}),
    ]
    evs += [(61, {"session": "a", "usage": {"input": 500, "output": "x"}})]  # 0 s aged out
    evs += [(62, {"session": "a", "usage": {"input": 501}})]
    assert _fire([tokens], evs) == [("r", 62, ("a",), 1001)]
    new = _rule(each="tool_results", having="count(distinct tool_results.command) >= 2")
    ev = lambda *cmds: {"session": "a", "tool_results": [{"command": c} for c in cmds]}  # noqa: E731
    got = _fire(
        [new], [(0, ev("a", "a", None)), (1, ev("a")), (2, ev("b", "c")), (3, ev("c", "d", "e"))]
    )
    assert got == [("r", 2, ("a",), 2.0), ("r", 3, ("a",), 2.0)]  # c was seen: d and e are new
    same = _rule(group_by=[], having="repeated(d) >= 2")
    got = _fire(
        [same], [(t, {"d": d}) for t, d in enumerate(["x", "y", "y", "y", "y", None, "y", "y"])]
    )
    assert [f[1] for f in got] == [2, 4, 7]
    where = _rule(
        where={"status": {"ge": 500}, "model": {"prefix": "gpt"}, "error": {"contains": "rate"}},
        group_by=["model"],
        having="count(*) >= 1",
    )
    ok = {"status": 503, "model": "gpt-x", "error": "rate limited"}
    evs = [
        (0, ok),
        (1, {**ok, "status": "503"}),
        (2, {**ok, "model": "claude"}),
        (3, {**ok, "error": None}),
    ]
    assert _fire([where], evs) == [("r", 0, ("gpt-x",), 1.0)]


def test_silence_fires_once_per_gap_and_groups_are_bounded(monkeypatch):
    quiet = _rule(having="silence >= 5s")
    evs = [
        (0, {"session": "a"}),
        (1, {"session": "b"}),
        (4, {"session": "a"}),
        (20, {"session": "a"}),
    ]
    got = _fire([quiet], evs, end=40)
    assert got == [("r", 6, ("b",), 19), ("r", 9, ("a",), 16), ("r", 25, ("a",), 20)]
    monkeypatch.setattr(alerts, "MAX_GROUPS", 50)
    e = alerts.Engine([_rule(having="count(*) >= 2")], 0)
    for i in range(500):
        e.process({"session": f"s{i}"}, i)
    assert len(e.groups[0]) == 50 and e.evicted == 450


def test_replaying_a_log_file_and_flushing_silences(tmp_path):
    f = tmp_path / "log.jsonl"
    rows = [{"v": 1, "ts": f"2026-01-01T00:00:0{i}.000000Z", "agent": "al", "type": "test.failed"} for i in range(3)]  # fmt: skip
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    rules = alerts.parse(
        {
            "alert": [
                {"name": "fails", "where": {"type": "test.failed"}, "group_by": "agent", "having": "count(*) >= 3"},
                {"name": "quiet", "group_by": "agent", "having": "silence >= 1m"},
            ]
        }
    )  # fmt: skip
    got = []
    assert alerts.run(rules, alerts.file_events(str(f)), got.append, replay=True) == 2
    assert [(x.rule.name, x.group, x.value) for x in got] == [("fails", {"agent": "al"}, 3.0), ("quiet", {"agent": "al"}, 60)]  # fmt: skip
    assert alerts.iso_time(got[1].time) == "2026-01-01T00:01:02.000000Z"
    f.write_text("{}\nnot json\n")
    with pytest.raises(alerts.UsageError, match=r"log.jsonl:2: not a JSON object"):
        alerts.run(rules, alerts.file_events(str(f)), got.append, replay=True)


def test_flink_sql_has_one_insert_per_rule(tmp_path, cli):
    f = tmp_path / "rules.toml"
    f.write_text(
        "[rules]\nsame_failing_command = 3\nno_progress = 90\ntoken_rate = 1000\nrepeated_responses = 2\n"
        '[[alert]]\nname = "new-cmds"\neach = "tool_results"\nwindow = "2h"\n'
        'having = "count(distinct tool_results.command) >= 5"\nwhere = { model = { in = ["o\'k", "b"] } }\n'
    )
    sql = cli("alerts", "flink-sql", f, "--source-path", "/data/ev.jsonl", check=True).stdout
    assert sql.count("INSERT INTO `tracebox_alerts`") == 5 and sql.count("MATCH_RECOGNIZE") == 4
    assert "'path' = '/data/ev.jsonl'" in sql and "WATERMARK FOR `rowtime`" in sql
    assert "CROSS JOIN UNNEST(e.`tool_results`)" in sql and "TABLE(SESSION(" in sql
    assert "WITHIN INTERVAL '0 02:00:00.001' DAY TO SECOND(3)" in sql  # inclusive at ms
    assert "e.`model` IN ('o''k', 'b')" in sql and "ROW_NUMBER() OVER" in sql
    assert "`usage` ROW<`input` BIGINT, `output` BIGINT" in sql
    out = tmp_path / "a.sql"
    cli("alerts", "flink-sql", f, "-o", out, check=True)
    assert out.read_text() == sql.replace("/data/ev.jsonl", "events.jsonl")


# -- stop -------------------------------------------------------------------------------------


def test_stop_requests_reach_the_harness_watch(tmp_path):
    init_project(str(tmp_path / "b"), "p", "alerts")
    p = open_project(str(tmp_path / "b"), "p", "alerts")
    session = "fix-bug-20261122T041500.g1.stubborn"
    now = [0.0]
    w = live.Watch(config.Rules(), clock=lambda: now[0], stop=live.stop_requests(p, session, clock=lambda: now[0]))  # fmt: skip
    assert w.check() is None
    rule = alerts.preset("same_failing_command", 2, then=["stop"])
    warnings = []
    act = alerts.Actions(out=print, warn=warnings.append, ctx=p.ctx, scrub=lambda s: s)
    e = alerts.Engine([rule], 0)
    ev = {"type": "call.start", "session": session, "agent": "fix-bug.g1.stubborn", "tool_results": [{"command": "make", "failed": True}]}  # fmt: skip
    for f in e.process(ev, 1) + e.process(ev, 2):
        act(f)
    assert not warnings
    assert w.check() is None  # polled at most once a second
    now[0] = 1.5
    assert w.check() == "alert: same_failing_command: `make` failed 2 times"
    assert alerts.stop_requested(p.ctx, session).startswith("same_failing_command")
    agent = open_project(str(tmp_path / "b"), "p", "fix-bug.g1.stubborn")
    assert agent.inbox()[0]["body"].startswith("tracebox alert: stop requested: same_failing")
    act(alerts.Firing(rule, 0, {}, 1, "m", session="bad/session"))
    assert "stop request for bad/session failed" in warnings[0]


# -- real sources -----------------------------------------------------------------------------


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        Hook.received.append((self.path, self.headers["content-type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def webhook():
    Hook.received = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _tracebox(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    cmd = [sys.executable, "-m", "tracebox", *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def proxy(tmp_path):
    fake = fake_upstream.start()
    proc = _tracebox("proxy", "--port", "0", "--upstream", f"openai={fake.url}", cwd=tmp_path)
    line = proc.stderr.readline()
    assert "tracebox proxy on " in line, line + proc.stderr.read()
    yield line.split(" on ", 1)[1].split()[0]
    _stop(proc)
    fake.stop()


def _subscribers(url: str) -> int:
    from tracebox.capture.proxy.server import get_json

    return get_json(url + "/_tracebox/status")["feed"]["subscribers"]


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


SECRET = "ghp_abcdefghijklmnopqrstuvwxyz0123456789AB"


def _stuck_agent(url: str, session: str, turns: int, command: str = f"pytest --token {SECRET}"):
    """An agent in a loop: it re-runs the same failing command, reporting each result."""
    import openai

    client = openai.OpenAI(
        base_url=url + "/v1",
        api_key="sk-test",
        default_headers={"x-tracebox-session": session, "x-tracebox-agent": "looper"},
    )
    call = {"id": "c1", "type": "function", "function": {"name": "run", "arguments": json.dumps({"command": command})}}  # fmt: skip
    for i in range(turns):
        client.chat.completions.create(
            model="gpt-x",
            messages=[
                {"role": "user", "content": f"fix it ({i})"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {
                    "role": "tool",
                    "tool_call_id": "c1",
                    "content": "Exit code 1\nFAILED tests/test_x.py",
                },
            ],
        )


def test_alerts_on_a_real_proxy_feed_to_stdout_and_a_webhook(proxy, webhook, tmp_path, cli):
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[[alert]]\nuse = "same_failing_command"\nthreshold = 3\n'
        f'then = ["stdout", "{webhook}/hook", "http://127.0.0.1:9/down"]\n'
    )
    recorder = _tracebox("tail", "--url", proxy, "--json", cwd=tmp_path)
    run = _tracebox("alerts", "run", rules, "--proxy", proxy, "--json", "--once", "--webhook-timeout", "2", cwd=tmp_path)  # fmt: skip
    try:
        _wait(lambda: _subscribers(proxy) == 2, "the alert runner and the recorder to subscribe")
        _stuck_agent(proxy, "loop-1", 3)
        out, err = run.communicate(timeout=30)
    finally:
        _stop(run)
    assert run.returncode == 0, err
    (line,) = out.splitlines()
    fired = json.loads(line)
    assert fired["rule"] == "same_failing_command" and fired["value"] == 3
    assert fired["group"] == {
        "session": "loop-1",
        "tool_results.command": f"pytest --token {SECRET}",
    }
    assert fired["session"] == "loop-1" and fired["agent"] == "looper"
    assert fired["event"]["type"] == "call.start"
    # the webhook got it (scrubbed: it leaves the machine); the dead one is a warning only
    ((path, ctype, body),) = Hook.received
    assert path == "/hook" and ctype == "application/json" and body["rule"] == fired["rule"]
    assert SECRET not in json.dumps(body) and "[REDACTED:github]" in body["message"]
    assert "webhook http://127.0.0.1:9/down failed" in err
    # the recorded feed replays to the same firing, in event time
    time.sleep(0.3)  # the recorder's last events in flight
    _stop(recorder)
    (tmp_path / "events.jsonl").write_text(recorder.stdout.read())
    rules.write_text("[rules]\nsame_failing_command = 3\n")
    replayed = cli("alerts", "run", rules, "--file", tmp_path / "events.jsonl", check=True).stdout
    assert replayed.count("\n") == 1 and "ALERT same_failing_command  session=loop-1" in replayed
    assert f"`pytest --token {SECRET}` failed 3 times" in replayed


def test_alerts_on_the_bucket_event_log(tmp_path, cli):
    bucket = str(tmp_path / "bucket")
    cli("init", "--bucket", bucket, "--project", "p", "--agent", "lead", check=True)
    env = {"TRACEBOX_BUCKET": bucket, "TRACEBOX_PROJECT": "p"}
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[alert]]\nname = "flaky"\nwhere = { type = "test.failed", "data.suite" = "unit" }\n'
        'group_by = ["agent"]\nwindow = "10m"\nhaving = "count(*) >= 2"\n'
        'message = "{agent} failed the unit tests {value:.0f} times"\n'
    )

    def event(who, suite):
        data = json.dumps({"suite": suite})
        cli("--agent", who, "event", "test.failed", "--data", data, env=env, check=True)

    event("alice", "unit")  # before the runner starts: --since reaches back for it
    event("bob", "unit")
    run = _tracebox(
        "alerts", "run", rules, "--log", "--since", "5m", "--once", cwd=tmp_path, env=env
    )
    try:
        assert "1 rule(s) on --log" in run.stderr.readline()
        event("alice", "e2e")
        event("alice", "unit")
        out, err = run.communicate(timeout=30)
    finally:
        _stop(run)
    assert run.returncode == 0, err
    assert "ALERT flaky  agent=alice  alice failed the unit tests 2 times" in out
    r = cli("alerts", "run", rules, "--log", "--file", "x.jsonl", env=env)
    assert r.returncode == 2 and "choose one source" in r.stderr


def test_once_without_a_firing_exits_1(tmp_path, cli):
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules]\nsame_failing_command = 3\n")
    (tmp_path / "e.jsonl").write_text('{"type": "call.start", "session": "s"}\n')
    r = cli("alerts", "run", rules, "--file", tmp_path / "e.jsonl", "--once")
    assert r.returncode == 1 and "no rule fired" in r.stderr and r.stdout == ""
    r = cli("alerts", "run", rules, "--proxy", "http://127.0.0.1:9")
    assert r.returncode == 1 and "no tracebox proxy answers at http://127.0.0.1:9" in r.stderr


def test_bad_bucket_for_stop_is_a_usage_error(tmp_path, cli):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[alert]]\nuse = "no_progress"\nthreshold = "1s"\nthen = ["stop"]\n')
    r = cli("alerts", "run", rules, "--file", tmp_path / "none.jsonl")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_alerts_consuming_kafka(proxy, kafka, tmp_path, cli):
    """The proxy's feed published by `tracebox stream kafka --proxy`, consumed by
    `tracebox alerts run --kafka` (a real Kafka-protocol broker)."""
    import uuid

    bucket = str(tmp_path / "bucket")
    cli("init", "--bucket", bucket, "--project", "p", "--agent", "lead", check=True)
    env = {"TRACEBOX_BUCKET": bucket, "TRACEBOX_PROJECT": "p"}
    prefix = f"alerts-{uuid.uuid4().hex[:8]}"
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules]\nsame_failing_command = 3\n")
    bridge = _tracebox("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", prefix, "--proxy", proxy, cwd=tmp_path, env=env)  # fmt: skip
    run = _tracebox("alerts", "run", rules, "--kafka", kafka, "--topic-prefix", prefix, "--from-start", "--once", "--json", cwd=tmp_path)  # fmt: skip
    try:
        _wait(lambda: _subscribers(proxy) == 1, "the Kafka bridge to subscribe")
        _stuck_agent(proxy, "loop-k", 3, command="make test")
        out, err = run.communicate(timeout=60)
    finally:
        _stop(run)
        _stop(bridge)
    assert run.returncode == 0, err
    fired = json.loads(out)
    assert fired["rule"] == "same_failing_command" and fired["session"] == "loop-k"
    assert fired["group"] == {"session": "loop-k", "tool_results.command": "make test"}
    assert fired["event"]["type"] == "call.start" and fired["agent"] == "looper"
