"""The user's secret key: where it lives, how it is checked, and the keys derived from it.

One 32-byte secret per user (or per team, when a key file is shared on purpose) signs every
manifest, payload and journal record resumable_nb writes. Nothing is unpickled, restored or
run unless it verifies with this key, so the key file is checked as strictly as ``ssh``
checks ``~/.ssh/id_*``: a regular file (not a link, not a folder), owned by this user,
readable by no one else, in folders created owner-only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from .config import env_path
from .errors import StoreError

__all__ = ["default_key_file", "derive", "load_key", "make_private_dirs"]


def default_key_file() -> Path:
    """Where the per-user key lives: ``$RESUMABLE_NB_KEY_FILE``, else
    ``$XDG_CONFIG_HOME/resumable_nb/hmac.key`` (``~/.config/...``)."""
    env = env_path("KEY_FILE")
    if env is not None:
        return env
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "resumable_nb" / "hmac.key"


def derive(key: bytes, purpose: str) -> bytes:
    """A key for one purpose (``"journal"``, ``"buffer"``...): a MAC made for one use never
    verifies as another."""
    return hmac.new(key, f"resumable_nb {purpose} v1".encode(), hashlib.sha256).digest()


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700 whatever the umask (``mkdir -p``
    would make the parents 0777 under ``umask 000``)."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            continue
        os.chmod(p, 0o700, follow_symlinks=False)  # mkdir's mode is masked by the umask


def load_key(path: Path) -> bytes:
    """Read the key, creating it (0600, in 0700 folders) on first use.

    The key is written to a temp file, fsynced and hard-linked into place: a crash or a second
    kernel starting at the same moment never sees a half-written key.

    :raises StoreError: the key file is a link or not a regular file, belongs to another user,
        is readable by others, or is too short — with the fix in the message.
    """
    path = Path(path).absolute()
    make_private_dirs(path.parent)
    if not os.path.lexists(path):
        _create(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if os.path.islink(path):
            raise StoreError(f"the key file {path} is a symbolic link: refusing it (a key must be "
                             f"a file of your own; remove the link to make a new key)") from None
        raise StoreError(f"cannot read the key file {path} ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"the key file {path} is not a regular file: remove it and a new key "
                             "is made (existing cache entries will then re-run)")
        if st.st_uid != os.geteuid():
            raise StoreError(f"the key file {path} belongs to another user (uid {st.st_uid}): "
                             "refusing it; set RESUMABLE_NB_KEY_FILE to a key of your own")
        if st.st_mode & 0o077:
            raise StoreError(f"the key file {path} is readable by others: run `chmod 600 {path}`")
        key = os.read(fd, 4096)
    finally:
        os.close(fd)
    if len(key) < 32:
        raise StoreError(f"the key file {path} is too short: delete it to make a new one "
                         "(existing cache entries will then re-run)")
    return key


def _create(path: Path) -> None:
    tmp = path.parent / f".hmac-{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(tmp, path, follow_symlinks=False)  # atomic; fails if another process won
        except FileExistsError:
            pass
        else:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    finally:
        os.unlink(tmp)
