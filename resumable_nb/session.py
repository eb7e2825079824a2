"""One kernel's resumable_nb state: the store, the journal, the runner — and the actions
that combine them (``%resume``, ``%replay``, ``%steps``). The magics are a thin layer on top.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import location, rng
from ._text import human_size, printable
from .config import ENV, env_flag
from .errors import CorruptEntry, RestoreError, StepUsageError, StoreError
from .journal import Journal, PlainCell, RunView, StepView, chain, timeline
from .resume import (
    Cell,
    ReplayStep,
    Restored,
    ResumePlan,
    bind,
    cells_to_run,
    choose_run,
    last_attempts,
    notebook_cells,
    plan_rebuild,
    plan_replay,
    plan_resume,
    recorded_cell,
    restore_state,
)
from .runner import _ABSENT, StepRunner
from .store import Store
from .view import render_steps, step_rows
from .why import compare, latest_entry

if TYPE_CHECKING:
    from .team import Team
    from .widget import RunPanel

__all__ = ["Session"]


class Session:
    """Store, journal and runner for one shell; opened lazily, closed by ``close()``."""

    def __init__(self, shell: Any, root: Callable[[], Path], key_file: Callable[[], Path | None],
                 notice: Callable[[str], None]) -> None:
        self.shell = shell
        self._root = root
        self._key_file = key_file
        self._notice = notice
        self._store: Store | None = None
        self._store_opened = False
        self._journal: Journal | None = None
        self._told_holder: str | None = None
        self._panels: weakref.WeakSet[RunPanel] = weakref.WeakSet()
        self._size_cache: tuple[float, str] = (0.0, "")
        self._told_duplicate: set[str] = set()
        self._step_counts: tuple[tuple[str, int] | None, Counter[str]] = (None, Counter())
        self._counted_at = float("-inf")
        # (team store URL, max_size): the magics' settings; "" means the environment's.
        self.settings: Callable[[], tuple[str, str]] = lambda: ("", "")
        self.team: Team | None = None
        self.runner = StepRunner(shell, self.store, notice, self.journal)
        self.enabled = True  # False (%config ResumableNB.enabled): steps run plain, nothing journaled

    # -- resources --------------------------------------------------------------------------
    @property
    def notebook(self) -> Path | None:
        return location.notebook_path(self.shell.user_ns)

    def store(self) -> Store | None:
        """The open store, or None (caching off) after telling the user why, once."""
        if not self._store_opened:
            self._store_opened = True
            try:
                self._store = Store(self._root(), self._key_file())
            except StoreError as exc:
                self._notice(f"caching is off: {exc}. Steps still run.")
            else:
                if self._store.repaired:
                    self._notice(self._store.repaired)
                # Only when a team store or a size bound is set (team.attach returns None
                # otherwise): importing team, remote and the uploader was ~4 ms of the first
                # hit in every new kernel (benchmarks/first_hit.py).
                settings = (*self.settings(), os.environ.get(ENV["STORE"], ""),
                            os.environ.get(ENV["MAX_SIZE"], ""))
                if any(s.strip() for s in settings):
                    from .team import attach

                    self.team = attach(self._store, *self.settings(), notice=self._notice)
        return self._store

    def journal(self) -> Journal | None:
        """This notebook's journal, held by this kernel; None while another kernel holds it
        (said once per holder) or when the cache folder is unusable."""
        store = self.store()
        if store is None:
            return None
        if self._journal is None:
            nb = self.notebook
            assert store.dir is not None
            self._journal = Journal(store.dir, str(nb) if nb else None, key=store.journal_key)
            self._journal.on_append = self._appended
            if self.team is not None:
                self.team.start_mirroring(self._journal)
        try:
            held = self._journal.acquire()
        except (OSError, StoreError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            self._notice(f"the run journal cannot be opened ({why}); steps are not journaled")
            return None
        if not held:
            if self._told_holder != self._journal.holder:
                self._told_holder = self._journal.holder
                self._notice(f"this notebook's run is held by another kernel, {self._journal.holder}: "
                             "this kernel caches steps but does not journal them (stop that kernel "
                             "to take over)")
            return None
        return self._journal

    def close(self, status: str | None = None) -> None:
        """End the run (completed, or failed if the last step failed) and release everything."""
        if self._journal is not None:
            if status is None:
                last = self.runner.history[-1] if self.runner.history else None
                status = "failed" if last is not None and last.status == "failed" else "completed"
            self._journal.end_run(status)
            self._journal.release()
            self._journal = None
        if self.team is not None:
            self.team.close(timeout=2.0)  # uploads left over stay queued on disk
            self.team = None
        if self._store is not None:
            self._store.close()
        self._store = None
        self._store_opened = False

    def _require(self) -> tuple[Journal, Store]:
        store = self.store()
        if store is None:
            raise StepUsageError("caching is off in this kernel (see the message above): nothing "
                                 "to restore")
        journal = self.journal()
        if journal is None:
            raise StepUsageError(f"another kernel holds this notebook's run "
                                 f"({self._journal.holder if self._journal else '?'}): stop it first")
        return journal, store

    def _runs(self, journal: Journal) -> dict[str, RunView]:
        runs, warning = journal.read()
        if warning:
            self._notice(warning)
        return runs

    def _cells(self) -> list[Cell] | None:
        nb = self.notebook
        if nb is None or not nb.is_file():
            return None
        try:
            return notebook_cells(nb)
        except (OSError, ValueError) as exc:
            self._notice(f"could not read {nb.name} ({exc}); using the journal's sources")
            return None

    def check_duplicate(self, name: str) -> None:
        """Say once per step name when more than one cell of the notebook uses it: %replay,
        %resume --run and the panel would pick the first, silently. The saved notebook is
        looked at (a stat, and a parse when it changed) at most once a second: a hit on a
        one-line cell costs tens of microseconds, and this was several of them."""
        if name in self._told_duplicate:
            return
        now = time.monotonic()
        if now - self._counted_at >= 1.0:
            self._counted_at = now
            self._count_steps()
        stamp, counts = self._step_counts
        count = counts.get(name, 0)
        if count > 1 and stamp is not None:
            self._told_duplicate.add(name)
            self._notice(f"{count} cells of {Path(stamp[0]).name} are named '{name}': %replay, "
                         "%resume --run and the panel use the first; give each cell its own step name")

    def _count_steps(self) -> None:
        nb = self.notebook
        try:
            stamp = (str(nb), nb.stat().st_mtime_ns) if nb is not None else None
        except OSError:
            stamp = None
        if stamp is None:
            self._step_counts = (None, Counter())
        elif self._step_counts[0] != stamp:
            cells = self._cells() or []
            self._step_counts = (stamp, Counter(c.step for c in cells if c.step))

    # -- %resume ----------------------------------------------------------------------------
    def resume(self, run_id: str | None, run_rest: bool, show_panel: bool = True,
               steps_only: bool = False) -> ResumePlan:
        """Restore the state of ``run_id`` (or the latest run) and start a run resuming it.

        By default the plain cells that ran between the steps are re-run too, in the order
        everything ran, so the state is the one a plain run left; ``steps_only`` restores the
        steps' outputs alone.

        :raises StepUsageError: nothing to resume, unknown run, caching off.
        """
        journal, store = self._require()
        if self.team is not None:
            self.team.pull(journal)  # runs of this notebook on other machines
        runs = self._runs(journal)
        run = choose_run(runs, run_id, journal.run_id)
        cells = self._cells()
        items = timeline(runs, run.run)
        if steps_only or not any(isinstance(i, PlainCell) for i in items):
            plan = plan_resume(runs, run, store, self.shell.user_ns, cells, self.runner.lazy)
            self._write_back(list(plan.restored.files.values()))
            bind(self.shell.user_ns, plan.restored)
        else:
            rebuilt = self._rebuild(items, store)
            plan = plan_resume(runs, run, store, self.shell.user_ns, cells, restored=rebuilt)
        mine = runs.get(journal.run_id or "")
        if mine is None or mine.timeline or mine.resumed_from != run.run or mine.left != plan.left:
            # `%resume` then `%resume --run` continue one run: a second, empty run would
            # only clutter the journal (and `runs`). What could not be restored is recorded,
            # so that no view labels it restored.
            journal.start_run(resumed_from=run.run, left=plan.left)
        print(render_resume(plan, journal.run_id or "", run_rest))
        if show_panel and self.widgets_available:
            self.show_panel()
        if run_rest:
            self._run_rest(plan, runs)
        return plan

    def _write_back(self, stored: list[Any]) -> None:
        """Write back the files restored steps stored, as a hit does (files.write_back); a
        failure is said, not raised: the variables are restored all the same."""
        if not stored:
            return
        from . import files

        try:
            files.write_back(stored, os.getcwd(), self.runner.files.hashes)
        except OSError as exc:
            print(f"[resumable_nb] %resume could not write back a file a restored step wrote ({exc})")

    def _rebuild(self, items: list[StepView | PlainCell], store: Store) -> Restored:
        """Re-run the plain cells and restore the steps, in the order they ran, into the
        namespace, with the global random generators left where each restored step left them
        (a plain cell re-run then draws what it drew). Stops consistently before a step whose
        entry cannot be used, a plain cell that fails now though it did not then, or — once a
        plain cell has been re-run — a step whose inputs are not what it ran with (its key,
        computed again from its recorded source, differs), or that drew from a generator
        that a restored step placed and that is now elsewhere; their output is not shown again."""
        from IPython.utils.capture import capture_output

        ns = self.shell.user_ns
        restored = Restored()
        plan = plan_rebuild(items)
        # Every manifest in a few index queries: it says which steps moved a generator.
        manifests = store.get_many(item.key or "" for item, _ in plan if isinstance(item, StepView))
        replayed = False  # a plain cell has been re-run: later steps are checked
        placed: set[str] = set()  # generators set from a restored step's record
        for item, load in plan:
            if isinstance(item, PlainCell):
                try:
                    with capture_output():
                        self.runner.run_plain(item.source)
                except Exception as exc:  # noqa: BLE001 - the user's cell, re-run
                    if item.ok:
                        restored.stopped_at = next((s for s in items if isinstance(s, StepView)
                                                    and s not in restored.steps), None)
                        restored.why = (f"a plain cell that ran before it failed when re-run "
                                        f"({type(exc).__name__}: {exc})")
                        break
                restored.cells += 1
                replayed = True
                continue
            try:
                entry = manifests.get(item.key or "") or store.get(item.key or "")
                if entry is None:
                    raise CorruptEntry("its cache entry is gone (cleared?)")
            except (StoreError, RestoreError) as exc:
                restored.stopped_at, restored.why = item, str(exc)
                break
            drew = entry.extra.get("rng")  # None: an entry older than this record
            if replayed:
                why = self._changed_since(item, drew, placed)
                if why:
                    restored.stopped_at, restored.why = item, why
                    break
            if load or drew is None or drew["moved"]:
                try:
                    payload = store.load(entry, ns, lazy=self.runner.lazy)
                except (StoreError, RestoreError) as exc:
                    restored.stopped_at, restored.why = item, str(exc)
                    break
                ns.update(payload["outputs"])
                restored.values.update(payload["outputs"])
                self._write_back(payload.get("files") or [])  # before a plain cell reads them
                restored.nbytes += entry.size  # what was read: the entry's file
                if payload.get("rng") is not None:
                    rng.restore(payload["rng"]["after"])
                    placed |= set(payload["rng"]["after"])
            for name in item.deleted:
                ns.pop(name, None)
            restored.steps.append(item)
            restored.saved += item.duration + item.saved
        return restored

    def restored_step(self, restored: Restored, name: str, check: bool) -> str:
        """``resumable-nb run`` skips the cell of step ``name``, restored up front: put the
        generators where it left them, as the rebuild of ``%resume`` does. With ``check`` (a
        plain cell has been re-run since), first see that it fits the namespace as
        :meth:`_rebuild` does; if not, drop it and the steps restored after it (their cells run)
        and return why."""
        step = next((s for s in reversed(restored.steps) if s.name == name), None)
        store = self.store()
        if step is None or store is None:
            return ""
        try:
            entry = store.get(step.key or "")
            if entry is None:
                raise CorruptEntry("its cache entry is gone (cleared?)")
            drew = entry.extra.get("rng")
            # The restored values are all bound already (the last writers'): only what no
            # restored step writes, i.e. what the plain cells make, can be checked here.
            why = (self._changed_since(step, drew, restored.placed, unknown=set(restored.values))
                   if check else "")
            if not why and (drew is None or drew["moved"]):
                payload = store.load(entry, self.shell.user_ns, lazy=self.runner.lazy)
                if payload.get("rng") is not None:
                    rng.restore(payload["rng"]["after"])
                    restored.placed |= set(payload["rng"]["after"])
        except (StoreError, RestoreError) as exc:
            why = str(exc)
        if why:
            at = restored.steps.index(step)
            for later in restored.steps[at:]:
                for output in later.outputs:
                    restored.values.pop(output, None)
            del restored.steps[at:]
        return why

    def _changed_since(self, step: StepView, drew: dict[str, Any] | None, placed: set[str],
                       unknown: set[str] | frozenset[str] = frozenset()) -> str:
        """Why ``step``'s entry does not fit the namespace rebuilt so far ("" if it does): its
        key now, from its recorded source, against the recorded one (what a hit checks); and a
        generator it drew from, placed by an earlier restored step, now elsewhere. ``unknown``:
        names whose value here is not the one the step saw (not held against it)."""
        cell = recorded_cell(step)
        spec = cell.spec
        now = self.runner.current(step.name, cell.body, spec.ignore if spec is not None else (),
                                  line=spec)
        if now.key is None:
            return f"it cannot be cached now ({now.notices[0] if now.notices else 'an input'})"
        if now.key != step.key:
            # A name the rebuild does not make at all (bound by a cell run before `%resume` in
            # the kernel that ran the step: not in the chain of runs) is not a changed value:
            # as before any plain cell, the step is restored. Anything else that differs, or a
            # difference the journal cannot show, stops the rebuild.
            diff = compare(step, cell.body, now.inputs)
            if (diff.code_diff or diff.new or diff.gone or not diff.changed
                    or any(new != _ABSENT and name not in unknown for name, _, new in diff.changed)):
                return diff.summary()
        before = (drew or {}).get("before", {})
        if before:
            digests = rng.digests(rng.states())
            moved = sorted(n for n, d in before.items() if n in placed and digests.get(n) != d)
            if moved:
                return (f"the global random generator ({', '.join(moved)}) is in another state "
                        "than when it ran")
        return ""

    def record_cell(self, result: Any) -> None:
        """``post_run_cell``: journal a plain cell (not a step, not a resumable_nb command), so
        that %resume can re-run it between the steps it ran between."""
        if not self.enabled:
            return
        info = getattr(result, "info", None)
        raw = getattr(info, "raw_cell", None)
        if not isinstance(raw, str) or not raw.strip() or raw.lstrip().startswith("%%step"):
            return
        if Cell(0, raw).control or getattr(info, "store_history", True) is False:
            return
        journal = self.journal()
        if journal is not None:
            try:
                journal.cell_ran(raw, ok=bool(result.success))
            except (OSError, StoreError):
                pass  # journaling a plain cell is best effort: it never breaks the cell

    def _run_rest(self, plan: ResumePlan, runs: dict[str, RunView]) -> None:
        """Run what is left: first the plain cells above the resume point (imports, helper
        definitions, settings: the journal does not hold their effects), keeping the restored
        values; then every cell from the first step left, in notebook order."""
        __tracebackhide__ = True
        done = plan.done
        if plan.cells is None:
            latest = last_attempts(runs, plan.run.run)
            todo = [recorded_cell(latest[name]) for name in plan.remaining
                    if name in latest and latest[name].source]
            setup: list[Cell] = []
            _show_journal_sources(todo)
        else:
            todo = cells_to_run(plan.cells, done)
            first = todo[0].index if todo else len(plan.cells)
            # Plain cells above the resume point: already re-run when the state was rebuilt.
            setup = [] if plan.restored.cells else [
                c for c in plan.cells if c.index < first and not c.step and not c.control]
        ns = self.shell.user_ns
        for cell in setup:
            self._run_cell(cell)
            # A plain cell above must not undo a restored step (results = [] at the top).
            ns.update({k: v for k, v in plan.restored.values.items() if ns.get(k) is not v})
        if not todo:
            print("Nothing left to run.")
        for cell in todo:
            self._run_cell(cell)

    def _run_cell(self, cell: Cell, force: bool = False) -> None:
        __tracebackhide__ = True
        print(_cell_header(cell, force))
        if cell.spec is not None:
            value = self.runner.run(cell.spec.name, cell.body, force=force or cell.spec.force,
                                    ignore=cell.spec.ignore, header=f"%%step {cell.line}",
                                    line=cell.spec)
        else:
            value = self.runner.run_plain(cell.source)
        if value is not None:  # a cell's result, shown as a display inside %resume / %replay
            from IPython.display import display

            display(value)

    # -- %replay ----------------------------------------------------------------------------
    def replay(self, start: str, stop: str | None, dry_run: bool) -> list[ReplayStep]:
        """Restore the state just before ``start`` last ran, then re-run it and what follows.

        :raises StepUsageError: unknown step names, nothing to replay.
        """
        __tracebackhide__ = True
        journal, store = self._require()
        steps = chain(self._runs(journal), journal.run_id) if journal.run_id else []
        plan = plan_replay(steps, self._cells(), start, stop, lambda key: store.get(key) is not None)
        print(render_replay(plan.replay, dry_run))
        if dry_run:
            return plan.replay
        _show_journal_sources([p.cell for p in plan.replay if p.recorded])
        before = restore_state(steps[:plan.at], store, self.shell.user_ns, self.runner.lazy)
        if before.stopped_at is not None:
            raise StepUsageError(f"cannot rebuild the state before {start!r}: step "
                                 f"{before.stopped_at.name!r} could not be restored ({before.why})")
        # A name that `start` or a later step wrote, and no earlier step, goes: it did not
        # exist before `start` as far as the journal knows (plain cells are not journaled).
        bind(self.shell.user_ns, before, also_remove=plan.made_later - set(before.values))
        for i, step in enumerate(plan.replay):
            self._run_cell(step.cell, force=i == 0)
        return plan.replay

    def completed_steps(self) -> list[str]:
        """Names of the completed steps of this kernel's run (restored ones included)."""
        journal = self.journal()
        if journal is None or journal.run_id is None:
            return []
        return list(dict.fromkeys(s.name for s in chain(self._runs(journal), journal.run_id)))

    def rerun(self, name: str) -> None:
        """Run one step again, ignoring its cache entry (the panel's Re-run)."""
        __tracebackhide__ = True
        cells = self._cells()
        cell = next((c for c in cells or [] if c.step == name), None)
        if cell is None:
            journal, _ = self._require()
            runs = self._runs(journal)
            last = [s for r in runs.values() for s in r.steps if s.name == name]
            if not last:
                raise StepUsageError(f"no step {name!r} in the notebook or the journal")
            cell = recorded_cell(last[-1])
            _show_journal_sources([cell])
        self._run_cell(cell, force=True)

    def why(self, name: str) -> str:
        """What differs between step ``name`` now (its cell in the notebook, else its latest
        recorded source, with this namespace's inputs) and its latest cache entry.

        :raises StepUsageError: no such step in the notebook or the journal.
        """
        journal, _ = self._require()
        runs = self._runs(journal)
        previous = latest_entry(runs, name)
        cell = next((c for c in self._cells() or [] if c.step == name), None)
        if cell is None and previous is None:
            raise StepUsageError(f"no step {name!r} in the notebook or the journal")
        spec = cell.spec if cell is not None else None
        body = cell.body if cell is not None else previous.source  # type: ignore[union-attr]
        now = self.runner.current(name, body, spec.ignore if spec is not None else (), line=spec)
        comparison = compare(previous, body, now.inputs)
        verdict = ("it would hit: same key as its latest entry" if previous is not None
                   and now.key is not None and now.key == previous.key else comparison.summary())
        return "\n".join([f"step '{name}': {verdict}", *comparison.report().splitlines()[1:],
                          *now.notices])

    def clear_step(self, name: str) -> int:
        """Delete every cache entry stored by step ``name``."""
        store = self.store()
        if store is None:
            raise StepUsageError("caching is off in this kernel")
        removed = store.delete_step(name)
        print(f"[resumable_nb] removed {removed} cache entr{'y' if removed == 1 else 'ies'} of step '{name}'")
        self._size_cache = (0.0, "")
        return removed

    # -- gates ------------------------------------------------------------------------------
    def gate(self, name: str, question: str) -> str:
        """``%gate`` in a live notebook: whoever runs the cell approves it; recorded as such.

        :raises StepUsageError: in a headless run, where the CLI decides gates (a ``%gate``
            line sharing its cell with other code reaches the kernel).
        """

        from .gates import find_gates, whoami

        if env_flag("HEADLESS"):
            raise StepUsageError(f"%gate {name}: put the gate alone in its cell, so that "
                                 "`resumable-nb run` can stop there for approval")
        cells = self._cells() or []
        here = next((g for g in find_gates(cells) if g.name == name), None)
        position = here.position if here is not None else ""
        journal = self.journal()
        if journal is None:
            return f"[resumable_nb] gate '{name}' passed (not recorded: no run journal)"
        user, host = whoami()
        journal.gate_decided(None, name, "approved", question=question, position=position,
                             user=user, host=host, note="approved interactively: ran the cell")
        return f"[resumable_nb] gate '{name}' approved by {user}@{host} (you ran the cell)"

    def decide_gate(self, run_id: str, decision: str, note: str = "") -> str:
        """The panel's Approve / Reject: decide the gate ``run_id`` is waiting at.

        :raises StepUsageError: that run is not waiting at a gate.
        """
        from .gates import whoami

        journal, _ = self._require()
        run = self._runs(journal).get(run_id)
        gate = run.waiting if run is not None else None
        if run is None or gate is None or gate.decision is not None:
            raise StepUsageError(f"run {run_id} is not waiting at a gate")
        user, host = whoami()
        journal.gate_decided(run_id, gate.name, decision, question=gate.question,
                             position=gate.position, user=user, host=host, note=note)
        return f"gate '{gate.name}' {decision} by {user}@{host}: the next `resumable-nb run` goes on"

    # -- the panel ----------------------------------------------------------------------------
    @property
    def widgets_available(self) -> bool:
        """A kernel with a frontend that may render widgets (not terminal IPython, not the
        headless CLI): there the panel shows, elsewhere its text table does."""

        return (type(self.shell).__name__ == "ZMQInteractiveShell"
                and not env_flag("HEADLESS"))

    def show_panel(self) -> RunPanel:
        from IPython.display import display

        from .widget import RunPanel

        panel = RunPanel(self)
        self._panels.add(panel)
        display(panel)
        return panel

    def _appended(self) -> None:
        if self._panels:  # iterating even an empty WeakSet costs a guard per record
            self._refresh_panels()
        if self.team is not None and self._journal is not None:
            self.team.mirror(self._journal)

    def _refresh_panels(self) -> None:
        for panel in list(self._panels):
            panel.refresh()

    def panel_state(self) -> dict[str, Any]:
        """What the panel shows: this kernel's run, or else the latest run with steps."""
        journal = self.journal()
        runs = self._runs(journal) if journal is not None else {}
        run = runs.get(journal.run_id or "") if journal is not None else None
        own = run is not None and bool(run.steps or run.resumed_from)
        if not own:
            with_steps = [r for r in runs.values() if r.steps]
            run = with_steps[-1] if with_steps else run
        cells = self._cells()
        return {"run": run, "runs": runs, "cells": cells, "own": own,
                "notebook": str(self.notebook) if self.notebook else None,
                "cache_size": self._cache_size(), "text": render_table(runs, run, cells)}

    def _cache_size(self) -> str:
        import time

        when, text = self._size_cache
        if time.monotonic() - when < 5 and text:
            return text
        store = self.store()
        text = human_size(store.size_on_disk()) if store is not None else "caching off"
        self._size_cache = (time.monotonic(), text)
        return text

    # -- %steps -----------------------------------------------------------------------------
    def table(self) -> str:
        journal = self.journal()
        if journal is None:
            return "No run journal in this kernel (see the message above)."
        return str(self.panel_state()["text"])


# -- rendering -------------------------------------------------------------------------------
def _show_journal_sources(cells: list[Cell]) -> None:
    """Say what is about to run when it comes from the journal, not from the notebook file
    (terminal IPython, a frontend that does not tell its path): the user sees the code. Only
    records signed with the user's key are ever read, so this is code the user's kernels ran."""
    if not cells:
        return
    print("The notebook file is unknown: running the step sources recorded in the run journal:")
    for cell in cells:
        print(f"--- %%step {cell.line}")
        print(printable(cell.body.rstrip("\n"), keep_newlines=True))
    print("---")


def _cell_header(cell: Cell, force: bool) -> str:
    """The line above each cell that %resume --run / %replay run, so the output below it is
    attributable."""
    where = f" (cell {cell.index + 1})" if cell.index >= 0 else ""
    if cell.step:
        return f"[resumable_nb] {'re-running' if force else 'running'} step {cell.step}{where}"
    return f"[resumable_nb] re-running plain cell {cell.index + 1}"


def render_resume(plan: ResumePlan, new_run: str, running: bool = False) -> str:
    run = plan.run
    lines = [f"Resuming run {run.run} ({run.state}); this kernel's run is {new_run}."]
    r = plan.restored
    if r.steps:
        names = list(dict.fromkeys(s.name for s in r.steps))
        lines.append(f"Restored {len(names)} step{'s' * (len(names) != 1)} ({_names(names)}): "
                     f"{len(r.values)} variable{'s' * (len(r.values) != 1)}, {human_size(r.nbytes)}, "
                     f"{r.saved:.1f} s of computing saved. No step was executed"
                     + (f"; {r.cells} plain cell{'s' * (r.cells != 1)} re-run in between." if r.cells
                        else "."))
    else:
        lines.append("Restored nothing: no completed step could be restored.")
    for name, why in plan.left.items():  # one line each: which, and why
        lines.append(f"Step '{name}' not restored: {why}.")
    restored_names = {s.name for s in r.steps}
    for s in plan.interrupted:
        why = "the kernel died while it ran" if s.status == "interrupted" else s.error or s.status
        line = f"Step '{s.name}' was {s.status}: {why}."
        if s.name in restored_names:
            line += (" The values restored for it come from an earlier attempt with other "
                     "inputs; it is left to run.")
        lines.append(line)
    if plan.remaining:
        then = "running them now" if running else "`%resume --run` runs them"
        lines.append(f"Left to run: {_names(plan.remaining)} — {then}.")
    elif not running:
        lines.append("Nothing left to run.")
    return "\n".join(lines)


def _names(names: list[str], most: int = 8) -> str:
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most - 2])}, ... {names[-1]}"


def render_replay(plan: list[ReplayStep], dry_run: bool) -> str:
    head = "Replay plan (dry run: nothing executed):" if dry_run else "Replaying:"
    return "\n".join([head, *(f"  {p.name:<16} {p.verdict}" for p in plan)])


def render_table(runs: dict[str, RunView], current: RunView | None, cells: list[Cell] | None) -> str:
    """A plain-text table of a run's steps (and the notebook's steps not run yet)."""
    title = f"run {current.run} ({current.state})" if current else "no run yet"
    if current and current.resumed_from:
        title += f", resumed from {current.resumed_from}"
    return render_steps(title, step_rows(runs, current, cells))
