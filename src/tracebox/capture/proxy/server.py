"""Running the proxy app: uvicorn (uvloop + httptools) in the foreground or in a thread,
and the state file that lets other commands find a running proxy.

The state file, ``$XDG_STATE_HOME/tracebox/proxy.json``, holds ``{pid, host, port, url,
started, upstreams}`` of the foreground proxy (``tracebox proxy``) while it runs; it is
removed when that proxy exits. ``find_running`` trusts it only if the pid is alive and
the proxy answers ``/_tracebox/health``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn

from ...dirs import user_dir
from ...errors import TraceboxError
from .app import ProxyApp

DEFAULT_PORT = 8787


def state_file() -> str:
    return user_dir("state", "proxy.json")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (``port`` 0: a free one); one-line error if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise TraceboxError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server(app: ProxyApp) -> uvicorn.Server:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config(
        app,
        loop=loop,
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,  # the upstream's own server/date headers pass through
        date_header=False,
        log_level="warning",
        timeout_keep_alive=75,  # agents keep connections open between turns
        ws="none",  # no WebSocket API is proxied (and its library is never loaded)
        proxy_headers=False,  # X-Forwarded-* pass through to the upstream, not parsed
    )
    logging.getLogger("uvicorn.error").addFilter(_quiet_truncation)
    return uvicorn.Server(config)


def _quiet_truncation(record: logging.LogRecord) -> bool:
    """A stream that failed upstream ends the client's connection on purpose (the
    exchange records why); uvicorn would log that as an app error each time."""
    return "without completing response" not in record.getMessage()


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: ProxyApp, sock: socket.socket) -> None:
    """Run in the foreground until SIGINT/SIGTERM, recorded in the state file meanwhile.
    ``sock`` already listens, so clients that find the record can connect at once."""
    path = state_file()
    host, port = sock.getsockname()[:2]
    record = {
        "pid": os.getpid(),
        "host": host,
        "port": port,
        "url": url_of(sock),
        "started": app.started,
        "upstreams": app.upstreams,
    }
    kafka = publish_feed(app)
    _write_state(path, record)
    # uvicorn stops on SIGTERM, then raises it again: make that an orderly exit so the
    # caller's cleanup (closing the spool) and ours run
    signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        _server(app).run(sockets=[sock])
    finally:
        _remove_state(path, os.getpid())
        if kafka is not None:
            kafka.close()


def publish_feed(app: ProxyApp):
    """Publish the proxy's live feed to Kafka when the config has a ``[stream.kafka]``
    table (docs/stream.md): a ``FeedPublisher`` to close at exit, or None."""
    from ...config import load_settings

    settings = load_settings()
    stream = settings.raw.get("stream")
    if not (isinstance(stream, dict) and "kafka" in stream):
        return None
    from ...stream.kafka import attach_feed

    return attach_feed(app.feed, settings.raw, settings.project)


def _exit_on_term(signum, frame) -> None:
    raise SystemExit(0)


@dataclass
class Running:
    """A proxy serving from a background thread (tests, benchmarks, ``tracebox record``)."""

    app: ProxyApp
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    kafka: Any = None  # the feed's FeedPublisher ([stream.kafka] in the config)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.kafka is not None:
            self.kafka.close()


def start_in_thread(app: ProxyApp, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve ``app`` from a daemon thread on ``host:port`` (0: a free port); returns once
    it accepts connections."""
    sock = bind(host, port)
    kafka = publish_feed(app)
    server = _server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="tracebox-proxy", daemon=True
    )
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise TraceboxError("the proxy failed to start")
        thread.join(0.01)
    return Running(app, url_of(sock), server, thread, kafka)


def find_running(timeout: float = 1.0) -> dict[str, Any] | None:
    """The state record of a live proxy, or None (no file, dead pid, or no answer)."""
    try:
        with open(state_file(), "rb") as f:
            record = json.loads(f.read(64 << 10))
        os.kill(int(record["pid"]), 0)
        get_json(record["url"] + "/_tracebox/health", timeout)
    except (OSError, ValueError, KeyError, TypeError, TraceboxError):
        return None
    return record


def get_json(url: str, timeout: float = 5.0) -> Any:
    """GET a proxy endpoint; one-line error if it does not answer."""
    import urllib.request  # not at the top: the serving process never needs it

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read(16 << 20))
    except (OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise TraceboxError(f"no tracebox proxy answers at {url}: {why}") from None


def _write_state(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def _remove_state(path: str, pid: int) -> None:
    try:
        with open(path, "rb") as f:
            if json.loads(f.read(64 << 10)).get("pid") == pid:
                os.remove(path)
    except (OSError, ValueError, AttributeError):
        pass
