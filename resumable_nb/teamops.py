"""The team store from the command line: ``push``, ``gc --store``, and the pull that ``run`` and
``status`` do first. The kernel side is :mod:`resumable_nb.team`; this module never unpickles.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._text import human_size, printable
from .config import ENV
from .errors import CorruptEntry, RunError, StoreError
from .housekeeping import evict, gc_keep, keep_for_runs, parse_size
from .journal import iter_journals, journal_key, read_journal_bytes, verify_lines
from .remote import (
    RemoteStore,
    RemoteUnavailable,
    list_runs,
    manifest_name,
    notebook_identity,
    object_name,
    remote_from_env,
    segment_name,
)
from .store import Store
from .team import pull_into
from .uploader import Uploader

__all__ = ["GcReport", "PushReport", "cmd_gc_max_size", "cmd_gc_store", "cmd_push", "gc_remote",
           "pull_for", "push"]


@dataclass(frozen=True, slots=True)
class PushReport:
    pending: int  # uploads left by kernels, sent now
    left: int  # uploads still pending (the bucket stopped answering)
    payloads: int  # payloads the bucket lacked, uploaded
    manifests: int
    runs: int  # journal runs the bucket lacked, uploaded


def push(store: Store, remote: RemoteStore, *, timeout: float = 600.0) -> PushReport:
    """Send the uploads kernels left queued, then whatever the bucket lacks: payloads and
    manifests of every local entry, and every local run's journal records (as one segment).

    :raises RemoteUnavailable:
    """
    assert store.dir is not None
    uploader = Uploader(remote, store.dir, key=store.key_for_uploads)
    try:
        pending = uploader.recover()
        uploader.flush(timeout)
    finally:
        uploader.close(timeout=1.0)
    left = len(uploader.pending())
    objects = {o.name: o.size for o in remote.list("objects/")}
    manifests = {o.name for o in remote.list("manifests/")}
    payloads = sent_manifests = 0
    assert store.dir is not None
    for entry in store.entries():
        name = object_name(entry.file)
        if objects.get(name) != entry.size:
            try:
                fd = store.dir.open("objects", entry.file, os.O_RDONLY)
            except FileNotFoundError:
                continue  # evicted meanwhile: its manifest is useless without it
            try:
                remote.put_file(name, fd, skip_existing=False)
            finally:
                os.close(fd)
            objects[name] = entry.size
            payloads += 1
        record = store.record(entry.key)
        if manifest_name(entry.key) not in manifests and record is not None:
            sent_manifests += remote.put_blob(manifest_name(entry.key), record)
    return PushReport(pending, left, payloads, sent_manifests, _push_runs(store, remote))


def _push_runs(store: Store, remote: RemoteStore) -> int:
    sent = 0
    listed: dict[Any, set[str]] = {}
    for path in iter_journals(store.root):
        try:
            data = read_journal_bytes(path)  # no link followed; a FIFO or device is refused
        except StoreError:
            continue
        good, _ = verify_lines(data, store.journal_key)
        by_run: dict[str, list[bytes]] = {}
        notebook: dict[str, str | None] = {}
        for line in good:
            body = json.loads(line.rpartition(b"\t")[0])
            by_run.setdefault(body["run"], []).append(line)
            if body.get("kind") == "run_started":
                notebook[body["run"]] = body.get("notebook")
        for run, lines in by_run.items():
            if run not in notebook:
                continue  # its start is in no journal here: not a run of ours to publish
            ident = notebook_identity(notebook[run])
            if ident not in listed:
                listed[ident] = set(list_runs(remote, ident))
            if run not in listed[ident]:
                remote.put_blob(segment_name(ident, run, 0), b"".join(lines))
                sent += 1
    return sent


@dataclass(frozen=True, slots=True)
class GcReport:
    manifests: int
    objects: int
    freed: int
    kept: int
    refused: str = ""  # why nothing was deleted


def gc_remote(remote: RemoteStore, store: Store, *, grace: float = 86400.0,
              say: Callable[[str], None] = lambda _: None, dry_run: bool = False) -> GcReport:
    """Delete the manifests no mirrored journal's latest run needs, and the payloads no kept
    manifest names. Anything younger than ``grace`` seconds stays (an upload in flight sends
    its payload and manifest before the journal records that need them). ``dry_run``: the
    same report, nothing deleted.

    Journals are read with this user's key; when a record does not verify, nothing is deleted
    (a record we cannot read may be what needs an entry). :raises RemoteUnavailable:
    """
    now = time.time()

    def delete(name: str) -> None:
        if not dry_run:
            remote.delete(name)

    journal_objects = [o for o in remote.list("journal/") if o.name.endswith(".jsonl")]
    by_run: dict[str, dict[int, bytes]] = {}
    for obj in journal_objects:
        folder, _, stem = obj.name.rpartition("/")
        data = remote.get_blob(obj.name)
        if data is not None and stem.removesuffix(".jsonl").isdigit():
            by_run.setdefault(folder, {})[int(stem.removesuffix(".jsonl"))] = data
    by_notebook: dict[str, list[dict[str, Any]]] = {}
    rejected = 0
    for folder, segments in sorted(by_run.items()):
        good, bad = verify_lines(b"".join(segments[i] for i in sorted(segments)), store.journal_key)
        rejected += bad
        notebook = folder.rpartition("/")[0]
        by_notebook.setdefault(notebook, []).extend(json.loads(line.rpartition(b"\t")[0]) for line in good)
    if rejected:
        return GcReport(0, 0, 0, 0, refused=f"{rejected} journal record(s) in the bucket are not "
                        "signed with your key: a record you cannot read may need an entry")
    keep: set[str] = set()
    for events in by_notebook.values():
        events.sort(key=lambda e: (str(e.get("run")), float(e.get("time", 0))))
        keep |= keep_for_runs(events)
    manifests = list(remote.list("manifests/"))
    used: set[str] = set()
    gone_manifests = 0
    for obj in manifests:
        key = obj.name.removeprefix("manifests/").removesuffix(".json")
        young = now - obj.modified < grace
        if key in keep or young:
            raw = remote.get_blob(obj.name)
            try:
                entry = store.verify_record(key, raw) if raw is not None else None
            except CorruptEntry:
                entry = None
            if entry is not None:
                used.add(object_name(entry.file))
            elif young:
                continue
            else:
                delete(obj.name)  # kept by name but not ours: nothing can use it
                gone_manifests += 1
            continue
        delete(obj.name)
        gone_manifests += 1
    gone_objects = freed = 0
    for obj in remote.list("objects/"):
        if obj.name in used or now - obj.modified < grace:
            continue
        delete(obj.name)
        gone_objects += 1
        freed += obj.size
    return GcReport(gone_manifests, gone_objects, freed, len(manifests) - gone_manifests)



# -- the commands -------------------------------------------------------------------------------
def _say(text: str) -> None:
    print(f"resumable-nb: {printable(text)}", file=sys.stderr)


def _remote(url: str | None) -> RemoteStore | None:
    """``--store URL``, else ``$RESUMABLE_NB_STORE``; None when neither. :raises StoreError:"""
    return remote_from_env(url=url or "")


def pull_for(notebook: Path, root: Path, url: str | None) -> None:
    """Before ``run`` / ``status``: bring the notebook's recent runs on other machines from the
    team store into the local journal (one line when the store is unreachable)."""
    remote = _remote(url)
    if remote is None:
        return
    try:
        added = pull_into(root, notebook, remote, journal_key(), _say)
    except RemoteUnavailable as exc:
        _say(f"{exc} (runs on other machines are not shown)")
        return
    if added:
        _say(f"{added} run{'s' * (added != 1)} of {notebook.name} from the team store {remote.url}")


def cmd_push(root: Path, url: str | None) -> int:
    """``resumable-nb push``: exit 0 when everything is in the bucket, 1 when some is left."""
    remote = _remote(url)
    if remote is None:
        raise RunError(f"push needs a team store: --store s3://BUCKET/PREFIX or ${ENV['STORE']}")
    if not (root / "index").is_dir():
        print(f"nothing to push: no cache at {root}")
        return 0
    store = Store(root)
    try:
        report = push(store, remote)
    except RemoteUnavailable as exc:
        raise RunError(str(exc)) from None
    finally:
        store.close()
    print(f"pushed to {remote.url}: {report.pending} queued upload(s), {report.payloads} payload(s) "
          f"and {report.manifests} manifest(s) the store lacked, {report.runs} run journal(s)"
          + (f"; {report.left} upload(s) still pending" if report.left else ""))
    return 1 if report.left else 0


def cmd_gc_store(root: Path, url: str | None, dry_run: bool = False) -> int:
    """``resumable-nb gc --store URL [--dry-run]``: collect the bucket."""
    remote = _remote(url)
    if remote is None:
        raise RunError(f"gc --store needs a bucket URL (or ${ENV['STORE']})")
    store = Store(root)  # only for the key: manifests and journals are verified with it
    try:
        report = gc_remote(remote, store, dry_run=dry_run)
    except RemoteUnavailable as exc:
        raise RunError(str(exc)) from None
    finally:
        store.close()
    if report.refused:
        print(f"collected nothing in {remote.url}: {report.refused}")
        return 0
    would = "would " if dry_run else ""
    print(f"{would}remove{'' if dry_run else 'd'} {report.manifests} manifest(s) and {report.objects} "
          f"payload(s) from {remote.url}, {would}free {human_size(report.freed)}; "
          f"{would}keep {report.kept} manifest(s) that the latest runs need or that are less than "
          f"a day old{_DRY if dry_run else ''}")
    return 0


def cmd_gc_max_size(root: Path, size: str, dry_run: bool = False) -> int:
    """``resumable-nb gc --max-size SIZE [--dry-run]``: least recently used first, down to SIZE."""
    try:
        limit = parse_size(size)
    except ValueError as exc:
        raise RunError(f"--max-size: {exc}") from None
    keep, warnings = gc_keep(root)
    if warnings:
        raise RunError(f"collected nothing: a journal in {root} could not be read whole "
                       f"({warnings[0]})")
    store = Store(root)
    try:
        removed, freed = evict(store, limit, keep, dry_run=dry_run)
        left = store.size_on_disk() - (freed if dry_run else 0)
    finally:
        store.close()
    entries = f"{removed} least recently used cache entr{'y' if removed == 1 else 'ies'}"
    if dry_run:
        print(f"would remove {entries}, would free {human_size(freed)}; {human_size(left)} would be "
              f"left (max {human_size(limit)}){_DRY}")
    else:
        print(f"removed {entries}, {human_size(freed)} freed; {human_size(left)} left "
              f"(max {human_size(limit)})")
    return 0


_DRY = " (dry run: nothing removed)"
