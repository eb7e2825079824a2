"""``--retries``: put a step's inputs back as they were before a failed attempt. Pure: no IPython.

Before the first attempt, each input variable that a step could change in place is pickled
(:mod:`resumable_nb.serialize`, as a payload is), up to :data:`SNAPSHOT_LIMIT` bytes in all.
After a failed attempt, every input is fingerprinted again; one whose content differs from
the fingerprint in the key (changed in place, rebound or deleted) is put back from its copy —
in place for lists, dicts, sets, arrays and notebook objects, so other references see it —
and an input that was absent is removed again. An input that changed and has no copy (too big,
or it cannot be pickled) stops the retries: the next attempt would not start from the same
inputs.
"""

from __future__ import annotations

import io
import types
from collections.abc import Mapping, MutableMapping
from typing import Any

from . import serialize
from .errors import Unfingerprintable

__all__ = ["SNAPSHOT_LIMIT", "Snapshot"]

SNAPSHOT_LIMIT = 1 << 30
"""Bytes of pickled inputs kept for retries; inputs beyond it are not copied."""

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), frozenset, range,
              types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)


class Snapshot:
    """Copies of a step's inputs taken before its first attempt."""

    def __init__(self, ns: Mapping[str, Any], inputs: Mapping[str, str], absent: str) -> None:
        self._inputs = {k: v for k, v in inputs.items() if ":" not in k}  # variables, not files
        self._absent = absent
        self._copies: dict[str, bytes] = {}
        self._originals: dict[str, Any] = {}  # the objects themselves, for a rebinding attempt
        self.missing: dict[str, str] = {}  # name -> why it has no copy
        total = 0
        for name, fp in sorted(self._inputs.items()):
            if fp == absent or name not in ns:
                continue
            value = ns[name]
            self._originals[name] = value
            if _immutable(value):
                continue
            try:
                out = io.BytesIO()
                serialize.dump(value, out, ns)
            except Exception as exc:  # noqa: BLE001 - whatever pickling raises
                self.missing[name] = f"it cannot be copied ({type(exc).__name__})"
                continue
            total += out.tell()
            if total > SNAPSHOT_LIMIT:
                self.missing[name] = "the inputs are too big to copy"
                continue
            self._copies[name] = out.getvalue()

    def reset(self, ns: MutableMapping[str, Any], fingerprinter: Any) -> str:
        """Put the inputs back; "" when done, else why the step cannot be retried."""
        for name, fp in sorted(self._inputs.items()):
            if fp == self._absent:
                ns.pop(name, None)
                continue
            if name not in self._originals:
                continue
            if name in ns and self._same(fingerprinter, ns[name], fp):
                continue
            original = self._originals[name]
            if name not in self._copies:
                if name in self.missing or not self._same(fingerprinter, original, fp):
                    why = self.missing.get(name, "it changed in place")
                    return f"input '{name}' changed and {why}"
                ns[name] = original  # rebound by the attempt; the object itself is unchanged
                continue
            copy = serialize.load(self._copies[name], [], ns)
            from .runner import _assign_in_place  # one rule for changing an object in place

            if not _assign_in_place(original, copy):
                original = copy
            ns[name] = original
        return ""

    @staticmethod
    def _same(fingerprinter: Any, value: Any, fp: str) -> bool:
        try:
            return bool(fingerprinter.hash(value) == fp)
        except Unfingerprintable:
            return False


def _immutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(v) for v in value)
    return isinstance(value, _IMMUTABLE)
