"""The proxy's upstream HTTP/1.1 client (capture/proxy/upstream.py) against real sockets:
a loopback server per test that answers with scripted bytes and records what it got.

Keep-alive reuse, replies that end with the connection, informational replies, HEAD,
malformed replies, an upstream that hangs up or stalls, back-pressure on a large body,
request smuggling refused, and TLS with a throwaway CA (trustme).
"""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from tracebox.capture.proxy.upstream import HIGH_WATER, Pool, UpstreamError

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


class Upstream:
    """A loopback server: ``reply(request_bytes) -> bytes | None`` (None: hang up)."""

    def __init__(self, reply, tls: ssl.SSLContext | None = None):
        self.reply, self.tls = reply, tls
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        self.url = (
            f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{port}"
        )
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                out = self.reply(request)
                if out is None:
                    break
                if callable(out):
                    await out(writer)
                else:
                    writer.write(out)
                    await writer.drain()
                if b"connection: close" in out if isinstance(out, bytes) else False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def pool(url: str, **kw) -> Pool:
    return Pool(
        url,
        connect_timeout=kw.pop("connect_timeout", 5),
        read_timeout=kw.pop("read_timeout", 5),
        **kw,
    )


def test_keep_alive_reuses_one_connection_and_writes_a_proper_request():
    async def main():
        async with Upstream(lambda r: OK) as up:
            p = pool(up.url + "/base")
            for _ in range(5):
                r = await p.request("POST", p.prefix + b"/v1/x?a=1", [(b"x-k", b"v")], b"{}")
                assert (r.status, await r.read()) == (200, b"hello")
                r.release()
            assert up.connections == 1
            assert p.open == 1 and len(p.idle) == 1
            first = up.requests[0]
            assert first.startswith(b"POST /base/v1/x?a=1 HTTP/1.1\r\n")
            assert b"\r\nhost: 127.0.0.1:" in first and b"\r\nx-k: v\r\n" in first
            assert first.endswith(b"content-length: 2\r\n\r\n{}")
            p.close()

    run(main())


def test_connection_close_and_bodies_that_end_with_the_connection():
    replies = iter(
        [
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
        ]
    )

    async def main():
        def reply(r):
            out = next(replies)
            return out if b"connection: close" in out else _then_close(out)

        async with Upstream(reply) as up:
            p = pool(up.url)
            r = await p.request("GET", b"/a", [], b"")
            assert await r.read() == b"ok"
            r.release()
            r = await p.request("GET", b"/b", [], b"")
            assert await r.read() == b"until the end"
            r.release()
            assert up.connections == 2 and p.idle == [] and p.open == 0

    run(main())


def _then_close(data: bytes):
    async def write(writer):
        writer.write(data)
        await writer.drain()
        writer.close()

    return write


def test_informational_reply_head_and_no_body_statuses():
    async def main():
        def reply(r):
            if r.startswith(b"HEAD"):
                return b"HTTP/1.1 200 OK\r\ncontent-length: 999\r\n\r\n"
            if b"/early" in r:
                return b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + OK
            return b"HTTP/1.1 204 No Content\r\n\r\n"

        async with Upstream(reply) as up:
            p = pool(up.url)
            r = await p.request("GET", b"/early", [], b"")
            assert r.status == 200 and await r.read() == b"hello"
            assert r.header(b"link") == b""  # the 103's headers are not the reply's
            r.release()
            r = await p.request("HEAD", b"/h", [], b"")
            assert r.status == 200 and r.header(b"content-length") == b"999"
            assert await r.read() == b""
            r.release()
            r = await p.request("DELETE", b"/d", [], b"")
            assert r.status == 204 and await r.read() == b""
            r.release()

    run(main())


def test_malformed_reply_hang_up_and_stall_are_errors():
    async def main():
        async with Upstream(lambda r: b"SPDY/9 what\r\n\r\n") as up:
            with pytest.raises(UpstreamError, match="malformed"):
                await pool(up.url).request("GET", b"/", [], b"")
        async with Upstream(lambda r: None) as up:  # reads the request, hangs up
            with pytest.raises(UpstreamError, match="closed"):
                await pool(up.url).request("GET", b"/", [], b"")
        # headers, part of the body, then the connection ends early
        cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"
        async with Upstream(lambda r: _then_close(cut)) as up:
            p = pool(up.url)
            r = await p.request("GET", b"/", [], b"")
            with pytest.raises(UpstreamError):
                await r.read()
            r.release()
            assert p.open == 0

        async def stall(writer):
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()
            await asyncio.sleep(5)

        async with Upstream(lambda r: stall) as up:
            p = pool(up.url, read_timeout=0.3)
            r = await p.request("GET", b"/", [], b"")
            got = []
            with pytest.raises(TimeoutError):
                async for chunk in r.chunks():
                    got.append(chunk)
            assert got == [b"abc"]
            r.release()

    run(main())


def test_request_smuggling_is_refused_before_anything_is_sent():
    async def main():
        async with Upstream(lambda r: OK) as up:
            p = pool(up.url)
            for headers, target in (
                ([(b"x-a", b"1\r\nx-injected: 2")], b"/"),
                ([(b"x-a\n", b"1")], b"/"),
                ([], b"/ HTTP/1.1\r\nhost: evil\r\n\r\nGET /"),
            ):
                with pytest.raises(ValueError, match="line break"):
                    await p.request("GET", target, headers, b"")
            assert up.requests == []

    run(main())


def test_a_large_body_is_read_with_back_pressure():
    size = 6 * HIGH_WATER
    body = bytes(range(256)) * (size // 256)

    async def main():
        async with Upstream(
            lambda r: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + body
        ) as up:
            p = pool(up.url)
            r = await p.request("GET", b"/big", [], b"")
            got, peak = [], 0
            async for chunk in r.chunks():
                got.append(chunk)
                peak = max(peak, r._conn.buffered)
                await asyncio.sleep(0.002)  # a slow client
            assert b"".join(got) == body
            assert peak <= HIGH_WATER + (1 << 20)  # reading paused near the mark
            r.release()
            assert len(p.idle) == 1

    run(main())


def test_tls_upstream_verified_against_its_ca():
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main():
        async with Upstream(lambda r: OK, tls=server_ctx) as up:
            p = pool(up.url, ssl_context=client_ctx)
            for _ in range(2):
                r = await p.request("GET", b"/", [], b"")
                assert await r.read() == b"hello"
                r.release()
            assert up.connections == 1
            assert b"\r\nhost: localhost:" in up.requests[0]
            with pytest.raises(ssl.SSLError):  # the system's CAs do not know this one
                await pool(up.url).request("GET", b"/", [], b"")

    run(main())


def test_a_connection_the_upstream_closed_while_idle_is_not_reused():
    async def main():
        async with Upstream(lambda r: _then_close(OK[:17] + b"keep-alive: x\r\n" + OK[17:])) as up:
            p = pool(up.url)
            for _ in range(3):
                r = await p.request("GET", b"/", [], b"")
                assert await r.read() == b"hello"
                r.release()
                await asyncio.sleep(0.05)  # the server's close reaches the pool
            assert up.connections == 3 and p.open <= 1

    run(main())


def test_bytes_on_an_idle_connection_retire_it():
    async def main():
        async def ok_then_408(writer):
            writer.write(OK)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()

        async with Upstream(lambda r: ok_then_408) as up:
            p = pool(up.url)
            r = await p.request("GET", b"/", [], b"")
            assert await r.read() == b"hello"
            r.release()
            await asyncio.sleep(0.2)  # the 408 arrives while the connection is idle
            r = await p.request("GET", b"/", [], b"")  # a new connection, not the 408
            assert r.status == 200 and await r.read() == b"hello"
            r.release()
            assert up.connections == 2

    run(main())
