"""Real notebooks, real kernels: marking every cell as a step changes nothing but the work done.

For every notebook of tests/corpus/notebooks/ (public teaching notebooks, see
tests/corpus/SOURCES.md), in fresh ipykernel kernels:

- ``a=b``: all code cells run plain, then the same cells each as ``%%step c<N>``: the final
  namespaces must match (per variable: its fingerprint, else type and repr);
- ``hits``: the step version again in a new kernel on the same cache: every step is a hit
  (read from the run journal with ``resumable-nb events --json``) and the namespace matches;
- ``resume``: the step version in a new kernel on a fresh cache, SIGKILLed after two thirds
  of the cells; a new kernel runs ``%resume``: every name the plain run had at that point must
  come back equal.

The work for one notebook is done once, by its first check, and shared by its three checks.
Known failures are strict xfails (``KNOWN``): a fix turns them into failures that ask for the
mark to be removed. docs/corpus.md has the results and the causes. Set ``CORPUS_REPORT`` to a
file to get every difference as JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.kernels import Kernel

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).parent / "corpus" / "notebooks"
CORPUS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
CHECKS = ("a=b", "hits", "resume")
MARKER = "@@corpus-snapshot@@"
KILL_MARKER = "@@corpus-kill-point@@"

# (notebook, check): why it fails today. docs/corpus.md explains each cause.
KNOWN: dict[tuple[str, str], str] = {
}

# Summarises every user variable: its fingerprint, else its type and repr (addresses removed).
# Modules, IPython's own names and names starting with '_' are left out. Matplotlib objects get
# a summary of what they draw: their fingerprint differs between two identical plain runs
# (transforms key their parents by id()), see docs/corpus.md.
SNAPSHOT = r"""
def __corpus_snapshot():
    import json, re, sys, types
    from resumable_nb.fingerprint import fingerprint
    ip = get_ipython()
    ns, hidden = ip.user_ns, ip.user_ns_hidden
    skip = {"In", "Out", "exit", "quit", "get_ipython"}

    def is_mpl(v):
        return type(v).__module__.startswith(("matplotlib.", "mpl_toolkits."))

    def has_mpl(v, depth=0):
        if is_mpl(v):
            return True
        if depth < 3 and isinstance(v, (list, tuple)) or type(v).__name__ == "ndarray" and v.dtype == object:
            return any(has_mpl(x, depth + 1) for x in list(v.flat if hasattr(v, "flat") else v)[:50])
        return False

    def mpl(v):
        if isinstance(v, (list, tuple)):
            return [mpl(x) for x in v]
        if type(v).__name__ == "ndarray":
            return [mpl(x) for x in v.flat]
        if not is_mpl(v):
            return fingerprint(v, ns)
        out = [type(v).__qualname__]
        fig = v.get_figure() if hasattr(v, "get_figure") else None
        if fig is not None and hasattr(fig, "get_size_inches"):
            out.append([list(fig.get_size_inches()), len(fig.axes), [
                [a.get_title(), list(a.get_xlim()), list(a.get_ylim()), len(a.get_children()),
                 [fingerprint(ln.get_xydata()) for ln in a.get_lines()]] for a in fig.axes]])
        return out

    out = {}
    for name, value in list(ns.items()):
        if name.startswith("_") or name in skip or isinstance(value, types.ModuleType):
            continue
        if name in hidden and hidden[name] is value:
            continue
        try:
            if has_mpl(value):
                out[name] = "mpl " + json.dumps(mpl(value), default=str)
            else:
                out[name] = "fp " + fingerprint(value, ns)
        except Exception:
            try:
                text = repr(value)
            except Exception as exc:
                text = f"<repr failed: {type(exc).__name__}>"
            text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)[:300]
            out[name] = f"repr {type(value).__module__}.{type(value).__qualname__}: {text}"
    print("MARKER" + json.dumps(out, sort_keys=True), flush=True)
__corpus_snapshot()
del __corpus_snapshot
""".replace("MARKER", MARKER)


def code_cells(name: str) -> list[str]:
    """The notebook's non-empty code cells, as sources."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if source.strip():
            cells.append(source)
    return cells


def step_cells(cells: list[str]) -> list[str]:
    return [f"%%step c{i}\n{src}" for i, src in enumerate(cells)]


def write_notebook(path: Path, sources: list[str]) -> None:
    """What a user would save: the extension loaded in the first cell, every cell a step."""
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
              "source": src} for src in ["%load_ext resumable_nb", *sources]]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                     "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


def snapshot(k: Kernel) -> dict[str, str]:
    reply = k.ok(SNAPSHOT, timeout=120)
    line = next(ln for ln in reply.stdout.splitlines() if ln.startswith(MARKER))
    return json.loads(line[len(MARKER):])


def run_cells(k: Kernel, sources: list[str]) -> str | None:
    """Run the cells in order; stop at the first that fails and say which and why."""
    for i, src in enumerate(sources):
        reply = k.run(src, timeout=120)
        if reply.status != "ok":
            errors = [m["content"] for m in reply.messages if m["msg_type"] == "error"]
            why = f"{errors[0]['ename']}: {errors[0]['evalue']}"[:300] if errors else reply.status
            return f"cell {i} failed: {why}"
    return None


def diff(expected: dict[str, str], got: dict[str, str], names: list[str] | None = None) -> dict[str, Any]:
    names = sorted(expected) if names is None else names
    out: dict[str, Any] = {}
    missing = [n for n in names if n not in got]
    extra = sorted(set(got) - set(expected)) if names is None or names == sorted(expected) else []
    changed = {n: {"plain": expected[n][:160], "step": got[n][:160]}
               for n in names if n in got and got[n] != expected[n]}
    if missing:
        out["missing"] = missing
    if extra:
        out["extra"] = extra
    if changed:
        out["changed"] = changed
    return out


@dataclass
class Outcome:
    """What the runs of one notebook found, per check: {} when it passed."""

    cells: int
    problems: dict[str, dict[str, Any]] = field(default_factory=dict)


_RESULTS: dict[str, Outcome] = {}


# Some notebooks draw from the global RNGs without seeding them: two plain runs would differ.
# Every kernel seeds them first (binding no name), and runs with one hash seed (set order).
SEED = "__import__('numpy').random.seed(0); __import__('random').seed(0)"


def _kernel(folder: Path, cache: Path, key: Path, started: list[Kernel]) -> Kernel:
    k = Kernel(folder, {"RESUMABLE_NB_DIR": str(cache), "RESUMABLE_NB_KEY_FILE": str(key),
                        "RESUMABLE_NB_NOTEBOOK": str(folder / "notebook.ipynb"), "PYTHONHASHSEED": "0"})
    started.append(k)
    k.ok(SEED)
    return k


def _journal_steps(folder: Path, cache: Path, key: Path) -> list[dict[str, Any]]:
    """The step_finished events of the notebook's latest run, from the CLI."""
    out = subprocess.run(
        [sys.executable, "-m", "resumable_nb", "events", str(folder / "notebook.ipynb"), "--json",
         "--cache-dir", str(cache)],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "RESUMABLE_NB_KEY_FILE": str(key)})
    events = json.loads(out.stdout)["events"]
    last_run = [e["run"] for e in events if e["kind"] == "run_started"][-1]
    return [e for e in events if e["run"] == last_run and e["kind"] == "step_finished"]


def run_notebook(name: str, tmp: Path) -> Outcome:
    cells = code_cells(name)
    steps = step_cells(cells)
    kill_at = max(1, round(len(cells) * 2 / 3))
    outcome = Outcome(len(cells))
    key = tmp / "hmac.key"
    started: list[Kernel] = []
    try:
        # a. Plain, with a snapshot at the kill point of d.
        plain_dir = tmp / "plain"
        plain_dir.mkdir()
        k = _kernel(plain_dir, tmp / "unused-cache", key, started)
        failed = run_cells(k, cells[:kill_at])
        prefix = snapshot(k)
        failed = failed or run_cells(k, cells[kill_at:])
        assert failed is None, f"{name}: the corpus notebook does not run plain: {failed}"
        plain = snapshot(k)
        k.close()

        # b. Every cell a step, fresh cache.
        steps_dir = tmp / "steps"
        steps_dir.mkdir()
        write_notebook(steps_dir / "notebook.ipynb", steps)
        cache = tmp / "cache"
        k = _kernel(steps_dir, cache, key, started)
        k.ok("%load_ext resumable_nb")
        failed = run_cells(k, steps)
        problem = diff(plain, snapshot(k))
        if failed:
            problem["failed"] = failed
        outcome.problems["a=b"] = problem
        k.close()

        # c. Again, in a new kernel, same cache: every step hits.
        k = _kernel(steps_dir, cache, key, started)
        k.ok("%load_ext resumable_nb")
        failed = run_cells(k, steps)
        problem = diff(plain, snapshot(k))
        k.close()
        ran = {e["step"]: e.get("reason", "") for e in _journal_steps(steps_dir, cache, key)
               if e["status"] != "cached"}
        if ran:
            problem["not_hit"] = ran
        if failed:
            problem["failed"] = failed
        outcome.problems["hits"] = problem

        # d. Killed after two thirds, then %resume in a new kernel.
        crash_dir = tmp / "crash"
        crash_dir.mkdir()
        write_notebook(crash_dir / "notebook.ipynb", steps)
        crash_cache = tmp / "crash-cache"
        k = _kernel(crash_dir, crash_cache, key, started)
        k.ok("%load_ext resumable_nb")
        failed = run_cells(k, steps[:kill_at])
        k.run_until(f"print({KILL_MARKER!r}, flush=True)\nimport time\ntime.sleep(600)", KILL_MARKER)
        k.kill()
        k = _kernel(crash_dir, crash_cache, key, started)
        k.ok("%load_ext resumable_nb")
        resumed = k.run("%resume")
        problem = diff(prefix, snapshot(k), sorted(prefix))
        if resumed.status != "ok":
            problem["resume_failed"] = resumed.stdout[-300:] + resumed.stderr[-300:]
        if failed:
            problem["failed"] = failed
        outcome.problems["resume"] = problem
    finally:
        for kernel in started:
            try:
                kernel.close()
            except Exception:
                pass
    _report(name, outcome)
    return outcome


def _report(name: str, outcome: Outcome) -> None:
    path = os.environ.get("CORPUS_REPORT")
    if not path:
        return
    report = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    report[name] = {"cells": outcome.cells, "problems": outcome.problems}
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=True))


def _params() -> list[Any]:
    params = []
    for name in CORPUS:
        for check in CHECKS:
            marks = []
            if (name, check) in KNOWN:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[(name, check)]))
            params.append(pytest.param(name, check, marks=marks, id=f"{name}-{check}"))
    return params


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("name", "check"), _params())
def test_corpus(name: str, check: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if name not in _RESULTS:
        _RESULTS[name] = run_notebook(name, tmp_path_factory.mktemp(re.sub(r"\W", "_", name)))
    problem = _RESULTS[name].problems[check]
    assert not problem, f"{name} {check}: {json.dumps(problem, indent=1)[:3000]}"
