"""Buckets on Hugging Face (``hf://buckets/<user>/<name>[/prefix]``), over ``huggingface_hub``.

An optional extra (``pip install tracebox[hf]``), imported only when such a URL is opened.
It uses the Hub's *buckets* API of ``huggingface_hub.HfApi`` (1.x and later):

- ``create_bucket(id, private=True, exist_ok=True)`` and ``bucket_info(id)`` — on open;
- ``get_bucket_paths_info(id, [path])`` — ``head`` and the ETag of every read and write;
- ``download_bucket_files(id, [(BucketFile, dest)])`` — ``get``/``get_file``;
- ``batch_bucket_files(id, add=[(bytes | path, dest)], delete=[path])`` — writes, deletes;
- ``list_bucket_tree(id, prefix, recursive=True)`` — ``list``.

**No conditional writes.** The Hub has no ``If-None-Match``/``If-Match`` for bucket files,
so ``supports_cas`` is False and tracebox refuses claims on this backend unless the user
opted into racy claims. ``create`` and ``update`` still do their best — ``create`` checks
for the key and then writes, ``update`` compares the ETag and then writes — but another
writer can slip in between the check and the write: **both checks are racy**.

The ETag is the file's Xet content hash, so like an S3 ETag it changes when the bytes
change; ``get`` downloads exactly the content whose hash it reports.

**Privacy.** A bucket this backend creates is private. Opening a *public* bucket prints a
loud warning to stderr (everything tracebox stores there is readable by anyone) unless
``public_ok`` was given (``tracebox init --public-ok``) or ``TRACEBOX_HF_PUBLIC_OK=1``.

The token comes from the standard places only: ``HF_TOKEN`` or ``hf auth login``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from ..errors import (
    AccessDenied,
    AlreadyExists,
    BucketError,
    Conflict,
    NoSuchBucket,
    NotFound,
    NotSupported,
    TraceboxError,
    Unreachable,
)
from .store import Blob, ObjectMeta, Progress, check_key, env_flag
from .url import BucketSpec

INSTALL_HINT = "Hugging Face buckets need `pip install tracebox[hf]`"


def _default_api():
    """A real ``HfApi`` (token from ``HF_TOKEN`` or the saved login)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise NotSupported(INSTALL_HINT) from None
    if not hasattr(HfApi, "batch_bucket_files"):
        raise NotSupported(
            "the installed huggingface_hub has no buckets API; "
            "upgrade it: pip install -U huggingface_hub"
        )
    from .. import __version__

    # one tqdm bar per tiny JSON object would drown the CLI's output; a user who sets
    # HF_HUB_DISABLE_PROGRESS_BARS=0 explicitly keeps them
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") is None:
        try:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        except ImportError:  # pragma: no cover - very old huggingface_hub
            pass
    return HfApi(library_name="tracebox", library_version=__version__)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _iso(dt: datetime | None) -> str:
    if not isinstance(dt, datetime):
        return ""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HFStore:
    """A Hugging Face bucket; raises only ``tracebox.errors`` exceptions.

    ``options``: ``create`` (create the bucket, private, if missing), ``public_ok``
    (accept a public bucket silently), ``warn`` (a callable that receives warnings;
    default: print to stderr), ``api`` (an ``HfApi``-like object; default: a real one).
    Warnings are also kept in ``self.warnings``.
    """

    supports_cas = False
    local = False

    def __init__(self, spec: BucketSpec, options: dict):
        self.url = spec.url
        self.bucket_id = spec.bucket
        self._pre = f"{spec.prefix}/" if spec.prefix else ""
        self.warnings: list[str] = []
        self._warn: Callable[[str], None] = options.get("warn") or _stderr
        api = options.get("api")
        self._api = api if api is not None else _default_api()
        if options.get("create"):
            self._call(
                "",
                lambda: self._api.create_bucket(self.bucket_id, private=True, exist_ok=True),
            )
        info = self._call("", lambda: self._api.bucket_info(self.bucket_id))
        self.private = getattr(info, "private", None) is True  # unknown counts as public
        public_ok = bool(options.get("public_ok")) or env_flag("TRACEBOX_HF_PUBLIC_OK")
        if not self.private and not public_ok:
            self._public_warning()

    # -- helpers ------------------------------------------------------------------------
    def _public_warning(self) -> None:
        text = (
            f"WARNING: the Hugging Face bucket {self.url} is PUBLIC.\n"
            "  Everything tracebox writes there (transcripts, prompts, tool output, messages,\n"
            "  memory, artifacts) can be read by anyone on the internet.\n"
            f"  Make it private:  hf buckets settings {self.bucket_id} --private\n"
            "  or, if it is meant to be public, pass --public-ok to `tracebox init`\n"
            "  (or set TRACEBOX_HF_PUBLIC_OK=1) to silence this warning."
        )
        self.warnings.append(text)
        self._warn(text)

    def _remote(self, key: str) -> str:
        return self._pre + check_key(key)

    def _call(self, key: str, fn):
        try:
            return fn()
        except (TraceboxError, TypeError, AttributeError, NameError):
            raise  # ours, or a programming error: keep it (and its traceback)
        except Exception as e:
            raise self._translate(e, key) from None

    def _translate(self, e: Exception, key: str) -> Exception:
        what = f"object {key!r}" if key else self.url
        status = getattr(getattr(e, "response", None), "status_code", None)
        name = type(e).__name__
        names = {c.__name__ for c in type(e).__mro__}
        msg = getattr(e, "server_message", None) or _first_line(e)
        missing = NoSuchBucket(
            f"Hugging Face bucket {self.url} does not exist, or is private and your token "
            "cannot see it; create it with `tracebox init`, or check HF_TOKEN"
        )
        if "BucketNotFoundError" in names:
            return missing
        if "EntryNotFoundError" in names or (status == 404 and key):
            return NotFound(f"no object {key!r}")
        if "LocalTokenNotFoundError" in names:
            return AccessDenied("no Hugging Face token found: set HF_TOKEN or run `hf auth login`")
        if "OfflineModeIsEnabled" in names:
            return Unreachable(f"cannot reach {self.url}: HF_HUB_OFFLINE is set")
        if status in (401, 403):
            return AccessDenied(
                f"access denied to {self.url}; check HF_TOKEN (or `hf auth login`) and that "
                "the token may read and write this bucket"
            )
        if status == 404:
            return missing
        if status == 409:
            return AlreadyExists(f"{what} already exists")
        if status == 412:
            return Conflict(f"{what} changed concurrently")
        if status == 429:
            return BucketError(f"{self.url}: rate-limited by the Hugging Face Hub; retry later")
        if status is not None and status >= 500:
            return Unreachable(f"{self.url}: the Hugging Face Hub answered {status}: {msg}")
        if (
            isinstance(e, (ConnectionError, TimeoutError))
            or "TransportError" in names
            or "TimeoutException" in names
        ):
            return Unreachable(f"cannot reach the Hugging Face Hub for {self.url}: {msg}")
        if "BucketBatchError" in names:
            return BucketError(f"{self.url}: writing {what} failed: {msg}")
        return BucketError(f"{self.url}: {name}: {msg}")

    def _stat(self, key: str):
        """The ``BucketFile`` for ``key``, or None if absent."""
        remote = self._remote(key)
        found = self._call(
            key, lambda: list(self._api.get_bucket_paths_info(self.bucket_id, [remote]))
        )
        for f in found:
            if getattr(f, "path", None) == remote and getattr(f, "type", "file") == "file":
                return f
        return None

    def _meta(self, key: str, f) -> ObjectMeta:
        when = getattr(f, "mtime", None) or getattr(f, "uploaded_at", None)
        return ObjectMeta(key, int(f.size), str(f.xet_hash), _iso(when))

    def _written(self, key: str) -> str:
        """The ETag of ``key`` right after a write (another writer may already have won)."""
        f = self._stat(key)
        if f is None:
            raise BucketError(f"{self.url}: object {key!r} is missing right after writing it")
        return str(f.xet_hash)

    def _download(self, key: str, f, dest: str) -> None:
        self._call(
            key,
            lambda: self._api.download_bucket_files(
                self.bucket_id, [(f, dest)], raise_on_missing_files=True
            ),
        )

    # -- reads --------------------------------------------------------------------------
    def head(self, key: str) -> ObjectMeta:
        f = self._stat(key)
        if f is None:
            raise NotFound(f"no object {key!r}")
        return self._meta(key, f)

    def get(self, key: str) -> Blob:
        f = self._stat(key)
        if f is None:
            raise NotFound(f"no object {key!r}")
        with tempfile.TemporaryDirectory(prefix="tracebox-hf-") as d:
            dest = os.path.join(d, "object")
            self._download(key, f, dest)
            try:
                with open(dest, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                raise NotFound(f"no object {key!r}") from None
        return Blob(data, str(f.xet_hash))

    def get_file(self, key: str, path: str, progress: Progress | None = None) -> ObjectMeta:
        # huggingface_hub moves the bytes; progress is reported once, at the end
        f = self._stat(key)
        if f is None:
            raise NotFound(f"no object {key!r}")
        tmp = f"{path}.part-{os.urandom(4).hex()}"
        try:
            self._download(key, f, tmp)
            os.replace(tmp, path)
        except OSError as e:
            _unlink(tmp)
            raise BucketError(f"cannot write local file {path!r}: {e.strerror or e}") from None
        except BaseException:
            _unlink(tmp)
            raise
        if progress:
            progress(os.path.getsize(path))
        return self._meta(key, f)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        """Objects under ``prefix`` (a plain string prefix), sorted, after ``start_after``.

        The Hub lists in no documented order, so the listing is collected and sorted here.
        """
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder:
            check_key(folder)
        remote_folder = (self._pre + folder).rstrip("/")
        full = self._pre + prefix
        n = len(self._pre)

        def fetch():
            return list(
                self._api.list_bucket_tree(
                    self.bucket_id, prefix=remote_folder or None, recursive=True
                )
            )

        try:
            items = self._call(prefix or "", fetch)
        except NotFound:  # (a missing bucket is NoSuchBucket, not NotFound)
            return  # nothing under that folder
        out = []
        for it in items:
            path = getattr(it, "path", "")
            if getattr(it, "type", "file") != "file" or not path.startswith(full):
                continue
            key = path[n:]
            if start_after and key <= start_after:
                continue
            out.append(self._meta(key, it))
        out.sort(key=lambda m: m.key)
        yield from out

    # -- writes -------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> str:
        remote = self._remote(key)
        self._call(key, lambda: self._api.batch_bucket_files(self.bucket_id, add=[(data, remote)]))
        return self._written(key)

    def put_file(self, key: str, path: str, progress: Progress | None = None) -> str:
        remote = self._remote(key)
        if not os.path.isfile(path):
            raise BucketError(f"cannot upload {path!r}: not a readable file")
        self._call(key, lambda: self._api.batch_bucket_files(self.bucket_id, add=[(path, remote)]))
        etag = self._written(key)
        if progress:
            progress(os.path.getsize(path))
        return etag

    def create(self, key: str, data: bytes) -> str:
        """Write ``key`` if absent. RACY: check-then-write; two writers can both succeed."""
        if self._stat(key) is not None:
            raise AlreadyExists(f"object {key!r} already exists")
        return self.put(key, data)

    def update(self, key: str, data: bytes, etag: str) -> str:
        """Write ``key`` if its ETag is ``etag``. RACY: compare-then-write."""
        f = self._stat(key)
        if f is None:
            raise Conflict(f"object {key!r} was deleted concurrently")
        if str(f.xet_hash) != etag:
            raise Conflict(f"object {key!r} changed concurrently")
        return self.put(key, data)

    def delete(self, key: str) -> None:
        remote = self._remote(key)
        try:
            self._call(key, lambda: self._api.batch_bucket_files(self.bucket_id, delete=[remote]))
        except BucketError:
            if self._stat(key) is not None:  # deleting a missing key is not an error
                raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
