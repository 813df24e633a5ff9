"""Captured calls in the bucket: content-addressed nodes, call records, sessions.

Owns the ``blobs/``, ``calls/`` and ``calls-by-session/`` parts of the bucket format
(docs/proxy-format.md), everything that writes them (``CallStore``, fed by the spool's
shipper), the attribution of calls to sessions (``Attributor``) and the reading side
(``list_call_sessions``, ``load_calls``, ``calls_to_sessions``: calls → trace-model
Sessions with harness ``"proxy"``).

Layout under ``<project>/``::

    blobs/<aa>/<node id>                      one message node (trace/dag.py), immutable
    calls/<yyyy>/<mm>/<dd>/<call id>.json     one call record, immutable
    calls-by-session/<session>/<call id>      empty marker: lists a session's calls

Everything is scrubbed (``tracebox.scrub``) before it is written: a node's content is
scrubbed first and its id computed over the scrubbed bytes (the scrubber is
deterministic, so identical messages still share one node), and each call record is
scrubbed as a whole. All writes are create-if-absent under deterministic keys, so
re-shipping a call writes nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ...errors import AlreadyExists, FormatError, NotFound, NotSupported
from ...trace import dag
from ...trace.model import (
    Attachment,
    Part,
    Reasoning,
    Session,
    Step,
    StepError,
    Text,
    ToolCall,
    ToolResult,
    Usage,
)
from .exchange import Exchange
from .providers import read_reply
from .providers.wire import MAX_BODY_BYTES, loads

CALLS = "calls/"
BY_SESSION = "calls-by-session/"
BLOBS = "blobs/"
RECORD_VERSION = 1
MAX_INLINE_META = 16 << 10  # response metadata larger than this goes to a node
MAX_RAW_CHARS = 2000  # of an error body shown in a step's error message
_CACHE_ENTRIES = 200_000  # raw node id → scrubbed node id, node ids known to be stored
_WRITERS = 16
_ID = re.compile(r"\d{8}T\d{12}Z-[A-Za-z0-9]{1,32}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_decode = msgspec.json.decode
_encode = msgspec.json.Encoder(order="sorted").encode


def blob_key(node_id: str) -> str:
    return f"{BLOBS}{node_id[:2]}/{node_id}"


def call_id(x: Exchange) -> str:
    """The exchange's id when it has the sortable form, else one derived from it."""
    if _ID.fullmatch(x.id):
        return x.id
    from ...coord.context import parse_iso, sortable

    try:
        stamp = sortable(parse_iso(x.started))
    except FormatError:
        stamp = "19700101T000000000000Z"
    return f"{stamp}-{hashlib.sha256(x.id.encode('utf-8', 'replace')).hexdigest()[:12]}"


def call_key(cid: str) -> str:
    return f"{CALLS}{cid[0:4]}/{cid[4:6]}/{cid[6:8]}/{cid}.json"


def session_segment(session: str) -> str:
    from ..mirror import safe_segment

    return safe_segment(session)


class _Lru:
    """A bounded map (oldest entries dropped first); thread-safe."""

    def __init__(self, size: int = _CACHE_ENTRIES):
        self._d: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._mu = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._mu:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def update(self, items: Iterable[tuple[str, str]]) -> None:
        with self._mu:
            for k, v in items:
                self._d[k] = v
                self._d.move_to_end(k)
            while len(self._d) > self._size:
                self._d.popitem(last=False)


# -- parsing bodies ----------------------------------------------------------------------


def request_chain(provider: str, body: Any) -> tuple[dag.RequestParts, list[dag.Node]]:
    """The request cut into parts, and its chain of (unscrubbed) nodes."""
    parts = dag.split_request(provider, body)
    return parts, dag.chain([dag.canonical(m) for m in parts.chain])


# -- attribution -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribution:
    session: str
    agent: str | None
    how: str  # "header", "agent-id", "continuity", "new"


class Attributor:
    """Which session and agent a call belongs to, decided in this order:

    1. explicit ``x-tracebox-session`` / ``x-tracebox-agent`` headers;
    2. the agent's own session id: Claude Code's ``x-claude-code-session-id`` header or
       the ``session_id`` in Anthropic ``metadata.user_id`` (JSON, or the older
       ``…_session_<uuid>`` form); Codex's ``session_id`` / ``conversation_id`` header;
    3. conversation continuity: the request's message chain runs through the chain tip
       of an earlier request or response (an in-memory LRU map, node id → session);
    4. else a new session, named after the call (``new_id``).

    The agent name comes from ``x-tracebox-agent``, else the client (``claude-code`` for
    ``claude-cli`` user agents, ``codex`` for ``codex_*`` originators). Thread-safe.
    """

    def __init__(self, size: int = _CACHE_ENTRIES):
        self._tips = _Lru(size)

    def session_for(
        self, provider: str, request_body: bytes | Any, headers: Mapping[str, str]
    ) -> tuple[str, str | None]:
        """``(session, agent)`` for a request about to be forwarded (cheap when a header
        names the session: the body is then not even parsed)."""
        body = request_body
        if isinstance(body, bytes | bytearray):
            named = any(k.lower() in _SESSION_HEADERS and v for k, v in headers.items())
            body = None if named else loads(bytes(body), MAX_BODY_BYTES)
        a = self.attribute(provider, body, headers)
        return a.session, a.agent

    def attribute(
        self,
        provider: str,
        body: Any,
        headers: Mapping[str, str],
        chain: list[dag.Node] | None = None,
        new_id: str | None = None,
    ) -> Attribution:
        """Attribute one request; ``chain`` (its nodes) is computed here only when the
        headers and the agent's ids do not decide."""
        h = {k.lower(): v for k, v in headers.items()}
        agent = h.get("x-tracebox-agent") or _client_agent(h)
        session, how = h.get("x-tracebox-session"), "header"
        if not session:
            session, how = _agent_session(h, body), "agent-id"
        if not session:
            if chain is None:
                chain = request_chain(provider, body)[1]
            session, how = self._continued(chain), "continuity"
        if not session:
            if new_id is None:
                from ...coord.context import new_id as make_id

                new_id = make_id()
            session, how = new_id, "new"
        session = session_segment(session)
        if chain:
            self._tips.update([(chain[-1].id, session)])
        return Attribution(session, agent or None, how)

    def remember(self, node_id: str, session: str) -> None:
        """Calls continuing from ``node_id`` (e.g. a response's last node) go to ``session``."""
        self._tips.update([(node_id, session)])

    def _continued(self, chain: list[dag.Node]) -> str | None:
        for node in reversed(chain):
            s = self._tips.get(node.id)
            if s is not None:
                return s
        return None


def _client_agent(h: Mapping[str, str]) -> str | None:
    ua = h.get("user-agent", "").lower()
    if ua.startswith("claude-cli") or "x-claude-code-session-id" in h:
        return "claude-code"
    if h.get("originator", "").startswith("codex") or ua.startswith("codex"):
        return "codex"
    return None


_SESSION_HEADERS = (
    "x-tracebox-session",
    "x-claude-code-session-id",
    "session_id",
    "conversation_id",
)


def _agent_session(h: Mapping[str, str], body: Any) -> str | None:
    for name in _SESSION_HEADERS[1:]:
        if h.get(name):
            return h[name]
    meta = body.get("metadata") if isinstance(body, dict) else None
    user = meta.get("user_id") if isinstance(meta, dict) else None
    if not isinstance(user, str) or len(user) > 4096:
        return None
    if user.startswith("{"):
        try:
            doc = json.loads(user)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("session_id"), str):
            return doc["session_id"] or None
    m = re.search(r"_session_(" + _UUID.pattern + r")", user)
    return m.group(1) if m else None


# -- writing -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """What one shipping batch writes: new nodes, call records, and the raw→scrubbed
    node ids learned on the way (committed to the cache only once written)."""

    nodes: dict[str, bytes] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    records: list[tuple[str, str, bytes]] = field(default_factory=list)  # (id, session, json)
    tips: list[tuple[str, str]] = field(default_factory=list)  # (raw node id, session)


class CallStore:
    """Turns exchanges into bucket objects for one project (used by the spool's shipper)."""

    def __init__(
        self,
        project,
        *,
        scrub: bool = True,
        attributor: Attributor | None = None,
        scrubber=None,
    ) -> None:
        self.project = project
        self.store = project.store
        self.attributor = attributor or Attributor()
        self.scrub = scrub
        self._scrubber = scrubber
        self._ids = _Lru()  # raw node id → scrubbed node id, for nodes known to be stored
        self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="call-store")
        self.nodes_written = 0  # counters, for tests and benchmarks
        self.bytes_written = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _key(self, rel: str) -> str:
        return f"{self.project.name}/{rel}"

    def _clean(self, data: bytes) -> bytes:
        if not self.scrub:
            return data
        if self._scrubber is None:
            from ..mirror import make_scrubber

            self._scrubber = make_scrubber(self.project)
        return self._scrubber.scrub_bytes(data)

    # one batch ---------------------------------------------------------------------------
    def ship(self, exchanges: list[Exchange], on_reject: Callable[[BaseException], None]) -> None:
        """Write every exchange's objects; raises ``BucketError``/``OSError`` if the bucket
        failed (the caller retries the whole batch: writes are idempotent). An exchange
        that cannot be converted is passed to ``on_reject`` and skipped."""
        batch = _Batch()
        for x in exchanges:
            try:
                self._prepare(x, batch)
            except Exception as e:  # noqa: BLE001 - a hostile exchange must not stop the rest
                on_reject(e)
        self._write(batch)
        self._ids.update(batch.ids.items())
        for node_id, session in batch.tips:
            self.attributor.remember(node_id, session)

    def _node(self, batch: _Batch, raw: dag.Node, parent: str) -> str:
        """The id of ``raw`` scrubbed and re-parented under ``parent`` (a scrubbed id);
        queued for writing unless already stored."""
        known = self._ids.get(raw.id) or batch.ids.get(raw.id)
        if known is not None:
            return known
        _, content = dag.parse_node(raw.data)
        node = dag.make_node(parent, self._clean(content))
        batch.ids[raw.id] = node.id
        batch.nodes.setdefault(node.id, node.data)
        return node.id

    def _chain(self, batch: _Batch, nodes: list[dag.Node], parent: str = dag.ROOT) -> list[str]:
        out = []
        for raw in nodes:
            parent = self._node(batch, raw, parent)
            out.append(parent)
        return out

    def _root(self, batch: _Batch, value: Any) -> str | None:
        if value is None:
            return None
        return self._node(batch, dag.make_node(dag.ROOT, dag.canonical(value)), dag.ROOT)

    def _prepare(self, x: Exchange, batch: _Batch) -> None:
        cid = call_id(x)
        body = loads(x.request_body, MAX_BODY_BYTES)
        parts, raw_chain = request_chain(x.provider, body)
        headers = {**x.request_headers}
        if x.session:
            headers["x-tracebox-session"] = x.session
        if x.agent:
            headers["x-tracebox-agent"] = x.agent
        who = self.attributor.attribute(x.provider, body, headers, raw_chain, cid)
        chain_ids = self._chain(batch, raw_chain)
        request: dict[str, Any] = {
            "tip": chain_ids[-1] if chain_ids else None,
            "length": len(chain_ids),
            "tools": self._root(batch, parts.tools),
            "params": self._root(batch, parts.params or None),
            "bytes": len(x.request_body),
        }
        if body is None and x.request_body:
            request["raw"] = self._root(batch, _text(x.request_body))

        # a streamed reply is kept as the messages it carried, like a non-streamed one
        summary, response_obj = read_reply(x.provider, body, x.response_body, x.streamed, x.path)
        messages, meta = dag.response_messages(x.provider, response_obj)
        raw_response = dag.chain(
            [dag.canonical(m) for m in messages], parent=raw_chain[-1].id if raw_chain else dag.ROOT
        )
        response_ids = self._chain(batch, raw_response, request["tip"] or dag.ROOT)
        response: dict[str, Any] = {"nodes": response_ids, "bytes": len(x.response_body)}
        if x.response_body and (not messages or (x.streamed and x.error)):
            # unreadable, or a stream that broke: the body as it came is the evidence
            response["raw"] = self._root(batch, _text(x.response_body))
        if messages and meta:
            encoded = dag.canonical(meta)
            if len(encoded) > MAX_INLINE_META:
                response["meta_node"] = self._root(batch, meta)
            else:
                response["meta"] = dag.normalize(meta)
        tip = raw_response[-1].id if raw_response else (raw_chain[-1].id if raw_chain else None)
        if tip is not None:
            batch.tips.append((tip, who.session))

        record = {
            "v": RECORD_VERSION,
            "id": cid,
            "session": who.session,
            "agent": who.agent,
            "attribution": who.how,
            "provider": x.provider,
            "method": x.method,
            "path": x.path,
            "upstream": x.upstream,
            "started": x.started,
            "status": x.status,
            "error": x.error or summary.get("error"),
            "client_disconnected": x.client_disconnected,
            "streamed": x.streamed,
            "ttfb_ms": x.ttfb_ms,
            "total_ms": x.total_ms,
            "model": summary.get("model"),
            "usage": summary.get("usage"),
            "stop_reason": summary.get("stop_reason"),
            "request": request,
            "response": response,
            "request_headers": x.request_headers,
            "response_headers": x.response_headers,
            "extra": x.extra,
        }
        # null, false, 0 and empty values are left out: records stay small (one per call)
        data = self._clean(_encode(_lean(record)))
        batch.records.append((cid, who.session, data))

    def _create(self, rel: str, data: bytes) -> bool:
        """Create-if-absent; False when it already existed."""
        key = self._key(rel)
        try:
            self.store.create(key, data)
        except AlreadyExists:
            return False
        except NotSupported:  # no conditional writes (HF): the key is deterministic anyway
            self.store.put(key, data)
        return True

    def _write(self, batch: _Batch) -> None:
        def node(item: tuple[str, bytes]) -> int:
            return len(item[1]) if self._create(blob_key(item[0]), item[1]) else 0

        def record(item: tuple[str, str, bytes]) -> int:
            cid, session, data = item
            size = len(data)
            if not self._create(call_key(cid), data):
                # shipped before (a crash before the cursor moved): keep its session
                size = 0
                try:
                    old = json.loads(self.store.get(self._key(call_key(cid))).data)
                    session = session_segment(str(old.get("session") or session))
                except (NotFound, ValueError, AttributeError):
                    pass
            self._create(f"{BY_SESSION}{session}/{cid}", b"")
            return size

        written = list(self._pool.map(node, batch.nodes.items()))
        self.nodes_written += sum(1 for n in written if n)
        sizes = list(self._pool.map(record, batch.records))
        self.bytes_written += sum(written) + sum(sizes)


def _lean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lean(v) for k, v in value.items() if v not in (None, False, 0, "", [], {})}
    return value


def _text(body: bytes) -> str:
    """A body that is not JSON, kept as text (invalid UTF-8 replaced), bounded."""
    return body[:MAX_BODY_BYTES].decode("utf-8", "replace")


# -- reading -----------------------------------------------------------------------------


def list_call_sessions(project) -> list[dict]:
    """Every session with captured calls: ``session``, ``calls``, ``first``, ``last`` (call
    ids, time-ordered) and a ``fingerprint`` that changes when a call is added."""
    prefix = f"{project.name}/{BY_SESSION}"
    found: dict[str, list[str]] = {}
    for meta in project.store.list(prefix):
        rest = meta.key[len(prefix) :]
        session, sep, cid = rest.partition("/")
        if sep and session and cid and "/" not in cid:
            found.setdefault(session, []).append(cid)
    out = []
    for session, ids in sorted(found.items()):
        ids.sort()
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        out.append(
            {
                "session": session,
                "calls": len(ids),
                "first": ids[0],
                "last": ids[-1],
                "fingerprint": f"{len(ids)}-{digest}",
            }
        )
    return out


def load_calls(project, session: str) -> list[dict]:
    """The call records of ``session`` in time order (missing or damaged ones skipped)."""
    from ...coord.context import fetch_many

    seg = session_segment(session)
    prefix = f"{project.name}/{BY_SESSION}{seg}/"
    ids = sorted(m.key[len(prefix) :] for m in project.store.list(prefix))
    ids = [i for i in ids if _ID.fullmatch(i)]
    docs = fetch_many(project.ctx, [f"{project.name}/{call_key(i)}" for i in ids])
    return [d for d in docs if d is not None]


class _Nodes:
    """Node contents fetched from the bucket (concurrently, cached, bounded per node)."""

    def __init__(self, project):
        self.p = project
        self.cache: dict[str, tuple[str, Any]] = {}

    def fetch(self, ids: Iterable[str]) -> None:
        todo = [i for i in dict.fromkeys(ids) if i and i not in self.cache]
        if not todo:
            return

        def one(node_id: str) -> tuple[str, tuple[str, Any] | None]:
            try:
                data = self.p.store.get(f"{self.p.name}/{blob_key(node_id)}").data
                parent, content = dag.parse_node(data)
                return node_id, (parent, _decode(content))
            except (NotFound, ValueError, msgspec.DecodeError):
                return node_id, None

        with ThreadPoolExecutor(min(16, len(todo))) as pool:
            for node_id, got in pool.map(one, todo):
                if got is not None:
                    self.cache[node_id] = got

    def get(self, node_id: str) -> tuple[str, Any] | None:
        if node_id not in self.cache:
            self.fetch([node_id])
        return self.cache.get(node_id)


def calls_to_sessions(project, session_id: str) -> Session:
    """The captured calls of ``session_id`` as one trace-model Session (harness "proxy").

    Steps follow the conversation: for each call, the messages of its request not seen
    in an earlier call (walking the node chain back from its tip), then its response
    messages as agent steps — the first carrying the call's usage, model, stop reason
    and the call id as ``response_id`` — or, for a failed call, an agent step with a
    ``StepError``. ``extra`` holds per-call facts (status, timings, node ids).
    """
    records = load_calls(project, session_id)
    nodes = _Nodes(project)
    nodes.fetch(
        i
        for r in records
        for i in [_get(r, "request", "tip"), *(_get(r, "response", "nodes") or [])]
        if isinstance(i, str)
    )
    s = Session(id=session_segment(session_id), harness="proxy", extra={"calls": []})
    seen: set[str] = set()
    for r in records:
        provider = str(r.get("provider") or "other")
        when = r.get("started") if isinstance(r.get("started"), str) else None
        if s.started is None:
            s.started = when
        s.agent = s.agent or r.get("agent")
        model = r.get("model") if isinstance(r.get("model"), str) else None
        if model and model not in s.models:
            s.models.append(model)
        for node_id in _new_chain(nodes, _get(r, "request", "tip"), seen):
            _add(s, provider, nodes.get(node_id)[1], when, node_id)
        response = [i for i in (_get(r, "response", "nodes") or []) if isinstance(i, str)]
        first = len(s.steps)
        for node_id in response:
            got = nodes.get(node_id)
            if got is not None and node_id not in seen:
                seen.add(node_id)
                _add(s, provider, got[1], when, node_id, source="agent")
        status, error = r.get("status"), r.get("error")
        failed = error or not isinstance(status, int) or not 200 <= status < 300
        usage = _usage(r.get("usage"))
        if len(s.steps) == first and (failed or usage is not None):
            # a failed call, or a response identical to one already shown: one step
            # carries its error and usage
            s.steps.append(Step(index=len(s.steps), source="agent", timestamp=when))
            if failed:
                s.steps[-1].error = StepError(
                    kind="api_error" if isinstance(status, int) else str(error or "error"),
                    message=_error_text(nodes, r),
                    status=status if isinstance(status, int) else None,
                )
        if len(s.steps) > first:
            st = s.steps[first]
            st.usage = usage
            st.model, st.response_id = model, str(r.get("id"))
            st.stop_reason = r.get("stop_reason") if isinstance(r.get("stop_reason"), str) else None
        s.ended = when
        s.extra["calls"].append(
            {
                k: r.get(k)
                for k in ("id", "status", "error", "ttfb_ms", "total_ms", "streamed", "provider")
            }
        )
    return s


def _get(doc: dict, *path: str) -> Any:
    for p in path:
        doc = doc.get(p) if isinstance(doc, dict) else None
    return doc


def _new_chain(nodes: _Nodes, tip: Any, seen: set[str]) -> list[str]:
    """Node ids from the first not yet ``seen`` up to ``tip`` (oldest first)."""
    out: list[str] = []
    node_id = tip if isinstance(tip, str) else None
    while node_id and node_id not in seen and len(out) < 1_000_000:
        got = nodes.get(node_id)
        if got is None:
            break
        seen.add(node_id)
        out.append(node_id)
        node_id = got[0]
    out.reverse()
    return out


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    try:
        usage = msgspec.convert(u, Usage)
    except msgspec.ValidationError:
        return None
    return usage if usage != Usage() else None


def _error_text(nodes: _Nodes, r: dict) -> str:
    raw = _get(r, "response", "raw")
    got = nodes.get(raw) if isinstance(raw, str) else None
    text = got[1] if got is not None and isinstance(got[1], str) else ""
    return " ".join(filter(None, [str(r.get("error") or ""), text]))[:MAX_RAW_CHARS]


# -- messages → steps --------------------------------------------------------------------


def _add(
    s: Session, provider: str, msg: Any, when: str | None, node_id: str, source: str | None = None
) -> None:
    role, parts, extra = _message_parts(provider, msg)
    if source is None:
        if role in ("system", "developer"):
            source = "system"
        elif role in ("assistant", "model"):
            source = "agent"
        elif parts and all(isinstance(p, ToolResult) for p in parts):
            source = "tool"
        else:
            source = "user"
    s.steps.append(
        Step(
            index=len(s.steps),
            source=source,  # type: ignore[arg-type]
            id=node_id,
            timestamp=when,
            parts=parts,
            extra=extra or None,
        )
    )


def _message_parts(provider: str, msg: Any) -> tuple[str, list[Part], dict]:
    """(role, parts, unmapped fields) of one message or input item, any provider."""
    if not isinstance(msg, dict):
        return "user", [Text(text=msg)] if isinstance(msg, str) else [], {"raw": msg}
    role = str(msg.get("role") or "")
    parts: list[Part] = []
    extra: dict[str, Any] = {}
    kind = msg.get("type")
    if provider == "openai-responses" and kind not in (None, "message"):
        parts += _blocks([msg], extra)
        role = "assistant" if kind in ("function_call", "reasoning", "custom_tool_call") else ""
        return role or "tool", parts, extra
    content = msg.get("content") if "content" in msg else msg.get("parts")
    if isinstance(content, str):
        parts.append(Text(text=content))
    elif isinstance(content, list):
        parts += _blocks(content, extra)
    for tc in msg.get("tool_calls") or []:  # OpenAI chat, Ollama
        fn = tc.get("function") if isinstance(tc, dict) else None
        if isinstance(fn, dict):
            parts.append(
                ToolCall(
                    id=str(tc.get("id") or f"{fn.get('name')}-{len(parts)}"),
                    name=str(fn.get("name") or ""),
                    arguments=_args(fn.get("arguments")),
                )
            )
    if role == "tool":
        output = "".join(p.text for p in parts if isinstance(p, Text))
        call = msg.get("tool_call_id") or msg.get("tool_name") or msg.get("name") or ""
        parts = [ToolResult(call_id=str(call), output=output)]
    if isinstance(msg.get("thinking"), str) and msg["thinking"]:  # Ollama
        parts.insert(0, Reasoning(text=msg["thinking"]))
    return role, parts, extra


def _blocks(blocks: list, extra: dict) -> list[Part]:
    out: list[Part] = []
    for b in blocks:
        if isinstance(b, str):
            out.append(Text(text=b))
            continue
        if not isinstance(b, dict):
            continue
        t = b.get("type")
        if t in ("text", "input_text", "output_text") or (t is None and "text" in b):
            if b.get("thought") is True:  # Gemini thought summaries
                out.append(Reasoning(text=str(b.get("text") or "")))
            else:
                out.append(Text(text=str(b.get("text") or "")))
        elif t == "thinking":
            out.append(Reasoning(text=str(b.get("thinking") or "")))
        elif t == "redacted_thinking":
            out.append(Reasoning(redacted=True))
        elif t == "reasoning":  # OpenAI Responses
            summary = " ".join(
                str(x.get("text") or "") for x in b.get("summary") or [] if isinstance(x, dict)
            )
            out.append(Reasoning(text=summary, redacted=not summary))
        elif t in ("tool_use", "server_tool_use"):
            out.append(
                ToolCall(id=str(b.get("id")), name=str(b.get("name")), arguments=b.get("input"))
            )
        elif t in ("function_call", "custom_tool_call"):
            out.append(
                ToolCall(
                    id=str(b.get("call_id") or b.get("id")),
                    name=str(b.get("name")),
                    arguments=_args(b.get("arguments", b.get("input"))),
                )
            )
        elif t == "tool_result":
            out.append(
                ToolResult(
                    call_id=str(b.get("tool_use_id")),
                    output=_output(b.get("content")),
                    is_error=b.get("is_error") if isinstance(b.get("is_error"), bool) else None,
                )
            )
        elif t in ("function_call_output", "custom_tool_call_output"):
            out.append(ToolResult(call_id=str(b.get("call_id")), output=_output(b.get("output"))))
        elif isinstance(b.get("functionCall"), dict):  # Gemini
            fc = b["functionCall"]
            out.append(
                ToolCall(
                    id=str(fc.get("id") or fc.get("name")),
                    name=str(fc.get("name")),
                    arguments=fc.get("args"),
                )
            )
        elif isinstance(b.get("functionResponse"), dict):
            fr = b["functionResponse"]
            out.append(
                ToolResult(
                    call_id=str(fr.get("id") or fr.get("name")), output=_output(fr.get("response"))
                )
            )
        elif (
            t in ("image", "document", "image_url", "input_image", "input_file")
            or "inlineData" in b
        ):
            out.append(_attachment(b))
        else:
            extra.setdefault("unmapped", []).append(b)
    return out


def _attachment(b: dict) -> Attachment:
    src = b.get("source") or b.get("inlineData") or b.get("image_url") or {}
    src = src if isinstance(src, dict) else {"url": src}
    data = src.get("data")
    ref = src.get("url") or b.get("image_url") or ""
    if isinstance(data, str):
        ref = "sha256:" + hashlib.sha256(data.encode()).hexdigest()
    return Attachment(
        media_type=str(src.get("media_type") or src.get("mimeType") or ""),
        ref=ref if isinstance(ref, str) else "",
        size=len(data) * 3 // 4 if isinstance(data, str) else None,
    )


def _args(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _output(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(
            str(b.get("text") or b.get("output") or "") if isinstance(b, dict) else str(b)
            for b in value
        )
    if value is None:
        return ""
    return _encode(value).decode()
