"""The demo: a notebook whose kernel dies mid-run, resumed in a new kernel.

1. Runs notebooks/crash_and_resume.ipynb headless (nbclient). Its third step kills its own
   kernel the first time (a simulated out-of-memory kill).
2. Starts a new kernel that runs ``%load_ext resumable_nb`` and ``%resume --run``.
3. Prints, from the run journal, which steps ran and which were restored, and how long each
   took.

    make demo                  # or: .venv/bin/python scripts/demo.py
    .venv/bin/python scripts/demo.py --quickstart    # the quickstart notebook, twice
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resumable_nb.journal import StepView, chain, journal_path, read_events, runs  # noqa: E402
from resumable_nb.states import LABELS  # noqa: E402


def execute(nb: nbformat.NotebookNode, notebook: Path, cache: Path) -> float:
    """Run ``nb`` in a new kernel as if it were ``notebook``; return the wall time."""
    env = {**os.environ, "RESUMABLE_NB_DIR": str(cache), "RESUMABLE_NB_NOTEBOOK": str(notebook),
           "MPLBACKEND": "agg"}
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(notebook.parent)}})
    start = time.perf_counter()
    try:
        client.execute(env=env)
    finally:
        wall = time.perf_counter() - start
    return wall


def text_of(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"] + "\n")
    return "".join(parts)


def crash_and_resume(notebook: Path, cache: Path) -> int:
    print(f"notebook: {notebook.relative_to(ROOT)}   cache: {cache}\n")
    print("1) first run, headless: the 'train' step kills its own kernel (a simulated OOM kill)")
    nb = nbformat.read(notebook, as_version=4)
    try:
        wall = execute(nb, notebook, cache)
    except DeadKernelError:
        print("   the kernel died, as planned\n")
    else:
        print(f"   finished in {wall:.1f} s without dying: was the marker already there?\n")

    print("2) a new kernel runs `%load_ext resumable_nb` and `%resume --run`:")
    resume = nbformat.v4.new_notebook()
    resume.cells = [nbformat.v4.new_code_cell("%load_ext resumable_nb"),
                    nbformat.v4.new_code_cell("%resume --run")]
    wall = execute(resume, notebook, cache)
    for line in text_of(resume.cells[1]).rstrip().splitlines():
        print(f"   | {line}")
    print(f"   ({wall:.1f} s including kernel start)\n")

    events, _ = read_events(journal_path(cache, str(notebook)))
    all_runs = runs(events)
    first, second = list(all_runs.values())[-2:]
    print("3) what the journal says")
    print(f"   run {first.run}: {first.state}")
    print(f"   run {second.run}: {second.state}, resumed from {second.resumed_from}")
    print(f"   {'step':<10} {'first run':<28} {'second run':<28}")
    before = {s.name: s for s in first.steps}
    after = {s.name: s for s in second.steps}
    restored = {s.name for s in chain(all_runs, first.run)}
    ok = second.state in ("completed", "running") and second.resumed_from == first.run
    for name in dict.fromkeys([*before, *after]):
        b = before.get(name)
        a = after.get(name)
        left = _state(b) if b else "-"
        if a is not None:
            right = _state(a)
        elif name in restored:
            right = LABELS["resumed"]
        else:
            right, ok = "missing!", False
        print(f"   {name:<10} {left:<28} {right:<28}")
    ok = ok and all(after.get(n) is None for n in restored) and "report" in after
    print("\nNothing computed before the crash ran again." if ok else "\nUNEXPECTED: see above.")
    return 0 if ok else 1


def quickstart_twice(notebook: Path, cache: Path) -> int:
    """The quickstart notebook twice: the second run restores every step."""
    for label in ("first run", "second run (new kernel, same cache)"):
        nb = nbformat.read(notebook, as_version=4)
        wall = execute(nb, notebook, cache)
        print(f"{label}: {wall:.1f} s")
        events, _ = read_events(journal_path(cache, str(notebook)))
        run = list(runs(events).values())[-1]
        for s in run.steps:
            print(f"  {s.name:<10} {_state(s)}")
    return 0


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="resumable-nb-demo-") as tmp:
        cache = Path(tmp) / "cache"
        if "--quickstart" in argv:
            return quickstart_twice(ROOT / "notebooks" / "quickstart.ipynb", cache)
        return crash_and_resume(ROOT / "notebooks" / "crash_and_resume.ipynb", cache)


def _state(step: StepView) -> str:
    """A step's state and duration; an interrupted step has none (the kill came mid-way)."""
    if step.status == "interrupted":
        return LABELS["interrupted"]
    return f"{LABELS[step.status]} {step.duration:.2f} s"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
