"""What may be deleted from a cache, and bounding its size: shared by the kernel and the CLI.

The rule is the same everywhere (``resumable-nb gc``, the kernel's automatic size bound, the
team store's ``gc --store``): an entry that the latest run of some notebook needs to resume
(its chain of completed steps), or that a running kernel is storing, stays. Everything else
may go; the size bound removes the least recently used first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .journal import chain, iter_journals, read_events, runs
from .store import Store

__all__ = ["evict", "gc_keep", "keep_for_runs", "parse_size"]

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1 << 10, "mib": 1 << 20,
          "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``"20GB"`` -> 20_000_000_000 (``GiB``, ``MB``, ``500M``, plain bytes also work).

    :raises ValueError: anything else, with a message that says what is accepted.
    """
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: write e.g. 20GB, 500MB or 2GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def keep_for_runs(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """Keys one journal's runs need: its latest run's chain (what a resume restores), and
    every running run's chain and steps (a step being stored right now)."""
    all_runs = runs(events)
    if not all_runs:
        return set()
    latest = list(all_runs.values())[-1]
    keep = {s.key for s in chain(all_runs, latest.run) if s.key}
    for run in all_runs.values():
        if run.state == "running":
            keep |= {s.key for s in chain(all_runs, run.run) if s.key}
            keep |= {s.key for s in run.steps if s.key}
    return keep


def gc_keep(root: Path, key: bytes | None = None) -> tuple[set[str], list[str]]:
    """Keys that must stay: for every notebook journal under ``root``, those of its latest run's
    chain (what a resume restores), and those of every run whose kernel is still alive; and the
    warnings of journals that could not be read whole (then nothing may be collected: a skipped
    record may be what needs an entry). ``key``: the journal key (default: the user's)."""
    keep: set[str] = set()
    warnings: list[str] = []
    for path in iter_journals(root):
        events, warning = read_events(path, key)
        if warning:
            warnings.append(warning)
        keep |= keep_for_runs(events)
    return keep, warnings


def evict(store: Store, max_size: int, keep: set[str], *, dry_run: bool = False) -> tuple[int, int]:
    """Delete entries not in ``keep``, least recently used first (a payload's modification
    time: written when stored, renewed by every load), until the folder holds at most
    ``max_size`` bytes. Returns (entries removed, bytes freed); the bound may stay exceeded
    when what is kept is bigger than it. ``dry_run``: what it would remove and free; nothing
    is deleted."""
    size = store.size_on_disk()
    if size <= max_size:
        return 0, 0
    assert store.dir is not None
    entries = list(store.entries())
    users: dict[str, int] = {}
    for entry in entries:
        users[entry.file] = users.get(entry.file, 0) + 1

    def last_use(entry: Any) -> float:
        st = store.dir.lstat("objects", entry.file) if store.dir is not None else None
        return st.st_mtime if st is not None else 0.0

    removed = freed = 0
    for entry in sorted((e for e in entries if e.key not in keep), key=last_use):
        if size <= max_size:
            break
        st = store.dir.lstat("objects", entry.file)
        if not dry_run:
            store.delete(entry.key)
        removed += 1
        users[entry.file] -= 1
        if users[entry.file] == 0 and st is not None:
            size -= st.st_size
            freed += st.st_size
    return removed, freed
