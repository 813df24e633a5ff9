"""The Python API: ``open_project()`` returns a ``Project`` whose methods mirror the CLI.

    import tracebox
    p = tracebox.open_project("./runs", project="demo", agent="alice")
    lease = p.claim("build", ttl="15m")
    p.complete("build", note="done", to="bob")
    p.memory.set("build.status", {"ok": True})
    p.send("bob", "build is green")

The CLI (``tracebox.cli``) is a thin face over exactly these methods.
"""

from __future__ import annotations

import getpass
import importlib
import os
import time
from datetime import datetime

from .bucket.store import Store, open_bucket
from .config import Settings, load_settings, parse_duration
from .coord.context import FORMAT_VERSION, Ctx, check_name, iso, now
from .errors import ConfigError, FormatError, NotFound


class _Lazy:
    """A coord module imported on first use: a CLI call loads only what it runs."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(f"tracebox.coord.{self._name}"), attr)


_agents, _artifacts, _events = _Lazy("agents"), _Lazy("artifacts"), _Lazy("events")
_mailbox, _memory, _steps = _Lazy("mailbox"), _Lazy("memory"), _Lazy("steps")

_HEARTBEAT_EVERY = 10.0  # seconds between automatic heartbeats from one process


def default_agent() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "agent"
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in user) or "agent"


def _seconds(v, what: str) -> float:
    return parse_duration(v, what=what) if isinstance(v, str) else float(v)


class _Namespace:
    """Groups methods the way the CLI groups subcommands (``p.memory.set`` ↔ ``memory set``)."""

    def __init__(self, project: Project, module, names: dict[str, str]):
        self._p, self._m, self._names = project, module, names

    def __getattr__(self, name):
        if name not in self._names:
            raise AttributeError(name)
        fn = getattr(self._m, self._names[name])

        def call(*a, **kw):
            return self._p._run(name, fn, *a, **kw)

        call.__doc__ = fn.__doc__
        return call

    def __dir__(self):
        return list(self._names)


class Project:
    """One agent's handle on one project in one bucket."""

    def __init__(self, store: Store, name: str, agent: str, settings: Settings):
        self.store, self.name, self.agent, self.settings = store, name, agent, settings
        racy = settings.allow_racy_claims
        allowed = racy or (store.supports_cas and settings.cas_verified is not False)
        why = (
            f"claims are disabled: {store.url} has no working conditional writes, so two "
            "agents could both win a step; use an S3/GCS/Azure/local bucket, or pass "
            "--allow-racy-claims to `tracebox init` to accept races"
        )
        self.ctx = Ctx(
            store,
            name,
            agent,
            skew=settings.skew,
            alive_after=settings.alive_after,
            claims_allowed=allowed,
            claims_refusal="" if allowed else why,
            config=settings.raw,
        )
        self._last_beat = 0.0
        self.memory = _Namespace(
            self,
            _memory,
            {
                "set": "set",
                "get": "get",
                "list": "list_keys",
                "delete": "delete",
                "history": "history",
            },
        )
        self.artifact = _Namespace(
            self,
            _artifacts,
            {
                "upload": "upload",
                "download": "download",
                "list": "list_latest",
                "versions": "versions",
            },
        )

    def __repr__(self) -> str:
        return f"<Project {self.name!r} agent={self.agent!r} bucket={self.store.url!r}>"

    @property
    def warnings(self) -> list[str]:
        return self.ctx.warnings

    def beat_in_background(self, command: str) -> None:
        """Refresh the heartbeat alongside a command, at most once per 10 s per process."""
        t = time.monotonic()
        if t - self._last_beat > _HEARTBEAT_EVERY:
            self._last_beat = t
            _agents.touch_in_background(self.ctx, command)

    def _run(self, command: str, fn, *args, **kw):
        self.beat_in_background(command)
        try:
            out = fn(self.ctx, *args, **kw)
        except Exception:
            self.ctx.guard()  # a missing/newer project explains the failure better
            raise
        finally:
            self.ctx.flush()
        self.ctx.guard()
        return out

    # -- project ----------------------------------------------------------------------
    def check_format(self) -> dict:
        """The project's ``tracebox.json``; refuses a missing project or a newer format."""
        doc = self.format_info()
        if doc is None:
            raise NotFound(
                f"project {self.name!r} does not exist in {self.store.url}; create it with "
                f"`tracebox init --bucket {self.store.url} --project {self.name}`"
            )
        return doc

    def format_info(self) -> dict | None:
        cur = self.ctx.get_json("tracebox.json")
        if cur is None:
            return None
        doc = cur[0]
        major = doc.get("format_version")
        if not isinstance(major, int):
            raise FormatError(f"{self.name}/tracebox.json is damaged (no format_version)")
        if major > FORMAT_VERSION:
            raise FormatError(
                f"project {self.name} uses bucket format v{major}, newer than this tracebox "
                f"(v{FORMAT_VERSION}); upgrade tracebox to read it"
            )
        return doc

    # -- agents -----------------------------------------------------------------------
    def agents(self, *, alive_after: float | str | None = None) -> list[dict]:
        limit = None if alive_after is None else _seconds(alive_after, "--alive-after")
        return self._run("agents", _agents.list_agents, alive_after=limit)

    def heartbeat(self, status: str | None = None) -> dict:
        self._last_beat = time.monotonic()
        doc = _agents.touch(self.ctx, "heartbeat", status)
        _events.record(
            self.ctx, "agent.heartbeat", data={"status": status} if status is not None else {}
        )
        return doc

    # -- steps ------------------------------------------------------------------------
    def claim(self, step: str, *, ttl: float | str = "15m", wait: float | str = 0) -> dict:
        return self._run(
            "claim", _steps.claim, step, ttl=_seconds(ttl, "--ttl"), wait=_seconds(wait, "--wait")
        )

    def renew(self, step: str, *, ttl: float | str | None = None, epoch: int | None = None) -> dict:
        ttl_s = None if ttl is None else _seconds(ttl, "--ttl")
        return self._run("renew", _steps.renew, step, ttl=ttl_s, epoch=epoch)

    def release(self, step: str, *, epoch: int | None = None, force: bool = False) -> dict:
        return self._run("release", _steps.release, step, epoch=epoch, force=force)

    def reopen(self, step: str, *, reason: str = "") -> dict:
        return self._run("reopen", _steps.reopen, step, reason=reason)

    def complete(
        self,
        step: str,
        *,
        note: str = "",
        to: str | None = None,
        next_action: str | None = None,
        blocked: bool = False,
        needs_review: bool = False,
        changed_files: list[str] | None = None,
        changed_files_from_git: bool = False,
        force: bool = False,
        epoch: int | None = None,
    ) -> dict:
        if blocked and needs_review:
            from .errors import UsageError

            raise UsageError("use at most one of --blocked and --needs-review")
        status = "blocked" if blocked else "needs_review" if needs_review else "complete"
        if changed_files_from_git:
            changed_files = sorted(set(changed_files or []) | set(_steps.git_changed_files()))
        return self._run(
            "complete",
            _steps.complete,
            step,
            status=status,
            note=note,
            to=to,
            next_action=next_action,
            changed_files=changed_files,
            force=force,
            epoch=epoch,
        )

    def handoff(self, step: str) -> dict | None:
        return self._run("handoff", _steps.show, step)

    def steps(self) -> list[dict]:
        return self._run("steps", _steps.list_steps)

    def wait_for(self, *steps: str, timeout: float | str = 300, on_poll=None) -> dict:
        return self._run(
            "wait-for",
            _steps.wait_for,
            list(steps),
            timeout=_seconds(timeout, "--timeout"),
            on_poll=on_poll,
        )

    # -- messages ---------------------------------------------------------------------
    def send(self, to: str | None, message: str, *, all: bool = False) -> dict:  # noqa: A002
        target = _mailbox.BROADCAST if all or to in (None, _mailbox.BROADCAST) else to
        return self._run("send", _mailbox.send, target, message)

    def inbox(
        self,
        *,
        unread: bool = False,
        ack: bool = False,
        limit: int | None = None,
        bodies: bool = True,
    ) -> list[dict]:
        return self._run(
            "inbox", _mailbox.inbox, unread=unread, ack=ack, limit=limit, bodies=bodies
        )

    # -- the event log ----------------------------------------------------------------
    def log(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        agents: set[str] | None = None,
        types: set[str] | None = None,
    ) -> list[dict]:
        self.format_info()
        return _events.read(self.ctx, since=since, until=until, agents=agents, types=types)

    def follow(self, **kw):
        self.format_info()
        return _events.follow(self.ctx, **kw)

    def replay(self, out: str, *, title: str | None = None, **filters) -> dict:
        """Write the run as one self-contained HTML file (see ``coord.timeline``)."""
        from .coord.timeline import render_html

        events = self.log(**filters)
        html = render_html(events, title=title or f"tracebox · {self.name}")
        tmp = f"{out}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, out)
        return {"path": out, "events": len(events), "agents": len({e.get("agent") for e in events})}

    def record(self, type_: str, *, step: str | None = None, data: dict | None = None) -> dict:
        """Append a custom event to the log (``tracebox event``)."""
        return self._run("event", _events.custom, type_, step=step, data=data)


def open_project(
    bucket: str | None = None, project: str | None = None, agent: str | None = None, **options
) -> Project:
    """Open a project; unset arguments come from env vars and ``.tracebox.toml``."""
    s = load_settings(bucket=bucket, project=project, agent=agent, **options)
    if not s.bucket:
        raise ConfigError(
            "no bucket configured: run `tracebox init`, pass --bucket, or set TRACEBOX_BUCKET"
        )
    if not s.project:
        raise ConfigError("no project configured: pass --project or set TRACEBOX_PROJECT")
    check_name(s.project, "project name")
    agent_id = check_name(default_agent() if s.agent is None else s.agent, "agent id")
    from .bucket.url import parse_bucket_url

    spec = parse_bucket_url(s.bucket, base_dir=s.base_dir)
    store = open_bucket(
        spec,
        options={**s.s3, **{k: options[k] for k in ("access_key", "secret_key") if k in options}},
    )
    p = Project(store, s.project, agent_id, s)
    p.ctx.check_in_background(p.check_format)
    return p


def init_project(
    bucket: str,
    project: str,
    agent: str | None = None,
    *,
    allow_racy_claims: bool = False,
    write_config_to: str | None = None,
    s3: dict | None = None,
    public_ok: bool = False,
) -> dict:
    """Create the bucket folder if local, write ``tracebox.json``, probe conditional writes,
    register the agent, and write ``.tracebox.toml`` (never credentials)."""
    from pathlib import Path

    from .bucket.probe import probe
    from .bucket.url import parse_bucket_url
    from .config import CONFIG_NAME, write_config

    check_name(project, "project name")
    agent_id = check_name(agent or default_agent(), "agent id")
    base = None
    if write_config_to:
        base = os.path.abspath(write_config_to)
        if not os.path.isdir(base):
            base = os.path.dirname(base)
    spec = parse_bucket_url(bucket, base_dir=base)
    store = open_bucket(spec, options={**(s3 or {}), "create": True, "public_ok": public_ok})
    result = probe(store, project)
    settings = Settings(
        bucket=spec.url,
        project=project,
        agent=agent_id,
        allow_racy_claims=allow_racy_claims,
        cas_verified=result.ok,
    )
    p = Project(store, project, agent_id, settings)
    doc = {
        "format": "tracebox",
        "format_version": FORMAT_VERSION,
        "project": project,
        "created": iso(now()),
        "created_by": agent_id,
    }
    from .errors import AlreadyExists

    try:
        p.ctx.create_json("tracebox.json", doc)
        created = True
    except AlreadyExists:
        doc = p.format_info() or doc
        created = False
    _agents.touch(p.ctx, "init")
    if created:
        _events.record(
            p.ctx, "project.init", data={"format_version": FORMAT_VERSION, "bucket": spec.url}
        )
    config_path = None
    if write_config_to:
        config_path = Path(write_config_to)
        if config_path.is_dir():
            config_path = config_path / CONFIG_NAME
        stored_bucket = spec.url
        if (
            spec.scheme == "file"
            and not os.path.isabs(os.path.expanduser(bucket))
            and "://" not in bucket
        ):
            stored_bucket = os.path.relpath(spec.bucket, config_path.parent.resolve())
        write_config(
            config_path,
            {
                "bucket": stored_bucket,
                "project": project,
                "agent": agent,
                "s3": {
                    k: v
                    for k, v in (s3 or {}).items()
                    if k in ("endpoint", "region", "profile") and v
                }
                or None,
                "claims": {
                    "conditional_writes_verified": result.ok,
                    "allow_racy": allow_racy_claims or None,
                },
            },
        )
    return {
        "project": project,
        "bucket": spec.url,
        "agent": agent_id,
        "created": created,
        "format_version": doc.get("format_version"),
        "probe": {
            "create_if_absent": result.create_if_absent,
            "compare_and_swap": result.compare_and_swap,
            "detail": result.detail,
        },
        "claims_enabled": result.ok or allow_racy_claims,
        "config": str(config_path) if config_path else None,
    }
