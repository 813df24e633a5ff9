"""A bucket in a local folder: the embedded default, zero set-up.

obstore's LocalStore cannot do compare-and-swap (``PutMode::Update`` raises
NotImplemented, checked with obstore 0.12), so this backend is our own, on plain POSIX
calls, and it also keeps local CLI calls from importing obstore at all:

- every write goes to a temp file in ``<root>/.tracebox-tmp/`` first, so readers never see
  a half-written object;
- ``create`` publishes with ``link(2)``, which fails atomically if the key exists;
- ``update`` and ``delete`` hold an exclusive ``flock`` on a per-key lock file, compare the
  ETag, then ``rename(2)`` — atomic across processes on one machine (and on NFSv4 with
  working locks; not on filesystems without ``flock``);
- the ETag is ``<inode>-<mtime_ns>-<size>`` of the file, read with ``fstat`` on the same
  descriptor the content is read from, so an ETag always matches the bytes returned.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime

from ..errors import AccessDenied, AlreadyExists, BucketError, Conflict, NotFound
from .store import Blob, ObjectMeta, check_key

_HIDDEN = (".tracebox-tmp", ".tracebox-locks")


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocalStore:
    supports_cas = True

    def __init__(self, root: str, *, create: bool = False):
        self.root = os.path.abspath(root)
        self.url = self.root
        if create:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as e:
                raise _os_error(e, self.root) from None
        elif not os.path.isdir(self.root):
            raise NotFound(
                f"bucket folder {self.root} does not exist; run `tracebox init` to create it"
            )
        self._tmp = os.path.join(self.root, ".tracebox-tmp")
        self._locks = os.path.join(self.root, ".tracebox-locks")

    # -- paths ------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        check_key(key)
        if key.split("/", 1)[0] in _HIDDEN:
            raise NotFound(f"no object {key!r}")
        return os.path.join(self.root, *key.split("/"))

    def _tmpfile(self) -> tuple[int, str]:
        os.makedirs(self._tmp, exist_ok=True)
        name = os.path.join(self._tmp, f"{os.getpid()}-{os.urandom(8).hex()}")
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), name

    def _stage(self, data: bytes | None = None, src: str | None = None) -> str:
        try:
            fd, name = self._tmpfile()
        except OSError as e:
            raise _os_error(e, self.root) from None
        try:
            with os.fdopen(fd, "wb") as f:
                if src is None:
                    f.write(data or b"")
                else:
                    with open(src, "rb") as s:
                        shutil.copyfileobj(s, f, 1 << 20)
        except BaseException:
            _unlink(name)
            raise
        return name

    def _lock(self, key: str) -> int:
        os.makedirs(self._locks, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        fd = os.open(os.path.join(self._locks, name), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    # -- reads --------------------------------------------------------------------------
    def get(self, key: str) -> Blob:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise NotFound(f"no object {key!r}")
                return Blob(f.read(), _etag(st))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"no object {key!r}") from None
        except OSError as e:
            raise _os_error(e, key) from None

    def head(self, key: str) -> ObjectMeta:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no object {key!r}") from None
        except OSError as e:
            raise _os_error(e, key) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"no object {key!r}")
        return ObjectMeta(key, st.st_size, _etag(st), _iso(st.st_mtime_ns))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        """Objects whose key starts with ``prefix``, in key order, after ``start_after``."""
        if prefix and "/" in prefix:
            base_key = prefix.rsplit("/", 1)[0]
            check_key(base_key)
            base = os.path.join(self.root, *base_key.split("/"))
            base_key += "/"
        else:
            base_key, base = "", self.root
        yield from self._walk(base, base_key, prefix, start_after or "")

    def _walk(self, folder: str, key_prefix: str, prefix: str, after: str):
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise _os_error(e, key_prefix or "/") from None
        items = []
        for e in entries:
            if not key_prefix and e.name in _HIDDEN:
                continue
            is_dir = e.is_dir(follow_symlinks=False)
            if not is_dir and not e.is_file(follow_symlinks=False):
                continue  # symlinks, sockets, ...: never part of a bucket
            key = key_prefix + e.name
            # sort as S3 does: a folder sorts by "name/", so "a-b" < "a/x"
            items.append((key + "/" if is_dir else key, is_dir, e))
        items.sort(key=lambda t: t[0])
        for sort_key, is_dir, e in items:
            if is_dir:
                if not (sort_key.startswith(prefix) or prefix.startswith(sort_key)):
                    continue
                if after and after >= sort_key and not after.startswith(sort_key):
                    continue
                yield from self._walk(e.path, sort_key, prefix, after)
            else:
                if not sort_key.startswith(prefix) or (after and sort_key <= after):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield ObjectMeta(sort_key, st.st_size, _etag(st), _iso(st.st_mtime_ns))

    def get_file(self, key: str, path: str) -> ObjectMeta:
        src = self._path(key)
        meta = self.head(key)
        tmp = f"{path}.part-{os.urandom(4).hex()}"
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, path)
        except FileNotFoundError:
            _unlink(tmp)
            raise NotFound(f"no object {key!r}") from None
        except BaseException:
            _unlink(tmp)
            raise
        return meta

    # -- writes -------------------------------------------------------------------------
    def _publish(self, tmp: str, key: str, *, exclusive: bool) -> str:
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if exclusive:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise AlreadyExists(f"object {key!r} already exists") from None
                st = os.stat(path)
            else:
                st = os.stat(tmp)
                os.replace(tmp, path)
            return _etag(st)
        except OSError as e:
            raise _os_error(e, key) from None
        finally:
            _unlink(tmp)

    def put(self, key: str, data: bytes) -> str:
        self._path(key)
        return self._publish(self._stage(data), key, exclusive=False)

    def put_file(self, key: str, path: str) -> str:
        self._path(key)
        return self._publish(self._stage(src=path), key, exclusive=False)

    def create(self, key: str, data: bytes) -> str:
        self._path(key)
        return self._publish(self._stage(data), key, exclusive=True)

    def update(self, key: str, data: bytes, etag: str) -> str:
        path = self._path(key)
        tmp = self._stage(data)
        lock = self._lock(key)
        try:
            try:
                current = _etag(os.stat(path))
            except FileNotFoundError:
                raise Conflict(f"object {key!r} was deleted concurrently") from None
            if current != etag:
                raise Conflict(f"object {key!r} changed concurrently")
            return self._publish(tmp, key, exclusive=False)
        finally:
            _unlink(tmp)
            os.close(lock)

    def delete(self, key: str) -> None:
        path = self._path(key)
        lock = self._lock(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _os_error(e, key) from None
        finally:
            os.close(lock)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _os_error(e: OSError, what: str) -> BucketError:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AccessDenied(f"permission denied writing/reading {what!r}: {e.strerror}")
    if e.errno == errno.ENOSPC:
        return BucketError(f"no space left on device while writing {what!r}")
    return BucketError(f"local bucket error on {what!r}: {e.strerror or e}")
