"""The Kafka sink: ``tracebox stream kafka``, publishing as commands write, the consumer.

Against a real Kafka-protocol broker (the ``kafka`` fixture: noida-db, or a real Kafka
named by ``TRACEBOX_TEST_KAFKA``), with the official client (confluent-kafka) reading
what arrived; every test publishes under topic prefixes of its own. What must arrive is
computed from the bucket (read without tracebox: ``coordkit.RawBucket``) or from the
transcript's JSON lines, never from tracebox's own output.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import fake_upstream
import tracebox
from coordkit import RawBucket, assert_error, events_of, popen, wait_until
from tracebox.errors import UsageError
from tracebox.stream import kafka as tk

PROJECT = "p"
CORPUS = Path(__file__).resolve().parent / "corpus" / "claude-code"
TOOL_SESSION = "d6e0bada-1959-4eec-a9d2-0bfade768d8f"  # tool_heavy.jsonl
SECRET = "ghp_1234567890abcdefghijABCDEFGHIJ123456"


# -- reading what arrived, with the official client ---------------------------------------


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: str
    env: dict


class Reader:
    """Every message of a prefix's two topics from the start, accumulated in ``msgs``.
    Creates the topics first (6 partitions each), so keys really spread."""

    def __init__(self, bootstrap: str, prefix: str):
        self.prefix = prefix
        tk.ensure_topics(bootstrap, prefix)
        self.c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        md = self.c.list_topics(timeout=10)
        names = [f"{prefix}.coord", f"{prefix}.trace"]
        self.c.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in names for p in md.topics[t].partitions]
        )
        self.msgs: list[Msg] = []

    def poll(self, seconds: float) -> int:
        n, deadline = 0, time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            m = self.c.poll(min(0.1, left))
            if m is None or m.error():
                continue
            env = json.loads(m.value())
            self.msgs.append(Msg(m.topic(), m.partition(), m.offset(), m.key().decode(), env))
            n += 1
        return n

    def wait(self, pred, what: str, timeout: float = 20.0) -> list[Msg]:
        deadline = time.monotonic() + timeout
        while not pred(self.msgs):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.ids()}"
            self.poll(0.2)
        return self.msgs

    def settle(self, idle: float = 0.5) -> list[Msg]:
        """Read until nothing new arrives for ``idle`` seconds."""
        while self.poll(idle):
            pass
        return self.msgs

    def ids(self, source: str | None = None) -> list[str]:
        return [m.env["id"] for m in self.msgs if source is None or m.env["source"] == source]

    def close(self) -> None:
        self.c.close()


@pytest.fixture
def reader(kafka):
    """``reader(prefix)``: a Reader of the session's broker (or of ``bootstrap``)."""
    made: list[Reader] = []

    def make(prefix: str, bootstrap: str | None = None) -> Reader:
        made.append(Reader(bootstrap or kafka, prefix))
        return made[-1]

    yield make
    for r in made:
        r.close()


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def coord_ids(raw: RawBucket) -> list[str]:
    return [f"coord:{PROJECT}:{e['id']}" for e in events_of(raw)]


def add_kafka_config(work: Path, bootstrap: str, topic_prefix: str, **extra) -> None:
    """Append a [stream.kafka] table to the .tracebox.toml `tracebox init` wrote."""
    lines = ["", "[stream.kafka]", f'bootstrap = "{bootstrap}"', f'topic_prefix = "{topic_prefix}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    with open(work / ".tracebox.toml", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def set_kafka_config(work: Path, bootstrap: str, topic_prefix: str) -> None:
    text = (work / ".tracebox.toml").read_text()
    (work / ".tracebox.toml").write_text(text.split("\n[stream.kafka]")[0] + "\n")
    add_kafka_config(work, bootstrap, topic_prefix)


def dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def transcript_tools(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(tool_use id, name) of every tool call and the tool_use_id of every tool result in
    a Claude Code transcript, in file order, read from its JSON lines."""
    calls, results = [], []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        content = (doc.get("message") or {}).get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_use":
                calls.append((block["id"], block["name"]))
            elif block.get("type") == "tool_result":
                results.append(block["tool_use_id"])
    return calls, results


# -- the bridge over the event log --------------------------------------------------------


def test_coordination_events_arrive_keyed_in_order(cli, bucket_url, kafka, reader):
    p = prefix()
    cli("init", "--bucket", bucket_url, "--project", PROJECT, "--agent", "alice", check=True)
    cli("claim", "build", check=True)
    cli("complete", "build", "--note", f"done; used {SECRET}", "--to", "bob", check=True)
    cli("--agent", "bob", "claim", "deploy", check=True)
    cli("--agent", "bob", "send", "alice", "deploying now", check=True)
    cli("memory", "set", "build.status", '{"ok": true}', check=True)
    cli("--agent", "bob", "complete", "deploy", "--blocked", "--note", "no creds", check=True)

    stats = cli.json("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", p)
    raw = RawBucket(bucket_url)
    expected = coord_ids(raw)
    assert stats["sent"] == stats["delivered"] == len(expected) == 7
    assert stats["failed"] == stats["pending"] == 0 and stats["redactions"] == {"github": 1}

    r = reader(p)
    msgs = r.wait(lambda m: len(m) >= len(expected), "every coordination event")
    r.settle()
    assert sorted(r.ids()) == sorted(expected)  # each exactly once
    assert all(m.topic == f"{p}.coord" and m.key == m.env["key"] for m in msgs)
    by_id = {m.env["id"]: m for m in msgs}
    for ev in events_of(raw):
        env = by_id[f"coord:{PROJECT}:{ev['id']}"].env
        assert (env["v"], env["source"], env["project"]) == (1, "coord", PROJECT)
        assert (env["type"], env["time"], env["agent"], env["step"]) == (
            ev["type"],
            ev["ts"],
            ev["agent"],
            ev["step"],
        )
        assert env["key"] == (f"step/{ev['step']}" if ev["step"] else f"agent/{ev['agent']}")
    # one key, one partition, in the order the events happened
    for key in ("step/build", "step/deploy"):
        same = sorted((m for m in msgs if m.key == key), key=lambda m: m.offset)
        assert len({m.partition for m in same}) == 1
        assert [m.env["type"] for m in same] == ["claim.acquire", "step.complete"]
    assert len({m.partition for m in msgs}) > 1  # keys spread over the partitions
    blob = b"".join(json.dumps(m.env).encode() for m in msgs)
    assert SECRET.encode() not in blob and b"[REDACTED:github]" in blob

    # the checkpoint: nothing again, then only what is new
    assert cli.json("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", p)["sent"] == 0
    cli("event", "test.passed", "--data", '{"suite": "unit"}', check=True)
    again = cli.json("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", p)
    assert again["sent"] == again["delivered"] == 1
    new = r.wait(lambda m: len(m) > len(expected), "the new event")[-1].env
    assert new["type"] == "test.passed" and new["data"] == {"suite": "unit"}
    r.settle()
    assert Counter(r.ids()) == Counter(coord_ids(raw))
    # --from-start: everything again, under the same dedup ids
    full = cli.json("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", p, "--from-start")
    assert full["sent"] == len(coord_ids(raw))
    r.wait(lambda m: len(m) == 2 * len(coord_ids(raw)), "the log sent again")
    assert set(Counter(r.ids()).values()) == {2}


def test_no_loss_when_the_broker_restarts(cli, tmp_path, kafka_broker, reader):
    """The broker goes down mid-stream and comes back on the same port: every event is
    delivered exactly once (idempotent producer, retried until acknowledged). Then the
    bridge itself is killed mid-stream: a new one loses nothing and does not re-send
    what the checkpoint holds."""
    bucket, p, k = str(tmp_path / "bucket"), prefix(), kafka_broker.bootstrap
    cli("init", "--bucket", bucket, "--project", PROJECT, "--agent", "w", check=True)
    project = tracebox.open_project(bucket, project=PROJECT, agent="w")

    def write(n: int, start: int) -> None:
        for i in range(start, start + n):
            project.record("test.tick", data={"n": i})
            time.sleep(0.01)

    def follow() -> object:
        return popen(cli.cwd, "stream", "kafka", "--bootstrap", k, "--topic-prefix", p,
                     "--follow", "--interval", "0.2", "--json")  # fmt: skip

    r = reader(p, k)
    raw = RawBucket(bucket)
    bridge = follow()
    try:
        r.wait(lambda m: len(m) >= 1, "the bridge's first event (project.init)")
        writer = threading.Thread(target=write, args=(150, 0))
        writer.start()
        r.wait(lambda m: len(m) >= 20, "events before the restart")
        kafka_broker.restart(down=1.0)  # events keep landing in the bucket meanwhile
        writer.join()
        phase1 = coord_ids(raw)
        r.wait(lambda m: set(phase1) <= set(r.ids()), "every event after the restart", 30)
        bridge.send_signal(signal.SIGTERM)
        out, err = bridge.communicate(timeout=30)
        assert bridge.returncode == 0, err
        stats = json.loads(out)
        assert stats["delivered"] == len(phase1) and stats["pending"] == stats["failed"] == 0
        r.settle()
        assert Counter(r.ids()) == Counter(phase1)  # exactly once each

        # a bridge killed mid-stream, then a new one: nothing lost, the checkpoint holds
        bridge = follow()
        writer = threading.Thread(target=write, args=(100, 150))
        writer.start()
        r.wait(lambda m: len(m) >= len(phase1) + 20, "events of the second bridge")
        bridge.kill()
        bridge.wait(10)
        writer.join()
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait(10)
    cli("stream", "kafka", "--bootstrap", k, "--topic-prefix", p, check=True)
    everything = coord_ids(raw)
    r.wait(lambda m: set(everything) <= set(r.ids()), "every event after the kill", 30)
    r.settle()
    counts = Counter(r.ids())
    assert set(counts) == set(everything)
    assert all(counts[i] == 1 for i in phase1)  # not re-sent after the restart


def test_producer_recovers_from_a_broker_crash(kafka_broker):
    """Killed (SIGKILL), noida-db forgets its idempotence state (and everything else it
    held), and the idempotent producer's next request fails fatally; the producer makes
    a new one and sends again everything unacknowledged: all that was sent after the
    crash arrives, once."""
    k, p = kafka_broker.bootstrap, prefix()
    tk.ensure_topics(k, p)
    producer = tk.Producer(k, p)

    def send(tag: str) -> None:
        for i in range(50):
            producer.send(tk.envelope("coord", "t", id=f"{tag}{i}", time=None, project="p",
                                      agent=f"a{i % 3}"))  # fmt: skip

    send("a")
    assert producer.flush(20) == 0
    kafka_broker.crash()
    tk.ensure_topics(k, p)  # noida-db lost the topics too; a Kafka broker keeps them
    send("b")
    time.sleep(0.3)
    send("c")
    assert producer.flush(30) == 0 and producer.failed == 0
    assert producer.recoveries >= 1 and producer.resent >= 50
    got = Counter(e["id"] for e in tk.consume_events(k, p, from_start=True, timeout=1))
    after = [f"{t}{i}" for t in "bc" for i in range(50)]
    assert all(got[i] == 1 for i in after), got


def test_idempotent_producer_and_acks_all(kafka):
    """The bridge's producer asks the broker for a ProducerId (the idempotent producer)
    and waits for every in-sync replica."""
    conf = tk.producer_config(kafka)
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["message.timeout.ms"] == 0  # retried until acknowledged
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    log = logging.getLogger("tracebox.kafka")
    log.addHandler(handler)
    level, log.level = log.level, logging.DEBUG
    try:
        p = tk.Producer(kafka, prefix(), config={"debug": "eos"})
        env = tk.envelope("coord", "test.x", id="coord:p:1", time=None, project="p", agent="a")
        p.send(env)
        assert p.flush(20) == 0 and p.delivered == 1
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert any("Acquired PID" in line for line in lines), lines[-20:]
    inline = tk.producer_config(kafka, idempotent=False, timeout=2)
    assert inline["acks"] == "all" and inline["max.in.flight.requests.per.connection"] == 1


# -- publishing as commands write ([stream.kafka]) ------------------------------------------


def test_commands_and_mirror_publish_as_they_write(cli, tmp_path, kafka, reader):
    bucket, p = str(tmp_path / "bucket"), prefix()
    cli("init", "--bucket", bucket, "--project", PROJECT, "--agent", "alice", check=True)
    r = reader(p)
    add_kafka_config(cli.cwd, kafka, p)
    claim = cli("claim", "build", check=True)
    assert claim.stderr == ""
    raw = RawBucket(bucket)
    acquire = [e for e in events_of(raw) if e["type"] == "claim.acquire"]
    msgs = r.wait(lambda m: len(m) >= 1, "the claim, published by `tracebox claim` itself")
    assert [m.env["id"] for m in msgs] == [f"coord:{PROJECT}:{acquire[0]['id']}"]
    assert msgs[0].key == "step/build" and msgs[0].env["agent"] == "alice"

    # the mirror publishes the session's tool calls and results (keyed by the session)
    src = tmp_path / f"{TOOL_SESSION}.jsonl"
    shutil.copy(CORPUS / "tool_heavy.jsonl", src)
    mirrored = cli.json("session", "mirror", "--session", src)
    assert mirrored["sessions"][0]["status"] == "uploaded"
    calls, results = transcript_tools(src)
    trace = lambda m: [x for x in m if x.topic == f"{p}.trace"]  # noqa: E731
    r.wait(lambda m: len(trace(m)) >= len(calls) + len(results), "the session's tool events")
    r.settle()
    tools = trace(r.msgs)
    assert {m.key for m in tools} == {f"session/{TOOL_SESSION}"}
    assert len({m.partition for m in tools}) == 1
    ordered = sorted(tools, key=lambda m: m.offset)
    got_calls = [(m.env["data"]["tool_call_id"], m.env["data"]["tool"]) for m in ordered
                 if m.env["type"] == "tool.call"]  # fmt: skip
    got_results = [m.env["data"]["tool_call_id"] for m in ordered if m.env["type"] == "tool.result"]
    assert got_calls == calls and got_results == results and len(calls) == 6
    assert all(m.env["source"] == "mirror" and m.env["agent"] == "alice" for m in tools)
    assert any(m.env["type"] == "session.mirrored" for m in r.msgs)  # its coord event too
    # mirroring again uploads nothing and publishes nothing
    before = len(r.msgs)
    assert cli.json("session", "mirror", "--session", src)["sessions"][0]["status"] == "unchanged"
    assert r.poll(1.0) == 0 and len(r.msgs) == before

    # the broker unreachable: the command succeeds at once, warns, the event is in the
    # bucket; the bridge publishes it later
    set_kafka_config(cli.cwd, f"127.0.0.1:{dead_port()}", p)
    t0 = time.monotonic()
    down = cli("claim", "test", check=True)
    assert time.monotonic() - t0 < 20  # not a timing goal: "does not hang"
    (warning,) = down.stderr.splitlines()
    assert warning.startswith("tracebox: warning: events not published to Kafka")
    assert "tracebox stream kafka" in warning
    missed = [e for e in events_of(raw) if e["type"] == "claim.acquire" and e["step"] == "test"]
    assert len(missed) == 1
    cli("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", p, check=True)
    r.wait(lambda m: f"coord:{PROJECT}:{missed[0]['id']}" in r.ids(), "the missed event")


def test_bridge_publishes_mirrored_sessions(cli, tmp_path, kafka, reader):
    bucket, p = str(tmp_path / "bucket"), prefix()
    cli("init", "--bucket", bucket, "--project", PROJECT, "--agent", "alice", check=True)
    src = tmp_path / f"{TOOL_SESSION}.jsonl"
    shutil.copy(CORPUS / "tool_heavy.jsonl", src)
    cli("session", "mirror", "--session", src, check=True)
    stats = cli.json("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", p, "--sessions")
    calls, results = transcript_tools(src)
    assert stats["sources"]["mirror"] == len(calls) + len(results)
    assert stats["delivered"] == stats["sent"] and stats["pending"] == 0
    r = reader(p)
    r.wait(lambda m: len(m) >= stats["sent"], "everything the bridge sent")
    r.settle()
    tools = [m for m in r.msgs if m.env["source"] == "mirror"]
    assert [m.env["data"]["tool_call_id"] for m in tools if m.env["type"] == "tool.call"] == [
        c[0] for c in calls
    ]
    assert {m.env["session"] for m in tools} == {TOOL_SESSION}
    assert {m.env["agent"] for m in tools} == {"alice"}  # who mirrored it
    again = cli.json("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", p, "--sessions")
    assert again["sent"] == 0


# -- the proxy's live feed ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    f = fake_upstream.start()
    yield f
    f.stop()


def test_proxy_feed_arrives_from_the_proxy_and_the_bridge(cli, tmp_path, kafka, reader, fake):
    """A real `tracebox proxy` with [stream.kafka] publishes its feed itself (prefix A);
    `tracebox stream kafka --proxy URL` publishes the same feed (prefix B)."""
    from tracebox.capture.proxy.server import state_file

    a, b, session = prefix(), prefix(), f"s-{uuid.uuid4().hex[:8]}"
    cli("init", "--bucket", str(tmp_path / "bucket"), "--project", PROJECT, check=True)
    add_kafka_config(cli.cwd, kafka, a)
    ra, rb = reader(a), reader(b)
    proxy = popen(cli.cwd, "proxy", "--port", "0", "--upstream", f"openai={fake.url}")
    bridge = None
    try:
        wait_until(lambda: os.path.exists(state_file()), 20, "the proxy's state file")
        url = json.load(open(state_file()))["url"]
        bridge = popen(cli.cwd, "stream", "kafka", "--bootstrap", kafka, "--topic-prefix", b,
                       "--proxy", url, "--json")  # fmt: skip
        import urllib.request

        def subscribers() -> int:
            with urllib.request.urlopen(url + "/_tracebox/status", timeout=5) as resp:
                return json.loads(resp.read())["feed"]["subscribers"]

        wait_until(lambda: subscribers() >= 2, 20, "the proxy's publisher and the bridge")
        client = openai.OpenAI(
            base_url=url + "/v1",
            api_key="sk-test",
            max_retries=0,
            default_headers={"x-tracebox-session": session, "x-fake-scenario": "tool"},
        )
        client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        want = {"call.start", "call.tool_call", "call.end"}

        def of_call(msgs: list[Msg]) -> list[Msg]:
            return [x for x in msgs if x.env["session"] == session]

        for r in (ra, rb):
            r.wait(lambda m: want <= {x.env["type"] for x in of_call(m)}, "the call's events")
            got = of_call(r.msgs)
            assert {m.topic for m in got} == {f"{r.prefix}.trace"}
            assert {m.key for m in got} == {f"session/{session}"}
            assert {m.env["source"] for m in got} == {"proxy"}
            assert len({m.env["data"]["call_id"] for m in got}) == 1
            ordered = [m.env["type"] for m in sorted(got, key=lambda m: m.offset)]
            assert ordered[0] == "call.start" and ordered[-1] == "call.end"
        assert {m.env["project"] for m in ra.msgs if m.env["source"] == "proxy"} == {PROJECT}
        bridge.send_signal(signal.SIGTERM)
        out, err = bridge.communicate(timeout=30)
        assert bridge.returncode == 0, err
        stats = json.loads(out)
        assert stats["sources"]["proxy"] >= 3 and stats["pending"] == 0
    finally:
        for proc in (bridge, proxy):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    assert proxy.returncode == 0


# -- the consumer helper ------------------------------------------------------------------


def test_consume_events_groups_resume_and_timeouts(kafka):
    p = prefix()
    producer = tk.Producer(kafka, p)
    for i in range(5):
        producer.send(tk.envelope("coord", "test.n", id=f"coord:p:{i}", time=None, project="p",
                                  agent="a", data={"n": i}))  # fmt: skip
    assert producer.flush(20) == 0
    got = [e["data"]["n"] for e in tk.consume_events(kafka, p, from_start=True, timeout=1)]
    assert got == [0, 1, 2, 3, 4]  # one key: in order
    # a group resumes where it stopped (at-least-once: the last one taken may come again)
    group = f"g-{uuid.uuid4().hex}"
    first = []
    for e in tk.consume_events(kafka, p, group=group, from_start=True, timeout=10):
        first.append(e["data"]["n"])
        if len(first) == 3:
            break
    rest = [e["data"]["n"] for e in tk.consume_events(kafka, p, group=group, timeout=1)]
    assert first == [0, 1, 2] and rest in ([3, 4], [2, 3, 4])
    # stop ends it; without from_start only new envelopes come
    stop = threading.Event()
    stop.set()
    assert list(tk.consume_events(kafka, p, stop=stop)) == []
    assert list(tk.consume_events(kafka, p, timeout=0.3)) == []


# -- the envelope ---------------------------------------------------------------------------


def test_envelope_ids_are_stable_and_fields_bounded():
    from tracebox.capture import harnesses

    path = str(CORPUS / "tool_heavy.jsonl")
    adapter = harnesses.detect(path)
    one, counts = tk.from_session("p", adapter.parse(path), harness="claude-code", generation=1)
    two, _ = tk.from_session("p", adapter.parse(path), harness="claude-code", generation=1)
    assert [e["id"] for e in one] == [e["id"] for e in two] and len(set(e["id"] for e in one)) == 12
    rest, _ = tk.from_session("p", adapter.parse(path), harness="claude-code", generation=1,
                              start=counts)  # fmt: skip
    assert rest == []  # nothing new after the counts it returned
    assert tk.from_feed("p", {"type": "feed.dropped", "count": 3}) is None
    big = tk.from_feed("p", {"type": "call.end", "id": "c1", "session": None, "agent": None})
    assert big["key"] == "proxy/proxy:c1:call.end" and big["data"]["call_id"] == "c1"
    bounded = tk._bounded("output", "x" * (tk.MAX_FIELD + 10))
    assert len(bounded["output"]) == tk.MAX_FIELD
    assert bounded["output_truncated"] == tk.MAX_FIELD + 10


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_and_unreachable_broker(cli, tmp_path, kafka):
    cli("init", "--bucket", str(tmp_path / "bucket"), "--project", PROJECT, check=True)
    assert_error(cli("stream", "kafka"), 2, "no Kafka brokers", "--bootstrap")
    assert_error(cli("stream", "kafka", "--bootstrap", "no-port"), 2, "invalid Kafka bootstrap")
    assert_error(
        cli("stream", "kafka", "--bootstrap", kafka, "--topic-prefix", "a b"), 2, "topic prefix"
    )
    closed = f"127.0.0.1:{dead_port()}"
    assert_error(
        cli("stream", "kafka", "--bootstrap", closed, "--connect-timeout", "0.5"),
        1,
        f"cannot reach Kafka at {closed}",
    )
    with pytest.raises(UsageError):
        next(tk.consume_events("nonsense", "x"))
    # without confluent-kafka: one line saying what to install; commands still work
    shim = tmp_path / "shim" / "confluent_kafka"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named confluent_kafka')\n")
    env = {"PYTHONPATH": str(shim.parent)}
    assert_error(
        cli("stream", "kafka", "--bootstrap", kafka, env=env), 1, "pip install 'tracebox[kafka]'"
    )
    add_kafka_config(cli.cwd, kafka, prefix())
    claimed = cli("claim", "x", env=env)
    assert claimed.returncode == 0 and "not installed" in claimed.stderr
    # a malformed table: the command works and says why nothing was published
    (cli.cwd / ".tracebox.toml").write_text(
        (cli.cwd / ".tracebox.toml")
        .read_text()
        .replace(f'bootstrap = "{kafka}"', 'bootstrap = "x"')
    )
    bad = cli("claim", "y")
    assert bad.returncode == 0 and "invalid Kafka bootstrap" in bad.stderr
