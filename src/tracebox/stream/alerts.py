"""Live alert rules: rules as data, one incremental engine, actions, sources, and Flink SQL.

A rule file is TOML: ``[[alert]]`` tables, each a small SQL-like query over the event
stream (docs/alerts.md)::

    [[alert]]
    name = "error-burst"
    where = { type = "call.error", status = { ge = 500 } }   # event type + field predicates
    group_by = ["session"]                                   # one state per group
    window = "1m"                                            # sliding, in event time
    having = "count(*) >= 5"                                 # count | sum | distinct | repeated | silence
    then = ["stdout", "http://127.0.0.1:9000/hook"]         # stdout | webhook URL | stop
    message = "{session}: {value:.0f} failed calls in a minute"

    [[alert]]
    use = "same_failing_command"                             # a preset: the harness's rules
    threshold = 3
    then = ["stdout", "stop"]

A harness file's ``[rules]`` table is a rule file too (each key is a preset). ``load``
validates a file into ``Rule``s; every problem is one ``ConfigError`` line
``FILE:RULE: what is wrong``.

``Engine(rules, now)`` evaluates them incrementally: ``process(event, t)`` per event,
``tick(t)`` for the absence (``silence``) rules, each returning the ``Firing``s. State is
kept per rule and group (at most ``MAX_GROUPS`` groups, least recently seen evicted), and
each group holds only what its aggregate needs (bounded by ``MAX_ROWS``). A rule fires when
its ``having`` holds over the group's rows in the window since the rule last fired for
that group; firing starts the group over (the next firing needs a fresh threshold's
worth). ``silence`` fires once per gap, ``N`` seconds after the group's last event.
Times are seconds; event times come from the event's ``time`` (or a log event's ``ts``),
truncated to milliseconds as Flink's rowtime is.

``harness.live.Watch`` runs the harness's four rules through this engine (``preset``).

Actions (``Actions``): ``stdout`` (one line per firing, or JSON lines), a webhook (POST
JSON, scrubbed, from a background thread; failures are warnings), and ``stop`` (a stop
request for the firing's session in the bucket — ``request_stop`` — that a harness run
polls via ``stop_requested``, plus a message to the agent).

Sources (``proxy_events``, ``log_events``, ``file_events``, ``kafka_events``) feed
``run``, which ticks the engine between events. ``flink_sql`` writes the same rules as
Flink SQL: a filesystem JSON source with a watermark and one ``INSERT`` per rule
(``MATCH_RECOGNIZE`` for thresholds, a ``SESSION`` window for silence).
"""

from __future__ import annotations

import json
import math
import operator
import queue
import re
import threading
import time
import tomllib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from ..config import parse_duration
from ..errors import ConfigError, NotFound, TraceboxError, UsageError

MAX_GROUPS = 10_000  # groups kept per rule (least recently seen evicted)
MAX_ROWS = 4096  # rows kept per group for windowed sums (oldest dropped)
MAX_SEEN = 65_536  # values remembered per group by count(distinct …)
MAX_EACH = 256  # items of an `each` list looked at per event
TICK_S = 0.2  # how often a live run evaluates silence rules
AGGS = ("count", "sum", "distinct", "repeated", "silence")
OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "exists", "contains", "prefix")
# the event types tracebox's own sources emit (docs/stream.md "Types", docs/format.md §3.7);
# a rule may name others (``tracebox event TYPE``), but one a letter or two away from
# these is almost certainly a typo: ``warnings`` says so
EVENT_TYPES = (
    "project.init", "agent.heartbeat", "claim.acquire", "claim.takeover", "claim.renew",
    "claim.release", "step.complete", "step.reopen", "message.send", "message.ack",
    "memory.set", "memory.delete", "artifact.upload", "session.mirrored",
    "import.tracecraft", "call.start", "call.first_token", "call.tool_call", "call.end",
    "call.error", "tool.call", "tool.result", "step.error",
)  # fmt: skip
EVENT_FAMILIES = ("capsule.", "harness.")
ACTIONS = ("stdout", "stop")  # and webhook URLs
RULE_KEYS = {"name", "where", "each", "group_by", "window", "having", "then", "message"}
PRESET_KEYS = {"name", "use", "threshold", "group_by", "then", "message"}

_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_FIELD = re.compile(rf"(?:(squash)\(\s*({_PATH})\s*\)|({_PATH}))")
_HAVING = re.compile(
    r"\s*(?:(?P<agg>count|sum|repeated)\s*\((?P<arg>[^()]*)\)|(?P<silence>silence))"
    r"\s*(?P<op>>=|>)\s*(?P<num>\S+)\s*",
    re.I,
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?::([^{}]*))?\}")
OUTPUT_EVENT = "agent.output"  # the event the harness feeds for a chunk of an agent's output


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A path into an event (``usage.input``), or into the current ``each`` item."""

    path: str
    parts: tuple[str, ...]
    in_item: bool = False
    squash: bool = False  # whitespace collapsed, ends trimmed

    @property
    def label(self) -> str:
        return f"squash({self.path})" if self.squash else self.path

    @property
    def leaf(self) -> str:
        return self.parts[-1]


@dataclass(frozen=True)
class Pred:
    field: Field
    op: str
    value: Any


@dataclass(frozen=True)
class Rule:
    name: str
    agg: str  # one of AGGS
    op: str  # ">=" or ">"
    threshold: float  # seconds for silence
    having: str
    where: tuple[Pred, ...] = ()
    each: str | None = None
    group_by: tuple[Field, ...] = ()
    args: tuple[Field, ...] = ()  # sum: the terms; distinct, repeated: the field
    window: float | None = None
    then: tuple[str, ...] = ("stdout",)
    message: str = ""
    use: str | None = None

    @cached_property
    def need(self) -> int:
        """Rows needed for a count-like rule (count, distinct, repeated) to fire."""
        t = self.threshold
        return max(1, math.floor(t) + 1 if self.op == ">" else math.ceil(t))

    @cached_property
    def each_parts(self) -> tuple[str, ...]:
        """The path of the ``each`` list, split (``()`` without one)."""
        return tuple(self.each.split(".")) if self.each else ()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "use": self.use,
            "where": [{"field": p.field.label, "op": p.op, "value": p.value} for p in self.where],
            "each": self.each,
            "group_by": [f.label for f in self.group_by],
            "window": self.window,
            "having": self.having,
            "then": list(self.then),
            "message": self.message,
        }


# The harness's live rules (docs/harness.md), as rules of this language. ``group_by`` of a
# rule that uses one is who it watches (default: each session); the preset adds its own
# keys after it. ``{threshold}`` is filled in from the rule.
PRESETS: dict[str, dict[str, Any]] = {
    "no_progress": {
        "having": "silence >= {threshold}",
        "message": "no_progress: no model call or output for {value:.0f} s",
    },
    "same_failing_command": {
        "where": {
            "type": "call.start",
            "tool_results.failed": True,
            "tool_results.command": {"exists": True},
        },
        "each": "tool_results",
        "group_by": ["squash(tool_results.command)"],
        "having": "count(*) >= {threshold}",
        "message": "same_failing_command: `{command:.120}` failed {value:.0f} times",
    },
    "token_rate": {
        "where": {"type": ["call.end", "call.error"]},
        "window": 60,
        "having": "sum(usage.input + usage.output + usage.cache_read + usage.cache_write)"
        " > {threshold}",
        "message": "token_rate: {value:.0f} tokens in the last minute (limit {threshold:.0f})",
    },
    "repeated_responses": {
        "where": {"type": ["call.end", "call.error"], "response_digest": {"exists": True}},
        "having": "repeated(response_digest) >= {threshold}",
        "message": "repeated_responses: the same answer {threshold:.0f} times in a row",
    },
}


def preset(
    use: str,
    threshold: float | int | str,
    *,
    name: str | None = None,
    group_by: Iterable[str] = ("session",),
    then: Iterable[str] = ("stdout",),
    source: str = "rules",
) -> Rule:
    """The rule a preset makes (``group_by=()`` watches everything as one group)."""
    table = {"use": use, "threshold": threshold, "group_by": list(group_by), "then": list(then)}
    if name:
        table["name"] = name
    return _rule(table, source, 1)


def load(path: str) -> list[Rule]:
    """The rules of a TOML file (``[[alert]]`` tables and/or a harness ``[rules]`` table)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the rule file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse(doc, source=path)


def parse(doc: dict, *, source: str = "rules") -> list[Rule]:
    """Rules from a parsed rule file; one ``ConfigError`` line per problem."""
    unknown = set(doc) - {"alert", "rules", "run", "variants", "matrix"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown table {sorted(unknown)[0]!r}; rules go in [[alert]] tables"
        )
    tables = doc.get("alert", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{source}: alert must be an array of tables ([[alert]])")
    harness = doc.get("rules", {})
    if not isinstance(harness, dict):
        raise ConfigError(f"{source}: [rules] must be a table")
    tables = [*tables, *({"use": k, "threshold": v} for k, v in harness.items())]
    rules = [_rule(t, source, i + 1) for i, t in enumerate(tables)]
    if not rules:
        raise ConfigError(f"{source}: no rules: add [[alert]] tables (docs/alerts.md)")
    names = [r.name for r in rules]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"{source}:{dup}: two rules have this name; names must be unique")
    return rules


def warnings(rules: Iterable[Rule]) -> list[str]:
    """Likely mistakes that are not errors, one line each: a ``type`` in a ``where`` that
    no tracebox source emits but that is close to one that does (``claim.acquired``)."""
    import difflib

    out = []
    for r in rules:
        for p in r.where:
            if p.field.path != "type" or p.op not in ("eq", "in", "ne"):
                continue
            for v in p.value if p.op == "in" else [p.value]:
                if not isinstance(v, str) or v in EVENT_TYPES or v.startswith(EVENT_FAMILIES):
                    continue
                near = difflib.get_close_matches(v, EVENT_TYPES, n=1, cutoff=0.8)
                if near:
                    out.append(
                        f"{r.name}: no tracebox source emits type {v!r}; did you mean "
                        f"{near[0]!r}? (a custom `tracebox event` type is fine)"
                    )
    return out


def _rule(t: dict, source: str, index: int) -> Rule:
    label = str(t.get("name") or t.get("use") or f"alert {index}")
    where = f"{source}:{label}"

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{where}: {msg}")

    use = t.get("use")
    if use is not None:
        if not isinstance(use, str) or use not in PRESETS:
            raise bad(f"unknown preset {use!r}; use one of {', '.join(PRESETS)}")
        extra = set(t) - PRESET_KEYS
        if extra:
            raise bad(f"{sorted(extra)[0]!r} cannot be set on a preset (only {_keys(PRESET_KEYS)})")
        if "threshold" not in t:
            raise bad(f"preset {use} needs a threshold")
        th = t["threshold"]
        if isinstance(th, bool) or not isinstance(th, int | float | str):
            raise bad("threshold must be a number (or a duration for no_progress)")
        who = t.get("group_by", ["session"])
        p = PRESETS[use]
        t = {
            **{k: v for k, v in p.items() if k != "group_by"},
            "name": t.get("name", use),
            "group_by": [*_as_list(who, bad, "group_by"), *p.get("group_by", [])],
            "having": p["having"].format(threshold=th),
            "then": t.get("then", ["stdout"]),
            **({"message": t["message"]} if "message" in t else {}),
        }
    else:
        extra = set(t) - RULE_KEYS
        if extra:
            hint = " (threshold goes with use = PRESET)" if "threshold" in extra else ""
            raise bad(f"unknown key {sorted(extra)[0]!r}{hint}; keys: {_keys(RULE_KEYS)}")
    name = t.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise bad("name is required: letters, digits, '.', '_', '-' (at most 64)")
    each = t.get("each")
    if each is not None and (not isinstance(each, str) or not re.fullmatch(_PATH, each)):
        raise bad(f"each must name a list field, e.g. tool_results, not {each!r}")
    if "having" not in t:
        raise bad('having is required, e.g. having = "count(*) >= 3"')
    agg, op, threshold, args = _having(t["having"], each, bad)
    window = None
    if t.get("window") is not None:
        if agg == "silence":
            raise bad("window does not apply to silence (its threshold is the gap)")
        try:
            window = parse_duration(t["window"], what="window")
        except UsageError as e:
            raise bad(str(e)) from None
        if window <= 0:
            raise bad("window must be longer than 0 s")
    group_by = tuple(
        _field(g, each, bad, "group_by")
        for g in _as_list(t.get("group_by", ["session"]), bad, "group_by")
    )
    then = tuple(_as_list(t.get("then", ["stdout"]), bad, "then"))
    for a in then:
        if a not in ACTIONS and not re.match(r"https?://[^\s/]+", a):
            raise bad(f"then: unknown action {a!r}; use stdout, stop or a webhook http(s):// URL")
    if not then:
        raise bad("then must name at least one action")
    rule = Rule(
        name=name,
        agg=agg,
        op=op,
        threshold=threshold,
        having=" ".join(str(t["having"]).split()),
        where=_where(t.get("where", {}), each, bad),
        each=each,
        group_by=group_by,
        args=args,
        window=window,
        then=then,
        message=t.get("message", ""),
        use=use,
    )
    if not isinstance(rule.message, str):
        raise bad("message must be a string")
    names = _message_names(rule)
    for m in _PLACEHOLDER.finditer(rule.message):
        if m.group(1) not in names:
            raise bad(f"message uses {{{m.group(1)}}}; known: {', '.join(sorted(names))}")
    if agg != "silence" and agg != "sum" and rule.need > 1_000_000:
        raise bad("threshold is too large (at most 1000000)")
    return rule


def _keys(keys: set[str]) -> str:
    return ", ".join(sorted(keys))


def _as_list(v, bad, what: str) -> list[str]:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise bad(f"{what} must be a string or a list of strings")
    return v


def _field(text: str, each: str | None, bad, what: str) -> Field:
    m = _FIELD.fullmatch(text.strip())
    if not m:
        raise bad(f"{what}: {text!r} is not a field path (e.g. session, usage.input)")
    squash, path = m.group(1) is not None, m.group(2) or m.group(3)
    if each and (path == each or path.startswith(each + ".")):
        rest = path[len(each) + 1 :]
        if not rest:
            raise bad(f"{what}: name a field of each {each} item, e.g. {each}.name")
        return Field(path, tuple(rest.split(".")), True, squash)
    return Field(path, tuple(path.split(".")), False, squash)


def _having(text, each, bad) -> tuple[str, str, float, tuple[Field, ...]]:
    if not isinstance(text, str):
        raise bad('having must be a string, e.g. "count(*) >= 3"')
    m = _HAVING.fullmatch(text)
    if not m:
        raise bad(
            f"having {text!r}: expected AGG OP NUMBER with AGG count(*), sum(a + b), "
            "count(distinct f), repeated(f), or silence >= DURATION; OP >= or >"
        )
    op, num = m.group("op"), m.group("num")
    if m.group("silence"):
        try:
            gap = parse_duration(num, what="silence")
        except UsageError as e:
            raise bad(f"having: {e}") from None
        if gap <= 0:
            raise bad("having: silence must be longer than 0 s")
        return "silence", op, gap, ()
    agg, arg = m.group("agg").lower(), m.group("arg").strip()
    try:
        threshold = float(num)
    except ValueError:
        raise bad(f"having: threshold {num!r} is not a number") from None
    if not math.isfinite(threshold) or threshold < 0:
        raise bad(f"having: threshold {num!r} must be a number >= 0")
    if agg == "count":
        d = re.fullmatch(r"distinct\s+(.+)", arg, re.I)
        if d:
            return "distinct", op, threshold, (_field(d.group(1), each, bad, "having"),)
        if arg != "*":
            raise bad("having: use count(*) (filter rows with where) or count(distinct FIELD)")
        return "count", op, threshold, ()
    if agg == "sum":
        terms = arg.split("+")
        if not arg or any(not s.strip() for s in terms):
            raise bad("having: sum takes fields joined by +, e.g. sum(usage.input + usage.output)")
        fields = tuple(_field(s, each, bad, "having") for s in terms)
        if any(f.squash for f in fields):
            raise bad("having: squash() is for text, not for sums")
        return "sum", op, threshold, fields
    return "repeated", op, threshold, (_field(arg, each, bad, "having"),)


def _where(w, each, bad) -> tuple[Pred, ...]:
    if not isinstance(w, dict):
        raise bad('where must be a table, e.g. where = { type = "call.error" }')
    out = []
    for path, cond in w.items():
        f = _field(path, each, bad, "where")
        if f.squash:
            raise bad("where: squash() is for group_by")
        if isinstance(cond, dict):
            if not cond:
                raise bad(f"where: {path} has no condition")
            for op, v in cond.items():
                out.append(_pred(f, op, v, bad))
        elif isinstance(cond, list):
            out.append(_pred(f, "in", cond, bad))
        else:
            out.append(_pred(f, "eq", cond, bad))
    return tuple(out)


def _pred(f: Field, op: str, v, bad) -> Pred:
    where = f"where: {f.path}"
    if op not in OPS:
        raise bad(f"{where}: unknown operator {op!r}; use {', '.join(OPS)}")
    if op == "exists":
        if not isinstance(v, bool):
            raise bad(f"{where}: exists takes true or false")
    elif op == "in":
        if not isinstance(v, list) or not v or not all(_scalar(x) for x in v):
            raise bad(f"{where}: in takes a non-empty list of strings, numbers or booleans")
        kinds = {_kind(x) for x in v}
        if len(kinds) > 1:
            raise bad(f"{where}: the values of in must be of one kind")
    elif op in ("contains", "prefix"):
        if not isinstance(v, str) or not v:
            raise bad(f"{where}: {op} takes a non-empty string")
    elif op in ("lt", "le", "gt", "ge"):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise bad(f"{where}: {op} takes a number")
    elif not _scalar(v):
        raise bad(f"{where}: compare with a string, number or boolean")
    return Pred(f, op, tuple(v) if isinstance(v, list) else v)


def _scalar(v) -> bool:
    return isinstance(v, str | bool | int | float) and not (
        isinstance(v, float) and not math.isfinite(v)
    )


def _kind(v) -> str:
    return "bool" if isinstance(v, bool) else "num" if isinstance(v, int | float) else "str"


def _message_names(rule: Rule) -> set[str]:
    names = {"rule", "value", "threshold", "window", "session", "agent"}
    for f in rule.group_by:
        names |= {f.path, f.leaf}
    return names


# -- evaluating -------------------------------------------------------------------------------


@dataclass
class Firing:
    rule: Rule
    time: float  # when it fired (event time; for silence: the last event + the gap)
    group: dict[str, Any]  # group_by field path -> value
    value: float  # the aggregate (count, sum, run length, seconds of silence)
    message: str
    session: str | None = None  # of the group's last event: who an action is about
    agent: str | None = None
    event: dict | None = None  # the event that made it fire (None for silence)

    def to_dict(self) -> dict:
        e = self.event or {}
        return {
            "rule": self.rule.name,
            "time": iso_time(self.time),
            "group": self.group,
            "value": self.value,
            "message": self.message,
            "session": self.session,
            "agent": self.agent,
            "event": {k: e[k] for k in ("type", "id", "seq", "time") if k in e} or None,
        }


class _Group:
    __slots__ = ("agent", "armed", "last", "n", "rows", "run", "seen", "session", "total")

    def __init__(self, last: float = 0.0) -> None:
        self.rows: deque = deque()  # times (count, distinct, repeated) or (time, value) (sum)
        self.n = 0  # rows since the last firing, without a window
        self.total = 0.0  # sum
        self.seen: set[int] | None = None  # distinct: hashes of the values seen
        self.run: object = _NOTHING  # repeated: the value of the current run
        self.last = last  # silence: the group's last event
        self.armed = True
        self.session: str | None = None
        self.agent: str | None = None


_NOTHING = object()


class Engine:
    """Incremental evaluation of ``rules``; ``now`` starts the clock of ungrouped silence
    rules (they fire if nothing at all happens). Not thread-safe: one caller at a time."""

    def __init__(self, rules: Iterable[Rule], now: float) -> None:
        self.rules = list(rules)
        self.groups: list[OrderedDict[tuple, _Group]] = [OrderedDict() for _ in self.rules]
        self.evicted = 0
        self._silence = [i for i, r in enumerate(self.rules) if r.agg == "silence"]
        for i in self._silence:
            if not self.rules[i].group_by:
                self.groups[i][()] = _Group(last=now)

    def process(self, event: dict, now: float) -> list[Firing]:
        out: list[Firing] = []
        for i, r in enumerate(self.rules):
            for item in _items(r, event):
                if not all(_test(p, event, item) for p in r.where):
                    continue
                key = tuple(_group_value(f, event, item) for f in r.group_by)
                g = self._group(i, key)
                g.session, g.agent = _str(event.get("session")), _str(event.get("agent"))
                value = _step(r, g, event, item, now)
                if value is not None:
                    out.append(_firing(r, key, g, now, value, event))
        return out

    def tick(self, now: float) -> list[Firing]:
        """Fire the silence rules whose groups have been quiet long enough."""
        return self._silences(now)

    def flush(self) -> list[Firing]:
        """At the end of a bounded input: every pending silence fires (as in Flink, whose
        watermark jumps to the end of time when a bounded source ends)."""
        return self._silences(None)

    def _silences(self, now: float | None) -> list[Firing]:
        out: list[Firing] = []
        for i in self._silence:
            r = self.rules[i]
            for key, g in self.groups[i].items():
                if g.armed and (now is None or now - g.last >= r.threshold):
                    g.armed = False
                    gap = r.threshold if now is None else now - g.last
                    out.append(_firing(r, key, g, g.last + r.threshold, gap, None))
        return out

    def _group(self, i: int, key: tuple) -> _Group:
        groups = self.groups[i]
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group()
            if len(groups) > MAX_GROUPS:
                groups.popitem(last=False)
                self.evicted += 1
        else:
            groups.move_to_end(key)
        return g


_NO_ITEMS = (None,)  # a rule without ``each``: the event itself, once


def _items(r: Rule, event: dict) -> Iterable:
    if r.each is None:
        return _NO_ITEMS
    items = _get(event, r.each_parts)
    if not isinstance(items, list):
        return ()
    return [x for x in items[:MAX_EACH] if isinstance(x, dict)]


def _get(doc, parts) -> Any:
    for p in parts:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc


def _value(f: Field, event: dict, item) -> Any:
    return _get(item if f.in_item else event, f.parts)


def _group_value(f: Field, event: dict, item) -> Any:
    v = _value(f, event, item)
    if isinstance(v, dict | list):
        v = json.dumps(v, sort_keys=True, separators=(",", ":"))
    if f.squash and v is not None:
        v = " ".join(str(v).split())
    return v


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _same(v, lit) -> bool:
    if isinstance(lit, bool) or isinstance(v, bool):
        return v is lit
    if _num(lit):
        return _num(v) and v == lit
    return v == lit


def _test(p: Pred, event: dict, item) -> bool:
    v = _value(p.field, event, item)
    op, lit = p.op, p.value
    if op == "exists":
        return (v is not None and v != "") is lit
    if v is None:
        return False
    if op == "eq":
        return _same(v, lit)
    if op == "ne":
        return not _same(v, lit)
    if op == "in":
        return any(_same(v, x) for x in lit)
    if op == "contains":
        return isinstance(v, str) and lit in v
    if op == "prefix":
        return isinstance(v, str) and v.startswith(lit)
    return _num(v) and _COMPARE[op](v, lit)


_COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


def _holds(r: Rule, value: float) -> bool:
    return value > r.threshold if r.op == ">" else value >= r.threshold


def _step(r: Rule, g: _Group, event: dict, item, now: float) -> float | None:
    """Add one row to the group; the aggregate's value if the rule fires now."""
    agg = r.agg
    if agg == "silence":
        g.last, g.armed = now, True
        return None
    if agg == "distinct":
        v = _value(r.args[0], event, item)
        if v is None:
            return None
        if g.seen is None:
            g.seen = set()
        h = hash(_group_value(r.args[0], event, item))
        if h in g.seen:
            return None
        if len(g.seen) < MAX_SEEN:
            g.seen.add(h)
        agg = "count"
    if agg == "repeated":
        v = _group_value(r.args[0], event, item)
        if v is None or v != g.run:
            g.rows.clear()
            g.n = 0
            g.run = _NOTHING if v is None else v
            if v is None:
                return None
        agg = "count"
    if agg == "count":
        if r.window is None:
            g.n += 1
            value = g.n
        else:
            rows = g.rows
            rows.append(now)
            while rows and now - rows[0] > r.window:
                rows.popleft()
            while len(rows) > r.need:
                rows.popleft()
            value = len(rows)
        if value < r.need:
            return None
        g.rows.clear()
        g.n = 0
        if r.agg == "repeated":
            g.run = _NOTHING
        return float(value)
    # sum
    v = sum(x for x in (_value(f, event, item) for f in r.args) if _num(x))
    if r.window is None:
        g.total += v
    else:
        rows = g.rows
        if v:
            rows.append((now, v))
            g.total += v
            if len(rows) > MAX_ROWS:
                g.total -= rows.popleft()[1]
        while rows and now - rows[0][0] > r.window:
            g.total -= rows.popleft()[1]
    if not _holds(r, g.total):
        return None
    value, g.total = g.total, 0.0
    g.rows.clear()
    return value


def _firing(r: Rule, key: tuple, g: _Group, t: float, value, event) -> Firing:
    group = {f.path: v for f, v in zip(r.group_by, key, strict=True)}
    names: dict[str, Any] = {
        "rule": r.name,
        "value": value,
        "threshold": r.threshold,
        "window": r.window or 0,
        "session": g.session,
        "agent": g.agent,
    }
    for f, v in zip(r.group_by, key, strict=True):
        names[f.leaf] = names[f.path] = v
    text = r.message or f"{r.name}: {r.having} (value {value:g})"
    return Firing(r, t, group, value, _fill(text, names), g.session, g.agent, event)


def _fill(template: str, names: dict[str, Any]) -> str:
    def one(m: re.Match) -> str:
        v, spec = names.get(m.group(1)), m.group(2) or ""
        try:
            return format(v, spec) if v is not None else "-"
        except (ValueError, TypeError):
            return str(v)

    return _PLACEHOLDER.sub(one, template)


def _str(v) -> str | None:
    return v if isinstance(v, str) else None


# -- events and time --------------------------------------------------------------------------


def normalize(event: dict) -> dict:
    """One event shape for every source: a log event's ``ts`` is its ``time``; the
    ``data`` of a Kafka envelope of the proxy or the mirror (docs/stream.md) is merged
    under its head, as the live feed has it (a coordination envelope keeps ``data``, as
    the log has it)."""
    if "time" not in event and "ts" in event:
        return {**event, "time": event["ts"]}
    data = event.get("data")
    if isinstance(data, dict) and "key" in event and event.get("source") not in (None, "coord"):
        return {**data, **{k: v for k, v in event.items() if k != "data" and v is not None}}
    return event


def event_time(event: dict) -> float | None:
    """The event's time in seconds since the epoch, truncated to milliseconds."""
    t = event.get("time")
    if not isinstance(t, str):
        return None
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return math.floor(dt.timestamp() * 1000) / 1000


def iso_time(t: float) -> str:
    if not math.isfinite(t) or t < 0 or t > 4e10:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- running ----------------------------------------------------------------------------------

_END = object()


def run(
    rules: list[Rule],
    events: Iterable[dict],
    on_fire: Callable[[Firing], None],
    *,
    replay: bool = False,
    until: float | None = None,
    once: bool = False,
    tick: float = TICK_S,
    clock: Callable[[], float] = time.time,
) -> int:
    """Evaluate ``rules`` over ``events``, calling ``on_fire`` per firing; the count.

    Live (default): events are read on a thread; windows use each event's own time,
    silence rules are ticked every ``tick`` seconds of ``clock``; ends after ``until``
    seconds, at the first firing with ``once``, or when the source ends. ``replay``
    (a recorded file): event time only, and pending silences fire at the end."""
    if replay:
        return _replay(rules, events, on_fire, once)
    q: queue.Queue = queue.Queue(maxsize=10_000)

    def read() -> None:
        try:
            for e in events:
                q.put(e)
            q.put(_END)
        except BaseException as e:  # handed to the evaluating thread, raised there
            q.put(e)

    threading.Thread(target=read, name="tracebox-alerts-source", daemon=True).start()
    engine = Engine(rules, clock())
    fired = 0
    deadline = None if until is None else clock() + until
    while True:
        wait = tick if deadline is None else max(0.0, min(tick, deadline - clock()))
        try:
            item = q.get(timeout=wait)
        except queue.Empty:
            item = None
        if item is _END:
            return fired
        if isinstance(item, BaseException):
            raise item
        out: list[Firing] = []
        now = clock()
        if item is not None:
            ev = normalize(item)
            t = event_time(ev) or now
            out += engine.tick(t)
            out += engine.process(ev, t)
        out += engine.tick(now)
        for f in out:
            on_fire(f)
            fired += 1
            if once:
                return fired
        if deadline is not None and clock() >= deadline:
            return fired


def _replay(rules, events, on_fire, once: bool) -> int:
    engine = None
    fired, t = 0, 0.0
    for item in events:
        ev = normalize(item)
        t = event_time(ev) or t
        if engine is None:
            engine = Engine(rules, t)
        for f in engine.tick(t) + engine.process(ev, t):
            on_fire(f)
            fired += 1
            if once:
                return fired
    for f in engine.flush() if engine is not None else []:
        on_fire(f)
        fired += 1
        if once:
            return fired
    return fired


# -- sources ----------------------------------------------------------------------------------


def proxy_events(
    url: str, *, session: str | None = None, agent: str | None = None
) -> Iterator[dict]:
    """The live feed of a running ``tracebox proxy``; an error when the proxy closes it."""
    from .feed import proxy_feed

    yield from proxy_feed(url, session=session, agent=agent)
    raise TraceboxError(f"the proxy at {url} closed its live feed")


def log_events(ctx, *, since: datetime | None = None, poll: float = 0.5) -> Iterator[dict]:
    """The bucket's coordination log from ``since`` (default: now) on, as events land."""
    from ..coord import events
    from ..coord.context import now

    yield from events.follow(ctx, since=since or now(), poll=poll)


def file_events(path: str) -> Iterator[dict]:
    """The events of a JSON Lines file (``tracebox tail --json``, ``tracebox log --json``)."""
    try:
        f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = None
            if not isinstance(ev, dict):
                raise UsageError(f"{path}:{n}: not a JSON object")
            yield ev


def kafka_events(
    bootstrap: str, topic_prefix: str = "tracebox", *, from_start: bool = False
) -> Iterator[dict]:
    """Events consumed from the Kafka topics ``tracebox stream`` publishes."""
    from .kafka import consume_events

    yield from consume_events(bootstrap, topic_prefix, from_start=from_start)


# -- actions ----------------------------------------------------------------------------------

STOP_PREFIX = "harness.stop"  # memory key prefix of stop requests: harness.stop.<session>


def stop_key(session: str) -> str:
    from ..coord.memory import check_key

    return check_key(f"{STOP_PREFIX}.{session}")


def request_stop(ctx, session: str, reason: str, *, agent: str | None = None) -> dict:
    """Ask whoever runs ``session`` to stop it: the memory key ``harness.stop.<session>``
    (a harness run polls it), and a message to ``agent`` when one is named."""
    from ..coord import mailbox, memory
    from ..coord.context import iso, now

    doc = memory.set(ctx, stop_key(session), {"reason": reason, "at": iso(now()), "by": ctx.agent})
    if agent:
        mailbox.send(ctx, agent, f"tracebox alert: stop requested: {reason}")
    return doc


def stop_requested(ctx, session: str) -> str | None:
    """The reason a stop of ``session`` was requested, or None."""
    from ..coord import memory

    try:
        value = memory.get(ctx, stop_key(session)).get("value")
    except (NotFound, UsageError):
        return None
    return str(value.get("reason") or "stop requested") if isinstance(value, dict) else None


def format_firing(f: Firing) -> str:
    """One human line: time, rule, group, message."""
    keys = [g.leaf for g in f.rule.group_by]
    pairs = zip(keys, f.group.values(), strict=False)
    group = " ".join(f"{k}={v}" for k, v in pairs if v is not None) or "-"
    return f"{iso_time(f.time)[11:23] or '-'}  ALERT {f.rule.name}  {group}  {f.message}"


class Actions:
    """Carries out each firing's ``then``: ``stdout`` lines through ``out``, webhooks from
    a background thread (scrubbed JSON, ``timeout`` seconds each), stop requests through
    ``ctx`` (a project's coordination context). Problems go to ``warn``; never raised."""

    def __init__(
        self,
        *,
        out: Callable[[str], None],
        warn: Callable[[str], None],
        as_json: bool = False,
        ctx=None,
        timeout: float = 5.0,
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        self.out, self.warn, self.as_json, self.ctx, self.timeout = out, warn, as_json, ctx, timeout
        self._scrub = scrub
        self._posts: queue.Queue = queue.Queue(maxsize=1000)
        self._worker: threading.Thread | None = None

    def __call__(self, f: Firing) -> None:
        for a in f.rule.then:
            if a == "stdout":
                line = (
                    json.dumps(f.to_dict(), ensure_ascii=False)
                    if self.as_json
                    else format_firing(f)
                )
                self.out(line)
            elif a == "stop":
                self._stop(f)
            else:
                self._post(a, f)

    def _stop(self, f: Firing) -> None:
        if self.ctx is None:
            return self.warn(f"{f.rule.name}: stop needs a bucket (configure one)")
        if not f.session:
            return self.warn(f"{f.rule.name}: stop: the firing names no session to stop")
        try:
            request_stop(self.ctx, f.session, self.scrub(f.message), agent=f.agent)
        except TraceboxError as e:
            self.warn(f"{f.rule.name}: stop request for {f.session} failed: {e}")

    def scrub(self, text: str) -> str:
        if self._scrub is None:
            from ..scrub import Scrubber

            self._scrub = Scrubber().scrub_text
        return self._scrub(text)

    def _post(self, url: str, f: Firing) -> None:
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._send, name="tracebox-webhooks", daemon=True
            )
            self._worker.start()
        body = self.scrub(json.dumps(f.to_dict(), ensure_ascii=False))
        try:
            self._posts.put_nowait((url, f.rule.name, body))
        except queue.Full:
            self.warn(f"{f.rule.name}: webhook {url}: too many pending posts; this one dropped")

    def _send(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            while (job := self._posts.get()) is not None:
                url, name, body = job
                try:
                    r = client.post(url, content=body, headers={"content-type": "application/json"})
                    if r.status_code >= 400:
                        self.warn(f"{name}: webhook {url} answered HTTP {r.status_code}")
                except httpx.HTTPError as e:
                    self.warn(f"{name}: webhook {url} failed: {type(e).__name__}: {e}")
                finally:
                    self._posts.task_done()

    def close(self) -> None:
        """Wait (up to the webhook timeout, per post) for pending webhook posts."""
        if self._worker is None:
            return
        self._posts.put(None)
        self._worker.join(self.timeout * (self._posts.qsize() + 2))


# -- Flink SQL --------------------------------------------------------------------------------

SOURCE_TABLE = "tracebox_events"
SINK_TABLE = "tracebox_alerts"
WATERMARK_S = 1.0  # how late an event may arrive in the Flink job
# column types of the fields tracebox's events carry (docs/proxy.md, docs/format.md)
KNOWN_TYPES = {
    "type": "STRING",
    "time": "STRING",
    "ts": "STRING",
    "session": "STRING",
    "agent": "STRING",
    "id": "STRING",
    "seq": "BIGINT",
    "step": "STRING",
    "provider": "STRING",
    "model": "STRING",
    "method": "STRING",
    "status": "INT",
    "error": "STRING",
    "stop_reason": "STRING",
    "tool_calls": "INT",
    "streamed": "BOOLEAN",
    "ttfb_ms": "DOUBLE",
    "first_token_ms": "DOUBLE",
    "total_ms": "DOUBLE",
    "client_disconnected": "BOOLEAN",
    "response_digest": "STRING",
    "tool": "STRING",
    "tool_call_id": "STRING",
    **{f"usage.{k}": "BIGINT" for k in ("input", "output", "cache_read", "cache_write")},
    "tool_results.tool": "STRING",
    "tool_results.command": "STRING",
    "tool_results.failed": "BOOLEAN",
}
_BASE_COLUMNS = ("type", "time", "ts", "session", "agent")


def flink_sql(rules: list[Rule], *, source_path: str = "events.jsonl") -> str:
    """The rules as one Flink SQL script: the events as a filesystem JSON source
    (``source_path``: JSON Lines as ``tracebox tail --json``/``log --json`` write them)
    with a watermark, a print sink ``tracebox_alerts(rule, group_key, fired_at, value)``,
    and per rule a view of its rows plus one ``INSERT``. Same firings as ``Engine`` over
    the same events (``replay``): thresholds are ``MATCH_RECOGNIZE`` patterns that skip
    past their match (the engine's start-over), windows are ``WITHIN`` (inclusive at ms
    precision), silence is a ``SESSION`` window."""
    schema = _schema(rules)
    out = [
        "-- tracebox alert rules as Flink SQL (generated by `tracebox alerts flink-sql`).",
        "-- Run with the SQL client (sql-client.sh -f FILE) or a TableEnvironment in",
        "-- streaming mode; firings go to the print sink tracebox_alerts.",
        "",
        f"CREATE TABLE `{SOURCE_TABLE}` (",
        ",\n".join(f"  `{name}` {_sql_type(t)}" for name, t in schema.items()) + ",",
        "  `rowtime` AS TO_TIMESTAMP(REPLACE(SUBSTRING(COALESCE(`time`, `ts`), 1, 23), 'T', ' ')),",
        f"  WATERMARK FOR `rowtime` AS `rowtime` - {_interval(WATERMARK_S)}",
        ") WITH (",
        "  'connector' = 'filesystem',",
        f"  'path' = {_lit(source_path)},",
        "  'format' = 'json',",
        "  'json.ignore-parse-errors' = 'true'",
        ");",
        "",
        f"CREATE TABLE `{SINK_TABLE}` (",
        "  `rule` STRING,",
        "  `group_key` STRING,",
        "  `fired_at` TIMESTAMP(3),",
        "  `value` DOUBLE",
        ") WITH ('connector' = 'print');",
    ]
    for r in rules:
        out += ["", *_rule_sql(r, schema)]
    return "\n".join(out) + "\n"


def _schema(rules: list[Rule]) -> dict:
    """Nested column types for every field the rules use: ``{name: type | {sub: …}}``;
    an ``each`` list is ``("ARRAY", {item fields})``."""
    root: dict = {name: KNOWN_TYPES[name] for name in _BASE_COLUMNS}

    def put(parts: tuple[str, ...], typ: str, each: tuple[str, ...] | None = None) -> None:
        node = root
        full = (*each, *parts) if each else parts
        for i, p in enumerate(full[:-1]):
            child = node.get(p)
            if each and i == len(each) - 1:
                if child is None:
                    child = node[p] = ("ARRAY", {})
                if not isinstance(child, tuple):
                    raise UsageError(
                        f"flink-sql: {'.'.join(full[: i + 1])} is used as a list and a value"
                    )
                node = child[1]
                continue
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise UsageError(
                    f"flink-sql: {'.'.join(full[: i + 1])} is used as a value and a table"
                )
            node = child
        leaf = full[-1]
        if isinstance(node.get(leaf), dict | tuple):
            raise UsageError(f"flink-sql: {'.'.join(full)} is used as a value and a table")
        node.setdefault(leaf, KNOWN_TYPES.get(".".join(full), typ))

    for r in rules:
        each = r.each_parts or None
        fields = [(p.field, _literal_type(p)) for p in r.where]
        fields += [(f, "STRING") for f in r.group_by]
        fields += [(f, "DOUBLE" if r.agg == "sum" else "STRING") for f in r.args]
        for f, typ in fields:
            put(f.parts, typ, each if f.in_item else None)
        if each and not any(f.in_item for f, _ in fields):
            put(("_",), "STRING", each)  # an UNNEST needs a row type with a field
    return root


def _literal_type(p: Pred) -> str:
    v = p.value[0] if isinstance(p.value, tuple) else p.value
    if p.op in ("exists", "contains", "prefix"):
        return "STRING"
    if isinstance(v, bool):
        return "BOOLEAN"
    if isinstance(v, int):
        return "BIGINT"
    return "DOUBLE" if isinstance(v, float) else "STRING"


def _sql_type(t) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, tuple):
        return f"ARRAY<{_sql_type(t[1])}>"
    return "ROW<" + ", ".join(f"`{k}` {_sql_type(v)}" for k, v in t.items()) + ">"


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _lit(v) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v).upper()
    return "'" + str(v).replace("'", "''") + "'"


def _interval(seconds: float) -> str:
    ms = round(seconds * 1000)
    d, rest = divmod(ms, 86_400_000)
    h, rest = divmod(rest, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"INTERVAL '{d} {h:02d}:{m:02d}:{s:02d}.{ms:03d}' DAY TO SECOND(3)"


def _col(f: Field) -> str:
    alias = "r" if f.in_item else "e"
    return alias + "".join(f".{_ident(p)}" for p in f.parts)


def _expr(f: Field, schema_type: str) -> str:
    x = _col(f)
    if f.squash:
        if schema_type != "STRING":
            x = f"CAST({x} AS STRING)"
        return f"REGEXP_REPLACE(REGEXP_REPLACE({x}, '\\s+', ' '), '^ | $', '')"
    return x


def _type_of(schema: dict, r: Rule, f: Field) -> str:
    node: Any = schema
    parts = (*r.each_parts, *f.parts) if f.in_item else f.parts
    for p in parts:
        node = node[p]
        if isinstance(node, tuple):
            node = node[1]
    return node if isinstance(node, str) else "STRING"


def _pred_sql(p: Pred, typ: str) -> str:
    x, v, op = _col(p.field), p.value, p.op
    if op == "exists":
        if typ != "STRING":
            return f"{x} IS {'NOT ' if v else ''}NULL"
        return f"({x} IS NOT NULL AND {x} <> '')" if v else f"({x} IS NULL OR {x} = '')"
    if op == "in":
        return f"{x} IN ({', '.join(_lit(i) for i in v)})"
    if op == "contains":
        return f"POSITION({_lit(v)} IN {x}) > 0"
    if op == "prefix":
        return f"POSITION({_lit(v)} IN {x}) = 1"
    sym = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
    return f"{x} {sym} {_lit(v)}"


def _rule_sql(r: Rule, schema: dict) -> list[str]:
    view = _ident(f"alert_{r.name}")
    keys = [f"g{i}" for i in range(len(r.group_by))]
    cols = [
        f"{_expr(f, _type_of(schema, r, f))} AS `{k}`"
        for f, k in zip(r.group_by, keys, strict=True)
    ]
    if r.agg == "sum":
        terms = " + ".join(f"COALESCE(CAST({_col(f)} AS DOUBLE), 0)" for f in r.args)
        cols.append(f"{terms} AS `x`")
    elif r.args:
        cols.append(f"{_expr(r.args[0], _type_of(schema, r, r.args[0]))} AS `x`")
    cols.append("e.`rowtime` AS `rowtime`")
    source = f"`{SOURCE_TABLE}` AS e"
    if r.each:
        items = schema
        for p in r.each_parts:
            items = items[p]
            if isinstance(items, tuple):
                items = items[1]
        names = ", ".join(_ident(k) for k in items)
        each_col = "e" + "".join(f".{_ident(p)}" for p in r.each_parts)
        source += f" CROSS JOIN UNNEST({each_col}) AS r ({names})"
    conds = [_pred_sql(p, _type_of(schema, r, p.field)) for p in r.where]
    if r.agg == "distinct":
        conds.append(f"{_expr(r.args[0], _type_of(schema, r, r.args[0]))} IS NOT NULL")
    lines = [
        f"-- {r.name}: {r.having}"
        + (f" within {r.window:g} s" if r.window else "")
        + (f", per {', '.join(f.label for f in r.group_by)}" if r.group_by else ""),
        f"CREATE TEMPORARY VIEW {view} AS",
        "SELECT " + ", ".join(cols),
        f"FROM {source}" + (f"\nWHERE {' AND '.join(conds)}" if conds else "") + ";",
        "",
        f"INSERT INTO `{SINK_TABLE}`",
    ]
    group_key = f"JSON_ARRAY({', '.join(f'`{k}`' for k in keys)} NULL ON NULL)" if keys else "'[]'"
    part = ", ".join(f"`{k}`" for k in keys)
    if r.agg == "silence":
        by = f" PARTITION BY {part}" if keys else ""
        gap = _interval(r.threshold - 0.001)  # touching session windows merge
        return lines + [
            f"SELECT {_lit(r.name)} AS `rule`, {group_key} AS `group_key`,",
            f"  `window_end` + {_interval(0.001)} AS `fired_at`, CAST({r.threshold!r} AS DOUBLE) AS `value`",
            f"FROM TABLE(SESSION(TABLE {view}{by}, DESCRIPTOR(`rowtime`), {gap}))",
            f"GROUP BY {part + ', ' if keys else ''}`window_start`, `window_end`;",
        ]
    rows = view
    if r.agg == "distinct":
        dedup = ", ".join([*(f"`{k}`" for k in keys), "`x`"])
        rows = (
            f"(SELECT {part + ', ' if keys else ''}`rowtime` FROM (SELECT *, ROW_NUMBER() OVER "
            f"(PARTITION BY {dedup} ORDER BY `rowtime`) AS `rn` FROM {view}) WHERE `rn` = 1)"
        )
    n = r.need
    if r.agg == "sum":
        sym = ">" if r.op == ">" else ">="
        pattern, define = "(S*? L)", f"L AS SUM(`x`) {sym} {_lit(r.threshold)}"
        measures = "L.`rowtime` AS `fired_at`, SUM(`x`) AS `v`"
    elif r.agg == "repeated":
        pattern = "(A)" if n == 1 else f"(A B{{{n - 1}}})"
        define = "A AS A.`x` IS NOT NULL" + ("" if n == 1 else ", B AS B.`x` = A.`x`")
        measures = f"LAST({'A' if n == 1 else 'B'}.`rowtime`) AS `fired_at`, COUNT(*) AS `v`"
    else:
        pattern, define = f"(E{{{n}}})", "E AS TRUE"
        measures = "LAST(E.`rowtime`) AS `fired_at`, COUNT(*) AS `v`"
    within = f" WITHIN {_interval(r.window + 0.001)}" if r.window else ""  # WITHIN is exclusive
    return lines + [
        f"SELECT {_lit(r.name)} AS `rule`, {group_key} AS `group_key`, `fired_at`, "
        "CAST(`v` AS DOUBLE) AS `value`",
        f"FROM {rows}",
        "MATCH_RECOGNIZE (",
        *([f"  PARTITION BY {part}"] if keys else []),
        "  ORDER BY `rowtime`",
        f"  MEASURES {measures}",
        "  ONE ROW PER MATCH",
        "  AFTER MATCH SKIP PAST LAST ROW",
        f"  PATTERN {pattern}{within}",
        f"  DEFINE {define}",
        ") AS m;",
    ]
