"""The step states: what the run journal records, and what a view of a run shows.

Two vocabularies, one label table. The journal records what happened to one execution of a
step (:data:`JournalStatus`); a view — the panel, ``%steps``, ``resumable-nb status`` — shows
one state per step of the notebook (:data:`StepState`), which adds what only the whole run
tells: restored by the resume the run started with, not reached yet, or stale (its code in the
notebook differs from what ran). Every journal status is also a view state, so one table of
labels serves both, and the words a user reads are the same in every view:

==============  ===================  ==============================================
state           label                meaning
==============  ===================  ==============================================
``ran``         ran                  computed (and stored, when it could be)
``cached``      restored from cache  a cache hit: restored, not executed
``resumed``     restored by resume   restored by the resume this run started with
``failed``      failed               the cell raised; nothing stored
``interrupted`` interrupted          the kernel died (or was stopped) while it ran
``running``     running              started, not finished, and its kernel is alive
``not_run``     not yet run          in the notebook, not reached in this run
``stale``       stale                its code in the notebook differs from what ran
``waiting``     waiting              a ``%gate`` the run stopped at, not decided yet
==============  ===================  ==============================================

>>> label("cached"), label("not_run")
('restored from cache', 'not yet run')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

__all__ = [
    "COLORS",
    "COMPLETE",
    "JOURNAL_STATUSES",
    "LABELS",
    "STEP_STATES",
    "JournalStatus",
    "StepState",
    "journal_status",
    "label",
]

JournalStatus = Literal["ran", "cached", "failed", "interrupted", "running"]
"""What the journal records for one execution of a step (``interrupted`` and ``running`` are
derived when reading: a ``step_started`` with no ``step_finished``)."""

StepState = Literal["ran", "cached", "resumed", "failed", "interrupted", "running", "not_run", "stale",
                    "waiting"]
"""What a view shows for one step of a run."""

JOURNAL_STATUSES: Final[tuple[JournalStatus, ...]] = get_args(JournalStatus)
STEP_STATES: Final[tuple[StepState, ...]] = get_args(StepState)

COMPLETE: Final[frozenset[JournalStatus]] = frozenset({"ran", "cached"})
"""The statuses of an execution whose outputs are in the cache (a resume can restore it)."""

LABELS: Final[Mapping[StepState, str]] = {
    "ran": "ran",
    "cached": "restored from cache",
    "resumed": "restored by resume",
    "failed": "failed",
    "interrupted": "interrupted",
    "running": "running",
    "not_run": "not yet run",
    "stale": "stale",
    "waiting": "waiting",
}
"""The one human label of every state: the panel, ``%steps``, the CLI's text and its JSON."""


COLORS: Final[Mapping[StepState, str]] = {
    "ran": "#1a7f37", "cached": "#0969da", "resumed": "#0969da", "failed": "#cf222e",
    "interrupted": "#bc4c00", "running": "#8250df", "not_run": "#6e7781", "stale": "#9a6700",
    "waiting": "#bf8700",
}
"""The one colour of every state: the panel's badges, its graph and ``status --dot``."""


def label(state: StepState) -> str:
    """The words a user reads for ``state``."""
    return LABELS[state]


def journal_status(value: object) -> JournalStatus:
    """A status read from a journal record; anything unknown reads as ``failed`` (a record from
    a newer version must not look complete and be restored)."""
    for status in JOURNAL_STATUSES:
        if value == status:
            return status
    return "failed"
