"""The exceptions and warnings resumable_nb raises.

::

    ResumableError                 base of everything below
    ├── StepUsageError             bad magic arguments, bad step name, empty body
    ├── Unfingerprintable          an input whose content cannot be hashed stably
    ├── Unstorable                 an output that cannot be pickled safely
    ├── StoreError                 the cache cannot be opened or written
    │   └── CorruptEntry           a manifest or payload failed its size/HMAC check or load
    ├── RestoreError               a verified entry could not be restored into this kernel
    └── RunError                   bad input for ``resumable-nb run`` (exit 2)

    ResumableWarning(UserWarning)  one-line notices (a hit turned into a miss, ...), shown as
                                   ``[resumable_nb] ...`` on stderr by :func:`notice`; silence
                                   them with the warnings machinery::

        import warnings
        from resumable_nb import ResumableWarning
        warnings.filterwarnings("ignore", category=ResumableWarning)

Every message names the step or variable, what happened, and what to do about it.
"""

from __future__ import annotations

import sys
import warnings

__all__ = [
    "CorruptEntry",
    "RestoreError",
    "ResumableError",
    "ResumableWarning",
    "RunError",
    "StepUsageError",
    "StoreError",
    "Unfingerprintable",
    "Unstorable",
    "notice",
]


class ResumableError(Exception):
    """Base class of resumable_nb's errors."""


class StepUsageError(ResumableError):
    """The magic was called with bad arguments."""


class Unfingerprintable(ResumableError):
    """A value has no stable content hash (a generator, a lock, a socket...)."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class Unstorable(ResumableError):
    """An output cannot be stored (it cannot be pickled, or restoring it would be unsafe)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class StoreError(ResumableError):
    """The cache directory cannot be used."""


class CorruptEntry(StoreError):
    """A stored entry failed verification: it is ignored and the step re-runs."""


class RestoreError(ResumableError):
    """A verified entry cannot be restored here (e.g. a class it refers to changed)."""


class RunError(ResumableError):
    """Bad input for a run (or a run that cannot start): one line, exit 2, nothing written."""


class ResumableWarning(UserWarning):
    """A one-line notice from resumable_nb."""


def notice(text: str) -> None:
    """Tell the user one line, as a :class:`ResumableWarning` that the ``warnings`` filters
    decide on (``ignore`` silences it, ``error`` raises it), printed as ``[resumable_nb] text``.

    Unlike a plain ``warnings.warn`` it is not shown once per source line: the same notice
    about two different steps must both appear.
    """
    with warnings.catch_warnings(record=True) as seen:  # keeps the filters, records instead
        warnings.warn_explicit(ResumableWarning(text), ResumableWarning, "resumable_nb", 0,
                               module="resumable_nb", registry={})
    for w in seen:
        print(f"[resumable_nb] {w.message}", file=sys.stderr)
