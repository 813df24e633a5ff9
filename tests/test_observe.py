"""The observer: rules on synthetic sessions with known failures and on the real corpus,
evidence that can be checked, fingerprint merging, the Markdown budget, the CLI, and the
optional model pass (against a local OpenAI-compatible server the test runs)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tracebox.capture import harnesses
from tracebox.observe import llm, merge, render, rules
from tracebox.scrub import Scrubber
from tracebox.trace.export import scrub_session
from tracebox.trace.model import Session, Step, StepError, Text, ToolCall, ToolResult, Usage

CORPUS = Path(__file__).parent / "corpus"
TB = [sys.executable, "-m", "tracebox"]


def _session(sid: str = "s-1", tmp: str = "/tmp/pytest-of-x/run1", line: int = 12) -> Session:
    steps: list[Step] = []

    def add(source, *parts, error=None, usage=None):
        steps.append(
            Step(
                index=len(steps),
                source=source,
                timestamp=f"2026-12-01T10:00:{len(steps):02d}.000000Z",
                parts=list(parts),
                error=error,
                usage=usage,
                response_id=f"r{len(steps)}" if usage else None,
            )
        )

    def run(cid, cmd, out, code):
        add("agent", ToolCall(id=cid, name="Bash", arguments={"command": cmd}))
        add("tool", ToolResult(call_id=cid, output=out, is_error=code != 0, exit_code=code))

    fail = (  # as pytest -q prints it
        "...F\n=================================== FAILURES ===================================\n"
        "___________________________________ test_get ___________________________________\n"
        f"{tmp}/x.py:{line}: in test_get\n    assert r.status == 200\n"
        "E   AssertionError: expected 200, got 500\n"
        "=========================== short test summary info ============================\n"
        "FAILED tests/test_api.py::test_get - AssertionError: expected 200, got 500\n"
        "1 failed, 3 passed in 0.42s"
    )
    add("user", Text(text="Make GET /items return 200 under load."))
    add(
        "agent",
        Text(text="I think the handler races on the cache. Let me look."),
        usage=Usage(input=100, output=20),
    )
    add("agent", ToolCall(id="r1", name="Read", arguments={"file_path": "/w/app/cache.py"}))
    add("tool", ToolResult(call_id="r1", output="def get(k): ..."))
    add("agent", ToolCall(id="r2", name="Read", arguments={"file_path": "/w/app/cache.py"}))
    add("tool", ToolResult(call_id="r2", output="def get(k): ..."))
    run("c1", "python -m pytest -q", fail, 1)
    add(
        "agent",
        ToolCall(
            id="e1",
            name="Edit",
            arguments={"file_path": "/w/app/api.py", "old_string": "x = 1", "new_string": "x = 2"},
        ),
    )
    add("tool", ToolResult(call_id="e1", output="ok"))
    run("c2", "python -m pytest -q", fail, 1)
    add(
        "agent",
        ToolCall(
            id="e2",
            name="Edit",
            arguments={"file_path": "/w/app/api.py", "old_string": "x = 2", "new_string": "x = 1"},
        ),
    )
    add("tool", ToolResult(call_id="e2", output="ok"))
    run("c3", "python -m pytest -q", fail, 1)
    for i in range(5):
        add(
            "agent",
            ToolCall(
                id=f"h{i}",
                name="Edit",
                arguments={
                    "file_path": "/w/app/big.py",
                    "old_string": f"a{i}",
                    "new_string": f"b{i}",
                },
            ),
        )
    add(
        "agent",
        ToolCall(
            id="w1",
            name="Write",
            arguments={"file_path": "/w/tests/test_load.py", "content": "def test_load(): ..."},
        ),
    )
    add(
        "agent",
        Text(text="calling the model"),
        error=StepError(kind="api_error", message="overloaded_error: Overloaded", status=529),
    )
    return Session(
        id=sid,
        harness="claude-code",
        cwd="/w",
        models=["claude-sonnet-4-5"],
        started="2026-12-01T10:00:00.000000Z",
        ended="2026-12-01T10:05:00.000000Z",
        steps=steps,
    )


def _content(s: Session, step: int) -> str:
    return rules._call_text(s, step)


def test_rules_find_the_known_failures_with_checkable_evidence():
    s = _session()
    found = rules.observe_session(s)
    kinds = {(o.priority, o.kind) for o in found}
    for want in [
        ("important", "error"),
        ("important", "failed_fix"),
        ("important", "loop"),
        ("important", "reverted_edit"),
        ("important", "api_error"),
        ("possible", "heavy_edit"),
        ("possible", "hypothesis"),
        ("possible", "test_added"),
        ("informational", "goal"),
        ("informational", "usage"),
        ("informational", "time"),
        ("informational", "dead_end"),
    ]:
        assert want in kinds, want
    err = next(o for o in found if o.kind == "error")
    assert "AssertionError: expected 200, got 500" in err.title  # the real error line
    loop = next(o for o in found if o.kind == "loop")
    assert loop.data["times"] == 3
    fix = next(o for o in found if o.kind == "failed_fix")
    assert fix.data["files"] == ["app/api.py"]
    for o in found:
        for ev in o.evidence:
            assert len(ev.quote) <= rules.QUOTE_MAX
            assert ev.quote and ev.quote in _content(s, ev.step), (o.kind, ev)


def test_a_session_with_no_failures_has_no_important_entries():
    s = _session()
    s.steps = [st for st in s.steps[:4]]
    assert not [o for o in rules.observe_session(s) if o.priority == "important"]


def test_fingerprints_merge_the_same_finding_across_sessions():
    a = rules.observe_session(_session("s-a", tmp="/tmp/pytest-of-x/run1", line=12))
    b = rules.observe_session(_session("s-b", tmp="/tmp/pytest-of-y/run77", line=15))
    entries = merge.merge(a, generation=1)
    entries = merge.merge(b, into=entries, generation=2)
    errors = [e for e in entries.values() if e["kind"] == "error"]
    assert len(errors) == 1  # paths, numbers and temp folders abstracted
    e = errors[0]
    assert e["count"] == 6 and e["sessions"] == 2 and e["generations"] == [1, 2]
    assert {ev["session"] for ev in e["evidence"]} == {"s-a", "s-b"}
    assert e["first_seen"] <= e["last_seen"]
    goals = [e for e in entries.values() if e["kind"] == "goal"]
    assert len(goals) == 1 and goals[0]["sessions"] == 2


def test_markdown_is_ordered_and_within_its_budget():
    entries = merge.merge(rules.observe_session(_session()))
    md = render.render(entries, budget=1200)
    assert len(md) <= 1200 + 100  # the "N more" line may pass it
    assert md.index("[important]") < md.find("[possible]") if "[possible]" in md else True
    assert "more in observations.jsonl" in md
    full = render.render(entries, budget=100_000)
    assert (
        full.index("## [important]")
        < full.index("## [possible]")
        < full.index("## [informational]")
    )


def test_jsonl_round_trip_and_hostile_lines(tmp_path):
    entries = merge.merge(rules.observe_session(_session()))
    path = tmp_path / "observations.jsonl"
    merge.write_jsonl(str(path), entries)
    back = merge.read_jsonl(str(path))
    assert set(back) == set(entries)
    path.write_text(path.read_text() + "not json\n" + json.dumps({"priority": "evil"}) + "\n[1]\n")
    assert set(merge.read_jsonl(str(path))) == set(entries)


def _corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*.jsonl") if "subagents" not in p.parts)


def test_important_evidence_in_the_real_corpus_quotes_its_step():
    scrub = Scrubber(env={}).scrub_text
    checked = 0
    files = _corpus_files()
    assert len(files) >= 5
    for path in files:
        tree = scrub_session(harnesses.detect(path).parse(path), scrub)
        by_id = {tree.id: tree, **{s.id: s for s in tree.subagents}}
        for o in rules.observe_session(tree):
            if o.priority != "important":
                continue
            for ev in o.evidence:
                s = by_id[ev.session]
                assert ev.quote in _content(s, ev.step), (path.name, o.kind, ev.step)
                checked += 1
    assert checked >= 20


def test_cli_accumulates_into_out(tmp_path):
    s1 = CORPUS / "claude-code" / "258c7280-ae70-4798-800f-63464d01a85d.jsonl"
    out = tmp_path / "obs"
    for _ in range(2):
        p = subprocess.run(
            [*TB, "observe", str(s1), "--out", str(out)], capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
    entries = merge.read_jsonl(str(out / "observations.jsonl"))
    assert entries and all(e["count"] % 2 == 0 for e in entries.values())  # seen twice
    md = (out / "observations.md").read_text()
    assert md.startswith("# Observations") and "[important]" in md
    p = subprocess.run([*TB, "observe"], capture_output=True, text=True)
    assert p.returncode == 2 and "SESSION" in p.stderr


# -- the optional model pass ------------------------------------------------------------------


class _Fake(BaseHTTPRequestHandler):
    answer: dict = {}
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append((self.headers.get("authorization"), body))
        reply = {
            "choices": [{"message": {"role": "assistant", "content": json.dumps(self.answer)}}]
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def fake_model():
    server = HTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_llm_pass_reorders_within_priority_and_never_invents(fake_model, monkeypatch):
    entries = merge.merge(rules.observe_session(_session()))
    important = [e["fingerprint"] for e in merge.ordered(entries) if e["priority"] == "important"]
    last = important[-1]
    _Fake.answer = {
        "order": [last, "f" * 16, "not-an-id"],
        "summary": "Use a lock; do not edit api.py.",
    }
    monkeypatch.setenv("MY_KEY", "sk-test")
    cfg = {
        "base_url": f"http://127.0.0.1:{fake_model.server_port}/v1",
        "model": "m",
        "api_key_env": "MY_KEY",
    }
    out, summary = llm.rerank(entries, cfg)
    assert merge.ordered(out)[0]["fingerprint"] == last  # moved to the top of [important]
    assert set(out) == set(entries)  # nothing added or removed
    assert [e["evidence"] for e in merge.ordered(out)] != [] and all(
        out[k]["evidence"] == entries[k]["evidence"] for k in entries
    )
    assert "a model's words" in summary and "Use a lock" in summary
    assert _Fake.seen[-1][0] == "Bearer sk-test"
    # a broken answer leaves the rule order
    _Fake.answer = {"order": "nope"}
    out2, summary2 = llm.rerank(entries, cfg)
    assert summary2 is None and merge.ordered(out2)[0]["fingerprint"] == important[0]


def test_llm_pass_needs_its_config():
    from tracebox.errors import ConfigError

    with pytest.raises(ConfigError):
        llm.rerank({}, None)
