"""The bucket layer on real backends: a local folder, memory://, and a real S3 server.

Every behaviour the coordination layer relies on is checked against each backend:
plain reads and writes, create-if-absent, compare-and-swap (also across real processes),
listing order, ``start_after`` and partial-name prefixes, streamed multipart transfers,
ETag consistency, and key validation. Local-folder specifics (temp files, hidden dirs,
symlinks, permissions) and URL parsing follow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracebox.bucket import BucketSpec, open_bucket, parse_bucket_url
from tracebox.bucket.local import LocalStore
from tracebox.bucket.probe import probe
from tracebox.errors import (
    AccessDenied,
    AlreadyExists,
    BucketError,
    Conflict,
    NoSuchBucket,
    NotFound,
    UsageError,
)

MIB = 1024 * 1024


@dataclass
class Bucket:
    kind: str  # "local" | "memory" | "s3"
    url: str
    store: object
    env: dict  # env vars a child process needs to reach the same bucket


def _open_s3(request, monkeypatch) -> Bucket:
    server = request.getfixturevalue("seaweed")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    url = server.url(f"tb-{uuid.uuid4().hex}")
    return Bucket("s3", url, open_bucket(url), server.env())


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("memory", id="memory"),
        pytest.param("s3", id="s3", marks=pytest.mark.s3),
    ]
)
def bucket(request, tmp_path, monkeypatch) -> Bucket:
    """A fresh, empty bucket on each backend."""
    if request.param == "local":
        url = str(tmp_path / "bucket")
        return Bucket("local", url, open_bucket(url, options={"create": True}), {})
    if request.param == "memory":
        url = f"memory://t{uuid.uuid4().hex}/some/prefix"
        return Bucket("memory", url, open_bucket(url), {})
    return _open_s3(request, monkeypatch)


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("s3", id="s3", marks=pytest.mark.s3),
    ]
)
def shared_bucket(request, tmp_path, monkeypatch) -> Bucket:
    """A bucket other processes can reach too (memory:// lives in one process only)."""
    if request.param == "local":
        url = str(tmp_path / "bucket")
        return Bucket("local", url, open_bucket(url, options={"create": True}), {})
    return _open_s3(request, monkeypatch)


def keys(it) -> list[str]:
    return [m.key for m in it]


# --------------------------------------------------------------------------- basics


def test_put_get_head_delete(bucket):
    s = bucket.store
    etag = s.put("p/one.json", b'{"a": 1}')
    assert etag
    blob = s.get("p/one.json")
    assert blob.data == b'{"a": 1}'
    assert blob.etag == etag
    meta = s.head("p/one.json")
    assert (meta.key, meta.size, meta.etag) == ("p/one.json", 8, etag)
    assert meta.modified.endswith("Z") and meta.modified[:2] == "20"

    etag2 = s.put("p/one.json", b"second version")  # put overwrites
    assert etag2 != etag
    assert s.get("p/one.json") == type(blob)(b"second version", etag2)

    assert s.put("p/empty", b"")
    assert s.get("p/empty").data == b""
    assert s.head("p/empty").size == 0

    s.delete("p/one.json")
    with pytest.raises(NotFound):
        s.get("p/one.json")
    with pytest.raises(NotFound):
        s.head("p/one.json")
    s.delete("p/one.json")  # deleting a missing key is not an error
    s.delete("never/was")
    assert keys(s.list("p/")) == ["p/empty"]


def test_missing_objects_are_not_found(bucket):
    s = bucket.store
    with pytest.raises(NotFound):
        s.get("nope")
    with pytest.raises(NotFound):
        s.head("no/such/key")
    s.put("dir/file", b"x")
    with pytest.raises(NotFound):  # a "folder" is not an object
        s.get("dir")
    with pytest.raises(NotFound):
        s.head("dir")


def test_create_if_absent(bucket):
    s = bucket.store
    etag = s.create("claims/build.json", b"first")
    assert etag
    with pytest.raises(AlreadyExists):
        s.create("claims/build.json", b"second")
    blob = s.get("claims/build.json")
    assert blob.data == b"first"
    assert blob.etag == etag
    s.delete("claims/build.json")
    assert s.create("claims/build.json", b"again") != ""
    assert s.get("claims/build.json").data == b"again"


def test_update_compare_and_swap(bucket):
    s = bucket.store
    e1 = s.create("state.json", b"v1")
    e2 = s.update("state.json", b"v2", e1)
    assert e2 and e2 != e1
    assert s.get("state.json") == type(s.get("state.json"))(b"v2", e2)

    with pytest.raises(Conflict):  # the old ETag is stale now
        s.update("state.json", b"v3", e1)
    with pytest.raises(Conflict):
        s.update("state.json", b"v3", '"not-an-etag"')
    assert s.get("state.json").data == b"v2"

    # same bytes again still moves the object on: the next update needs the new ETag
    e3 = s.update("state.json", b"v2-again", e2)
    assert s.head("state.json").etag == e3

    with pytest.raises(Conflict):  # deleted meanwhile: a lost race, not a crash
        s.update("missing.json", b"x", e3)
    assert keys(s.list("missing")) == []


def test_etags_agree_between_write_get_head_and_list(bucket):
    s = bucket.store
    written = {k: s.put(k, k.encode() * 3) for k in ("e/a", "e/b/c", "e/d")}
    for k, etag in written.items():
        assert s.get(k).etag == etag
        assert s.head(k).etag == etag
    listed = {m.key: m for m in s.list("e/")}
    assert {k: m.etag for k, m in listed.items()} == written
    assert {k: m.size for k, m in listed.items()} == {k: len(k) * 3 for k in written}


# --------------------------------------------------------------------------- listing

LISTED = [
    "a-b",
    "a/a",
    "a/b-c",
    "a/b/x",
    "a/b/y/z",
    "a/b0",
    "a/bc",
    "ab",
    "b",
    "bb/c/d/e/f",
    "z~",
]


def _fill(s) -> None:
    for k in reversed(LISTED):  # written out of order on purpose
        s.put(k, k.encode())


def _assert_order(bucket: Bucket, got: list[str], want: list[str]) -> None:
    """Exact lexicographic order; on S3 only per folder (SeaweedFS may interleave folders)."""
    if bucket.kind != "s3":
        assert got == want
        return
    assert sorted(got) == sorted(want) and len(got) == len(want)
    by_folder: dict[str, list[str]] = {}
    for k in got:
        by_folder.setdefault(k.rsplit("/", 1)[0] if "/" in k else "", []).append(k)
    for folder_keys in by_folder.values():
        assert folder_keys == sorted(folder_keys)


def test_list_is_lexicographic(bucket):
    s = bucket.store
    _fill(s)
    _assert_order(bucket, keys(s.list()), sorted(LISTED))
    _assert_order(bucket, keys(s.list("")), sorted(LISTED))


def test_list_prefix_may_end_mid_name(bucket):
    s = bucket.store
    _fill(s)
    want = ["a/b-c", "a/b/x", "a/b/y/z", "a/b0", "a/bc"]
    _assert_order(bucket, keys(s.list("a/b")), want)
    assert keys(s.list("a/b/")) == ["a/b/x", "a/b/y/z"]
    assert keys(s.list("a/b/y")) == ["a/b/y/z"]
    _assert_order(bucket, keys(s.list("a")), [k for k in sorted(LISTED) if k.startswith("a")])
    assert keys(s.list("bb/c/d/e/")) == ["bb/c/d/e/f"]
    assert keys(s.list("z")) == ["z~"]


def test_list_start_after(bucket):
    s = bucket.store
    _fill(s)
    ordered = sorted(LISTED)
    for after in ("a/b", "a/b-c", "a/b/x", "a/b0", "ab", "a", "", "0"):
        want = [k for k in ordered if not after or k > after]
        _assert_order(bucket, keys(s.list(start_after=after or None)), want)
    # with a prefix: only keys under it, after the marker
    assert keys(s.list("a/b/", start_after="a/b/x")) == ["a/b/y/z"]
    _assert_order(bucket, keys(s.list("a/b", start_after="a/b/x")), ["a/b/y/z", "a/b0", "a/bc"])
    # a marker past the end (or past the prefix) gives nothing
    assert keys(s.list(start_after="~")) == []
    assert keys(s.list("a/", start_after="b")) == []


TRICKY = [
    "a",
    "a-b/c",
    "a.json",
    "a/b",
    "a/b.json",
    "a/b0",
    "a/b-c/d",
    "a/b/c.json",
    "a/b/c/d-e",
    "a/b/c/d/e",
    "a/bb",
    "ab/c",
    "b-/x",
    "b/x",
    "b0",
]


def test_start_after_never_skips_a_folder(bucket):
    """Every marker — each key, each of its prefixes, odd strings — against the full truth.

    SeaweedFS skips folder ``b`` for a marker ``b`` or ``b-c`` unless the client helps.
    """
    s = bucket.store
    if bucket.kind == "local":  # a folder bucket cannot hold both "a" and "a/..."
        names = [k for k in TRICKY if k not in ("a", "a/b")]
    else:
        names = TRICKY
    for k in names:
        s.put(k, b"")
    markers = {k[:i] for k in names for i in range(1, len(k) + 1)}
    markers |= {m + c for m in list(markers) for c in ("-", "/", "0", "~")}
    markers |= {"", "0", "~", "a/b/c/", "a//b", "a/./b", "a/b/../c", "a/\x01", "a/b\x7f"}
    for after in sorted(markers):
        want = sorted(k for k in names if k > after)
        assert sorted(keys(s.list(start_after=after or None))) == want, after
        for prefix in ("a/", "a/b", "a/b/"):
            want_p = [k for k in want if k.startswith(prefix)]
            got_p = keys(s.list(prefix, start_after=after or None))
            assert sorted(got_p) == want_p, (prefix, after)


def test_list_empty_and_missing_prefixes(bucket):
    s = bucket.store
    assert keys(s.list()) == []
    assert keys(s.list("nothing/")) == []
    _fill(s)
    for prefix in ("nothing/", "nothing", "a/zz/", "a/zz", "a/b/x/", "bb/c/d/e/f/g", "~"):
        assert keys(s.list(prefix)) == [], prefix


def test_list_is_paged_past_one_listing_chunk(bucket):
    """More objects than one listing page (obstore asks for 1000): none lost, none twice."""
    from concurrent.futures import ThreadPoolExecutor

    s = bucket.store
    names = [f"many/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:  # concurrent PUTs keep this quick on S3 too
        list(pool.map(lambda n: s.put(n, b""), names))
    assert keys(s.list("many/")) == names
    assert keys(s.list("many/", start_after="many/01049")) == names[1050:]


# --------------------------------------------------------------------------- files


def test_put_file_get_file_12_mib(bucket, tmp_path):
    s = bucket.store
    src = tmp_path / "big.bin"
    payload = os.urandom(12 * MIB)  # over obstore's 5 MiB part size: multipart on S3
    src.write_bytes(payload)
    etag = s.put_file("files/big.bin", str(src))
    assert etag
    meta = s.head("files/big.bin")
    assert meta.size == len(payload)
    assert meta.etag == etag
    if bucket.kind == "s3":
        assert etag.strip('"').endswith("-3"), f"expected a 3-part multipart ETag, got {etag}"

    dest = tmp_path / "out" / "copy.bin"
    dest.parent.mkdir()
    got = s.get_file("files/big.bin", str(dest))
    assert dest.read_bytes() == payload
    assert (got.key, got.size, got.etag) == ("files/big.bin", len(payload), etag)
    assert s.get("files/big.bin").etag == etag
    assert sorted(os.listdir(dest.parent)) == ["copy.bin"]  # no .part files left

    with pytest.raises(NotFound):
        s.get_file("files/missing.bin", str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
    # a download target in a folder that does not exist is a local problem, not NotFound
    with pytest.raises(BucketError) as e:
        s.get_file("files/big.bin", str(tmp_path / "no-such-dir" / "x"))
    assert not isinstance(e.value, NotFound)
    with pytest.raises(BucketError) as e:
        s.put_file("files/other.bin", str(tmp_path / "no-such-source"))
    assert not isinstance(e.value, NotFound)
    assert keys(s.list("files/")) == ["files/big.bin"]


# --------------------------------------------------------------------------- keys

BAD_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("a/../b", id="dotdot"),
    pytest.param("..", id="only-dotdot"),
    pytest.param("a/./b", id="dot"),
    pytest.param("/abs", id="leading-slash"),
    pytest.param("trailing/", id="trailing-slash"),
    pytest.param("a//b", id="double-slash"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("tab\there", id="tab"),
    pytest.param("del\x7f", id="del"),
    pytest.param("/".join(["x" * 200] * 5), id="1004-bytes"),
    pytest.param("/".join(["x" * 225] * 4), id="903-bytes"),
    pytest.param("x" * 256, id="256-byte-segment"),
    pytest.param("a/" + "é" * 128, id="256-byte-utf8-segment"),
    pytest.param("/".join(["é" * 120] * 3 + ["é" * 90]), id="903-utf8-bytes"),
    pytest.param("lone\ud800surrogate", id="lone-surrogate"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_usage_errors(bucket, key, tmp_path):
    s = bucket.store
    src = tmp_path / "src"
    src.write_bytes(b"x")
    for op in (
        lambda: s.get(key),
        lambda: s.head(key),
        lambda: s.put(key, b"x"),
        lambda: s.create(key, b"x"),
        lambda: s.update(key, b"x", "etag"),
        lambda: s.delete(key),
        lambda: s.put_file(key, str(src)),
        lambda: s.get_file(key, str(tmp_path / "dst")),
    ):
        with pytest.raises(UsageError):
            op()
    assert keys(s.list()) == []


def test_longest_and_unusual_keys_work(bucket):
    s = bucket.store
    longest = "/".join(["k" * 255, "l" * 255, "m" * 255, "n" * 132])
    assert len(longest) == 900
    ok = [
        longest,
        "s" * 255,
        "é" * 127,
        "ü/日本/🙂.json",
        "with space/and+plus=eq,comma",
        "~tilde/.dotfile",
        "a.b",
    ]
    for k in ok:
        s.put(k, k.encode("utf-8"))
        assert s.get(k).data == k.encode("utf-8")
    assert sorted(keys(s.list())) == sorted(ok)


# --------------------------------------------------------------------------- concurrency

_WORKER = r"""
import os, sys, time
from tracebox.bucket import open_bucket
from tracebox.errors import Conflict

url, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = open_bucket(url)
deadline = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("never got the start signal")
    time.sleep(0.002)
conflicts = 0
for _ in range(n):
    while True:
        b = s.get("counter")
        try:
            s.update("counter", str(int(b.data) + 1).encode(), b.etag)
            break
        except Conflict:
            conflicts += 1
print(conflicts)
"""


def test_compare_and_swap_across_processes(shared_bucket, tmp_path):
    """Real processes race read-modify-write increments: not one increment may be lost."""
    procs, per = (8, 50) if shared_bucket.kind == "local" else (4, 10)
    s = shared_bucket.store
    s.put("counter", b"0")
    go = tmp_path / "go"
    env = {**os.environ, **shared_bucket.env}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, shared_bucket.url, str(per), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(procs)
    ]
    time.sleep(0.3)  # let them import; they spin until the start signal
    go.touch()
    conflicts = 0
    for c in children:
        out, err = c.communicate(timeout=120)
        assert c.returncode == 0, err
        conflicts += int(out.strip())
    assert s.get("counter").data == str(procs * per).encode()
    print(f"{shared_bucket.kind}: {procs * per} increments, {conflicts} lost races retried")
    if shared_bucket.kind == "local":
        assert os.listdir(Path(shared_bucket.url) / ".tracebox-tmp") == []


def test_create_race_has_exactly_one_winner(shared_bucket, tmp_path):
    code = r"""
import os, sys, time
from tracebox.bucket import open_bucket
from tracebox.errors import AlreadyExists
s = open_bucket(sys.argv[1])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
try:
    s.create("lock", sys.argv[3].encode())
    print("won")
except AlreadyExists:
    print("lost")
"""
    go = tmp_path / "go"
    env = {**os.environ, **shared_bucket.env}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, shared_bucket.url, str(go), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(6)
    ]
    time.sleep(0.3)
    go.touch()
    results = []
    for c in children:
        out, err = c.communicate(timeout=60)
        assert c.returncode == 0, err
        results.append(out.strip())
    assert sorted(results) == ["lost"] * 5 + ["won"]
    winner = results.index("won")
    assert shared_bucket.store.get("lock").data == f"p{winner}".encode()


# --------------------------------------------------------------------------- local folder


@pytest.fixture
def local(tmp_path) -> LocalStore:
    return open_bucket(str(tmp_path / "bucket"), options={"create": True})


def test_local_missing_folder_is_not_found_and_mentions_init(tmp_path):
    with pytest.raises(NotFound, match="tracebox init"):
        open_bucket(str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()
    assert isinstance(open_bucket(str(tmp_path / "nope"), options={"create": True}), LocalStore)
    assert (tmp_path / "nope").is_dir()


def test_local_leaves_no_temp_files(local, tmp_path):
    tmp = Path(local.root) / ".tracebox-tmp"
    e = local.create("a/b.json", b"1")
    local.put("a/c.json", b"2")
    with pytest.raises(AlreadyExists):
        local.create("a/b.json", b"again")
    with pytest.raises(Conflict):
        local.update("a/b.json", b"x", "stale")
    with pytest.raises(Conflict):
        local.update("a/gone.json", b"x", e)
    local.update("a/b.json", b"3", e)
    src = tmp_path / "src"
    src.write_bytes(b"file")
    local.put_file("a/f", str(src))
    with pytest.raises(BucketError):
        local.put_file("a/g", str(tmp_path / "missing"))
    local.put("x", b"1")
    with pytest.raises(BucketError, match="both an object and a folder"):
        local.put("x/y", b"clash")
    local.delete("a/c.json")
    assert os.listdir(tmp) == []
    assert keys(local.list()) == ["a/b.json", "a/f", "x"]


def test_local_hidden_dirs_are_never_listed_or_written(local):
    local.put("p/k", b"v")
    local.update("p/k", b"w", local.head("p/k").etag)  # creates .tracebox-locks/...
    root = Path(local.root)
    assert (root / ".tracebox-locks").is_dir() and (root / ".tracebox-tmp").is_dir()
    (root / ".tracebox-tmp" / "leftover").write_bytes(b"crash debris")
    assert keys(local.list()) == ["p/k"]
    for prefix in (".tracebox-tmp/", ".tracebox-locks/", ".tracebox", ".tracebox-tmp/left"):
        assert keys(local.list(prefix)) == [], prefix
    with pytest.raises(NotFound):
        local.get(".tracebox-tmp/leftover")
    with pytest.raises(NotFound):
        local.head(".tracebox-tmp/leftover")
    for op in (
        lambda: local.put(".tracebox-tmp/x", b"x"),
        lambda: local.create(".tracebox-locks/x", b"x"),
        lambda: local.delete(".tracebox-tmp/leftover"),
    ):
        with pytest.raises(UsageError):
            op()
    assert (root / ".tracebox-tmp" / "leftover").exists()


def test_local_never_follows_symlinks(local, tmp_path):
    root = Path(local.root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not read")
    local.put("p/real", b"ok")
    os.symlink(outside / "secret", root / "p" / "link")  # a symlinked object
    os.symlink(outside, root / "p" / "dirlink")  # a symlinked folder
    os.symlink(outside, root / "toplink")

    assert keys(local.list()) == ["p/real"]
    assert keys(local.list("p/")) == ["p/real"]
    assert keys(local.list("p/dirlink/")) == []
    assert keys(local.list("toplink/")) == []
    for key in ("p/link", "p/dirlink/secret", "toplink/secret"):
        with pytest.raises(NotFound):
            local.get(key)
        with pytest.raises(NotFound):
            local.head(key)
        with pytest.raises(NotFound):
            local.get_file(key, str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()

    # writes through a symlinked folder are refused and touch nothing outside
    with pytest.raises(BucketError, match="symbolic link"):
        local.put("p/dirlink/new", b"x")
    with pytest.raises(BucketError, match="symbolic link"):
        local.create("toplink/secret2", b"x")
    with pytest.raises(Conflict):
        local.update("p/dirlink/secret", b"x", "any")
    local.delete("p/dirlink/secret")
    local.delete("toplink/secret")
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"do not read"

    # replacing a symlinked object replaces the link itself, never its target
    local.put("p/link", b"new object")
    assert (outside / "secret").read_bytes() == b"do not read"
    assert local.get("p/link").data == b"new object"


def test_local_bucket_folder_itself_may_be_a_symlink(tmp_path):
    real = tmp_path / "real-bucket"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    s = open_bucket(str(tmp_path / "alias"))
    s.put("a/b", b"1")
    assert s.get("a/b").data == b"1"
    assert keys(s.list("a/")) == ["a/b"]


def test_local_read_only_folder_is_access_denied(local):
    root = Path(local.root)
    local.put("p/existing", b"1")
    shutil.rmtree(root / ".tracebox-tmp")
    undo = _make_read_only(root)
    try:
        for op in (lambda: local.put("p/new", b"x"), lambda: local.create("q", b"x")):
            with pytest.raises(AccessDenied) as e:
                op()
            msg = str(e.value)
            assert "\n" not in msg and "permission denied" in msg.lower()
        assert local.get("p/existing").data == b"1"  # reads still work
    finally:
        undo()


def _make_read_only(path: Path):
    """chmod for normal users; root ignores modes, so use the immutable attribute there."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        return lambda: path.chmod(mode)
    chattr = shutil.which("chattr")  # e2fsprogs: part of every Debian system
    assert chattr, "running as root without chattr (e2fsprogs): cannot make a folder read-only"
    r = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, f"chattr +i {path}: {r.stderr.strip()}"
    return lambda: subprocess.run([chattr, "-i", str(path)], check=True)


def test_local_etags_never_come_back(local):
    """Inodes are recycled at once; ETags must still never repeat for one key."""
    e = local.put("k", b"0000")
    seen = {e}
    for i in range(300):
        e = local.update("k", b"%04d" % (i % 2), e)  # same size, two contents
        assert e not in seen
        seen.add(e)
    with pytest.raises(Conflict):
        local.update("k", b"x", sorted(seen - {e})[0])


def test_local_file_and_folder_of_same_name_clash_clearly(local):
    local.put("a/b", b"object")
    with pytest.raises(BucketError, match="both an object and a folder"):
        local.put("a/b/c", b"x")
    with pytest.raises(BucketError, match="both an object and a folder"):
        local.create("a/b/c/d", b"x")
    local.put("m/n/o", b"x")
    with pytest.raises(BucketError, match="both an object and a folder"):
        local.put("m/n", b"x")
    with pytest.raises(BucketError, match="both an object and a folder"):
        local.create("m/n", b"x")
    local.delete("m/n")  # a folder is not an object: nothing to delete
    assert keys(local.list()) == ["a/b", "m/n/o"]


# --------------------------------------------------------------------------- memory


def test_memory_prefixes_are_views_of_one_named_store():
    name = f"m{uuid.uuid4().hex}"
    a = open_bucket(f"memory://{name}/a")
    b = open_bucket(f"memory://{name}/b")
    whole = open_bucket(f"memory://{name}")
    a.put("k", b"from a")
    b.put("k", b"from b")
    assert a.get("k").data == b"from a"
    assert b.get("k").data == b"from b"
    assert keys(whole.list()) == ["a/k", "b/k"]
    assert keys(a.list()) == ["k"]
    assert open_bucket(f"memory://{name}/a").get("k").data == b"from a"
    assert keys(open_bucket(f"memory://other{name}").list()) == []
    assert a.url == f"memory://{name}/a"


# --------------------------------------------------------------------------- probe


class _CreateOverwrites:
    """A store whose create ignores existence (a server that drops If-None-Match)."""

    supports_cas = True

    def __init__(self, inner):
        self._inner = inner
        self.url = inner.url

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def create(self, key, data):
        return self._inner.put(key, data)


class _UpdateIgnoresEtag(_CreateOverwrites):
    """A store whose update ignores the ETag (a server that drops If-Match)."""

    def create(self, key, data):
        return self._inner.create(key, data)

    def update(self, key, data, etag):
        return self._inner.put(key, data)


def test_probe_passes_on_working_backends(bucket):
    r = probe(bucket.store, "proj")
    assert (r.ok, r.create_if_absent, r.compare_and_swap, r.detail) == (True, True, True, "")
    assert keys(bucket.store.list()) == []  # the scratch object is cleaned up
    assert probe(bucket.store, "").ok


def test_probe_catches_a_create_that_overwrites():
    s = _CreateOverwrites(open_bucket(f"memory://p{uuid.uuid4().hex}"))
    r = probe(s, "proj")
    assert not r.ok and not r.create_if_absent
    assert "create-if-absent overwrote" in r.detail
    assert keys(s.list()) == []


def test_probe_catches_an_update_that_ignores_the_etag(tmp_path):
    s = _UpdateIgnoresEtag(open_bucket(str(tmp_path / "b"), options={"create": True}))
    r = probe(s, "proj")
    assert not r.ok and r.create_if_absent and not r.compare_and_swap
    assert "wrong ETag succeeded" in r.detail


def test_probe_reports_backends_without_conditional_writes():
    class NoCas(_CreateOverwrites):
        supports_cas = False

    r = probe(NoCas(open_bucket("memory://nocas")), "proj")
    assert not r.ok and "no conditional writes" in r.detail


# --------------------------------------------------------------------------- URLs

GOOD_URLS = [
    ("./runs", BucketSpec("file", "/base/runs")),
    ("runs/../other", BucketSpec("file", "/base/other")),
    ("/abs/path/", BucketSpec("file", "/abs/path")),
    ("file:///abs/path", BucketSpec("file", "/abs/path")),
    ("file://localhost/abs/p%20q", BucketSpec("file", "/abs/p q")),
    ("memory://", BucketSpec("memory", "default")),
    ("memory://n", BucketSpec("memory", "n")),
    ("memory://n/p/q/", BucketSpec("memory", "n", "p/q")),
    ("s3://b", BucketSpec("s3", "b")),
    ("s3://b/p/q", BucketSpec("s3", "b", "p/q")),
    ("S3://b//p///q/", BucketSpec("s3", "b", "p/q")),
    ("gs://b/x", BucketSpec("gs", "b", "x")),
    ("gcs://b", BucketSpec("gs", "b")),
    ("az://c/x", BucketSpec("az", "c", "x")),
    ("azure://c", BucketSpec("az", "c")),
    ("abfs://c/x", BucketSpec("az", "c", "x")),
    ("abfs://c@acct.dfs.core.windows.net/x", BucketSpec("az", "c@acct.dfs.core.windows.net", "x")),
    ("hf://buckets/user/name", BucketSpec("hf", "user/name")),
    ("hf://buckets/user/name/p/q", BucketSpec("hf", "user/name", "p/q")),
]


@pytest.mark.parametrize("url,spec", GOOD_URLS, ids=[u for u, _ in GOOD_URLS])
def test_parse_bucket_url(url, spec):
    got = parse_bucket_url(url, base_dir="/base")
    assert got == spec
    assert parse_bucket_url(got.url, base_dir="/elsewhere") == got  # .url round-trips


def test_parse_home_and_relative_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_bucket_url("~/runs") == BucketSpec("file", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    assert parse_bucket_url("rel") == BucketSpec("file", str(tmp_path / "rel"))
    assert parse_bucket_url(".").url == str(tmp_path)


BAD_URLS = [
    ("", "empty"),
    ("   ", "empty"),
    ("a\x00b", "NUL"),
    ("s3://b/p\x00", "NUL"),
    ("file://host/x", "absolute"),
    ("file://", "without a path"),
    ("http://example.com/b", "unsupported"),
    ("ftp://b", "unsupported"),
    ("s3://", "missing bucket"),
    ("gs:///x", "missing bucket"),
    ("s3:/b", "did you mean s3://"),
    ("s3:b", "did you mean s3://"),
    ("memory:x", "did you mean memory://"),
    ("s3://b/p?versionId=1", "no ?query"),
    ("s3://b/p#frag", "no ?query"),
    ("s3://b/../x", "'..'"),
    ("memory://n/./x", "'.'"),
    ("s3://b/pre\\fix", "backslash"),
    ("gs://b/p\tq", "control character"),
    ("hf://user/name", "hf://buckets/<user>/<name>"),
    ("hf://buckets/user", "hf://buckets/<user>/<name>"),
    ("hf://buckets/us er/name", "invalid Hugging Face"),
    ("hf://buckets/user/-x", "invalid Hugging Face"),
]


@pytest.mark.parametrize("url,words", BAD_URLS, ids=[repr(u) for u, _ in BAD_URLS])
def test_bad_bucket_urls(url, words):
    with pytest.raises(UsageError) as e:
        parse_bucket_url(url)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_credentials_in_url_are_refused_without_echoing_them():
    with pytest.raises(UsageError) as e:
        parse_bucket_url("s3://AKIAXXXX:sup3rs3cret@bucket/p")
    assert "sup3rs3cret" not in str(e.value) and "AKIAXXXX" not in str(e.value)


def test_open_bucket_accepts_a_spec_and_options(tmp_path):
    spec = parse_bucket_url(str(tmp_path / "b"))
    s = open_bucket(spec, options={"create": True, "public_ok": True, "endpoint": None})
    assert s.url == spec.url and s.supports_cas


@pytest.mark.s3
def test_s3_wrong_credentials_are_access_denied(seaweed, monkeypatch):
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    s = open_bucket(seaweed.url("x"), options={"access_key": "wrong", "secret_key": "wrong"})
    with pytest.raises(AccessDenied):
        s.put("k", b"v")


@pytest.mark.s3
def test_s3_missing_bucket_is_not_an_absent_object(seaweed, monkeypatch):
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    s = open_bucket(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/p")
    with pytest.raises(NoSuchBucket, match="does not exist"):
        s.get("k")


def test_unreachable_endpoint_is_reported(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    s = open_bucket("s3://b/p", options={"endpoint": "http://127.0.0.1:9"})
    t = time.monotonic()
    with pytest.raises(BucketError) as e:
        s.get("k")
    assert "127.0.0.1:9" in str(e.value) or "reach" in str(e.value)
    assert time.monotonic() - t < 30


def test_put_file_get_file_report_progress(bucket, tmp_path):
    """Streamed transfers report every byte moved (the CLI draws its bar from this), and a
    multipart upload through the progress reader is still one correct object."""
    s = bucket.store
    src = tmp_path / "p.bin"
    payload = os.urandom(11 * MIB + 123)
    src.write_bytes(payload)
    up: list[int] = []
    s.put_file("files/p.bin", str(src), up.append)
    assert sum(up) == len(payload) and len(up) >= 2
    down: list[int] = []
    dest = tmp_path / "p.out"
    meta = s.get_file("files/p.bin", str(dest), down.append)
    assert sum(down) == len(payload) == meta.size
    assert dest.read_bytes() == payload
    if bucket.kind == "s3":
        assert s.head("files/p.bin").etag.strip('"').endswith("-3")  # still multipart
