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

The three ``kernel_*`` functions run inside the kernel; everything else runs in the CLI.
Nothing here imports nbclient until a notebook is executed.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import keyword
import math
import os
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import location
from .errors import ResumableError, StoreError
from .journal import RunView, StepView, chain, journal_path, read_events, read_signed, runs, write_signed
from .resume import Cell, parse_cells
from .states import LABELS

if TYPE_CHECKING:
    from nbclient import NotebookClient
    from nbformat import NotebookNode

__all__ = [
    "CodeCell",
    "HeadlessRun",
    "Progress",
    "ResumeChoice",
    "RunError",
    "RunOptions",
    "cache_root_for",
    "choose_resume",
    "code_cells",
    "inject_parameters",
    "kernel_finish",
    "kernel_rebind",
    "kernel_setup",
    "notebook_json",
    "parse_parameter",
    "read_notebook",
    "read_record",
    "skipped",
]

RECORD_VERSION = 2  # 2: signed with the journal key
_REPORT = "@@resumable-nb-report@@ "  # prefix of the line kernel_setup prints for the CLI
_RESTORED_ATTR = "_resumable_nb_headless_restored"
_KERNEL_MODULE = "__import__('resumable_nb.headless', fromlist=['kernel_setup'])"
# Cells that would fight the CLI over the run (it resumes by itself): never executed headless.
_SKIPPED = ("%resume", "%replay", "%reload_ext resumable_nb", "%unload_ext resumable_nb")
_TCP_NOISE = "Kernel is running over TCP without encryption"
_STATE_WIDTH = max(map(len, LABELS.values()))  # progress lines keep their columns


class RunError(ResumableError):
    """Bad input for a run (or a run that cannot start): one line, exit 2, nothing written."""


# -- input ------------------------------------------------------------------------------------
def parse_parameter(name: str, text: str) -> tuple[str, Any]:
    """``-p NAME VALUE``: VALUE is a Python literal if it parses as one, else a string.

    :raises RunError: NAME is not an identifier, or the value cannot be written back as code.
    """
    if not name.isidentifier() or keyword.iskeyword(name):
        raise RunError(f"-p {name!r}: a parameter name must be a Python identifier (like n_rows)")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return name, text
    try:
        ast.literal_eval(repr(value))
    except (ValueError, SyntaxError):
        raise RunError(f"-p {name} {text}: {value!r} cannot be written as a Python literal; "
                       "quote it to pass a string") from None
    return name, value


def notebook_json(path: Path) -> dict[str, Any]:
    """The notebook's JSON, checked enough to tell a notebook from anything else. Fast: the
    checks and the read-only commands need no nbformat (whose import takes a second or more).

    :raises RunError: missing, not a file, or not a Jupyter notebook.
    """
    if not path.exists():
        raise RunError(f"{path}: no such file")
    if not path.is_file():
        raise RunError(f"{path}: not a file")
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError:  # UnicodeDecodeError included
        raise RunError(f"{path}: not a Jupyter notebook (not JSON)") from None
    cells = data.get("cells", data.get("worksheets")) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int) or not isinstance(cells, list):
        raise RunError(f"{path}: not a Jupyter notebook (no nbformat version or no cells)")
    if "cells" not in data:  # nbformat 3: worksheets; rare enough to pay for nbformat
        data = dict(read_notebook(path))
    return data


def read_notebook(path: Path) -> NotebookNode:
    """The notebook at ``path``, as nbformat 4.

    :raises RunError: missing, not a file, or not a Jupyter notebook.
    """
    import nbformat

    if not path.is_file():
        notebook_json(path)  # raises the right message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a non-notebook
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: not a Jupyter notebook ({detail})") from None
    if not isinstance(nb.get("cells"), list):
        raise RunError(f"{path}: not a Jupyter notebook (no cells)")
    return nb


CodeCell = Cell  # a code cell of the notebook being run (positions count the injected cell)


def skipped(cell: Cell) -> bool:
    """Only %resume / %replay / re- or unloading lines: the CLI never executes it."""
    lines = [ln.strip() for ln in cell.source.splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(ln.startswith(_SKIPPED) for ln in lines)


def code_cells(nb: Mapping[str, Any]) -> list[Cell]:
    """The code cells of a notebook (nbformat 4, as a NotebookNode or its JSON)."""
    return parse_cells(nb)


def inject_parameters(nb: NotebookNode, parameters: Mapping[str, Any]) -> None:
    """Replace any ``injected-parameters`` cell by one with ``NAME = VALUE`` lines, right after
    the cell tagged ``parameters`` (at the top when there is none), as papermill does."""
    import nbformat

    nb.cells = [c for c in nb.cells if "injected-parameters" not in _tags(c)]
    at = next((i + 1 for i, c in enumerate(nb.cells) if "parameters" in _tags(c)), 0)
    lines = ["# Parameters", *(f"{name} = {value!r}" for name, value in parameters.items())]
    cell = nbformat.v4.new_code_cell("\n".join(lines) + "\n", metadata={"tags": ["injected-parameters"]})
    if nb.get("nbformat_minor", 5) < 5:
        cell.pop("id", None)  # cell ids are only valid from nbformat 4.5
    nb.cells.insert(at, cell)


def _tags(cell: Mapping[str, Any]) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def cache_root_for(notebook: Path, cache_dir: Path | None) -> Path:
    """Where the kernel will put the notebook's cache: ``cache_dir``, else ``$RESUMABLE_NB_DIR``,
    else ``.resumable_nb/`` next to the notebook (what the kernel computes, given the notebook)."""
    if cache_dir is not None:
        return cache_dir.expanduser().absolute()
    env = {**os.environ, "RESUMABLE_NB_NOTEBOOK": str(notebook)}
    return location.cache_root("", {}, env)


# -- the run record (next to the journal) -----------------------------------------------------
def record_path(journal: Path) -> Path:
    """``<journal>.cli.json``: not ``*.jsonl``, so journal readers never take it for a journal."""
    return journal.with_name(journal.stem + ".cli.json")


def read_record(journal: Path) -> dict[str, Any]:
    """What ``resumable-nb run`` recorded per run id: the digests of the code cells it executed,
    its parameters and outcome. Empty when missing, unreadable or not signed with the user's key
    (then only the journal counts)."""
    data = read_signed(record_path(journal))
    got = data.get("runs") if data is not None and data.get("schema") == RECORD_VERSION else None
    return got if isinstance(got, dict) else {}


def _write_record(journal: Path, run_id: str, entry: dict[str, Any], keep: int = 50) -> None:
    records = read_record(journal)
    records.pop(run_id, None)
    records[run_id] = entry
    records = dict(list(records.items())[-keep:])
    write_signed(journal.parent.parent, record_path(journal).name,
                 {"schema": RECORD_VERSION, "runs": records})


def _umask() -> int:
    """This process's umask, read without changing it (``os.umask`` must set it to read it,
    which would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _digest(text: str) -> str:
    return hashlib.sha256(_normal(text).encode("utf-8", "surrogatepass")).hexdigest()[:16]


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
    if latest.state not in ("failed", "interrupted"):
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
    for c in code[:first_left]:
        if c.step and _normal(c.body) != _normal(last[c.step].source):
            return f"step '{c.step}' changed since it ran"
    if digests is None:
        if parameters:
            return "it was not started by `resumable-nb run`, so its parameters are unknown"
        return ""
    for i, c in enumerate(code[:first_left]):
        if i >= len(digests) or digests[i] != _digest(c.source):
            return f"cell {c.index + 1} changed since that run"
    return ""


# -- progress ---------------------------------------------------------------------------------
class Progress:
    """One line per step: live (rewritten while the step runs) on a terminal, plain otherwise."""

    def __init__(self, stream: TextIO, width: int = 12, live: bool | None = None) -> None:
        self.stream = stream
        self.width = max(width, 4)
        self.live = _isatty(stream) if live is None else live
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def line(self, name: str, state: str, seconds: float | None = None, detail: str = "") -> str:
        secs = "" if seconds is None else f"{seconds:.2f} s"
        return f"  {name:<{self.width}}  {state:<{_STATE_WIDTH}} {secs:>9}  {detail}".rstrip()

    def start(self, name: str) -> None:
        """A step begins: a live line on a terminal, a plain 'running' line elsewhere."""
        if not self.live:
            self.say(self.line(name, "running"))
            return
        began = time.monotonic()
        stop = threading.Event()

        def tick() -> None:
            while True:
                with self._lock:
                    self.stream.write("\r\x1b[2K" + self.line(name, "running", time.monotonic() - began))
                    self.stream.flush()
                if stop.wait(0.2):
                    return

        self._stop = stop
        self._thread = threading.Thread(target=tick, name="resumable-nb-progress", daemon=True)
        self._thread.start()

    def done(self, name: str, state: str, seconds: float | None = None, detail: str = "") -> None:
        """A step ended (or was restored without running): its final line."""
        self._halt()
        prefix = "\r\x1b[2K" if self.live else ""
        with self._lock:
            self.stream.write(prefix + self.line(name, state, seconds, detail) + "\n")
            self.stream.flush()

    def _halt(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join()
        self._stop = self._thread = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


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


@dataclass(slots=True)
class _Outcome:
    status: str = "completed"  # completed | failed | died | timeout | interrupted | error
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
        self.outcome = _Outcome()
        self.run_id: str | None = None
        self.resumed_from: str | None = None
        self.tracker: _Tracker | None = None
        self._above: set[int] = set()  # cells above the first step left to run (when resuming)
        self._current: CodeCell | None = None  # the cell being executed
        self._count = 0
        self._nb: NotebookNode | None = None

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
        if self.parameters:
            inject_parameters(self.nb, self.parameters)
        self.code = code_cells(self.nb)
        self.records = read_record(self.journal)
        self.choice = choose_resume(all_runs, self.code, self.records, fresh=opts.fresh,
                                    start=opts.start, parameters=bool(self.parameters))
        names = [c.step for c in self.code if c.step]
        self.progress = Progress(self.err, width=max([len(n) for n in names] + [8]))

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
        client = NotebookClient(nb, kernel_name=self.kernel_name, timeout=timeout, startup_timeout=120,
                                resources={"metadata": {"path": str(self.notebook.parent)}})
        env = {**os.environ, "RESUMABLE_NB_NOTEBOOK": str(self.notebook), "RESUMABLE_NB_HEADLESS": "1"}
        if self.options.cache_dir is not None:
            env["RESUMABLE_NB_DIR"] = str(self.root)
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

    def _setup(self, client: NotebookClient) -> dict[str, Any]:
        """Load the extension in the kernel, take the notebook's hold, resume when chosen."""
        resume = self.choice.run.run if self.choice.run is not None else None
        out, err = self._hidden(client, f"{_KERNEL_MODULE}.kernel_setup(get_ipython(), {resume!r})")
        line = next((ln for ln in out.splitlines() if ln.startswith(_REPORT)), None)
        report: dict[str, Any] = json.loads(line[len(_REPORT):]) if line else {}
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
        if skipped(cell):
            self._note(cell, "[resumable-nb] not executed: `resumable-nb run` resumes by itself")
            return
        if above and cell.step and cell.step in self.restored:
            step = self.restored[cell.step]
            self._note(cell, f"[resumable_nb] step '{cell.step}' restored from run {step.run} "
                             "by `resumable-nb run`: not executed")
            self.progress.done(cell.step, LABELS["resumed"], None,
                               f"({step.duration + step.saved:.2f} s saved)")
            return
        if not nbcell.source.strip() or "skip-execution" in _tags(nbcell):
            return
        if cell.step:
            self.progress.start(cell.step)
        original = nbcell.source
        if cell.step and cell.step == self.options.start:
            first, sep, rest = original.partition("\n")
            if "--force" not in first.split():
                nbcell.source = f"{first} --force{sep}{rest}"
        self._count += 1
        try:
            client.execute_cell(nbcell, cell.index, execution_count=self._count)
        finally:
            nbcell.source = original
        if above and not cell.step and self.restored:
            # A plain cell above the resume point must not undo a restored step (results = []).
            self._hidden(client, f"{_KERNEL_MODULE}.kernel_rebind(get_ipython())")
        if cell.step:
            self._step_end(cell)

    def _step_end(self, cell: CodeCell | None, error: str = "", killed: str = "") -> None:
        """Print a step's final line, from its journal record."""
        if cell is None or not cell.step:
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
        try:
            client.execute_cell(cell, 0, store_history=False)
        finally:
            client.nb, client.timeout = notebook, timeout
        streams = {"stdout": "", "stderr": ""}
        for out in cell.outputs:
            if out.get("output_type") == "stream":
                streams[out["name"]] = streams.get(out["name"], "") + out["text"]
        return streams["stdout"], streams["stderr"]

    def _finish_kernel(self, client: NotebookClient) -> None:
        """End the kernel's run in the journal (completed / failed); or stop a kernel that is
        stuck or was interrupted, so that its run reads as interrupted and resumes next time."""
        status = self.outcome.status
        if status in ("completed", "failed"):
            try:
                self._hidden(client, f"{_KERNEL_MODULE}.kernel_finish(get_ipython(), {status!r})")
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
            "code": [_digest(c.source) for c in self.code],
            "parameters": {k: repr(v) for k, v in self.parameters.items()},
            "status": self.outcome.status if final else "running",
            "output": str(self.output) if self.output else "-",
            "time": time.time(),
        }
        with contextlib.suppress(OSError, StoreError):
            _write_record(self.journal, self.run_id, entry)

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
        fd, tmp = tempfile.mkstemp(dir=self.output.parent, prefix=f".{self.output.name}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                nbformat.write(self.nb, f)
            os.chmod(tmp, 0o666 & ~_umask())  # as `open` would: a private umask keeps it private
            os.replace(tmp, self.output)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(self.output)

    def _summary(self, seconds: float, wrote: str) -> None:
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
                "timeout": ". Run the same command again to resume.",
                "interrupted": ". Run the same command again to resume."}.get(o.status, "")
        run_id = f"; run {self.run_id}" if self.run_id else ""
        self.progress.say(f"resumable-nb: {head}: steps: {', '.join(parts)}{run_id}; wrote {wrote}{tail}")


def _where(cell: CodeCell | None) -> str:
    if cell is None:
        return "setup"
    return f"step '{cell.step}'" if cell.step else f"cell {cell.index + 1}"


# -- inside the kernel ------------------------------------------------------------------------
def kernel_setup(ip: Any, resume: str | None) -> None:
    """(Runs in the kernel.) Load resumable_nb, take the notebook's hold and, given a run id,
    resume it without running anything. Prints one report line for the CLI."""
    import resumable_nb

    from .errors import StepUsageError

    resumable_nb.load_ipython_extension(ip)  # not %load_ext: the notebook's own stays silent
    session = ip._resumable_nb_magics.session
    report: dict[str, Any] = {"pid": os.getpid(), "restored": [], "run": None, "error": "",
                              "held": False, "stopped": ""}
    if session.store() is not None and session.journal() is None:
        report["held"] = True
    elif resume and session.journal() is not None:
        try:
            with contextlib.redirect_stdout(_Discard()):  # the CLI says it its own way
                plan = session.resume(resume, False)
        except StepUsageError as exc:
            report["error"] = str(exc)
        else:
            setattr(ip, _RESTORED_ATTR, plan.restored)
            report["restored"] = list(dict.fromkeys(s.name for s in plan.restored.steps))
            report["run"] = session.journal().run_id
            if plan.restored.stopped_at is not None:
                report["stopped"] = (f"step '{plan.restored.stopped_at.name}' could not be restored "
                                     f"({plan.restored.why}): it and the steps after it run again")
    print(_REPORT + json.dumps(report), flush=True)


def kernel_rebind(ip: Any) -> None:
    """(Runs in the kernel.) Bind the restored values again, after a plain cell above the
    resume point (``results = []``) may have replaced one."""
    restored = getattr(ip, _RESTORED_ATTR, None)
    if restored is None:
        return
    ns = ip.user_ns
    ns.update({k: v for k, v in restored.values.items() if ns.get(k) is not v})


def kernel_finish(ip: Any, status: str) -> None:
    """(Runs in the kernel.) End the run in the journal as ``status`` and release the notebook."""
    with contextlib.suppress(AttributeError):
        delattr(ip, _RESTORED_ATTR)
    magics = getattr(ip, "_resumable_nb_magics", None)
    if magics is not None:
        magics.session.close(status)


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
