"""In-process pub/sub of live events, their Server-Sent Events encoding, and reading a
running proxy's feed back (``proxy_feed``: ``tracebox tail``, alerts, the Kafka bridge).

``Feed.publish(event)`` never blocks and never waits on a subscriber: each subscription
holds a bounded queue; when it is full the oldest event is dropped and counted, and the
subscriber is told how many it missed (a ``feed.dropped`` event) before the next one.
Events are dicts with at least ``type`` and ``time``; the feed stamps each with ``seq``, a
counter that increases by one per published event (gaps seen by a filtered subscriber are
other sessions' events). Everything runs on one asyncio event loop.

Wire format (``sse``/``parse_sse``): ``id: <seq>``, ``event: <type>``, ``data: <json>``,
blank line; lines starting with ``:`` are keep-alive comments.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

DEFAULT_QUEUE = 4096

_encode = msgspec.json.encode


class Subscription:
    """One subscriber's bounded queue, filtered by session and/or agent."""

    def __init__(
        self,
        feed: Feed,
        session: str | None,
        agent: str | None,
        maxsize: int = DEFAULT_QUEUE,
        on_event=None,
    ):
        self.feed = feed
        self.session = session
        self.agent = agent
        self.on_event = on_event  # called at once, on the publisher's thread, instead of queueing
        self.queue: deque[dict[str, Any]] = deque(maxlen=maxsize)
        self.dropped = 0
        self._reported = 0
        self._ready = asyncio.Event()

    def matches(self, event: dict[str, Any]) -> bool:
        return (self.session is None or event.get("session") == self.session) and (
            self.agent is None or event.get("agent") == self.agent
        )

    def put(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)  # must be quick: e.g. hand it to a queue.Queue
            return
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # the deque drops the oldest on append
        self.queue.append(event)
        self._ready.set()

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event (or a ``feed.dropped`` notice); None if ``timeout`` passes first."""
        while not self.queue:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        if self.dropped > self._reported:
            missed, self._reported = self.dropped - self._reported, self.dropped
            return {"type": "feed.dropped", "count": missed, "seq": self.queue[0]["seq"] - 1}
        return self.queue.popleft()

    def close(self) -> None:
        self.feed._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Feed:
    """The publisher side: fan each event out to every matching subscription."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.seq = 0

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subs)

    def publish(self, event: dict[str, Any]) -> None:
        self.seq += 1
        event["seq"] = self.seq
        for sub in self._subs:
            if sub.matches(event):
                sub.put(event)

    def subscribe(
        self,
        session: str | None = None,
        agent: str | None = None,
        maxsize: int = DEFAULT_QUEUE,
        on_event=None,
    ) -> Subscription:
        """A subscription to events of ``session``/``agent`` (None: all): read them with
        ``await sub.get()``, or pass ``on_event`` to have each one handed over at once."""
        sub = Subscription(self, session or None, agent or None, maxsize, on_event)
        self._subs.add(sub)
        return sub

    def status(self) -> dict[str, int]:
        return {
            "subscribers": len(self._subs),
            "published": self.seq,
            "dropped": sum(s.dropped for s in self._subs),
        }


def sse(event: dict[str, Any]) -> bytes:
    """One event as an SSE message."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.get("seq", 0),
        str(event.get("type", "message")).encode(),
        _encode(event),
    )


KEEPALIVE = b": keep-alive\n\n"


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Decode an SSE stream (text lines, newline stripped or not) back into event dicts;
    messages whose data is not a JSON object are skipped."""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                try:
                    doc = msgspec.json.decode("\n".join(data))
                except msgspec.DecodeError:
                    doc = None
                if isinstance(doc, dict):
                    yield doc
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def open_proxy_feed(
    url: str, *, session: str | None = None, agent: str | None = None, timeout: float = 60.0
):
    """Connect to the live feed of the ``tracebox proxy`` at ``url`` (its
    ``/_tracebox/events`` SSE, filtered by session and/or agent): the open response, for
    ``read_feed``. ``timeout``: seconds without a byte (the proxy sends a keep-alive every
    15 s). One-line error if nothing answers at ``url``."""
    import urllib.parse
    import urllib.request

    from ..errors import TraceboxError

    query = urllib.parse.urlencode({k: v for k, v in (("session", session), ("agent", agent)) if v})
    full = url.rstrip("/") + "/_tracebox/events" + (f"?{query}" if query else "")
    try:
        return urllib.request.urlopen(full, timeout=timeout)
    except (OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise TraceboxError(f"no tracebox proxy answers at {url}: {why}") from None


def read_feed(resp) -> Iterator[dict[str, Any]]:
    """The events of an open feed until the proxy closes it (closing ``resp`` then); the
    ``feed.subscribed`` greeting is left out."""
    import io

    with resp:
        for ev in parse_sse(io.TextIOWrapper(resp, encoding="utf-8", errors="replace")):
            if ev.get("type") != "feed.subscribed":
                yield ev


def proxy_feed(
    url: str, *, session: str | None = None, agent: str | None = None, timeout: float = 60.0
) -> Iterator[dict[str, Any]]:
    """``read_feed(open_proxy_feed(…))``: a running proxy's live events."""
    yield from read_feed(open_proxy_feed(url, session=session, agent=agent, timeout=timeout))
