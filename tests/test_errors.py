"""Errors (issue item 5): missing bucket, wrong credentials, unreachable endpoint, odd
names, invalid UTF-8, oversized values, damaged objects, a newer bucket format.

Every failure must be ONE line on stderr (no traceback) with the documented exit code
(1: refused/failed, 2: bad input), and must leave the bucket exactly as it was.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

import tracebox
from coordkit import PROJECT, RawBucket, assert_error, cli_all, without_heartbeats
from tracebox.errors import FormatError, UsageError


@pytest.fixture
def raw(cli, bucket_url) -> RawBucket:
    """Project ``p`` with one claimed step, one memory key and one message in it."""
    cli.json("init", "--bucket", bucket_url, "--project", PROJECT, "--agent", "alice")
    cli("claim", "build", check=True)
    cli("memory", "set", "k", "1", check=True)
    cli("send", "bob", "hi", check=True)
    return RawBucket(bucket_url)


# --------------------------------------------------------------------------- backend


def test_missing_local_bucket_folder(cli, tmp_path):
    missing = tmp_path / "no-such-folder"
    base = ["--bucket", missing, "--project", PROJECT]
    calls = [["steps"], ["claim", "x"], ["log"], ["send", "bob", "hi"], ["memory", "list"]]
    for proc in cli_all(cli, *[[*base, *args] for args in calls]):
        assert_error(proc, 1, str(missing), "does not exist", "tracebox init")
    assert not missing.exists(), "a failed command must not create the bucket"
    # no bucket configured at all
    assert_error(cli("steps"), 2, "no bucket configured", "tracebox init")


@pytest.mark.s3
def test_s3_bucket_that_does_not_exist(cli, seaweed, monkeypatch):
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    name = f"nosuch-{uuid.uuid4().hex[:12]}"
    base = ["--bucket", f"s3://{name}/x", "--project", PROJECT]
    calls = [["steps"], ["claim", "x"], ["memory", "set", "k", "1"], ["log"], ["send", "b", "x"]]
    for proc in cli_all(cli, *[[*base, *args] for args in calls]):
        assert_error(proc, 1, f"s3://{name}", "does not exist")
    assert_error(cli("init", "--bucket", f"s3://{name}/x", "--project", PROJECT), 1, name)
    import obstore
    from obstore.store import S3Store

    store = S3Store(name, config=seaweed.obstore_config())
    with pytest.raises(Exception, match="NoSuchBucket|not found|404"):
        obstore.list(store).collect()


@pytest.mark.s3
def test_s3_wrong_credentials(cli, seaweed, monkeypatch):
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    bucket_url = seaweed.url(uuid.uuid4().hex)
    cli.json("init", "--bucket", bucket_url, "--project", PROJECT, "--agent", "alice")
    raw = RawBucket(bucket_url)
    before = raw.snapshot()
    bad = "wrong-secret-" + uuid.uuid4().hex
    calls = [
        ["steps"],
        ["claim", "deploy"],
        ["memory", "set", "k", "2"],
        ["heartbeat"],
        ["init", "--bucket", bucket_url, "--project", "other", "--no-config"],
    ]
    for proc in cli_all(cli, *[(args, {"env": {"AWS_SECRET_ACCESS_KEY": bad}}) for args in calls]):
        assert_error(proc, 1, "access denied", "check credentials")
        assert bad not in proc.stdout + proc.stderr
    assert raw.snapshot() == before, "nothing may be written with wrong credentials"


def test_unreachable_endpoint_fails_fast(cli, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    base = ["--bucket", "s3://b/prefix", "--project", PROJECT]
    t0 = time.monotonic()
    calls = [["steps"], ["claim", "x"], ["init", "--bucket", "s3://b/prefix"]]
    for proc in cli_all(cli, *[[*base, *args] for args in calls]):
        assert_error(proc, 1, "cannot reach s3://b/prefix")
    assert time.monotonic() - t0 < 20


def test_malformed_endpoint_is_one_line(cli, monkeypatch):
    # obstore takes these at configuration time and then panics on the first request
    # (a Rust backtrace and a Python traceback per thread)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    bad = ["http://[::1", "ftp://host", "http://", "http://host:99999"]
    procs = cli_all(
        cli, *[["--bucket", "s3://b", "--endpoint", e, "--project", PROJECT, "steps"] for e in bad]
    )
    for e, proc in zip(bad, procs, strict=True):
        assert_error(proc, 2, f"bad S3 endpoint {e!r}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://[::1")
    assert_error(cli("--bucket", "s3://b", "--project", PROJECT, "steps"), 2, "bad S3 endpoint")


# --------------------------------------------------------------------------- bad input


def test_odd_names_cli(cli, raw, tmp_path):
    before = raw.snapshot()
    f = tmp_path / "f.txt"
    f.write_text("x")
    cases = [
        (["claim", "../x"], "invalid step id"),
        (["claim", "a/b"], "invalid step id"),
        (["claim", ""], "invalid step id"),
        (["claim", "x" * 300], "invalid step id"),
        (["claim", "a\x01b"], "invalid step id"),
        (["complete", "build", "--to", "../x"], "invalid agent id"),
        (["memory", "set", "../x", "1"], "invalid memory key"),
        (["send", "a/b", "hi"], "invalid agent id"),
        (["--agent", "../x", "steps"], "invalid agent id"),
        (["--project", "a/b", "steps"], "invalid project name"),
        (["artifact", "upload", str(f), "--name", "../x"], "invalid artifact name"),
        (["claim", "s", "--ttl", "forever"], "invalid --ttl"),
    ]
    non_utf8 = os.fsencode("st\udcff")  # b"st\xff": not UTF-8, as a shell would pass it
    assert non_utf8 == b"st\xff"
    cases += [
        ([b"claim", non_utf8], "invalid step id"),
        ([b"memory", b"set", b"k\xff", b"1"], "invalid memory key"),
        ([b"--agent", b"\xffbob", b"steps"], "invalid agent id"),
    ]
    for proc, (_, needle) in zip(cli_all(cli, *[c[0] for c in cases]), cases, strict=True):
        assert_error(proc, 2, needle)
    after = raw.snapshot()
    assert after.keys() == before.keys()
    assert without_heartbeats(after) == without_heartbeats(before)


ODD = ["../x", "a/b", "", "x" * 300, "a\x01b", "tab\there", ".hidden", "a\\b", "x.json", "st\udcff"]
ODD_KEYS = ["../x", "a/b", "", "y" * 300, "a\x01b", "a..b", ".k", "k.", "a b", "k\udcff"]


def test_odd_names_api(bucket_url, tmp_path, monkeypatch):
    """Every operation refuses every odd name with a UsageError (exit 2), writing nothing."""
    monkeypatch.chdir(tmp_path)
    tracebox.init_project(bucket_url, PROJECT, "alice")
    raw = RawBucket(bucket_url)
    p = tracebox.open_project(bucket_url, project=PROJECT, agent="alice")
    p.claim("build")
    f = tmp_path / "f.txt"
    f.write_text("x")
    before = raw.snapshot()
    for odd in ODD:
        for fn, args, kw in (
            (p.claim, (odd,), {}),
            (p.renew, (odd,), {}),
            (p.release, (odd,), {"force": True}),
            (p.complete, (odd,), {"force": True}),
            (p.complete, ("build",), {"to": odd}),
            (p.reopen, (odd,), {}),
            (p.handoff, (odd,), {}),
            (p.wait_for, ("build", odd), {"timeout": 1}),
            (p.send, (odd, "hi"), {}),
            (p.artifact.upload, (str(f),), {"step": odd}),
            (p.record, ("x.y",), {"step": odd}),
            (tracebox.open_project, (bucket_url,), {"project": PROJECT, "agent": odd}),
            (tracebox.open_project, (bucket_url,), {"project": odd, "agent": "alice"}),
        ):
            with pytest.raises(UsageError, match="invalid|no project configured"):
                fn(*args, **kw)
        if odd != "x.json":  # an artifact name is a folder, so it may end in .json
            with pytest.raises(UsageError, match="invalid artifact name"):
                p.artifact.upload(str(f), name=odd)
            with pytest.raises(UsageError, match="invalid artifact name"):
                p.artifact.download(odd, str(tmp_path))
    for odd in ODD_KEYS:
        for fn, args in (
            (p.memory.set, (odd, 1)),
            (p.memory.get, (odd,)),
            (p.memory.delete, (odd,)),
            (p.memory.history, (odd,)),
        ):
            with pytest.raises(UsageError, match="invalid memory key"):
                fn(*args)
    after = raw.snapshot()
    assert after.keys() == before.keys()
    assert without_heartbeats(after) == without_heartbeats(before)


def test_invalid_utf8_and_oversized_values(cli, raw, bucket_url, tmp_path):
    before = raw.snapshot()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"ok \xff\xfe not utf-8")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps("v" * (3 << 19)))  # a 1.5 MiB JSON string
    big = tmp_path / "big.txt"
    big.write_text("m" * ((256 << 10) + 1))
    cases = [
        (["memory", "set", "k", "--file", bad], "not valid UTF-8"),
        (["send", "bob", "--file", bad], "not valid UTF-8"),
        ([b"memory", b"set", b"k", b"caf\xe9"], "UTF-8"),
        ([b"send", b"bob", b"caf\xe9"], "UTF-8"),
        ([b"send", b"--all", b"\xff"], "UTF-8"),
        ([b"complete", b"build", b"--note", b"\xff"], "UTF-8"),
        ([b"heartbeat", b"--status", b"\xff"], "UTF-8"),
        ([b"event", b"x.y", b"--data", b'{"a": "\xff"}'], "UTF-8"),
        ([b"reopen", b"build", b"--reason", b"\xff"], "UTF-8"),
        (["memory", "set", "k", "--file", huge], "limited to 1 MiB"),
        (["send", "bob", "--file", big], "larger than 256 KiB"),
        ((["send", "bob", "--file", "-"], {"input": big.read_text()}), "256 KiB"),
        (["complete", "build", "--note", "n" * (17 << 10)], "larger than 16 KiB"),
    ]
    for proc, (_, needle) in zip(cli_all(cli, *[c[0] for c in cases]), cases, strict=True):
        assert_error(proc, 2, needle)

    after = raw.snapshot()
    assert after.keys() == before.keys()
    assert without_heartbeats(after) == without_heartbeats(before)

    # the same limits in the Python API
    p = tracebox.open_project(bucket_url, project=PROJECT, agent="alice")
    with pytest.raises(UsageError, match="256 KiB"):
        p.send("bob", "x" * (300 << 10))
    with pytest.raises(UsageError, match="1 MiB"):
        p.memory.set("k", {"blob": "x" * (1 << 20)})
    with pytest.raises(UsageError, match="UTF-8"):
        p.send("bob", "bad \udcff")
    assert without_heartbeats(raw.snapshot()) == without_heartbeats(before)


# --------------------------------------------------------------------------- damage

DAMAGED_STATES = [
    b"\x00\xffgarbage{{",
    b"[1, 2, 3]",
    b'{"status": "claimed", "epoch": 1, "lease": {"owner": "x"}}',
    b'{"status": "claimed", "epoch": 1, "lease": "held"}',
    b'{"status": "claimed", "epoch": 1, "lease": {"owner": "x", "epoch": 1, "expires": "soon"}}',
    b'{"status": "complete", "epoch": 1, "lease": null, "handoffs": "none"}',
    b'{"status": "complete", "epoch": 1, "lease": null, "handoffs": [1]}',
    b'{"status": "weird", "epoch": 1}',
    b'{"status": "open", "epoch": "1"}',
]


def test_damaged_state_object_cli(cli, bucket_url):
    cli.json("init", "--bucket", bucket_url, "--project", PROJECT, "--agent", "alice")
    raw = RawBucket(bucket_url)
    for i in (0, 2):  # not JSON at all; a lease without an expiry
        raw.put(f"{PROJECT}/steps/dmg{i}/state.json", DAMAGED_STATES[i])
    before = raw.snapshot()
    cases = [
        (step, [*args, step, *more])
        for step in ("dmg0", "dmg2")
        for args, more in (
            (["claim"], []),
            (["complete"], ["--force"]),
            (["handoff", "show"], []),
            (["wait-for"], ["--timeout", "5"]),
        )
    ]
    for (step, _), proc in zip(cases, cli_all(cli, *[c[1] for c in cases]), strict=True):
        assert_error(proc, 1, f"steps/{step}/state.json", "damaged")
    rows = cli.json("steps")
    assert [(r["step"], r["status"], r["epoch"], r["owner"]) for r in rows] == [
        ("dmg0", "damaged", None, None),
        ("dmg2", "damaged", None, None),
    ]
    assert without_heartbeats(raw.snapshot()) == without_heartbeats(before)


def test_damaged_state_object_api(bucket_url, tmp_path, monkeypatch):
    """Every transition on every kind of damage is a FormatError (one CLI line), never a
    KeyError/TypeError, and writes nothing."""
    monkeypatch.chdir(tmp_path)
    tracebox.init_project(bucket_url, PROJECT, "alice")
    raw = RawBucket(bucket_url)
    for i, payload in enumerate(DAMAGED_STATES):
        raw.put(f"{PROJECT}/steps/dmg{i}/state.json", payload)
    before = raw.snapshot()
    p = tracebox.open_project(bucket_url, project=PROJECT, agent="alice")
    for i in range(len(DAMAGED_STATES)):
        step = f"dmg{i}"
        for fn, kw in (
            (p.claim, {}),
            (p.renew, {}),
            (p.release, {"force": True}),
            (p.complete, {"force": True}),
            (p.reopen, {}),
            (p.handoff, {}),
            (p.wait_for, {"timeout": 1}),
        ):
            with pytest.raises(FormatError, match=f"steps/{step}/state.json.*damaged"):
                fn(step, **kw)
    assert {r["step"]: r["status"] for r in p.steps()} == {
        f"dmg{i}": "damaged" for i in range(len(DAMAGED_STATES))
    }
    after = raw.snapshot()
    assert without_heartbeats(after) == without_heartbeats(before)


def test_damaged_memory_and_cursor_objects(cli, raw):
    raw.put(f"{PROJECT}/memory/k.json", b"not json at all")
    before = raw.snapshot()
    for proc in cli_all(cli, ["memory", "get", "k"], ["memory", "set", "k", "2"]):
        assert_error(proc, 1, "memory/k.json", "damaged")
    raw.put(f"{PROJECT}/memory/k.json", b'{"key": "k", "value": 1, "version": "seven"}')
    assert_error(cli("memory", "set", "k", "2"), 1, "memory/k.json", "damaged")
    assert without_heartbeats(raw.snapshot()).keys() == without_heartbeats(before).keys()

    # a cursor with the wrong shape: messages are shown again, never lost or crashed on
    raw.put(f"{PROJECT}/cursors/bob/inbox.json", b'{"watermark": 7, "acked": 5}')
    assert [m["body"] for m in cli.json("--agent", "bob", "inbox", "--unread")] == ["hi"]
    assert [m["body"] for m in cli.json("--agent", "bob", "inbox", "--unread", "--ack")] == ["hi"]
    assert cli.json("--agent", "bob", "inbox", "--unread") == []
    raw.put(f"{PROJECT}/cursors/bob/inbox.json", b"\xff\xfe")
    assert_error(cli("--agent", "bob", "inbox"), 1, "cursors/bob/inbox.json", "damaged")


def test_newer_bucket_format_is_refused(cli, raw, tmp_path):
    raw.put(
        f"{PROJECT}/tracebox.json",
        json.dumps({"format": "tracebox", "format_version": 99, "project": PROJECT}).encode(),
    )
    before = raw.snapshot()
    out = tmp_path / "run.html"
    procs = cli_all(
        cli,
        ["log"],
        ["log", "--json"],
        (["log", "--follow"], {"timeout": 20}),
        ["replay", "--out", out],
        ["init", "--bucket", raw.url, "--project", PROJECT],
        ["claim", "new-step"],
        ["send", "bob", "hello"],
        ["memory", "set", "k2", "2"],
        ["steps"],
        ["inbox"],
    )
    for proc in procs[:3]:
        assert_error(proc, 1, "format v99", "newer than this tracebox", "upgrade tracebox")
    for proc in procs[3:]:
        assert_error(proc, 1, "format v99")
    assert not out.exists()
    # nothing written at all, not even a heartbeat
    assert raw.snapshot() == before


def test_project_that_was_never_initialised(cli, raw):
    """A typo in the project name must not silently create a second project."""
    before = raw.snapshot()
    base = ["--bucket", raw.url, "--project", "typo"]
    calls = [
        ["claim", "x"],
        ["send", "bob", "hi"],
        ["memory", "set", "k", "1"],
        ["steps"],
        ["inbox"],
        ["heartbeat"],
        ["agents"],
    ]
    for proc in cli_all(cli, *[[*base, *args] for args in calls]):
        assert_error(proc, 1, "project 'typo' does not exist", "tracebox init")
    assert raw.snapshot() == before
    assert not [k for k in raw.keys() if k.startswith("typo/")]
