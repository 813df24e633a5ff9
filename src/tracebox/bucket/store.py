"""The bucket interface every backend implements, and ``open_bucket`` to get one.

A store is a flat key → bytes map with the few operations coordination needs:

- ``get``/``head``/``put``/``delete``/``list`` (lexicographic, with ``start_after``);
- ``create`` — write only if absent (``If-None-Match: *``), raising ``AlreadyExists``;
- ``update`` — write only if the current ETag matches (``If-Match``), raising ``Conflict``;
- ``put_file``/``get_file`` — streamed transfers (multipart on object stores).

Keys are ``/``-separated, relative to the bucket URL's prefix, and validated here so that
no backend ever sees ``..``, absolute paths, control characters or over-long keys.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import Protocol

import msgspec

from ..errors import UsageError
from .url import BucketSpec, parse_bucket_url

MAX_KEY_BYTES = 900  # S3 allows 1024 bytes; keep headroom for the bucket prefix
MAX_SEGMENT_BYTES = 255  # a file name on every local filesystem (and on SeaweedFS)


class ObjectMeta(msgspec.Struct, frozen=True):
    key: str
    size: int
    etag: str
    modified: str  # ISO 8601 UTC


class Blob(msgspec.Struct, frozen=True):
    data: bytes
    etag: str


class Store(Protocol):
    """What every backend provides (``LocalStore``, ``ObjectStore``, ``HFStore``)."""

    url: str
    supports_cas: bool
    local: bool  # a folder on this machine (the mirror keeps its parts uncompressed there)

    def get(self, key: str) -> Blob: ...
    def head(self, key: str) -> ObjectMeta: ...
    def put(self, key: str, data: bytes) -> str: ...
    def create(self, key: str, data: bytes) -> str: ...
    def update(self, key: str, data: bytes, etag: str) -> str: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]: ...
    def put_file(self, key: str, path: str, progress: Progress | None = None) -> str: ...
    def get_file(self, key: str, path: str, progress: Progress | None = None) -> ObjectMeta: ...


Progress = Callable[[int], None]  # called with the number of bytes just moved


class ProgressReader(io.RawIOBase):
    """A binary file that reports every read to ``progress`` (for streamed uploads)."""

    def __init__(self, f, progress: Progress):
        self._f, self._progress = f, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self._f.readinto(buf)
        if n:
            self._progress(n)
        return n

    def seekable(self) -> bool:
        return self._f.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise ``UsageError``."""
    if not isinstance(key, str) or not key:
        raise UsageError("empty object key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UsageError(f"object key too long ({len(key)} chars): {key[:60]!r}...")
    if key.startswith("/") or key.endswith("/") or "//" in key or "\\" in key:
        raise UsageError(f"invalid object key {key!r}")
    for seg in key.split("/"):
        if seg in (".", ".."):
            raise UsageError(f"object key may not contain '{seg}' segments: {key!r}")
        if len(seg.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise UsageError(
                f"object key has a segment longer than {MAX_SEGMENT_BYTES} bytes: {seg[:40]!r}..."
            )
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise UsageError(f"object key contains control characters: {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"object key is not valid UTF-8: {key!r}") from None
    return key


def open_bucket(url: str | BucketSpec, *, options: dict | None = None) -> Store:
    """Open the bucket at ``url``; ``options`` carries backend settings (endpoint, region...)."""
    spec = url if isinstance(url, BucketSpec) else parse_bucket_url(url)
    options = dict(options or {})
    if spec.scheme == "file":
        from .local import LocalStore

        return LocalStore(spec.bucket, create=options.get("create", False))
    if spec.scheme == "hf":
        from .hf import HFStore

        return HFStore(spec, options)
    from .remote import open_remote

    return open_remote(spec, options)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
