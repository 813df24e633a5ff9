"""`tracebox mcp` driven by the official `mcp` SDK client, against real server processes.

Every server is `python -m tracebox --agent X mcp` as a subprocess — over stdio (the
client spawns it) or streamable HTTP on a free loopback port. Results are checked
against the CLI's `--json` output for the same reads (the same text, byte for byte),
and refused operations against the CLI's one-line error for the same operation.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from coordkit import PROJECT, RawBucket, assert_error

CORPUS = Path(__file__).resolve().parent / "corpus"
SESSION = CORPUS / "claude-code" / "258c7280-ae70-4798-800f-63464d01a85d.jsonl"
TOOLS = {
    "agents",
    "steps",
    "claim",
    "renew",
    "release",
    "complete",
    "reopen",
    "handoff",
    "wait_for",
    "memory_get",
    "memory_set",
    "memory_list",
    "send",
    "inbox",
    "artifact_upload",
    "artifact_list",
    "artifact_download",
    "search",
    "observations",
}


def run_async(main) -> None:
    """``anyio.run(main)`` on a thread of its own: a session fixture (Playwright's sync
    API, for the UI tests) may hold an event loop running on the main thread."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, main).result()


class Mcp:
    """An SDK ``Client`` plus helpers: ``ok`` returns the parsed JSON of a successful
    call (its text content, which must equal its structured content when an object);
    ``err`` returns the error line and ``{kind, exit_code, message}`` of a failed one."""

    def __init__(self, client: Client):
        self.client = client

    async def text(self, tool: str, **args) -> str:
        r = await self.client.call_tool(tool, args)
        assert not r.is_error, r.content[0].text
        data = json.loads(r.content[0].text)
        assert r.structured_content == (data if isinstance(data, dict) else None)
        return r.content[0].text

    async def ok(self, tool: str, **args):
        return json.loads(await self.text(tool, **args))

    async def err(self, tool: str, **args) -> tuple[str, dict]:
        r = await self.client.call_tool(tool, args)
        assert r.is_error, r.content[0].text
        return r.content[0].text, r.structured_content["error"]

    async def read(self, uri: str) -> str:
        (c,) = (await self.client.read_resource(uri)).contents
        return c.text


@contextlib.asynccontextmanager
async def stdio(cwd: Path, agent: str, *extra: str, mode: str = "auto"):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tracebox", "--agent", agent, "mcp", *extra],
        cwd=str(cwd),
        env=dict(os.environ),
    )
    async with Client(params, mode=mode) as c:
        yield Mcp(c)


@contextlib.contextmanager
def http_server(cwd: Path, agent: str, *extra: str):
    """A `tracebox mcp --http --port 0` process; yields (url, first stderr line)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracebox",
            "--agent",
            agent,
            "mcp",
            "--http",
            "--port",
            "0",
            *extra,
        ],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        m = re.search(r"(http://\S+/mcp)", line)
        assert m, line + proc.stderr.read()
        yield m.group(1), line
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout.read() == ""  # nothing but the protocol, and that is HTTP here
        proc.stdout.close()
        proc.stderr.close()


@contextlib.asynccontextmanager
async def over_http(url: str, token: str | None = None, mode: str = "auto"):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as c:
            yield Mcp(c)


def _init(cli, bucket) -> Path:
    cli("init", "--bucket", bucket, "--project", PROJECT, "--agent", "alice", check=True)
    return cli.cwd


@pytest.fixture
def work(cli, tmp_path) -> Path:
    """A project (default agent alice) in a local bucket; its .tracebox.toml is in the
    CLI's work dir, where the servers run too."""
    return _init(cli, tmp_path / "bucket")


@pytest.fixture
def any_work(cli, bucket_url) -> Path:
    """The same in each kind of bucket: a local folder, and S3 (SeaweedFS)."""
    return _init(cli, bucket_url)


def same_error(proc: subprocess.CompletedProcess, line: str, info: dict) -> None:
    """The CLI refused the same operation with the same line and exit status."""
    assert assert_error(proc, info["exit_code"]) == line
    assert line == f"tracebox: error: {info['message']}"


# --------------------------------------------------------------------------- listing


def test_lists_tools_and_resources_with_schemas(work):
    async def main():
        async with stdio(work, "alice") as m:
            tools = {t.name: t for t in (await m.client.list_tools()).tools}
            assert set(tools) == TOOLS
            for t in tools.values():
                assert t.description and t.input_schema["type"] == "object"
                assert t.input_schema["additionalProperties"] is False
            assert tools["claim"].input_schema["required"] == ["step"]
            assert tools["wait_for"].input_schema["properties"]["steps"]["minItems"] == 1
            assert tools["handoff"].annotations.read_only_hint is True
            assert tools["claim"].annotations.read_only_hint is False
            uris = {r.uri: r.mime_type for r in (await m.client.list_resources()).resources}
            assert uris == {
                "tracebox://inbox": "application/json",
                "tracebox://observations": "text/markdown",
                "tracebox://observations.jsonl": "application/jsonl",
            }
            line, info = await m.err("claim", step=7)
            assert info["kind"] == "UsageError" and info["exit_code"] == 2
            assert line == "tracebox: error: claim: Expected `str`, got `int` - at `$.step`"
            _, info = await m.err("steps", surprise=True)
            assert info["kind"] == "UsageError" and "surprise" in info["message"]

    run_async(main)


# --------------------------------------------------------------------------- claims


def test_two_agents_race_for_one_step(any_work, cli):
    """Two servers (alice, bob) claim one step at the same moment: exactly one wins.
    The loser's error is the library's, as the CLI prints it in that race (the CAS
    lost, or the winner's lease already there); its next try equals the CLI's."""
    work, results, servers = any_work, {}, {}
    go, done = anyio.Event(), anyio.Event()

    async def contender(agent: str) -> None:
        async with stdio(work, agent) as m:
            servers[agent] = m
            await go.wait()
            results[agent] = await m.client.call_tool("claim", {"step": "build"})
            await done.wait()

    async def main():
        async with anyio.create_task_group() as tg:
            for agent in ("alice", "bob"):
                tg.start_soon(contender, agent)
            while len(servers) < 2:
                await anyio.sleep(0.01)
            go.set()
            while len(results) < 2:
                await anyio.sleep(0.01)
            winners = [a for a, r in results.items() if not r.is_error]
            assert len(winners) == 1, {a: r.content[0].text for a, r in results.items()}
            winner, loser = winners[0], next(a for a in results if a not in winners)
            lease = json.loads(results[winner].content[0].text)
            assert (lease["owner"], lease["epoch"]) == (winner, 1)
            lost = results[loser].structured_content["error"]
            assert (lost["kind"], lost["exit_code"]) == ("Refused", 1)
            assert lost["message"] in (
                "step build was claimed concurrently by another agent",
                f"step build is already claimed by {winner} (epoch 1, "
                f"lease expires {lease['expires']})",
            )
            line, info = await servers[loser].err("claim", step="build")
            proc = await anyio.to_thread.run_sync(lambda: cli("--agent", loser, "claim", "build"))
            same_error(proc, line, info)
            assert info["message"].startswith(f"step build is already claimed by {winner}")
            done.set()
        steps = await anyio.to_thread.run_sync(lambda: cli.json("steps"))
        assert [(s["step"], s["owner"], s["epoch"]) for s in steps] == [("build", winner, 1)]

    run_async(main)


def test_step_lifecycle_and_handoff(work, cli):
    async def main():
        async with stdio(work, "alice", mode="legacy") as m:  # the handshake era, too
            lease = await m.ok("claim", step="build", ttl="10m")
            renewed = await m.ok("renew", step="build", ttl=1200, epoch=lease["epoch"])
            assert renewed["epoch"] == 1 and renewed["expires"] > lease["expires"]
            line, info = await m.err("renew", step="build", epoch=7)
            same_error(cli("renew", "build", "--epoch", "7"), line, info)
            released = await m.ok("release", step="build")
            assert released["status"] == "open" and released["lease"] is None
            again = await m.ok("claim", step="build")
            assert again["epoch"] == 2
            line, info = await m.err("complete", step="build", blocked=True, needs_review=True)
            assert info["exit_code"] == 2
            assert line == "tracebox: error: use at most one of --blocked and --needs-review"
            done = await m.ok(
                "complete",
                step="build",
                note="binary in dist/",
                to="bob",
                next_action="run the e2e suite",
                changed_files=["src/a.py", "README.md"],
            )
            h = done["handoffs"][-1]
            assert (h["status"], h["by"], h["to"], h["epoch"]) == ("complete", "alice", "bob", 2)
            assert h["changed_files"] == ["src/a.py", "README.md"]
            assert await m.text("handoff", step="build") == cli(
                "handoff", "show", "build", "--json", check=True
            ).stdout.rstrip("\n")
            assert await m.text("steps") == cli("steps", "--json", check=True).stdout.rstrip()
            line, info = await m.err("handoff", step="nope")
            assert info["kind"] == "NotFound"
            same_error(cli("handoff", "show", "nope"), line, info)
            line, info = await m.err("claim", step="build")
            same_error(cli("claim", "build"), line, info)
            reopened = await m.ok("reopen", step="build", reason="flaky")
            assert reopened["status"] == "open"
            assert cli.json("handoff", "show", "build")["status"] == "open"
            agents = await m.ok("agents")
            assert [a["agent"] for a in agents] == ["alice"] and agents[0]["alive"]

    run_async(main)


def test_wait_for_times_out_and_completes_while_serving_others(work, cli):
    async def main():
        async with stdio(work, "alice") as m:
            line, info = await m.err("wait_for", steps=["deploy"], timeout=0.5)
            assert info["kind"] == "Refused"
            assert line == "tracebox: error: timed out after 0.5s waiting for deploy=pending"
            same_error(cli("wait-for", "deploy", "--timeout", "0.5"), line, info)

            waited: dict = {}

            async def wait() -> None:
                waited["result"] = await m.ok("wait_for", steps=["deploy", "build"], timeout=20)

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                # the server answers other calls while the wait is pending
                await m.ok("memory_set", key="deploy.target", value="prod")
                await m.ok("send", to="bob", message="waiting for deploy")
                assert "result" not in waited
                for step in ("build", "deploy"):
                    await anyio.to_thread.run_sync(
                        lambda s=step: (
                            cli("--agent", "bob", "claim", s, check=True),
                            cli("--agent", "bob", "complete", s, check=True),
                        )
                    )
            assert waited["result"] == {"deploy": "complete", "build": "complete"}
            assert waited["result"] == cli.json("wait-for", "deploy", "build")

            await anyio.to_thread.run_sync(
                lambda: (
                    cli("--agent", "bob", "claim", "ship", check=True),
                    cli("--agent", "bob", "complete", "ship", "--blocked", "--note", "no creds"),
                )
            )
            line, info = await m.err("wait_for", steps=["ship"], timeout=60)
            assert line == "tracebox: error: step ship is blocked (by bob): no creds"

    run_async(main)


# --------------------------------------------------------------------------- memory, messages


def test_memory_compare_and_swap(work, cli):
    async def main():
        async with stdio(work, "alice") as m:
            first = await m.ok("memory_set", key="build.status", value={"ok": True, "n": 1})
            assert (first["version"], first["by"]) == (1, "alice")
            assert await m.ok("memory_get", key="build.status") == {"ok": True, "n": 1}
            assert cli.json("memory", "get", "build.status") == {"ok": True, "n": 1}
            line, info = await m.err("memory_set", key="build.status", value=2, if_version=0)
            assert (info["kind"], info["exit_code"]) == ("Refused", 1)
            assert "version" in info["message"]
            same_error(cli("memory", "set", "build.status", "2", "--if-version", "0"), line, info)
            second = await m.ok("memory_set", key="build.status", value=[1, 2], if_version=1)
            assert second["version"] == 2
            meta = await m.text("memory_get", key="build.status", meta=True)
            assert meta == cli("memory", "get", "build.status", "--meta", "--json").stdout.rstrip()
            assert json.loads(meta)["value"] == [1, 2]
            line, info = await m.err("memory_get", key="no.such")
            same_error(cli("memory", "get", "no.such"), line, info)
            line, info = await m.err("memory_set", key="bad key!", value=1)
            same_error(cli("memory", "set", "bad key!", "1"), line, info)
            assert info["exit_code"] == 2
            assert await m.text("memory_list") == cli("memory", "list", "--json").stdout.rstrip()

    run_async(main)


def test_send_inbox_and_inbox_resource(work, cli):
    async def main():
        async with stdio(work, "bob") as bob, stdio(work, "alice", mode="legacy") as alice:
            sent = await bob.ok("send", to="alice", message="build is green")
            assert (sent["from"], sent["to"]) == ("bob", "alice")
            await bob.ok("send", all=True, message="standup in 5")
            line, info = await bob.err("send", message="to nobody")
            assert info["exit_code"] == 2 and "`to`" in line
            listed = await alice.text("inbox")
            assert [(x["from"], x["body"], x["read"]) for x in json.loads(listed)] == [
                ("bob", "build is green", False),
                ("bob", "standup in 5", False),
            ]
            assert listed == cli("inbox", "--json", check=True).stdout.rstrip()
            assert await alice.read("tracebox://inbox") == listed
            counted = await alice.text("inbox", count=True)
            assert counted == cli("inbox", "--count", "--json").stdout.rstrip()
            assert json.loads(counted) == {"count": 2, "unread": 2}
            assert len(await alice.ok("inbox", unread=True, ack=True)) == 2
            assert cli.json("inbox", "--unread") == []
            assert await alice.ok("inbox", unread=True) == []
            assert [x["read"] for x in json.loads(await alice.read("tracebox://inbox"))] == [
                True,
                True,
            ]

    run_async(main)


# --------------------------------------------------------------------------- artifacts


def test_artifact_upload_list_download(work, cli, tmp_path):
    data = os.urandom(300_000)
    src = work / "report.bin"
    src.write_bytes(data)
    inline = b'{"coverage": 91.5}\n'

    async def main():
        async with stdio(work, "alice") as m:
            meta = await m.ok("artifact_upload", path="report.bin", step="build")
            assert (meta["name"], meta["size"], meta["step"]) == ("report.bin", len(data), "build")
            meta2 = await m.ok(
                "artifact_upload",
                content_base64=base64.b64encode(inline).decode(),
                name="coverage.json",
            )
            assert (meta2["size"], meta2["filename"]) == (len(inline), "coverage.json")
            listed = await m.text("artifact_list")
            assert listed == cli("artifact", "list", "--json", check=True).stdout.rstrip()
            assert {a["name"] for a in json.loads(listed)} == {"report.bin", "coverage.json"}
            assert [a["name"] for a in await m.ok("artifact_list", step="build")] == ["report.bin"]
            got = await m.ok("artifact_download", name="report.bin", output=str(tmp_path / "d"))
            assert Path(got["path"]).read_bytes() == data

            line, info = await m.err("artifact_upload", path=str(tmp_path / "missing.bin"))
            assert (info["kind"], info["exit_code"]) == ("UsageError", 2)
            assert line == f"tracebox: error: no such file: {tmp_path / 'missing.bin'}"
            assert cli("artifact", "upload", tmp_path / "missing.bin").returncode == 2
            _, info = await m.err("artifact_upload", content_base64="***", name="x.bin")
            assert info["message"] == "content_base64 is not valid base64"
            _, info = await m.err("artifact_upload", content_base64="AAAA")
            assert info["exit_code"] == 2
            _, info = await m.err("artifact_upload", path="report.bin", content_base64="AAAA")
            assert info["exit_code"] == 2

    run_async(main)
    out = tmp_path / "cov.json"
    cli("artifact", "download", "coverage.json", "-o", out, check=True)
    assert out.read_bytes() == inline


# --------------------------------------------------------------------------- search, observations


def test_search_over_a_mirrored_corpus_session(cli, tmp_path, monkeypatch):
    claude = tmp_path / "claude"
    shutil.copytree(CORPUS / "claude-code", claude / "projects" / "-work-demo")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(claude))
    monkeypatch.setenv("TRACEBOX_INDEX", str(tmp_path / "index.db"))
    cli("init", "--bucket", tmp_path / "bucket", "--project", PROJECT, "--agent", "alice")
    cli("session", "mirror", "--harness", "claude-code", "--all-projects", check=True)
    built = cli.json("index", "--bucket")
    assert built["added"] >= 1 and built["failed"] == 0
    expected = cli("search", "the", "--limit", "50", "--no-refresh", "--json", check=True).stdout
    assert json.loads(expected)

    async def main():
        async with stdio(cli.cwd, "alice") as m:
            hits = await m.text("search", query="the", limit=50, refresh=False)
            assert hits == expected.rstrip()
            assert all("/p/sessions/claude-code/" in h["origin"] for h in json.loads(hits))
            assert await m.ok("search", query="zzqqxx-nothing", refresh=False) == []
            _, info = await m.err("search", query="the", kind="nonsense")
            assert info["exit_code"] == 2

    run_async(main)


def test_observations_tool_and_resources(work, cli, tmp_path):
    obs = tmp_path / "obs"
    report = cli.json("observe", SESSION, "--out", obs)
    assert report["counts"]["important"] >= 1

    async def main():
        async with stdio(work, "alice", "--observations", str(obs)) as m:
            got = await m.ok("observations")
            assert got["source"] == str(obs)
            assert got["entries"] == report["entries"] and got["counts"] == report["counts"]
            important = await m.ok("observations", priority="important", limit=1)
            assert important["entries"] == [report["entries"][0]]
            assert important["entries"][0]["priority"] == "important"
            md = await m.read("tracebox://observations")
            assert md == (obs / "observations.md").read_text() and "[important]" in md
            jsonl = await m.read("tracebox://observations.jsonl")
            assert jsonl == (obs / "observations.jsonl").read_text()

        # without a folder: the last generation of the newest harness run in the bucket
        raw = RawBucket(str(tmp_path / "bucket"))
        base = f"{PROJECT}/harness/demo-20261201T000000"
        raw.put(f"{base}/run.json", json.dumps({"generations": [{"generation": 1}]}).encode())
        raw.put(f"{base}/gen-1/observations.md", (obs / "observations.md").read_bytes())
        raw.put(f"{base}/gen-1/observations.jsonl", (obs / "observations.jsonl").read_bytes())
        async with stdio(work, "alice") as m:
            got = await m.ok("observations")
            assert got["source"] == "harness/demo-20261201T000000/gen-1"
            assert got["entries"] == report["entries"]
            assert await m.read("tracebox://observations") == (obs / "observations.md").read_text()
            _, info = await m.err("observations", run="no-such-run")
            assert info["kind"] == "NotFound"

    run_async(main)


def test_observations_resource_without_any_is_an_error(work):
    async def main():
        async with stdio(work, "alice") as m:
            with pytest.raises(Exception) as e:
                await m.read("tracebox://observations")
            assert "no observations yet" in str(e.value)
            _, info = await m.err("observations")
            assert info["kind"] == "NotFound"

    run_async(main)


# --------------------------------------------------------------------------- HTTP


def test_streamable_http_with_a_token(work, cli):
    with http_server(work, "alice", "--token", "s3cret-token") as (url, banner):
        assert url.startswith("http://127.0.0.1:") and "s3cret-token" not in banner

        async def main():
            async with over_http(url, "s3cret-token") as m:
                names = {t.name for t in (await m.client.list_tools()).tools}
                assert names == TOOLS
                lease = await m.ok("claim", step="build")
                assert lease["owner"] == "alice"
                await m.ok("complete", step="build", note="via http")
                assert await m.text("handoff", step="build") == (
                    cli("handoff", "show", "build", "--json", check=True).stdout.rstrip()
                )
            async with over_http(url, "s3cret-token", mode="legacy") as m:
                line, info = await m.err("claim", step="build")
                same_error(cli("claim", "build"), line, info)
            with pytest.raises(BaseException):  # noqa: B017 - refused before any MCP exchange
                async with over_http(url, "wrong"):
                    pass

        run_async(main)


def test_http_off_loopback_generates_a_token(work):
    # 127.0.0.2 is loopback on Linux, but not one of the names `ui`/`mcp` trust
    with http_server(work, "bob", "--host", "127.0.0.2") as (url, banner):
        token = re.search(r"Bearer (\S+)\)", banner).group(1)

        async def main():
            async with over_http(url, token) as m:
                assert "bob" in [a["agent"] for a in await m.ok("agents", alive=True)]
            with pytest.raises(BaseException):  # noqa: B017
                async with over_http(url):
                    pass

        run_async(main)


# --------------------------------------------------------------------------- CLI errors


def test_cli_usage_and_missing_project(cli, work):
    assert_error(cli("mcp", "--port", "9000"), 2, "--port: only with --http")
    p = cli("--project", "ghost", "mcp")
    assert_error(p, 1, "project 'ghost' does not exist")
    assert p.stdout == ""
