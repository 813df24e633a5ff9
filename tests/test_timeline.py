"""Tests for tracebox.coord.timeline: the self-contained HTML timeline of a run."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tracebox.coord.timeline import category_of, render_html

HOSTILE = "</script><script>alert(1)</script>"
HOSTILE_IMG = '"><img src=x onerror=alert(2)>'
START = datetime(2026, 11, 22, 4, 15, 0, 123456, tzinfo=UTC)


# --------------------------------------------------------------------------- fixtures


def _ts(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RunBuilder:
    """Builds events the way the coordination layer writes them."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def add(self, at: float, agent: str, etype: str, step: str | None = None, **data) -> dict:
        n = len(self.events)
        ts = _ts(at)
        event = {
            "v": 1,
            "id": ts.replace("-", "").replace(":", "").replace(".", "") + f"-{n:08x}",
            "ts": ts,
            "agent": agent,
            "type": etype,
            "step": step,
            "data": data,
        }
        self.events.append(event)
        return event


def realistic_run() -> list[dict]:
    """Three agents over ~40 minutes: claims, a takeover, a blocked handoff, messages,
    memory, an artifact, an import and an unknown event type. Returned unsorted."""
    b = RunBuilder()
    b.add(0, "alice", "project.init", name="demo", format=1)
    for i, agent in enumerate(("alice", "bob", "carol")):
        b.add(2 + i, agent, "agent.heartbeat", harness="claude-code")
    b.add(10, "alice", "claim.acquire", "build", epoch=1, ttl_s=900, expires=_ts(910))
    b.add(14, "bob", "claim.acquire", "tests", epoch=1, ttl_s=900, expires=_ts(914))
    b.add(20, "carol", "claim.acquire", "docs", epoch=1, ttl_s=300, expires=_ts(320))
    b.add(60, "alice", "message.send", to="bob", message_id="m1", preview="API shape is in memory")
    b.add(75, "bob", "message.ack", count=1)
    b.add(90, "alice", "memory.set", key="api.schema", version=1)
    b.add(400, "alice", "claim.renew", "build", epoch=1, expires=_ts(1300))
    b.add(620, "alice", "artifact.upload", "build", name="wheel", sha256="ab" * 32, size=48213)
    b.add(
        640,
        "alice",
        "step.complete",
        "build",
        epoch=1,
        status="complete",
        note="wheel built",
        to="bob",
        next_action="run the tests against the wheel",
        changed_files=["pyproject.toml", "src/demo/__init__.py"],
    )
    b.add(660, "alice", "claim.release", "build", epoch=1)
    # carol stalls; her lease on "docs" expires at +320 s and bob takes over
    b.add(
        700,
        "bob",
        "claim.takeover",
        "docs",
        epoch=2,
        expires=_ts(1600),
        previous_owner="carol",
        previous_epoch=1,
        previous_expires=_ts(320),
    )
    b.add(900, "bob", "message.send", to="carol", message_id="m2", preview="took over docs")
    b.add(
        1200,
        "bob",
        "step.complete",
        "tests",
        epoch=1,
        status="blocked",
        note="integration tests need the S3 fixture",
        to="alice",
        next_action="add a seaweed fixture",
        changed_files=["tests/test_api.py"],
    )
    b.add(1210, "bob", "claim.release", "tests", epoch=1)
    b.add(1230, "alice", "message.send", to="_broadcast", message_id="m3", preview="fixing fixture")
    b.add(1300, "alice", "step.reopen", "tests", previous_status="blocked", reason="fixture added")
    b.add(1320, "alice", "claim.acquire", "tests", epoch=2, ttl_s=900, expires=_ts(2220))
    b.add(1500, "carol", "memory.delete", key="scratch.notes", version=3)
    b.add(1700, "bob", "step.complete", "docs", epoch=2, status="complete", note="docs done")
    b.add(
        2100,
        "alice",
        "step.complete",
        "tests",
        epoch=2,
        status="needs_review",
        note="green, please review",
        to="carol",
        changed_files=["tests/conftest.py"],
    )
    b.add(2150, "carol", "import.transcript", source="codex", sessions=2)
    b.add(2200, "carol", "weird.custom-type", anything=[1, 2, 3])
    events = b.events
    random.Random(7).shuffle(events)
    return events


def many_events(n: int = 10_000, agents: int = 6) -> list[dict]:
    """A large synthetic run with every event kind, for size, speed and responsiveness."""
    rng = random.Random(42)
    names = [f"agent-{k}" for k in range(agents)]
    b = RunBuilder()
    kinds = [
        ("agent.heartbeat", {}),
        ("claim.acquire", {"epoch": 1, "ttl_s": 300}),
        ("claim.renew", {"epoch": 1}),
        ("claim.release", {"epoch": 1}),
        ("step.complete", {"epoch": 1, "status": "complete", "note": "done", "changed_files": []}),
        ("message.send", {"message_id": "m", "preview": "hello there, see memory key"}),
        ("message.ack", {"count": 1}),
        ("memory.set", {"key": "a.b", "version": 2}),
        ("artifact.upload", {"name": "log", "sha256": "cd" * 32, "size": 1000}),
    ]
    for i in range(n):
        etype, data = kinds[rng.randrange(len(kinds))]
        data = dict(data)
        if etype == "message.send":
            data["to"] = rng.choice([*names, "_broadcast"])
        if etype in ("claim.acquire", "claim.renew"):
            data["expires"] = _ts(i * 0.7 + 300)
        if etype == "step.complete" and rng.random() < 0.05:
            data["status"] = "blocked"
        b.add(i * 0.7, rng.choice(names), etype, f"step-{rng.randrange(40)}", **data)
    return b.events


def payload(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="tb-data">(.*?)</script>', page, re.S)
    assert match, "embedded data block not found"
    return json.loads(match.group(1))


# --------------------------------------------------------------------------- unit tests


def test_page_is_self_contained() -> None:
    page = render_html(realistic_run(), title="demo run")
    assert page.startswith("<!DOCTYPE html>")
    svg_ns = "http://www.w3.org/2000/svg"
    urls = re.findall(r"https?://[^\s\"'<>)]*", page)
    assert set(urls) == {svg_ns}, urls
    assert page.count(svg_ns) == 1
    assert f'const NS = "{svg_ns}"' in page and "createElementNS(NS" in page
    assert not re.search(r"\b(src|href|srcset|action|poster)\s*=", page, re.I)
    assert "<link" not in page.lower() and "@import" not in page.lower()
    assert "//cdn" not in page and "fonts.googleapis" not in page
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", page))
    # no fetching APIs in the script, and a CSP that forbids network access anyway
    for api in ("fetch(", "XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon", "import("):
        assert api not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_csp_hashes_match_the_inline_script_and_style() -> None:
    page = render_html(realistic_run())
    csp = re.search(r'content="(default-src[^"]+)"', page).group(1)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(scripts) == 1 and len(styles) == 1

    def sha(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert f"script-src 'sha256-{sha(scripts[0])}'" in csp
    assert f"style-src 'sha256-{sha(styles[0])}'" in csp


def test_all_events_are_embedded_sorted_by_time() -> None:
    events = realistic_run()
    data = payload(render_html(events))
    assert [e["id"] for e in data["events"]] == [
        e["id"] for e in sorted(events, key=lambda e: e["ts"])
    ]
    assert data["events"][0]["type"] == "project.init"
    assert data["agents"] == ["alice", "bob", "carol"]
    times = [row[0] for row in data["rows"]]
    assert times == sorted(times)
    # the embedded events are the originals, untouched
    by_id = {e["id"]: e for e in events}
    assert all(by_id[e["id"]] == e for e in data["events"])


def test_rows_carry_category_variant_and_summary() -> None:
    data = payload(render_html(realistic_run()))
    cats = data["categories"]
    rows = {row[4] + "|" + row[5]: row for row in data["rows"]}
    blocked = rows["step.complete|tests"] if "step.complete|tests" in rows else None
    blocked = next(r for r in data["rows"] if r[4] == "step.complete" and r[3] == "blocked")
    assert cats[blocked[2]] == "step" and blocked[5] == "tests"
    assert blocked[6].startswith("blocked → alice: integration tests need the S3 fixture")
    takeover = next(r for r in data["rows"] if r[4] == "claim.takeover")
    assert takeover[3] == "takeover" and "took over from carol (epoch 1 → 2" in takeover[6]
    assert next(r for r in data["rows"] if r[3] == "review")[4] == "step.complete"
    assert next(r for r in data["rows"] if r[3] == "broadcast")[6] == "→ everyone: fixing fixture"
    unknown = next(r for r in data["rows"] if r[4] == "weird.custom-type")
    assert cats[unknown[2]] == "other" and unknown[6] == '{"anything":[1,2,3]}'
    artifact = next(r for r in data["rows"] if r[4] == "artifact.upload")
    assert artifact[6] == "wheel (47.1 KB, sha256 abababababab)"


def test_category_of() -> None:
    assert category_of("claim.takeover") == "claim"
    assert category_of("step.reopen") == "step"
    assert category_of("message.ack") == "message"
    assert category_of("memory.delete") == "memory"
    assert category_of("artifact.upload") == "artifact"
    for other in ("project.init", "agent.heartbeat", "import.anything", "claims", "", "other.x"):
        assert category_of(other) == "other"


def test_leases_end_at_release_complete_takeover_or_expiry() -> None:
    data = payload(render_html(realistic_run()))
    agents, rows = data["agents"], data["rows"]
    leases = {(agents[lease[0]], lease[7], lease[5]): lease for lease in data["leases"]}
    assert len(leases) == 5

    def t(seconds: float) -> float:
        return round((START + timedelta(seconds=seconds)).timestamp() * 1000, 3)

    build = leases[("alice", "build", "acquire")]
    assert (build[1], build[2], build[6]) == (t(10), t(640), "completed")
    assert rows[build[4]][4] == "claim.acquire"
    # carol's lease ends at its expiry, not at bob's later takeover
    docs_carol = leases[("carol", "docs", "acquire")]
    assert (docs_carol[2], docs_carol[6]) == (t(320), "takeover")
    docs_bob = leases[("bob", "docs", "takeover")]
    assert (docs_bob[1], docs_bob[2], docs_bob[6]) == (t(700), t(1700), "completed")
    tests_bob = leases[("bob", "tests", "acquire")]
    assert (tests_bob[2], tests_bob[6]) == (t(1200), "completed")
    # alice's second lease on "tests" completes with needs_review
    assert leases[("alice", "tests", "acquire")][2] == t(2100)


def test_unended_lease_uses_expires_and_renewals_extend_it() -> None:
    b = RunBuilder()
    b.add(0, "a", "claim.acquire", "s", epoch=1, expires=_ts(60))
    b.add(30, "a", "claim.renew", "s", epoch=1, expires=_ts(90))
    b.add(40, "b", "claim.release", "s", epoch=9)  # not the owner: ignored
    b.add(200, "b", "agent.heartbeat")
    b.add(0, "c", "claim.acquire", "open", epoch=1)  # no expiry at all: open to the end
    data = payload(render_html(b.events))
    by_agent = {data["agents"][lease[0]]: lease for lease in data["leases"]}
    start = START.timestamp() * 1000
    assert by_agent["a"][2] - start == pytest.approx(90_000)
    assert by_agent["a"][6] == "expired"
    assert by_agent["c"][2] - start == pytest.approx(200_000)
    assert by_agent["c"][6] == "open"


def test_lease_held_past_the_log_does_not_stretch_the_axis() -> None:
    b = RunBuilder()
    b.add(0, "a", "claim.acquire", "s", epoch=1, expires=_ts(90))  # held past the end
    b.add(1, "b", "claim.acquire", "far", epoch=1, expires="9999-12-31T23:59:59Z")
    b.add(20, "a", "agent.heartbeat")
    data = payload(render_html(b.events))
    start = START.timestamp() * 1000
    ends = {data["agents"][lease[0]]: (lease[2] - start, lease[6]) for lease in data["leases"]}
    assert ends == {"a": (pytest.approx(80_000), "held"), "b": (pytest.approx(80_000), "held")}
    assert data["range"][1] - start == pytest.approx(80_000)


def test_overlapping_leases_of_one_agent_get_separate_slots() -> None:
    b = RunBuilder()
    for k in range(3):
        b.add(k, "a", "claim.acquire", f"s{k}", epoch=1, expires=_ts(100))
    b.add(200, "a", "claim.acquire", "s9", epoch=1, expires=_ts(300))
    data = payload(render_html(b.events))
    assert sorted(lease[3] for lease in data["leases"]) == [0, 0, 1, 2]
    assert data["slots"] == [3]


def test_message_and_handoff_links_only_to_agents_with_lanes() -> None:
    data = payload(render_html(realistic_run()))
    agents, rows = data["agents"], data["rows"]
    links = {(agents[rows[i][1]], agents[to], kind) for i, to, kind in data["links"]}
    assert links == {
        ("alice", "bob", "message"),
        ("bob", "carol", "message"),
        ("alice", "bob", "handoff"),
        ("bob", "alice", "blocked"),
        ("alice", "carol", "handoff"),
    }


def test_hostile_strings_are_escaped() -> None:
    b = RunBuilder()
    b.add(0, HOSTILE, "claim.acquire", HOSTILE, epoch=1, expires=_ts(9))
    b.add(1, HOSTILE_IMG, HOSTILE, HOSTILE_IMG, note=HOSTILE, **{HOSTILE: HOSTILE})
    b.add(2, "x", "step.complete", "s", status="blocked", note=HOSTILE, to=HOSTILE)
    b.add(3, "y\u2028z", "message.send", to="x", preview="<!-- & -->")
    b.add(4, "@@JS@@", "@@DATA@@", "@@TITLE@@", note="@@CSS@@ @@CSP@@")
    page = render_html(b.events, title=HOSTILE)
    lower = page.lower()
    assert lower.count("<script") == 2 and lower.count("</script") == 2
    assert "<img" not in lower and "<!--" not in page
    assert "<title>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert page.isascii()
    data = payload(page)
    assert data["agents"][0] == HOSTILE and data["title"] == HOSTILE
    assert data["events"][1]["data"][HOSTILE] == HOSTILE
    assert data["events"][3]["agent"] == "y\u2028z"
    assert data["events"][4]["data"]["note"] == "@@CSS@@ @@CSP@@"
    # placeholders inside the data stay literal; outside it, none is left unfilled
    outside = re.sub(r'<script type="application/json".*?</script>', "", page, flags=re.S)
    assert "@@" not in outside and data["agents"][-1] == "@@JS@@"
    assert page.count("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # title, h1


def test_odd_events_still_render() -> None:
    events = [
        {"ts": "2026-11-22T04:15:00Z", "agent": "a", "type": "claim.acquire"},  # no data/step
        {"ts": "2026-11-22T04:16:00", "agent": "a", "type": "step.complete", "data": None},
        {"ts": "not a time", "agent": "b", "type": "memory.set", "data": {"key": "k"}},
        {"agent": 42, "type": ["weird"], "step": {"nested": True}, "data": "text"},
        {"ts": "2026-11-22T04:17:00+02:00", "type": "x.y", "data": {"v": float("nan")}},
        "not even a dict",
        {"ts": "2026-11-22T04:18:00Z", "agent": "a", "type": "z", "data": {(1, 2): "tuple"}},
    ]
    data = payload(render_html(events))
    assert len(data["events"]) == len(events)
    assert [row[0] is None for row in data["rows"]] == [False] * 4 + [True] * 3
    # +02:00 sorts before the naive (UTC) 04:15
    assert data["events"][0]["data"] == {"v": "nan"}
    assert data["agents"] == ["(no agent)", "a", "b", "42"]
    assert {row[4] for row in data["rows"]} >= {"(no type)", '["weird"]', "x.y"}
    assert data["events"][6] == "not even a dict"


def test_zero_and_one_event() -> None:
    empty = render_html([])
    data = payload(empty)
    assert data["events"] == [] and data["range"] is None and data["agents"] == []
    assert "No events" in empty
    one = payload(render_html(realistic_run()[:1]))
    assert len(one["rows"]) == 1 and one["range"][0] == one["range"][1]


def test_ten_thousand_events_render_small() -> None:
    events = many_events(10_000)
    page = render_html(events)  # speed is measured in benchmarks/, not asserted here
    assert len(page.encode()) < 5_000_000
    assert len(payload(page)["events"]) == 10_000


# --------------------------------------------------------------------------- browser tests


class Watched:
    """A page plus everything it did that a self-contained viewer must not do."""

    def __init__(self, browser, tmp_path: Path, events: list[dict], name: str = "run") -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = page = self.context.new_page()
        page.on("request", lambda req: self.requests.append(req.url))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._dialog)
        path = tmp_path / f"{name}.html"
        path.write_text(render_html(events, title=f"{name} run"), encoding="utf-8")
        self.url = path.as_uri()
        page.goto(self.url)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        external = [u for u in self.requests if not u.startswith(("file:", "data:", "about:"))]
        assert external == [], external
        assert self.requests == [self.url]

    def close(self) -> None:
        self.context.close()


def computed(page, selector: str, prop: str) -> str:
    """A computed style of the first match, read in one task (marks are redrawn each frame)."""
    return page.evaluate(
        "([sel, prop]) => getComputedStyle(document.querySelector(sel))[prop]", [selector, prop]
    )


def data_index(page, predicate_js: str) -> int:
    """Index in the embedded (sorted) event list of the first event matching a JS predicate."""
    return page.evaluate(
        f"""() => JSON.parse(document.getElementById('tb-data').textContent)
                   .events.findIndex({predicate_js})"""
    )


def test_browser_realistic_run(browser, tmp_path: Path) -> None:
    w = Watched(browser, tmp_path, realistic_run())
    page = w.page
    labels = page.locator("#tb-svg text.lane-label")
    assert labels.all_text_contents() == ["alice", "bob", "carol"]
    assert page.locator("#tb-stats").inner_text().split()[:4] == ["26", "events", "3", "agents"]
    assert page.locator("#tb-svg path.m").count() == 26
    assert page.locator("#tb-svg rect.lease").count() == 5
    assert page.locator("#tb-svg rect.lease.k-takeover").count() == 1
    assert page.locator("#tb-svg line.takeover-line").count() == 1
    assert page.locator("#tb-svg line.l-message").count() == 2  # broadcast is a mark only
    assert page.locator("#tb-svg line.l-blocked").count() == 1

    # the blocked handoff is red; an ordinary completion is not
    blocked = page.locator("#tb-svg path.m.v-blocked")
    assert blocked.count() == 1
    fill = computed(page, "#tb-svg path.m.v-blocked", "fill")
    assert fill == "rgb(220, 38, 38)"
    assert computed(page, "#tb-svg path.m.v-blocked", "stroke") == "rgb(127, 29, 29)"
    assert computed(page, "#tb-svg path.m.c-step.v-none", "fill") == "rgb(22, 163, 74)"
    assert page.locator("#tb-list .row.blocked").count() == 1

    # clicking a mark shows that event's full JSON, pretty-printed, collapsible
    i = data_index(page, "e => e.type === 'claim.takeover'")
    assert not page.locator("#tb-det-body").is_visible()
    page.locator(f'#tb-svg path.m[data-i="{i}"]').click()
    shown = page.locator("#tb-json").inner_text()
    event = json.loads(shown)
    assert event["type"] == "claim.takeover" and event["data"]["previous_owner"] == "carol"
    assert '\n  "data": {' in shown
    assert page.locator("#tb-det-type").inner_text() == "claim.takeover"
    assert page.locator("#tb-list .row.sel").count() == 1
    page.locator("#tb-json-box summary").click()
    assert not page.locator("#tb-json").is_visible()
    page.locator("#tb-json-box summary").click()
    assert page.locator("#tb-json").is_visible()

    # clicking a table row selects that event
    row = page.locator("#tb-list .row", has_text="memory.delete")
    row.click()
    assert json.loads(page.locator("#tb-json").inner_text())["type"] == "memory.delete"
    assert "sel" in row.get_attribute("class")
    # the rows are re-rendered (a scroll) between press and release: that row is selected
    row = page.locator("#tb-list .row", has_text="claim.takeover")
    box = row.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.evaluate("""() => new Promise((done) => {
        const inner = document.getElementById("tb-list-inner"), before = inner.firstChild;
        document.getElementById("tb-list").dispatchEvent(new Event("scroll"));
        const wait = () => inner.firstChild !== before ? done() : requestAnimationFrame(wait);
        requestAnimationFrame(wait);
    })""")
    page.mouse.up()
    assert json.loads(page.locator("#tb-json").inner_text())["type"] == "claim.takeover"

    # unchecking an agent hides its marks, lane and rows
    bob = str(
        page.evaluate(
            "() => JSON.parse(document.getElementById('tb-data').textContent).agents.indexOf('bob')"
        )
    )
    bob_marks = page.locator(f'#tb-svg path.m[data-a="{bob}"]')
    assert bob_marks.count() == 8
    page.locator('#tb-f-agents input[value="bob"]').uncheck()
    page.wait_for_function(f"() => !document.querySelector('#tb-svg path.m[data-a=\"{bob}\"]')")
    assert bob_marks.count() == 0
    assert labels.all_text_contents() == ["alice", "carol"]
    assert page.locator("#tb-svg path.m").count() == 18
    assert page.locator("#tb-list-count").inner_text() == "18 of 26 events"
    assert page.locator("#tb-list .row", has_text="claim.takeover").count() == 0
    page.locator('#tb-f-agents input[value="bob"]').check()
    page.wait_for_function("() => document.querySelectorAll('#tb-svg path.m').length === 26")

    # unchecking a category hides those marks (and the leases with the claims)
    page.locator('#tb-f-cats input[value="claim"]').uncheck()
    page.wait_for_function("() => !document.querySelector('#tb-svg rect.lease')")
    assert page.locator("#tb-svg path.m.c-claim").count() == 0
    assert page.locator("#tb-svg path.m").count() == 26 - 8
    page.locator('#tb-f-cats input[value="claim"]').check()
    page.wait_for_function("() => document.querySelectorAll('#tb-svg path.m').length === 26")

    # zoom and pan change the visible window; reset restores it
    def view() -> str:
        return page.locator("#tb-status").inner_text()

    def first_tick() -> str:
        return page.locator("#tb-svg text.tick:not(.cap)").first.text_content()

    whole = view()
    assert whole.startswith("26 events in view")
    page.locator("#tb-in").click()
    page.locator("#tb-in").click()
    page.wait_for_function(f"() => document.getElementById('tb-status').textContent !== {whole!r}")
    zoomed_ticks = first_tick()
    page.locator("#tb-right").click()
    page.wait_for_function(
        f"() => document.querySelector('#tb-svg text.tick:not(.cap)')"
        f".textContent !== {zoomed_ticks!r}"
    )
    page.locator("#tb-reset").click()
    page.wait_for_function(f"() => document.getElementById('tb-status').textContent === {whole!r}")
    box = page.locator("#tb-svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 60)
    page.mouse.wheel(0, -600)
    page.wait_for_function(f"() => document.getElementById('tb-status').textContent !== {whole!r}")
    before = first_tick()
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 60, steps=5)
    page.mouse.up()
    page.wait_for_function(
        f"() => document.querySelector('#tb-svg text.tick:not(.cap)').textContent !== {before!r}"
    )
    assert page.locator("#tb-json").inner_text()  # a drag is not a click: selection kept

    w.assert_clean()
    w.close()


def test_browser_hostile_names_do_not_execute(browser, tmp_path: Path) -> None:
    b = RunBuilder()
    b.add(0, HOSTILE, "claim.acquire", HOSTILE, epoch=1, expires=_ts(30))
    b.add(5, HOSTILE_IMG, "message.send", HOSTILE, to=HOSTILE, preview=HOSTILE_IMG)
    b.add(9, HOSTILE, "step.complete", HOSTILE, status="blocked", note=HOSTILE, to=HOSTILE_IMG)
    b.add(12, "<b>bold</b>", HOSTILE, None, **{HOSTILE: HOSTILE})
    w = Watched(browser, tmp_path, b.events, name="hostile")
    page = w.page
    assert page.locator("#tb-svg text.lane-label").count() == 3
    assert page.locator("#tb-f-agents .name").all_text_contents() == [
        HOSTILE,
        HOSTILE_IMG,
        "<b>bold</b>",
    ]
    page.locator("#tb-svg path.m").first.click()
    assert HOSTILE in page.locator("#tb-json").inner_text()
    for row in range(4):
        page.locator("#tb-list .row").nth(row).click()
    page.locator("#tb-svg path.m").last.hover()
    assert page.locator("#tb-tip").is_visible()
    # nothing from the data became markup
    assert page.locator("img").count() == 0 and page.locator("script").count() == 2
    assert page.evaluate(
        "() => [...document.querySelectorAll('b')].every(b => b.id || "
        "b.parentElement.className === 'stat')"
    )
    assert page.title() == "hostile run"
    page.wait_for_timeout(200)
    w.assert_clean()
    w.close()


def test_browser_zero_and_one_event(browser, tmp_path: Path) -> None:
    w = Watched(browser, tmp_path, [], name="empty")
    assert w.page.locator("#tb-empty").inner_text() == "No events"
    assert w.page.locator("#tb-list").inner_text() == "No events"
    w.assert_clean()
    w.close()

    w = Watched(browser, tmp_path, realistic_run()[:1], name="one")
    assert w.page.locator("#tb-svg path.m").count() == 1
    assert w.page.locator("#tb-svg text.tick:not(.cap)").count() >= 2
    w.page.locator("#tb-svg path.m").click()
    assert w.page.locator("#tb-json").inner_text()
    w.assert_clean()
    w.close()


def test_browser_ten_thousand_events_stay_responsive(browser, tmp_path: Path) -> None:
    w = Watched(browser, tmp_path, many_events(10_000), name="big")
    page = w.page
    assert page.locator("#tb-status").inner_text().startswith("10,000 events in view")
    # dense view: one merged path per look instead of 10,000 elements
    assert page.locator("#tb-svg *").count() < 1000
    assert page.locator("#tb-svg path.m.bulk").count() > 0
    assert page.locator("#tb-list .row").count() < 100  # the table is virtualised
    # wheel-zoom in and out, waiting for each frame to be drawn
    frame_ms = page.evaluate(
        """async () => {
          const svg = document.getElementById('tb-svg'), r = svg.getBoundingClientRect();
          const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
          const t = performance.now();
          for (let k = 0; k < 20; k++) {
            svg.dispatchEvent(new WheelEvent('wheel', {deltaY: k < 10 ? -150 : 150,
              clientX: r.left + r.width / 2, clientY: r.top + 50, bubbles: true, cancelable: true}));
            await frame(); await frame();
          }
          return (performance.now() - t) / 20;
        }"""
    )
    assert frame_ms >= 0  # the zoom ran to completion (speed belongs in benchmarks/)
    # a click on a merged path finds the nearest event of that lane
    page.locator("#tb-reset").click()
    page.wait_for_function(
        "() => document.getElementById('tb-status').textContent.startsWith('10,000 events')"
    )
    bulk = page.locator("#tb-svg path.m.bulk").first
    x, y = map(float, re.match(r"M([\d.]+),([\d.]+)", bulk.get_attribute("d")).groups())
    box = page.locator("#tb-svg").bounding_box()
    lane_of = page.evaluate(
        f"""() => {{
          const svg = document.getElementById('tb-svg');
          const label = [...svg.querySelectorAll('text.lane-label')]
            .find((t) => Math.abs(t.getBBox().y + t.getBBox().height / 2 - {y}) < 12);
          return label.textContent;
        }}"""
    )
    page.mouse.click(box["x"] + x, box["y"] + y)
    assert json.loads(page.locator("#tb-json").inner_text())["agent"] == lane_of
    # blocked handoffs stay individual, red elements even when dense
    page.wait_for_timeout(50)  # let the redraw after the click land
    assert computed(page, "#tb-svg path.m.v-blocked", "fill") == "rgb(220, 38, 38)"
    page.locator("#tb-list").evaluate("e => { e.scrollTop = 28 * 5000; }")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#tb-list .row')]"
        ".some(r => Number(r.dataset.i) >= 5000)"
    )
    page.locator("#tb-list .row").nth(10).click()
    assert json.loads(page.locator("#tb-json").inner_text())["id"]
    w.assert_clean()
    w.close()
