"""The MCP tools: one arguments struct per tool (its docstring is the tool's description,
its fields the JSON schema of its input) and one function calling the same
``Project`` method the CLI command calls, returning what that command's ``--json``
prints.

Names use ``_`` where the CLI has a space or a dash (``memory set`` → ``memory_set``,
``wait-for`` → ``wait_for``). Arguments are validated against the struct before the
call; a bad one is a ``UsageError`` like a bad CLI option. Tools are plain functions of
``(State, args)``, so they run anywhere — the server runs them in worker threads.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ..coord.context import check_name
from ..errors import NotFound, UsageError
from ..index.db import KINDS

MAX_INLINE_BYTES = 8 << 20  # artifact content sent inline (base64) in one tool call


@dataclass
class State:
    """What every tool call uses: the project (opened once per server), the local
    search index, where ``tracebox observe --out`` wrote observations, and ``poll`` —
    called while a tool waits, it raises to give the wait up (the call was cancelled)."""

    project: Any  # tracebox.project.Project
    index_path: str | None = None
    observations: str | None = None
    poll: Callable[[], None] | None = None


@dataclass
class Reply:
    """A tool's result plus notes for the agent (the CLI prints those on stderr)."""

    value: Any
    notes: list[str] = field(default_factory=list)


@dataclass
class Tool:
    name: str
    args: type
    fn: Callable[[State, Any], Any]
    read_only: bool
    waits: bool  # may block for long (wait-for, claim --wait): its own thread pool

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.args.__doc__ or "")

    def parse(self, arguments: dict | None):
        try:
            return msgspec.convert(arguments or {}, self.args)
        except msgspec.ValidationError as e:
            raise UsageError(f"{self.name}: {e}") from None


TOOLS: dict[str, Tool] = {}


def tool(name: str, args: type, *, read_only: bool = False, waits: bool = False):
    def register(fn):
        TOOLS[name] = Tool(name, args, fn, read_only, waits)
        return fn

    return register


def input_schemas() -> dict[str, dict]:
    """Each tool's input JSON schema (the struct's, without its title and description)."""
    _, components = msgspec.json.schema_components([t.args for t in TOOLS.values()])
    out = {}
    for t in TOOLS.values():
        schema = dict(components[t.args.__name__])
        schema.pop("title", None)
        schema.pop("description", None)
        out[t.name] = schema
    return out


class Args(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


def _d(text: str) -> Meta:
    return Meta(description=text)


StepId = Annotated[str, _d("Step id: 1-128 letters, digits, '.', '_', '@', '+' or '-'.")]
Epoch = Annotated[
    int | None, _d("Refuse unless the lease is still at this epoch (your fencing token).")
]
Duration = str | float  # "90s", "15m", "2h", or seconds
Positive = Annotated[int, Meta(ge=1)]


# -- agents and steps ------------------------------------------------------------------


class Agents(Args):
    """Who is registered in the project and who is alive (heartbeat within the
    threshold), like `tracebox agents --json`: [{agent, alive, last_seen, age_s,
    command, status}]."""

    alive_after: Annotated[
        Duration | None, _d("Count an agent alive if seen within this long [default 5m].")
    ] = None
    alive: Annotated[bool, _d("Only the live agents.")] = False


@tool("agents", Agents, read_only=True)
def agents(s: State, a: Agents):
    rows = s.project.agents(alive_after=a.alive_after)
    return [r for r in rows if r["alive"]] if a.alive else rows


class Steps(Args):
    """Every step with its status, lease owner, epoch and lease expiry, like
    `tracebox steps --json`."""


@tool("steps", Steps, read_only=True)
def steps(s: State, a: Steps):
    return s.project.steps()


class Claim(Args):
    """Claim a step: a lease with an epoch (fencing token), like `tracebox claim STEP
    --json`. Fails (an error result) if another agent holds a live lease; an expired
    lease is taken over by exactly one contender, with epoch + 1. Renew before the lease
    runs out; finish with `complete` or give it back with `release`."""

    step: StepId
    ttl: Annotated[Duration, _d("Lease length: 90s, 15m, 2h, or seconds.")] = "15m"
    wait: Annotated[
        Duration, _d("Keep trying this long if the step is taken [default: fail at once].")
    ] = 0


@tool("claim", Claim, waits=True)
def claim(s: State, a: Claim):
    return s.project.claim(a.step, ttl=a.ttl, wait=a.wait)


class Renew(Args):
    """Extend your lease on a step, like `tracebox renew STEP --json`."""

    step: StepId
    ttl: Annotated[Duration | None, _d("New lease length [default: the claim's].")] = None
    epoch: Epoch = None


@tool("renew", Renew)
def renew(s: State, a: Renew):
    return s.project.renew(a.step, ttl=a.ttl, epoch=a.epoch)


class Release(Args):
    """Give a step back without completing it (another agent may claim it), like
    `tracebox release STEP --json`."""

    step: StepId
    epoch: Epoch = None
    force: Annotated[bool, _d("Release a lease held by another agent.")] = False


@tool("release", Release)
def release(s: State, a: Release):
    return s.project.release(a.step, epoch=a.epoch, force=a.force)


class Complete(Args):
    """Finish a step and write its handoff in one conditional write, like `tracebox
    complete STEP --json`: the note, who it is handed to and what they should do first
    are what the next agent reads (`handoff`). Only the lease holder may complete,
    unless force. blocked=true makes `wait_for` on it fail at once."""

    step: StepId
    note: Annotated[str, _d("Handoff note for whoever picks this up.")] = ""
    to: Annotated[str | None, _d("The agent this is handed to.")] = None
    next_action: Annotated[str | None, _d("One line: what the next agent should do first.")] = None
    blocked: Annotated[bool, _d("Mark the step blocked instead of complete.")] = False
    needs_review: Annotated[bool, _d("Mark the step as needing review.")] = False
    changed_files: Annotated[list[str] | None, _d("Files this step changed.")] = None
    changed_files_from_git: Annotated[
        bool, _d("Add the files `git status` shows changed in the server's working directory.")
    ] = False
    force: Annotated[bool, _d("Complete a step whose lease you do not hold.")] = False
    epoch: Epoch = None


@tool("complete", Complete)
def complete(s: State, a: Complete):
    return s.project.complete(
        a.step,
        note=a.note,
        to=a.to,
        next_action=a.next_action,
        blocked=a.blocked,
        needs_review=a.needs_review,
        changed_files=a.changed_files,
        changed_files_from_git=a.changed_files_from_git,
        force=a.force,
        epoch=a.epoch,
    )


class Reopen(Args):
    """Re-open a completed, blocked or needs-review step so it can be claimed again,
    like `tracebox reopen STEP --json`."""

    step: StepId
    reason: Annotated[str, _d("Why it is being re-opened.")] = ""


@tool("reopen", Reopen)
def reopen(s: State, a: Reopen):
    return s.project.reopen(a.step, reason=a.reason)


class Handoff(Args):
    """A step's status, lease and handoff history (notes, next actions, changed files),
    like `tracebox handoff show STEP --json`. An error if there is no such step."""

    step: StepId


@tool("handoff", Handoff, read_only=True)
def handoff(s: State, a: Handoff):
    doc = s.project.handoff(a.step)
    if doc is None:
        raise NotFound(f"no step {a.step}")
    return doc


class WaitFor(Args):
    """Wait until every step is complete, like `tracebox wait-for STEP... --json`
    ({step: "complete"}). Fails at once if one is blocked, and with an error after
    `timeout` seconds. The server answers other calls meanwhile."""

    steps: Annotated[list[StepId], Meta(min_length=1, description="The steps to wait for.")]
    timeout: Annotated[Duration, _d("Give up after this long (seconds, or 90s, 5m).")] = 300


@tool("wait_for", WaitFor, read_only=True, waits=True)
def wait_for(s: State, a: WaitFor):
    poll = s.poll
    return s.project.wait_for(
        *a.steps, timeout=a.timeout, on_poll=(lambda _: poll()) if poll else None
    )


# -- memory ------------------------------------------------------------------------------

MemoryKey = Annotated[str, _d("Dotted key, e.g. build.status.")]


class MemoryGet(Args):
    """A shared memory value, like `tracebox memory get KEY --json`: the value, or with
    meta=true {value, version, by, at}. An error if the key is absent."""

    key: MemoryKey
    meta: Annotated[bool, _d("Return version, writer and time too.")] = False


@tool("memory_get", MemoryGet, read_only=True)
def memory_get(s: State, a: MemoryGet):
    doc = s.project.memory.get(a.key)
    return doc if a.meta else doc["value"]


class MemorySet(Args):
    """Set a shared memory key to a JSON value (every write is a new version), like
    `tracebox memory set KEY VALUE --json`. With if_version it is a compare-and-swap:
    written only if the key is still at that version (0: must not exist yet), else a
    version-conflict error — read, change, write back with the version you read."""

    key: MemoryKey
    value: Annotated[Any, _d("Any JSON value (object, array, string, number, ...).")]
    if_version: Annotated[
        int | None, _d("Only write if the key is at this version (0: must not exist).")
    ] = None


@tool("memory_set", MemorySet)
def memory_set(s: State, a: MemorySet):
    return s.project.memory.set(a.key, a.value, if_version=a.if_version)


class MemoryList(Args):
    """Memory keys (under a prefix) with version, writer and value, like `tracebox
    memory list --json`."""

    prefix: Annotated[str, _d("Only keys starting with this.")] = ""


@tool("memory_list", MemoryList, read_only=True)
def memory_list(s: State, a: MemoryList):
    return s.project.memory.list(a.prefix)


# -- messages ---------------------------------------------------------------------------


class Send(Args):
    """Send a message to one agent, or to every agent with all=true, like `tracebox send
    AGENT MESSAGE --json`. At most 256 KiB: share bigger things as an artifact."""

    message: Annotated[str, _d("The text.")]
    to: Annotated[str | None, _d("The agent id to send to.")] = None
    all: Annotated[bool, _d("Broadcast to every agent instead.")] = False


@tool("send", Send)
def send(s: State, a: Send):
    if a.all and a.to is not None:
        raise UsageError("give either `to` or all=true, not both")
    if not a.all and a.to is None:
        raise UsageError("give `to` (an agent id), or all=true to broadcast")
    return s.project.send(a.to, a.message, all=a.all)


class Inbox(Args):
    """Your messages and broadcasts, oldest first, like `tracebox inbox --json`:
    [{id, from, to, at, body, key, read}]. ack=true marks the ones returned as read."""

    unread: Annotated[bool, _d("Only messages not yet acknowledged.")] = False
    ack: Annotated[bool, _d("Mark the messages returned as read.")] = False
    limit: Annotated[Positive | None, _d("At most this many.")] = None
    count: Annotated[bool, _d("Only count them: {count, unread}.")] = False


@tool("inbox", Inbox)
def inbox(s: State, a: Inbox):
    from ..cli.messages import inbox_counts

    msgs = s.project.inbox(unread=a.unread, ack=a.ack, limit=a.limit, bodies=not a.count)
    return inbox_counts(msgs) if a.count else msgs


# -- artifacts --------------------------------------------------------------------------


class ArtifactUpload(Args):
    """Share a file as an artifact (content-addressed, versioned), like `tracebox
    artifact upload PATH --json`: {v, name, sha256, size, by, at, step, filename}. Give
    `path` — a file on the machine this server runs on (relative to its working
    directory) — or `content_base64` with a `name` (at most 8 MiB)."""

    path: Annotated[str | None, _d("The file to upload.")] = None
    content_base64: Annotated[str | None, _d("The content, base64-encoded.")] = None
    name: Annotated[str | None, _d("Artifact name [default: the file's name].")] = None
    step: Annotated[str | None, _d("The step that produced it.")] = None


@tool("artifact_upload", ArtifactUpload)
def artifact_upload(s: State, a: ArtifactUpload):
    if (a.path is None) == (a.content_base64 is None):
        raise UsageError("give exactly one of `path` and `content_base64`")
    if a.path is not None:
        return s.project.artifact.upload(os.path.expanduser(a.path), name=a.name, step=a.step)
    if a.name is None:
        raise UsageError("content_base64 needs a `name`")
    check_name(a.name, "artifact name", json_suffix_ok=True)
    if len(a.content_base64) > (MAX_INLINE_BYTES + 2) // 3 * 4:
        raise UsageError(
            f"content is larger than {MAX_INLINE_BYTES >> 20} MiB; pass a `path` instead"
        )
    try:
        data = base64.b64decode(a.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("content_base64 is not valid base64") from None
    with tempfile.TemporaryDirectory(prefix="tracebox-mcp-") as tmp:
        path = os.path.join(tmp, a.name)
        with open(path, "wb") as f:
            f.write(data)
        return s.project.artifact.upload(path, name=a.name, step=a.step)


class ArtifactList(Args):
    """Artifacts with their latest version's size, sha256, uploader and time, like
    `tracebox artifact list --json`."""

    step: Annotated[str | None, _d("Only artifacts of this step.")] = None


@tool("artifact_list", ArtifactList, read_only=True)
def artifact_list(s: State, a: ArtifactList):
    return s.project.artifact.list(step=a.step)


class ArtifactDownload(Args):
    """Write an artifact (latest version, or the one whose sha256 starts with `sha256`)
    to a file or folder on the machine this server runs on, hash verified, like
    `tracebox artifact download NAME --json`."""

    name: Annotated[str, _d("The artifact.")]
    output: Annotated[str, _d("File or folder to write (relative: the server's cwd).")] = "."
    sha256: Annotated[str | None, _d("A specific version (prefix of its sha256).")] = None


@tool("artifact_download", ArtifactDownload)
def artifact_download(s: State, a: ArtifactDownload):
    return s.project.artifact.download(a.name, os.path.expanduser(a.output), sha256=a.sha256)


# -- search and observations ------------------------------------------------------------


class Search(Args):
    """Full-text search (BM25-ranked) over every indexed session — transcripts on this
    machine and those mirrored to the bucket — like `tracebox search QUERY --json`:
    [{session_id, step, kind, harness, model, timestamp, snippet, origin, ...}], matches
    in the snippet marked [like this]. QUERY is FTS5 syntax: words (all must match),
    "a phrase", OR, NOT, prefix*, NEAR(a b)."""

    query: Annotated[str, _d("What to look for.")]
    harness: Annotated[str | None, _d("Only sessions of this agent (claude-code, codex…).")] = None
    agent: Annotated[str | None, _d("Only sessions with this agent name.")] = None
    model: Annotated[str | None, _d("Only steps/sessions whose model contains this.")] = None
    since: Annotated[str | None, _d("Only steps from then on: 7d, 12h, 2026-11-01, ISO.")] = None
    kind: Annotated[Literal[KINDS] | None, _d("Only this kind of text.")] = None  # type: ignore[valid-type]
    limit: Annotated[int, Meta(ge=1, le=10_000, description="At most this many hits.")] = 20
    refresh: Annotated[
        bool | None, _d("Re-index changed sessions first [default: if over a minute old].")
    ] = None


@tool("search", Search, read_only=True)
def search(s: State, a: Search):
    from ..index import db
    from ..index import search as fts
    from ..index.refresh import fresh_connection

    conn = fresh_connection(s.index_path, a.refresh, lambda: s.project)
    try:
        result = fts.search(
            conn,
            a.query,
            harness=a.harness,
            agent=a.agent,
            model=a.model,
            since=db.since_bound(a.since) if a.since else None,
            kind=a.kind,
            limit=a.limit,
        )
    finally:
        conn.close()
    return Reply(result.hits, [fts.window_note(result.window)] if result.window else [])


class Observations(Args):
    """The current observations: what earlier sessions ran into — [important] errors,
    failed fixes, loops; [possible] files created, hypotheses; [informational] goals,
    tokens, dead ends — most important first, each with evidence (session, step,
    quote). Read them before starting. {source, entries, counts}. From the folder the
    server was started with (--observations DIR, written by `tracebox observe --out
    DIR`), else the newest harness run in the bucket."""

    run: Annotated[str | None, _d("This harness run instead (its last generation).")] = None
    priority: Annotated[
        Literal["important", "possible", "informational"] | None, _d("Only this priority.")
    ] = None
    limit: Annotated[Positive | None, _d("At most this many entries.")] = None


@tool("observations", Observations, read_only=True)
def observations(s: State, a: Observations):
    from .observations import current

    cur = current(s.project, s.observations, a.run)
    entries = [e for e in cur.entries if a.priority in (None, e.get("priority"))]
    return {"source": cur.source, "entries": entries[: a.limit], "counts": cur.counts}
