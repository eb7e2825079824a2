"""One view of a run's steps: the rows that the panel, ``%steps`` and ``resumable-nb status``
(text and ``--json``) all show.

Pure: it folds journal views (:mod:`resumable_nb.journal`) and the notebook's step cells into
:class:`StepRow` records, and renders them as a plain-text table. It imports neither IPython
nor ipywidgets, so the CLI and the text table stay cheap; the panel only draws these rows.
The states and their labels are those of :mod:`resumable_nb.states`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import why
from ._text import columns, human_size
from .journal import RunView, StepView, chain
from .states import COMPLETE, StepState, label

__all__ = ["TABLE_HEAD", "StepCell", "StepRow", "render_steps", "step_rows"]

TABLE_HEAD = ("step", "state", "attempts", "seconds", "saved s", "outputs", "why it ran")

_STALE = "its code in the notebook differs from the last run"


class StepCell(Protocol):
    """A ``%%step`` cell of the saved notebook, as either reader of notebooks gives it."""

    @property
    def step(self) -> str | None: ...

    @property
    def body(self) -> str: ...


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step's line in every view of a run."""

    name: str
    state: StepState
    attempts: int = 0  # executions in this run (0 for a step restored by resume, or not run)
    duration: float | None = None  # seconds of its last execution or restore; None: not run
    saved: float | None = None  # seconds of computing the cache saved; None: not run
    outputs: tuple[tuple[str, int], ...] = ()  # (variable, approximate bytes), sorted
    reason: str = ""  # why it ran (a miss), its error (a failure), or why it is stale
    error: str = ""  # for a failure: "ExceptionType: message"
    stale: bool = False  # its code in the notebook differs from the code that last ran
    run: str | None = None  # the run that recorded it (an earlier one when restored by resume)

    @property
    def label(self) -> str:
        """The words shown for its state."""
        return label(self.state)

    def seconds_text(self, unit: str = "") -> str:
        """``"1.50"``; ``"-"`` for an execution that never finished; ``""`` when not run."""
        if self.duration is None:
            return "-" if self.attempts else ""
        return f"{self.duration:.2f}{unit}"

    def outputs_text(self) -> str:
        """``"df (1.2 MB), n (28 B)"``."""
        return ", ".join(f"{n} ({human_size(b)})" for n, b in self.outputs)

    def to_json(self) -> dict[str, Any]:
        """A step of ``resumable-nb status --json`` (docs/cli.md)."""
        return {"name": self.name, "state": self.label, "attempts": self.attempts,
                "duration": _round(self.duration), "saved": _round(self.saved), "run": self.run,
                "error": self.error, "reason": self.reason, "outputs": dict(self.outputs),
                "stale": self.stale}


def step_rows(runs: Mapping[str, RunView], run: RunView | None,
              cells: Sequence[StepCell] | None) -> list[StepRow]:
    """The rows of ``run``: the notebook's steps in notebook order, then the steps the notebook
    no longer has; each from its last execution in ``run`` or, failing that, in the runs it
    resumed (``runs``: every run of the notebook, as :func:`journal.runs` folds them). With no
    run, every step of the notebook is ``not_run``."""
    order = [c.step for c in cells or () if c.step]
    sources = {c.step: c.body for c in cells or () if c.step}
    history: dict[str, list[StepView]] = {}
    if run is not None:
        inherited = chain(runs, run.resumed_from) if run.resumed_from else []
        for s in [*inherited, *run.steps]:
            history.setdefault(s.name, []).append(s)
    rows = []
    for name in dict.fromkeys([*order, *history]):
        views = history.get(name)
        if run is None or not views:
            rows.append(StepRow(name, "not_run"))
        elif views[-1].run != run.run and name in run.left:
            # Its resume could not restore it (a corrupt or missing entry): left to run.
            rows.append(StepRow(name, "not_run", reason=f"not restored: {run.left[name]}",
                                run=views[-1].run))
        else:
            rows.append(_row(name, views, run.run, sources.get(name)))
    return rows


def _row(name: str, views: list[StepView], run_id: str, source: str | None) -> StepRow:
    last = views[-1]
    resumed = last.run != run_id  # it came from the runs this one resumed
    state: StepState = "resumed" if resumed else last.status
    if resumed:
        saved = last.duration + last.saved  # it did not even restore from the cache here
    else:
        saved = last.saved if last.status == "cached" else 0.0
    stale = source is not None and source.strip() != last.source.strip()
    if stale and state != "running":
        state, reason = "stale", _STALE
    else:
        reason = _reason(views) if state in ("ran", "failed", "interrupted") else ""
    # An execution that never finished has no duration (the journal records none): None, shown
    # as "-", rather than a 0.00 s that reads as "it was instant".
    unfinished = last.status in ("interrupted", "running")
    return StepRow(name, state, attempts=sum(1 for v in views if v.run == run_id),
                   duration=None if unfinished else last.duration, saved=saved,
                   outputs=tuple(sorted(last.outputs.items())),
                   reason=reason, error=last.error, stale=stale, run=last.run)


def _reason(views: list[StepView]) -> str:
    """Why the last execution was a miss, when the journal tells."""
    last = views[-1]
    if last.status == "failed":
        return last.error
    if last.status == "interrupted":
        return "the kernel died while it ran"
    if last.status != "ran":
        return ""
    if last.reason == "--force":
        return "re-run on request (--force)"
    earlier = [v for v in views[:-1] if v.status in COMPLETE]
    if earlier:  # against the previous execution in this run, as the runner compares entries
        comparison = why.compare(earlier[-1], last.source, last.inputs)
        if comparison.differs:
            return comparison.summary()
    return last.reason


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)



def render_steps(title: str, rows: Iterable[StepRow]) -> str:
    """``title``, then the rows as a plain-text table: ``%steps`` (and the panel's text/plain)
    and ``resumable-nb status``."""
    table = [list(TABLE_HEAD)]
    for r in rows:
        table.append([r.name, r.label, str(r.attempts),
                      r.seconds_text(),
                      f"{r.saved:.2f}" if r.saved else "", r.outputs_text() or "-", r.reason])
    return "\n".join([title, *columns(table)])
