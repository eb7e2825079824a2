"""Background uploads to the remote store: one daemon thread, a bounded queue, pending markers.

A step never waits for the network: :meth:`Uploader.submit` writes a small marker file under
``<cache>/remote-pending/`` and queues it; the thread uploads in submission order (a payload
before the manifest that names it, journal segments in sequence) and deletes the marker once
the object is in the bucket. A marker therefore exists for every upload not yet known to be
done, whatever happened to the kernel: a new :class:`Uploader` on the same folder picks them
all up again (:meth:`Uploader.recover`).

Marker ``<time_ns>-<pid>-<n>.json``: ``{"name": remote name, "file": payload file in objects/}``
for a payload, ``{"name": ..., "data": base64}`` for a blob (a manifest record or a journal
segment: small). Markers live in the checked cache folder (``cachedir``: opened by descriptor,
no link followed) and carry an HMAC made with a key derived from the user's: a marker shipped
in a cloned repository or planted by someone else — "upload ~/.ssh/id_rsa" — is never acted
on (it is deleted, inside the folder). A payload is only ever a file of ``objects/`` named as
the store names them, opened by descriptor; a remote name only one the store makes.

When the remote is down the thread keeps the work, says so once (``on_notice``), and retries
with a growing pause (up to a minute); :meth:`flush` retries at once and waits a bounded time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .cachedir import CacheDir
from .errors import CorruptEntry, StoreError
from .keys import default_key_file, derive, load_key
from .remote import RemoteStore, RemoteUnavailable

__all__ = ["PENDING_DIR", "Pending", "Uploader"]

PENDING_DIR = "remote-pending"
_OBJECT_FILE = re.compile(r"^[0-9a-f]{64}\.rnb$")
# The remote names the store makes: payloads, manifests, journal segments. Nothing else.
_REMOTE_NAME = re.compile(r"^(objects/[0-9a-f]{64}\.rnb|manifests/[A-Za-z0-9._-]{1,200}\.json"
                          r"|journal/[A-Za-z0-9._%+-]{1,200}(/[A-Za-z0-9._%+-]{1,200}){1,8}\.jsonl)$")
_log = logging.getLogger("resumable_nb.remote")
_counter = itertools.count()


@dataclass(frozen=True, slots=True)
class Pending:
    """One upload not yet known to be done."""

    marker: str  # its name in remote-pending/
    name: str  # remote name
    file: str | None = None  # a payload file of objects/ to stream, or
    data: bytes | None = None  # the bytes of a small object
    replace: bool = False  # upload the file even when an object of its size is there


class Uploader:
    """Uploads (file, name) pairs and small blobs in the background, in submission order.

    ``on_notice`` receives the one-line messages a user should see (the remote went away, came
    back); by default they are logged. It is called from the upload thread.
    """

    def __init__(self, remote: RemoteStore, cache: CacheDir | str | os.PathLike[str], *,
                 key: bytes | None = None, maxsize: int = 1024,
                 retry_interval: float = 2.0, max_retry_interval: float = 60.0,
                 on_notice: Callable[[str], None] | None = None) -> None:
        """``cache``: the checked cache folder (or its path); ``key``: the user's key (by
        default read from the key file), from which the markers' MAC key is derived."""
        self.remote = remote
        self.dir = cache if isinstance(cache, CacheDir) else CacheDir(cache)
        self._own_dir = not isinstance(cache, CacheDir)
        self._key = derive(key if key is not None else load_key(default_key_file()), "uploads")
        self.pending_dir = self.dir.path / PENDING_DIR
        self.dir.sub(PENDING_DIR)
        self._queue: queue.Queue[Pending] = queue.Queue(maxsize)
        self._retry_interval = retry_interval
        self._max_retry_interval = max_retry_interval
        self._notice = on_notice or _log.warning
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queued: set[str] = set()  # markers in the queue or in flight
        self._overflow = False  # markers on disk that did not fit in the queue
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.down = False  # the last attempt failed: the remote is unreachable
        self.last_error = ""
        self.uploaded = 0
        self._thread = threading.Thread(target=self._run, name="resumable_nb-uploader", daemon=True)
        self._thread.start()

    # -- submitting (never blocks on the network) ------------------------------------------
    def submit(self, file: str, name: str, *, replace: bool = False) -> Pending:
        """Upload the payload ``objects/<file>`` as ``name`` (it must stay until uploaded).
        ``replace``: even over an object of the same size (one found corrupt)."""
        record: dict[str, object] = {"name": name, "file": file}
        if replace:
            record["replace"] = True
        return self._submit(record)

    def submit_blob(self, name: str, data: bytes) -> Pending:
        """Upload a small object (a manifest record, a journal segment), put-if-absent."""
        return self._submit({"name": name, "data": base64.b64encode(data).decode()})

    def _submit(self, record: dict[str, object]) -> Pending:
        marker = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter)}.json"
        body = json.dumps(record, sort_keys=True).encode()
        # Written whole then renamed: a reader sees a complete marker or none. Not fsynced: a
        # marker lost to a power cut only means `push` finds the object by comparing listings.
        fd, tmp = self.dir.create_temp(PENDING_DIR, "tmp-", ".part")
        try:
            os.write(fd, body + b"\t" + self._mac(body).encode())
        finally:
            os.close(fd)
        self.dir.rename(PENDING_DIR, tmp, PENDING_DIR, marker)
        item = self._parse(marker)
        assert item is not None, record
        self._enqueue(item)
        return item

    def _mac(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def _markers(self) -> list[str]:
        return sorted(n for n in self.dir.names(PENDING_DIR) if n.endswith(".json"))

    def _parse(self, marker: str) -> Pending | None:
        """The upload a marker asks for, if it is ours (signed with our key) and names only
        what the store makes; else None."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, StoreError):
            fd = self.dir.open(PENDING_DIR, marker, os.O_RDONLY)
            try:
                data = os.read(fd, 1 << 24)
            finally:
                os.close(fd)
            body, _, mac = data.rpartition(b"\t")
            if not hmac.compare_digest(self._mac(body).encode(), mac):
                return None
            record = json.loads(body)
            name = str(record["name"])
            if not _REMOTE_NAME.match(name) or ".." in name:
                return None
            if "data" in record:
                return Pending(marker, name, data=base64.b64decode(record["data"], validate=True))
            file = str(record["file"])
            if not _OBJECT_FILE.match(file):
                return None
            return Pending(marker, name, file=file, replace=record.get("replace") is True)
        return None

    def _forget(self, marker: str) -> None:
        with contextlib.suppress(OSError, StoreError):
            self.dir.unlink(PENDING_DIR, marker)

    def _enqueue(self, item: Pending) -> None:
        with self._lock:
            if item.marker in self._queued:
                return
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._overflow = True  # it stays on disk; picked up once the queue drains
                return
            self._queued.add(item.marker)

    def recover(self) -> int:
        """Queue every marker on disk (left by an earlier kernel, or by an overflow); returns
        how many are pending in all."""
        count = 0
        for marker in self._markers():
            item = self._parse(marker)
            if item is None:
                self._forget(marker)  # torn, foreign or planted: never acted on
                continue
            self._enqueue(item)
            count += 1
        return count

    def pending(self) -> list[Pending]:
        """Every upload not yet done, in order (from the markers on disk)."""
        return [item for m in self._markers() if (item := self._parse(m)) is not None]

    # -- waiting ----------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Try now, and wait up to ``timeout`` seconds for every queued upload; True when
        nothing is pending any more (kernel shutdown, ``push``)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._overflow:  # markers that did not fit: queue them as room appears
                self._overflow = False
                self.recover()
            self._wake.set()  # cut a retry pause short
            with self._idle:
                left = deadline - time.monotonic()
                if (not self._queued and not self._overflow) or left <= 0:
                    break
                self._idle.wait(min(left, 0.1))
        return not self.pending()

    def close(self, timeout: float = 2.0, join: float | None = None) -> bool:
        """Flush for at most ``timeout`` and stop the thread; what is left stays on disk.
        ``join``: how long to wait for an upload in flight to stop (default: ``timeout`` plus
        one request deadline); a kernel shutting down passes less (the daemon thread dies with
        the process, its marker stays for the next kernel)."""
        done = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(timeout, 0.1) + self.remote.timeout if join is None else join)
        if self._own_dir and not self._thread.is_alive():
            self.dir.close()
        return done

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        pause = self._retry_interval
        item: Pending | None = None
        while not self._stop.is_set():
            if item is None:
                try:
                    item = self._queue.get(timeout=0.5)
                except queue.Empty:
                    if self._overflow:
                        self._overflow = False
                        self.recover()
                    continue
            try:
                self._upload(item)
            except RemoteUnavailable as exc:
                self.last_error = str(exc)
                if not self.down:
                    self.down = True
                    self._notice(f"{exc} — {len(self.pending())} upload(s) kept in "
                                 f"{self.pending_dir}, retried in the background")
                # Head-of-line retry: order matters (a manifest after its payload).
                self._wake.wait(pause)
                self._wake.clear()
                pause = min(pause * 2, self._max_retry_interval)
                continue
            except (OSError, CorruptEntry, ValueError) as exc:
                # The local file is gone (cleared, gc'd) or the name is bad: nothing to retry.
                _log.info("dropping upload of %s: %s", item.name, exc)
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                _log.warning("dropping upload of %s: %s", item.name, exc)
            else:
                self.uploaded += 1
                if self.down:
                    self.down = False
                    self._notice(f"remote store {self.remote.url} reachable again: uploading "
                                 f"{len(self.pending())} pending upload(s)")
                pause = self._retry_interval
            self._forget(item.marker)
            with self._idle:
                self._queued.discard(item.marker)
                self._idle.notify_all()
            item = None

    def _upload(self, item: Pending) -> None:
        if item.data is not None:
            self.remote.put_blob(item.name, item.data)
        elif item.file is not None:
            fd = self.dir.open("objects", item.file, os.O_RDONLY)  # ours, by descriptor
            try:
                self.remote.put_file(item.name, fd, skip_existing=not item.replace)
            finally:
                os.close(fd)
