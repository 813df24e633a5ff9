"""Every exception tracebox raises on purpose, in one place.

Each carries an ``exit_code`` so the CLI can map it to the documented exit status
(1: the operation was refused or failed, 2: bad usage or input) and print its message
as one line.  Anything that is *not* a ``TraceboxError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class TraceboxError(Exception):
    """Base class: an expected failure with a one-line, user-facing message."""

    exit_code = 1


class UsageError(TraceboxError):
    """Bad input: a malformed key, an odd step id, an oversized value, a bad URL."""

    exit_code = 2


class ConfigError(UsageError):
    """No usable configuration (no bucket, unknown project, bad .tracebox.toml)."""


class BucketError(TraceboxError):
    """The backend failed: unreachable, permission denied, unsupported operation."""


class NotFound(BucketError):
    """The object (or the bucket itself) does not exist."""


class NoSuchBucket(BucketError):
    """The bucket itself does not exist. Not a ``NotFound``: code that treats a missing
    object as "absent" must never treat a missing bucket that way."""


class AlreadyExists(BucketError):
    """A create-if-absent found an object already there."""


class Conflict(BucketError):
    """A compare-and-swap lost: the object changed since it was read."""


class AccessDenied(BucketError):
    """Credentials are missing, wrong, or lack permission."""


class Unreachable(BucketError):
    """The endpoint could not be reached."""


class NotSupported(BucketError):
    """The backend cannot do this (e.g. conditional writes on a Hugging Face bucket)."""


class Refused(TraceboxError):
    """A coordination rule said no: step already claimed, lease lost, stale epoch, ..."""


class FormatError(TraceboxError):
    """An object in the bucket is malformed or from a newer, unknown format version."""


def one_line(e: BaseException, limit: int | None = None) -> str:
    """``e``'s message on one line (at most ``limit`` chars), its type's name if empty."""
    text = " ".join(str(e).split())
    return (text if limit is None else text[:limit]) or type(e).__name__
