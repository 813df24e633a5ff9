"""The Kafka sink: every trace and coordination event as a versioned JSON envelope, keyed
by session, and the consumer that reads them back (docs/stream.md).

Owns:

- the **envelope** (schema v1, ``envelope``) and its builders from a coordination event
  of the bucket's log (``from_coord``), an event of the proxy's live feed (``from_feed``)
  and the steps of a mirrored session (``from_session``); the topics
  (``<prefix>.coord``, ``<prefix>.trace``) and the message key (``session/<id>``, else
  ``step/<id>``, else ``agent/<name>``);
- ``Producer``: confluent-kafka's producer (imported on first use) with acks=all and
  murmur2 partitioning by key; envelopes scrubbed before they leave; delivery callbacks
  that count, and re-send everything unacknowledged when a fatal error replaces the
  producer;
- ``publisher()`` and ``attach_feed()``: what the coordination log, the mirror and the
  proxy use to publish as they write when the config has a ``[stream.kafka]`` table
  (without it, they never import this module);
- ``Bridge``: ``tracebox stream kafka`` — the bucket's event log caught up or followed
  from a local checkpoint, a proxy's SSE feed, mirrored sessions;
- ``consume_events``: every envelope of a prefix's topics, as dicts.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, Refused, TraceboxError, UsageError

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "tracebox"
DEFAULT_PARTITIONS = 6  # for topics the bridge creates; existing topics are left alone
INLINE_TIMEOUT = 2.0  # seconds a command waits for its events' acknowledgement
MAX_FIELD = 8192  # characters of a tool's arguments/output/error message kept per envelope
SOURCES = {"coord": "coord", "proxy": "trace", "mirror": "trace"}  # source -> topic suffix

_BOOTSTRAP = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}")
_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,200}")
_DOWN_CODES = ("_ALL_BROKERS_DOWN",)
_LOST_CODES = ("_FATAL", "_PURGE_QUEUE", "_PURGE_INFLIGHT")  # re-sent by a new producer


# -- names ----------------------------------------------------------------------------------


def check_bootstrap(value: str) -> str:
    """``HOST:PORT[,HOST:PORT…]`` or a UsageError."""
    text = str(value or "").strip()
    if not text or not all(_BOOTSTRAP.fullmatch(p.strip()) for p in text.split(",")):
        raise UsageError(f"invalid Kafka bootstrap {value!r}: use HOST:PORT[,HOST:PORT...]")
    return ",".join(p.strip() for p in text.split(","))


def check_prefix(value: str) -> str:
    if not isinstance(value, str) or not _PREFIX.fullmatch(value):
        raise UsageError(
            f"invalid topic prefix {value!r}: use 1-200 letters, digits, '.', '_' or '-'"
        )
    return value


def topics(prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """{"coord": "<prefix>.coord", "trace": "<prefix>.trace"}."""
    return {s: f"{check_prefix(prefix)}.{s}" for s in ("coord", "trace")}


# -- the envelope ---------------------------------------------------------------------------


def envelope(
    source: str,
    type_: str,
    *,
    id: str,
    time: str | None,
    project: str | None,
    session: str | None = None,
    agent: str | None = None,
    step: str | None = None,
    data: dict | None = None,
) -> dict:
    """One event as it is published (schema v1; docs/stream.md). ``id`` is the dedup id:
    the same event always gets the same one, whoever publishes it and however often."""
    if session:
        key = f"session/{session}"
    elif step:
        key = f"step/{step}"
    elif agent:
        key = f"agent/{agent}"
    else:
        key = f"{source}/{id}"
    return {
        "v": SCHEMA_VERSION,
        "id": id,
        "source": source,
        "type": type_,
        "time": time,
        "project": project,
        "session": session,
        "agent": agent,
        "step": step,
        "key": key,
        "data": data if data is not None else {},
    }


def _str(value) -> str | None:
    return value if isinstance(value, str) and value else None


def from_coord(project: str, ev: dict, key: str | None = None) -> dict:
    """A coordination event of the bucket's log (``coord.events``); ``key`` is its object
    key, used for the id only when the event has none."""
    data = ev.get("data") if isinstance(ev.get("data"), dict) else {}
    event_id = _str(ev.get("id")) or (key or "").rsplit("/", 1)[-1].removesuffix(".json")
    return envelope(
        "coord",
        _str(ev.get("type")) or "unknown",
        id=f"coord:{project}:{event_id}",
        time=_str(ev.get("ts")),
        project=project,
        session=_str(data.get("session")),
        agent=_str(ev.get("agent")),
        step=_str(ev.get("step")),
        data=data,
    )


_FEED_HEAD = ("type", "time", "session", "agent", "seq", "id")


def from_feed(project: str | None, event: dict) -> dict | None:
    """An event of the proxy's live feed (``call.start``, ``call.first_token``,
    ``call.tool_call``, ``call.end``, ``call.error``); None for the feed's own notices."""
    type_ = _str(event.get("type")) or "unknown"
    if type_.startswith("feed."):
        return None
    call = _str(event.get("id")) or f"seq{event.get('seq')}"
    dedup = f"proxy:{call}:{type_}"
    if type_ == "call.tool_call":
        dedup += f":{event.get('tool_call_id') or event.get('seq')}"
    data = {k: v for k, v in event.items() if k not in _FEED_HEAD}
    data["call_id"] = call
    return envelope(
        "proxy",
        type_,
        id=dedup,
        time=_str(event.get("time")),
        project=project,
        session=_str(event.get("session")),
        agent=_str(event.get("agent")),
        data=data,
    )


def _bounded(name: str, value) -> dict:
    """``{name: value}``, or its first MAX_FIELD characters plus ``<name>_truncated``."""
    if value is None or isinstance(value, bool | int | float):
        return {name: value}
    if isinstance(value, str):
        text = value
    else:
        from ..coord.context import encode

        try:
            text = encode(value).decode("utf-8")
        except UsageError:
            text = str(value)
    if len(text) <= MAX_FIELD:
        return {name: value}
    return {name: text[:MAX_FIELD], f"{name}_truncated": len(text)}


def from_session(
    project: str,
    session,
    *,
    harness: str,
    generation: int,
    agent: str | None = None,
    start: dict[str, int] | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """The tool calls, tool results and step errors of a parsed ``Session`` (and its
    subagents), skipping each session's first ``start[id]`` steps; and the step counts
    to pass as ``start`` next time."""
    from ..trace.model import ToolCall, ToolResult, walk

    start = start or {}
    out: list[dict] = []
    counts: dict[str, int] = {}
    for s in walk(session):
        counts[s.id] = len(s.steps)
        base = f"mirror:{project}:{harness}/{s.id}:g{generation}"
        common: dict[str, Any] = {"harness": harness}
        if s is not session:
            common.update(
                parent_session=s.parent_session,
                parent_tool_call_id=s.parent_tool_call_id,
                subagent=s.agent,
            )
        for step in s.steps[start.get(s.id, 0) :]:
            when = step.timestamp or s.started
            head = {**common, "step_index": step.index}
            for i, part in enumerate(step.parts):
                if isinstance(part, ToolCall):
                    type_ = "tool.call"
                    data = {"tool": part.name, "tool_call_id": part.id}
                    data.update(_bounded("arguments", part.arguments))
                elif isinstance(part, ToolResult):
                    type_ = "tool.result"
                    data = {"tool_call_id": part.call_id, "is_error": part.is_error}
                    data.update(_bounded("output", part.output), exit_code=part.exit_code)
                else:
                    continue
                out.append(
                    envelope(
                        "mirror",
                        type_,
                        id=f"{base}:{step.index}.{i}",
                        time=when,
                        project=project,
                        session=s.id,
                        agent=agent,
                        data={**head, **data},
                    )
                )
            if step.error is not None:
                data = {"kind": step.error.kind, "status": step.error.status}
                data.update(_bounded("message", step.error.message))
                out.append(
                    envelope(
                        "mirror",
                        "step.error",
                        id=f"{base}:{step.index}.error",
                        time=when,
                        project=project,
                        session=s.id,
                        agent=agent,
                        data={**head, **data},
                    )
                )
    return out, counts


def encode_envelope(env: dict, scrubber=None) -> tuple[bytes, dict[str, int]]:
    """The envelope as JSON bytes, its ``data`` scrubbed (the head — ids, names, times —
    is left as is, so a dedup id never changes); and the redaction counts."""
    from ..coord.context import encode

    data = encode(env["data"])
    counts: dict[str, int] = {}
    if scrubber is not None:
        data, counts = scrubber.scrub_counted(data)
    head = encode({k: v for k, v in env.items() if k != "data"})
    return head[:-1] + b',"data":' + data + b"}", counts


def make_scrubber(raw: dict):
    """The scrubber of the config's ``[scrub]`` rules (what the mirror uses too)."""
    try:
        from ..scrub import Scrubber
    except ImportError as e:
        raise TraceboxError(
            f"the scrubber is not available ({e}); refusing to publish unscrubbed events "
            "(set scrub = false in [stream.kafka] or pass --no-scrub to publish them as they are)"
        ) from None
    return Scrubber(config=raw.get("scrub"), env=os.environ)


# -- the client -----------------------------------------------------------------------------


def _client():
    try:
        import confluent_kafka
    except ImportError:
        raise TraceboxError(
            "Kafka support is not installed: pip install 'tracebox[kafka]' (confluent-kafka)"
        ) from None
    return confluent_kafka


def _logger():
    """librdkafka's log lines go here, not to stderr (a CLI error is one line)."""
    import logging

    log = logging.getLogger("tracebox.kafka")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    return log


def _why(err) -> str:
    """One line from a KafkaError (or a KafkaException carrying one)."""
    if hasattr(err, "args") and err.args and hasattr(err.args[0], "str"):
        err = err.args[0]
    text = err.str() if hasattr(err, "str") else str(err)
    return " ".join(str(text).split())


def producer_config(
    bootstrap: str, *, idempotent: bool = True, timeout: float | None = None
) -> dict:
    """librdkafka settings of tracebox's producers (docs/stream.md, "Delivery")."""
    conf = {
        "bootstrap.servers": check_bootstrap(bootstrap),
        "client.id": "tracebox",
        "acks": "all",
        "enable.idempotence": idempotent,
        # the Java client's partitioner: a key lands on the same partition whoever writes it
        "partitioner": "murmur2_random",
        # 0: retried until acknowledged (long-running publishers); else a deadline
        "message.timeout.ms": 0 if timeout is None else max(1, int(timeout * 1000)),
        "linger.ms": 5 if timeout is None else 0,
        "queue.buffering.max.messages": 100_000,
        "queue.buffering.max.kbytes": 64 << 10,
    }
    if not idempotent:
        conf["max.in.flight.requests.per.connection"] = 1  # retries keep the order
    return conf


class Producer:
    """Envelopes into Kafka: keyed, scrubbed, counted.

    ``timeout=None`` (long-running publishers, with the idempotent producer): a message is
    retried until the broker acknowledges it — while the broker is down it waits in the
    local queue — and a fatal producer error (e.g. a broker that lost the idempotence
    state) makes a new producer that sends every unacknowledged message again.
    ``timeout`` seconds (commands publishing in-line): a message not acknowledged by
    then fails. ``on_done(ok)`` passed to ``send`` runs from ``poll``/``flush``.
    """

    MAX_RECOVERIES = 20

    def __init__(
        self,
        bootstrap: str,
        topic_prefix: str = DEFAULT_PREFIX,
        *,
        idempotent: bool = True,
        timeout: float | None = None,
        scrubber=None,
        config: dict | None = None,
    ) -> None:
        self.bootstrap = check_bootstrap(bootstrap)
        self.topics = topics(topic_prefix)
        self.topic_prefix = topic_prefix
        self.config = {
            **producer_config(self.bootstrap, idempotent=idempotent, timeout=timeout),
            **(config or {}),
        }
        self.scrubber = scrubber
        self.sent = self.delivered = self.failed = self.resent = 0
        self.redactions: dict[str, int] = {}
        self.last_error: str | None = None
        self.down = False  # the client says every broker is down
        self.recoveries = 0
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[str, bytes, bytes, Callable | None]] = {}
        self._next = 0
        self._gen = 0
        self._fatal = False
        self._ck = _client()
        self._p = self._make()

    def _make(self):
        gen = self._gen

        def on_error(err) -> None:
            self.last_error = _why(err)
            if err.fatal():
                self._fatal = True
            elif err.name() in _DOWN_CODES and gen == self._gen:
                self.down = True

        try:
            return self._ck.Producer({**self.config, "error_cb": on_error, "logger": _logger()})
        except self._ck.KafkaException as e:
            raise UsageError(f"cannot make a Kafka producer: {_why(e)}") from None

    # -- sending ------------------------------------------------------------------------
    def send(self, env: dict, on_done: Callable[[bool], None] | None = None) -> None:
        """Queue one envelope (never waits for the broker, except when the local queue
        is full)."""
        try:
            value, counts = encode_envelope(env, self.scrubber)
        except UsageError as e:
            self.failed += 1
            self.last_error = f"event {env.get('id')} has no JSON form: {e}"
            if on_done is not None:
                on_done(False)
            return
        topic = self.topics[SOURCES[env["source"]]]
        key = env["key"].encode("utf-8", "surrogatepass")
        with self._lock:
            token = self._next
            self._next += 1
            self._inflight[token] = (topic, key, value, on_done)
            for k, v in counts.items():
                self.redactions[k] = self.redactions.get(k, 0) + v
            self.sent += 1
        self._produce(token, topic, key, value)

    def _produce(self, token: int, topic: str, key: bytes, value: bytes) -> None:
        gen = self._gen
        for _ in range(200):  # a full local queue: serve acknowledgements, then retry
            try:
                self._p.produce(
                    topic,
                    value=value,
                    key=key,
                    on_delivery=lambda err, msg: self._delivered(token, gen, err),
                )
                return
            except BufferError:
                self.poll(0.05)
                if self._gen != gen:
                    return  # a new producer took over and sent it
            except self._ck.KafkaException as e:
                if _is_fatal(e):
                    self._fatal = True
                    return  # kept in flight: re-sent by the next producer
                self._settle(token, False, _why(e))
                return
        self._settle(token, False, "the local Kafka queue stayed full for 10 s")

    def _delivered(self, token: int, gen: int, err) -> None:
        if gen != self._gen:
            return  # that producer was replaced after a fatal error; re-sent since
        if err is not None and (self._fatal or err.fatal() or err.name() in _LOST_CODES):
            self._fatal = True
            return
        self.down = False if err is None else self.down
        self._settle(token, err is None, None if err is None else _why(err))

    def _settle(self, token: int, ok: bool, why: str | None) -> None:
        with self._lock:
            item = self._inflight.pop(token, None)
            if item is None:
                return
            if ok:
                self.delivered += 1
            else:
                self.failed += 1
                self.last_error = why
        if item[3] is not None:
            item[3](ok)

    def _recover(self) -> None:
        """Replace a producer that hit a fatal error and re-send what it had not
        delivered (at-least-once: the broker may hold some of them already)."""
        self.recoveries += 1
        if self.recoveries > self.MAX_RECOVERIES:
            raise TraceboxError(f"Kafka at {self.bootstrap} keeps failing: {self.last_error}")
        with self._lock:
            self._gen += 1
            self._fatal = False
            items = sorted(self._inflight.items())
        self._p = self._make()
        for token, (topic, key, value, _) in items:
            self._produce(token, topic, key, value)
        self.resent += len(items)

    # -- waiting ------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (and recover from a fatal error)."""
        try:
            self._p.poll(timeout)
        except self._ck.KafkaException as e:
            if not _is_fatal(e):
                raise TraceboxError(f"Kafka at {self.bootstrap}: {_why(e)}") from None
            self._fatal = True
        if self._fatal:
            self._recover()

    @property
    def pending(self) -> int:
        return len(self._inflight)

    def flush(self, timeout: float, *, give_up_when_down: bool = False) -> int:
        """Wait up to ``timeout`` seconds for every acknowledgement; the number still
        unacknowledged. ``give_up_when_down``: return as soon as the client reports
        every broker down (a command must not wait for a broker that is not there)."""
        deadline = time.monotonic() + timeout
        while self._inflight:
            left = deadline - time.monotonic()
            if left <= 0 or (give_up_when_down and self.down):
                break
            try:
                self._p.flush(min(left, 0.2))
            except self._ck.KafkaException as e:
                if not _is_fatal(e):
                    raise TraceboxError(f"Kafka at {self.bootstrap}: {_why(e)}") from None
                self._fatal = True
            self.poll(0)
        return len(self._inflight)

    def stats(self) -> dict:
        return {
            "bootstrap": self.bootstrap,
            "topics": sorted(self.topics.values()),
            "sent": self.sent,
            "delivered": self.delivered,
            "failed": self.failed,
            "pending": self.pending,
            "resent": self.resent,
            "redactions": dict(self.redactions),
            "last_error": self.last_error,
        }


def _is_fatal(exc) -> bool:
    err = exc.args[0] if getattr(exc, "args", None) else None
    return bool(err is not None and hasattr(err, "fatal") and err.fatal())


def ensure_topics(
    bootstrap: str,
    topic_prefix: str = DEFAULT_PREFIX,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    timeout: float = 5.0,
) -> dict[str, int]:
    """Create the prefix's topics that are missing; {topic: partitions}. Also the check
    that the broker answers: a one-line error if it does not within ``timeout``."""
    ck = _client()
    from confluent_kafka.admin import AdminClient, NewTopic

    names = topics(topic_prefix)
    admin = AdminClient({"bootstrap.servers": check_bootstrap(bootstrap), "logger": _logger()})
    try:
        md = admin.list_topics(timeout=timeout)
    except ck.KafkaException as e:
        raise TraceboxError(f"cannot reach Kafka at {bootstrap}: {_why(e)}") from None
    missing = [t for t in names.values() if t not in md.topics]
    if missing:
        new = [NewTopic(t, num_partitions=partitions, replication_factor=-1) for t in missing]
        for topic, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result()
            except ck.KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise TraceboxError(
                        f"cannot create topic {topic} on {bootstrap}: {_why(e)}"
                    ) from None
        md = admin.list_topics(timeout=timeout)
    return {t: len(md.topics[t].partitions) for t in names.values() if t in md.topics}


# -- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The ``[stream.kafka]`` table (docs/stream.md, "Configuration")."""

    bootstrap: str
    topic_prefix: str = DEFAULT_PREFIX
    scrub: bool = True
    timeout: float = INLINE_TIMEOUT  # in-line publishing: seconds a command may wait


def _table(raw: dict) -> dict | None:
    stream = raw.get("stream")
    if stream is None:
        return None
    table = stream.get("kafka") if isinstance(stream, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError("[stream.kafka] in the config file must be a table")
    return table


def load_config(
    raw: dict, *, bootstrap: str | None = None, topic_prefix: str | None = None
) -> Config | None:
    """Flags > ``TRACEBOX_KAFKA_BOOTSTRAP`` > ``[stream.kafka]``; None with no bootstrap."""
    from ..config import parse_duration

    table = _table(raw) or {}
    bs = bootstrap or os.environ.get("TRACEBOX_KAFKA_BOOTSTRAP") or table.get("bootstrap")
    if not bs:
        return None
    for name in ("scrub", "publish"):
        if not isinstance(table.get(name, True), bool):
            raise ConfigError(f"stream.kafka.{name} must be true or false")
    prefix = topic_prefix or table.get("topic_prefix") or DEFAULT_PREFIX
    return Config(
        bootstrap=check_bootstrap(bs),
        topic_prefix=check_prefix(prefix),
        scrub=table.get("scrub", True),
        timeout=parse_duration(table.get("timeout", INLINE_TIMEOUT), what="stream.kafka.timeout"),
    )


def _publishing(raw: dict) -> Config | None:
    """The config of in-line publishing (commands, the mirror, the proxy): None without a
    ``[stream.kafka]`` table, with ``publish = false`` or with no bootstrap."""
    table = _table(raw)
    if table is None or table.get("publish", True) is False:
        return None
    return load_config(raw)


class Inline:
    """What commands use to publish as they write: one producer per process, and each
    batch waits for its acknowledgements at most ``Config.timeout`` seconds (less when
    the broker is down). The first failure stops publishing for the rest of the process
    and leaves one warning: the events are in the bucket, so ``tracebox stream kafka``
    catches them up. Short-lived processes use acks=all without the idempotent producer,
    whose ProducerId request would cost each process ~0.5 s; a rare retried duplicate
    carries the same dedup id."""

    def __init__(self, cfg: Config | None, raw: dict, error: str | None = None) -> None:
        self.cfg, self.raw = cfg, raw
        self.broken = error
        self._warned = False
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def _get(self) -> Producer:
        with self._lock:
            if self._producer is None:
                assert self.cfg is not None
                self._producer = Producer(
                    self.cfg.bootstrap,
                    self.cfg.topic_prefix,
                    idempotent=False,
                    timeout=self.cfg.timeout,
                    scrubber=make_scrubber(self.raw) if self.cfg.scrub else None,
                )
            return self._producer

    def send(self, envelopes: list[dict]) -> str | None:
        """Publish and wait; None when every envelope was acknowledged, else why not."""
        if self.broken or not envelopes:
            return self.broken
        try:
            p = self._get()
            p.down = False  # judged afresh: an idle connection the broker closed is no outage
            results: list[bool] = []
            for env in envelopes:
                p.send(env, on_done=results.append)
            left = p.flush(self.cfg.timeout, give_up_when_down=True)
        except TraceboxError as e:
            self.broken = str(e)
            return self.broken
        if left or not all(results):
            why = p.last_error or f"no acknowledgement within {self.cfg.timeout:g} s"
            self.broken = f"Kafka at {self.cfg.bootstrap}: {why}"
        return self.broken

    def warn(self, warnings: list, what: str) -> None:
        if self.broken and not self._warned:
            self._warned = True
            warnings.append(
                f"{what} not published to Kafka ({self.broken}); they are in the bucket: "
                "`tracebox stream kafka` publishes them"
            )

    def coord(self, ctx, ev: dict) -> None:
        """Publish one coordination event just written to the log (never raises)."""
        if self.send([from_coord(ctx.project, ev)]):
            self.warn(ctx.warnings, "events")

    def session(self, ctx, harness: str, session_id: str, generation: int, parse: Callable) -> None:
        """Publish the steps of a session the mirror just uploaded that this machine has
        not published yet (never raises). ``parse()`` returns the parsed ``Session``."""
        if self.broken:
            return self.warn(ctx.warnings, "session events")
        assert self.cfg is not None
        path = _state_file(
            "sessions",
            ctx.store.url,
            ctx.project,
            self.cfg.bootstrap,
            self.cfg.topic_prefix,
            harness,
            session_id,
        )
        state = _read_json(path) or {}
        start = state.get("counts") if state.get("generation") == generation else None
        try:
            session = parse()
        except (TraceboxError, OSError, ValueError) as e:
            self.broken = f"cannot read session {session_id}: {e}"
            return self.warn(ctx.warnings, "session events")
        envs, counts = from_session(
            ctx.project,
            session,
            harness=harness,
            generation=generation,
            agent=ctx.agent,
            start=start if isinstance(start, dict) else None,
        )
        if self.send(envs):
            return self.warn(ctx.warnings, "session events")
        try:
            _write_json(path, {"generation": generation, "counts": counts})
        except OSError:
            pass  # only costs sending these steps again (same ids) next time


_PUBLISHERS: dict[Config | str, Inline] = {}  # by configuration (or by what is wrong with it)


def publisher(raw: dict) -> Inline | None:
    """The in-line publisher (one per process and configuration) for the config ``raw``,
    or None when it has no ``[stream.kafka]`` table or the table says ``publish = false``.
    A bad table gives a publisher that only warns: the command's own work is done."""
    try:
        cfg = _publishing(raw)
    except TraceboxError as e:
        key: Config | str = str(e)  # one warning per process for one bad table
        if key not in _PUBLISHERS:
            _PUBLISHERS[key] = Inline(None, raw, error=key)
        return _PUBLISHERS[key]
    if cfg is None:
        return None
    if cfg not in _PUBLISHERS:
        _PUBLISHERS[cfg] = Inline(cfg, raw)
    return _PUBLISHERS[cfg]


FEED_LIMIT = 50_000  # live-feed events waiting for acknowledgement; more are dropped


def send_feed_event(producer: Producer, project: str | None, event: dict) -> bool | None:
    """Publish one event of a proxy's live feed: True if queued, None if it is a notice
    of the feed itself, False if dropped (FEED_LIMIT unacknowledged already; live events
    exist nowhere else to be sent from later)."""
    env = from_feed(project, event)
    if env is None:
        return None
    if producer.pending >= FEED_LIMIT:
        return False
    producer.send(env)
    return True


class FeedPublisher:
    """A proxy's live feed into Kafka: subscribed at start-up; the proxy's event loop
    only hands events to a queue, a thread scrubs and produces them (idempotent producer,
    retried until acknowledged; ``send_feed_event``)."""

    def __init__(self, feed, producer: Producer, project: str | None):
        import queue

        self.producer, self.project = producer, project
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._sub = feed.subscribe(on_event=self._q.put)
        self._thread = threading.Thread(target=self._run, name="tracebox-kafka", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import queue

        while True:
            try:
                event = self._q.get(timeout=0.1)
            except queue.Empty:
                self.producer.poll(0)
                continue
            if event is None:
                return
            send_feed_event(self.producer, self.project, event)
            self.producer.poll(0)

    def close(self, timeout: float = 5.0) -> int:
        """Stop, and wait up to ``timeout`` s for acknowledgements; how many are missing."""
        self._sub.close()
        self._q.put(None)
        self._thread.join(timeout)
        return self.producer.flush(timeout)


def attach_feed(feed, raw: dict, project: str | None = None) -> FeedPublisher | None:
    """Publish ``feed`` to Kafka when the config ``raw`` has a ``[stream.kafka]`` table
    that publishes; the ``FeedPublisher`` (close it at exit) or None. Configuration
    errors raise: a server should not start misconfigured."""
    cfg = _publishing(raw)
    if cfg is None:
        return None
    producer = Producer(
        cfg.bootstrap,
        cfg.topic_prefix,
        scrubber=make_scrubber(raw) if cfg.scrub else None,
    )
    return FeedPublisher(feed, producer, project)


# -- local state ----------------------------------------------------------------------------


def _state_file(kind: str, *parts: str) -> str:
    import hashlib

    from ..dirs import user_dir

    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return user_dir("state", "kafka", kind, digest[:32] + ".json")


def _read_json(path: str) -> dict | None:
    import json

    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(64 << 20))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _write_json(path: str, doc: dict) -> None:
    import json

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
    os.replace(tmp, path)


# -- the bridge -----------------------------------------------------------------------------


class Bridge:
    """``tracebox stream kafka``: publish the bucket's event log (from a checkpoint), a
    running proxy's live feed and, on demand, mirrored sessions.

    The checkpoint (``$XDG_STATE_HOME/tracebox/kafka/bridge/<hash>.json``, one per
    bucket + project + bootstrap + prefix) lists the event keys delivered within a grace
    window behind the newest; each poll lists the log from that window, so an event whose
    key lands late (its writer's clock was behind) is still published, and one already
    delivered is not published again after a restart. It is written after each poll, so
    a bridge killed between an acknowledgement and that write re-sends those events
    (same dedup ids). One bridge per checkpoint at a time (a lock file).
    """

    def __init__(
        self,
        producer: Producer,
        project=None,
        *,
        sessions: bool = False,
        from_start: bool = False,
        grace: float = 30.0,
        max_inflight: int = 20_000,
    ) -> None:
        self.producer, self.project = producer, project
        self.sessions = sessions and project is not None
        self.grace, self.max_inflight = grace, max_inflight
        self.counts = {"coord": 0, "proxy": 0, "mirror": 0}
        self.skipped = self.feed_dropped = self.feed_reconnects = 0
        self._lock = threading.Lock()
        self._inflight: set[str] = set()  # event keys produced, not yet acknowledged
        self._done: set[str] = set()  # event keys delivered (within the grace window)
        self._sessions: dict[str, dict] = {}
        self._session_pending: dict[str, list] = {}
        self._dirty = self._more = False
        self._saved = 0.0
        self.path = self._lockfd = None
        if project is not None:
            self.path = _state_file(
                "bridge",
                project.store.url,
                project.name,
                producer.bootstrap,
                producer.topic_prefix,
            )
            self._lock_state()
            state = {} if from_start else _read_json(self.path) or {}
            root = project.ctx.key("events/")
            self._done = {root + k for k in state.get("done") or [] if isinstance(k, str)}
            sessions_state = state.get("sessions")
            self._sessions = sessions_state if isinstance(sessions_state, dict) else {}

    def _lock_state(self) -> None:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Refused(
                f"another `tracebox stream kafka` is publishing project {self.project.name} "
                f"to {self.producer.bootstrap} ({self.producer.topic_prefix}.*) on this machine"
            ) from None
        self._lockfd = fd

    def close(self) -> None:
        if self._lockfd is not None:
            os.close(self._lockfd)
            self._lockfd = None

    # -- the coordination log -----------------------------------------------------------
    def _floor(self):
        """The time from which the log is listed: the grace window behind the oldest
        undelivered key, or behind the newest delivered one (None: the whole log)."""
        from datetime import UTC, datetime, timedelta

        ref = min(self._inflight) if self._inflight else max(self._done, default=None)
        if ref is None:
            return None
        stamp = ref.rsplit("/", 1)[-1].split("-", 1)[0]  # 20261122T041500123456Z
        try:
            at = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return at - timedelta(seconds=self.grace)

    def _prune(self, floor) -> None:
        """Forget delivered keys the listing from ``floor`` no longer returns."""
        from ..coord.events import _day_start

        if floor is not None:
            cut = self.project.ctx.key(_day_start(floor))  # where the listing starts
            with self._lock:
                self._done = {k for k in self._done if k > cut}

    def _poll_coord(self) -> int:
        from ..coord import events
        from ..coord.context import fetch_many

        ctx = self.project.ctx
        floor = self._floor()
        keys = events.list_keys(ctx, since=floor)
        self._prune(floor)
        with self._lock:
            new = [k for k in keys if k not in self._done and k not in self._inflight]
        room = max(0, self.max_inflight - self.producer.pending)
        self._more = len(new) > room
        new = new[:room]
        if not new:
            return 0
        docs = fetch_many(ctx, new)
        for key, doc in zip(new, docs, strict=True):
            if doc is None:  # vanished or damaged: nothing to publish
                self.skipped += 1
                self._mark(key, True)
                continue
            with self._lock:
                self._inflight.add(key)
            self.producer.send(
                from_coord(self.project.name, doc, key),
                on_done=lambda ok, key=key: self._mark(key, ok),
            )
            self.counts["coord"] += 1
        return len(new)

    def _mark(self, key: str, ok: bool) -> None:
        with self._lock:
            self._inflight.discard(key)
            # a permanent failure (e.g. too large for the broker) is counted by the
            # producer and not retried: it would hold the checkpoint back for ever
            self._done.add(key)
            self._dirty = True

    # -- mirrored sessions --------------------------------------------------------------
    def _poll_sessions(self) -> int:
        from ..capture import mirror

        queued = 0
        for row in mirror.list_sessions(self.project):
            name = f"{row['harness']}/{row['session_id']}"
            state = self._sessions.get(name) or {}
            if name in self._session_pending or state.get("fingerprint") == row["fingerprint"]:
                continue
            if self.producer.pending >= self.max_inflight:
                break
            try:
                session = mirror.load_session(self.project, row["harness"], row["session_id"])
            except TraceboxError:
                self.skipped += 1
                continue
            gen = row["generation"]
            start = state.get("counts") if state.get("generation") == gen else None
            meta = self.project.ctx.get_json(
                f"{mirror.session_prefix(row['harness'], row['session_id'])}meta.json"
            )
            envs, counts = from_session(
                self.project.name,
                session,
                harness=row["harness"],
                generation=gen,
                agent=_str((meta or ({},))[0].get("mirrored_by")),
                start=start if isinstance(start, dict) else None,
            )
            new_state = {"fingerprint": row["fingerprint"], "generation": gen, "counts": counts}
            if not envs:
                self._sessions[name] = new_state
                self._dirty = True
                continue
            self._session_pending[name] = [len(envs), new_state]
            for env in envs:
                self.producer.send(env, on_done=lambda ok, name=name: self._session_done(name))
            self.counts["mirror"] += len(envs)
            queued += len(envs)
        return queued

    def _session_done(self, name: str) -> None:
        with self._lock:
            entry = self._session_pending[name]
            entry[0] -= 1
            if entry[0] == 0:
                self._sessions[name] = entry[1]
                del self._session_pending[name]
                self._dirty = True

    # -- a proxy's live feed ------------------------------------------------------------
    def follow_feed(self, url: str, stop: threading.Event) -> threading.Thread:
        """Publish the live feed of the proxy at ``url`` from a thread until ``stop``;
        reconnects when the proxy goes away. Fails at once if it does not answer now."""
        from .feed import open_proxy_feed, read_feed

        resp = open_proxy_feed(url)
        project = self.project.name if self.project is not None else None

        def run(resp) -> None:
            while not stop.is_set():
                try:
                    for event in read_feed(resp):
                        if stop.is_set():
                            return
                        if event.get("type") == "feed.dropped":
                            self.feed_dropped += int(event.get("count") or 0)
                        sent = send_feed_event(self.producer, project, event)
                        if sent:
                            self.counts["proxy"] += 1
                        elif sent is False:
                            self.feed_dropped += 1
                except (OSError, ValueError):
                    pass
                finally:
                    resp.close()
                while not stop.wait(1.0):  # the proxy went away: reconnect
                    try:
                        resp = open_proxy_feed(url)
                        self.feed_reconnects += 1
                        break
                    except TraceboxError:
                        continue

        t = threading.Thread(target=run, args=(resp,), name="tracebox-feed", daemon=True)
        t.start()
        return t

    # -- running ------------------------------------------------------------------------
    def poll(self) -> int:
        """Queue what is new in the log (and sessions); the number of events queued."""
        if self.project is None:
            return 0
        n = self._poll_coord()
        if self.sessions:
            n += self._poll_sessions()
        return n

    def save(self, force: bool = False) -> None:
        if self.path is None or not self._dirty:
            return
        if not force and time.monotonic() - self._saved < 1.0:
            return
        root = self.project.ctx.key("events/")
        self._prune(self._floor())
        with self._lock:
            doc = {
                "v": 1,
                "bucket": self.project.store.url,
                "project": self.project.name,
                "bootstrap": self.producer.bootstrap,
                "topic_prefix": self.producer.topic_prefix,
                "done": sorted(k[len(root) :] for k in self._done),
                "sessions": dict(self._sessions),
            }
            self._dirty = False
        try:
            _write_json(self.path, doc)
        except OSError as e:
            raise TraceboxError(f"cannot write the checkpoint {self.path}: {e.strerror}") from None
        self._saved = time.monotonic()

    def run(
        self,
        *,
        follow: bool = False,
        interval: float = 1.0,
        stop: threading.Event | None = None,
        flush_timeout: float = 30.0,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        """Catch up (and with ``follow``, keep going until ``stop`` is set); then wait up
        to ``flush_timeout`` s for the last acknowledgements. Returns ``stats()``."""
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                queued = self.poll()
                self.producer.poll(0)
                self.save()
                if on_progress is not None:
                    on_progress(self.stats())
                if follow:
                    self._wait(interval, stop)
                elif self._more:
                    self._wait(0.2, stop)  # room for more in flight
                elif not queued:
                    break
            self.producer.flush(flush_timeout)
        finally:
            self.save(force=True)
        return self.stats()

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        """Serve acknowledgements for ``seconds`` (or until ``stop``)."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.producer.poll(min(0.1, left))

    def stats(self) -> dict:
        out = self.producer.stats()
        out.update(
            sources=dict(self.counts),
            skipped=self.skipped,
            feed_dropped=self.feed_dropped,
            feed_reconnects=self.feed_reconnects,
            checkpoint=self.path,
        )
        return out


# -- consuming ------------------------------------------------------------------------------


def consume_events(
    bootstrap: str,
    topic_prefix: str = DEFAULT_PREFIX,
    *,
    group: str | None = None,
    from_start: bool = False,
    timeout: float | None = None,
    stop=None,
) -> Iterator[dict]:
    """Every envelope published to ``<prefix>.coord`` and ``<prefix>.trace``, decoded.

    ``group``: a consumer group (offsets committed after the caller took each envelope,
    so a restart resumes where it stopped; at-least-once); None: no group, every
    partition read directly (assign). ``from_start``: from the oldest retained message
    (for a group: when it has no committed offset yet), else only new ones. ``timeout``:
    end after that many seconds without a message, counted from the start (for a group:
    from joining it) (None: never); ``stop``: a ``threading.Event`` that ends it. Order is per key (session, step or agent) only.
    Envelopes are not deduplicated: drop repeats by ``id``.
    """
    import uuid

    import msgspec

    ck = _client()
    names = list(topics(topic_prefix).values())
    ensure_topics(bootstrap, topic_prefix)
    conf = {
        "bootstrap.servers": check_bootstrap(bootstrap),
        "group.id": group or f"tracebox-reader-{uuid.uuid4().hex}",
        "client.id": "tracebox",
        "auto.offset.reset": "earliest" if from_start else "latest",
        "enable.auto.commit": group is not None,
        "enable.auto.offset.store": False,
        # noida-db answers a fetch with everything from the offset on, ignoring
        # fetch.max.bytes; real brokers honour it, so this only lifts the client's guard
        "receive.message.max.bytes": 1_000_000_000,
        "logger": _logger(),
    }
    broken: list[str] = []

    def on_error(err) -> None:
        if err.fatal() or err.name() == "_BAD_MSG":
            broken.append(_why(err))

    consumer = ck.Consumer({**conf, "error_cb": on_error})
    last = time.monotonic()

    def assigned(_consumer, _partitions) -> None:
        nonlocal last
        last = time.monotonic()  # joining a group is not "no message" time

    try:
        if group is not None:
            consumer.subscribe(names, on_assign=assigned)
        else:
            md = consumer.list_topics(timeout=10)
            start = ck.OFFSET_BEGINNING if from_start else ck.OFFSET_END
            consumer.assign(
                [
                    ck.TopicPartition(t, p, start)
                    for t in names
                    for p in sorted(md.topics[t].partitions)
                ]
            )
        while stop is None or not stop.is_set():
            wait = 0.2 if timeout is None else max(0.0, min(0.2, last + timeout - time.monotonic()))
            msg = consumer.poll(wait)
            if broken:
                raise TraceboxError(f"cannot read from Kafka at {bootstrap}: {broken[0]}")
            if msg is None:
                if timeout is not None and time.monotonic() - last >= timeout:
                    return
                continue
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise TraceboxError(f"Kafka at {bootstrap}: {_why(err)}")
                continue
            last = time.monotonic()
            try:
                doc = msgspec.json.decode(msg.value() or b"")
            except msgspec.DecodeError:
                doc = None
            if isinstance(doc, dict):
                yield doc
            if group is not None:
                consumer.store_offsets(message=msg)
    finally:
        consumer.close()
