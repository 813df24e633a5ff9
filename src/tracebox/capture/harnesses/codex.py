"""Codex adapter: locate and parse rollout files (``~/.codex/sessions/yyyy/mm/dd/rollout-*.jsonl``).

Owns the mapping of Codex rollouts into the trace model (docs/adapters/codex.md):

* ``session_meta`` → the session's id, cwd, git branch/commit, CLI version;
  ``turn_context`` → the model (and cwd) of the steps that follow.
* Every ``response_item`` is one step: messages (user / assistant / developer),
  reasoning, function / custom / local-shell / web-search calls and their outputs.
* Usage: ``event_msg/token_count`` carries the session's **cumulative** totals, repeated
  after each response. Each increase of ``total_token_usage`` is one model response; its
  usage (the delta, equal to ``last_token_usage``) goes on the first step of that
  response. OpenAI counts cached tokens inside ``input_tokens`` and reasoning tokens
  inside ``output_tokens``: ``Usage.input`` is ``input_tokens - cached_input_tokens``.
* ``compacted`` → a ``Compaction`` and a system step with the summary; the items of its
  ``replacement_history`` become steps with ``copied=True``.
* ``event_msg`` records that repeat response items (agent/user messages, reasoning) and
  the other events are kept verbatim in ``Session.extra["events"]``; ``turn_aborted`` and
  ``error`` events also become system steps with a ``StepError``.
* Older rollouts (a bare meta line, then bare response items) parse the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from ...errors import FormatError
from ...trace.facts import _PATCH_FILE  # apply_patch's "*** Add|Update|Delete File: path"
from ...trace.model import (
    Attachment,
    Compaction,
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
from . import SessionFile
from ._jsonl import head_objects, iter_records, unknown_entry
from ._sources import iso

NAME = "codex"

RECORD_TYPES = frozenset(
    {"session_meta", "turn_context", "response_item", "event_msg", "compacted"}
)
ITEM_TYPES = frozenset(
    {
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "web_search_call",
        "ghost_snapshot",
        "compaction",
        "compaction_summary",
    }
)
_CALLS = frozenset({"function_call", "custom_tool_call", "local_shell_call", "web_search_call"})
_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})
_ERROR_EVENTS = {"turn_aborted": "aborted", "error": "error", "stream_error": "error"}
_EXIT = re.compile(r"(?:^|\n)(?:Exit code:|Process exited with code)\s*(-?\d+)")
_PATCH_MOVE = re.compile(r"^\*\*\* Move to: (.+)$", re.M)
_decode = msgspec.json.decode


# -- locate --------------------------------------------------------------------------------


def codex_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("CODEX_HOME") or os.path.join(env.get("HOME") or "~", ".codex")
    return Path(os.path.expanduser(base))


def locate(cwd: str | None = None, env: Mapping[str, str] | None = None) -> list[SessionFile]:
    """Rollouts under ``sessions/`` (yyyy/mm/dd) and ``archived_sessions/``, newest first;
    with ``cwd``, only those whose ``session_meta`` cwd is ``cwd`` or below it."""
    home = codex_home(env)
    want = os.path.normpath(cwd) if cwd else None
    found: list[SessionFile] = []
    for sub, pattern in (("sessions", "*/*/*/rollout-*.jsonl"), ("archived_sessions", "*.jsonl")):
        root = home / sub
        if not root.is_dir():
            continue
        for f in root.glob(pattern):
            if f.is_symlink() or not f.is_file():
                continue
            meta = _meta_of(f)
            if want and not _under(meta.get("cwd"), want):
                continue
            st = f.stat()
            found.append(
                SessionFile(
                    harness=NAME,
                    session_id=meta.get("id") or _id_from_name(f.stem),
                    path=str(f),
                    cwd=meta.get("cwd"),
                    mtime=st.st_mtime,
                    size=st.st_size,
                )
            )
    found.sort(key=lambda s: s.mtime, reverse=True)
    return found


def _meta_of(path: Path) -> dict[str, Any]:
    """The session_meta payload (first record of a rollout; older files: bare)."""
    for line in iter_records(path):
        d = line.data
        if d is None:
            continue
        if d.get("type") == "session_meta" and type(d.get("payload")) is dict:
            return d["payload"]
        if "type" not in d and "id" in d:
            return d
        return {}
    return {}


def _under(path: Any, root: str) -> bool:
    if type(path) is not str or not path:
        return False
    path = os.path.normpath(path)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _id_from_name(stem: str) -> str:
    # rollout-2026-02-23T12-40-23-<uuid>
    m = re.search(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", stem)
    return m.group(1) if m else stem


# -- sniff ---------------------------------------------------------------------------------


def sniff(head: bytes) -> bool:
    for d in head_objects(head):
        if _str(d.get("type")) in RECORD_TYPES and "payload" in d:
            return True
        if "type" not in d and "id" in d and ("instructions" in d or "git" in d):
            return True  # the meta line of an older rollout
    return b'"type":"session_meta","payload":' in head[:200]


# -- parse ---------------------------------------------------------------------------------


def parse(path: str | os.PathLike) -> Session:
    p = Path(path)
    b = _Builder()
    for line in iter_records(p):
        d = line.data
        if d is None:
            b.session.unknown.append(unknown_entry(line))
            continue
        if line.error:
            b.warnings.append({"line": line.no, "error": line.error})
        b.record(d)
    if not b.seen_any and b.session.unknown:
        raise FormatError(f"{p}: no Codex records (not a Codex rollout?)")
    s = b.finish(default_id=_id_from_name(p.stem))
    s.source_path = str(p)
    return s


class _Builder:
    def __init__(self) -> None:
        self.session = Session(id="", harness=NAME)
        self.steps: list[Step] = []
        self.models: dict[str, None] = {}
        self.files: dict[str, None] = {}
        self.events: list[dict[str, Any]] = []
        self.contexts: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self.results: dict[str, ToolResult] = {}
        self.model: str | None = None
        self.total: dict[str, Any] | None = None  # last cumulative token usage
        self.response = 0  # ordinal of the model response being written
        self.pending: Step | None = None  # first step of the current response
        self.started: str | None = None
        self.ended: str | None = None
        self.seen_any = False

    def record(self, d: dict[str, Any]) -> None:
        t = _str(d.get("type"))
        ts = iso(d.get("timestamp"))
        if type(ts) is str:
            if self.started is None or ts < self.started:
                self.started = ts
            if self.ended is None or ts > self.ended:
                self.ended = ts
        p = d.get("payload")
        if t not in RECORD_TYPES or type(p) is not dict:
            if t in ITEM_TYPES:  # older rollouts: bare response items
                self.seen_any = True
                self._item(d, _str(ts))
            elif "type" not in d and "id" in d and not self.seen_any:
                self.seen_any = True
                self._session_meta(d)
            elif d.get("record_type") == "state":
                self.events.append(d)
            else:
                self.session.unknown.append(d)
            return
        self.seen_any = True
        if t == "response_item":
            self._item(p, _str(ts))
        elif t == "event_msg":
            self._event(p, d, _str(ts))
        elif t == "turn_context":
            self.contexts.append(p)
            m = p.get("model")
            if type(m) is str and m:
                self.model = m
        elif t == "session_meta":
            self._session_meta(p)
        else:
            self._compacted(p, _str(ts))

    def _session_meta(self, p: dict[str, Any]) -> None:
        s = self.session
        if s.id:  # a resumed/forked rollout repeats metas: keep the first, remember the rest
            self.events.append({"type": "session_meta", "payload": p})
            return
        s.id = _str(p.get("id")) or ""
        s.cwd = _str(p.get("cwd"))
        s.agent_version = _str(p.get("cli_version"))
        git = p.get("git")
        if type(git) is dict:
            s.git_branch = _str(git.get("branch"))
            s.git_commit = _str(git.get("commit_hash"))
        s.extra = {k: v for k, v in p.items() if k not in ("id", "cwd", "cli_version")}

    # response items --------------------------------------------------------------

    def _item(self, p: dict[str, Any], ts: str | None, copied: bool = False) -> None:
        it = _str(p.get("type"))
        step = Step(index=len(self.steps), source="agent", timestamp=ts, copied=copied)
        step.id = _str(p.get("id"))
        extra: dict[str, Any] = {}
        if it == "message":
            role = p.get("role")
            step.parts = _content(p.get("content"))
            if role == "assistant":
                self._agent(step)
            else:
                step.source = "user" if role == "user" else "system"
            extra = _rest(p, ("type", "role", "content", "id"))
        elif it == "reasoning":
            texts = [_str(x.get("text")) or "" for x in _dicts(p.get("summary"))]
            texts += [_str(x.get("text")) or "" for x in _dicts(p.get("content"))]
            text = "\n".join(t for t in texts if t)
            step.parts = [Reasoning(text=text, redacted=not text and "encrypted_content" in p)]
            self._agent(step)
            extra = _rest(p, ("type", "summary", "content", "id"))
        elif it in _CALLS:
            step.parts = [self._call(it, p)]
            self._agent(step)
            extra = _rest(p, ("type", "id", "call_id", "name", "arguments", "input", "action"))
        elif it in _OUTPUTS:
            step.source = "tool"
            result, meta = _output(_str(p.get("call_id")) or "", p.get("output"))
            self.results[result.call_id] = result
            step.parts = [result]
            extra = _rest(p, ("type", "call_id", "output"))
            if meta is not None:
                extra["output_metadata"] = meta
        else:  # ghost snapshots, encrypted compaction items, future item types
            step.source = "system"
            extra = {"item": p}
        if extra:
            step.extra = extra
        self.steps.append(step)

    def _agent(self, step: Step) -> None:
        step.model = self.model
        if self.model:
            self.models.setdefault(self.model)
        step.response_id = f"response-{self.response}"
        if self.pending is None:
            self.pending = step

    def _call(self, it: str, p: dict[str, Any]) -> ToolCall:
        call_id = _str(p.get("call_id")) or _str(p.get("id")) or f"{it}-{len(self.steps)}"
        if it == "function_call":
            name = _str(p.get("name")) or ""
            args = p.get("arguments")
            if type(args) is str:
                try:
                    args = _decode(args)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                    pass
        elif it == "custom_tool_call":
            name = _str(p.get("name")) or ""
            args = p.get("input")
        elif it == "local_shell_call":
            name, args = "local_shell", p.get("action")
        else:
            name, args = "web_search", p.get("action")
        self._files(name, args)
        return ToolCall(id=call_id, name=name, arguments=args)

    def _files(self, name: str, args: Any) -> None:
        patch = None
        if name == "apply_patch":
            patch = args if type(args) is str else None
            if type(args) is dict:
                patch = _str(args.get("input")) or _str(args.get("patch"))
        elif type(args) is dict:  # shell calls that run apply_patch with a heredoc
            cmd = args.get("command")
            if type(cmd) is list and cmd and "apply_patch" in cmd[0:2]:
                patch = _str(cmd[-1])
        if patch:
            for m in _PATCH_FILE.finditer(patch):
                self.files.setdefault(m.group(2).strip())
            for m in _PATCH_MOVE.finditer(patch):
                self.files.setdefault(m.group(1).strip())

    # events ----------------------------------------------------------------------

    def _event(self, p: dict[str, Any], d: dict[str, Any], ts: str | None) -> None:
        et = _str(p.get("type"))
        self.events.append(d)
        if et == "token_count":
            self._tokens(p, ts)
        elif et in _ERROR_EVENTS:
            msg = _str(p.get("message")) or _str(p.get("reason")) or ""
            step = Step(index=len(self.steps), source="system", timestamp=ts)
            step.error = StepError(kind=_ERROR_EVENTS[et], message=msg)
            step.extra = {"event": p}
            self.steps.append(step)
        elif et == "exec_command_end":
            r = self.results.get(_str(p.get("call_id")) or "")
            code = p.get("exit_code")
            if r is not None and type(code) is int:
                r.exit_code = code
                r.is_error = code != 0

    def _tokens(self, p: dict[str, Any], ts: str | None) -> None:
        info = p.get("info")
        if type(info) is not dict:
            return
        total = info.get("total_token_usage")
        last = info.get("last_token_usage")
        prev = self.total
        if type(total) is dict:
            if total == prev:
                return  # the same totals repeated after a turn: not a new response
            self.total = total
            if prev is not None and all(_n(total, k) >= _n(prev, k) for k in total):
                raw = {k: _n(total, k) - _n(prev, k) for k in total}
            elif type(last) is dict:
                raw = last
            else:
                raw = total
        elif type(last) is dict:
            raw = last
        else:
            return
        usage = _usage(raw)
        step = self.pending
        if step is None:  # usage with no response item (a compaction call...): own step
            step = Step(index=len(self.steps), source="system", timestamp=ts)
            step.response_id = f"response-{self.response}"
            step.extra = {"token_count": p}
            self.steps.append(step)
        step.usage = usage
        self.response += 1
        self.pending = None

    def _compacted(self, p: dict[str, Any], ts: str | None) -> None:
        self.session.compactions.append(
            Compaction(at_step=len(self.steps), timestamp=ts, trigger=_str(p.get("trigger")))
        )
        step = Step(index=len(self.steps), source="system", timestamp=ts, copied=True)
        msg = _str(p.get("message"))
        if msg:
            step.parts = [Text(text=msg)]
        rest = _rest(p, ("message", "replacement_history"))
        if rest:
            step.extra = rest
        self.steps.append(step)
        for item in _dicts(p.get("replacement_history")):
            self._item(item, ts, copied=True)

    def finish(self, default_id: str) -> Session:
        s = self.session
        s.id = s.id or default_id
        s.models = list(self.models)
        s.files_touched = list(self.files)
        s.steps = self.steps
        s.started, s.ended = self.started, self.ended
        extra = s.extra or {}
        if self.events:
            extra["events"] = self.events
        if self.contexts:
            extra["turn_contexts"] = self.contexts
        if self.warnings:
            extra["warnings"] = self.warnings
        s.extra = extra or None
        return s


# -- helpers ---------------------------------------------------------------------------------


def _str(v: Any) -> str | None:
    return v if type(v) is str else None


def _n(d: dict[str, Any], k: str) -> int:
    v = d.get(k)
    return v if type(v) is int and v > 0 else 0


def _dicts(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if type(x) is dict] if type(v) is list else []


def _rest(p: dict[str, Any], mapped: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k not in mapped}


def _usage(u: dict[str, Any]) -> Usage:
    inp = _n(u, "input_tokens")
    cached = min(_n(u, "cached_input_tokens"), inp)
    return Usage(
        input=inp - cached,
        output=_n(u, "output_tokens"),
        cache_read=cached,
        reasoning=_n(u, "reasoning_output_tokens"),
    )


def _content(items: Any) -> list[Part]:
    if type(items) is str:
        return [Text(text=items)]
    parts: list[Part] = []
    for x in _dicts(items):
        t = x.get("type")
        if t in ("input_text", "output_text", "text"):
            parts.append(Text(text=_str(x.get("text")) or ""))
        elif t == "input_image":
            parts.append(_image(x))
    return parts


def _image(x: dict[str, Any]) -> Attachment:
    url = _str(x.get("image_url")) or ""
    if url.startswith("data:"):
        media = url[5:].split(";", 1)[0]
        return Attachment(
            media_type=media,
            ref="sha256:" + hashlib.sha256(url.encode()).hexdigest(),
            size=len(url),
        )
    return Attachment(ref=url)


def _output(call_id: str, out: Any) -> tuple[ToolResult, dict[str, Any] | None]:
    """A tool output: a string (maybe JSON ``{output, metadata: {exit_code...}}``), content
    items, or ``{content, success}``. Returns the result and the JSON form's metadata."""
    is_error: bool | None = None
    exit_code: int | None = None
    meta: dict[str, Any] | None = None
    if type(out) is dict:
        success = out.get("success")
        if type(success) is bool:
            is_error = not success
        out = out.get("content")
    if type(out) is list:
        text = "\n".join(_str(x.get("text")) or "" for x in _dicts(out) if "text" in x)
    elif type(out) is str:
        text = out
        if text.startswith("{") and '"metadata"' in text:
            try:
                j = _decode(text)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                j = None
            if type(j) is dict and type(j.get("metadata")) is dict:
                meta = j["metadata"]
                code = meta.get("exit_code")
                if type(code) is int:
                    exit_code = code
                if type(j.get("output")) is str:
                    text = j["output"]
        if exit_code is None:
            m = _EXIT.search(text[:2048])
            if m:
                exit_code = int(m.group(1))
    else:
        text = "" if out is None else str(out)
    if exit_code is not None and is_error is None:
        is_error = exit_code != 0
    result = ToolResult(call_id=call_id, output=text, is_error=is_error, exit_code=exit_code)
    return result, meta
