"""A failing agent session on a real repository, for the capsule demo and tests.

``make_failing_session(root)`` creates, under ``root``:

* ``upstream.git`` — a bare repository (the project's remote, as a file URL);
* ``work/`` — a clone with a bug in ``calc.py`` (``add`` subtracts), a test that catches
  it, a ``CLAUDE.md``, one pushed commit and one unpushed commit, an uncommitted change
  and an untracked test file the agent wrote;
* ``transcript.jsonl`` — a Claude Code transcript (the real line format) of an agent
  that read ``calc.py``, wrote the new test and ran ``python -m pytest -q`` — with the
  **real** output of that run, which fails with an ``AssertionError``.

``fix(work)`` commits the fix on a branch and pushes it, returning the commit id.
Secrets planted in the session (``PLANTED``) let tests prove the scrubber took them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

SESSION_ID = "9d3f0c1e-7b2a-4c55-8e61-0a1b2c3d4e5f"
GH_TOKEN = "ghp_" + "R8x2Kq7LmN4pV9sT1wY6zB3cD5fH0jA2eG4i"  # assembled: no token in the sources
AWS_KEY = "AKIA" + "Q4ZPX7NW2LKD6HJ3"
PLANTED = (GH_TOKEN, AWS_KEY, "hunter2-Sup3r-pass")

CALC_BUGGY = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_CALC = (
    "from calc import add, mul\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n"
)
TEST_MORE = "from calc import add\n\n\ndef test_add_zero():\n    assert add(0, 4) == 4\n"


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    p = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"git {args}: {p.stderr}")
    return p.stdout.strip()


def _pytest(cwd: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
    )
    return p.returncode, (p.stdout + p.stderr).strip()


def make_failing_session(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    bare = root / "upstream.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = root / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git(work, "checkout", "-q", "-b", "main")
    (work / "calc.py").write_text(CALC_BUGGY)
    (work / "tests").mkdir()
    (work / "tests" / "test_calc.py").write_text(TEST_CALC)
    (work / "CLAUDE.md").write_text("Run the tests with `python -m pytest -q` before you finish.\n")
    (work / "conftest.py").write_text(
        "import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n"
    )
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "calc: add and mul")
    git(work, "push", "-q", "-u", "origin", "main")
    # an unpushed commit and uncommitted work, as an agent leaves a repository
    (work / "README.md").write_text("# calc\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "readme")
    (work / "calc.py").write_text(CALC_BUGGY + "\n\n# TODO: check add\n")
    (work / "tests" / "test_more.py").write_text(TEST_MORE)

    code, output = _pytest(work)
    assert code != 0 and "AssertionError" in output, output
    path = root / "transcript.jsonl"
    lines = _transcript(work, output, code)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return {
        "root": root,
        "bare": bare,
        "work": work,
        "transcript": path,
        "output": output,
        "exit_code": code,
    }


def fix(work: Path) -> str:
    (work / "calc.py").write_text(CALC_FIXED)
    git(work, "add", "calc.py")
    git(work, "commit", "-q", "-m", "fix add")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/fix")
    return git(work, "rev-parse", "HEAD")


def _transcript(work: Path, output: str, code: int) -> list[dict]:
    cwd = str(work)
    t = iter(f"2026-12-01T10:00:{s:02d}.000Z" for s in range(0, 60, 2))
    prev = [None]

    def line(kind: str, message: dict, **more) -> dict:
        u = str(uuid.uuid4())
        d = {
            "parentUuid": prev[0],
            "isSidechain": False,
            "userType": "external",
            "cwd": cwd,
            "sessionId": SESSION_ID,
            "version": "2.1.38",
            "gitBranch": "main",
            "type": kind,
            "message": message,
            "uuid": u,
            "timestamp": next(t),
            **more,
        }
        prev[0] = u
        return d

    usage = {"input_tokens": 120, "cache_read_input_tokens": 4000, "output_tokens": 60}

    def assistant(mid: str, block: dict) -> dict:
        msg = {
            "model": "claude-sonnet-4-5",
            "id": mid,
            "type": "message",
            "role": "assistant",
            "content": [block],
            "stop_reason": None,
            "usage": usage,
        }
        return line("assistant", msg, requestId="req_" + mid[4:])

    def result(call: str, content: str, is_error: bool = False, **more) -> dict:
        block = {
            "tool_use_id": call,
            "type": "tool_result",
            "content": content,
            "is_error": is_error,
        }
        return line("user", {"role": "user", "content": [block]}, **more)

    numbered = "".join(f"{i:6d}\u2192{text}\n" for i, text in enumerate(CALC_BUGGY.splitlines(), 1))
    return [
        line(
            "user",
            {
                "role": "user",
                "content": (
                    "The add() tests fail in calc; find out why and add a test for zero. "
                    f"(my token is {GH_TOKEN}, and AWS {AWS_KEY} in case you need them)"
                ),
            },
        ),
        assistant("msg_01A", {"type": "text", "text": "I'll look at calc.py first."}),
        assistant(
            "msg_01B",
            {
                "type": "tool_use",
                "id": "toolu_read",
                "name": "Read",
                "input": {"file_path": f"{cwd}/calc.py"},
            },
        ),
        result("toolu_read", numbered),
        assistant(
            "msg_01C",
            {
                "type": "tool_use",
                "id": "toolu_write",
                "name": "Write",
                "input": {"file_path": f"{cwd}/tests/test_more.py", "content": TEST_MORE},
            },
        ),
        result("toolu_write", f"File created successfully at: {cwd}/tests/test_more.py"),
        assistant(
            "msg_01D",
            {
                "type": "tool_use",
                "id": "toolu_env",
                "name": "Bash",
                "input": {"command": "env | grep DB_", "description": "Check settings"},
            },
        ),
        result("toolu_env", "DB_PASSWORD=hunter2-Sup3r-pass\nDB_HOST=localhost"),
        assistant(
            "msg_01E",
            {
                "type": "tool_use",
                "id": "toolu_test",
                "name": "Bash",
                "input": {"command": "python -m pytest -q", "description": "Run the tests"},
            },
        ),
        result(
            "toolu_test",
            f"Exit code {code}\n{output}",
            True,
            toolUseResult=f"Error: Exit code {code}\n{output}",
        ),
        assistant(
            "msg_01F",
            {
                "type": "text",
                "text": "The add test fails: add(2, 3) returns -1. The bug is upstream.",
            },
        ),
    ]
