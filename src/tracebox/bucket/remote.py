"""Buckets on object stores through ``obstore``: S3 (and compatibles), GCS, Azure, memory.

Credentials come from the standard places only: flags passed at run time, the backend's
own environment variables (``AWS_*``, ``GOOGLE_*``, ``AZURE_*`` — read by obstore), or an
AWS profile in ``~/.aws/credentials`` / ``~/.aws/config`` (``AWS_PROFILE`` or ``profile``).
Nothing here ever writes a credential anywhere.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import obstore as obs
from obstore import exceptions as oex

from ..errors import (
    AccessDenied,
    AlreadyExists,
    BucketError,
    ConfigError,
    Conflict,
    NoSuchBucket,
    NotFound,
    NotSupported,
    Unreachable,
)
from .store import Blob, ObjectMeta, Progress, ProgressReader, check_key
from .url import BucketSpec

_MEMORY: dict[str, object] = {}  # memory:// stores live as long as the process
_RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=20)}
_CLIENT = {"connect_timeout": timedelta(seconds=5), "timeout": timedelta(seconds=60)}


def _aws_profile(name: str | None) -> dict:
    """Settings for an AWS profile from the shared config/credentials files (if any)."""
    name = name or os.environ.get("AWS_PROFILE")
    if not name:
        return {}
    out: dict = {}
    files = [
        (os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"), f"profile {name}"),
        (os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), name),
    ]
    found = False
    import configparser

    for path, section in files:
        cp = configparser.ConfigParser()
        cp.read(os.path.expanduser(path))
        for sec in (section, name):
            if cp.has_section(sec):
                found = True
                out.update(cp[sec])
    if not found:
        raise AccessDenied(f"AWS profile {name!r} not found in ~/.aws/config or ~/.aws/credentials")
    mapping = {
        "aws_access_key_id": "access_key_id",
        "aws_secret_access_key": "secret_access_key",
        "aws_session_token": "token",
        "region": "region",
        "endpoint_url": "endpoint",
    }
    return {mapping[k]: v for k, v in out.items() if k in mapping}


def open_remote(spec: BucketSpec, options: dict) -> ObjectStore:
    prefix = spec.prefix or None
    if spec.scheme == "memory":
        # one in-process store per name; a prefix is a view into it, as on S3
        store = _MEMORY.get(spec.bucket)
        if store is None:
            store = _MEMORY[spec.bucket] = obs.store.MemoryStore()
        return ObjectStore(lambda: store, spec.url, key_prefix=spec.prefix)
    client = dict(_CLIENT)
    if spec.scheme == "s3":
        config = _aws_profile(options.get("profile"))
        for opt, key in (("endpoint", "endpoint"), ("region", "region")):
            if options.get(opt):
                config[key] = options[opt]
        if options.get("access_key") and options.get("secret_key"):
            config["access_key_id"] = options["access_key"]
            config["secret_access_key"] = options["secret_key"]
        endpoint = (
            config.get("endpoint")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or ""
        )
        if endpoint:
            _check_endpoint(endpoint)
            config["endpoint"] = endpoint
            config.setdefault("virtual_hosted_style_request", False)
            if endpoint.startswith("http://"):
                client["allow_http"] = True
        if not (
            config.get("region")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        ):
            config["region"] = "us-east-1"
        config["conditional_put"] = "etag"
        what = f"S3 bucket {spec.url}"

        def build():
            return obs.store.S3Store(
                spec.bucket,
                prefix=prefix,
                config=config,
                client_options=client,
                retry_config=_RETRY,
            )

    elif spec.scheme == "gs":
        what = f"GCS bucket {spec.url}"

        def build():
            return obs.store.GCSStore(
                spec.bucket, prefix=prefix, client_options=client, retry_config=_RETRY
            )

    elif spec.scheme == "az":
        # az://container or abfs://container@account.dfs.core.windows.net
        container, _, host = spec.bucket.partition("@")
        az_config: dict = {}
        if host:
            az_config["account_name"] = host.split(".", 1)[0]
            if ".fabric.microsoft.com" in host:
                az_config["use_fabric_endpoint"] = True
        what = f"Azure container {spec.url}"

        def build():
            return obs.store.AzureStore(
                container,
                prefix=prefix,
                config=az_config or None,
                client_options=client,
                retry_config=_RETRY,
            )

    else:  # pragma: no cover - url.py only produces the schemes above
        raise NotSupported(f"no object-store backend for {spec.scheme}://")
    return ObjectStore(_in_background(build, what), spec.url, verify_bucket=spec.scheme == "s3")


def _check_endpoint(url: str) -> None:
    """Refuse an endpoint that is not ``http(s)://host[:port][/path]``: obstore accepts
    one at configuration time and then panics on the first request."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        ok = u.scheme in ("http", "https") and bool(u.hostname) and (u.port or 1) > 0
    except ValueError:  # a bad IPv6 literal or port
        ok = False
    if not ok or any(c.isspace() or ord(c) < 0x20 for c in url):
        shown = re.sub(r"//[^/@]*@", "//", url)  # never print a user:password part
        raise ConfigError(f"bad S3 endpoint {shown!r}: expected http(s)://host[:port]")


def _in_background(build: Callable[[], object], what: str) -> Callable[[], object]:
    """Start building an obstore client in a thread and return what waits for it.

    Building one loads the system's TLS roots (5-15 ms, mostly with the GIL released), so the
    command goes on importing and planning meanwhile; the first request waits. A bad
    configuration is a ``BucketError`` from that first request (and every later one)."""
    box: list = []

    def run() -> None:
        try:
            box.append(build())
        except Exception as e:  # obstore raises plain exceptions for bad config
            box.append(BucketError(f"cannot configure {what}: {_first_line(e)}"))

    t = threading.Thread(target=run, name="bucket-client", daemon=True)
    t.start()

    def wait():
        t.join()
        if isinstance(box[0], BucketError):
            raise box[0]
        return box[0]

    return wait


_STATUS = re.compile(r"status(?: code)?:? (\d{3})\b")
_S3_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _translate(e: Exception, key: str, url: str) -> Exception:
    msg = _first_line(e)
    if isinstance(e, (oex.NotFoundError, FileNotFoundError)):
        if "NoSuchBucket" in str(e):
            return NoSuchBucket(f"bucket {url} does not exist (create it, or check the name)")
        return NotFound(f"no object {key!r}")
    if isinstance(e, (oex.AlreadyExistsError, FileExistsError)):
        return AlreadyExists(f"object {key!r} already exists")
    if isinstance(e, oex.PreconditionError):
        return Conflict(f"object {key!r} changed concurrently")
    if isinstance(e, (oex.PermissionDeniedError, oex.UnauthenticatedError, PermissionError)):
        return AccessDenied(f"access denied to {url}; check credentials and permissions")
    if isinstance(e, (oex.NotSupportedError, NotImplementedError)):
        return NotSupported(f"{url} does not support this operation: {msg}")
    text = str(e)
    if "NoSuchBucket" in text:
        return NoSuchBucket(f"bucket {url} does not exist (create it, or check the name)")
    status = _STATUS.search(text)
    code = int(status.group(1)) if status else None
    if code in (401, 403) or any(
        s in text
        for s in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
            "401 Unauthorized",
        )
    ):
        return AccessDenied(f"access denied to {url}; check credentials and permissions")
    if code == 404:
        return NotFound(f"no object {key!r}")
    if code == 412:
        return Conflict(f"object {key!r} changed concurrently")
    if code is not None and 400 <= code < 500:
        reason = _S3_CODE.search(text)
        why = reason.group(1) if reason else f"HTTP {code}"
        return BucketError(f"{url} refused the request for {key!r}: {why}")
    if any(
        s in text.lower()
        for s in (
            "connect",
            "dns error",
            "timed out",
            "timeout",
            "connection refused",
            "error sending request",
        )
    ) or (code is not None and code >= 500):
        return Unreachable(f"cannot reach {url}: {msg}")
    return BucketError(f"{url}: {msg}")


def _safe_offset(after: str, folder: str) -> str:
    """A listing offset at or before ``after`` that every S3 server honours correctly.

    S3's ``start-after`` compares whole keys, so ``a/b/x`` comes after ``a/b`` and after
    ``a/b-c`` ("-" sorts before "/"). SeaweedFS instead compares folder entries by bare
    name and skips folder ``b`` with everything in it when the marker's segment there is
    ``b`` or ``b-c`` (or, at any level above, ``b-c`` while descending). So the marker is cut
    back, inside the listed ``folder``, to before the first segment that could hide such a
    folder: one character short of its first character below "/" (for the last segment,
    one character short of its end). Listing from there is correct on every server; the
    caller drops the few extra keys it returns (those up to ``after``). A marker that is
    not a valid key (empty or dot segments, control characters) is cut before the first
    bad segment, since obstore refuses such paths.
    """
    base = f"{folder}/" if folder and after.startswith(f"{folder}/") else ""
    segs = after[len(base) :].split("/")
    for j, seg in enumerate(segs):
        if seg in ("", ".", "..") or any(ord(c) < 0x20 or c == "\x7f" for c in seg):
            segs = segs[:j]
            break
    for m, seg in enumerate(segs):
        cut = next((i for i, c in enumerate(seg) if c < "/"), None)
        if cut is None and m < len(segs) - 1:
            continue  # a folder on the way: servers descend into it
        cut = len(seg) if cut is None else cut
        while m >= 0:  # one short of the cut; if nothing is left, back off a segment
            keep = min(cut, len(segs[m])) - 1
            if keep >= 1:
                return base + "/".join([*segs[:m], segs[m][:keep]])
            m -= 1
            cut = len(segs[m]) if m >= 0 else 0
        break
    return ""  # nothing safe inside the folder: list all of it


def _iso(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ObjectStore:
    """A bucket on any obstore backend; raises only ``tracebox.errors`` exceptions.

    ``key_prefix`` is applied here, for backends without a native prefix (memory).
    """

    supports_cas = True
    local = False

    def __init__(
        self, client: Callable[[], object], url: str, *, key_prefix: str = "", verify_bucket=False
    ):
        self._client = client  # returns the obstore store (it may still be being built)
        self._store = None
        self.url = url
        self._pre = f"{key_prefix}/" if key_prefix else ""
        self._bucket_ok = not verify_bucket

    def _writable(self) -> None:
        """Before this process's first write, make sure the bucket exists: some S3 servers
        (SeaweedFS) create a missing bucket on PUT, so a typo in a bucket name would
        silently start a new bucket. Any earlier read that reached the bucket counts."""
        if self._bucket_ok:
            return
        try:
            self.get(".tracebox-bucket-check")
        except NotFound:
            pass  # the bucket answered: the key is simply absent

    @property
    def _s(self):
        if self._store is None:
            self._store = self._client()
        return self._store

    def _call(self, key: str, fn, *args, **kw):
        path = self._pre + check_key(key)
        store = self._s
        try:
            return fn(store, path, *args, **kw)
        except Exception as e:
            raise _translate(e, key, self.url) from None

    def get(self, key: str) -> Blob:
        try:
            r = self._call(key, obs.get)
        except NotFound:
            self._bucket_ok = True
            raise
        self._bucket_ok = True
        try:
            data = bytes(r.bytes())
        except Exception as e:
            raise _translate(e, key, self.url) from None
        return Blob(data, r.meta.get("e_tag") or "")

    def head(self, key: str) -> ObjectMeta:
        m = self._call(key, obs.head)
        return ObjectMeta(key, m["size"], m.get("e_tag") or "", _iso(m["last_modified"]))

    def put(self, key: str, data: bytes) -> str:
        self._writable()
        r = self._call(key, obs.put, data)
        return r.get("e_tag") or ""

    def create(self, key: str, data: bytes) -> str:
        self._writable()
        r = self._call(key, obs.put, data, mode="create")
        return r.get("e_tag") or ""

    def update(self, key: str, data: bytes, etag: str) -> str:
        self._writable()
        try:
            r = self._call(key, obs.put, data, mode={"e_tag": etag})
        except NotFound:  # some servers answer If-Match on a missing key with 404
            raise Conflict(f"object {key!r} was deleted concurrently") from None
        return r.get("e_tag") or ""

    def delete(self, key: str) -> None:
        try:
            self._call(key, obs.delete)
        except NotFound:
            pass

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        """Objects whose key starts with ``prefix``, after ``start_after``.

        Keys come in the server's order: lexicographic on AWS S3, GCS, Azure and memory.
        SeaweedFS orders a folder by its bare name, so ``a/b/x`` may come before ``a/b-c``;
        within one folder the order is lexicographic everywhere.
        """
        # obstore lists by path segments; a partial last segment is filtered here.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder:
            check_key(folder)
        if start_after and prefix and not start_after.startswith(prefix):
            if start_after > prefix:
                return  # every key under prefix sorts before start_after
            start_after = None  # every key under prefix sorts after it
        kw: dict = {"chunk_size": 1000}
        if start_after:
            offset = _safe_offset(start_after, folder)
            if offset:
                kw["offset"] = self._pre + offset
        n, store = len(self._pre), self._s
        try:
            for batch in obs.list(store, (self._pre + folder).rstrip("/") or None, **kw):
                for m in batch:
                    path = m["path"][n:]
                    if path.startswith(prefix) and (not start_after or path > start_after):
                        yield ObjectMeta(
                            path, m["size"], m.get("e_tag") or "", _iso(m["last_modified"])
                        )
        except Exception as e:
            raise _translate(e, prefix or "/", self.url) from None

    def put_file(self, key: str, path: str, progress: Progress | None = None) -> str:
        from pathlib import Path

        if not os.path.isfile(path):
            raise BucketError(f"cannot upload {path!r}: not a readable file")
        self._writable()
        if progress is None:
            r = self._call(key, obs.put, Path(path))
        else:  # obstore streams file objects in parts, as it does paths
            with ProgressReader(open(path, "rb"), progress) as f:
                r = self._call(key, obs.put, f)
        return r.get("e_tag") or ""

    def get_file(self, key: str, path: str, progress: Progress | None = None) -> ObjectMeta:
        r = self._call(key, obs.get)
        tmp = f"{path}.part-{os.urandom(4).hex()}"
        try:
            with open(tmp, "wb") as f:
                chunks = iter(r.stream())
                while True:
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        break
                    except Exception as e:
                        raise _translate(e, key, self.url) from None
                    f.write(chunk)
                    if progress:
                        progress(len(chunk))
            os.replace(tmp, path)
        except OSError as e:
            _unlink(tmp)
            raise BucketError(f"cannot write local file {path!r}: {e.strerror or e}") from None
        except BaseException:
            _unlink(tmp)
            raise
        m = r.meta
        return ObjectMeta(key, m["size"], m.get("e_tag") or "", _iso(m["last_modified"]))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
