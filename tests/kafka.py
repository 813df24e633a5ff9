"""A private Kafka-protocol broker for the tests' ``kafka`` fixture and the benchmarks
(plain Python: no pytest import).

``start(root)`` runs noida-db's binary (PyPI ``noida-db``: ``start --only kafka
--kafka-port N``) on a free 127.0.0.1 port with its data in ``root``, and waits until a
Kafka client gets metadata from it. ``Broker.stop()`` ends it by its PID (SIGTERM, so it
saves its data: noida-db keeps records in memory and writes them on a clean shutdown
only); ``Broker.restart()`` stops it and starts it again on the same port and data;
``Broker.crash()`` does the same with SIGKILL.

``TRACEBOX_TEST_KAFKA=host:port`` uses that broker instead (a real Kafka, Redpanda...):
nothing is started, and ``restartable`` is False (the restart test needs its own broker).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

EXTERNAL = os.environ.get("TRACEBOX_TEST_KAFKA")  # read at import: tests strip TRACEBOX_*
READY_TIMEOUT = 20.0


def binary() -> str:
    """noida-db's own binary (not its Python wrapper, which would be the PID we stop)."""
    from importlib.resources import files

    path = files("noida_db").joinpath("noida-db")
    if not path.is_file():
        raise RuntimeError("noida-db is not installed: pip install -e '.[dev]'")
    os.chmod(str(path), 0o755)
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    """A broker, how to reach it, and (when we started it) its process."""

    bootstrap: str
    port: int = 0
    data: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    startup_s: float = 0.0

    @property
    def restartable(self) -> bool:
        return self.data is not None

    def _launch(self) -> None:
        assert self.data is not None
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data / "noida.log", "ab")
        cmd = [binary(), "start", "--only", "kafka", "--kafka-port", str(self.port)]
        cmd += ["--host", "127.0.0.1", "--data-dir", str(self.data / "data")]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        _wait_ready(self.bootstrap, self.proc)
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        """SIGTERM by PID (noida-db saves its data), SIGKILL if it does not exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def crash(self, down: float = 0.0) -> None:
        """SIGKILL by PID (noida-db loses what it held since it started, and its
        idempotence state), stay down ``down`` seconds, start again on the same port."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        time.sleep(down)
        self._launch()

    def restart(self, down: float = 0.0) -> None:
        """Stop, stay down ``down`` seconds, start again on the same port and data."""
        if not self.restartable:
            raise RuntimeError("an external broker (TRACEBOX_TEST_KAFKA) cannot be restarted")
        self.stop()
        time.sleep(down)
        self._launch()


def _wait_ready(bootstrap: str, proc: subprocess.Popen | None) -> None:
    """Until a Kafka client gets the broker's metadata."""
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"noida-db exited with code {proc.returncode} during startup")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Kafka broker listens on {bootstrap}") from None
            time.sleep(0.02)
    AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=READY_TIMEOUT)


def start(root: Path) -> Broker:
    """The broker for a test session or benchmark: ``TRACEBOX_TEST_KAFKA``, else noida-db."""
    if EXTERNAL:
        _wait_ready(EXTERNAL, None)
        return Broker(EXTERNAL)
    return start_own(root)


def start_own(root: Path) -> Broker:
    """A noida-db broker of our own (one that ``restart()`` and ``crash()`` can act on),
    even when ``TRACEBOX_TEST_KAFKA`` names another one."""
    port = _free_port()
    broker = Broker(f"127.0.0.1:{port}", port, Path(root))
    broker._launch()
    return broker
