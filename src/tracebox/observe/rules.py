"""The observer's rules: one session of the trace model → prioritized observations.

Deterministic, pure. Every observation has a ``priority``, a ``kind``, a one-line
``title``, a ``fingerprint`` and evidence: ``(session, step, quote)`` where the quote (at
most 200 characters) is copied verbatim from that step's content, so any claim can be
checked against the trace. Rules (docs/observe.md):

``important``
    ``error`` — a command or tool that failed, with its real error line; ``api_error``;
    ``failed_fix`` — a file was edited after a command failed, and the same command
    failed again; ``loop`` — the same command failed three times or more; ``reverted_edit``
    — an edit that undid an earlier one (its old and new text swapped).
``possible``
    ``file_created``, ``heavy_edit`` (one file edited five times or more), ``refactor``
    (the agent said so while editing several files), ``hypothesis`` (a sentence where the
    agent states a cause or a guess), ``test_added``.
``informational``
    ``goal`` (the first prompt), ``usage`` (tokens and cost), ``time``, ``dead_end``
    (a file read twice or more and never changed).

**Fingerprints** abstract what varies between sessions — paths (to their file name),
numbers, hex ids, UUIDs, temporary folders, quoted strings in commands — and hash the
rest with the kind, so the same finding in many sessions (or generations) is one entry.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field

from ..text import clip
from ..trace import facts, signature
from ..trace.model import Session, Text, ToolCall, ToolResult

PRIORITIES = ("important", "possible", "informational")
QUOTE_MAX = 200
LOOP_MIN = 3
HEAVY_EDITS = 5
_TEST_FILE = re.compile(
    r"(?:^|/)(?:test_[^/]*\.py|[^/]*_test\.(?:py|go)|[^/]*\.(?:test|spec)\.[jt]sx?|tests?/[^/]+)$"
)
_HYPOTHESIS = re.compile(
    r"[^.!?\n]*\b(?:I (?:think|suspect|believe)|(?:is|are) (?:likely|probably)|probably|"
    r"the (?:root )?cause|the (?:issue|problem|bug) (?:is|was|seems)|my hypothesis|"
    r"this (?:means|suggests)|it seems|looks like)\b[^.!?\n]*[.!?]?",
    re.I,
)
_REFACTOR = re.compile(r"\brefactor", re.I)


@dataclass
class Evidence:
    session: str
    step: int
    quote: str
    at: str | None = None  # the step's timestamp

    def to_dict(self) -> dict:
        return {"session": self.session, "step": self.step, "quote": self.quote, "at": self.at}


@dataclass
class Observation:
    priority: str
    kind: str
    title: str
    fingerprint: str
    evidence: list[Evidence] = field(default_factory=list)
    data: dict = field(default_factory=dict)


# -- normalization -------------------------------------------------------------------------

_NORM = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<addr>"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.I), "<id>"),
    (re.compile(r"(?:/tmp|/var/folders|/private/var)/\S*"), "<tmp>"),
    (re.compile(r"(?:[\w.-]*/)+([\w.-]+)"), r"\1"),  # a path → its file name
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalize(text: str) -> str:
    out = text.strip()
    for pattern, repl in _NORM:
        out = pattern.sub(repl, out)
    return out.strip().lower()


def fingerprint(kind: str, *keys: str) -> str:
    text = "\x1f".join([kind, *(normalize(k) for k in keys)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def quote(text: str, needle: str | None = None) -> str:
    """At most QUOTE_MAX chars of ``text``, verbatim: around ``needle`` when it is there."""
    if needle:
        i = text.find(needle)
        if i >= 0:
            return text[i : i + QUOTE_MAX]
    s = text.strip()
    start = text.find(s[:50]) if s else 0
    return text[max(start, 0) : max(start, 0) + QUOTE_MAX]


def _short_path(path: str, cwd: str | None) -> str:
    if cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1 :]
    return path


# -- the rules ---------------------------------------------------------------------------


def observe_session(s: Session) -> list[Observation]:
    """Every observation of one session (subagents included, each under its own id)."""
    out: list[Observation] = []
    _rules(s, out)
    for sub in s.subagents:
        _rules(sub, out)
    return out


def _ev(s: Session, step: int, text: str, needle: str | None = None) -> Evidence:
    return Evidence(
        s.id, step, quote(text, needle), s.steps[step].timestamp if step < len(s.steps) else None
    )


def _rules(s: Session, out: list[Observation]) -> None:
    calls = facts.calls(s)
    history: dict[
        str, list[tuple[int, bool, str, str]]
    ] = {}  # cmd → [(step, failed, error, output)]
    edits_by_file: dict[str, list[tuple[int, facts.Edit]]] = {}
    reads: Counter[str] = Counter()
    read_step: dict[str, int] = {}
    last_failure: dict[str, int] = {}  # command → step of its last failure

    for st in s.steps:
        for p in st.parts:
            if isinstance(p, ToolCall):
                for e in facts.edit_of(p):
                    path = _short_path(e.path, s.cwd)
                    edits_by_file.setdefault(path, []).append((st.index, e))
                rp = facts.read_path(p)
                if rp:
                    path = _short_path(rp, s.cwd)
                    reads[path] += 1
                    read_step.setdefault(path, st.index)
            elif isinstance(p, ToolResult):
                _result(s, st.index, p, calls, history, last_failure, edits_by_file, out)
        if st.error is not None and st.error.kind in ("api_error", "error", "timeout"):
            msg = st.error.message or st.error.kind
            out.append(
                Observation(
                    "important",
                    "api_error",
                    f"API error: {clip(msg, 120)}",
                    fingerprint("api_error", st.error.kind, msg[:300]),
                    [_ev(s, st.index, _call_text(s, st.index), msg[:QUOTE_MAX])],
                    {"status": st.error.status},
                )
            )
    _loops(s, history, out)
    _edits(s, edits_by_file, out)
    _agent_text(s, edits_by_file, out)
    _informational(s, reads, read_step, edits_by_file, out)


def error_line(output: str, command: str | None, exit_code: int | None) -> str:
    """The real error line of a failed run: its signature's first error, else its last line."""
    sig = signature.extract(output, command, exit_code)
    if sig.errors:
        return sig.errors[0]
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith("Exit code")]
    return lines[-1].strip() if lines else (f"exit code {exit_code}" if exit_code else "error")


def _result(s, step, r, calls, history, last_failure, edits_by_file, out) -> None:
    call_step, call = calls.get(r.call_id, (None, None))
    cmd = facts.command_of(call)
    is_failed = facts.failed(r)
    err = error_line(r.output, cmd, r.exit_code) if is_failed else ""
    if cmd:
        history.setdefault(cmd, []).append((step, is_failed, err, r.output))
    if not is_failed:
        return
    what = f"`{clip(cmd, 80)}`" if cmd else (call.name if call else "a tool")
    out.append(
        Observation(
            "important",
            "error",
            f"{what} failed: {clip(err, 120)}",
            fingerprint("error", cmd or (call.name if call else ""), err),
            [_ev(s, step, r.output, err)],
            {
                "command": cmd,
                "tool": call.name if call else None,
                "exit_code": r.exit_code,
                "error": err[:500],
            },
        )
    )
    if cmd and cmd in last_failure:
        before = last_failure[cmd]
        edited = sorted(
            {p for p, eds in edits_by_file.items() for i, _ in eds if before < i < step}
        )
        if edited:
            out.append(
                Observation(
                    "important",
                    "failed_fix",
                    f"editing {', '.join(edited[:3])} did not fix `{clip(cmd, 60)}`: {clip(err, 80)}",
                    fingerprint("failed_fix", cmd, err, *edited[:3]),
                    [_ev(s, step, r.output, err)],
                    {"command": cmd, "files": edited, "error": err[:500]},
                )
            )
    last_failure[cmd or ""] = step


def _loops(s, history, out) -> None:
    for cmd, runs in history.items():
        streak, best, where = 0, 0, None
        for step, is_failed, err, output in runs:
            streak = streak + 1 if is_failed else 0
            if streak > best:
                best, where = streak, (step, err, output)
        if best >= LOOP_MIN and where is not None:
            step, err, output = where
            out.append(
                Observation(
                    "important",
                    "loop",
                    f"`{clip(cmd, 80)}` failed {best} times in a row: {clip(err, 80)}",
                    fingerprint("loop", cmd, err),
                    [_ev(s, step, output, err)],
                    {"command": cmd, "times": best},
                )
            )


def _edits(s, edits_by_file, out) -> None:
    for path, eds in edits_by_file.items():
        step0, first = eds[0]
        if first.kind in ("create",) or (first.kind == "write" and len(eds) == 1):
            text = first.new or path
            out.append(
                Observation(
                    "possible",
                    "test_added" if _TEST_FILE.search(path) else "file_created",
                    f"{'test added' if _TEST_FILE.search(path) else 'file written'}: {path}",
                    fingerprint("file", path),
                    [_ev(s, step0, _call_text(s, step0), text[:60] or None)],
                    {"file": path},
                )
            )
        elif _TEST_FILE.search(path):
            out.append(
                Observation(
                    "possible",
                    "test_added",
                    f"test edited: {path}",
                    fingerprint("test", path),
                    [_ev(s, step0, _call_text(s, step0))],
                    {"file": path},
                )
            )
        if len(eds) >= HEAVY_EDITS:
            out.append(
                Observation(
                    "possible",
                    "heavy_edit",
                    f"{path} edited {len(eds)} times",
                    fingerprint("heavy_edit", path),
                    [_ev(s, eds[-1][0], _call_text(s, eds[-1][0]))],
                    {"file": path, "edits": len(eds)},
                )
            )
        for i, (step, e) in enumerate(eds):
            if e.kind != "edit" or not e.old or not e.new:
                continue
            for _, earlier in eds[:i]:
                if earlier.kind == "edit" and earlier.old == e.new and earlier.new == e.old:
                    out.append(
                        Observation(
                            "important",
                            "reverted_edit",
                            f"an edit of {path} was reverted",
                            fingerprint("reverted_edit", path, e.new[:200]),
                            [_ev(s, step, _call_text(s, step), e.old[:80])],
                            {"file": path},
                        )
                    )
                    break


def _call_text(s: Session, step: int) -> str:
    """The content of a step as one text (what quotes are cut from)."""
    import json

    parts = []
    for p in s.steps[step].parts:
        if isinstance(p, Text):
            parts.append(p.text)
        elif isinstance(p, ToolCall):
            args = p.arguments
            parts.append(args if isinstance(args, str) else json.dumps(args, ensure_ascii=False))
        elif isinstance(p, ToolResult):
            parts.append(p.output)
    err = s.steps[step].error
    if err is not None:
        parts.append(err.message or err.kind)
    return "\n".join(parts)


def _agent_text(s, edits_by_file, out) -> None:
    files_edited = len(edits_by_file)
    seen: set[str] = set()
    for st in s.steps:
        if st.source != "agent":
            continue
        text = "\n".join(p.text for p in st.parts if isinstance(p, Text))
        if not text:
            continue
        for m in _HYPOTHESIS.finditer(text):
            sentence = m.group(0).strip()
            if len(sentence) < 15 or sentence in seen:
                continue
            seen.add(sentence)
            out.append(
                Observation(
                    "possible",
                    "hypothesis",
                    f"hypothesis: {clip(sentence, 140)}",
                    fingerprint("hypothesis", sentence),
                    [_ev(s, st.index, text, sentence[:QUOTE_MAX])],
                )
            )
        if files_edited >= 2 and _REFACTOR.search(text):
            m = _REFACTOR.search(text)
            out.append(
                Observation(
                    "possible",
                    "refactor",
                    f"refactor attempted across {files_edited} files",
                    fingerprint("refactor", *sorted(edits_by_file)[:5]),
                    [_ev(s, st.index, text, text[max(0, m.start() - 40) : m.start() + 60])],
                    {"files": sorted(edits_by_file)},
                )
            )


def _informational(s, reads, read_step, edits_by_file, out) -> None:
    from ..trace.model import summarize

    first = next(
        (
            st
            for st in s.steps
            if st.source == "user" and any(isinstance(p, Text) and p.text.strip() for p in st.parts)
        ),
        None,
    )
    if first is not None:
        text = "\n".join(p.text for p in first.parts if isinstance(p, Text))
        out.append(
            Observation(
                "informational",
                "goal",
                f"goal: {clip(text, 160)}",
                fingerprint("goal", text[:500]),
                [_ev(s, first.index, text)],
            )
        )
    sm = summarize(s)
    u = sm.usage
    if u.input or u.output or u.cache_read:
        cost = _cost(sm.models, u)
        out.append(
            Observation(
                "informational",
                "usage",
                f"tokens: in {u.input} out {u.output} cache {u.cache_read}/{u.cache_write}"
                + (f", ${cost:.4f}" if cost is not None else ""),
                fingerprint("usage", s.id),
                [],
                {
                    "input": u.input,
                    "output": u.output,
                    "cache_read": u.cache_read,
                    "cache_write": u.cache_write,
                    "cost_usd": cost,
                },
            )
        )
    secs = _wall(s)
    if secs is not None:
        out.append(
            Observation(
                "informational",
                "time",
                f"time spent: {secs:.0f} s over {sm.steps} steps",
                fingerprint("time", s.id),
                [],
                {"seconds": secs, "steps": sm.steps},
            )
        )
    for path, n in reads.items():
        if n >= 2 and path not in edits_by_file:
            step = read_step[path]
            out.append(
                Observation(
                    "informational",
                    "dead_end",
                    f"{path} read {n} times, never changed",
                    fingerprint("dead_end", path),
                    [_ev(s, step, _call_text(s, step), os.path.basename(path))],
                    {"file": path, "reads": n},
                )
            )


def _cost(models, usage) -> float | None:
    from ..index.stats import cost, price_for

    price = price_for(models[0]) if models else None
    return round(cost(usage, price), 6) if price else None


def _wall(s: Session) -> float | None:
    from ..coord.context import parse_iso
    from ..errors import FormatError

    try:
        if s.started and s.ended:
            return (parse_iso(s.ended) - parse_iso(s.started)).total_seconds()
    except FormatError:
        return None
    return None
