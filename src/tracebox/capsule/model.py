"""The capsule format (v1): what a capsule folder holds, its id, and how it is checked.

A capsule is a folder (docs/capsule.md)::

    capsule.json     the capsule: intent, trajectory, context, failure, snapshot,
                     reproduce, metrics, scrub — one JSON object, UTF-8
    capsule.md       a human summary of the same
    bundle.tar.gz    optional: repository content that is not public (the uncommitted
                     diff, unpushed commits as patches, untracked files the agent used)

**Id.** ``cap-`` + the first 24 hex digits of the SHA-256 of the canonical JSON (keys
sorted, no whitespace) of ``capsule.json`` without its ``id`` and ``created`` fields.
Creating the same capsule again from the same session and repository state gives the
same id. **Integrity.** ``files`` lists every other file of the folder with its size and
SHA-256, and ``snapshot.bundle.members`` every member of the bundle, so ``verify``
detects any changed byte.

Capsules are untrusted input: ``load`` bounds sizes, refuses symlinks, and checks
``format``/``version`` before anything else reads them; bundle members are checked by
``safe_member`` (no absolute paths, no ``..``, regular files only) before extraction.
Nothing here executes anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tarfile
from typing import Any

from ..errors import FormatError, UsageError

FORMAT = "tracebox-capsule"
VERSION = 1
CAPSULE_JSON, CAPSULE_MD, BUNDLE = "capsule.json", "capsule.md", "bundle.tar.gz"
MAX_CAPSULE_BYTES = 32 << 20  # capsule.json
MAX_BUNDLE_BYTES = 256 << 20  # bundle.tar.gz, compressed
MAX_MEMBER_BYTES = 64 << 20  # one bundle member, uncompressed
MAX_MEMBERS = 10_000
SECTIONS = (
    "intent",
    "trajectory",
    "context",
    "failure",
    "snapshot",
    "reproduce",
    "metrics",
    "scrub",
)


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def capsule_id(doc: dict) -> str:
    """The id of a capsule document: its ``id`` and ``created`` fields left out, and the
    hash of ``capsule.md`` (which is rendered from the rest, and names the id)."""
    body = {k: v for k, v in doc.items() if k not in ("id", "created")}
    files = body.get("files")
    if isinstance(files, dict) and CAPSULE_MD in files:
        body["files"] = {k: v for k, v in files.items() if k != CAPSULE_MD}
    return "cap-" + hashlib.sha256(canonical(body)).hexdigest()[:24]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the bundle ---------------------------------------------------------------------------


def safe_member(name: str) -> str:
    """``name`` if it is a safe relative path inside a capsule (else FormatError)."""
    if not isinstance(name, str) or not name or len(name) > 4096 or "\0" in name:
        raise FormatError("capsule: a bundle member has an invalid name")
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm.startswith("../") or norm == ".." or "\\" in name:
        raise FormatError(f"capsule: bundle member {name!r} points outside the capsule")
    if norm != name or norm.startswith("./"):
        raise FormatError(f"capsule: bundle member {name!r} is not a normalized path")
    return name


def pack_bundle(members: dict[str, bytes]) -> bytes:
    """A deterministic tar.gz of ``members`` (sorted, mtime 0, root-owned, mode 0644)."""
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[safe_member(name)]
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def read_bundle(data: bytes) -> dict[str, bytes]:
    """The members of a bundle; refuses links, devices, traversal and oversized members."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise FormatError(f"capsule: {BUNDLE} is larger than {MAX_BUNDLE_BYTES >> 20} MiB")
    out: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for info in tar:
                name = safe_member(info.name)
                if not info.isfile():
                    raise FormatError(f"capsule: bundle member {name!r} is not a regular file")
                if info.size > MAX_MEMBER_BYTES or len(out) >= MAX_MEMBERS:
                    raise FormatError(f"capsule: bundle member {name!r} is too large")
                total += info.size
                if total > 4 * MAX_BUNDLE_BYTES:
                    raise FormatError("capsule: the bundle unpacks to too many bytes")
                f = tar.extractfile(info)
                out[name] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FormatError(f"capsule: {BUNDLE} is not a valid tar.gz: {e}") from None
    return out


# -- a capsule on disk --------------------------------------------------------------------


class Capsule:
    """A loaded capsule: ``doc`` (capsule.json), ``folder``, and the bundle's members."""

    def __init__(
        self, doc: dict, folder: str | None = None, bundle: dict[str, bytes] | None = None
    ):
        self.doc, self.folder, self.bundle = doc, folder, bundle or {}

    @property
    def id(self) -> str:
        return str(self.doc.get("id") or "")

    def section(self, name: str) -> dict:
        value = self.doc.get(name)
        return value if isinstance(value, dict) else {}


def headline(doc: dict) -> str:
    """What failed, on one line: the first error of the failure's signature, else the
    failing command or tool."""
    f = doc.get("failure") or {}
    what = ((f.get("signature") or {}).get("errors") or [None])[0]
    return " ".join(str(what or f.get("command") or f.get("tool") or "a failure").split())


def _read_limited(path: str, limit: int, what: str) -> bytes:
    if os.path.islink(path):
        raise FormatError(f"capsule: {what} is a symbolic link; refusing it")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > limit:
        raise FormatError(f"capsule: {what} is larger than {limit >> 20} MiB")
    return data


def load(path: str) -> Capsule:
    """A capsule from its folder (or its ``capsule.json``); FormatError if it is not one."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        path = os.path.join(path, CAPSULE_JSON)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such capsule (expected a folder holding {CAPSULE_JSON})")
    doc = parse(_read_limited(path, MAX_CAPSULE_BYTES, CAPSULE_JSON))
    bundle_path = os.path.join(folder, BUNDLE)
    bundle = None
    if os.path.lexists(bundle_path):
        bundle = read_bundle(_read_limited(bundle_path, MAX_BUNDLE_BYTES, BUNDLE))
    return Capsule(doc, folder, bundle)


def parse(data: bytes) -> dict:
    """The document in ``capsule.json`` bytes (untrusted: size, JSON and header checked)."""
    if len(data) > MAX_CAPSULE_BYTES:
        raise FormatError(f"capsule: {CAPSULE_JSON} is larger than {MAX_CAPSULE_BYTES >> 20} MiB")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"capsule: {CAPSULE_JSON} is not valid JSON: {e}") from None
    check_header(doc)
    return doc


def check_header(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FormatError(f'not a tracebox capsule (no "format": "{FORMAT}")')
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise FormatError("capsule: invalid version")
    if version > VERSION:
        raise FormatError(
            f"capsule format version {version} is newer than this tracebox reads ({VERSION}); "
            "upgrade tracebox"
        )


def finalize(doc: dict, bundle: dict[str, bytes] | None) -> tuple[dict, dict[str, bytes]]:
    """``doc`` with its ``files`` and ``id`` set, and the files to write beside it
    (``capsule.md``, rendered once the id is known, and the packed bundle)."""
    from .render import summary

    blobs: dict[str, bytes] = {}
    if bundle:
        blobs[BUNDLE] = pack_bundle(bundle)
    doc = {**doc, "files": {n: {"bytes": len(d), "sha256": sha256(d)} for n, d in blobs.items()}}
    doc["id"] = capsule_id(doc)
    blobs[CAPSULE_MD] = summary(doc).encode()
    doc["files"][CAPSULE_MD] = {
        "bytes": len(blobs[CAPSULE_MD]),
        "sha256": sha256(blobs[CAPSULE_MD]),
    }
    return doc, blobs


def write(folder: str, doc: dict, blobs: dict[str, bytes], bundle: dict[str, bytes]) -> Capsule:
    """Write a finalized capsule folder atomically (a temp folder renamed into place). An
    existing folder holding the same capsule id is left as it is."""
    body = json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n"
    parent = os.path.dirname(os.path.abspath(folder)) or "."
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(os.path.join(folder, CAPSULE_JSON)):
        try:
            old = load(folder)
            if old.id == doc["id"]:
                return old
        except (FormatError, UsageError):
            pass
        raise UsageError(f"{folder} already holds another capsule; choose another --out")
    tmp = os.path.join(parent, f".{os.path.basename(folder)}.{os.getpid()}.tmp")
    os.makedirs(tmp, exist_ok=False)
    for name, data in {**blobs, CAPSULE_JSON: body}.items():
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data)
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
    os.rename(tmp, folder)
    return Capsule(doc, folder, dict(bundle))


# -- verification -------------------------------------------------------------------------


def verify(c: Capsule) -> list[str]:
    """Problems found (empty: the capsule is intact): header, sections, id, file and member
    hashes, and a fresh secret scan of every byte."""
    problems: list[str] = []
    doc = c.doc
    try:
        check_header(doc)
    except FormatError as e:
        return [str(e)]
    for name in SECTIONS:
        if not isinstance(doc.get(name), dict):
            problems.append(f"section {name!r} is missing or not an object")
    if doc.get("id") != capsule_id(doc):
        problems.append(f"the id {doc.get('id')!r} does not match the content ({capsule_id(doc)})")
    files = doc.get("files") if isinstance(doc.get("files"), dict) else {}
    for name, meta in files.items():
        if name not in (CAPSULE_MD, BUNDLE) or not isinstance(meta, dict):
            problems.append(f"files lists an unexpected entry {name!r}")
            continue
        path = os.path.join(c.folder or ".", name)
        try:
            data = _read_limited(path, MAX_BUNDLE_BYTES, name)
        except (UsageError, FormatError) as e:
            problems.append(str(e))
            continue
        if sha256(data) != meta.get("sha256") or len(data) != meta.get("bytes"):
            problems.append(f"{name}: its SHA-256 or size differs from capsule.json")
    listed = ((doc.get("snapshot") or {}).get("bundle") or {}).get("members") or {}
    if isinstance(listed, dict):
        for name, digest in listed.items():
            got = c.bundle.get(name)
            if got is None:
                problems.append(f"bundle member {name!r} is missing")
            elif sha256(got) != digest:
                problems.append(f"bundle member {name!r}: its SHA-256 differs")
        for name in c.bundle:
            if name not in listed:
                problems.append(f"bundle member {name!r} is not listed in capsule.json")
    problems += [f"secret scan: {p}" for p in secret_scan(c)]
    return problems


def secret_scan(c: Capsule) -> list[str]:
    """What the scrubber would still redact in the capsule (categories and places, never
    the text). The capsule's own pseudonyms and redaction markers do not count."""
    from ..scrub import Scrubber

    s = Scrubber(env=os.environ, config={"disable": ["email", "phone", "ip", "user"]})
    found: list[str] = []
    texts = {CAPSULE_JSON: canonical(c.doc)}
    texts.update({f"{BUNDLE}:{k}": v for k, v in c.bundle.items()})
    if c.folder and os.path.isfile(os.path.join(c.folder, CAPSULE_MD)):
        texts[CAPSULE_MD] = _read_limited(
            os.path.join(c.folder, CAPSULE_MD), MAX_CAPSULE_BYTES, CAPSULE_MD
        )
    for where, data in texts.items():
        for f in s.findings(data):
            found.append(f"{where}: line {f.line}: {f.category} ({f.rule})")
    return found[:50]
