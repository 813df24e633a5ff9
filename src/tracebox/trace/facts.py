"""What happened in a session, in terms every agent shares: commands, reads, edits, failures.

Agents name their tools differently (Claude Code's ``Bash``/``Read``/``Edit``, Codex's
``exec_command``/``apply_patch``, Gemini CLI's ``run_shell_command``/``read_file``/
``replace``, …). These pure helpers read the trace model's tool calls and results the
same way for all of them; the capsule builder and the observer both use them.

* ``calls(s)`` — tool-call id → (step index, ToolCall); ``results(s)`` — id → (step, result);
* ``command_of(call)`` — the shell command of a shell tool, else None;
* ``failed(result)`` — did it fail? (exit code when known, else ``is_error``, except a
  call the user declined or interrupted);
* ``read_path(call)`` and ``edit_of(call)`` — the file a read or an edit was about,
  and for edits the kind (``create``/``write``/``edit``/``patch``) and the old/new text.
"""

from __future__ import annotations

import re

import msgspec

from .model import Session, ToolCall, ToolResult

SHELL_TOOLS = frozenset(
    {"bash", "shell", "exec_command", "run_shell_command", "local_shell", "terminal", "exec"}
)
READ_TOOLS = frozenset(
    {"read", "read_file", "view", "readfile", "open_file", "cat", "read_many_files"}
)
WRITE_TOOLS = frozenset({"write", "write_file", "create_file", "create"})
EDIT_TOOLS = frozenset(
    {
        "edit",
        "multiedit",
        "str_replace",
        "str_replace_editor",
        "replace",
        "edit_file",
        "apply_patch",
    }
)
_PATH_KEYS = ("file_path", "absolute_path", "path", "filePath", "filename", "target_file")
_NOT_FAILURES = re.compile(
    r"doesn.t want to proceed|user (?:rejected|denied|declined)|interrupted by user"
    r"|Request interrupted",
    re.I,
)
_PATCH_FILE = re.compile(r"^\*\*\* (Add|Update|Delete) File: (.+)$", re.M)


def calls(session: Session) -> dict[str, tuple[int, ToolCall]]:
    out: dict[str, tuple[int, ToolCall]] = {}
    for st in session.steps:
        for p in st.parts:
            if isinstance(p, ToolCall):
                out.setdefault(p.id, (st.index, p))
    return out


def results(session: Session) -> dict[str, tuple[int, ToolResult]]:
    out: dict[str, tuple[int, ToolResult]] = {}
    for st in session.steps:
        for p in st.parts:
            if isinstance(p, ToolResult):
                out.setdefault(p.call_id, (st.index, p))
    return out


def command_of(call: ToolCall | None) -> str | None:
    """The shell command of a shell-like tool call, else None."""
    if call is None or call.name.lower() not in SHELL_TOOLS:
        return None
    args = call.arguments
    if isinstance(args, dict):
        cmd = args.get("command") if "command" in args else args.get("cmd")
        if isinstance(cmd, list):
            cmd = " ".join(str(c) for c in cmd)
        if isinstance(cmd, str):
            if cmd.startswith(("bash -lc ", "bash -c ")) and len(cmd.split(" ", 2)) == 3:
                inner = cmd.split(" ", 2)[2]
                if len(inner) > 1 and inner[0] == inner[-1] and inner[0] in "'\"":
                    cmd = inner[1:-1]
            return cmd.strip() or None
    return args.strip() or None if isinstance(args, str) else None


def failed(r: ToolResult) -> bool:
    if r.exit_code is not None:
        return r.exit_code != 0
    return bool(r.is_error) and not _NOT_FAILURES.search(r.output[:2000])


def _path(args: object) -> str | None:
    if isinstance(args, dict):
        for k in _PATH_KEYS:
            v = args.get(k)
            if isinstance(v, str) and v:
                return v
    return None


def read_path(call: ToolCall) -> str | None:
    return _path(call.arguments) if call.name.lower() in READ_TOOLS else None


class Edit(msgspec.Struct, frozen=True):
    path: str
    kind: str  # "create", "write", "edit", "patch"
    old: str = ""
    new: str = ""


def edit_of(call: ToolCall) -> list[Edit]:
    """The files a write/edit/patch tool call changed (empty for other tools)."""
    name, args = call.name.lower(), call.arguments
    if name in WRITE_TOOLS:
        path = _path(args)
        content = args.get("content") if isinstance(args, dict) else None
        return (
            [Edit(path, "write", "", content if isinstance(content, str) else "")] if path else []
        )
    if name == "apply_patch":
        text = (
            args
            if isinstance(args, str)
            else (args or {}).get("input")
            if isinstance(args, dict)
            else None
        )
        if not isinstance(text, str):
            return []
        kinds = {"Add": "create", "Update": "patch", "Delete": "patch"}
        return [Edit(m[2].strip(), kinds[m[1]]) for m in _PATCH_FILE.finditer(text)]
    if name in EDIT_TOOLS:
        path = _path(args)
        if not path or not isinstance(args, dict):
            return []
        if isinstance(args.get("edits"), list):  # MultiEdit
            return [
                Edit(path, "edit", str(e.get("old_string", "")), str(e.get("new_string", "")))
                for e in args["edits"]
                if isinstance(e, dict)
            ]
        old = args.get("old_string", args.get("old_str", ""))
        new = args.get("new_string", args.get("new_str", ""))
        return [Edit(path, "edit", str(old or ""), str(new or ""))]
    return []
