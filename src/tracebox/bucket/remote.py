"""Buckets on object stores through ``obstore``: S3 (and compatibles), GCS, Azure, memory.

Credentials come from the standard places only: flags passed at run time, the backend's
own environment variables (``AWS_*``, ``GOOGLE_*``, ``AZURE_*`` — read by obstore), or an
AWS profile in ``~/.aws/credentials`` / ``~/.aws/config`` (``AWS_PROFILE`` or ``profile``).
Nothing here ever writes a credential anywhere.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterator
from datetime import timedelta

import obstore as obs
from obstore import exceptions as oex

from ..errors import (
    AccessDenied,
    AlreadyExists,
    BucketError,
    Conflict,
    NotFound,
    NotSupported,
    Unreachable,
)
from .store import Blob, ObjectMeta, check_key
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
        store = _MEMORY.get(spec.url)  # one in-process store per name/prefix
        if store is None:
            store = _MEMORY[spec.url] = obs.store.MemoryStore()
        return ObjectStore(store, spec.url)
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
        try:
            store = obs.store.S3Store(
                spec.bucket,
                prefix=prefix,
                config=config,
                client_options=client,
                retry_config=_RETRY,
            )
        except Exception as e:  # obstore raises plain exceptions for bad config
            raise BucketError(f"cannot configure S3 bucket {spec.url}: {_first_line(e)}") from None
    elif spec.scheme == "gs":
        try:
            store = obs.store.GCSStore(
                spec.bucket, prefix=prefix, client_options=client, retry_config=_RETRY
            )
        except Exception as e:
            raise BucketError(f"cannot configure GCS bucket {spec.url}: {_first_line(e)}") from None
    elif spec.scheme == "az":
        try:
            store = obs.store.AzureStore(
                spec.bucket, prefix=prefix, client_options=client, retry_config=_RETRY
            )
        except Exception as e:
            raise BucketError(
                f"cannot configure Azure container {spec.url}: {_first_line(e)}"
            ) from None
    else:  # pragma: no cover - url.py only produces the schemes above
        raise NotSupported(f"no object-store backend for {spec.scheme}://")
    return ObjectStore(store, spec.url)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _translate(e: Exception, key: str, url: str) -> Exception:
    msg = _first_line(e)
    if isinstance(e, (oex.NotFoundError, FileNotFoundError)):
        if "NoSuchBucket" in str(e):
            return NotFound(f"bucket {url} does not exist (create it, or check the name)")
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
        return NotFound(f"bucket {url} does not exist (create it, or check the name)")
    if any(
        s in text
        for s in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
            "status 403",
            "401 Unauthorized",
        )
    ):
        return AccessDenied(f"access denied to {url}; check credentials and permissions")
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
    ):
        return Unreachable(f"cannot reach {url}: {msg}")
    return BucketError(f"{url}: {msg}")


def _iso(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ObjectStore:
    """A bucket on any obstore backend; raises only ``tracebox.errors`` exceptions."""

    supports_cas = True

    def __init__(self, store, url: str):
        self._s = store
        self.url = url

    def _call(self, key: str, fn, *args, **kw):
        try:
            return fn(self._s, *args, **kw)
        except Exception as e:
            raise _translate(e, key, self.url) from None

    def get(self, key: str) -> Blob:
        r = self._call(check_key(key), obs.get, key)
        try:
            data = bytes(r.bytes())
        except Exception as e:
            raise _translate(e, key, self.url) from None
        return Blob(data, r.meta.get("e_tag") or "")

    def head(self, key: str) -> ObjectMeta:
        m = self._call(check_key(key), obs.head, key)
        return ObjectMeta(key, m["size"], m.get("e_tag") or "", _iso(m["last_modified"]))

    def put(self, key: str, data: bytes) -> str:
        r = self._call(check_key(key), obs.put, key, data)
        return r.get("e_tag") or ""

    def create(self, key: str, data: bytes) -> str:
        r = self._call(check_key(key), obs.put, key, data, mode="create")
        return r.get("e_tag") or ""

    def update(self, key: str, data: bytes, etag: str) -> str:
        r = self._call(check_key(key), obs.put, key, data, mode={"e_tag": etag})
        return r.get("e_tag") or ""

    def delete(self, key: str) -> None:
        try:
            self._call(check_key(key), obs.delete, key)
        except NotFound:
            pass

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        # obstore lists by path segments; a partial last segment is filtered here.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        kw = {"chunk_size": 1000}
        if start_after:
            kw["offset"] = start_after
        try:
            for batch in obs.list(self._s, folder or None, **kw):
                for m in batch:
                    path = m["path"]
                    if path.startswith(prefix):
                        yield ObjectMeta(
                            path, m["size"], m.get("e_tag") or "", _iso(m["last_modified"])
                        )
        except Exception as e:
            raise _translate(e, prefix or "/", self.url) from None

    def put_file(self, key: str, path: str) -> str:
        from pathlib import Path

        r = self._call(check_key(key), obs.put, key, Path(path))
        return r.get("e_tag") or ""

    def get_file(self, key: str, path: str) -> ObjectMeta:
        check_key(key)
        tmp = f"{path}.part-{os.urandom(4).hex()}"
        try:
            r = self._call(key, obs.get, key)
            with open(tmp, "wb") as f:
                for chunk in r.stream():
                    f.write(chunk)
            os.replace(tmp, path)
        except Exception as e:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(e, BucketError):
                raise
            raise _translate(e, key, self.url) from None
        m = r.meta
        return ObjectMeta(key, m["size"], m.get("e_tag") or "", _iso(m["last_modified"]))
