"""Spool durability with real processes: SIGKILL mid-burst, then a new process replays.

Every record acknowledged (``submit`` returned) before the kill must end up in the bucket
exactly once: one call record and one session marker per exchange id, nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tracebox.project import init_project, open_project

PROJECT = "demo"
WRITER = r"""
import json, sys
from tracebox.capture.proxy.exchange import Exchange
from tracebox.capture.proxy.spool import Spool
from tracebox.coord.context import iso, new_id, now
from tracebox.project import open_project

bucket, root, mode, ship = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
project = open_project(bucket, "demo", "alice")
sp = Spool(root=root, project=project, segment_bytes=64_000, ship=ship)
if sp.status()["shipper"].get("pid"):
    print("shipper", sp.status()["shipper"]["pid"], flush=True)
if mode == "drain":
    ok = sp.drain(120)
    print(json.dumps(sp.status()), flush=True)
    sp.close()
    sys.exit(0 if ok else 1)
limit = int(sys.argv[4])
i = 0
while i < limit:
    req = {"model": "m", "messages": [{"role": "user", "content": f"turn {i} " + "y" * 2000}]}
    resp = {"id": f"r{i}", "choices": [{"message": {"role": "assistant", "content": f"a{i}"}}]}
    x = Exchange(id=new_id(), provider="openai-chat", method="POST",
                 path="/v1/chat/completions", upstream="http://u", started=iso(now()),
                 request_body=json.dumps(req).encode(), status=200,
                 response_body=json.dumps(resp).encode(),
                 request_headers={"x-tracebox-session": f"s{i % 4}"})
    sp.submit(x)
    print(x.id, flush=True)  # acknowledged
    i += 1
if mode == "burst-drain":  # a shipper process that dies is restarted: all of it ships
    ok = sp.drain(120)
    print(json.dumps(sp.status()), flush=True)
    sp.close()
    sys.exit(0 if ok else 1)
import time
time.sleep(600)  # wait for the kill (or the shipper's fault-injected exit)
"""


@pytest.fixture(params=["thread", "process"])
def setup(bucket_url, tmp_path, request):
    """(bucket URL, spool folder, writer script, where the shipper runs)."""
    init_project(bucket_url, PROJECT, "alice")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return bucket_url, str(tmp_path / "spool"), str(script), request.param


def _bucket_ids(bucket_url) -> tuple[list[str], list[str]]:
    p = open_project(bucket_url, PROJECT, "alice")
    calls = [
        m.key.rsplit("/", 1)[1].removesuffix(".json") for m in p.store.list(f"{PROJECT}/calls/")
    ]
    markers = [m.key.rsplit("/", 1)[1] for m in p.store.list(f"{PROJECT}/calls-by-session/")]
    return calls, markers


def _burst(
    setup, acks: int, limit: int, env: dict | None = None, kill: bool = True, mode="burst"
) -> tuple[list[str], int, list[str]]:
    """Run the writer (``limit`` records at most) until ``acks`` are acknowledged, then
    SIGKILL it (``kill``) or wait for it to end on its own. Returns the acknowledged ids,
    the exit code and the other lines it printed."""
    bucket_url, root, script, ship = setup
    proc = subprocess.Popen(
        [sys.executable, script, bucket_url, root, mode, str(limit), ship],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while sum(_is_id(x) for x in lines) < acks and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        if kill and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        # lines already printed before the kill are acknowledged too
        rest = proc.stdout.read()  # (not communicate(): it skips what readline buffered)
        proc.wait(timeout=150)
        lines += [line.strip() for line in rest.splitlines() if line.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return [x for x in lines if _is_id(x)], proc.returncode, [x for x in lines if not _is_id(x)]


def _is_id(line: str) -> bool:
    return not line.startswith(("shipper ", "{"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for init is gone too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _replay(setup) -> dict:
    bucket_url, root, script, ship = setup
    out = subprocess.run(
        [sys.executable, script, bucket_url, root, "drain", "0", ship],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def _assert_exactly_once(bucket_url, acked: list[str]) -> None:
    calls, markers = _bucket_ids(bucket_url)
    assert len(calls) == len(set(calls)) and len(markers) == len(set(markers))
    assert sorted(calls) == sorted(markers)
    missing = set(acked) - set(calls)
    assert not missing, f"{len(missing)} acknowledged records lost"
    # at most the one record appended when the kill came, before its ack was printed
    assert len(set(calls) - set(acked)) <= 1


def test_sigkill_mid_burst_then_replay(setup):
    acked, rc, other = _burst(setup, acks=300, limit=100_000)
    assert rc == -signal.SIGKILL and len(acked) >= 300
    if setup[3] == "process":  # the shipper process sees the proxy go and ends too
        pid = int(other[0].split()[1])
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    status = _replay(setup)
    assert status["depth_records"] == 0 and status["rejected"] == 0
    _assert_exactly_once(setup[0], acked)


def test_killed_between_bucket_write_and_cursor_then_replay(setup):
    """The shipper dies after its 2nd batch reached the bucket, before the cursor moved:
    the replay re-ships that batch and must not duplicate anything."""
    env = {"TRACEBOX_TEST_SPOOL_DIE_AFTER_BATCHES": "2"}
    if setup[3] == "process":
        # the shipper process dies, the proxy restarts it; the new one re-ships the batch
        acked, rc, other = _burst(
            setup, acks=400, limit=400, env=env, kill=False, mode="burst-drain"
        )
        status = json.loads(other[-1])
        assert rc == 0 and status["depth_records"] == 0 and status["shipper"]["restarts"] >= 1
        _assert_exactly_once(setup[0], acked)
        return
    acked, rc, _ = _burst(setup, acks=400, limit=400, env=env, kill=False)
    assert rc == 137 and acked
    calls_before, _ = _bucket_ids(setup[0])
    assert calls_before  # something was shipped before the crash
    status = _replay(setup)
    assert status["depth_records"] == 0
    _assert_exactly_once(setup[0], acked)
