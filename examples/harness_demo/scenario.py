"""The harness demonstration: a real concurrency bug, agents that learn from observations.

* ``make_repo(root)`` — a git repository with a small hit counter (``service/counter.py``)
  whose ``hit()`` reads, yields and writes back: under threads it **loses updates**. Its
  validator, ``tests/test_stress.py``, hits it from 16 threads and fails on the bug.
* ``ModelServer`` — a scripted, OpenAI-compatible model (``/v1/chat/completions`` with tool
  calls) on 127.0.0.1. Its policy reads the conversation like a model reads its prompt:
  the variant's strategy picks where to look and which fix to try first, and the
  **observations** in the prompt (``observations.md``) make it skip fixes that earlier
  agents saw fail the validator, prefer one that passed, and follow the evidence (an
  observed "lost updates" failure points at mutual exclusion). A "stubborn" strategy
  re-runs the failing test without changing anything — a stuck agent for the live rules.
* ``write_harness(root, …)`` — the ``HARNESS.toml`` for it (``agent.py`` is the agent).

No network and no paid model: the agents talk to ``ModelServer`` through tracebox's proxy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent

COUNTER = '''"""A hit counter shared by request handlers (threads)."""

import time


class HitCounter:
    def __init__(self):
        self.value = 0

    def hit(self):
        current = self.value
        time.sleep(0)  # handlers do some work here (and the scheduler may switch threads)
        self.value = current + 1
'''

STRESS = """import threading

from service.counter import HitCounter

THREADS, HITS = 16, 300


def test_no_lost_updates():
    c = HitCounter()

    def work():
        for _ in range(HITS):
            c.hit()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.value == THREADS * HITS, f"lost updates: expected {THREADS * HITS}, got {c.value}"
"""

_HIT = {
    "yield-first": "        time.sleep(0)\n        current = self.value\n        time.sleep(0)\n        self.value = current + 1\n",
    "compare-and-retry": (
        "        while True:\n            current = self.value\n            time.sleep(0)\n"
        "            if self.value == current:\n                time.sleep(0)\n"
        "                self.value = current + 1\n                return\n"
    ),
    "thread-local": (
        "        if not hasattr(self, '_local'):\n            self._local = threading.local()\n"
        "        n = getattr(self._local, 'n', 0) + 1\n        self._local.n = n\n        self.value = n\n"
    ),
    "longer-pause": "        current = self.value\n        time.sleep(0.0001)\n        self.value = current + 1\n",
    "copy-then-swap": "        snapshot = int(self.value)\n        time.sleep(0)\n        self.value = snapshot + 1\n",
    "lock": "        with self._lock:\n            current = self.value\n            time.sleep(0)\n            self.value = current + 1\n",
    "atomic-counter": "        self.value = next(self._counter)\n",
}
_INIT = {
    "lock": "        self.value = 0\n        self._lock = threading.Lock()\n",
    "atomic-counter": "        self.value = 0\n        self._counter = itertools.count(1)\n",
}
# name → (what a model would say about it, tags)
FIXES = {
    "yield-first": ("yield to other threads before reading", {"timing"}),
    "compare-and-retry": ("re-check the value and retry on a change", {"retry"}),
    "thread-local": ("give every thread its own count", {"state"}),
    "longer-pause": ("a longer pause so writes settle", {"timing"}),
    "copy-then-swap": ("copy the value, then swap it in", {"state"}),
    "lock": ("a threading.Lock around the read-modify-write", {"mutual-exclusion"}),
    "atomic-counter": (
        "an atomic counter (itertools.count) instead of read-modify-write",
        {"mutual-exclusion"},
    ),
}
# where each focus looks first: the blind exploration order of generation 1
PREFERENCES = {
    "timing": ["yield-first", "longer-pause", "lock"],
    "retry": ["compare-and-retry", "copy-then-swap", "atomic-counter"],
    "state": ["thread-local", "copy-then-swap", "lock"],
}
TEST_COMMAND = "python -m pytest -q -p no:cacheprovider tests/test_stress.py"


def fixed_source(name: str) -> str:
    src = COUNTER.replace("import time\n", "import itertools\nimport threading\nimport time\n")
    src = src.replace("        self.value = 0\n", _INIT.get(name, "        self.value = 0\n"))
    body_start = src.index("        current = self.value\n")
    return src[:body_start] + _HIT[name]


def make_repo(root: Path) -> Path:
    repo = root / "service-repo"
    (repo / "service").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "service" / "__init__.py").write_text("")
    (repo / "service" / "counter.py").write_text(COUNTER)
    (repo / "tests" / "test_stress.py").write_text(STRESS)
    (repo / "conftest.py").write_text(
        "import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\n"
    )
    env = {
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    import os

    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "hit counter"],
    ):
        subprocess.run(
            ["git", "-C", str(repo), *args],
            check=True,
            env={**os.environ, **env},
            capture_output=True,
        )
    return repo


def write_harness(root: Path, repo: Path, *, generations: int = 3, stubborn: bool = False) -> Path:
    variants = [
        ("timing", "Suspect timing: look at how hit() interleaves between threads."),
        ("retry", "Suspect a missing retry: make hit() robust to concurrent changes."),
        ("state", "Suspect shared state: look at what the threads share."),
    ]
    if stubborn:
        variants.append(("stubborn", "Keep re-running the stress test until it passes."))
    lines = [
        "[run]",
        'name = "counter-race"',
        f"repo = {json.dumps(str(repo))}",
        'base = "main"',
        'task = "Requests are lost under load: HitCounter.hit() drops hits when many threads call it. '
        'Fix service/counter.py so that tests/test_stress.py passes."',
        f'agent = "{sys.executable} {HERE / "agent.py"} {{prompt_file}}"',
        f"generations = {generations}",
        "parallel = 3",
        'timeout = "60s"',
        f'validator = "{sys.executable} -m pytest -q -p no:cacheprovider tests/test_stress.py"',
        'validator_timeout = "60s"',
        "",
        "[rules]",
        "same_failing_command = 3",
        'no_progress = "30s"',
        "",
    ]
    for name, strategy in variants:
        lines += [
            "[[variants]]",
            f'name = "{name}"',
            f"strategy = {json.dumps(strategy)}",
            f'params = {{ focus = "{name}" }}',
            "",
        ]
    path = root / "HARNESS.toml"
    path.write_text("\n".join(lines))
    return path


# -- the scripted model ----------------------------------------------------------------------

_FAILED = re.compile(r"FAILED the validator.*?Applying fix '([\w-]+)'")
_PASSED = re.compile(r"PASSED the validator.*?Applying fix '([\w-]+)'")


def policy(messages: list[dict]) -> dict:
    """The next assistant message for a conversation (deterministic)."""
    prompt = str(messages[0].get("content") or "")
    strategy = _section(prompt, "# Your strategy")
    observed = _section(prompt, "# Observations from earlier attempts")
    if "Keep re-running" in strategy:
        focus = "stubborn"
    elif "missing retry" in strategy:
        focus = "retry"
    elif "shared state" in strategy:
        focus = "state"
    else:
        focus = "timing"
    said = [m for m in messages if m.get("role") == "assistant"]
    results = [m for m in messages if m.get("role") == "tool"]
    n = len(said)
    if n == 0:
        return _call("read_file", {"path": "service/counter.py"}, "Reading the counter first.")
    if focus == "stubborn":
        last = str(results[-1].get("content") or "") if results else ""
        if n > 1 and not last.startswith("Exit code"):
            return {"role": "assistant", "content": "The stress test passes now."}
        return _call("run", {"command": TEST_COMMAND}, "Running the stress test again.")
    if n == 1:
        failed = set(_FAILED.findall(observed))
        passed = [f for f in _PASSED.findall(observed) if f in FIXES]
        order = list(PREFERENCES[focus])
        if "lost updates" in observed:  # the evidence: updates are lost → mutual exclusion
            order = [f for f in FIXES if "mutual-exclusion" in FIXES[f][1]] + order
        choice = next((f for f in passed + order if f not in failed), order[-1])
        return _call(
            "write_file",
            {"path": "service/counter.py", "content": fixed_source(choice)},
            f"Applying fix '{choice}': {FIXES[choice][0]}.",
        )
    if n == 2:
        return _call("run", {"command": TEST_COMMAND}, "Running the stress test.")
    applied = next(m for m in said if "Applying fix" in str(m.get("content")))["content"]
    name = re.search(r"fix '([\w-]+)'", applied).group(1)
    out = str(results[-1].get("content") or "")
    if out.startswith("Exit code"):
        lines = [ln.strip() for ln in out.splitlines()]
        err = next((ln for ln in lines if ln.startswith("E ") and "Error" in ln), None)
        err = (
            (err or next((ln for ln in lines if "Error" in ln), "the test failed"))
            .lstrip("E ")
            .strip()
        )
        return {"role": "assistant", "content": f"Applying fix '{name}' did not help: {err[:160]}"}
    return {
        "role": "assistant",
        "content": f"Applying fix '{name}' worked: the stress test passes.",
    }


def _section(prompt: str, heading: str) -> str:
    """The text under a top-level ``# heading`` of the prompt (empty if absent)."""
    start = prompt.find(heading)
    if start < 0:
        return ""
    rest = prompt[start + len(heading) :]
    end = re.search(r"^# ", rest, re.M)
    return rest[: end.start()] if end else rest


def _call(name: str, args: dict, text: str) -> dict:
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {
                "id": f"call_{name}_{abs(hash(text)) % 10**8}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        size = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(size) or b"{}")
        msg = policy(body.get("messages") or [])
        reply = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model") or "scripted-coder",
            "choices": [
                {
                    "index": 0,
                    "message": msg,
                    "finish_reason": "tool_calls" if msg.get("tool_calls") else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 50 + len(json.dumps(body)) // 4,
                "completion_tokens": 40,
                "total_tokens": 90 + len(json.dumps(body)) // 4,
            },
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class ModelServer:
    """The scripted model on a free loopback port (``url``), served from a thread."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
