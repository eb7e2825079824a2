"""The team store wired into a kernel's local store and journal (issue 11).

A :class:`Team` sits beside one :class:`~resumable_nb.store.Store` and its journal:

- **read-through**: a local miss looks the manifest up in the bucket, checks its signature
  exactly as a local one (:meth:`Store.verify_record`), downloads the payload into ``tmp/``
  and renames it into ``objects/`` (by descriptor, through :class:`CacheDir`), then indexes
  the record; the payload's MACs are checked by the normal load before anything is unpickled;
- **write-through**: every stored step is queued for upload (payload, then manifest) by the
  :class:`~resumable_nb.uploader.Uploader`; :meth:`close` flushes for a couple of seconds;
- **journal mirroring**: the records of this kernel's runs go to the bucket as segments after
  each finished step and at the end of a run; :meth:`pull` brings other machines' runs of the
  same notebook (by :func:`~resumable_nb.remote.notebook_identity`) into the local journal,
  keeping only records that verify with this user's journal key;
- **size bound**: after a store, least recently used entries go until the folder fits
  ``max_size``, never one the latest run of a notebook needs (:mod:`resumable_nb.housekeeping`).

An unreachable bucket is said once; lookups are then skipped for a minute, so a step waits on
the bucket at most one request deadline (a few seconds) per minute, never more.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from ._text import printable
from .config import ENV
from .errors import CorruptEntry, StoreError
from .housekeeping import evict, gc_keep, parse_size
from .journal import Journal, verify_lines
from .remote import (
    NotebookId,
    RemoteStore,
    RemoteUnavailable,
    list_runs,
    manifest_name,
    notebook_identity,
    object_name,
    read_run,
    remote_from_env,
    segment_name,
)
from .store import Entry, Store
from .uploader import Uploader

__all__ = ["Team", "attach", "pull_into"]

_OBJECT = re.compile(r"^[0-9a-f]{64}\.rnb$")  # as store._OBJECT: the only payload names we fetch
_DOWN_FOR = 60.0  # seconds without lookups after the bucket failed to answer
_PULL_RUNS = 5  # the most recent runs of a notebook brought from the bucket (plus their chains)
_SEGMENT_MAX = 8 << 20  # a journal segment is a few records; one this big is cut in pieces


class Team:
    """The bucket (optional) and the size bound (optional) of one local store."""

    def __init__(self, store: Store, remote: RemoteStore | None, *, max_size: int | None,
                 notice: Callable[[str], None], journal_key: bytes) -> None:
        self.store = store
        self.remote = remote
        self.max_size = max_size
        self._notice = notice
        self._journal_key = journal_key
        self._down_until = 0.0
        self._told: set[str] = set()
        self._fetched: set[str] = set()  # payload files downloaded in this session
        self._offsets: dict[str, int] = {}  # journal file -> bytes mirrored (or imported)
        self._seq: dict[str, int] = {}  # run -> next segment number
        self._importing = False
        self.uploader: Uploader | None = None
        if remote is not None:
            assert store.dir is not None
            self.uploader = Uploader(remote, store.dir, key=store.key_for_uploads,
                                     on_notice=self._say_once_down)
            self.uploader.recover()  # uploads an earlier kernel left unfinished
            store.read_through = self.fetch
        store.on_put = self._stored

    def _say(self, text: str) -> None:
        self._notice(text)

    def _say_once(self, topic: str, text: str) -> None:
        if topic not in self._told:
            self._told.add(topic)
            self._notice(text)

    def _say_once_down(self, text: str) -> None:
        # The uploader's own notices ("kept in ...", "reachable again"): the first "down" one
        # only, since a lookup may already have said the bucket is unreachable.
        if "reachable again" in text:
            self._told.discard("down")
            self._notice(text)
        else:
            self._say_once("down", text)

    @property
    def available(self) -> bool:
        return self.remote is not None and time.monotonic() >= self._down_until

    def _went_down(self, exc: StoreError) -> None:
        self._down_until = time.monotonic() + _DOWN_FOR
        self._say_once("down", f"{exc} — steps run and are stored locally; uploads are kept and "
                               "retried")

    # -- read-through -----------------------------------------------------------------------
    def fetch(self, key: str) -> bytes | None:
        """The signed record of ``key`` from the bucket, its payload placed in ``objects/`` and
        the record indexed; None when the bucket has no usable entry (a miss)."""
        if self.remote is None or not self.available:
            return None
        try:
            raw = self.remote.get_blob(manifest_name(key))
        except RemoteUnavailable as exc:
            self._went_down(exc)
            return None
        except CorruptEntry:
            return None  # a planted giant: not ours
        if raw is None:
            return None
        try:
            entry = self.store.verify_record(key, raw)
        except CorruptEntry:
            self._say(f"step '{_claimed_step(raw)}': the team store's entry is not signed with your "
                      f"key ({ENV['KEY_FILE']}): not used, the step re-runs")
            return None
        if not _OBJECT.match(entry.file):
            return None
        try:
            if not self._download(entry):
                self._say(f"step '{printable(entry.step)}': the team store has its manifest but not "
                          "its payload (still uploading?): the step re-runs")
                return None
        except RemoteUnavailable as exc:
            self._went_down(exc)
            return None
        except CorruptEntry as exc:
            self._say(f"step '{printable(entry.step)}': the team store's payload is corrupt ({exc}): "
                      "the step re-runs and uploads it again")
            self._fetched.add(entry.file)
            return None
        try:
            self.store.adopt(key, raw)
        except (CorruptEntry, StoreError):
            return None
        return raw

    def _download(self, entry: Entry) -> bool:
        """The payload into ``tmp/``, then renamed into ``objects/``; False when the bucket has
        none. :raises RemoteUnavailable: :raises CorruptEntry: wrong size."""
        cache = self.store.dir
        assert cache is not None
        if cache.lstat("objects", entry.file) is not None:
            return True  # another entry shares it (or an earlier download)
        fd, tmp = cache.create_temp("tmp", prefix=f"{os.getpid()}-", suffix=".part")
        try:
            try:
                got = self.remote.get_file(object_name(entry.file), fd,  # type: ignore[union-attr]
                                           expected_size=entry.size)
                if got is None:
                    return False
                os.fsync(fd)  # as the store's own writes: a crash leaves a miss, not half a file
            finally:
                os.close(fd)
            cache.rename("tmp", tmp, "objects", entry.file)
            cache.fsync("objects")
            self._fetched.add(entry.file)
            return True
        finally:
            with contextlib.suppress(OSError, StoreError):
                cache.unlink("tmp", tmp)

    # -- write-through and the size bound ---------------------------------------------------
    def _stored(self, entry: Entry, record: bytes) -> None:
        # The step is stored locally whatever happens here: a failure to queue its upload
        # or to bound the folder is said once, never an error of the step.
        try:
            self._share(entry, record)
        except (OSError, StoreError) as exc:
            self._say_once("stored", f"after storing step '{printable(entry.step)}': {exc}")

    def _share(self, entry: Entry, record: bytes) -> None:
        if self.uploader is not None:
            # A payload we downloaded and now store again was found corrupt (or --force'd):
            # the bucket's copy is replaced, not skipped because its size matches.
            replace = entry.file in self._fetched
            self.uploader.submit(entry.file, object_name(entry.file), replace=replace)
            self.uploader.submit_blob(manifest_name(entry.key), record)
        if self.max_size is not None:
            self.bound(also_keep=entry.key)

    def bound(self, also_keep: str | None = None) -> tuple[int, int]:
        """Evict least recently used entries until the folder fits ``max_size``; ``also_keep``:
        the entry just stored (its journal record is written after this)."""
        if self.max_size is None or self.store.size_on_disk() <= self.max_size:
            return 0, 0
        keep, warnings = gc_keep(self.store.root, self._journal_key)
        if warnings:
            self._say_once("bound", f"the cache folder is above its max_size but a journal could not "
                                    f"be read whole ({warnings[0]}): nothing evicted")
            return 0, 0
        if also_keep is not None:
            keep.add(also_keep)
        return evict(self.store, self.max_size, keep)

    # -- the journal, mirrored ----------------------------------------------------------------
    def mirror(self, journal: Journal) -> None:
        """Upload the records ``journal`` gained since the last call, as segments of their runs:
        after every append (a step's start too, so that another machine knows which step was
        interrupted by a crash; a hit's start and end are one append)."""
        if self.uploader is None or self._importing:
            return
        path = str(journal.path)
        data, size = _read_from(journal.path, self._offsets.get(path, 0))
        end = data.rfind(b"\n") + 1
        if end == 0:
            return
        lines = [ln for ln in data[:end].split(b"\n") if ln]
        ident = notebook_identity(journal.notebook)
        by_run: dict[str, list[bytes]] = {}
        for line in lines:
            run = _run_of(line)
            if run is not None:
                by_run.setdefault(run, []).append(line + b"\n")
        for run, run_lines in by_run.items():
            self._upload_segment(ident, run, b"".join(run_lines))
        self._offsets[path] = size - len(data) + end

    def _upload_segment(self, ident: NotebookId, run: str, data: bytes) -> None:
        assert self.uploader is not None
        for start in range(0, len(data), _SEGMENT_MAX):
            piece = data[start:start + _SEGMENT_MAX]
            seq = self._seq.get(run, 0)
            self._seq[run] = seq + 1
            self.uploader.submit_blob(segment_name(ident, run, seq), piece)

    def start_mirroring(self, journal: Journal) -> None:
        """Mirror from the journal's current end (what is already in it was mirrored by the
        kernel that wrote it, or came from the bucket)."""
        path = str(journal.path)
        if path not in self._offsets:
            self._offsets[path] = _read_from(journal.path, 1 << 62)[1]

    def pull(self, journal: Journal) -> int:
        """Bring the notebook's recent runs from the bucket into ``journal`` (held by us): those
        newer than its latest local run, and the runs they resumed. Only records that verify
        with the journal's key are kept. Returns how many runs were added."""
        if self.remote is None or not self.available:
            return 0
        try:
            return _pull(self.remote, journal, self._say, self._importing_guard(journal))
        except RemoteUnavailable as exc:
            self._went_down(exc)
            return 0

    def _importing_guard(self, journal: Journal) -> Callable[[bytes], None]:
        def append(data: bytes) -> None:
            self._importing = True
            try:
                journal.append_lines(data.splitlines(keepends=True))
            finally:
                self._importing = False
            # imported records are not ours to mirror back
            self._offsets[str(journal.path)] = _read_from(journal.path, 1 << 62)[1]
        return append

    # -- the end ----------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        return self.uploader.flush(timeout) if self.uploader is not None else True

    def close(self, timeout: float = 2.0) -> bool:
        """Flush uploads for at most ``timeout`` seconds; what is left stays queued on disk for
        the next kernel or ``resumable-nb push``."""
        done = True
        if self.uploader is not None:
            done = self.uploader.close(timeout, join=0.5)
            self.uploader = None
        self.store.read_through = None
        self.store.on_put = None
        return done


def attach(store: Store, url: str, max_size: str, notice: Callable[[str], None]) -> Team | None:
    """A :class:`Team` for ``store`` from the settings (``url`` else ``$RESUMABLE_NB_STORE``;
    ``max_size`` else ``$RESUMABLE_NB_MAX_SIZE``), or None when neither is set. A bad setting
    is said in one line and left out; the local store works regardless."""
    remote = None
    try:
        remote = remote_from_env(url=url)
    except StoreError as exc:
        notice(f"the team store is off: {exc}")
    bound = None
    size_text = max_size or os.environ.get(ENV["MAX_SIZE"], "")
    if size_text.strip():
        try:
            bound = parse_size(size_text)
        except ValueError as exc:
            notice(f"max_size is ignored: {exc}")
    if remote is None and bound is None:
        return None
    return Team(store, remote, max_size=bound, notice=notice, journal_key=store.journal_key)


def pull_into(root: Path, notebook: Path, remote: RemoteStore, key: bytes,
              say: Callable[[str], None]) -> int:
    """``resumable-nb run``'s pull before it decides whether to resume: bring the notebook's
    recent runs from the bucket into the local journal under ``root`` (unless a kernel holds
    it). :raises RemoteUnavailable:"""
    journal = Journal(root, str(notebook), key=key)
    try:
        if not journal.acquire():
            return 0
        return _pull(remote, journal, say, lambda data: journal.append_lines(
            data.splitlines(keepends=True)))
    finally:
        journal.release()


def _pull(remote: RemoteStore, journal: Journal, say: Callable[[str], None],
          append: Callable[[bytes], None]) -> int:
    ident = notebook_identity(journal.notebook)
    local, _ = journal.read()
    # Newer than the latest local run that recorded a step: this kernel's own run may have
    # just started (a plain cell is journaled too) and must not hide the one that crashed.
    latest = max((r for r, view in local.items() if view.steps and r != journal.run_id), default="")
    listed = list_runs(remote, ident)
    todo = [r for r in listed if r not in local and r > latest][-_PULL_RUNS:]
    fetched: dict[str, bytes] = {}
    rejected = 0
    while todo:
        run = todo.pop()
        if run in fetched or run in local:
            continue
        good, bad = verify_lines(read_run(remote, ident, run), journal.key)
        rejected += bad
        if not good:
            continue
        fetched[run] = b"".join(good)
        parent = _resumed_from(good)
        if parent and parent in listed and parent not in local and parent not in fetched:
            todo.append(parent)  # the run it resumed: its steps are part of the state
    if rejected:
        say(f"{rejected} journal record{'s' * (rejected != 1)} in the team store "
            f"{'are' if rejected != 1 else 'is'} not signed with your key ({ENV['KEY_FILE']}): ignored")
    if fetched:
        # Oldest first (run ids are time-ordered): the newest run is then the latest one.
        append(b"".join(fetched[r] for r in sorted(fetched)))
    return len(fetched)


# -- helpers ------------------------------------------------------------------------------------
def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """The bytes of ``path`` from ``offset`` on (no link followed), and the file's size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        if offset >= size:
            return b"", size
        return os.pread(fd, size - offset, offset), size
    finally:
        os.close(fd)


def _body(line: bytes) -> dict[str, object]:
    body = line.rpartition(b"\t")[0]
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _run_of(line: bytes) -> str | None:
    run = _body(line).get("run")
    return run if isinstance(run, str) else None


def _resumed_from(lines: list[bytes]) -> str | None:
    for line in lines:
        body = _body(line)
        if body.get("kind") == "run_started":
            parent = body.get("resumed_from")
            return parent if isinstance(parent, str) else None
    return None


def _claimed_step(raw: bytes) -> str:
    """The step name an unverified manifest claims: for the message only, escaped."""
    try:
        return printable(json.loads(json.loads(raw)["m"])["step"])[:80]
    except (ValueError, KeyError, TypeError):
        return "?"
