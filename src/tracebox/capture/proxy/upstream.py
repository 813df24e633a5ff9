"""The proxy's HTTP/1.1 client for its upstreams: pooled keep-alive connections, each
request written in one write, responses parsed by ``httptools`` (the parser uvicorn
uses) and their bodies handed on as they arrive, de-chunked, never decompressed.

It does what a pass-through needs and nothing else (no redirects, cookies, proxies from
the environment, retries or decompression), which keeps a call's own cost small: a
general client (aiohttp) spent ~0.3 ms of the interpreter per call here, and 16 streams
that start together queue behind one another for it. Errors are ``OSError``s
(``UpstreamError`` for a reply that breaks HTTP) and ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

import httptools

KEEP_IDLE_S = 15.0  # an idle pooled connection older than this is closed, not reused
MAX_IDLE = 256  # idle connections kept per upstream
MAX_OPEN = 1000  # connections open at once per upstream; more calls wait
HIGH_WATER = 1 << 20  # buffered body bytes past which reading from upstream pauses
_NO_BODY = frozenset((204, 304))


class UpstreamError(ConnectionError):
    """The upstream closed the connection early or sent something that is not HTTP."""


class Response:
    """One upstream reply: status and headers at once, the body as it arrives."""

    def __init__(self, conn: _Conn, status: int, raw_headers: list[tuple[bytes, bytes]]):
        self._conn = conn
        self.status = status
        self.raw_headers = raw_headers

    def header(self, name: bytes) -> bytes:
        """The first header ``name`` (lower case), or b""."""
        for k, v in self.raw_headers:
            if k.lower() == name:
                return v
        return b""

    async def chunks(self):
        """The body, a piece per network read (an empty body yields nothing)."""
        conn = self._conn
        while True:
            chunk = await conn.next_chunk()
            if chunk is None:
                return
            yield chunk

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])

    def release(self) -> None:
        """Give the connection back to the pool if the reply was read to its end and
        the upstream keeps it open; otherwise close it."""
        self._conn.release()


class _Conn(asyncio.Protocol):
    """One connection: writes requests, parses replies (``httptools`` callbacks)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = True  # holds one of the pool's MAX_OPEN slots
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.head: asyncio.Future | None = None
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.waiter: asyncio.Future | None = None
        self.complete = False
        self.keep_alive = False
        self.until_eof = False
        self.error: BaseException | None = None
        self.paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.head is None:  # bytes on an idle connection (a 408 before closing): drop it
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols"))
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"the upstream sent a malformed reply ({e})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.until_eof and self.head is not None and self.head.done():
            self.complete = True  # a body without length or chunking ends with the connection
            self._wake()
        elif not self.complete:
            self._fail(UpstreamError("the upstream closed the connection"))

    # -- httptools callbacks --------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints): the real reply follows
            self.headers = []
            return
        self.status = status
        if status not in _NO_BODY:
            names = {k.lower() for k, _ in self.headers}
            self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of an informational reply
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful in a callback
        self._wake()

    # -- the pool's side ------------------------------------------------------------------
    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, e: BaseException) -> None:
        self.error = e
        for f in (self.head, self.waiter):
            if f is not None and not f.done():
                f.set_exception(e)
        self.close()

    def close(self) -> None:
        """Close the connection; it gives its slot back to the pool (once)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.pool.forget(self)

    async def send(self, request: bytes, body: bytes, head_only: bool) -> Response:
        if self.closed:
            raise UpstreamError("the upstream closed the connection")
        self.head = asyncio.get_running_loop().create_future()
        if len(body) < 256 << 10:  # one write: the upstream wakes up once, to all of it
            self.transport.write(request + body)
        else:  # no copy of a large body (uvloop's writelines queues instead of writing)
            self.transport.write(request)
            self.transport.write(body)
        await self.pool.wait(self.head)
        if head_only:  # HEAD: no body follows, whatever the headers say
            self.complete, self.until_eof = True, False
            self.closed = True  # the parser expects a body: never reuse
        return Response(self, self.status, self.headers)

    async def next_chunk(self) -> bytes | None:
        while not self.body:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.pool.wait(self.waiter)
            finally:
                self.waiter = None
        chunk = self.body.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < HIGH_WATER // 2:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def release(self) -> None:
        keep = self.complete and not self.closed and self.error is None and not self.body
        if keep and self.keep_alive and not self.until_eof:
            self._reset()
            self.pool.give_back(self)
        else:
            self.close()


class Pool:
    """Connections to one upstream base URL (``http(s)://host[:port][/base path]``)."""

    def __init__(
        self,
        base: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        u = urlsplit(base)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base!r}")
        self.host = u.hostname
        self.prefix = u.path.rstrip("/").encode("latin-1")  # requests' paths go after it
        self.port = u.port or (443 if u.scheme == "https" else 80)
        default = (u.scheme == "https" and self.port == 443) or (
            u.scheme == "http" and self.port == 80
        )
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (name if default else f"{name}:{self.port}").encode("idna")
        self.ssl = None  # https: the system's CAs (as curl and aiohttp use them)
        if u.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.idle: list[_Conn] = []
        self.open = 0
        self._slots = asyncio.Semaphore(MAX_OPEN)

    async def wait(self, fut: asyncio.Future) -> None:
        """``fut``, or ``TimeoutError`` after the read timeout without it."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.read_timeout, _expire, fut)
        try:
            await fut
        finally:
            timer.cancel()

    async def request(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Response:
        """Send one request; returns once the reply's headers are in. ``target`` is the
        path and query as they go on the request line; ``headers`` come without Host and
        Content-Length (added here)."""
        lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", self.host_header]
        for k, v in headers:
            lines += (b"\r\n", k, b": ", v)
        breaks = len(headers) + 3  # request line, each header, the blank line
        if body or method in ("POST", "PUT", "PATCH"):
            lines += (b"\r\ncontent-length: ", str(len(body)).encode())
            breaks += 1
        lines.append(b"\r\n\r\n")
        request = b"".join(lines)
        if request.count(b"\n") != breaks or request.count(b"\r") != breaks:
            raise ValueError("the path or a header holds a line break")  # request smuggling
        conn = await self._connection()
        try:
            return await conn.send(request, body, method == "HEAD")
        except BaseException:
            conn.close()
            raise

    async def _connection(self) -> _Conn:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.idle_since < KEEP_IDLE_S:
                return conn
            conn.close()
        await self._slots.acquire()
        self.open += 1
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Conn(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                self.connect_timeout,
            )
        except BaseException:
            self.open -= 1
            self._slots.release()
            raise
        return conn

    def give_back(self, conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        if len(self.idle) < MAX_IDLE:
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: _Conn) -> None:
        """``conn`` is closed: its slot is free (called by ``_Conn.close``, once)."""
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self._slots.release()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
