"""Agent hooks: coding agents call ``tracebox session mirror`` themselves as sessions run.

Owns two things (docs/mirror.md, "Hooks"):

1. **Installing** tracebox into each agent's own configuration, merged into what is
   there, idempotent, with a backup of the file before every change, and removed again
   without touching anything else:

   * Claude Code — ``settings.json`` (``$CLAUDE_CONFIG_DIR`` or ``~/.claude`` for the
     user scope, ``<project>/.claude/`` for the project scope) gets one matcher group
     ``{"hooks": [{"type": "command", "command": …}]}`` under each of ``SessionEnd``,
     ``Stop`` and ``PreCompact``.
   * Codex — ``config.toml`` (``$CODEX_HOME`` or ``~/.codex``) gets the top-level
     ``notify = [...]`` program, which Codex runs after every turn with a JSON argument
     (``type: "agent-turn-complete"``, ``thread-id``, ``cwd``, ...). Codex runs a single
     notify program, so an existing one that is not tracebox's is never replaced.
     (Codex's newer lifecycle hooks run only once the user trusts each one by hash, so
     they cannot be installed unattended.)

2. **Running** as the hook: ``handle()`` reads the agent's JSON (Claude: stdin; Codex:
   the last argument), starts ``tracebox session mirror`` for that session as a detached
   background process and returns at once. It never raises and never makes the agent
   wait: problems go to ``$XDG_STATE_HOME/tracebox/hooks.log``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..dirs import user_dir
from ..errors import ConfigError, Refused, UsageError

AGENTS = ("claude-code", "codex")
CLAUDE_EVENTS = ("SessionEnd", "Stop", "PreCompact")
CLAUDE_TIMEOUT_S = 30  # the hook returns in well under a second; this only bounds a hang
MAX_PAYLOAD = 1 << 20
MAX_LOG = 1 << 20
_CODEX_MARK = "# added by `tracebox hooks install codex`: mirror the session after every turn"
_OURS = re.compile(r"tracebox\S*\s+session\s+mirror\s+--hook\b")


def tracebox_argv() -> list[str]:
    """How an agent should start this tracebox: the console script next to this Python
    (so it works even when the agent's PATH differs), else ``python -m tracebox``."""
    script = Path(sys.executable).parent / "tracebox"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tracebox"]


def hook_argv(harness: str) -> list[str]:
    return [*tracebox_argv(), "session", "mirror", "--hook", "--harness", harness]


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def project_dir(start: str | None = None) -> Path:
    """The project's folder: where .tracebox.toml is, else the working directory."""
    from ..config import CONFIG_NAME, find_config

    try:
        cfg = find_config(start)
    except ConfigError:
        cfg = None
    if cfg is not None and cfg.name == CONFIG_NAME:
        return cfg.parent
    return Path(start or os.getcwd()).resolve()


def claude_settings_path(
    scope: str, *, env: Mapping[str, str] | None = None, project: Path | None = None
) -> Path:
    env = _env(env)
    if scope == "project":
        return (project or project_dir()) / ".claude" / "settings.json"
    base = env.get("CLAUDE_CONFIG_DIR")
    return (Path(base).expanduser() if base else _home(env) / ".claude") / "settings.json"


def codex_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = _env(env)
    base = env.get("CODEX_HOME")
    return (Path(base).expanduser() if base else _home(env) / ".codex") / "config.toml"


# -- editing files safely ----------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > 16 << 20:
        raise UsageError(f"{path} is larger than 16 MiB; refusing to edit it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; refusing to edit it") from None


def _write(path: Path, old: str | None, new: str) -> str | None:
    """Write ``new`` atomically (to the real file if ``path`` is a symlink), keeping the
    old content in a timestamped backup first; returns the backup's path."""
    real = Path(os.path.realpath(path))
    backup = None
    mode = 0o600
    if old is not None:
        mode = real.stat().st_mode & 0o777
        stem = f"{real.name}.tracebox-backup-{time.strftime('%Y%m%dT%H%M%S')}"
        backup, n = real.with_name(stem), 1
        while backup.exists():
            n += 1
            backup = real.with_name(f"{stem}-{n}")
        backup.write_text(old, encoding="utf-8")
        os.chmod(backup, mode)
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = real.with_name(f".{real.name}.tracebox-{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, real)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    return str(backup) if backup else None


def _diff(path: Path, old: str | None, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=str(path) if old is not None else "/dev/null",
            tofile=str(path),
        )
    )


@dataclass
class Change:
    agent: str
    scope: str
    path: str
    action: str  # install | uninstall
    changed: bool
    dry_run: bool
    backup: str | None = None
    diff: str = ""
    command: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# -- Claude Code: settings.json -------------------------------------------------------------


def _is_ours(hook) -> bool:
    return (
        isinstance(hook, dict)
        and hook.get("type") == "command"
        and isinstance(hook.get("command"), str)
        and bool(_OURS.search(hook["command"]))
    )


def _claude_doc(path: Path, text: str | None) -> dict:
    if text is None or not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise UsageError(
            f"{path} is not valid JSON ({e}); fix it before installing hooks"
        ) from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path} is not a JSON object; refusing to edit it")
    hooks = doc.get("hooks", {})
    if not isinstance(hooks, dict) or any(
        not isinstance(hooks.get(ev, []), list) for ev in CLAUDE_EVENTS
    ):
        raise UsageError(f"{path}: 'hooks' is not in the shape Claude Code uses; edit it by hand")
    return doc


def _group_hooks(group) -> list:
    hooks = group.get("hooks") if isinstance(group, dict) else None
    return hooks if isinstance(hooks, list) else []


def _claude_strip(groups: list, keep: str | None) -> list:
    """``groups`` without tracebox's hooks (except one whose command is ``keep``)."""
    out = []
    for g in groups:
        if not isinstance(g, dict) or not isinstance(g.get("hooks"), list):
            out.append(g)
            continue
        hooks = [h for h in g["hooks"] if not _is_ours(h) or h.get("command") == keep]
        if hooks or len(hooks) == len(g["hooks"]):
            out.append({**g, "hooks": hooks} if len(hooks) != len(g["hooks"]) else g)
    return out


def _claude_install(doc: dict, command: str) -> dict:
    doc = json.loads(json.dumps(doc))  # a deep copy: the old doc is compared against
    hooks = doc.setdefault("hooks", {})
    for ev in CLAUDE_EVENTS:
        groups = _claude_strip(hooks.get(ev, []), keep=command)
        if not any(_is_ours(h) for g in groups for h in _group_hooks(g)):
            groups.append(
                {"hooks": [{"type": "command", "command": command, "timeout": CLAUDE_TIMEOUT_S}]}
            )
        hooks[ev] = groups
    return doc


def _claude_uninstall(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    hooks = doc.get("hooks")
    if not isinstance(hooks, dict):
        return doc
    for ev in CLAUDE_EVENTS:
        if ev in hooks:
            groups = _claude_strip(hooks[ev], keep=None)
            if groups:
                hooks[ev] = groups
            else:
                del hooks[ev]
    if not hooks:
        del doc["hooks"]
    return doc


def _claude_text(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# -- Codex: config.toml ---------------------------------------------------------------------


def _toml(path: Path, text: str | None) -> dict:
    import tomllib

    try:
        return tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML ({e}); fix it before installing") from None


def _is_our_notify(value) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(v, str) for v in value)
        and bool(_OURS.search(" ".join(value)))
    )


def _codex_remove_notify(path: Path, text: str) -> str:
    """``text`` without its top-level ``notify = …`` (and tracebox's comment line)."""
    import tomllib

    lines = text.splitlines(keepends=True)
    start = next(
        (i for i, line in enumerate(lines) if re.match(r"notify\s*=", line)),
        None,
    )
    if start is None:
        raise Refused(f"cannot find the notify line in {path}; edit it by hand")
    for end in range(start + 1, len(lines) + 1):
        try:
            if "notify" in tomllib.loads("".join(lines[start:end])):
                break
        except tomllib.TOMLDecodeError:
            continue
    else:
        raise Refused(f"cannot find where notify ends in {path}; edit it by hand")
    if start > 0 and lines[start - 1].strip() == _CODEX_MARK:
        start -= 1  # our own block: its comment and the blank line install put after it
        if end < len(lines) and not lines[end].strip():
            end += 1
    return "".join(lines[:start] + lines[end:])


def _codex_edit(path: Path, text: str | None, argv: list[str] | None) -> str:
    """The new config text with tracebox's notify set (``argv``) or removed (None)."""
    data = _toml(path, text)
    cur = data.get("notify")
    text = text or ""
    if argv is not None and cur == argv:
        return text
    if cur is not None and not _is_our_notify(cur):
        if argv is None:
            return text
        raise Refused(
            f"{path} already has notify = {json.dumps(cur)}; Codex runs one notify program, "
            "so tracebox will not replace it (remove it, or call `tracebox session mirror "
            "--hook --harness codex` from your own notify program with its JSON argument)"
        )
    if cur is not None:
        text = _codex_remove_notify(path, text)
    if argv is not None:
        head = f"{_CODEX_MARK}\nnotify = {json.dumps(argv, ensure_ascii=False)}\n"
        text = head + ("\n" if text.strip() else "") + text.lstrip("\n")
    want = {k: v for k, v in data.items() if k != "notify"}
    if argv is not None:
        want["notify"] = argv
    if _toml(path, text) != want:
        raise Refused(f"could not edit {path} safely; edit notify by hand")
    return text


# -- install / uninstall / status -----------------------------------------------------------


def _target(agent: str, scope: str, env, project: Path | None) -> Path:
    if agent not in AGENTS:
        raise UsageError(f"unknown agent {agent!r}; hooks exist for: {', '.join(AGENTS)}")
    if scope not in ("user", "project"):
        raise UsageError(f"unknown scope {scope!r}; use user or project")
    if agent == "codex":
        if scope == "project":
            raise UsageError("Codex reads notify from ~/.codex/config.toml only: use --scope user")
        return codex_config_path(env)
    return claude_settings_path(scope, env=env, project=project)


def _apply(
    agent: str,
    scope: str,
    install: bool,
    *,
    dry_run: bool,
    env: Mapping[str, str] | None,
    project: Path | None,
) -> Change:
    path = _target(agent, scope, env, project)
    old = _read(path)
    argv = hook_argv(agent)
    if agent == "codex":
        new = _codex_edit(path, old, argv if install else None)
        changed = new != (old or "")
    else:
        doc = _claude_doc(path, old)
        want = _claude_install(doc, shlex.join(argv)) if install else _claude_uninstall(doc)
        changed = want != doc
        new = _claude_text(want) if changed else (old or "")
    ch = Change(
        agent,
        scope,
        str(path),
        "install" if install else "uninstall",
        changed,
        dry_run,
        command=shlex.join(argv),
        diff=_diff(path, old, new) if changed else "",
    )
    if changed and not dry_run:
        ch.backup = _write(path, old, new)
    return ch


def install(
    agent: str,
    scope: str = "user",
    *,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    project: Path | None = None,
) -> Change:
    """Add tracebox's hook to ``agent``'s config (no change if it is already there)."""
    return _apply(agent, scope, True, dry_run=dry_run, env=env, project=project)


def uninstall(
    agent: str,
    scope: str = "user",
    *,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    project: Path | None = None,
) -> Change:
    """Remove tracebox's hook (only tracebox's) from ``agent``'s config."""
    return _apply(agent, scope, False, dry_run=dry_run, env=env, project=project)


def status(env: Mapping[str, str] | None = None, project: Path | None = None) -> list[dict]:
    """Where tracebox's hooks are installed: one row per agent config file."""
    rows = []
    for scope in ("user", "project"):
        path = claude_settings_path(scope, env=env, project=project)
        row = {"agent": "claude-code", "scope": scope, "path": str(path), "events": []}
        try:
            doc = _claude_doc(path, _read(path))
        except UsageError as e:
            row["error"] = str(e)
            doc = {}
        for ev in CLAUDE_EVENTS:
            for g in (doc.get("hooks") or {}).get(ev, []):
                if any(_is_ours(h) for h in _group_hooks(g)):
                    row["events"].append(ev)
                    break
        row["installed"] = row["events"] == list(CLAUDE_EVENTS)
        rows.append(row)
    path = codex_config_path(env)
    row = {"agent": "codex", "scope": "user", "path": str(path), "events": []}
    try:
        notify = _toml(path, _read(path)).get("notify")
    except UsageError as e:
        row["error"] = str(e)
        notify = None
    if _is_our_notify(notify):
        row["events"] = ["agent-turn-complete"]
    row["installed"] = bool(row["events"])
    rows.append(row)
    return rows


# -- running as the hook --------------------------------------------------------------------


@dataclass(frozen=True)
class HookCall:
    """What one hook invocation asks for."""

    harness: str
    event: str
    session_id: str
    path: str | None  # the transcript, when the agent says where it is
    cwd: str | None
    final: bool  # the session ended: also mirror an unfinished last line


def log_path() -> str:
    return user_dir("state", "hooks.log")


def _str(doc: dict, key: str, limit: int = 4096) -> str | None:
    v = doc.get(key)
    return v if isinstance(v, str) and 0 < len(v) <= limit and "\0" not in v else None


def parse_claude(data: bytes) -> HookCall | None:
    """A Claude Code hook's stdin JSON (``session_id``, ``transcript_path``, ``cwd``,
    ``hook_event_name``); None for an event tracebox does not act on."""
    doc = _json_object(data)
    event = _str(doc, "hook_event_name") or ""
    if event not in CLAUDE_EVENTS:
        return None
    sid, path = _str(doc, "session_id", 256), _str(doc, "transcript_path")
    if not sid or not path:
        raise UsageError(f"{event} hook input has no session_id or transcript_path")
    return HookCall(
        "claude-code",
        event,
        sid,
        os.path.expanduser(path),
        _str(doc, "cwd"),
        event == "SessionEnd",
    )


def parse_codex(data: bytes) -> HookCall | None:
    """Codex's notify JSON (``type``, ``thread-id``, ``cwd``); None for other types."""
    doc = _json_object(data)
    if doc.get("type") != "agent-turn-complete":
        return None
    sid = _str(doc, "thread-id", 256)
    if not sid:
        raise UsageError("agent-turn-complete notification has no thread-id")
    return HookCall("codex", "agent-turn-complete", sid, None, _str(doc, "cwd"), False)


def _json_object(data: bytes) -> dict:
    if len(data) > MAX_PAYLOAD:
        raise UsageError(f"hook input is larger than {MAX_PAYLOAD} bytes")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise UsageError(f"hook input is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise UsageError("hook input is not a JSON object")
    return doc


def read_stdin(limit: int = MAX_PAYLOAD, timeout: float = 5.0) -> bytes:
    """Up to ``limit`` bytes of stdin, giving up after ``timeout`` seconds (a hook must
    never hang on an input that does not come); nothing if stdin is a terminal."""
    import select

    try:
        fd = sys.stdin.fileno()
        if os.isatty(fd):
            return b""
    except (AttributeError, OSError, ValueError):
        return b""
    chunks, got = [], 0
    deadline = time.monotonic() + timeout
    while got <= limit:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def mirror_argv(call: HookCall) -> list[str]:
    """The background command that mirrors what ``call`` asks for."""
    argv = [sys.executable, "-m", "tracebox", "session", "mirror", "--harness", call.harness]
    if call.path:
        argv += ["--session", call.path]
    argv += ["--session-id", call.session_id]
    if call.final:
        argv.append("--final")
    return argv


def _log(line: str) -> None:
    path = log_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.getsize(path) > MAX_LOG:
            os.replace(path, path + ".1")
    except OSError:
        pass
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {line}\n")
    except OSError:
        pass


def handle(harness: str | None, args: tuple[str, ...] | list[str], stdin: bytes) -> None:
    """Run as an agent's hook: start the mirror in the background and return at once.
    Never raises; what went wrong is written to ``log_path()``."""
    try:
        if harness == "codex" or (harness is None and args):
            call = parse_codex(args[-1].encode("utf-8", "surrogateescape") if args else b"")
        else:
            call = parse_claude(stdin)
        if call is None:
            return
        cwd = call.cwd if call.cwd and os.path.isdir(call.cwd) else None
        argv = mirror_argv(call)
        _log(f"{call.harness} {call.event} {call.session_id}: {shlex.join(argv[3:])}")
        try:
            with open(log_path(), "ab") as log:
                subprocess.Popen(
                    argv,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # outlives the agent's hook and its timeout
                    close_fds=True,
                )
        except OSError as e:
            _log(f"cannot start the mirror: {e}")
    except Exception as e:  # noqa: BLE001 - a hook must never fail the agent
        _log(f"hook error ({harness or 'unknown agent'}): {' '.join(str(e).split())}")
