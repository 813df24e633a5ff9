"""``tracebox session mirror|list|show``: transcripts copied, scrubbed, into the bucket.

Every check reads the bucket WITHOUT tracebox code (``coordkit.RawBucket``: plain files,
or obstore on SeaweedFS) and computes what must be there from the source files here:
the parts of the current generation, in key order, are contiguous from byte 0, each ends
at a newline, and their concatenation equals the (scrubbed) source.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from pathlib import Path

import pytest

try:
    from compression import zstd
except ImportError:
    from backports import zstd

from coordkit import RawBucket, events_of, popen, wait_until
from tracebox.scrub import Scrubber

CORPUS = Path(__file__).resolve().parent / "corpus" / "claude-code"
BIG = "258c7280-ae70-4798-800f-63464d01a85d"  # has subagents/ (a subagent + a compaction)
SESSIONS = {
    BIG: f"{BIG}.jsonl",
    "55604662-cf2a-4331-851a-ec234028f8ca": "short.jsonl",
    "d6e0bada-1959-4eec-a9d2-0bfade768d8f": "tool_heavy.jsonl",
}
PROJECT = "p"
SCRUB: list[str] = []  # mirror scrubs by default
PART = re.compile(r"part-g(\d+)-(\d{12})-(\d{12})-([0-9a-f]{16})\.jsonl(\.zst)?")
CWD_FIELD = re.compile(rb'"cwd":"[^"]*"')

# -- the expected bytes, computed here ---------------------------------------------------


def scrubbed(data: bytes, scrub: bool = True) -> bytes:
    if not scrub or Scrubber is None:
        return data
    return Scrubber(config=None, env=os.environ).scrub_bytes(data)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parts_of(raw: RawBucket, prefix: str) -> dict[int, list[tuple[int, int, str]]]:
    """{generation: [(start, end, key)]} of the part objects directly under ``prefix``."""
    out: dict[int, list[tuple[int, int, str]]] = {}
    for key in raw.keys(prefix):
        rest = key[len(prefix) :]
        m = PART.fullmatch(rest)
        if m:
            out.setdefault(int(m[1]), []).append((int(m[2]), int(m[3]), key))
    for v in out.values():
        v.sort()
    return out


def mirrored(raw: RawBucket, prefix: str, *, strict: bool = True) -> tuple[int, bytes]:
    """(generation, concatenated bytes) of the newest generation under ``prefix``,
    checking that its parts are contiguous from 0 and (``strict``) that every part ends
    at a newline and none overlaps another."""
    gens = parts_of(raw, prefix)
    assert gens, f"no parts under {prefix}"
    gen = max(gens)
    pos, chunks = 0, []
    for start, end, key in gens[gen]:
        if strict:
            assert start == pos, f"gap or overlap at {start} (expected {pos}) in {prefix}"
        elif start != pos:
            continue
        data = raw.get(key)
        assert data is not None
        if key.endswith(".zst"):  # one zstd frame (docs/format.md §3.8), read with zstd itself
            data = zstd.decompress(data)
        if end > start and strict:
            assert data.endswith(b"\n"), f"{key} does not end at a newline"
        chunks.append(data)
        pos = end
    return gen, b"".join(chunks)


def session_prefix(sid: str) -> str:
    return f"{PROJECT}/sessions/claude-code/{sid}/"


# -- a fake machine: HOME with ~/.claude/projects, a project folder, a bucket ---------------


class Machine:
    def __init__(self, tmp: Path, cli, bucket_url: str, monkeypatch):
        self.home = tmp / "home"
        self.home.mkdir()
        monkeypatch.setenv("HOME", str(self.home))
        for var in ("CLAUDE_CONFIG_DIR", "CODEX_HOME"):
            monkeypatch.delenv(var, raising=False)
        self.cli, self.work, self.bucket = cli, cli.cwd, bucket_url
        encoded = re.sub(r"[^A-Za-z0-9]", "-", str(self.work))
        self.folder = self.home / ".claude" / "projects" / encoded
        self.folder.mkdir(parents=True)
        self.raw = RawBucket(bucket_url)
        cli("init", "--bucket", bucket_url, "--project", PROJECT, "--agent", "alice", check=True)

    def add(self, sid: str, name: str, cwd: Path | None = None) -> Path:
        """Copy a corpus session (and its subagents folder) with its cwd set to ``cwd``."""
        target = self.folder / f"{sid}.jsonl"
        new = b'"cwd":' + json.dumps(str(cwd or self.work)).encode()
        target.write_bytes(CWD_FIELD.sub(new, (CORPUS / name).read_bytes()))
        sub = CORPUS / name.removesuffix(".jsonl") / "subagents"
        if sub.is_dir():
            dest = self.folder / sid / "subagents"
            dest.mkdir(parents=True)
            for f in sub.glob("*.jsonl"):
                (dest / f.name).write_bytes(CWD_FIELD.sub(new, f.read_bytes()))
        return target

    def mirror(self, *args: str, env: dict | None = None) -> dict:
        proc = self.cli("session", "mirror", *args, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def check(self, path: Path, sid: str, scrub: bool = True, stream: str = "") -> int:
        gen, data = mirrored(self.raw, session_prefix(sid) + stream)
        assert data == scrubbed(path.read_bytes(), scrub)
        return gen


@pytest.fixture
def machine(tmp_path, cli, bucket_url, monkeypatch) -> Machine:
    return Machine(tmp_path, cli, bucket_url, monkeypatch)


# -- tests ----------------------------------------------------------------------------------


def test_mirror_corpus_sessions_with_subagents(machine):
    paths = {sid: machine.add(sid, name) for sid, name in SESSIONS.items()}
    subs = sorted((machine.folder / BIG / "subagents").glob("*.jsonl"))
    assert len(subs) == 2
    before = {p: sha(p) for p in [*paths.values(), *subs]}

    out = machine.mirror(*SCRUB)

    got = {r["session_id"]: r for r in out["sessions"]}
    assert set(got) == set(SESSIONS)
    assert out["totals"]["scrubbed"] is (Scrubber is not None)
    for sid, path in paths.items():
        source = path.read_bytes()
        assert machine.check(path, sid) == 1
        assert got[sid]["status"] == "uploaded"
        assert got[sid]["bytes"] == len(source)
        meta = machine.raw.json(session_prefix(sid) + "meta.json")
        assert meta["harness"] == "claude-code" and meta["session_id"] == sid
        assert meta["generation"] == 1 and meta["bytes"] == len(source)
        assert meta["lines"] == source.count(b"\n")
        assert meta["cwd"] == str(machine.work)
        # the home folder is never written to the bucket: the path starts with ~
        assert meta["source_path"].startswith("~/.claude/projects/")
        assert str(machine.home) not in json.dumps(meta)
        assert meta["scrub"]["enabled"] is (Scrubber is not None)
        assert all(isinstance(v, int) for v in meta["scrub"]["counts"].values())
    for f in subs:  # subagent files mirrored with their session, each its own stream
        machine.check(f, BIG, stream=f"subagents/{f.stem}/")
        meta = machine.raw.json(session_prefix(BIG) + "meta.json")
        assert meta["subagents"][f.stem]["bytes"] == f.stat().st_size
    # one event per mirrored session
    mirrored_events = [
        e for e in events_of(machine.raw, PROJECT) if e["type"] == "session.mirrored"
    ]
    assert sorted(e["data"]["session"] for e in mirrored_events) == sorted(SESSIONS)
    # the sources are never modified
    assert {p: sha(p) for p in before} == before

    # nothing new: a second run uploads nothing and writes no part
    keys = machine.raw.keys(f"{PROJECT}/sessions/")
    again = machine.mirror(*SCRUB)
    assert again["totals"]["parts"] == 0 and again["totals"]["uploaded_bytes"] == 0
    assert machine.raw.keys(f"{PROJECT}/sessions/") == keys


def test_list_and_show_read_the_bucket(machine, cli):
    for sid, name in SESSIONS.items():
        machine.add(sid, name)
    machine.mirror("--no-scrub")
    rows = cli.json("session", "list")
    assert {r["session_id"] for r in rows} == set(SESSIONS)
    for r in rows:
        source = machine.folder / f"{r['session_id']}.jsonl"
        assert r["harness"] == "claude-code"
        assert r["bytes"] == source.stat().st_size
        assert r["lines"] == source.read_bytes().count(b"\n")
        assert r["subagents"] == (2 if r["session_id"] == BIG else 0)
        assert re.fullmatch(r"[0-9a-f]{16}", r["fingerprint"])
    assert cli.json("session", "list", "--harness", "codex") == []

    # show parses the mirrored parts with the adapter: the same steps as the source file
    from tracebox.capture.harnesses import claude_code

    want = claude_code.parse(machine.folder / f"{BIG}.jsonl")
    shown = cli.json("session", "show", BIG[:8])
    assert shown["id"] == BIG
    assert [s.get("id") for s in shown["steps"]] == [s.id for s in want.steps]
    assert len(shown["subagents"]) == len(want.subagents) > 0
    tail = cli.json("session", "show", BIG, "--tail", "3")
    assert [s["index"] for s in tail["steps"]] == [s.index for s in want.steps[-3:]]
    human = cli("session", "show", "55604662", "--tail", "2", check=True).stdout
    assert "55604662-cf2a-4331-851a-ec234028f8ca" in human and "#" in human
    missing = cli("session", "show", "nope")
    assert missing.returncode == 1 and "no mirrored session" in missing.stderr


def test_append_only_new_lines_and_hold_back_partial_line(machine, cli):
    path = machine.add(BIG, SESSIONS[BIG])
    machine.mirror(*SCRUB)
    prefix = session_prefix(BIG)
    first = machine.raw.snapshot(prefix)
    fp1 = cli.json("session", "list")[0]["fingerprint"]
    size0 = path.stat().st_size

    lines = [json.dumps({"type": "user", "n": i, "text": "more " * i}).encode() for i in range(3)]
    with open(path, "ab") as f:
        f.write(lines[0] + b"\n" + lines[1] + b"\n" + lines[2][:20])  # the last is unfinished
    out = machine.mirror(*SCRUB)
    r = out["sessions"][0]
    assert r["uploaded_parts"] == 1 and r["uploaded"] == len(lines[0]) + len(lines[1]) + 2
    assert r["held_back"] == 20
    new = {k: v for k, v in machine.raw.snapshot(prefix).items() if k not in first}
    new_parts = [k for k in new if "/part-" in k]
    assert len(new_parts) == 1
    m = PART.search(new_parts[0])
    assert (int(m[2]), int(m[3])) == (size0, size0 + r["uploaded"])
    # the earlier parts were not rewritten
    for k, v in first.items():
        if "/part-" in k:
            assert machine.raw.snapshot(prefix)[k] == v
    _, data = mirrored(machine.raw, prefix)
    complete = path.read_bytes()[: size0 + r["uploaded"]]
    assert data == scrubbed(complete)
    assert cli.json("session", "list")[0]["fingerprint"] != fp1

    # finishing the line sends it; an unfinished line goes only with --final
    with open(path, "ab") as f:
        f.write(lines[2][20:] + b"\n" + b'{"type":"user","cut')
    out = machine.mirror(*SCRUB)
    assert out["sessions"][0]["held_back"] == len(b'{"type":"user","cut')
    out = machine.mirror(*SCRUB, "--final")
    assert out["sessions"][0]["held_back"] == 0
    gen, data = mirrored(machine.raw, prefix, strict=False)
    assert gen == 1 and data == scrubbed(path.read_bytes())


def test_rewritten_or_truncated_source_starts_new_generation(machine):
    path = machine.add("55604662-cf2a-4331-851a-ec234028f8ca", "short.jsonl")
    sid = "55604662-cf2a-4331-851a-ec234028f8ca"
    machine.mirror("--no-scrub")
    assert machine.check(path, sid, scrub=False) == 1
    g1 = parts_of(machine.raw, session_prefix(sid))[1]

    # same size, different bytes before the cursor: a rewrite, not an append
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"type":"user"', b'"type":"USER"', 1))
    assert len(path.read_bytes()) == len(data) and path.read_bytes() != data
    out = machine.mirror("--no-scrub")
    assert out["sessions"][0]["new_generation"] is True
    assert machine.check(path, sid, scrub=False) == 2

    # truncated below the cursor
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4]))
    out = machine.mirror("--no-scrub")
    assert out["sessions"][0]["generation"] == 3
    assert machine.check(path, sid, scrub=False) == 3
    meta = machine.raw.json(session_prefix(sid) + "meta.json")
    assert meta["generation"] == 3 and meta["bytes"] == path.stat().st_size

    # emptied (no longer found by cwd, so named explicitly): an empty new generation
    path.write_bytes(b"")
    machine.mirror("--no-scrub", "--session", str(path), "--harness", "claude-code")
    gens = parts_of(machine.raw, session_prefix(sid))
    assert max(gens) == 4 and all(s == e == 0 for s, e, _ in gens[4])
    assert gens[1] == g1  # old generations are kept, never rewritten
    meta = machine.raw.json(session_prefix(sid) + "meta.json")
    assert meta["generation"] == 4 and meta["bytes"] == 0


def test_two_destinations_each_get_everything(machine, tmp_path, cli):
    path = machine.add(BIG, SESSIONS[BIG])
    machine.mirror(*SCRUB)
    other = tmp_path / "second-bucket"
    cli("init", "--bucket", other, "--project", "q", "--agent", "bob", cwd=tmp_path, check=True)
    proc = cli("--bucket", other, "--project", "q", "session", "mirror", *SCRUB, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    subs = list((machine.folder / BIG / "subagents").glob("*.jsonl"))
    total = path.stat().st_size + sum(f.stat().st_size for f in subs)
    assert out["sessions"][0]["uploaded"] == total
    raw2 = RawBucket(str(other))
    _, data = mirrored(raw2, f"q/sessions/claude-code/{BIG}/")
    assert data == scrubbed(path.read_bytes())
    for f in subs:
        _, data = mirrored(raw2, f"q/sessions/claude-code/{BIG}/subagents/{f.stem}/")
        assert data == scrubbed(f.read_bytes())
    # the first destination is still complete, and up to date after an append
    with open(path, "ab") as f:
        f.write(b'{"type":"user","late":true}\n')
    machine.mirror(*SCRUB)
    machine.check(path, BIG)


@pytest.mark.parametrize("bucket_url", ["local"], indirect=True)
def test_only_this_projects_sessions_by_default(machine, tmp_path):
    here = machine.add("55604662-cf2a-4331-851a-ec234028f8ca", "short.jsonl")
    elsewhere = machine.add(
        "d6e0bada-1959-4eec-a9d2-0bfade768d8f", "tool_heavy.jsonl", cwd=tmp_path / "other"
    )
    out = machine.mirror("--no-scrub")
    assert [r["session_id"] for r in out["sessions"]] == ["55604662-cf2a-4331-851a-ec234028f8ca"]
    machine.check(here, "55604662-cf2a-4331-851a-ec234028f8ca", scrub=False)
    out = machine.mirror("--no-scrub", "--all-projects")
    assert {r["session_id"] for r in out["sessions"]} >= {"d6e0bada-1959-4eec-a9d2-0bfade768d8f"}
    machine.check(elsewhere, "d6e0bada-1959-4eec-a9d2-0bfade768d8f", scrub=False)


@pytest.mark.parametrize("bucket_url", ["local"], indirect=True)
def test_follow_mirrors_growth_and_new_sessions_until_interrupted(machine):
    short, heavy = "55604662-cf2a-4331-851a-ec234028f8ca", "d6e0bada-1959-4eec-a9d2-0bfade768d8f"
    path = machine.add(short, SESSIONS[short])

    def caught_up(p: Path, sid: str) -> bool:
        try:
            return mirrored(machine.raw, session_prefix(sid))[1] == scrubbed(p.read_bytes())
        except AssertionError:
            return False

    child = popen(
        machine.work, "session", "mirror", "--follow", "--interval", "0.2", "--json", *SCRUB
    )
    try:
        wait_until(lambda: caught_up(path, short), 60, "the first pass")
        with open(path, "ab") as f:
            f.write(b'{"type":"user","text":"one more"}\n')
        wait_until(lambda: caught_up(path, short), 60, "the appended line")
        other = machine.add(heavy, SESSIONS[heavy])  # a session that starts meanwhile
        wait_until(lambda: caught_up(other, heavy), 60, "the new session")
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    reports = [json.loads(line) for line in out.splitlines()]
    assert [r["session_id"] for r in reports].count(short) == 2
    assert [r["session_id"] for r in reports].count(heavy) == 1
    assert all(r["status"] == "uploaded" for r in reports)


@pytest.mark.parametrize("bucket_url", ["local"], indirect=True)
def test_long_lines_and_raw_bytes_stay_exact(machine, tmp_path):
    src = tmp_path / "odd.jsonl"
    long_line = b'{"type":"user","text":"' + b"x" * 100_000 + b'"}\n'
    src.write_bytes(
        b'{"type":"user","a":1}\n'
        + long_line
        + b'{"type":"user","bad":"\xff\xfe not utf-8"}\n'
        + b"not json at all\n" * 300
    )
    out = machine.mirror(
        "--session",
        str(src),
        "--harness",
        "claude-code",
        "--session-id",
        "odd",
        "--no-scrub",
        env={"TRACEBOX_MIRROR_PART_BYTES": "4096"},
    )
    assert out["sessions"][0]["status"] == "uploaded"
    gens = parts_of(machine.raw, session_prefix("odd"))
    sizes = [e - s for s, e, _ in gens[1]]
    assert max(sizes) == len(long_line)  # one line longer than a part: a part of its own
    assert all(n <= 4096 for n in sizes if n != len(long_line))
    machine.check(src, "odd", scrub=False)


@pytest.mark.parametrize("bucket_url", ["local"], indirect=True)
def test_mirror_refuses_bad_usage(machine, cli):
    proc = cli("session", "mirror", "--harness", "nope")
    assert proc.returncode == 2 and "unknown harness" in proc.stderr
    proc = cli("session", "mirror", "--session", machine.work / "missing.jsonl", "--no-scrub")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bucket_url", ["local"], indirect=True)
def test_secrets_are_scrubbed_by_default(machine):
    path = machine.add("55604662-cf2a-4331-851a-ec234028f8ca", "short.jsonl")
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    with open(path, "ab") as f:
        f.write(json.dumps({"type": "user", "text": f"my token is {token}"}).encode() + b"\n")
    out = machine.mirror()
    assert out["totals"]["redactions"] and sum(out["totals"]["redactions"].values()) >= 1
    _, data = mirrored(machine.raw, session_prefix("55604662-cf2a-4331-851a-ec234028f8ca"))
    assert token.encode() not in data
    assert token not in json.dumps(out)  # counts by category, never the matched text


# -- the chain rule (pure) ------------------------------------------------------------------


def test_chain_follows_the_longest_run_and_ignores_orphans():
    from tracebox.capture.mirror import Part, chain, parse_part

    def p(gen, a, b):
        return Part(gen, a, b, "0" * 16)

    # overlapping leftovers of racing writers: any path reaching furthest is fine
    parts = [p(1, 0, 10), p(1, 10, 20), p(1, 10, 15), p(1, 15, 40), p(1, 20, 30), p(1, 50, 60)]
    ch = chain(parts)
    assert ch.gen == 1 and ch.end == 40
    assert [(x.start, x.end) for x in ch.parts] == [(0, 10), (10, 15), (15, 40)]
    # a gap stops the chain; the newest generation wins even when shorter
    assert chain([p(1, 0, 10), p(1, 20, 30)]).end == 10
    ch = chain([p(1, 0, 100), p(2, 0, 5)])
    assert (ch.gen, ch.end) == (2, 5)
    assert chain([p(3, 0, 0)]).end == 0 and chain([]).gen == 1
    name = p(7, 12, 345).name
    assert name == "part-g0007-000000000012-000000000345-0000000000000000.jsonl"
    assert parse_part(name) == p(7, 12, 345)
    assert parse_part("part-g1-1-2-x.jsonl") is None
    assert parse_part("part-g0001-000000000010-000000000005-" + "0" * 16 + ".jsonl") is None


# -- compressed parts ------------------------------------------------------------------------

SHORT = "55604662-cf2a-4331-851a-ec234028f8ca"


def _part_exts(machine, sid: str) -> list[str]:
    keys = [k for k in machine.raw.keys(session_prefix(sid)) if PART.search(k)]
    return [".jsonl.zst" if k.endswith(".zst") else ".jsonl" for k in sorted(keys)]


def _set_compress(machine, mode: str) -> None:
    cfg = machine.work / ".tracebox.toml"
    text = re.sub(r"\n\[mirror\]\ncompress = \"[^\"]*\"\n", "\n", cfg.read_text())
    cfg.write_text(text + f'\n[mirror]\ncompress = "{mode}"\n')


def test_parts_are_compressed_except_in_a_local_folder_and_mix_in_one_chain(machine, cli):
    """`auto` stores zstd parts in a remote bucket and plain JSONL in a local folder; a
    chain may mix both (the setting changed between runs) and reads back whole."""
    path = machine.add(SHORT, "short.jsonl")
    machine.mirror(*SCRUB)
    remote = machine.bucket.startswith("s3://")
    assert _part_exts(machine, SHORT) == [".jsonl.zst" if remote else ".jsonl"]
    assert machine.check(path, SHORT) == 1  # decompressed with zstd itself, not tracebox

    _set_compress(machine, "none" if remote else "zstd")
    with open(path, "ab") as f:
        f.write(json.dumps({"type": "user", "message": {"content": "one more"}}).encode() + b"\n")
    out = machine.mirror(*SCRUB)
    assert out["sessions"][0]["uploaded_parts"] == 1
    assert sorted(_part_exts(machine, SHORT)) == [".jsonl", ".jsonl.zst"]
    assert machine.check(path, SHORT) == 1
    from tracebox.capture.harnesses import claude_code

    shown = cli.json("session", "show", SHORT)
    assert [s.get("id") for s in shown["steps"]] == [s.id for s in claude_code.parse(path).steps]


def test_compressed_parts_are_smaller_and_a_bad_setting_is_refused(machine, cli):
    path = machine.add(BIG, SESSIONS[BIG])
    _set_compress(machine, "gzip")
    proc = cli("session", "mirror", *SCRUB)
    assert proc.returncode != 0
    assert "[mirror] compress must be one of auto, zstd, none" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert machine.raw.keys(f"{PROJECT}/sessions/") == []

    _set_compress(machine, "zstd")
    machine.mirror(*SCRUB)
    assert machine.check(path, BIG) == 1
    stored = sum(s for k, (s, _) in machine.raw.snapshot(session_prefix(BIG)).items()
                 if PART.search(k) and "/subagents/" not in k)  # fmt: skip
    assert stored * 4 < path.stat().st_size  # transcripts compress well


@pytest.mark.parametrize("damage", ["garbage", "bomb", "trailing"])
def test_a_damaged_compressed_part_is_a_one_line_error(machine, cli, damage):
    machine.add(SHORT, "short.jsonl")
    _set_compress(machine, "zstd")
    machine.mirror(*SCRUB)
    (key,) = [k for k in machine.raw.keys(session_prefix(SHORT)) if PART.search(k)]
    good = machine.raw.get(key)
    bad = {
        "garbage": b"not zstd at all",
        "bomb": zstd.compress(b"{}\n" * (20 << 20)),  # 60 MB from a ~20 KB source range
        "trailing": good + b"extra",
    }[damage]
    machine.raw.put(key, bad)
    proc = cli("session", "show", SHORT)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "zstd part" in proc.stderr and key.rsplit("/", 1)[1] in proc.stderr
