"""Shared test fixtures: a real S3 server (SeaweedFS), bucket URLs, and the CLI as a subprocess.

Fixtures
- ``seaweed`` (session): starts ``weed mini`` on free 127.0.0.1 ports and yields an
  :class:`S3Server`. Stopped by PID (its process group) at the end of the session.
- ``bucket_url``: a fresh, unique bucket URL per test, parametrized ``local`` / ``s3``.
  For ``s3`` the AWS_* env vars of the server are set (monkeypatch), so code that reads the
  standard AWS environment, and ``cli`` subprocesses, talk to it.
- ``cli``: runs ``python -m tracebox ARGS`` as a real subprocess; returns CompletedProcess.
- ``browser`` (session): Debian's headless Chromium driven by Playwright (never a
  downloaded browser), for the timeline and UI tests.
- ``kafka`` (session): the bootstrap ``host:port`` of a Kafka-protocol broker (noida-db
  on a free 127.0.0.1 port, stopped by PID at the end; or ``TRACEBOX_TEST_KAFKA``'s
  broker). ``kafka_broker``: a broker of the test's own that ``restart()`` can stop and
  start again on the same port (skipped with an external broker).

Every test also runs with ``TRACEBOX_*`` env vars removed and the XDG config/data/state
dirs pointed at a temp dir, so a developer's own config never leaks into a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import kafka as kafka_server
from seaweed import S3Server
from seaweed import start as start_seaweed

CLI_TIMEOUT = 60.0

# where agents keep their sessions, when not under HOME (see capture/harnesses/)
AGENT_HOME_VARS = (
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "PI_CODING_AGENT_DIR",
    "PI_CODING_AGENT_SESSION_DIR",
    "OPENCLAW_HOME",
    "OPENCLAW_STATE_DIR",
    "CLAWDBOT_STATE_DIR",
    "GEMINI_CLI_HOME",
    "OPENCODE_DB",
    "HERMES_HOME",
)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_STARTUP: list[float] = []  # seconds SeaweedFS took to become ready (for the summary)


@pytest.fixture(scope="session")
def browser():
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `make chromium` installs it"
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS S3 server for the whole session, bucket ``test``."""
    try:
        server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    except RuntimeError as e:
        pytest.fail(str(e))
    _STARTUP.append(server.startup_s)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker for the whole session: its bootstrap ``host:port``. Tests
    share it, so each uses topic prefixes of its own."""
    try:
        broker = kafka_server.start(tmp_path_factory.mktemp("kafka"))
    except (RuntimeError, TimeoutError) as e:
        pytest.fail(str(e))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[kafka_server.Broker]:
    """A noida-db broker of this test's own (always, even with ``TRACEBOX_TEST_KAFKA``
    set: an external broker cannot be restarted), which ``restart()`` stops and starts
    again."""
    broker = kafka_server.start_own(tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    if _STARTUP:
        terminalreporter.write_line(f"seaweed: S3 server ready in {_STARTUP[-1]:.2f} s")


# --------------------------------------------------------------------------- isolation


def isolate(monkeypatch: pytest.MonkeyPatch, base: Path) -> Path:
    """No TRACEBOX_* vars, no user config, and none of the machine's own agent sessions:
    HOME and the XDG folders point under BASE (created), every agent's home-folder
    override is unset. Returns the HOME. Module-scoped fixtures call it with a
    ``pytest.MonkeyPatch.context()``: they run before any test's own isolation."""
    for name in list(os.environ):
        if name.startswith("TRACEBOX_") or name in AGENT_HOME_VARS:
            monkeypatch.delenv(name)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        (base / var.lower()).mkdir(parents=True)
        monkeypatch.setenv(var, str(base / var.lower()))
    (base / "home").mkdir()
    monkeypatch.setenv("HOME", str(base / "home"))
    return base / "home"


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    isolate(monkeypatch, tmp_path_factory.mktemp("xdg"))


# --------------------------------------------------------------------------- bucket URLs


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("s3", id="s3", marks=pytest.mark.s3),
    ]
)
def bucket_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A fresh, empty bucket URL for this test: a local directory path, or ``s3://test/<uuid>``.

    The local directory is not created (a fresh bucket). For s3 the server's AWS_* env vars
    are set for the test and every subprocess it starts.
    """
    if request.param == "local":
        return str(tmp_path / "bucket")
    server: S3Server = request.getfixturevalue("seaweed")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    return server.url(uuid.uuid4().hex)


# --------------------------------------------------------------------------- CLI


class Cli:
    """Runs the tracebox CLI as a real subprocess: ``python -m tracebox ARGS``.

    ``cli("init", bucket_url)`` returns a ``subprocess.CompletedProcess`` (text mode).
    The child gets the current os.environ (including monkeypatched vars) plus ``env``;
    a value of None in ``env`` removes that variable.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        input: str | None = None,
        timeout: float = CLI_TIMEOUT,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.update({"NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        cmd = [sys.executable, "-m", "tracebox", *map(str, args)]
        proc = subprocess.run(
            cmd,
            cwd=cwd if cwd is not None else self.cwd,
            env=full_env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"tracebox {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str | os.PathLike[str], **kwargs) -> object:
        """Run with ``--json`` appended, require exit 0, and return the parsed stdout."""
        proc = self(*args, "--json", check=True, **kwargs)
        return json.loads(proc.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The tracebox CLI as a subprocess; runs in a per-test work dir (``tmp_path / "work"``)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Cli(work)
