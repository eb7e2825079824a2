"""The step store: a small index in diskcache, payload files written by us.

Layout under the cache root (created 0700)::

    index/    diskcache: step key -> signed manifest (JSON bytes); eviction off
    objects/  content-addressed payload files: <hmac>.rnb
    tmp/      payloads being written; renamed into objects/ only when complete

A payload file is one pickle stream (protocol 5) followed by its out-of-band buffers (array
data), each aligned to 64 bytes. The manifest holds the file's size, an HMAC-SHA256 of the
pickle stream and a MAC of every buffer (:mod:`resumable_nb.bufmac`: AES-GMAC for big ones,
~25 GB/s on one core, keyed BLAKE3 for small ones; HMAC-SHA256 manages 1.6 GB/s: the MACs of
a 1 GiB array would otherwise cost more than reading it); the manifest itself is
HMAC-signed. Nothing is unpickled before every check passes, so a torn, flipped or planted
file reads as :class:`~resumable_nb.errors.CorruptEntry` (a miss), never as a wrong value.
Big buffers are restored as a private (copy-on-write) mapping of the payload file, their
MACs checked over the mapping before anything is unpickled. (The opt-in lazy restore maps
them without reading them, so it skips their MACs — never the pickle stream's.)

Write order: payload to ``tmp/`` -> fsync -> rename into ``objects/`` -> fsync the folder ->
index entry (one SQLite transaction, synchronous=FULL). A crash at any point leaves either
no entry (a miss) or a complete one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import mmap
import os
import pickle
import re
import stat
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache
import diskcache.core

from . import _faults, serialize
from .bufmac import BufferMacs
from .cachedir import CacheDir
from .errors import CorruptEntry, RestoreError, StoreError
from .keys import default_key_file, derive, load_key

__all__ = ["Entry", "Store", "output_sizes"]

STORE_VERSION = 2
_OBJECT = re.compile(r"^[0-9a-f]{64}\.rnb$")  # the only payload names we make (and delete)
_ALIGN = 64
_CHUNK = 1 << 24
_SMALL = 1 << 18  # payloads kept in memory once verified (no out-of-band buffers)
_MAP_MIN = 1 << 20  # buffers of a payload at least this big are mapped, not read


@dataclass(frozen=True, slots=True)
class Entry:
    """A manifest: what one stored step contains and how to check it."""

    key: str
    step: str
    file: str
    size: int
    digest: str
    pickle_len: int
    buffers: tuple[tuple[int, int, str], ...]  # (offset, length, MAC: resumable_nb.bufmac)
    outputs: tuple[str, ...]
    deleted: tuple[str, ...]
    output_sizes: Mapping[str, int]
    duration: float
    created: float
    python: str
    version: int = STORE_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "key": self.key, "step": self.step, "file": self.file,
            "size": self.size, "digest": self.digest, "pickle_len": self.pickle_len,
            "buffers": [list(b) for b in self.buffers], "outputs": list(self.outputs),
            "deleted": list(self.deleted), "output_sizes": dict(self.output_sizes),
            "duration": self.duration, "created": self.created, "python": self.python,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Entry:
        return cls(
            key=d["key"], step=d["step"], file=d["file"], size=int(d["size"]), digest=d["digest"],
            pickle_len=int(d["pickle_len"]),
            buffers=tuple((int(a), int(b), str(c)) for a, b, c in d["buffers"]),
            outputs=tuple(d["outputs"]), deleted=tuple(d["deleted"]),
            output_sizes=dict(d["output_sizes"]), duration=float(d["duration"]),
            created=float(d["created"]), python=d["python"], version=int(d["version"]),
            extra=dict(d.get("extra", {})),
        )


class _SafeDisk(diskcache.Disk):
    """diskcache's Disk, made inert: the index holds small signed JSON manifests inline, nothing
    else. It never unpickles (CVE-2025-69872: a planted pickle would run code inside ``get``),
    never writes a value file, and never deletes one: a planted row whose ``filename`` is
    ``/home/me/thesis.tex`` would otherwise be removed by ``delete`` (``os.path.join`` lets an
    absolute name win). Our payload files are written and deleted by :class:`Store` itself."""

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is not bytes or read or len(value) >= self.min_file_size:
            raise StoreError("resumable_nb stores only small byte strings in its index")
        return super().store(value, read, key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode != diskcache.core.MODE_RAW or filename is not None or read:
            raise CorruptEntry("an index row points to a file or holds a pickle, which "
                               "resumable_nb never writes")
        return super().fetch(mode, filename, value, read)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            return _NOT_OURS  # a pickled key: never unpickled, skipped by Store.keys()
        return super().get(key, raw)

    def filename(self, key: Any = None, value: Any = None) -> Any:
        raise StoreError("resumable_nb never writes index value files")

    def remove(self, file_path: str) -> None:
        """Never delete: we wrote no file for the index (a row naming one was planted)."""


_NOT_OURS = object()
_INDEX_FILES = ("cache.db", "cache.db-wal", "cache.db-shm")
_INDEX_SETTINGS: dict[str, Any] = {
    "eviction_policy": "none", "disk_min_file_size": 1 << 30, "sqlite_synchronous": 2,  # FULL
    "size_limit": 2**62,
}
_INDEX_OBJECTS = frozenset({  # what diskcache's Cache.__init__ creates (tag_index off)
    ("table", "Settings"), ("table", "Cache"), ("index", "Cache_key_raw"),
    ("index", "Cache_expire_time"), ("trigger", "Settings_count_insert"),
    ("trigger", "Settings_count_delete"), ("trigger", "Settings_size_insert"),
    ("trigger", "Settings_size_update"), ("trigger", "Settings_size_delete"),
})


class _Index(diskcache.Cache):  # type: ignore[misc]
    """diskcache's Cache, opened without writing when the database is already set up our way.

    ``Cache.__init__`` runs ~72 SQLite statements, rewriting every setting and re-creating
    tables, triggers and indexes "if not exists", each write a commit fsynced under
    synchronous=FULL: 30-70 ms here, most of the first hit in a new kernel (measured with
    benchmarks/first_hit.py). When every setting in the ``Settings`` table already equals what
    we would write and every table, index and trigger exists, those writes change nothing, so
    we read them instead (one connection, ~10 read statements: ~1 ms). Anything else — a new
    index, older or planted settings, a missing trigger — goes through ``Cache.__init__``.
    """

    def __init__(self, directory: str, disk: type[diskcache.Disk], **settings: Any) -> None:
        if not self._open_fast(directory, disk, settings):
            super().__init__(directory, disk=disk, **settings)

    def _open_fast(self, directory: str, disk: type[diskcache.Disk], settings: dict[str, Any]) -> bool:
        import sqlite3
        import threading

        wanted = {**diskcache.core.DEFAULT_SETTINGS, **settings}
        self._directory = directory
        self._timeout = 60
        self._local = threading.local()
        self._txn_id = None
        try:
            # The connection's own setup (diskcache's ``_con``) applies the sqlite_* pragmas
            # from the Settings table, as it does for every connection it makes.
            sql = self._sql
            stored = dict(sql("SELECT key, value FROM Settings").fetchall())
            objects = set(sql("SELECT type, name FROM sqlite_master").fetchall())
            if any(stored.get(k, _NOT_OURS) != v for k, v in wanted.items()) \
                    or any(k not in stored for k in diskcache.core.METADATA) \
                    or not _INDEX_OBJECTS <= objects or ("index", "Cache_tag_rowid") in objects:
                raise LookupError
            ((self._page_size,),) = sql("PRAGMA page_size").fetchall()
        except (sqlite3.Error, LookupError, ValueError):
            self.close()
            return False
        self._disk = disk(directory, **{k[5:]: v for k, v in wanted.items() if k.startswith("disk_")})
        for key, value in stored.items():  # what Cache.reset(key) sets: settings and metadata
            setattr(self, key, value)
        return True

    def rows(self, keys: list[str]) -> Iterator[tuple[str, int, Any, Any]]:
        """(key, mode, filename, value) of the str ``keys`` present: what ``get`` selects, for
        many keys in a few queries (``get`` makes one per key: 10,000 for a %resume of
        10,000 steps). The caller checks mode and filename as the Disk's ``fetch`` would."""
        now = time.time()
        for start in range(0, len(keys), 500):  # under SQLite's limit on parameters
            chunk = keys[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            yield from self._sql(
                f"SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN ({marks})"
                " AND (expire_time IS NULL OR expire_time > ?)", (*chunk, now)).fetchall()



class _HashingWriter:
    """Writes to a file descriptor while feeding an HMAC (while there is one), counting bytes.

    Small writes (the pickler's frames) are gathered in a buffer; big ones (array buffers) go
    straight to ``os.write`` in 16 MB pieces: through ``io.BufferedWriter`` a 1 GiB write was
    up to 5x slower here.
    """

    def __init__(self, fd: int, mac: hmac.HMAC | None) -> None:
        self.fd = fd
        self.mac = mac
        self.pos = 0
        self._pending = bytearray()

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.mac is not None:
            self.mac.update(view)
        if len(view) < (1 << 20):
            self._pending += view
            if len(self._pending) >= (1 << 20):
                self.flush()
        else:
            self.flush()
            for start in range(0, len(view), _CHUNK):
                _write_all(self.fd, view[start:start + _CHUNK])
        self.pos += len(view)
        return len(view)

    def flush(self) -> None:
        if self._pending:
            _write_all(self.fd, memoryview(self._pending))
            self._pending = bytearray()

    def pad(self) -> None:
        extra = (-self.pos) % _ALIGN
        if extra:
            self.write(b"\0" * extra)


class Store:
    """Step entries under one cache root.

    :raises StoreError: if the root cannot be created, is not ours or is writable by others.
    """

    def __init__(self, root: str | os.PathLike[str] | CacheDir, key_file: Path | None = None) -> None:
        # Set when a damaged index was moved aside and a new one started: the one line to tell
        # the user (what happened, what was kept). The kernel and the CLI say it.
        self.repaired: str | None = None
        self.dir = root if isinstance(root, CacheDir) else None
        self.root = self.dir.path if self.dir is not None else Path(root).expanduser().absolute()  # type: ignore[arg-type]
        try:
            self._key = load_key(key_file or default_key_file())
            if self.dir is None:
                self.dir = CacheDir(self.root)
            for sub in ("objects", "tmp", "index"):
                self.dir.sub(sub)
            _sweep_tmp(self.dir)
            self._macs = BufferMacs(self._key)
            # Verified manifests, and the verified pickle streams of small payloads: a repeated
            # hit then costs no index query, no file read and no MAC. Entries are immutable
            # (content-addressed), so a cached one is never wrong, at worst deleted meanwhile.
            self._entries: OrderedDict[str, Entry] = OrderedDict()
            # Team-store hooks (resumable_nb.team): a lookup on a local miss, and a callback
            # after every store (upload, size bound). None: a purely local store.
            self.read_through: Callable[[str], bytes | None] | None = None
            self.on_put: Callable[[Entry, bytes], None] | None = None
            self._small: OrderedDict[str, bytes] = OrderedDict()
            self._index = self._open_index()
        except OSError as exc:
            raise StoreError(f"cannot use cache dir {self.root}: {_os_message(exc, self.root)}") from None
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors: read-only or damaged index
            raise StoreError(f"cannot open the cache index in {self.root} ({exc}); if the folder "
                             "is read-only, set RESUMABLE_NB_DIR to a writable one") from None

    def _open_index(self) -> _Index:
        """The index; a damaged one (not a database, or malformed) is moved aside and a new one
        started, said in :attr:`repaired`. Anything else (a read-only folder, a lock held too
        long) raises as before."""
        try:
            return self._index_files()
        except Exception as exc:  # sqlite3 errors
            if not _damaged(exc):
                raise
            why = str(exc)
        aside = self._set_aside_index()
        index = self._index_files()
        where = f"moved aside to {self.root / 'index' / aside}" if aside else "already moved aside"
        self.repaired = (f"the cache index in {self.root} was damaged ({why}): {where}, and a new "
                         "one started. The run journal is kept; the cached entries cannot be found "
                         "without the old index, so steps re-run once and are cached again")
        return index

    def _index_files(self) -> _Index:
        assert self.dir is not None
        for name in _INDEX_FILES:  # a planted link or hard link here is refused
            if name == "cache.db" or self.dir.lstat("index", name) is not None:
                fd = self.dir.open("index", name, os.O_RDWR | os.O_CREAT)
                if name == "cache.db":
                    st = os.fstat(fd)
                    self._index_id = (st.st_dev, st.st_ino)
                os.close(fd)
        return _Index(self.dir.sqlite_path("index"), _SafeDisk, **_INDEX_SETTINGS)

    def _set_aside_index(self) -> str:
        """Rename the damaged index's files inside ``index/`` (by descriptor; only the names
        we make, never following a link) to ``<name>.corrupt-<UTC time>-<random>``; the new
        name of ``cache.db``, or "" when another process did it first (under a lock on the
        folder, so two kernels never both move, and one never moves the other's new index)."""
        import fcntl
        import secrets

        assert self.dir is not None
        folder = self.dir.sub("index")
        suffix = f".corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"
        fcntl.flock(folder, fcntl.LOCK_EX)
        try:
            st = self.dir.lstat("index", "cache.db")
            if st is None or (st.st_dev, st.st_ino) != self._index_id:
                return ""
            for name in _INDEX_FILES:
                if self.dir.lstat("index", name) is not None:
                    self.dir.rename("index", name, "index", name + suffix)
            self.dir.fsync("index")
        finally:
            fcntl.flock(folder, fcntl.LOCK_UN)
        return "cache.db" + suffix

    @property
    def key_for_uploads(self) -> bytes:
        """The user's key, for the team store's upload markers (they derive their own MAC key)."""
        return self._key

    @property
    def journal_key(self) -> bytes:
        """The key that signs this user's journal records (derived from the same secret)."""
        return derive(self._key, "journal")

    def close(self) -> None:
        self._index.close()
        assert self.dir is not None
        self.dir.close()

    # -- manifests ----------------------------------------------------------------------
    def _sign(self, body: bytes) -> str:
        return hmac.digest(self._key, body, "sha256").hex()  # one-shot C: 1.7 us, hmac.new 4

    def get(self, key: str) -> Entry | None:
        """The verified manifest stored under ``key``, or None.

        :raises CorruptEntry: when the manifest is unreadable or its signature is wrong.
        """
        cached = self._entries.get(key)
        if cached is not None:
            self._entries.move_to_end(key)
            return cached
        try:
            raw = self._index.get(key)
        except CorruptEntry:
            raise
        except Exception as exc:  # noqa: BLE001 - sqlite or disk errors: a corrupt index
            raise CorruptEntry(f"the cache index could not be read ({exc})") from None
        if raw is None:
            # Not here: the team store (if any) may have it; it verifies the manifest with
            # verify_record, puts the payload in objects/ and the record in the index (adopt).
            raw = self.read_through(key) if self.read_through is not None else None
            if raw is None:
                return None
        entry = self.verify_record(key, bytes(raw))
        self._remember(key, entry)
        return entry

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """The verified manifests of those ``keys`` the index holds and that check out, read in
        a few index queries. A key left out is one :meth:`get` returns None for or raises
        :class:`CorruptEntry` for (or finds in the team store): ask it, to know which."""
        found: dict[str, Entry] = {}
        wanted = []
        for key in dict.fromkeys(keys):
            cached = self._entries.get(key)
            if cached is not None:
                found[key] = cached
            elif isinstance(key, str):
                wanted.append(key)
        try:
            rows = list(self._index.rows(wanted))
        except Exception:  # noqa: BLE001 - sqlite or disk errors: get() says what
            return found
        for key, mode, filename, value in rows:
            if mode != diskcache.core.MODE_RAW or filename is not None or type(value) is not bytes \
                    or key in found:
                continue  # what _SafeDisk.fetch refuses, or a planted row: left to get()
            try:
                found[key] = self.verify_record(key, bytes(value))
            except CorruptEntry:
                continue
        return found

    def verify_record(self, key: str, raw: bytes) -> Entry:
        """The manifest in a signed record (from the index or a team store), checked.

        :raises CorruptEntry: unreadable, signed with another key, or for another key/format.
        """
        try:
            outer = json.loads(raw.decode())  # a str: json.loads(bytes) guesses the encoding first
            body = outer["m"].encode()
            if not hmac.compare_digest(self._sign(body), outer["sig"]):
                raise CorruptEntry("its manifest signature does not match")
            entry = Entry.from_json(json.loads(outer["m"]))
        except CorruptEntry:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CorruptEntry("its manifest is unreadable") from None
        if entry.key != key or entry.version != STORE_VERSION:
            raise CorruptEntry("its manifest belongs to another key or format")
        return entry

    def record(self, key: str) -> bytes | None:
        """The signed manifest record stored under ``key``, as written (for the team store)."""
        try:
            raw = self._index.get(key)
        except Exception:  # noqa: BLE001 - a damaged row: nothing to share
            return None
        return bytes(raw) if raw is not None else None

    def adopt(self, key: str, raw: bytes) -> Entry:
        """Index a signed record whose payload is already in ``objects/`` (a team-store
        download). The record is verified first; the payload is verified when loaded.

        :raises CorruptEntry: the record does not verify. :raises StoreError: index write failed.
        """
        entry = self.verify_record(key, raw)
        try:
            self._index.set(key, raw)
        except Exception as exc:  # noqa: BLE001 - sqlite3.OperationalError on a full disk
            raise StoreError(f"could not write the cache index in {self.root} ({exc})") from None
        self._remember(key, entry)
        return entry

    def _remember(self, key: str, entry: Entry) -> None:
        self._entries[key] = entry
        if len(self._entries) > 1024:
            self._entries.popitem(last=False)

    def keys(self) -> Iterator[str]:
        """Every key in the index (str keys only: a planted pickled key is skipped)."""
        for key in self._index.iterkeys():
            if isinstance(key, str):
                yield key

    def entries(self) -> Iterator[Entry]:
        """Every verified manifest; unreadable ones are skipped (they read as misses)."""
        for key in list(self.keys()):
            try:
                entry = self.get(key)
            except CorruptEntry:
                continue
            if entry is not None:
                yield entry

    def delete(self, key: str) -> None:
        """Forget ``key``; its payload file goes too unless another entry shares it."""
        try:
            entry = self.get(key)
        except CorruptEntry:
            entry = None
        self._index.delete(key)
        self._entries.pop(key, None)
        if entry is not None:
            self._small.pop(entry.file, None)
        if entry is not None and not any(e.file == entry.file for e in self.entries()):
            self._unlink_object(entry.file)

    def _unlink_object(self, name: str, ours: bool = True) -> int:
        """Delete a file inside ``objects/`` (by descriptor); the bytes freed. ``ours``: only a
        payload name we make (what a verified manifest names)."""
        if ours and not _OBJECT.match(name):
            return 0
        assert self.dir is not None
        try:
            st = self.dir.lstat("objects", name)
            if st is None or not self.dir.unlink("objects", name):
                return 0
        except StoreError:
            return 0  # a name we would never make (and so never delete)
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    def delete_step(self, step: str) -> int:
        """Forget every entry stored by the step named ``step``; return how many."""
        entries = list(self.entries())
        gone = [e for e in entries if e.step == step]
        for entry in gone:
            self._index.delete(entry.key)
            self._entries.pop(entry.key, None)
            self._small.pop(entry.file, None)
        still_used = {e.file for e in entries if e.step != step}
        for file in {e.file for e in gone} - still_used:
            self._unlink_object(file)
        return len(gone)

    def gc(self, keep: set[str]) -> tuple[int, int]:
        """Remove entries whose key is not in ``keep``, payload files no entry refers to, and
        temp files of dead writers. Returns (entries removed, bytes freed)."""
        removed = 0
        for key in list(self.keys()):
            if key not in keep:
                self._index.delete(key)
                self._entries.pop(key, None)
                removed += 1
        self._small.clear()
        used = {e.file for e in self.entries()}
        assert self.dir is not None
        # Anything else in objects/ goes too (a stray or planted file, or a link: unlinked,
        # never followed); only ever inside the cache folder, by descriptor.
        freed = sum(self._unlink_object(name, ours=False) for name in list(self.dir.names("objects"))
                    if name not in used)
        _sweep_tmp(self.dir)
        return removed, freed

    # -- writing ------------------------------------------------------------------------
    def put(self, key: str, step: str, payload: Mapping[str, Any], namespace: Mapping[str, Any],
            *, outputs: tuple[str, ...], deleted: tuple[str, ...], duration: float,
            extra: Mapping[str, Any] | None = None, read: Collection[str] = ()) -> Entry:
        """Store ``payload`` (pickled with :mod:`serialize`) under ``key``; ``read``: the names
        the step read (for :func:`serialize.dump`).

        Streams to a temp file: a multi-GB array is never copied into a bytes object.

        :raises StoreError: when the disk is full or read-only (nothing is left behind).
        :raises Exception: whatever pickling raises (the caller names the culprit).
        """
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        buffers: list[pickle.PickleBuffer] = []
        assert self.dir is not None
        cache = self.dir
        try:
            fd, tmp = cache.create_temp("tmp", prefix=f"{os.getpid()}-", suffix=".part")
        except OSError as exc:
            raise StoreError(_os_message(exc, self.root)) from None
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                w = _HashingWriter(f.fileno(), mac)
                _faults.point("payload-before-write")
                sizes: dict[str, int] = {}
                serialize.dump(payload, w, namespace, buffer_callback=buffers.append, sizes=sizes,
                               read=read)
                pickle_len = w.pos
                digest = mac.hexdigest()
                w.mac = None  # buffers get their own (faster) MACs
                spans = []
                for buf in buffers:
                    w.pad()
                    view = _raw(buf)
                    spans.append((w.pos, view.nbytes, self._macs.make(view)))
                    w.write(view)
                    _faults.point("payload-mid-write")
                w.flush()
                os.fsync(f.fileno())
                size = w.pos
            final = self._macs.blake3(json.dumps([digest, spans]).encode()) + ".rnb"
            _faults.point("payload-before-rename")
            cache.rename("tmp", tmp, "objects", final)
            cache.fsync("objects")
            _faults.point("payload-after-rename")
        except OSError as exc:
            _quietly_unlink(cache, "tmp", tmp)
            raise StoreError(_os_message(exc, self.root)) from None
        except BaseException:
            _quietly_unlink(cache, "tmp", tmp)
            raise
        entry = Entry(
            key=key, step=step, file=final, size=size, digest=digest, pickle_len=pickle_len,
            buffers=tuple(spans), outputs=outputs, deleted=deleted, output_sizes=sizes,
            duration=duration, created=time.time(), python=_python(), extra=dict(extra or {}),
        )
        body = json.dumps(entry.to_json(), sort_keys=True).encode()
        record = json.dumps({"m": body.decode(), "sig": self._sign(body)}).encode()
        try:
            self._index.set(key, record)
            _faults.point("index-after-set")
            self._remember(key, entry)
        except OSError as exc:
            raise StoreError(_os_message(exc, self.root)) from None
        except Exception as exc:  # noqa: BLE001 - sqlite3.OperationalError on a full disk
            raise StoreError(f"could not write the cache index in {self.root} ({exc})") from None
        if self.on_put is not None:
            self.on_put(entry, record)
        return entry

    # -- reading ------------------------------------------------------------------------
    def load(self, entry: Entry, namespace: MutableMapping[str, Any],
             classes: Mapping[str, Any] | None = None, *, lazy: bool = False) -> Any:
        """Read, verify and unpickle an entry's payload.

        Buffers of 1 MiB and more in all are mapped copy-on-write (writes to a restored array
        stay private) and verified in place; smaller ones are read. ``lazy``: map them without
        reading them (a 1 GiB array in milliseconds); their MACs are then not checked. The
        pickle stream's always is.

        :raises CorruptEntry: missing, truncated or altered file, or an unpickling error.
        :raises RestoreError: the payload refers to a notebook class that changed.
        """
        small = self._small.get(entry.file)
        if small is not None and not entry.buffers:
            return self._unpickle(entry, small, [], namespace, classes)
        if not _OBJECT.match(entry.file):
            raise CorruptEntry(f"its manifest names an unexpected payload file {entry.file!r}")
        assert self.dir is not None
        try:
            fd = self.dir.open("objects", entry.file, os.O_RDONLY)
        except FileNotFoundError:
            raise CorruptEntry(f"payload {entry.file} is missing") from None
        except OSError as exc:  # transient (EIO, EMFILE...): a miss, but the entry stays
            raise StoreError(f"payload {entry.file} could not be read ({exc.strerror})") from None
        try:
            with contextlib.suppress(OSError):
                os.utime(fd)  # the last use, for the size bound's least-recently-used order
            if os.fstat(fd).st_size != entry.size:
                raise CorruptEntry(f"payload {entry.file} has the wrong size (truncated?)")
            data = _read_exact(fd, 0, entry.pickle_len)
            if not hmac.compare_digest(hmac.digest(self._key, data, "sha256").hex(), entry.digest):
                raise CorruptEntry(f"payload {entry.file} failed its integrity check")
            buffers = self._map_buffers(fd, entry, verify=not lazy)
            if buffers is None:
                buffers = []
                for offset, length, buffer_mac in entry.buffers:
                    buf = _read_exact(fd, offset, length)
                    if not self._macs.check(buf, buffer_mac):
                        raise CorruptEntry(f"payload {entry.file} failed its integrity check")
                    buffers.append(buf)
        except OSError as exc:  # transient (EIO...): a miss, but the entry stays
            raise StoreError(f"payload {entry.file} could not be read ({exc.strerror})") from None
        finally:
            os.close(fd)  # a mapping holds its own (duplicated) descriptor
        if not entry.buffers and entry.pickle_len < _SMALL:
            self._small[entry.file] = bytes(data)
            if len(self._small) > 256:
                self._small.popitem(last=False)
        return self._unpickle(entry, data, buffers, namespace, classes)

    def _map_buffers(self, fd: int, entry: Entry, *, verify: bool) -> list[memoryview] | None:
        """The entry's buffers as slices of a private (copy-on-write) mapping of its payload,
        each MAC checked over the mapping in place unless ``verify`` is false; None when the
        buffers are small (reading them is as cheap) or the file cannot be mapped.

        Reading a 1 GiB buffer into fresh memory costs a page fault per page of new memory
        (0.27-2.5 s here, in a new process); mapping hands numpy the page cache's pages and
        the MAC (GMAC, :mod:`resumable_nb.bufmac`) reads them in place, verified
        (benchmarks/cold.py). A restored array is then a copy-on-write view of the file: a
        page is copied only when written, and counts as page cache until then.
        """
        total = sum(length for _, length, _ in entry.buffers)
        if not entry.buffers or (verify and total < _MAP_MIN):
            return None
        try:
            mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
        except OSError:  # e.g. EMFILE: each mapping holds a (duplicated) descriptor
            if not verify:
                raise
            return None
        mapped = memoryview(mapping)
        buffers = [mapped[off:off + length] for off, length, _ in entry.buffers]
        if verify:
            for buf, (_, _, buffer_mac) in zip(buffers, entry.buffers, strict=True):
                if not self._macs.check(buf, buffer_mac):
                    raise CorruptEntry(f"payload {entry.file} failed its integrity check")
        return buffers

    def _unpickle(self, entry: Entry, data: Any, buffers: list[Any],
                  namespace: MutableMapping[str, Any], classes: Mapping[str, Any] | None) -> Any:
        try:
            return serialize.load(data, buffers, namespace, classes)
        except (CorruptEntry, StoreError, RestoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a module that no longer imports
            raise RestoreError(f"it could not be unpickled here ({type(exc).__name__}: {exc})") from None

    # -- housekeeping -------------------------------------------------------------------
    def size_on_disk(self) -> int:
        assert self.dir is not None
        return self.dir.size()


def _damaged(exc: BaseException) -> bool:
    """An SQLite error that says the index file is damaged (SQLITE_CORRUPT) or is not a
    database (SQLITE_NOTADB) — not a read-only folder, a full disk or a lock."""
    import sqlite3

    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in (11, 26)
    return "malformed" in str(exc) or "not a database" in str(exc)


def _write_all(fd: int, view: memoryview) -> None:
    done = 0
    while done < len(view):
        done += os.write(fd, view[done:])


def _sweep_tmp(cache: CacheDir) -> None:
    """Remove what killed writers left in tmp/ (``<pid>-*.part`` of processes now gone)."""
    for name in list(cache.names("tmp")):
        pid = name.split("-", 1)[0]
        if not name.endswith(".part") or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _quietly_unlink(cache, "tmp", name)
        except PermissionError:
            pass


def _quietly_unlink(cache: CacheDir, sub: str, name: str) -> None:
    try:
        cache.unlink(sub, name)
    except (OSError, StoreError):
        pass


def _raw(buf: pickle.PickleBuffer) -> memoryview:
    try:
        return buf.raw()
    except BufferError:  # not contiguous: copy (rare; numpy sends only contiguous buffers)
        return memoryview(bytes(buf))


def _read_exact(fd: int, offset: int, n: int) -> Any:
    """``n`` bytes at ``offset``, read straight into fresh memory (no intermediate copy).

    Big buffers go into ``numpy.empty``: unlike ``bytearray(n)`` it is not zeroed first, so
    each page is touched once (by the read), and numpy asks for transparent huge pages,
    which made reading 1 GiB 2.5x faster here than into an anonymous mmap.
    """
    numpy = sys.modules.get("numpy")  # out-of-band buffers come from numpy (or pandas) data
    out: Any = bytearray(n) if numpy is None or n < (1 << 20) else numpy.empty(n, dtype=numpy.uint8)
    view = memoryview(out).cast("B")
    got = 0
    while got < n:
        k = os.preadv(fd, [view[got:got + _CHUNK]], offset + got)
        if not k:
            raise CorruptEntry("payload ended early (truncated)")
        got += k
    return out


def _os_message(exc: OSError, root: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"the disk holding {root} is full: free space or set RESUMABLE_NB_DIR elsewhere"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{root} is not writable: set RESUMABLE_NB_DIR to a writable folder"
    return f"could not write to {root} ({exc.strerror or exc})"


def output_sizes(payload: Mapping[str, Any]) -> dict[str, int]:
    """Rough in-memory sizes of the outputs, for display (``nbytes`` where there is one)."""
    sizes: dict[str, int] = {}
    for name, value in payload.get("outputs", {}).items():
        nbytes = getattr(value, "nbytes", None)
        if not isinstance(nbytes, int) and hasattr(value, "memory_usage"):
            try:
                nbytes = int(value.memory_usage(index=True).sum())
            except Exception:  # noqa: BLE001 - best effort, display only
                nbytes = None
        sizes[name] = int(nbytes) if isinstance(nbytes, int) else sys.getsizeof(value)
    return sizes


def _python() -> str:
    return ".".join(map(str, sys.version_info[:3]))
