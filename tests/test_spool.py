"""The proxy spool: local append, background shipping, cursor, replay, torn records, outages."""

from __future__ import annotations

import json
import os
import zlib

import pytest

from tracebox.capture.proxy import spool as spool_mod
from tracebox.capture.proxy.exchange import Exchange, from_bytes
from tracebox.capture.proxy.spool import Spool
from tracebox.coord.context import iso, new_id, now
from tracebox.project import init_project, open_project

PROJECT = "demo"


@pytest.fixture(params=["thread", "process"])
def ship(request) -> str:
    """Where the shipper runs: a thread of the writer, or a child process of its own."""
    return request.param


@pytest.fixture
def project(bucket_url):
    init_project(bucket_url, PROJECT, "alice")
    return open_project(bucket_url, PROJECT, "alice")


def _x(i: int, size: int = 200) -> Exchange:
    req = {"model": "m", "messages": [{"role": "user", "content": f"message {i} " + "x" * size}]}
    resp = {
        "id": f"r{i}",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": f"answer {i}"},
            }
        ],
    }
    return Exchange(
        id=new_id(),
        provider="openai-chat",
        method="POST",
        path="/v1/chat/completions",
        upstream="http://u",
        started=iso(now()),
        request_body=json.dumps(req).encode(),
        status=200,
        response_body=json.dumps(resp).encode(),
        request_headers={"x-tracebox-session": f"s{i % 3}"},
    )


def _call_ids(project) -> list[str]:
    keys = [m.key for m in project.store.list(f"{PROJECT}/calls/")]
    return [k.rsplit("/", 1)[1].removesuffix(".json") for k in keys]


def _markers(project) -> list[str]:
    return [m.key.rsplit("/", 1)[1] for m in project.store.list(f"{PROJECT}/calls-by-session/")]


def _segments(root) -> list[str]:
    return sorted(n for n in os.listdir(root) if n.endswith(".seg"))


def test_append_ship_cursor_and_rotation(project, tmp_path, ship):
    root = tmp_path / "spool"
    xs = [_x(i, size=3000) for i in range(60)]
    with Spool(root=str(root), project=project, segment_bytes=20_000, ship=ship) as sp:
        for x in xs:
            sp.submit(x)
        assert sp.drain(60), sp.status()
        status = sp.status()
        assert status["depth_records"] == 0 and status["depth_bytes"] == 0
        assert status["shipped"] == 60 and status["appended"] == 60
        assert status["last_error"] is None
    assert sorted(_call_ids(project)) == sorted(x.id for x in xs)
    assert sorted(_markers(project)) == sorted(x.id for x in xs)
    cursor = json.loads((root / "cursor.json").read_text())
    assert cursor["shipped"] == 60
    # rotated segments were deleted once shipped: only the last one may remain
    assert len(_segments(root)) <= 1


def test_records_are_framed_with_length_and_crc(tmp_path):
    root = tmp_path / "spool"
    xs = [_x(i) for i in range(3)]
    with Spool(root=str(root), ship=False, fsync="always") as sp:
        for x in xs:
            sp.submit(x)
    (seg,) = _segments(root)
    data = (root / seg).read_bytes()
    assert data.startswith(b"TBSPOOL1")
    pos, got = 8, []
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        crc = int.from_bytes(data[pos + 4 : pos + 8], "big")
        payload = data[pos + 8 : pos + 8 + size]
        assert zlib.crc32(payload) == crc
        got.append(from_bytes(payload))
        pos += 8 + size
    assert got == xs


def test_unshipped_records_replay_on_next_start(project, tmp_path, ship):
    root = tmp_path / "spool"
    xs = [_x(i) for i in range(25)]
    with Spool(root=str(root), ship=False) as sp:
        for x in xs:
            sp.submit(x)
        assert sp.status()["depth_records"] == 25
    assert _call_ids(project) == []
    with Spool(root=str(root), project=project, ship=ship) as sp:
        assert sp.drain(60), sp.status()
    assert sorted(_call_ids(project)) == sorted(x.id for x in xs)
    # and a third start ships nothing again
    with Spool(root=str(root), project=project, ship=ship) as sp:
        assert sp.status()["depth_records"] == 0
        assert sp.drain(5)
    assert len(_call_ids(project)) == 25


def test_torn_last_record_is_ignored(project, tmp_path, ship):
    root = tmp_path / "spool"
    xs = [_x(i) for i in range(5)]
    with Spool(root=str(root), ship=False) as sp:
        for x in xs:
            sp.submit(x)
    (seg,) = _segments(root)
    path = root / seg
    data = path.read_bytes()
    last = len(spool_mod.encode_record(xs[-1]))
    path.write_bytes(data[: len(data) - last // 2])  # a machine crash mid-write
    with Spool(root=str(root), project=project, ship=ship) as sp:
        assert sp.status()["depth_records"] == 4
        assert sp.drain(60), sp.status()
        assert sp.status()["rejected"] == 0
    assert sorted(_call_ids(project)) == sorted(x.id for x in xs[:4])
    # a record with a bad checksum (bit rot) stops that segment the same way
    with Spool(root=str(root), ship=False) as sp:
        sp.submit(_x(99))
    seg = _segments(root)[-1]  # the newest segment holds the new record
    p = root / seg
    b = bytearray(p.read_bytes())
    b[-3] ^= 0xFF
    p.write_bytes(bytes(b))
    with Spool(root=str(root), project=project, ship=ship) as sp:
        assert sp.drain(30)
    assert len(_call_ids(project)) == 4


def test_bucket_down_then_up(tmp_path, ship):
    bucket = tmp_path / "bucket"
    init_project(str(bucket), PROJECT, "alice")
    project = open_project(str(bucket), PROJECT, "alice")
    away = tmp_path / "away"
    with Spool(root=str(tmp_path / "spool"), project=project, ship=ship) as sp:
        os.rename(bucket, away)  # the bucket is gone, a file in its place: writes fail
        bucket.write_bytes(b"")
        xs = [_x(i) for i in range(10)]
        for x in xs:
            sp.submit(x)  # never blocks, never fails
        assert not sp.drain(1.5)
        status = sp.status()
        assert status["depth_records"] == 10 and status["last_error"]
        assert status["oldest_unshipped_age_s"] is not None
        bucket.unlink()
        os.rename(away, bucket)  # back: the spool drains
        assert sp.drain(60), sp.status()
    assert sorted(_call_ids(project)) == sorted(x.id for x in xs)


def test_one_process_per_spool(tmp_path):
    from tracebox.errors import Refused

    with Spool(root=str(tmp_path / "s"), ship=False):
        with pytest.raises(Refused):
            Spool(root=str(tmp_path / "s"), ship=False)


def test_hostile_exchange_is_rejected_not_blocking(project, tmp_path, ship):
    bad = Exchange(
        id="../../x",
        provider="gemini",
        method="POST",
        path="/x",
        upstream="u",
        started="not a time",
        request_body=b"\xff\xfe{",
        status=200,
        response_body=b"[1, 2, {" * 1000,
    )
    xs = [bad, _x(1)]
    with Spool(root=str(tmp_path / "spool"), project=project, ship=ship) as sp:
        for x in xs:
            sp.submit(x)
        assert sp.drain(30), sp.status()
    ids = _call_ids(project)
    assert xs[1].id in ids and len(ids) == 2  # the odd one is stored under a safe id
    assert all("/" not in i and ".." not in i for i in ids)


def test_close_takes_over_from_a_shipper_process_that_never_runs(project, tmp_path):
    """A shipper process runs at the lowest CPU priority; on a busy machine it may get no
    CPU at all. Closing then kills it and ships the rest itself: nothing is left behind.
    (SIGSTOP stands for 'never scheduled'.)"""
    import signal

    sp = Spool(root=str(tmp_path / "spool"), project=project, ship="process")
    child = sp._child
    try:
        assert sp.drain(30)  # the child is up and idle
        os.kill(child.pid, signal.SIGSTOP)
        xs = [_x(i) for i in range(12)]
        for x in xs:
            sp.submit(x)
    finally:
        sp.close(drain_timeout=20)
    assert child.poll() is not None  # it was stopped for good, not left behind
    assert sorted(_call_ids(project)) == sorted(x.id for x in xs)
    assert json.loads((tmp_path / "spool" / "cursor.json").read_text())["shipped"] == 12
    with Spool(root=str(tmp_path / "spool"), project=project, ship=False) as again:
        assert again.status()["depth_records"] == 0
