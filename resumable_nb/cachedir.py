"""The cache folder, held by descriptor: every file inside is reached relative to it.

A cache folder may have been prepared by someone else — shipped inside a cloned repository, or
sitting in a team folder that others can write to. So nothing in it is trusted by path:

- the root is opened with ``O_DIRECTORY | O_NOFOLLOW`` and checked on the open descriptor
  (``fstat``): ours, and writable by no one else; a root that others can read is made 0700;
- every subfolder (``index``, ``objects``, ``tmp``, ``journal``) is opened the same way
  relative to the root's descriptor and checked the same way; a symlink is refused;
- every file is opened relative to its folder's descriptor with ``O_NOFOLLOW`` and must be a
  regular file of ours with one link, so a planted link or hard link never makes us write,
  truncate or append to a file outside the cache;
- a name is only ever one path component that we derived ourselves; deletion is by
  descriptor too (``unlink(name, dir_fd=...)``), so nothing outside the cache is deleted.

Once the root descriptor is held, renaming or replacing the folder's path (a swap between a
check and a use) changes nothing: we keep working in the folder we checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreError
from .keys import make_private_dirs

__all__ = ["SUBDIRS", "CacheDir"]

SUBDIRS = ("index", "objects", "tmp", "journal", "remote-pending")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _refusal(path: Path, st: os.stat_result, what: str) -> str | None:
    """Why a folder or file with status ``st`` must not be used, or None."""
    if st.st_uid != os.geteuid():
        return (f"refusing {what} {path}: it belongs to another user (uid {st.st_uid}); "
                "set RESUMABLE_NB_DIR to a folder of your own")
    if stat.S_IMODE(st.st_mode) & 0o022:
        return f"refusing {what} {path}: others can write to it; run `chmod 700 {path}`"
    return None


class CacheDir:
    """One cache folder, opened and checked once; closed by :meth:`close`.

    :raises StoreError: the folder is a symlink, not a folder, belongs to another user, or
        others can write to it (the message says how to fix it); or it cannot be created.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(root).expanduser().absolute()
        self._subs: dict[str, int] = {}
        if create:
            try:
                make_private_dirs(self.path)
            except OSError as exc:
                raise StoreError(f"cannot create cache dir {self.path}: {exc.strerror}") from None
        self.fd = self._open_dir(lambda: os.open(self.path, _DIR_FLAGS), self.path, "cache dir")

    @staticmethod
    def _open_dir(opener: object, path: Path, what: str) -> int:
        try:
            fd = opener()  # type: ignore[operator]
        except OSError:
            if os.path.islink(path):
                raise StoreError(f"refusing {what} {path}: it is a symbolic link (remove it, or "
                                 "set RESUMABLE_NB_DIR to the real folder)") from None
            raise
        st = os.fstat(fd)
        why = _refusal(path, st, what)
        if why is not None:
            os.close(fd)
            raise StoreError(why)
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o700)  # e.g. 0755 from a git clone: ours, so make it private
        return fd

    def close(self) -> None:
        for fd in self._subs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._subs.clear()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> CacheDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- folders -----------------------------------------------------------------------------
    def sub(self, name: str, *, create: bool = True) -> int:
        """The descriptor of a checked subfolder, created 0700 when missing.

        :raises StoreError: it is a symlink, not ours, or writable by others.
        :raises FileNotFoundError: it does not exist and ``create`` is false.
        """
        fd = self._subs.get(name)
        if fd is not None:
            return fd
        assert name in SUBDIRS, name
        path = self.path / name
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=self.fd)
        try:
            fd = self._open_dir(lambda: os.open(name, _DIR_FLAGS, dir_fd=self.fd), path, "cache folder")
        except NotADirectoryError:
            raise StoreError(f"refusing cache folder {path}: it is not a folder (remove it)") from None
        self._subs[name] = fd
        return fd

    def has(self, sub: str) -> bool:
        """Does the subfolder exist (as a folder, not a link)?"""
        try:
            st = os.stat(sub, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return stat.S_ISDIR(st.st_mode)

    def sqlite_path(self, sub: str) -> str:
        """A path that names exactly the checked subfolder, for libraries that take paths
        (SQLite): ``/proc/self/fd/N`` resolves to the open descriptor, not to whatever the
        path might name by now."""
        fd = self.sub(sub)
        proc = f"/proc/self/fd/{fd}"
        return proc if os.path.isdir(proc) else str(self.path / sub)

    # -- files -------------------------------------------------------------------------------
    def open(self, sub: str, name: str, flags: int, mode: int = 0o600) -> int:
        """Open ``sub/name`` without following links; it must be a regular file of ours with one
        link (a new one is created with ``mode``). Returns the descriptor.

        :raises StoreError: a link, a folder, another user's file, or a file with other links.
        :raises OSError: as ``os.open`` (e.g. FileNotFoundError without ``O_CREAT``).
        """
        _check_name(name)
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode,
                         dir_fd=self.sub(sub))
        except OSError as exc:
            st = self.lstat(sub, name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise StoreError(f"refusing {self.path / sub / name}: it is a symbolic link "
                                 "(a cache file must be a file of its own; remove the link)") from None
            raise exc from None
        try:
            st = os.fstat(fd)
            why = None
            if not stat.S_ISREG(st.st_mode):
                why = "it is not a regular file"
            elif st.st_uid != os.geteuid():
                why = f"it belongs to another user (uid {st.st_uid})"
            elif st.st_nlink != 1:
                why = f"it has {st.st_nlink} hard links (a cache file never has more than one)"
            if why is not None:
                raise StoreError(f"refusing {self.path / sub / name}: {why}; remove it")
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
            if flags & os.O_NONBLOCK == 0:
                os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def create_temp(self, sub: str, prefix: str, suffix: str) -> tuple[int, str]:
        """A new, empty, private file ``sub/<prefix><random><suffix>``: (descriptor, name)."""
        for _ in range(100):
            name = f"{prefix}{secrets.token_hex(8)}{suffix}"
            try:
                return self.open(sub, name, os.O_RDWR | os.O_CREAT | os.O_EXCL), name
            except FileExistsError:
                continue
        raise StoreError(f"could not create a temp file in {self.path / sub}")

    def lstat(self, sub: str, name: str) -> os.stat_result | None:
        _check_name(name)
        try:
            return os.stat(name, dir_fd=self.sub(sub), follow_symlinks=False)
        except FileNotFoundError:
            return None

    def rename(self, sub: str, name: str, to_sub: str, to_name: str) -> None:
        """Atomically move ``sub/name`` to ``to_sub/to_name`` (both inside the cache)."""
        _check_name(name)
        _check_name(to_name)
        os.replace(name, to_name, src_dir_fd=self.sub(sub), dst_dir_fd=self.sub(to_sub))

    def unlink(self, sub: str, name: str) -> bool:
        """Remove ``sub/name`` (a link is removed, never followed). False if it was not there."""
        _check_name(name)
        try:
            os.unlink(name, dir_fd=self.sub(sub))
        except FileNotFoundError:
            return False
        return True

    def names(self, sub: str) -> Iterator[str]:
        """The names in a subfolder (nothing if it does not exist)."""
        if not self.has(sub):
            return
        with os.scandir(self.sub(sub)) as it:
            for entry in it:
                yield entry.name

    def fsync(self, sub: str) -> None:
        os.fsync(self.sub(sub))

    def size(self) -> int:
        """Bytes of the regular files in the cache's subfolders (links not followed)."""
        total = 0
        for sub in SUBDIRS:
            for name in self.names(sub):
                if _NAME.match(name):
                    st = self.lstat(sub, name)
                    if st is not None and stat.S_ISREG(st.st_mode):
                        total += st.st_size
        return total


def _check_name(name: str) -> None:
    if not _NAME.match(name) or name in (".", ".."):
        raise StoreError(f"refusing the cache file name {name!r}: not a name resumable_nb makes")
