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
  Inode numbers are reused at once on ext4 and many kernels keep file times at timer-tick
  granularity, so the writer sets the mtime itself, from the nanosecond clock and, for
  ``update``, strictly after the version it replaces: an old ETag never comes back;
- symbolic links are never followed: not as objects, not as folders on the way to one,
  and never listed — a bucket cannot be used to read or write outside its folder.
  (The bucket folder itself may be a symlink.)

A folder cannot hold both an object ``a/b`` and an object ``a/b/c`` (a file and a folder
of the same name); such a write fails with a ``BucketError`` that says so.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from ..errors import AccessDenied, AlreadyExists, BucketError, Conflict, NotFound, UsageError
from .store import Blob, ObjectMeta, Progress, check_key


def _copy(src, dst, bufsize: int, progress: Progress | None = None) -> None:
    while chunk := src.read(bufsize):
        dst.write(chunk)
        if progress:
            progress(len(chunk))


def _sha256(data: bytes):
    import hashlib  # lazily: hashlib costs ~4 ms of every CLI call's start-up

    return hashlib.sha256(data)


_HIDDEN = (".tracebox-tmp", ".tracebox-locks")
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocalStore:
    supports_cas = True
    local = True

    def __init__(self, root: str, *, create: bool = False):
        self.root = os.path.abspath(root)
        self.url = self.root
        if create:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as e:
                raise _os_error(e, self.root) from None
        if not os.path.isdir(self.root):
            raise NotFound(
                f"bucket folder {self.root} does not exist; run `tracebox init` to create it"
            )
        self._real = os.path.realpath(self.root)
        self._tmp = os.path.join(self.root, ".tracebox-tmp")
        self._locks = os.path.join(self.root, ".tracebox-locks")

    # -- paths ------------------------------------------------------------------------
    def _path(self, key: str, *, write: bool = False) -> str:
        check_key(key)
        if key.split("/", 1)[0] in _HIDDEN:
            if write:
                raise UsageError(f"object key {key!r} is reserved by the local bucket")
            raise NotFound(f"no object {key!r}")
        return os.path.join(self.root, *key.split("/"))

    def _no_links(self, folder_key: str) -> bool:
        """True if no folder on the way to ``folder_key`` (inside the bucket) is a symlink."""
        if not folder_key:
            return True
        parts = folder_key.split("/")
        real = os.path.realpath(os.path.join(self.root, *parts))
        return real == os.path.join(self._real, *parts)

    def _parent_ok(self, key: str) -> bool:
        return self._no_links(key.rsplit("/", 1)[0] if "/" in key else "")

    def _tmpfile(self) -> tuple[int, str]:
        os.makedirs(self._tmp, exist_ok=True)
        name = os.path.join(self._tmp, f"{os.getpid()}-{os.urandom(8).hex()}")
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), name

    def _stage(
        self, data: bytes | None = None, src: str | None = None, progress: Progress | None = None
    ) -> str:
        try:
            fd, name = self._tmpfile()
        except OSError as e:
            raise _os_error(e, self.root) from None
        try:
            with os.fdopen(fd, "wb") as f:
                if src is None:
                    f.write(data or b"")
                else:
                    try:
                        s = open(src, "rb")
                    except OSError as e:
                        raise _src_error(e, src) from None
                    with s:
                        _copy(s, f, 1 << 20, progress)
        except OSError as e:
            _unlink(name)
            raise _os_error(e, self.root) from None
        except BaseException:
            _unlink(name)
            raise
        return name

    def _lock(self, key: str) -> int:
        try:
            os.makedirs(self._locks, exist_ok=True)
            name = _sha256(key.encode()).hexdigest()[:32]
            fd = os.open(os.path.join(self._locks, name), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _os_error(e, self.root) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    # -- reads --------------------------------------------------------------------------
    def _open(self, key: str) -> tuple[int, os.stat_result]:
        """An fd on the object's file (never through a symlink) and its ``fstat``."""
        path = self._path(key)
        if not self._parent_ok(key):
            raise NotFound(f"no object {key!r}")
        try:
            fd = os.open(path, _O_READ)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"no object {key!r}") from None
        except OSError as e:
            if e.errno == errno.ELOOP:  # a symlink: not part of the bucket
                raise NotFound(f"no object {key!r}") from None
            raise _os_error(e, key) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFound(f"no object {key!r}")
        return fd, st

    def get(self, key: str) -> Blob:
        fd, st = self._open(key)
        try:
            with os.fdopen(fd, "rb") as f:
                return Blob(f.read(), _etag(st))
        except OSError as e:
            raise _os_error(e, key) from None

    def head(self, key: str) -> ObjectMeta:
        path = self._path(key)
        if not self._parent_ok(key):
            raise NotFound(f"no object {key!r}")
        try:
            st = os.lstat(path)
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
            if base_key.split("/", 1)[0] in _HIDDEN or not self._no_links(base_key):
                return
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

    def get_file(self, key: str, path: str, progress: Progress | None = None) -> ObjectMeta:
        fd, st = self._open(key)
        tmp = f"{path}.part-{os.urandom(4).hex()}"
        try:
            with os.fdopen(fd, "rb") as src:
                try:
                    dst = open(tmp, "wb")
                except OSError as e:
                    raise _src_error(e, path) from None
                with dst:
                    _copy(src, dst, 1 << 20, progress)
            os.replace(tmp, path)
        except OSError as e:
            _unlink(tmp)
            raise _src_error(e, path) from None
        except BaseException:
            _unlink(tmp)
            raise
        return ObjectMeta(key, st.st_size, _etag(st), _iso(st.st_mtime_ns))

    # -- writes -------------------------------------------------------------------------
    def _publish(self, tmp: str, key: str, *, exclusive: bool, after_ns: int = -1) -> str:
        """Move the staged ``tmp`` to ``key``; its mtime is set later than ``after_ns``."""
        path = self._path(key, write=True)
        try:
            if not self._parent_ok(key):
                raise BucketError(
                    f"cannot write {key!r}: a folder on its path is a symbolic link, "
                    "which a bucket never follows"
                )
            ns = max(time.time_ns(), after_ns + 1)
            os.utime(tmp, ns=(ns, ns))
            st = os.stat(tmp)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if exclusive:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    if os.path.isdir(path) and not os.path.islink(path):
                        raise _clash(key) from None
                    raise AlreadyExists(f"object {key!r} already exists") from None
            else:
                os.replace(tmp, path)
            return _etag(st)
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
                raise _clash(key) from None
            raise _os_error(e, key) from None
        finally:
            _unlink(tmp)

    def _current_ns(self, path: str) -> int:
        try:
            return os.lstat(path).st_mtime_ns
        except OSError:
            return -1

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key, write=True)
        tmp = self._stage(data)
        return self._publish(tmp, key, exclusive=False, after_ns=self._current_ns(path))

    def put_file(self, key: str, path: str, progress: Progress | None = None) -> str:
        target = self._path(key, write=True)
        tmp = self._stage(src=path, progress=progress)
        return self._publish(tmp, key, exclusive=False, after_ns=self._current_ns(target))

    def create(self, key: str, data: bytes) -> str:
        self._path(key, write=True)
        return self._publish(self._stage(data), key, exclusive=True)

    def update(self, key: str, data: bytes, etag: str) -> str:
        path = self._path(key, write=True)
        if not self._parent_ok(key):
            raise Conflict(f"object {key!r} does not exist")
        tmp = self._stage(data)
        try:
            lock = self._lock(key)
        except BaseException:
            _unlink(tmp)
            raise
        try:
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                raise Conflict(f"object {key!r} was deleted concurrently") from None
            except OSError as e:
                raise _os_error(e, key) from None
            if not stat.S_ISREG(st.st_mode) or _etag(st) != etag:
                raise Conflict(f"object {key!r} changed concurrently")
            return self._publish(tmp, key, exclusive=False, after_ns=st.st_mtime_ns)
        finally:
            _unlink(tmp)
            os.close(lock)

    def delete(self, key: str) -> None:
        path = self._path(key, write=True)
        if not self._parent_ok(key):
            return
        lock = self._lock(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            if e.errno == errno.EISDIR or os.path.isdir(path):
                return  # a folder is not an object
            raise _os_error(e, key) from None
        finally:
            os.close(lock)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _clash(key: str) -> BucketError:
    return BucketError(
        f"cannot write {key!r}: in a folder bucket a key cannot be both an object and a "
        "folder of other objects (e.g. 'a/b' and 'a/b/c')"
    )


def _os_error(e: OSError, what: str) -> BucketError:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AccessDenied(
            f"permission denied on local bucket {what!r} ({e.strerror}); "
            "check the folder's permissions or pick another bucket"
        )
    if e.errno == errno.ENOSPC:
        return BucketError(f"no space left on device while writing {what!r}")
    return BucketError(f"local bucket error on {what!r}: {e.strerror or e}")


def _src_error(e: OSError, path: str) -> BucketError:
    """An error on the caller's own file (upload source or download target), not the bucket."""
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AccessDenied(f"permission denied on local file {path!r}: {e.strerror}")
    return BucketError(f"cannot use local file {path!r}: {e.strerror or e}")
