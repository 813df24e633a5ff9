"""The warehouse tables: their columns (pyarrow schemas, each column documented) and the
rows one source object gives them.

Sources and what they give (each row's ``origin`` names the source unit it came from,
relative to the project; a re-read source replaces all rows of its origin):

===================  ===================================  ==================================
source unit          origin                               rows
===================  ===================================  ==================================
mirrored session     ``sessions/<harness>/<id>``           sessions, steps, tool_calls
captured session     ``calls-by-session/<id>``             sessions, steps, tool_calls
proxy call records   ``calls/<yyyy>/<mm>/<dd>``            calls (one per record)
events               ``events/<yyyy>/<mm>/<dd>``           events (one per event)
harness run          ``harness/<run>``                     harness_results, observations
===================  ===================================  ==================================

Partitions (``date``, not stored in the files — it is the ``date=`` folder): a session's
rows (with its subagents') go under the UTC date it started (else its first timestamped
step, else 1970-01-01); calls and events under their day folder; a run's rows under the
date in its run id. Usage columns follow ``index.sync`` exactly (``step_facts``,
``extra_usage``), so sums here equal ``tracebox stats``.

Pure: trace-model objects and decoded JSON in, row dicts out (each with its ``date``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa

from ..index.sync import extra_usage, step_facts, uid, walk
from ..observe.rules import error_line, fingerprint
from ..trace import facts
from ..trace.model import Session, ToolCall, Usage

NO_DATE = "1970-01-01"  # the partition of rows whose time is unknown
MAX_ARGUMENTS = 4096  # characters of a tool call's JSON arguments kept
MAX_COMMAND = 2000
MAX_ERROR = 500
MAX_DATA = 65536  # characters of an event's / observation's JSON kept

S, I32, I64, F64, B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
TS = pa.timestamp("us", tz="UTC")
LS, LI = pa.list_(pa.string()), pa.list_(pa.int32())

_ORIGIN = ("origin", S, "the source unit the row came from (see docs/warehouse.md)")
_USAGE = [
    ("input", I64, "input tokens, excluding cache reads and writes"),
    ("output", I64, "output tokens (reasoning included)"),
    ("cache_read", I64, "tokens read from the prompt cache"),
    ("cache_write", I64, "tokens written to the prompt cache"),
    ("reasoning", I64, "reasoning tokens (a part of output)"),
]

# table -> (what one row is, [(column, type, meaning)])
TABLES: dict[str, tuple[str, list[tuple[str, pa.DataType, str]]]] = {
    "sessions": (
        "one row per session and per subagent session (mirrored transcripts and proxy captures)",
        [
            _ORIGIN,
            ("uid", S, "harness:id, or harness:parent/id for a subagent (unique)"),
            ("root", S, "uid of the top-level session (itself for a top-level session)"),
            ("session_id", S, "the agent's own session id"),
            ("harness", S, "claude-code, codex, pi, ..., or proxy (captured calls)"),
            ("parent_session", S, "the parent's session id (subagents only)"),
            ("parent_tool_call_id", S, "the parent's tool call that started it"),
            ("agent", S, "agent name (subagent type, tracebox agent)"),
            ("agent_version", S, "the agent program's version"),
            ("title", S, "title, when the agent records one"),
            ("models", LS, "models in first-use order"),
            ("model", S, "the first model (steps without a model count under it)"),
            ("cwd", S, "working directory"),
            ("git_branch", S, "git branch"),
            ("git_commit", S, "git commit"),
            ("started", TS, "first activity (UTC)"),
            ("ended", TS, "last activity (UTC)"),
            ("steps", I32, "steps of this session (not its subagents)"),
            ("tool_calls", I32, "distinct tool calls"),
            ("tool_errors", I32, "distinct tool calls with an error result"),
            ("api_errors", I32, "steps with an API/agent error"),
            ("compactions", I32, "context compactions"),
            *[
                (
                    f"extra_{n}",
                    t,
                    f"{d}, of model calls that are not a step (compaction "
                    "summaries; session totals when no step has usage)",
                )
                for n, t, d in _USAGE
            ],
        ],
    ),
    "steps": (
        "one row per step of a session",
        [
            _ORIGIN,
            ("session_uid", S, "sessions.uid"),
            ("session_id", S, "sessions.session_id"),
            ("harness", S, "sessions.harness"),
            ("idx", I32, "position in the session (0-based)"),
            ("source", S, "user, agent, system or tool"),
            ("ts", TS, "when (UTC)"),
            ("model", S, "the model that produced it (agent steps)"),
            ("response_id", S, "the model response it belongs to"),
            *[
                (
                    n,
                    t,
                    f"{d}; set on the first step of each model response only, so sums "
                    "count each response once",
                )
                for n, t, d in _USAGE
            ],
            ("tool_calls", I32, "tool calls first seen in this step"),
            ("tool_errors", I32, "tool calls whose first error result is in this step"),
            ("error", S, "API/agent error kind (api_error, aborted, timeout, ...)"),
            ("error_status", I32, "its HTTP status, when known"),
            ("stop_reason", S, "why the model stopped"),
            ("copied", B, "context copied into or produced by a compaction summary"),
        ],
    ),
    "tool_calls": (
        "one row per tool call, with its result",
        [
            _ORIGIN,
            ("session_uid", S, "sessions.uid"),
            ("session_id", S, "sessions.session_id"),
            ("harness", S, "sessions.harness"),
            ("call_id", S, "the tool call's id"),
            ("name", S, "tool name (Bash, exec_command, Edit, ...)"),
            ("step_idx", I32, "steps.idx of the call"),
            ("ts", TS, "when it was called (UTC)"),
            ("command", S, f"the shell command of a shell tool (at most {MAX_COMMAND} chars)"),
            ("arguments", S, f"the arguments as JSON, cut at {MAX_ARGUMENTS} chars"),
            ("result_step_idx", I32, "steps.idx of its result (null: no result)"),
            ("is_error", B, "the result says it is an error (null: not said)"),
            ("exit_code", I32, "exit code, when known"),
            ("failed", B, "it failed (exit code, else is_error; user declines excluded)"),
            ("output_chars", I64, "length of the result's output"),
            ("error", S, f"the real error line of a failure (at most {MAX_ERROR} chars)"),
            ("error_fingerprint", S, "the failure's fingerprint: equal to the observer's for it"),
        ],
    ),
    "calls": (
        "one row per model call captured by the proxy",
        [
            _ORIGIN,
            ("call_id", S, "the call id (sortable time + random)"),
            ("session", S, "the session it was attributed to (sessions.session_id, harness proxy)"),
            ("agent", S, "agent name"),
            ("attribution", S, "how the session was chosen: header, agent-id, continuity, new"),
            ("provider", S, "anthropic, openai-chat, openai-responses, ollama, gemini, other"),
            ("method", S, "HTTP method"),
            ("path", S, "request path"),
            ("upstream", S, "the upstream base URL"),
            ("started", TS, "request arrival (UTC)"),
            ("status", I32, "HTTP status (null: no response)"),
            ("error", S, "transport error (upstream_timeout, stream_error: ..., ...)"),
            ("client_disconnected", B, "the client went away"),
            ("streamed", B, "a streamed reply"),
            ("ttfb_ms", F64, "time to the first upstream byte"),
            ("total_ms", F64, "total time"),
            ("model", S, "the model"),
            ("stop_reason", S, "why the model stopped"),
            *_USAGE,
            ("request_bytes", I64, "request body size"),
            ("response_bytes", I64, "response body size"),
            ("request_messages", I32, "messages in the request's chain"),
        ],
    ),
    "events": (
        "one row per coordination event (claims, handoffs, messages, memory, ...)",
        [
            _ORIGIN,
            ("id", S, "event id (sortable time + random)"),
            ("ts", TS, "when (UTC)"),
            ("agent", S, "who acted"),
            ("type", S, "event type (claim.acquire, step.complete, message.send, ...)"),
            ("step", S, "the step it concerns"),
            ("data", S, f"the event's data as JSON (cut at {MAX_DATA} chars)"),
        ],
    ),
    "harness_results": (
        "one row per variant per generation of a harness run",
        [
            _ORIGIN,
            ("run", S, "run id (<name>-<UTC time>)"),
            ("name", S, "the run's configured name"),
            ("run_started", TS, "when the run started (from its id)"),
            ("generation", I32, "generation (1-based)"),
            ("variant", S, "variant name"),
            ("params", S, "the variant's strategy parameters as JSON"),
            ("session", S, "the session its calls were captured under (calls.session)"),
            ("agent", S, "the agent name it acted as"),
            ("solved", B, "the validator passed (and no live rule stopped it)"),
            ("stopped", S, "the live rule that stopped it, if any"),
            ("agent_exit", I32, "the agent's exit code"),
            ("validator_exit", I32, "the validator's exit code"),
            ("calls", I32, "model calls it made"),
            ("changed_files", LS, "files its diff changed"),
            ("seconds", F64, "wall time"),
            ("use_observations", B, "the run gave each generation the observations"),
        ],
    ),
    "observations": (
        "one row per observation entry known after each generation of a harness run",
        [
            _ORIGIN,
            ("run", S, "run id"),
            ("run_started", TS, "when the run started"),
            ("generation", I32, "after this generation (entries accumulate over generations)"),
            ("fingerprint", S, "the finding's fingerprint (the same across runs)"),
            ("priority", S, "important, possible or informational"),
            ("kind", S, "error, failed_fix, loop, validator_failed, stopped, ..."),
            ("title", S, "one line"),
            ("count", I64, "times seen so far in the run"),
            ("sessions", I64, "sessions it was seen in"),
            ("first_seen", TS, "first evidence (UTC)"),
            ("last_seen", TS, "last evidence (UTC)"),
            ("generations", LI, "generations it was seen in"),
            ("evidence", S, "evidence links as JSON: [{session, step, quote, at}]"),
            ("data", S, "the observation's data as JSON"),
        ],
    ),
}

SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([pa.field(c, t) for c, t, _ in cols]) for name, (_, cols) in TABLES.items()
}

Rows = dict[str, list[dict]]  # table -> rows (each with its "date" partition)


# -- values -----------------------------------------------------------------------------


def ts(value: Any) -> datetime | None:
    """A UTC datetime from an ISO 8601 text, else None (bad input is not an error)."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def day(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d") if dt is not None else NO_DATE


def _int(v: Any, lo: int = -(1 << 63), hi: int = (1 << 63) - 1) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi else None


def _i32(v: Any) -> int | None:
    return _int(v, -(1 << 31), (1 << 31) - 1)


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _str(v: Any, limit: int = 4096) -> str | None:
    return v[:limit] if isinstance(v, str) else None


def _json(v: Any, limit: int) -> str | None:
    if v is None:
        return None
    try:
        text = msgspec.json.encode(v).decode()
    except (TypeError, ValueError, OverflowError):
        text = str(v)
    return text[:limit]


def _usage(u: Usage | dict | None, prefix: str = "") -> dict:
    if isinstance(u, Usage):
        u = msgspec.structs.asdict(u)
    if not isinstance(u, dict):
        return {}
    return {
        f"{prefix}{k}": _int(u.get(k))
        for k in ("input", "output", "cache_read", "cache_write", "reasoning")
    }


# -- sessions ---------------------------------------------------------------------------


def session_date(session: Session) -> str:
    when = ts(session.started)
    if when is None:
        when = next((t for st in session.steps if (t := ts(st.timestamp))), None)
    return day(when)


def session_rows(session: Session, origin: str) -> Rows:
    """Rows of one session and its subagents: sessions, steps, tool_calls."""
    date = session_date(session)
    root = uid(session, None)
    out: Rows = {"sessions": [], "steps": [], "tool_calls": []}
    for s, parent in walk(session):
        key = uid(s, parent)
        per_step = step_facts(s)
        extra = Usage()
        for _, _, u in extra_usage(s):
            extra = extra + u
        base = {
            "date": date,
            "origin": origin,
            "session_uid": key,
            "session_id": s.id,
            "harness": s.harness,
        }
        out["sessions"].append(
            {
                "date": date,
                "origin": origin,
                "uid": key,
                "root": root,
                "session_id": s.id,
                "harness": s.harness,
                "parent_session": s.parent_session or parent,
                "parent_tool_call_id": s.parent_tool_call_id,
                "agent": s.agent,
                "agent_version": s.agent_version,
                "title": _str(s.title, 1000),
                "models": list(s.models),
                "model": s.models[0] if s.models else None,
                "cwd": s.cwd,
                "git_branch": s.git_branch,
                "git_commit": s.git_commit,
                "started": ts(s.started),
                "ended": ts(s.ended),
                "steps": len(s.steps),
                "tool_calls": sum(f.tool_calls for f in per_step),
                "tool_errors": sum(f.tool_errors for f in per_step),
                "api_errors": sum(1 for st in s.steps if st.error is not None),
                "compactions": len(s.compactions),
                **_usage(extra, "extra_"),
            }
        )
        for st, f in zip(s.steps, per_step, strict=True):
            out["steps"].append(
                {
                    **base,
                    "idx": f.idx,
                    "source": st.source,
                    "ts": ts(st.timestamp),
                    "model": st.model,
                    "response_id": st.response_id,
                    **_usage(f.usage),
                    "tool_calls": f.tool_calls,
                    "tool_errors": f.tool_errors,
                    "error": st.error.kind if st.error is not None else None,
                    "error_status": _i32(st.error.status) if st.error is not None else None,
                    "stop_reason": st.stop_reason,
                    "copied": st.copied,
                }
            )
        out["tool_calls"] += _tool_calls(s, base)
    return out


def _tool_calls(s: Session, base: dict) -> list[dict]:
    results = facts.results(s)
    rows = []
    seen: set[str] = set()
    for st in s.steps:
        for p in st.parts:
            if not isinstance(p, ToolCall) or p.id in seen:
                continue
            seen.add(p.id)
            cmd = facts.command_of(p)
            row = {
                **base,
                "call_id": p.id,
                "name": p.name,
                "step_idx": st.index,
                "ts": ts(st.timestamp),
                "command": cmd[:MAX_COMMAND] if cmd else None,
                "arguments": _json(p.arguments, MAX_ARGUMENTS),
            }
            got = results.get(p.id)
            if got is not None:
                step, r = got
                failed = facts.failed(r)
                row |= {
                    "result_step_idx": step,
                    "is_error": r.is_error,
                    "exit_code": _i32(r.exit_code),
                    "failed": failed,
                    "output_chars": len(r.output),
                }
                if failed:
                    err = error_line(r.output, cmd, r.exit_code)
                    row["error"] = err[:MAX_ERROR]
                    row["error_fingerprint"] = fingerprint("error", cmd or p.name, err)
            rows.append(row)
    return rows


# -- calls and events -------------------------------------------------------------------


def call_row(record: dict, origin: str, date: str) -> dict:
    """One proxy call record (docs/proxy-format.md) as a ``calls`` row."""
    req = record.get("request") if isinstance(record.get("request"), dict) else {}
    resp = record.get("response") if isinstance(record.get("response"), dict) else {}
    return {
        "date": date,
        "origin": origin,
        **{
            k: _str(record.get(k))
            for k in ("session", "agent", "attribution", "provider", "method", "path")
        },
        "call_id": _str(record.get("id")),
        "upstream": _str(record.get("upstream")),
        "started": ts(record.get("started")),
        "status": _i32(record.get("status")),
        "error": _str(record.get("error"), MAX_ERROR),
        "client_disconnected": bool(record.get("client_disconnected")),
        "streamed": bool(record.get("streamed")),
        "ttfb_ms": _float(record.get("ttfb_ms")),
        "total_ms": _float(record.get("total_ms")),
        "model": _str(record.get("model")),
        "stop_reason": _str(record.get("stop_reason")),
        **_usage(record.get("usage")),
        "request_bytes": _int(req.get("bytes")),
        "response_bytes": _int(resp.get("bytes")),
        "request_messages": _i32(req.get("length")),
    }


def event_row(ev: dict, origin: str, date: str) -> dict:
    """One event (docs/format.md) as an ``events`` row."""
    return {
        "date": date,
        "origin": origin,
        "id": _str(ev.get("id")),
        "ts": ts(ev.get("ts")),
        "agent": _str(ev.get("agent")),
        "type": _str(ev.get("type")),
        "step": _str(ev.get("step")),
        "data": _json(ev.get("data"), MAX_DATA),
    }


# -- harness runs -----------------------------------------------------------------------


def run_started(run_id: str) -> datetime | None:
    """The time in a run id ``<name>-YYYYMMDDTHHMMSS``."""
    try:
        return datetime.strptime(run_id[-15:], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def harness_rows(run: dict, observations: dict[int, list[dict]], origin: str) -> Rows:
    """A harness run (``harness.report.load``: run.json with each generation's summary)
    and the observation entries after each generation: harness_results, observations."""
    rid = str(run.get("run") or origin.rsplit("/", 1)[-1])
    started = run_started(rid)
    date = day(started)
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    head = {"date": date, "origin": origin, "run": rid}
    out: Rows = {"harness_results": [], "observations": []}
    for g in run.get("generations") or []:
        if not isinstance(g, dict):
            continue
        for r in g.get("results") or []:
            if not isinstance(r, dict):
                continue
            stopped = r.get("stopped")
            files = r.get("changed_files")
            out["harness_results"].append(
                {
                    **head,
                    "name": _str(config.get("name")),
                    "run_started": started,
                    "generation": _i32(r.get("generation", g.get("generation"))),
                    "variant": _str(r.get("variant")),
                    "params": _json(r.get("params"), MAX_DATA),
                    "session": _str(r.get("session")),
                    "agent": _str(r.get("agent")),
                    "solved": bool(r.get("solved")),
                    "stopped": str(stopped)[:MAX_ERROR] if stopped else None,
                    "agent_exit": _i32(r.get("agent_exit")),
                    "validator_exit": _i32(r.get("validator_exit")),
                    "calls": _i32(r.get("calls")),
                    "changed_files": [f for f in files if isinstance(f, str)][:1000]
                    if isinstance(files, list)
                    else None,
                    "seconds": _float(r.get("seconds")),
                    "use_observations": bool(run.get("use_observations", True)),
                }
            )
    for gen, entries in sorted(observations.items()):
        for e in entries:
            gens = e.get("generations")
            out["observations"].append(
                {
                    **head,
                    "run_started": started,
                    "generation": gen,
                    "fingerprint": _str(e.get("fingerprint")),
                    "priority": _str(e.get("priority")),
                    "kind": _str(e.get("kind")),
                    "title": _str(e.get("title"), 1000),
                    "count": _int(e.get("count")),
                    "sessions": _int(e.get("sessions")),
                    "first_seen": ts(e.get("first_seen")),
                    "last_seen": ts(e.get("last_seen")),
                    "generations": [_i32(x) for x in gens if _i32(x) is not None]
                    if isinstance(gens, list)
                    else None,
                    "evidence": _json(e.get("evidence"), MAX_DATA),
                    "data": _json(e.get("data"), MAX_DATA),
                }
            )
    return out


def to_arrow(table: str, rows: list[dict]) -> pa.Table:
    """Rows of ``table`` as an Arrow table of its schema (the ``date`` key is left out)."""
    return pa.Table.from_pylist(rows, schema=SCHEMAS[table])


def conform(t: pa.Table, table: str) -> pa.Table:
    """``t`` (read from an older file) in the current schema: missing columns as nulls."""
    schema = SCHEMAS[table]
    if t.schema.equals(schema):
        return t
    cols = [
        t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(len(t), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)
