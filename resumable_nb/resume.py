"""What ``%resume`` and ``%replay`` restore and run: pure logic over journal, store, notebook.

The namespace after a sequence of completed steps is, for every name, the value from the
last step that wrote it (or nothing, if that step deleted it). Only the entries that are the
last writer of some name are loaded. An entry that cannot be loaded (evicted, corrupt, a
class that changed) cuts the sequence there: the state restored is the one just before that
step, which is consistent, and the step is reported as left to run.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptEntry, RestoreError, StepUsageError, StoreError
from .journal import PlainCell, RunView, StepView, chain
from .stepline import StepLine, parse_step_line
from .store import Store

__all__ = [
    "Cell",
    "ReplayPlan",
    "ReplayStep",
    "Restored",
    "ResumePlan",
    "cells_to_run",
    "choose_run",
    "last_attempts",
    "not_restored",
    "notebook_cells",
    "plan_rebuild",
    "plan_replay",
    "plan_resume",
    "recorded_cell",
    "restore_state",
    "step_cell",
]

# Cells that control resumable_nb itself: never re-run by %resume --run / %replay.
_CONTROL = ("%load_ext", "%reload_ext", "%resume", "%replay", "%steps", "%config", "%gate", "%why")


@dataclass(frozen=True, slots=True)
class Cell:
    """A code cell of the saved notebook."""

    index: int
    source: str
    spec: StepLine | None = None  # the parsed %%step line, for a step cell
    line: str = ""  # the %%step line's arguments, as written
    body: str = ""  # the %%step cell's body

    @property
    def step(self) -> str | None:
        """The step's name, for a ``%%step`` cell."""
        return self.spec.name if self.spec is not None else None

    @property
    def control(self) -> bool:
        lines = [ln.strip() for ln in self.source.splitlines()
                 if ln.strip() and not ln.strip().startswith("#")]
        return bool(lines) and all(ln.startswith(_CONTROL) for ln in lines)


def notebook_cells(path: Path) -> list[Cell]:
    """The code cells of a saved ``.ipynb``, with ``%%step`` cells parsed.

    :raises OSError, ValueError: unreadable or not a notebook.
    """
    # Plain JSON: importing nbformat costs over a second, and only cell sources are needed.
    import json

    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path} is not a notebook (no cells)")
    return parse_cells(nb)


def parse_cells(nb: Mapping[str, Any]) -> list[Cell]:
    """The code cells of a notebook (nbformat 4, as a NotebookNode or its JSON); ``index`` is
    the position among all cells."""
    cells = []
    for i, cell in enumerate(nb.get("cells", [])):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        raw = cell.get("source", "")
        source = raw if isinstance(raw, str) else "".join(raw)
        first, _, body = source.partition("\n")
        magic, line = [*first.split(None, 1), "", ""][:2]
        try:
            spec = parse_step_line(line) if magic == "%%step" else None
        except StepUsageError:
            spec = None  # a plain cell here: executing it raises the magic's own usage error
        cells.append(Cell(i, source, spec, line.strip(), body) if spec else Cell(i, source))
    return cells


def step_cell(line: str, body: str) -> Cell:
    """A ``%%step`` cell that is not in the notebook file (rebuilt from the journal).

    :raises StepUsageError: ``line`` does not parse.
    """
    return Cell(-1, f"%%step {line}\n{body}", parse_step_line(line), line, body)


def recorded_cell(step: StepView) -> Cell:
    """The ``%%step`` cell of a journal record, for when the notebook file is unknown: its
    whole line (``--ignore``... are in the key), or its name alone in older records."""
    try:
        return step_cell(step.line or step.name, step.source)
    except StepUsageError:
        return step_cell(step.name, step.source)


@dataclass(slots=True)
class Restored:
    """The outcome of rebuilding a namespace from completed steps."""

    values: dict[str, Any] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    steps: list[StepView] = field(default_factory=list)  # the steps whose state this is
    stopped_at: StepView | None = None  # the first step whose entry could not be used
    why: str = ""
    nbytes: int = 0  # the size on disk of the cache entries read
    saved: float = 0.0
    cells: int = 0  # plain cells re-run (a rebuild, not --steps-only)
    placed: set[str] = field(default_factory=set)  # generators put where a restored step left them
    # The files the restored steps stored (products, files they only wrote), by path, the
    # last step's version: written back as a hit does (files.write_back).
    files: dict[str, Any] = field(default_factory=dict)


def restore_state(steps: list[StepView], store: Store, namespace: MutableMapping[str, Any],
                  lazy: bool = False) -> Restored:
    """The namespace as it stood after ``steps`` (completed, in execution order).

    Reads the store; does not touch ``namespace`` (functions are bound to it as globals,
    classes are looked up in the state being built, then in it).
    """
    usable = list(steps)
    stopped: tuple[StepView, str] | None = None
    while True:
        writer: dict[str, int | None] = {}
        for i, step in enumerate(usable):
            for name in step.outputs:
                writer[name] = i
            for name in step.deleted:
                writer[name] = None
        # Which names each step is the last writer of: one pass, not one per loaded entry
        # (that was quadratic: 10,000 steps x 10,000 names made a %resume take seconds).
        names_of: dict[int, list[str]] = {}
        for name, j in writer.items():
            if j is not None:
                names_of.setdefault(j, []).append(name)
        values: dict[str, Any] = {}
        files: dict[str, Any] = {}
        failed: int | None = None
        on_disk = 0
        # Every manifest needed, in a few index queries (one per entry was a third of a
        # 10,000-step %resume); a key not found this way is asked for alone, which says why.
        manifests = store.get_many(usable[i].key or "" for i in names_of)
        for i in sorted(names_of):
            try:
                entry = manifests.get(usable[i].key or "") or store.get(usable[i].key or "")
                if entry is None:
                    raise CorruptEntry("its cache entry is gone (cleared?)")
                on_disk += entry.size
                payload = store.load(entry, namespace, ChainMap(values, namespace), lazy=lazy)
            except (CorruptEntry, RestoreError, StoreError) as exc:
                failed = i
                stopped = (usable[i], str(exc))  # an earlier failure replaces a later one
                break
            for name in names_of[i]:
                if name in payload["outputs"]:
                    values[name] = payload["outputs"][name]
            for stored in payload.get("files") or ():
                files[stored[0]] = stored
        if failed is None:
            break
        usable = usable[:failed]
    restored = Restored(values=values, deleted={n for n, j in writer.items() if j is None},
                        steps=usable, files=files)
    if stopped is not None:
        restored.stopped_at, restored.why = stopped
    # What was read from the cache: the entries' files, not the journal's per-output figures
    # (those of older entries were in-memory guesses, 56 B for a model holding 153 MB).
    restored.nbytes = on_disk
    restored.saved = sum(s.duration + s.saved for s in usable)
    return restored


def bind(namespace: MutableMapping[str, Any], restored: Restored,
         also_remove: Iterable[str] = ()) -> None:
    """Write a restored state into the namespace in one go."""
    namespace.update(restored.values)
    for name in set(restored.deleted) | set(also_remove):
        if name not in restored.values:
            namespace.pop(name, None)


# -- plans ------------------------------------------------------------------------------------
@dataclass(slots=True)
class ResumePlan:
    """What ``%resume`` found: the run, the state it can restore, what is left."""

    run: RunView
    restored: Restored
    interrupted: list[StepView]  # steps of the run that started and never finished / failed
    remaining: list[str]  # step names of the notebook not restored, in notebook order
    cells: list[Cell] | None  # the saved notebook's code cells, when known
    # Steps whose latest completed execution could not be restored, and why (see not_restored).
    left: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> set[str]:
        """The steps restored and not left to run (their latest attempt completed)."""
        return ({s.name for s in self.restored.steps} - {s.name for s in self.interrupted}
                - set(self.left))


def choose_run(all_runs: Mapping[str, RunView], run_id: str | None, current: str | None) -> RunView:
    """The run to resume: ``run_id``, else the latest run (not this kernel's) with steps.

    :raises StepUsageError: unknown id, or nothing to resume — naming what exists.
    """
    if run_id:
        matches = [r for r in all_runs.values() if r.run == run_id or r.run.startswith(run_id)]
        if len(matches) != 1:
            known = ", ".join(list(all_runs)[-5:]) or "none"
            what = "no run" if not matches else "more than one run starting with"
            raise StepUsageError(f"{what} {run_id!r}; recent runs: {known}")
        return matches[0]
    candidates = [r for r in all_runs.values() if r.run != current and r.steps]
    if not candidates:
        raise StepUsageError("nothing to resume: no earlier run of this notebook has recorded "
                             "a step (run some %%step cells first)")
    return candidates[-1]


def plan_resume(all_runs: Mapping[str, RunView], run: RunView, store: Store,
                namespace: MutableMapping[str, Any], cells: list[Cell] | None,
                lazy: bool = False, restored: Restored | None = None) -> ResumePlan:
    """What ``%resume`` restores from ``run`` (and the runs it resumed) and what is left:
    ``cells``' steps in notebook order when the notebook is known, else the run's own.
    ``restored``: the state already rebuilt (steps and plain cells, see :func:`plan_rebuild`);
    by default the steps' last writers are loaded (:func:`restore_state`)."""
    steps = chain(all_runs, run.run)
    if restored is None:
        restored = restore_state(steps, store, namespace, lazy)
    # A step whose latest attempt did not finish is left to run, even when an earlier attempt
    # completed: that earlier result was computed from other inputs (p = 1 where the user
    # had since set p = 2), and restoring it silently would hide the attempt that died.
    trouble = [s for s in last_attempts(all_runs, run.run).values()
               if s.status in ("interrupted", "failed", "running")]
    left = not_restored(steps, restored)
    done = {s.name for s in restored.steps} - {s.name for s in trouble} - set(left)
    if cells is not None:
        remaining = [c.step for c in cells if c.step and c.step not in done]
    else:
        remaining = list(dict.fromkeys(s.name for s in [*steps, *run.steps] if s.name not in done))
    return ResumePlan(run, restored, trouble, list(dict.fromkeys(remaining)), cells, left)


def not_restored(steps: list[StepView], restored: Restored) -> dict[str, str]:
    """The steps whose latest execution in ``steps`` is not part of the ``restored`` state
    (an entry that could not be used stops a restore there), by name, with why."""
    kept = {id(s) for s in restored.steps}
    latest = {s.name: s for s in steps}
    stop = restored.stopped_at
    left = {}
    for name, step in latest.items():
        if id(step) in kept:
            continue
        if stop is not None and stop.name == name:
            left[name] = restored.why
        elif stop is not None:
            left[name] = f"it ran after step '{stop.name}', which could not be restored"
        else:
            left[name] = "not restored"
    return left


def last_attempts(all_runs: Mapping[str, RunView], run_id: str) -> dict[str, StepView]:
    """Every step's latest execution in ``run_id`` and the runs it resumed (complete or not),
    by name, in the order those executions started."""
    order: list[RunView] = []
    current: str | None = run_id
    while current is not None and current in all_runs and current not in {r.run for r in order}:
        order.append(all_runs[current])
        current = all_runs[current].resumed_from
    latest: dict[str, StepView] = {}
    for run in reversed(order):
        for step in run.steps:
            latest.pop(step.name, None)
            latest[step.name] = step
    return latest


def plan_rebuild(items: list[StepView | PlainCell]) -> list[tuple[StepView | PlainCell, bool]]:
    """The order to rebuild a namespace in: every plain cell re-run and every step restored, in
    the order they ran; ``True`` for a step whose entry must be loaded. A step is skipped
    only when a later step overwrites (or deletes) all its outputs before any plain cell runs:
    a plain cell may read anything (a function it calls reads globals the analysis of the cell
    cannot see), so at a plain cell every name counts as read."""
    overwritten: set[str] = set()
    plan: list[tuple[StepView | PlainCell, bool]] = []
    for item in reversed(items):
        if isinstance(item, PlainCell):
            overwritten = set()
            plan.append((item, False))
        else:
            plan.append((item, bool(set(item.outputs) - overwritten)))
            overwritten |= set(item.outputs) | set(item.deleted)
    plan.reverse()
    return plan


def cells_to_run(cells: list[Cell], done: set[str], start: str | None = None) -> list[Cell]:
    """Code cells from the first step not in ``done`` (or from step ``start``) to the end,
    leaving out the cells that control resumable_nb itself."""
    first = None
    for i, cell in enumerate(cells):
        if cell.step and (cell.step == start if start else cell.step not in done):
            first = i
            break
    if first is None:
        return []
    return [c for c in cells[first:] if not c.control]


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One line of a replay plan: the cell to run and what it is expected to do."""

    cell: Cell  # from the notebook; or rebuilt from the journal, then ``recorded``
    verdict: str  # "will run" | "will hit" | "unknown (reads ...)" | "will run (...)"
    recorded: bool = False

    @property
    def name(self) -> str:
        return self.cell.step or ""


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What ``%replay --from START`` does: rebuild the state before ``steps[at]`` (START's
    last execution), then run ``replay`` in order, the first one forced."""

    steps: list[StepView]  # the run's completed steps, in execution order
    at: int
    replay: list[ReplayStep]

    @property
    def made_later(self) -> set[str]:
        """Names START or a later step wrote or deleted."""
        return {n for s in self.steps[self.at:] for n in (*s.outputs, *s.deleted)}


def plan_replay(steps: list[StepView], cells: list[Cell] | None, start: str, stop: str | None,
                has_entry: Callable[[str], bool]) -> ReplayPlan:
    """Replay ``start`` and the steps after it (in the notebook's order when ``cells`` has
    ``start``, else in the order they ran), up to ``stop``. ``has_entry(key)``: the store
    holds a usable entry under ``key`` (a step whose inputs come out unchanged will hit it).

    :raises StepUsageError: ``start`` has not completed in ``steps``; ``stop`` is not after it.
    """
    at = max((i for i, s in enumerate(steps) if s.name == start), default=None)
    if at is None:
        known = ", ".join(dict.fromkeys(s.name for s in steps)) or "none yet: run or %resume some steps first"
        raise StepUsageError(f"no completed step {start!r} in this kernel's run; completed: {known}")
    if cells is not None and any(c.step == start for c in cells):
        first = next(i for i, c in enumerate(cells) if c.step == start)
        seq = [c for c in cells[first:] if c.spec is not None]
        recorded = False
    else:  # the notebook file is unknown, or does not have the step any more
        last = {s.name: s for s in steps}
        seq = [recorded_cell(last[n]) for n in dict.fromkeys(s.name for s in steps[at:])]
        recorded = True
    if stop is not None:
        stops = [i for i, c in enumerate(seq) if c.step == stop]
        if not stops:
            raise StepUsageError(f"--to {stop!r} is not a step at or after {start!r}; "
                                 f"those are: {', '.join(c.step or '' for c in seq)}")
        seq = seq[:stops[0] + 1]
    last = {s.name: s for s in steps}
    changed: set[str] = set()  # names a step before this one may have changed
    plan = []
    for i, cell in enumerate(seq):
        prior = last.get(cell.step or "")
        if i == 0:
            verdict = "will run"
        elif prior is None:
            verdict = "will run (never ran in this run)"
        elif set(prior.inputs) & changed:
            verdict = f"unknown (reads {', '.join(sorted(set(prior.inputs) & changed))})"
        elif prior.key and has_entry(prior.key):
            verdict = "will hit"
        else:
            verdict = "will run (no cache entry)"
        if verdict != "will hit":
            changed |= set(prior.outputs) | set(prior.deleted) if prior else set()
        plan.append(ReplayStep(cell, verdict, recorded))
    return ReplayPlan(steps, at, plan)
