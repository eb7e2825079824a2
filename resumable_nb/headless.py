"""Run a notebook headless in a real kernel with resumable_nb loaded; resume it after a crash.

``resumable-nb run`` (:mod:`resumable_nb.cli`) drives :class:`HeadlessRun`. A run, in order:

1. read the notebook, inject the parameters (papermill's convention: a cell tagged
   ``injected-parameters`` after the cell tagged ``parameters``), check ``--from``;
2. read the notebook's journal: if its latest run ended *failed* or *interrupted*, and the
   notebook's code above the first step that run did not complete is the code that run
   executed, resume it (:func:`choose_resume`); otherwise run from the top, where completed
   steps still come from the cache;
3. start a kernel in the notebook's folder, told which notebook it runs
   (``RESUMABLE_NB_NOTEBOOK``); load the extension and, when resuming, ``%resume`` the run
   (hidden cells that leave no trace in the notebook or the kernel's history);
4. execute the code cells in order. A step cell that the resume restored is not executed (an
   output line says so); a plain cell above the resume point runs (imports, helpers) and the
   restored values are bound again after it; every other cell runs. After each step cell its
   state is read from the journal, which is the source of truth;
5. write the executed notebook, and next to the journal a record of the code the run executed
   (what step 2 compares with next time).

A ``%gate`` cell is not executed: the CLI looks its decision up in the journal (of this run
and the runs it resumes). Approved: the run goes on (the decision is carried into this run's
journal). Rejected: the run ends failed there. Undecided: the run records ``gate_waiting``,
ends ``waiting``, writes the notebook so far and exits 3; ``resumable-nb approve`` / ``reject``
decide, and the next run resumes it. A run that resumes and was given no ``-p`` reuses the
parameters of the run it resumes (from the signed run record).

This module is the orchestration, in the CLI process. Around it: :mod:`resumable_nb.nbfile`
(the notebook, its parameters, the run record), :mod:`resumable_nb.kernelside` (what runs in
the kernel, reached through hidden cells) and :mod:`resumable_nb.progress` (the step lines).
Nothing here imports nbclient until a notebook is executed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import location
from ._text import printable
from .config import ENV
from .errors import RunError, StoreError
from .gates import GATE_STATES, Gate, decision_for, find_gates, gate_of, lineage
from .journal import GateView, RunView, StepView, chain, journal_path, read_events, runs
from .kernelside import kernel_code, read_report
from .nbfile import (
    CodeCell,
    cell_tags,
    code_cells,
    inject_parameters,
    normal_source,
    notebook_json,
    parameter_warnings,
    parse_parameter,
    read_notebook,
    read_record,
    skipped,
    source_digest,
    write_notebook,
    write_record,
)
from .progress import Progress
from .states import LABELS

if TYPE_CHECKING:
    from nbclient import NotebookClient
    from nbformat import NotebookNode

__all__ = [
    "HeadlessRun",
    "ResumeChoice",
    "RunOptions",
    "cache_root_for",
    "choose_resume",
]

_TCP_NOISE = "Kernel is running over TCP without encryption"


def cache_root_for(notebook: Path, cache_dir: Path | None) -> Path:
    """Where the kernel will put the notebook's cache: ``cache_dir``, else ``$RESUMABLE_NB_DIR``,
    else ``.resumable_nb/`` next to the notebook (what the kernel computes, given the notebook)."""
    if cache_dir is not None:
        return cache_dir.expanduser().absolute()
    env = {**os.environ, ENV["NOTEBOOK"]: str(notebook)}
    return location.cache_root("", {}, env)


# -- resume or not ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResumeChoice:
    """The run to resume (None: run from the top), its completed steps, and a line saying why
    an earlier run is not resumed ("" when there was nothing to resume)."""

    run: RunView | None
    done: list[StepView] = field(default_factory=list)
    note: str = ""


def choose_resume(all_runs: Mapping[str, RunView], code: Sequence[CodeCell],
                  records: Mapping[str, Any], *, fresh: bool, start: str | None,
                  parameters: bool) -> ResumeChoice:
    """Resume the latest run when it ended failed or interrupted — unless told not to, or the
    code it ran above the first step it did not complete has changed since (then restoring its
    steps could give stale values; running from the top lets the cache decide)."""
    if not all_runs:
        return ResumeChoice(None)
    latest = list(all_runs.values())[-1]
    if latest.state not in ("failed", "interrupted", *GATE_STATES):
        return ResumeChoice(None)
    what = f"run {latest.run} ({latest.state})"
    if fresh:
        return ResumeChoice(None, note=f"--fresh: not resuming {what}")
    if start is not None:
        return ResumeChoice(None, note=f"--from {start}: not resuming {what}")
    done = chain(all_runs, latest.run)
    if not done:
        return ResumeChoice(None, note=f"{what} completed no step: running from the top")
    record = records.get(latest.run)
    digests = record.get("code") if isinstance(record, dict) else None
    why = _code_changed(code, done, digests if isinstance(digests, list) else None, parameters)
    if why:
        return ResumeChoice(None, note=f"not resuming {what}: {why}; running from the top "
                                       "(unchanged steps come from the cache)")
    return ResumeChoice(latest, done)


def _code_changed(code: Sequence[CodeCell], done: list[StepView], digests: list[str] | None,
                  parameters: bool) -> str:
    last = {s.name: s for s in done}
    first_left = next((i for i, c in enumerate(code) if c.step and c.step not in last), len(code))
    # A gate cell is checked by its own rule (its question and position): not a code change.
    gates = {g.index for g in find_gates(code)}
    for c in code[:first_left]:
        if c.step and normal_source(c.body) != normal_source(last[c.step].source):
            return f"step '{c.step}' changed since it ran"
    if digests is None:
        if parameters:
            return "it was not started by `resumable-nb run`, so its parameters are unknown"
        return ""
    for i, c in enumerate(code[:first_left]):
        if c.index in gates and i < len(digests):
            continue
        if i >= len(digests) or digests[i] != source_digest(c.source):
            return f"cell {c.index + 1} changed since that run"
    return ""


# -- following the kernel's run in the journal ------------------------------------------------
class _Tracker:
    """Finds the run the kernel writes (by its pid) and the step records it appends."""

    def __init__(self, path: Path, known: set[str], pid: int) -> None:
        self.path = path
        self.known = known
        self.pid = pid
        self.host = socket.gethostname()
        self.run_id: str | None = None
        self._seen = 0

    def read(self) -> tuple[dict[str, RunView], RunView | None]:
        events, _ = read_events(self.path)
        all_runs = runs(events)
        if self.run_id is None or self.run_id not in all_runs:
            mine = [r for r in all_runs.values()
                    if r.run not in self.known and r.pid == self.pid and r.host == self.host]
            self.run_id = mine[-1].run if mine else None
            self._seen = 0
        return all_runs, all_runs.get(self.run_id or "")

    def new_steps(self) -> list[StepView]:
        """Step executions recorded since the last call."""
        _, run = self.read()
        if run is None:
            return []
        new = run.steps[self._seen:]
        self._seen = len(run.steps)
        return new


# -- the run ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``resumable-nb run`` was asked to do."""

    notebook: Path
    output: str | None = None  # a path, "-" for stdout; None: <stem>.out.ipynb next to the notebook
    parameters: tuple[tuple[str, str], ...] = ()
    fresh: bool = False
    start: str | None = None  # --from STEP
    timeout: float | None = None  # per cell, seconds
    kernel: str | None = None
    cache_dir: Path | None = None
    log_output: bool = False  # --log-output: cells' output on stderr as it comes


class _Waiting(Exception):
    """The run reached a gate nobody has decided: it stops there (exit 3)."""


class _Rejected(Exception):
    """The run reached a rejected gate: it ends failed there."""


@dataclass(slots=True)
class _Outcome:
    status: str = "completed"  # completed | failed | died | timeout | interrupted | error | waiting
    where: str = ""  # "step 'x'" / "cell 4"
    error: str = ""


class HeadlessRun:
    """One ``resumable-nb run``: :meth:`prepare` checks everything (raising :class:`RunError`
    before anything is started or written), :meth:`execute` runs and returns the exit code."""

    def __init__(self, options: RunOptions, err: TextIO | None = None) -> None:
        self.options = options
        self.err = err if err is not None else sys.stderr
        self.notebook = options.notebook.expanduser().absolute()
        self.parameters: dict[str, Any] = {}
        self.code: list[CodeCell] = []
        self.root = Path()
        self.journal = Path()
        self.records: dict[str, Any] = {}
        self.choice = ResumeChoice(None)
        self.known_runs: set[str] = set()
        self.kernel_name = "python3"
        self.output: Path | None = None
        self.progress = Progress(self.err)
        self.restored: dict[str, StepView] = {}  # step name -> the completed record it came from
        self._replayed = False  # a plain cell above the resume point has run: check restored steps
        self.outcome = _Outcome()
        self.run_id: str | None = None
        self.resumed_from: str | None = None
        self.tracker: _Tracker | None = None
        self._above: set[int] = set()  # cells above the first step left to run (when resuming)
        self._current: CodeCell | None = None  # the cell being executed
        self._count = 0
        self._nb: NotebookNode | None = None
        self.gates: list[Gate] = []
        self.gate_history: list[RunView] = []  # the runs whose gate decisions count, latest first
        self.waiting_at: Gate | None = None

    @property
    def nb(self) -> NotebookNode:
        assert self._nb is not None, "call prepare() first"
        return self._nb

    # -- checks ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read and check everything; decide whether to resume.

        :raises RunError: bad input, or the notebook is being run by another kernel.
        """
        opts = self.options
        for name, text in opts.parameters:
            key, value = parse_parameter(name, text)
            self.parameters[key] = value
        if opts.timeout is not None and not (opts.timeout > 0 and math.isfinite(opts.timeout)):
            raise RunError(f"--timeout {opts.timeout:g}: give a number of seconds above 0")
        data = notebook_json(self.notebook)
        steps = list(dict.fromkeys(c.step for c in code_cells(data) if c.step))
        if opts.start is not None and opts.start not in steps:
            known = ", ".join(steps) or "none"
            raise RunError(f"--from {opts.start}: no step {opts.start!r} in {self.notebook.name}; "
                           f"its steps: {known}")
        self.output = self._output_path()
        missing = [m for m in ("nbclient", "jupyter_client") if importlib.util.find_spec(m) is None]
        if missing:
            raise RunError(f"`resumable-nb run` needs {' and '.join(missing)}: "
                           f"pip install {' '.join(missing)}")
        self.kernel_name = self._kernel_name(data)
        self.root = cache_root_for(self.notebook, opts.cache_dir)
        self.journal = journal_path(self.root, str(self.notebook))
        events, warning = read_events(self.journal)
        if warning:
            self.progress.say(f"resumable-nb: warning: {warning}")
        all_runs = runs(events)
        self.known_runs = set(all_runs)
        latest = list(all_runs.values())[-1] if all_runs else None
        if latest is not None and latest.state == "running":
            raise RunError(f"{self.notebook.name} is being run by another kernel (pid {latest.pid} "
                           f"on {latest.host}, run {latest.run}): stop that kernel first")
        self._nb = read_notebook(self.notebook)
        self.records = read_record(self.journal)
        self._reuse_parameters(latest)
        if self.parameters:
            for line in parameter_warnings(self.nb, list(self.parameters)):
                self.progress.say(f"resumable-nb: warning: {line}")
            inject_parameters(self.nb, self.parameters)
        self.code = code_cells(self.nb)
        self.choice = choose_resume(all_runs, self.code, self.records, fresh=opts.fresh,
                                    start=opts.start, parameters=bool(self.parameters))
        self.gates = find_gates(self.code)
        if latest is not None and (self.choice.run is not None or (
                latest.state in GATE_STATES and not opts.fresh and opts.start is None
                and not chain(all_runs, latest.run))):
            # Decisions count for the run resumed (and what it resumed); also for a run that
            # stopped at a gate before completing any step, which is "resumed" from the top.
            self.gate_history = lineage(all_runs, latest.run)
        names = [c.step for c in self.code if c.step]
        self.progress = Progress(self.err, width=max([len(n) for n in names] + [8]))

    def _reuse_parameters(self, latest: RunView | None) -> None:
        """No ``-p`` given and the latest run is one to resume: take its parameters again, from
        the signed run record only (:func:`read_record` drops an unsigned one). Any ``-p`` means
        the user chose, and nothing is reused."""
        opts = self.options
        if (opts.parameters or latest is None or opts.fresh or opts.start is not None
                or latest.state not in ("failed", "interrupted", *GATE_STATES)):
            return
        record = self.records.get(latest.run)
        params = record.get("parameters") if isinstance(record, dict) else None
        if not isinstance(params, dict) or not params:
            return
        try:
            self.parameters = dict(parse_parameter(str(k), str(v)) for k, v in params.items())
        except RunError:
            return  # not something -p could have given: do not guess
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        self.progress.say(f"resumable-nb: reusing the parameters of run {latest.run}: {shown}")

    def _output_path(self) -> Path | None:
        out = self.options.output
        if out == "-":
            return None
        path = Path(out).expanduser().absolute() if out else self.notebook.with_suffix(".out.ipynb")
        if path.is_dir():
            raise RunError(f"{path} is a folder: give a file name, like -o {path / self.notebook.name}")
        if not path.parent.is_dir():
            raise RunError(f"cannot write {path}: the folder {path.parent} does not exist")
        return path

    def _kernel_name(self, data: Mapping[str, Any]) -> str:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        meta = data.get("metadata")
        spec = meta.get("kernelspec", {}) if isinstance(meta, dict) else {}
        name = self.options.kernel or (spec.get("name") if isinstance(spec, dict) else None) or "python3"
        try:
            KernelSpecManager().get_kernel_spec(name)
        except NoSuchKernel:
            raise RunError(f"no Jupyter kernel named {name!r} (see `jupyter kernelspec list`); "
                           "choose one with --kernel") from None
        return str(name)

    # -- execution ------------------------------------------------------------------------
    def execute(self) -> int:
        """Run the notebook; write it; return 0 (completed) or 1 (a cell failed, the kernel
        died, a cell timed out, or the run was interrupted).

        :raises RunError: the notebook turned out to be held by another kernel (nothing written).
        """
        from nbclient import NotebookClient

        nb = self.nb
        for cell in nb.cells:
            if cell.get("cell_type") == "code":
                cell.outputs = []
                cell.execution_count = None
        timeout = math.ceil(self.options.timeout) if self.options.timeout else None
        client_class = _logging_client(self.progress) if self.options.log_output else NotebookClient
        client = client_class(nb, kernel_name=self.kernel_name, timeout=timeout, startup_timeout=120,
                              resources={"metadata": {"path": str(self.notebook.parent)}})
        env = {**os.environ, ENV["NOTEBOOK"]: str(self.notebook), ENV["HEADLESS"]: "1"}
        if self.options.cache_dir is not None:
            env[ENV["DIR"]] = str(self.root)
        began = time.monotonic()
        self._announce()
        with tempfile.TemporaryFile() as kernel_log:
            try:
                with client.setup_kernel(env=env, cwd=str(self.notebook.parent),
                                         stdout=kernel_log, stderr=kernel_log):
                    try:
                        self._drive(client)
                    except KeyboardInterrupt:
                        self.outcome = _Outcome("interrupted", _where(self._current), "interrupted")
                        self._step_end(self._current, killed="interrupted")
                    self._finish_kernel(client)
            except RunError:
                raise
            except Exception as exc:  # noqa: BLE001 - the kernel did not start, or nbclient failed
                if self.outcome.status == "completed":
                    self.outcome = _Outcome("error", "", f"{type(exc).__name__}: {exc}".splitlines()[0])
            self._relay_kernel_log(kernel_log)
        client.set_widgets_metadata()
        self._record(final=True)
        wrote = self._write_output()
        self._summary(time.monotonic() - began, wrote)
        if self.outcome.status == "waiting":
            return 3
        return 0 if self.outcome.status == "completed" else 1

    def _announce(self) -> None:
        if self.choice.note:
            self.progress.say(f"resumable-nb: {self.choice.note}")
        how = (f"resuming run {self.choice.run.run} ({self.choice.run.state})" if self.choice.run
               else "from the top")
        self.progress.say(f"resumable-nb: running {self.notebook.name} in a new {self.kernel_name} "
                          f"kernel, {how}")

    def _drive(self, client: NotebookClient) -> None:
        """Set the kernel up and execute the cells; the outcome lands in ``self.outcome``."""
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        self._current = None
        try:
            assert client.kc is not None
            info = client.wait_for_reply(client.kc.kernel_info())
            if info is not None and "language_info" in info["content"]:
                self.nb.metadata["language_info"] = info["content"]["language_info"]
            report = self._setup(client)
            self.tracker = _Tracker(self.journal, self.known_runs, int(report.get("pid", 0)))
            self._record()
            first_left = next((i for i, c in enumerate(self.code)
                               if c.step and c.step not in self.restored), len(self.code))
            self._above = {c.index for c in self.code[:first_left]} if self.restored else set()
            for cell in self.code:
                self._current = cell
                self._cell(client, cell)
            self._current = None
        except _Waiting:
            self.outcome = _Outcome("waiting", _where(self._current))
        except _Rejected as exc:
            self.outcome = _Outcome("failed", f"gate '{exc.args[0]}'", str(exc.args[1]))
        except CellTimeoutError:
            current = self._current
            self.outcome = _Outcome("timeout", _where(current),
                                    f"timed out after {self.options.timeout:g} s")
            self._note(current, f"[resumable-nb] timed out after {self.options.timeout:g} s: the "
                                "kernel was stopped")
            self._step_end(current, killed="timed out")
        except DeadKernelError:
            current = self._current
            self.outcome = _Outcome("died", _where(current), "the kernel died")
            self._note(current, "[resumable-nb] the kernel died while this cell ran")
            self._step_end(current, killed="interrupted")
        except CellExecutionError as exc:
            current = self._current
            error = f"{exc.ename}: {exc.evalue}".splitlines()[0][:200] if exc.ename else str(exc)
            self.outcome = _Outcome("failed", _where(current), error)
            self._step_end(current, error=error)
            for line in _traceback_tail(current, self.nb):
                self.progress.say(line)

    def _setup(self, client: NotebookClient) -> dict[str, Any]:
        """Load the extension in the kernel, take the notebook's hold, resume when chosen."""
        resume = self.choice.run.run if self.choice.run is not None else None
        out, err = self._hidden(client, kernel_code("kernel_setup", resume))
        report = read_report(out)
        notices = [ln.replace("[resumable_nb] ", "") for ln in err.splitlines() if ln.strip()]
        if report.get("held"):
            raise RunError(f"{self.notebook.name}: {notices[0] if notices else 'held by another kernel'}")
        for notice in notices:
            self.progress.say(f"resumable-nb: {notice}")
        if report.get("error"):
            self.progress.say(f"resumable-nb: could not resume ({report['error']}); running from the top")
        restored = report.get("restored") or []
        last = {s.name: s for s in self.choice.done}
        self.restored = {name: last[name] for name in restored if name in last}
        if report.get("run"):
            self.run_id = str(report["run"])
            self.resumed_from = resume
        elif resume and not report.get("error"):
            self.progress.say("resumable-nb: could not resume (no run journal in the kernel, see "
                              "above); running from the top")
        if self.restored:
            saved = sum(s.duration + s.saved for s in self.restored.values())
            many = len(self.restored) != 1
            self.progress.say(f"resumable-nb: restored {len(self.restored)} step{'s' * many} without "
                              f"running {'them' if many else 'it'} "
                              f"({', '.join(self.restored)}): {saved:.2f} s of computing saved")
        if report.get("stopped"):
            self.progress.say(f"resumable-nb: {report['stopped']}")
        return report

    def _cell(self, client: NotebookClient, cell: CodeCell) -> None:
        nbcell = self.nb.cells[cell.index]
        above = cell.index in self._above
        gate = gate_of(cell, self.gates)
        if gate is not None:
            self._gate(client, cell, gate)
            return
        if skipped(cell):
            self._note(cell, "[resumable-nb] not executed: `resumable-nb run` resumes by itself")
            return
        if above and cell.step and cell.step in self.restored:
            self._still_restored(client, cell.step)  # may take it out of self.restored
        if above and cell.step and cell.step in self.restored:
            step = self.restored[cell.step]
            self._note(cell, f"[resumable_nb] step '{cell.step}' restored from run {step.run} "
                             "by `resumable-nb run`: not executed")
            self.progress.done(cell.step, LABELS["resumed"], None,
                               f"({step.duration + step.saved:.2f} s saved)")
            return
        if not nbcell.source.strip() or "skip-execution" in cell_tags(nbcell):
            return
        label = cell.step or f"cell {cell.index + 1}"
        began = time.monotonic()
        self.progress.start(label, after=0.0 if cell.step else _SLOW_CELL)
        original = nbcell.source
        if cell.spec is not None and cell.step == self.options.start and not cell.spec.force:
            # --from STEP: the line rebuilt by the parser, so its other options stay as they are
            nbcell.source = f"%%step {replace(cell.spec, force=True)}\n{cell.body}"
        self._count += 1
        try:
            client.execute_cell(nbcell, cell.index, execution_count=self._count)
        finally:
            nbcell.source = original
        if above and not cell.step and self.restored:
            # A plain cell above the resume point must not undo a restored step (results = []).
            self._hidden(client, kernel_code("kernel_rebind"))
            self._replayed = True
        if cell.step:
            self._step_end(cell)
        else:
            self.progress.done_if_shown(label, "ran", time.monotonic() - began)

    def _still_restored(self, client: NotebookClient, name: str) -> str:
        """Before skipping restored step ``name``: the kernel leaves the generators where it
        left them and, once a plain cell has re-run, checks that its inputs are what it ran
        with. If not, it and the steps restored after it run; why, or ""."""
        out, _ = self._hidden(client, kernel_code("kernel_restored", name,
                                                  "1" if self._replayed else None))
        why = str(read_report(out).get("stale", ""))
        if why:
            names = list(self.restored)
            for later in names[names.index(name):]:
                del self.restored[later]
            self.progress.say(f"resumable-nb: step '{name}' is not restored ({why}): it and the "
                              "steps after it run")
        return why

    def _gate(self, client: NotebookClient, cell: CodeCell, gate: Gate) -> None:
        """Pass an approved gate (its decision carried into this run's journal), stop at an
        undecided one, end failed at a rejected one. The ``%gate`` cell itself never runs."""
        where = {"gate": gate.name, "question": gate.question, "position": gate.position}
        decision = decision_for(gate, self.gate_history)
        if decision is None:
            self._kernel_gate(client, {"event": "waiting", **where})
            self.waiting_at = gate
            ask = f": {gate.question}" if gate.question else ""
            self._note(cell, f"[resumable-nb] waiting for approval at gate '{gate.name}'{ask}")
            raise _Waiting(gate.name)
        self._kernel_gate(client, {"event": "decided", **where, "decision": decision.decision or "",
                                   "user": decision.user, "host": decision.host, "note": decision.note})
        text = _decided(decision)
        self._note(cell, f"[resumable-nb] gate '{gate.name}' {text}")
        self.progress.say(self.progress.line(f"gate {gate.name}", decision.decision or "", None, text))
        if decision.decision == "rejected":
            raise _Rejected(gate.name, text)

    def _kernel_gate(self, client: NotebookClient, event: dict[str, str]) -> None:
        """Journal a gate event from the kernel, which holds the notebook's journal."""
        _, err = self._hidden(client, kernel_code("kernel_gate", json.dumps(event)))
        for line in err.splitlines():
            if line.strip():
                self.progress.say(f"resumable-nb: {line.replace('[resumable_nb] ', '')}")

    def _step_end(self, cell: CodeCell | None, error: str = "", killed: str = "") -> None:
        """Print a step's final line, from its journal record."""
        if cell is None or not cell.step:
            self.progress.stop()
            if cell is not None and (error or killed):
                label = f"cell {cell.index + 1}"
                self.progress.say(self.progress.line(label, killed or "failed", None, error))
            return
        tracker = self.tracker
        new = tracker.new_steps() if tracker is not None else []
        if tracker is not None and tracker.run_id and self.run_id is None:
            self.run_id = tracker.run_id
            self._record()
        view = next((s for s in reversed(new) if s.name == cell.step), None)
        if killed:
            self.progress.done(cell.step, killed, view.duration if view and view.duration else None)
        elif view is None:
            self.progress.done(cell.step, "failed" if error else "ran", None,
                               error or "(not in the journal)")
        elif view.status == "cached":
            self.progress.done(cell.step, LABELS["cached"], view.duration, f"({view.saved:.2f} s saved)")
        elif view.status == "failed":
            self.progress.done(cell.step, "failed", view.duration, view.error or error)
        else:
            self.progress.done(cell.step, LABELS[view.status], view.duration)

    def _note(self, cell: CodeCell | None, text: str) -> None:
        import nbformat

        if cell is None:
            return
        name = "stderr" if "died" in text or "timed out" in text else "stdout"
        self.nb.cells[cell.index].outputs.append(
            nbformat.v4.new_output("stream", name=name, text=text + "\n"))

    def _hidden(self, client: NotebookClient, code: str) -> tuple[str, str]:
        """Run ``code`` in the kernel outside the notebook (no history, no cell); its stdout and
        stderr text."""
        import nbformat

        cell = nbformat.v4.new_code_cell(code)
        notebook, timeout = client.nb, client.timeout
        client.nb = nbformat.v4.new_notebook(cells=[cell])
        client.timeout = None  # --timeout is for the notebook's cells; a big restore takes its time
        client.muted = True  # type: ignore[attr-defined]  # not the notebook's output: not logged
        try:
            client.execute_cell(cell, 0, store_history=False)
        finally:
            client.nb, client.timeout = notebook, timeout
            client.muted = False  # type: ignore[attr-defined]
        streams = {"stdout": "", "stderr": ""}
        for out in cell.outputs:
            if out.get("output_type") == "stream":
                streams[out["name"]] = streams.get(out["name"], "") + out["text"]
        return streams["stdout"], streams["stderr"]

    def _finish_kernel(self, client: NotebookClient) -> None:
        """End the kernel's run in the journal (completed / failed); or stop a kernel that is
        stuck or was interrupted, so that its run reads as interrupted and resumes next time."""
        status = self.outcome.status
        if status in ("completed", "failed", "waiting"):
            try:
                self._hidden(client, kernel_code("kernel_finish", status))
            except Exception:  # noqa: BLE001 - the kernel is going away either way
                client.shutdown_kernel = "immediate"
        else:
            client.shutdown_kernel = "immediate"

    def _relay_kernel_log(self, log: Any) -> None:
        """The kernel process's own stdout/stderr (not a cell's: those are in the notebook),
        minus ipykernel's TCP warning: C-level messages, a crash's last words."""
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        lines = [ln for ln in text.splitlines() if ln.strip() and _TCP_NOISE not in ln]
        for ln in lines[-20:]:
            self.progress.say(f"kernel: {ln}")

    # -- results --------------------------------------------------------------------------
    def _record(self, final: bool = False) -> None:
        """Remember what this run executed (for the next run's resume check)."""
        if self.run_id is None:
            tracker = self.tracker
            if final and tracker is not None:
                tracker.read()
                self.run_id = tracker.run_id
            if self.run_id is None:
                return
        entry = {
            "code": [source_digest(c.source) for c in self.code],
            "parameters": {k: repr(v) for k, v in self.parameters.items()},
            "status": self.outcome.status if final else "running",
            "output": str(self.output) if self.output else "-",
            "time": time.time(),
        }
        with contextlib.suppress(OSError, StoreError):
            write_record(self.journal, self.run_id, entry)

    def _write_output(self) -> str:
        import nbformat

        self.nb.metadata["resumable_nb"] = {
            "run": self.run_id, "resumed_from": self.resumed_from, "status": self.outcome.status,
            "parameters": {k: repr(v) for k, v in self.parameters.items()},
            "input": str(self.notebook),
        }
        if self.output is None:
            sys.stdout.write(nbformat.writes(self.nb) + "\n")
            sys.stdout.flush()
            return "the notebook to stdout"
        write_notebook(self.nb, self.output)
        return str(self.output)

    def _summary(self, seconds: float, wrote: str) -> None:
        gate = self.waiting_at
        if self.outcome.status == "waiting" and gate is not None:
            command = _approve_command(self.options.notebook, gate.name)
            self.progress.say(f"waiting for approval at gate '{gate.name}': {command}")
            return
        tracker = self.tracker
        own: dict[str, StepView] = {}
        if tracker is not None:
            _, run = tracker.read()
            for s in run.steps if run is not None else []:
                own[s.name] = s
        counts = {"ran": 0, "cached": 0}
        for s in own.values():
            if s.status in counts:
                counts[s.status] += 1
        parts = [f"{counts['ran']} ran"]
        if counts["cached"]:
            parts.append(f"{counts['cached']} {LABELS['cached']}")
        if self.restored:
            parts.append(f"{len(self.restored)} {LABELS['resumed']}")
        o = self.outcome
        head = {
            "completed": f"completed in {seconds:.1f} s",
            "failed": f"failed at {o.where} ({o.error})",
            "died": f"the kernel died during {o.where or 'the run'}",
            "timeout": f"{o.where or 'a cell'} {o.error}",
            "interrupted": "interrupted",
            "error": f"could not run the notebook ({o.error})",
        }[o.status]
        tail = {"failed": ". Fix it and run the same command again to resume.",
                "died": ". Run the same command again to resume.",
                "timeout": f". Use a larger --timeout (above {self.options.timeout or 0:g} s) to let "
                           "it finish; the steps that completed are restored, not re-run.",
                "interrupted": ". Run the same command again to resume."}.get(o.status, "")
        run_id = f"; run {self.run_id}" if self.run_id else ""
        self.progress.say(f"resumable-nb: {head}: steps: {', '.join(parts)}{run_id}; wrote {wrote}{tail}")


_SLOW_CELL = 2.0  # seconds before a plain cell gets a progress line


def _logging_client(progress: Progress) -> type[NotebookClient]:
    """nbclient's client, also writing every output to stderr as it arrives (papermill's
    ``--log-output``): text streams as they are, other outputs as their text/plain."""
    from nbclient import NotebookClient

    class LoggingClient(NotebookClient):  # type: ignore[misc]
        def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None,
                   cell_index: int) -> Any:
            out = super().output(outs, msg, display_id, cell_index)
            if getattr(self, "muted", False):  # resumable_nb's own hidden cells
                return out
            text = ""
            if out is not None and out.get("output_type") == "stream":
                text = str(out.get("text", ""))
            elif out is not None and "text/plain" in out.get("data", {}):
                text = str(out["data"]["text/plain"]) + "\n"
            elif out is not None and out.get("output_type") == "error":
                text = ""  # the run's own failure lines say it, once
            if text:
                progress.write(text)
            return out

    return LoggingClient


def _traceback_tail(cell: CodeCell | None, nb: NotebookNode, frames: int = 2) -> list[str]:
    """The last ``frames`` frames of the failing cell's traceback, its failing line and the
    error, without colour codes: enough to see where it failed without opening the notebook."""
    import re

    if cell is None:
        return []
    errors = [o for o in nb.cells[cell.index].get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return []
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", "\n".join(errors[-1].get("traceback", [])))
    lines = [ln for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    # IPython starts each frame with "Cell In[3], line 2" or "File ...": keep the last frames.
    starts = [i for i, ln in enumerate(lines) if ln.startswith(("Cell In", "File "))]
    first = starts[-frames] if len(starts) >= frames else (starts[0] if starts else 0)
    return [f"  | {printable(ln)}" for ln in lines[first:]][-40:]


def _where(cell: CodeCell | None) -> str:
    if cell is None:
        return "setup"
    return f"step '{cell.step}'" if cell.step else f"cell {cell.index + 1}"


def _decided(gate: GateView) -> str:
    """``approved by ann@box (looks fine)``."""
    note = f" ({gate.note})" if gate.note else ""
    return f"{gate.decision} by {gate.user}@{gate.host}{note}"


def _approve_command(notebook: Path, gate: str) -> str:
    return f"resumable-nb approve {shlex.quote(str(notebook))} --gate {gate}"
