"""The demo: run notebooks/quickstart.ipynb twice, headless, on a fresh cache.

The first run computes every step; the second, in a brand-new kernel, restores them from
the cache. Prints, per step, what happened and how long it took.

    make demo            # or: .venv/bin/python scripts/demo.py [NOTEBOOK]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
_MARK = "RESUMABLE_NB_DEMO_SUMMARY="
_SUMMARY = (
    "import json as _json\n"
    "_m = get_ipython()._resumable_nb_magics\n"
    f"print({_MARK!r} + _json.dumps([dict(name=r.name, status=r.status, seconds=r.duration, "
    "saved=r.saved) for r in _m.runner.history]))"
)


def run_once(path: Path, cache: Path) -> tuple[list[dict[str, object]], float]:
    """Execute the notebook in a new kernel; return the per-step results and the wall time."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_SUMMARY))
    env = {**os.environ, "RESUMABLE_NB_DIR": str(cache), "MPLBACKEND": "agg"}
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute(env=env)
    wall = time.perf_counter() - start
    for output in nb.cells[-1].get("outputs", []):
        text = output.get("text", "")
        if _MARK in text:
            return json.loads(text.split(_MARK, 1)[1]), wall
    raise RuntimeError("the notebook did not report its steps")


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "notebooks" / "quickstart.ipynb"
    with tempfile.TemporaryDirectory(prefix="resumable-nb-demo-") as tmp:
        cache = Path(tmp) / "cache"
        print(f"notebook: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        print(f"cache:    {cache} (fresh)\n")
        runs = []
        for label in ("first run (new kernel, empty cache)", "second run (new kernel, same cache)"):
            steps, wall = run_once(path, cache)
            runs.append(steps)
            print(f"{label}: {wall:.1f} s in all")
            for step in steps:
                verb = "restored" if step["status"] == "restored" else step["status"]
                extra = f"  (saved {step['saved']:.2f} s)" if step["status"] == "restored" else ""
                print(f"  {step['name']:<10} {verb:<9} {step['seconds']:8.3f} s{extra}")
            print()
        first = {s["name"]: s for s in runs[0]}
        second = {s["name"]: s for s in runs[1]}
        ok = all(s["status"] == "restored" for s in second.values()) and second.keys() == first.keys()
        ran = sum(float(s["seconds"]) for s in first.values())  # type: ignore[arg-type]
        restored = sum(float(s["seconds"]) for s in second.values())  # type: ignore[arg-type]
        print(f"steps: {ran:.2f} s computing on the first run, {restored:.3f} s restoring on the second.")
        print("every step was restored on the second run" if ok else "NOT every step was restored!")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
