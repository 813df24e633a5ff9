"""Parse bucket URLs into a ``BucketSpec``.

Accepted forms (see docs/format.md §Bucket URLs):

- ``./runs``, ``/abs/path``, ``~/runs``, ``file:///abs/path`` — a local folder (the default);
- ``memory://`` or ``memory://name`` — an in-process store (tests, the Python API);
- ``s3://bucket[/prefix]``, ``gs://bucket[/prefix]``, ``az://container[/prefix]``
  (also ``abfs://``/``azure://``);
- ``hf://buckets/<user>/<name>[/prefix]`` — a Hugging Face bucket (optional extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..errors import UsageError

REMOTE_SCHEMES = {"s3": "s3", "gs": "gs", "gcs": "gs", "az": "az", "abfs": "az", "azure": "az"}


@dataclass(frozen=True)
class BucketSpec:
    """Where a bucket lives: ``scheme`` is one of file, memory, s3, gs, az, hf."""

    scheme: str
    bucket: str  # local: absolute folder path; memory: a name; hf: "<user>/<name>"
    prefix: str = ""  # key prefix inside the bucket, no leading/trailing "/"

    @property
    def url(self) -> str:
        if self.scheme == "file":
            return self.bucket
        if self.scheme == "memory":
            return f"memory://{self.bucket}"
        if self.scheme == "hf":
            base = f"hf://buckets/{self.bucket}"
        else:
            base = f"{self.scheme}://{self.bucket}"
        return f"{base}/{self.prefix}" if self.prefix else base


def _clean_prefix(prefix: str) -> str:
    parts = [p for p in prefix.strip("/").split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise UsageError(f"bucket prefix may not contain '{p}' segments: {prefix!r}")
    return "/".join(parts)


def parse_bucket_url(url: str, *, base_dir: str | None = None) -> BucketSpec:
    """Parse ``url``; relative local paths resolve against ``base_dir`` (default: cwd)."""
    if not url or not url.strip():
        raise UsageError("empty bucket URL; pass --bucket or set TRACEBOX_BUCKET")
    url = url.strip()
    if "\x00" in url:
        raise UsageError("bucket URL contains a NUL byte")
    if "://" not in url:
        path = os.path.expanduser(url)
        if not os.path.isabs(path):
            path = os.path.join(base_dir or os.getcwd(), path)
        return BucketSpec("file", os.path.normpath(path))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file:// URLs must be absolute (file:///path): {url!r}")
        return BucketSpec("file", os.path.normpath(unquote(parts.path) or "/"))
    if scheme == "memory":
        return BucketSpec("memory", parts.netloc or "default", _clean_prefix(parts.path))
    if scheme == "hf":
        segs = [s for s in (parts.netloc + parts.path).split("/") if s]
        if len(segs) < 3 or segs[0] != "buckets":
            raise UsageError(f"Hugging Face buckets look like hf://buckets/<user>/<name>: {url!r}")
        return BucketSpec("hf", f"{segs[1]}/{segs[2]}", _clean_prefix("/".join(segs[3:])))
    if scheme in REMOTE_SCHEMES:
        if not parts.netloc:
            raise UsageError(f"missing bucket name in {url!r} (expected {scheme}://BUCKET/prefix)")
        return BucketSpec(REMOTE_SCHEMES[scheme], parts.netloc, _clean_prefix(parts.path))
    raise UsageError(
        f"unsupported bucket URL scheme {scheme!r} in {url!r}; "
        "use a folder path, file://, memory://, s3://, gs://, az:// or hf://buckets/..."
    )
