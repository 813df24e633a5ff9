"""Trace Capsules end to end, on real git repositories and a real failing pytest run.

The session (examples/failing_session.py) is a Claude Code transcript of an agent that read
calc.py, wrote a test and ran ``python -m pytest -q``, which really failed. From it:
create → the failure is the real assertion → replay reproduces → a fix is committed →
replay against it says fixed → push, a watcher blocks, resolve unblocks it. Also: the
same capsule twice has the same id; a real corpus session becomes a capsule; planted
secrets are in no byte of the capsule; hostile capsules are refused; gh is driven
idempotently (a fake gh on PATH stands in for GitHub, which cannot run here).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import failing_session as kit  # noqa: E402

from tracebox.capsule import model, replay, sandbox  # noqa: E402
from tracebox.errors import FormatError, UsageError  # noqa: E402

TB = [sys.executable, "-m", "tracebox"]
CORPUS = Path(__file__).parent / "corpus"


def tb(*args, cwd, env=None, check=True, timeout=180) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [*TB, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=timeout,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"tracebox {args} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def session(tmp_path):
    return kit.make_failing_session(tmp_path / "s")


def _create(session, *extra) -> Path:
    out = session["root"] / "cap"
    tb("capsule", "create", session["transcript"], "--out", out, *extra, cwd=session["root"])
    return out


def _all_bytes(folder: Path) -> bytes:
    out = b""
    for f in folder.iterdir():
        data = f.read_bytes()
        out += data
        if f.name == model.BUNDLE:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
                for m in tar:
                    out += tar.extractfile(m).read()
    return out


# -- the whole loop -------------------------------------------------------------------------


def test_create_replay_fix_resolve_watch(session):
    root, work = session["root"], session["work"]
    cap = _create(session)
    doc = json.loads((cap / model.CAPSULE_JSON).read_text())
    f = doc["failure"]
    # the failure is the real one, as pytest printed it to the agent
    assert f["command"] == "python -m pytest -q" and f["exit_code"] == 1
    assert "E       assert -1 == 5" in f["error"] and "AssertionError" in f["error"]
    assert "tests/test_calc.py::test_add" in f["signature"]["failed"]
    assert "assert -1 == 5" in f["signature"]["errors"]
    assert doc["intent"]["prompt"].startswith("The add() tests fail in calc")
    assert [a["tool"] for a in doc["trajectory"]["actions"] if "tool" in a] == [
        "Read",
        "Write",
        "Bash",
        "Bash",
    ]
    assert doc["context"]["instructions"][0]["path"] == "CLAUDE.md"
    assert doc["snapshot"]["unpushed_commits"] == 1
    assert doc["snapshot"]["untracked"] == ["tests/test_more.py"]
    assert doc["reproduce"]["commands"] == ["python -m pytest -q"]
    assert doc["metrics"]["tool_calls"] == 4 and doc["metrics"]["tool_errors"] == 1
    assert tb("capsule", "verify", cap, cwd=root).stdout.strip().endswith("intact")

    # replay against the snapshot: the same tests fail with the same errors
    p = tb("capsule", "replay", cap, "--json", cwd=root)
    rec = json.loads(p.stdout)
    assert rec["verdict"] == "reproduces", rec
    assert "tests/test_calc.py::test_add" in rec["evidence"]["matched_failed"]
    assert [c.get("result") for c in rec["worktree"]["changes"]][:2] == ["applied", "applied"]

    # the maintainer fixes it; replay against the fix says fixed
    commit = kit.fix(work)
    rec = json.loads(tb("capsule", "replay", cap, "--against", commit, "--json", cwd=root).stdout)
    assert rec["verdict"] == "fixed", rec
    assert rec["worktree"]["commit"] == commit
    # the hoped-for verdict is the exit code: reproduces is not "fixed" with --against
    assert tb("capsule", "replay", cap, "--against", "main", cwd=root, check=False).returncode == 1

    # the reporter pushes and waits; the maintainer resolves; the watcher unblocks
    tb("init", "--bucket", root / "bucket", "--project", "demo", "--agent", "reporter", cwd=root)
    tb("capsule", "push", cap, cwd=root)
    cid = doc["id"]
    watcher = subprocess.Popen(
        [*TB, "capsule", "watch", cid, "--timeout", "60s", "--interval", "0.1s"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert watcher.poll() is None  # blocked: not resolved yet
    tb(
        "capsule",
        "resolve",
        cid,
        "--fixed-in",
        "fix",
        "--verify",
        "--repo",
        session["bare"],
        cwd=root,
        env={"TRACEBOX_AGENT": "maintainer"},
    )
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert "fixed in fix" in out
    status = json.loads(tb("capsule", "status", cid, "--json", cwd=root).stdout)
    assert status["state"] == "resolved" and status["verdict"] == "fixed"
    assert status["by"] == "maintainer" and status["history"][0]["state"] == "open"
    log = tb("log", "--json", cwd=root).stdout
    assert "capsule.pushed" in log and "capsule.resolved" in log


def test_watch_times_out_with_exit_1(session):
    root = session["root"]
    cap = _create(session)
    tb("init", "--bucket", root / "bucket", "--project", "demo", cwd=root)
    tb("capsule", "push", cap, cwd=root)
    p = tb(
        "capsule", "watch", cap, "--timeout", "0.5s", "--interval", "0.1s", cwd=root, check=False
    )
    assert p.returncode == 1 and "not resolved" in p.stderr


def test_resolve_verify_refuses_a_ref_that_does_not_fix_it(session):
    root = session["root"]
    cap = _create(session)
    tb("init", "--bucket", root / "bucket", "--project", "demo", cwd=root)
    tb("capsule", "push", cap, cwd=root)
    p = tb("capsule", "resolve", cap, "--fixed-in", "main", "--verify", cwd=root, check=False)
    assert p.returncode == 1 and "reproduces" in p.stderr and "not marking" in p.stderr
    status = json.loads(tb("capsule", "status", cap, "--json", cwd=root).stdout)
    assert status["state"] == "open"


def test_pull_by_id_from_the_bucket_and_replay(session, tmp_path):
    root = session["root"]
    cap = _create(session)
    tb("init", "--bucket", root / "bucket", "--project", "demo", cwd=root)
    cid = json.loads((cap / model.CAPSULE_JSON).read_text())["id"]
    tb("capsule", "push", cap, cwd=root)
    tb("capsule", "pull", cid, "--out", tmp_path / "pulled", cwd=root)
    assert (tmp_path / "pulled" / model.CAPSULE_JSON).read_bytes() == (
        cap / model.CAPSULE_JSON
    ).read_bytes()
    rec = json.loads(tb("capsule", "replay", cid, "--json", cwd=root).stdout)  # by id: pulled
    assert rec["verdict"] == "reproduces"
    # the verdict of a replay by id goes back to the bucket, beside the capsule
    reps = sorted((root / "bucket" / "demo" / "capsules" / cid / "replays").iterdir())
    assert len(reps) == 1
    kept = json.loads(reps[0].read_text())
    assert kept["verdict"] == "reproduces" and kept["against"] is None and kept["runs"]
    assert "capsule.replayed" in tb("log", cwd=root).stdout


def test_same_session_and_repository_give_the_same_id(session):
    a = _create(session)
    b = session["root"] / "cap2"
    tb("capsule", "create", session["transcript"], "--out", b, cwd=session["root"])
    ida = json.loads((a / model.CAPSULE_JSON).read_text())["id"]
    idb = json.loads((b / model.CAPSULE_JSON).read_text())["id"]
    assert ida == idb
    # a change in the repository is a different capsule
    (session["work"] / "calc.py").write_text(kit.CALC_BUGGY + "# changed\n")
    c = session["root"] / "cap3"
    tb("capsule", "create", session["transcript"], "--out", c, cwd=session["root"])
    assert json.loads((c / model.CAPSULE_JSON).read_text())["id"] != ida


def test_preview_writes_nothing_and_shows_the_scrubbed_content(session):
    root = session["root"]
    before = sorted(p.name for p in root.iterdir())
    p = tb("capsule", "preview", session["transcript"], cwd=root)
    assert sorted(p.name for p in root.iterdir()) == before
    assert "== failure" in p.stdout and "== bundle: snapshot/diff.patch" in p.stdout
    assert "[REDACTED:github]" in p.stdout
    for secret in kit.PLANTED:
        assert secret not in p.stdout


# -- privacy -----------------------------------------------------------------------------


def test_planted_secrets_are_in_no_byte_of_the_capsule(session):
    work = session["work"]
    # word-like, low entropy: only the env-value rule can know it is a secret
    env_secret = "correct-horse-battery-staple-42"
    # secrets in an untracked file the agent wrote, in the uncommitted diff, in a file
    # the agent read, in an instruction file, and an env value the tool output showed
    (work / "tests" / "test_more.py").write_text(kit.TEST_MORE + f'\nTOKEN = "{kit.GH_TOKEN}"\n')
    (work / "calc.py").write_text(kit.CALC_BUGGY + f'\n# api_key = "{kit.AWS_KEY}"\n')
    (work / "CLAUDE.md").write_text(f"Deploy with password: {kit.PLANTED[2]}\n")
    lines = (
        session["transcript"]
        .read_text()
        .replace("DB_HOST=localhost", f"DB_HOST=localhost\\nSETTING={env_secret}")
        .replace("return a - b", f"return a - b  # key {kit.GH_TOKEN}", 1)
    )
    session["transcript"].write_text(lines)
    cap = _create(session)
    tb(
        "capsule",
        "create",
        session["transcript"],
        "--out",
        session["root"] / "cap-env",
        cwd=session["root"],
        env={"DEPLOY_TOKEN": env_secret},
    )
    for folder in (cap, session["root"] / "cap-env"):
        data = _all_bytes(folder)
        for secret in kit.PLANTED:
            assert secret.encode() not in data, (folder.name, secret[:6])
    assert env_secret.encode() in _all_bytes(cap)  # no other rule takes it...
    assert env_secret.encode() not in _all_bytes(session["root"] / "cap-env")  # ...this one
    doc = json.loads((cap / model.CAPSULE_JSON).read_text())
    assert doc["scrub"]["counts"]["github"] >= 2 and doc["scrub"]["counts"]["aws"] >= 2
    assert tb("capsule", "verify", cap, cwd=session["root"]).returncode == 0


def test_verify_catches_tampering(session):
    root = session["root"]
    cap = _create(session)
    md = cap / model.CAPSULE_MD
    md.write_text(md.read_text() + "\nextra\n")
    p = tb("capsule", "verify", cap, cwd=root, check=False)
    assert p.returncode == 1 and "capsule.md" in p.stdout
    md.write_text(md.read_text().removesuffix("\nextra\n"))
    doc = json.loads((cap / model.CAPSULE_JSON).read_text())
    doc["failure"]["exit_code"] = 0
    (cap / model.CAPSULE_JSON).write_text(json.dumps(doc))
    p = tb("capsule", "verify", cap, cwd=root, check=False)
    assert p.returncode == 1 and "does not match the content" in p.stdout


# -- a real session from the corpus -------------------------------------------------------------


def test_a_capsule_from_a_real_corpus_session(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    kit.git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("x\n")
    kit.git(repo, "add", "-A")
    kit.git(repo, "commit", "-q", "-m", "init")
    src = CORPUS / "claude-code" / "258c7280-ae70-4798-800f-63464d01a85d.jsonl"
    out = tmp_path / "cap"
    p = tb("capsule", "create", src, "--repo", repo, "--out", out, "--json", cwd=tmp_path)
    got = json.loads(p.stdout)
    doc = json.loads((out / model.CAPSULE_JSON).read_text())
    # the failure is a real failing tool result of that session, its text as the agent saw it
    raw = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    outputs = []
    for d in raw:
        c = (d.get("message") or {}).get("content")
        for b in c if isinstance(c, list) else []:
            if isinstance(b, dict) and b.get("type") == "tool_result" and b.get("is_error"):
                text = b.get("content")
                if isinstance(text, list):
                    text = "".join(x.get("text", "") for x in text if isinstance(x, dict))
                outputs.append(str(text))
    assert outputs, "the corpus session has failing tool results"
    assert doc["failure"]["call_id"] and doc["failure"]["error"]
    assert any(doc["failure"]["error"][:200].split("\n")[0] in o for o in outputs)
    assert doc["metrics"]["steps"] > 100 and got["id"] == doc["id"]
    assert tb("capsule", "verify", out, cwd=tmp_path).returncode == 0


# -- hostile capsules -----------------------------------------------------------------------


def _bundle_with(
    tmp_path, cap: Path, members: dict[str, bytes], *, link: str | None = None
) -> Path:
    evil = tmp_path / "evil"
    evil.mkdir(parents=True)
    (evil / model.CAPSULE_JSON).write_bytes((cap / model.CAPSULE_JSON).read_bytes())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    (evil / model.BUNDLE).write_bytes(gzip.compress(raw.getvalue()))
    return evil


def test_hostile_bundles_are_refused(session, tmp_path):
    cap = _create(session)
    for name in ("../escape.txt", "/etc/x", "snapshot/../../x", "a\\b"):
        evil = _bundle_with(tmp_path / name.replace("/", "_").replace("\\", "_"), cap, {name: b"x"})
        with pytest.raises(FormatError):
            model.load(str(evil))
    evil = _bundle_with(tmp_path / "link", cap, {}, link="snapshot/untracked/passwd")
    with pytest.raises(FormatError, match="not a regular file"):
        model.load(str(evil))
    p = tb("capsule", "replay", evil, cwd=tmp_path, check=False)
    assert p.returncode == 1 and "not a regular file" in p.stderr and "Traceback" not in p.stderr


def test_hostile_patches_are_refused():
    for patch in (
        b"diff --git a/../x b/../x\n--- a/../x\n+++ b/../x\n",
        b"diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\n",
        b"diff --git a/ok b/ok\nnew file mode 120000\n",
        b"diff --git a//etc/passwd b//etc/passwd\n",
    ):
        with pytest.raises(FormatError):
            replay.check_patch(patch, "snapshot/diff.patch")
    replay.check_patch(b"diff --git a/src/x.py b/src/x.py\n--- a/src/x.py\n+++ b/src/x.py\n", "ok")


def test_oversized_and_symlinked_capsules_are_refused(tmp_path, monkeypatch):
    big = tmp_path / "big"
    big.mkdir()
    monkeypatch.setattr(model, "MAX_CAPSULE_BYTES", 1000)
    (big / model.CAPSULE_JSON).write_text(json.dumps({"format": model.FORMAT, "pad": "x" * 2000}))
    with pytest.raises(FormatError, match="larger than"):
        model.load(str(big))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / model.CAPSULE_JSON).symlink_to(big / model.CAPSULE_JSON)
    with pytest.raises(FormatError, match="symbolic link"):
        model.load(str(linked))
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / model.CAPSULE_JSON).write_text(json.dumps({"format": model.FORMAT, "version": 99}))
    with pytest.raises(FormatError, match="newer"):
        model.load(str(newer))
    with pytest.raises(UsageError):
        model.load(str(tmp_path / "missing"))


def test_untracked_files_never_escape_the_worktree(tmp_path):
    root = tmp_path / "wt"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "out").symlink_to(tmp_path)
    with pytest.raises(FormatError):
        replay._inside(str(root), "sub/out/pwned")
    with pytest.raises(FormatError):
        replay._inside(str(root), ".git/config")
    assert replay._inside(str(root), "sub/new.py").endswith("sub/new.py")


# -- the sandbox ---------------------------------------------------------------------------


def test_sandbox_env_home_network_and_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_API_TOKEN", "do-not-pass-me")
    r = sandbox.run("env; echo HOME=$HOME", str(tmp_path))
    assert r.exit_code == 0
    assert "do-not-pass-me" not in r.output and "SECRET_API_TOKEN" not in r.output
    home = [line for line in r.output.splitlines() if line.startswith("HOME=")][-1][5:]
    assert home != os.environ.get("HOME") and not os.path.exists(home)  # thrown away
    net = sandbox.isolation()
    probe = f"{sys.executable} -c \"import socket; socket.create_connection(('1.1.1.1', 53), 2)\""
    r = sandbox.run(probe, str(tmp_path))
    if net["network_isolated"]:
        assert r.exit_code != 0 and "unreachable" in r.output.lower()
    else:
        assert "not available" in net["network"]
    r = sandbox.run("sleep 30", str(tmp_path), timeout=0.5)
    assert r.timed_out and r.exit_code is None and r.seconds < 20
    r = sandbox.run(f"{sys.executable} -c \"print('x' * 5_000_000)\"", str(tmp_path))
    assert r.cut_bytes > 0 and len(r.output) < 2_200_000


# -- GitHub issues, through gh --------------------------------------------------------------

FAKE_GH = r"""#!/usr/bin/env python3
import json, os, sys
state = os.environ["FAKE_GH_STATE"]
db = json.load(open(state)) if os.path.exists(state) else {"issues": [], "calls": []}
args = sys.argv[1:]
db["calls"].append(args[:2])
def save(): json.dump(db, open(state, "w"))
if args[:2] == ["issue", "list"]:
    q = args[args.index("--search") + 1].split()[0]
    print(json.dumps([i for i in db["issues"] if q in i["body"]])); save(); sys.exit(0)
if args[:2] == ["issue", "create"]:
    n = len(db["issues"]) + 1
    url = f"https://github.com/{args[args.index('--repo') + 1]}/issues/{n}"
    db["issues"].append({"number": n, "body": sys.stdin.read(), "url": url, "state": "OPEN",
                         "title": args[args.index("--title") + 1]})
    print(url); save(); sys.exit(0)
if args[:2] == ["issue", "edit"]:
    n = int(args[2]); db["issues"][n - 1]["body"] = sys.stdin.read(); save(); sys.exit(0)
if args[:2] == ["issue", "view"]:
    i = db["issues"][int(args[2]) - 1]
    print(json.dumps({"state": i["state"], "stateReason": "COMPLETED", "url": i["url"]})); save(); sys.exit(0)
sys.exit(1)
"""


def test_issue_is_filed_once_and_updated_and_watch_sees_it_closed(session, tmp_path):
    root = session["root"]
    cap = _create(session)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    gh = bindir / "gh"
    gh.write_text(FAKE_GH)
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "gh.json"
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_GH_STATE": str(state)}
    dry = tb("capsule", "issue", cap, "--dry-run", cwd=root)
    cid = json.loads((cap / model.CAPSULE_JSON).read_text())["id"]
    assert f"<!-- tracebox-capsule: {cid} -->" in dry.stdout and "assert -1 == 5" in dry.stdout
    assert not state.exists()  # --dry-run files nothing
    first = json.loads(
        tb("capsule", "issue", cap, "--repo", "acme/calc", "--json", cwd=root, env=env).stdout
    )
    second = json.loads(
        tb("capsule", "issue", cap, "--repo", "acme/calc", "--json", cwd=root, env=env).stdout
    )
    db = json.loads(state.read_text())
    assert first["action"] == "created" and second["action"] == "updated"
    assert len(db["issues"]) == 1 and second["number"] == first["number"]
    for secret in kit.PLANTED:
        assert secret not in db["issues"][0]["body"]
    # the reporter's watcher also unblocks when the issue is closed as completed
    tb("init", "--bucket", root / "bucket", "--project", "demo", cwd=root)
    tb("capsule", "push", cap, cwd=root)
    db["issues"][0]["state"] = "CLOSED"
    state.write_text(json.dumps(db))
    p = tb("capsule", "watch", cap, "--timeout", "10s", "--interval", "0.1s", cwd=root, env=env)
    assert "issue closed" in p.stdout


# -- the published schema ---------------------------------------------------------------------


def test_capsules_validate_against_the_published_schema(session):
    import jsonschema

    schema = json.loads((Path(__file__).parents[1] / "docs" / "capsule.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    doc = json.loads((_create(session) / model.CAPSULE_JSON).read_text())
    validator.validate(doc)
    broken = {**doc, "failure": {**doc["failure"], "kind": "oops"}}
    assert not validator.is_valid(broken)


FAKE_AGENT = r"""
import json, os, re, sys, uuid
prompt = open(sys.argv[1]).read()
assert "The add() tests fail" in prompt
code = open("calc.py").read()
open("calc.py", "w").write(code.replace("a - b", "a + b"))
cwd = os.getcwd()  # Claude Code names the folder after it: every non-alphanumeric is "-"
folder = os.path.join(os.environ["HOME"], ".claude", "projects", re.sub("[^A-Za-z0-9]", "-", cwd))
os.makedirs(folder)
sid = str(uuid.uuid4())
def line(kind, message, n):
    return json.dumps({"type": kind, "sessionId": sid, "cwd": cwd, "uuid": str(uuid.uuid4()),
                       "timestamp": f"2026-12-02T10:00:0{n}.000Z", "message": message}) + "\n"
with open(os.path.join(folder, sid + ".jsonl"), "w") as f:
    f.write(line("user", {"role": "user", "content": prompt}, 0))
    f.write(line("assistant", {"role": "assistant", "id": "msg_x", "model": "fake-model",
             "content": [{"type": "text", "text": "Fixed add()."}],
             "usage": {"input_tokens": 10, "output_tokens": 5}}, 1))
print("agent done")
"""


def test_replay_with_an_agent_reports_its_metrics_and_the_verdict_after(session, tmp_path):
    cap = _create(session)
    agent = tmp_path / "agent.py"
    agent.write_text(FAKE_AGENT)
    p = tb(
        "capsule",
        "replay",
        cap,
        "--agent",
        f"{sys.executable} {agent} {{prompt_file}}",
        "--json",
        cwd=session["root"],
    )
    rec = json.loads(p.stdout)
    assert rec["verdict"] == "reproduces"  # before the agent
    a = rec["agent"]
    assert a["exit_code"] == 0 and "agent done" in a["output_tail"]
    assert a["session"]["harness"] == "claude-code" and a["session"]["models"] == ["fake-model"]
    assert a["metrics"]["steps"] == 2 and a["original_metrics"]["steps"] == 11
    assert a["verdict_after"] == "fixed", a["evidence_after"]
