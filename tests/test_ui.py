"""`tracebox ui` end to end in real headless Chromium (Debian's, driven by Playwright).

The bucket is filled by a scripted run: agents coordinating (claims, a takeover, a
blocked handoff, messages, memory, an artifact), a real Claude Code session from the
corpus mirrored, a 5,000-step synthetic session, a harness run (scripted agents through
the proxy), and a capsule pushed and resolved. Every page is loaded and screenshotted
(tests/artifacts/ui/*.png); a timeline event is clicked to its details; a session is
stepped through with the keyboard; a search result is followed into its step; a live
event appears while an agent acts. No page may request anything outside the UI's origin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "examples" / "harness_demo"))
import failing_session  # noqa: E402
import scenario  # noqa: E402

from conftest import isolate  # noqa: E402
from tracebox.project import init_project, open_project  # noqa: E402

SHOTS = ROOT / "tests" / "artifacts" / "ui"
CORPUS = ROOT / "tests" / "corpus" / "claude-code"
BIG_STEPS = 5000


def _big_session(folder: Path, cwd: str) -> str:
    sid = "5f5f5f5f-0000-4000-8000-000000000001"
    lines = []
    for i in range(BIG_STEPS):
        kind = "user" if i % 2 == 0 else "assistant"
        msg = {
            "role": kind,
            "content": f"step {i}: " + ("question" if kind == "user" else "answer"),
        }
        if kind == "assistant":
            msg.update(
                id=f"msg_{i}",
                model="claude-sonnet-4-5",
                usage={"input_tokens": 3, "output_tokens": 2},
            )
        lines.append(
            json.dumps(
                {
                    "type": kind,
                    "sessionId": sid,
                    "cwd": cwd,
                    "uuid": f"u{i}",
                    "timestamp": f"2026-12-01T11:{i // 600:02d}:{(i // 10) % 60:02d}.{i % 10}00Z",
                    "message": msg,
                }
            )
        )
    (folder / f"{sid}.jsonl").write_text("\n".join(lines) + "\n")
    return sid


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # before any test's own isolation: our own
        root = tmp_path_factory.mktemp("ui")
        yield from _world(root, isolate(mp, root / "env"))


def _world(root: Path, home: Path):
    bucket = str(root / "bucket")
    init_project(bucket, "demo", "alice")
    p = {a: open_project(bucket, "demo", a) for a in ("alice", "bob", "carol")}
    p["alice"].claim("plan", ttl="10m")
    p["alice"].complete("plan", note="plan done", to="bob")
    p["bob"].claim("api", ttl="1s")
    time.sleep(3.3)  # past the lease and the clock-skew allowance (2 s)
    p["carol"].claim("api", ttl="10m")  # takes over the expired lease
    p["carol"].complete("api", note="api done")
    p["bob"].claim("deploy", ttl="10m")
    p["bob"].complete("deploy", blocked=True, note="no credentials")
    p["alice"].send("bob", "can you deploy?")
    p["bob"].memory.set("build.status", {"ok": True})
    art = root / "app.tar"
    art.write_bytes(b"x" * 1000)
    p["carol"].artifact.upload(str(art))

    # sessions: a real Claude Code transcript and a 5,000-step one, mirrored into the bucket
    cwd = str(root / "proj")
    os.makedirs(cwd)
    folder = home / ".claude" / "projects" / re.sub("[^A-Za-z0-9]", "-", cwd)
    folder.mkdir(parents=True)
    src = CORPUS / "tool_heavy.jsonl"
    (folder / src.name).write_text(
        src.read_text().replace(
            '"cwd":"/home/marco/projects/spotter"', json.dumps({"cwd": cwd})[1:-1]
        )
    )
    big = _big_session(folder, cwd)
    from tracebox.capture import mirror

    with mirror.Mirror(p["alice"], final=True) as m:
        done = m.mirror_many(mirror.find_sessions(["claude-code"], cwd=None))
    assert {r.status for r in done} == {"uploaded"}, done

    # a harness run, and a capsule pushed and resolved
    server = scenario.ModelServer()
    os.environ["TRACEBOX_UPSTREAM_OPENAI"] = server.url
    from tracebox.harness import config, run

    repo = scenario.make_repo(root)
    try:
        cfg = config.load(str(scenario.write_harness(root, repo, generations=2)))
        rid = run.run(cfg, p["alice"])["run"]
    finally:
        server.close()
        del os.environ["TRACEBOX_UPSTREAM_OPENAI"]
    s = failing_session.make_failing_session(root / "calc")
    tb = [sys.executable, "-m", "tracebox"]
    env = {**os.environ, "TRACEBOX_BUCKET": bucket, "TRACEBOX_PROJECT": "demo"}
    cap = root / "cap"
    subprocess.run(
        [*tb, "capsule", "create", str(s["transcript"]), "--out", str(cap), "--push"],
        check=True,
        env=env,
        capture_output=True,
    )
    cid = json.loads((cap / "capsule.json").read_text())["id"]
    failing_session.fix(s["work"])
    subprocess.run(
        [*tb, "capsule", "resolve", cid, "--fixed-in", "fix", "--verify", "--repo", str(s["bare"])],
        check=True,
        env=env,
        capture_output=True,
    )

    # the UI, in a thread, on a free port, with its own index
    import uvicorn

    from tracebox.capture.proxy.server import bind
    from tracebox.ui.app import create_app

    index = str(root / "index.db")
    app = create_app(p["alice"], index_path=index)
    app.state.ui.reindex(force=True)
    sock = bind("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield {
        "url": url,
        "project": p,
        "run": rid,
        "capsule": cid,
        "big": big,
        "bucket": bucket,
        "root": root,
    }
    srv.should_exit = True
    thread.join(10)


class Page:
    """A browser page that records every request and every script error."""

    def __init__(self, browser, origin: str):
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on(
            "response", lambda r: r.status >= 400 and self.errors.append(f"{r.status} {r.url}")
        )
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def goto(self, path: str):
        resp = self.page.goto(self.origin + path)
        assert resp is not None and resp.status == 200, (path, resp and resp.status)
        return self.page

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)

    def assert_clean(self) -> None:
        outside = [u for u in self.requests if not u.startswith(self.origin + "/")]
        assert outside == [], outside
        assert self.errors == [], self.errors

    def close(self):
        self.context.close()


def test_every_page_loads_and_stays_in_its_origin(world, browser):
    w = Page(browser, world["url"])
    try:
        pages = {
            "home": "/",
            "runs": "/runs",
            "sessions": "/sessions",
            "session": f"/sessions/claude-code/{world['big']}",
            "search": "/search?q=connection",
            "stats": "/stats?by=model",
            "observations": "/observations",
            "harness": "/harness",
            "harness-run": f"/harness/{world['run']}",
            "capsules": "/capsules",
            "capsule": f"/capsules/{world['capsule']}",
        }
        for name, path in pages.items():
            page = w.goto(path)
            assert page.locator("header.nav").count() == 1
            w.shot(name)
        page = w.goto("/sessions")
        assert (
            page.locator("table.grid tbody tr").count() >= 6
        )  # 2 transcripts + 3 harness sessions + …
        page = w.goto("/observations")
        assert page.locator(".prio-important .obs").count() >= 3
        assert "FAILED the validator" in page.locator(".prio-important").inner_text()
        page = w.goto(f"/harness/{world['run']}")
        assert page.locator("svg.chart, svg").count() >= 2 and "winning change" in page.content()
        page = w.goto(f"/capsules/{world['capsule']}")
        text = page.locator(".page").inner_text()
        assert (
            "resolved" in text
            and "assert -1 == 5" in text
            and "fixed in fix" in text.replace("\n", " ")
        )
        replays = page.locator("section.card", has_text="Replay verdicts").inner_text()
        assert "fixed" in replays and "exit code 0" in replays  # resolve --verify's replay
        page = w.goto("/stats?by=model")
        assert page.locator("svg.chart").count() == 2 and "claude-sonnet-4-5" in page.content()
        w.assert_clean()
    finally:
        w.close()


def test_the_home_page_tells_what_happened(world, browser):
    w = Page(browser, world["url"])
    try:
        page = w.goto("/")
        moves = page.locator("section.card", has_text="Handoffs, blocks and takeovers")
        blocked = moves.locator("tr.row-bad", has_text="no credentials")
        assert blocked.count() == 1 and "deploy" in blocked.inner_text()
        assert "bob → carol" in moves.locator("tr", has_text="takeover").first.inner_text()
        assert "alice → bob" in moves.inner_text()
        runs = page.locator("section.card", has_text="Harness runs").inner_text()
        solved = json.loads(
            (Path(world["bucket"]) / "demo" / "harness" / world["run"] / "run.json").read_text()
        )["generations"]
        assert " → ".join(f"{g['solved']}/{g['variants']}" for g in solved) in runs
        caps = page.locator("section.card", has_text="Capsules").inner_text()
        assert world["capsule"] in caps and "resolved" in caps
        page.locator("section.card a", has_text=world["capsule"]).click()
        page.wait_for_url(f"**/capsules/{world['capsule']}")
        w.assert_clean()
    finally:
        w.close()


def test_click_a_timeline_event_to_its_details(world, browser):
    w = Page(browser, world["url"])
    try:
        page = w.goto("/runs")
        assert page.locator("#tb-svg path.m").count() > 10
        find = (  # the index of the first event matching a JS predicate
            "(f) => JSON.parse(document.getElementById('tb-data').textContent).events"
            ".findIndex(new Function('e', 'return ' + f))"
        )
        deploy = page.evaluate(find, "e.type === 'step.complete' && e.step === 'deploy'")
        mark = page.locator(f'#tb-svg path.m[data-i="{deploy}"]')
        assert "v-blocked" in mark.get_attribute("class")  # the blocked handoff, red
        i = page.evaluate(find, "e.type === 'claim.takeover'")
        assert i >= 0
        page.locator(f'#tb-svg path.m[data-i="{i}"]').click()
        event = json.loads(page.locator("#tb-json").inner_text())
        assert event["type"] == "claim.takeover" and event["agent"] == "carol"
        w.shot("runs-details")
        # the harness agents' model calls and tool calls are marks on their lanes; a tool
        # call's details link to its step in the session
        assert page.locator("#tb-svg path.m.c-llm").count() >= 8
        assert page.locator("#tb-svg path.m.c-tool").count() >= 8
        t = page.evaluate(find, "e.type === 'tool.call' && e.data.tool === 'run'")
        page.locator(f'#tb-svg path.m[data-i="{t}"]').click()
        assert json.loads(page.locator("#tb-json").inner_text())["data"]["tool"] == "run"
        page.locator("#tb-det-meta a", has_text="open this step").click()
        page.wait_for_url("**/sessions/proxy/**")
        focus = page.locator("article.step.focus")
        assert focus.count() == 1 and "run" in focus.inner_text()
        w.assert_clean()
    finally:
        w.close()


def test_step_through_a_session_with_the_keyboard(world, browser):
    w = Page(browser, world["url"])
    try:
        page = w.goto(f"/sessions/claude-code/{world['big']}")
        assert page.locator("#steps > article.step").count() == 200  # paginated
        assert "page 1 of 25" in page.locator(".pager").first.inner_text()
        page.keyboard.press("j")
        page.keyboard.press("j")
        assert page.evaluate("() => document.querySelector('article.step.focus').id") == "step-1"
        assert page.evaluate("() => location.hash") == "#step-1"
        page.keyboard.press("k")
        assert page.evaluate("() => document.querySelector('article.step.focus').id") == "step-0"
        page.keyboard.press("n")
        page.wait_for_url("**page=2**")
        assert page.locator("#step-200").count() == 1
        # a link to any step opens the page holding it, focused
        page = w.goto(f"/sessions/claude-code/{world['big']}?step=4321#step-4321")
        assert page.evaluate("() => document.querySelector('article.step.focus').id") == "step-4321"
        assert "page 22 of 25" in page.locator(".pager").first.inner_text()
        w.shot("session-big")
        # the real session: tool results, errors highlighted; e jumps to the next error
        sid = json.loads((CORPUS / "tool_heavy.jsonl").read_text().splitlines()[1]).get("sessionId")
        page = w.goto(f"/sessions/claude-code/{sid}")
        assert page.locator(".result").count() > 3
        w.shot("session-real")
        w.assert_clean()
    finally:
        w.close()


def test_search_and_follow_a_result_into_its_step(world, browser):
    w = Page(browser, world["url"])
    try:
        page = w.goto("/search")
        page.fill("input[name=q]", "lost updates")
        page.click("form.search button")
        page.wait_for_url("**q=lost+updates**")
        hits = page.locator("ol.hits a.hit")
        assert hits.count() >= 1
        assert page.locator("ol.hits mark").count() >= 1
        href = hits.first.get_attribute("href")
        step = href.rsplit("#step-", 1)[1]
        hits.first.click()
        page.wait_for_load_state()
        assert (
            page.evaluate(
                "() => document.querySelector('.step.focus') && document.querySelector('.step.focus').id"
            )
            == f"step-{step}"
        )
        assert "lost updates" in page.locator(f"#step-{step}").inner_text()
        w.shot("search-followed")
        w.assert_clean()
    finally:
        w.close()


def test_a_live_event_appears_while_an_agent_acts(world, browser):
    w = Page(browser, world["url"])
    try:
        page = w.goto("/runs")
        before = page.evaluate(
            "() => JSON.parse(document.getElementById('tb-data').textContent).events.length"
        )
        subprocess.run(
            [sys.executable, "-m", "tracebox", "send", "alice", "live hello"],
            check=True,
            env={
                **os.environ,
                "TRACEBOX_BUCKET": world["bucket"],
                "TRACEBOX_PROJECT": "demo",
                "TRACEBOX_AGENT": "dave",
            },
            capture_output=True,
        )
        page.wait_for_selector("#live-feed li:has-text('message.send')", timeout=15_000)
        page.wait_for_function(
            f"() => JSON.parse(document.getElementById('tb-data').textContent).events.length > {before}",
            timeout=15_000,
        )
        assert (
            page.locator("#tb-svg text.lane-label", has_text="dave").count() == 1
        )  # a new lane, no reload
        w.shot("runs-live")
        w.assert_clean()
    finally:
        w.close()


def test_a_model_call_through_the_proxy_appears_live(world, browser):
    """The runs page relays the running proxy's feed: a call made with the official
    OpenAI SDK through `tracebox proxy` shows in the live feed as it happens."""
    import openai

    from tracebox.capture.proxy.server import state_file

    model = scenario.ModelServer()
    env = {
        **os.environ,
        "TRACEBOX_BUCKET": world["bucket"],
        "TRACEBOX_PROJECT": "demo",
        "TRACEBOX_AGENT": "erin",
    }
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracebox",
            "proxy",
            "--port",
            "0",
            "--upstream",
            f"openai={model.url}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    w = Page(browser, world["url"])
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(state_file()) and time.monotonic() < deadline:
            assert proxy.poll() is None, proxy.stderr.read()
            time.sleep(0.05)
        url = json.loads(Path(state_file()).read_text())["url"]
        page = w.goto("/runs")
        deadline = time.monotonic() + 15  # the page's EventSource, relayed by the UI
        while (
            json.loads(urllib.request.urlopen(url + "/_tracebox/status").read())["feed"][
                "subscribers"
            ]
            < 1
        ):
            assert time.monotonic() < deadline, "the page never subscribed to the proxy's feed"
            time.sleep(0.1)
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-live", messages=[{"role": "user", "content": "fix the counter"}]
        )
        assert reply.choices[0].message.tool_calls  # the scripted model answered
        page.wait_for_selector("#live-feed li.call:has-text('call.end')", timeout=15_000)
        assert "gpt-live" in page.locator("#live-feed li.call").first.inner_text()
        w.shot("runs-live-call")
        w.assert_clean()
    finally:
        w.close()
        proxy.terminate()
        proxy.wait(20)
        model.close()


def test_read_only_and_token(world):
    req = urllib.request.Request(world["url"] + "/runs", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 405
    with urllib.request.urlopen(world["url"] + "/runs") as resp:
        csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    # a token, when set, is required
    from starlette.testclient import TestClient

    from tracebox.ui.app import create_app

    app = create_app(
        world["project"]["alice"], index_path=str(world["root"] / "index.db"), token="s3cret"
    )
    with TestClient(app) as c:
        assert c.get("/runs").status_code == 401
        ok = c.get("/runs?token=s3cret")
        assert ok.status_code == 200 and "tb_token" in ok.headers.get("set-cookie", "")
        assert c.get("/sessions").status_code == 200  # the cookie now


def test_cli_prints_the_url_and_refuses_an_open_host_without_a_token(world):
    env = {**os.environ, "TRACEBOX_BUCKET": world["bucket"], "TRACEBOX_PROJECT": "demo"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracebox", "ui", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert line.startswith("tracebox ui: http://127.0.0.1:")
        url = line.split()[2]
        for _ in range(50):
            try:
                with urllib.request.urlopen(url + "api/health") as r:
                    assert json.loads(r.read())["ok"]
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("no answer")
    finally:
        proc.terminate()
        proc.wait(10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracebox", "ui", "--port", "0", "--host", "0.0.0.0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "?token=" in line  # a random token, printed once
    finally:
        proc.terminate()
        proc.wait(10)
