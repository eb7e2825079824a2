"""The first %%step hit in a new kernel vs a second hit in the same kernel.

Run: .venv/bin/python benchmarks/first_hit.py [--runs 5]

Stores one step (a miss, in its own process), then starts a NEW Python process per run from
this file, with no warm-up: a real ``InteractiveShell`` imports numpy and pandas, loads the
extension against that cache and times two hits of the same step. What the first hit pays
once per kernel (lazy imports, opening the store, looking up package versions) is the
difference. Prints the medians; the target is a first hit at most 10 ms above the warm one.
Not a test: nothing is asserted but that both runs are hits. The children run with bytecode
(``PYTHONDONTWRITEBYTECODE`` is dropped from their environment), as a kernel does.

A second series opens the store and the journal (diskcache's sqlite setup, fsynced) before the
first hit, in as many new processes: the remaining difference is then what the hit itself
pays once (imports, fingerprinting, environment facts such as package versions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUP = ("import numpy as np\nimport pandas as pd\n"
         "a = np.arange(100_000, dtype='f8')\n"
         "df = pd.DataFrame({'x': np.arange(1000), 's': [str(i) for i in range(1000)]})")
# Reads a module (np), arrays, a DataFrame, and imports: every kind of input a hit keys.
STEP = ("%%step first_hit\nimport numpy as np\nimport pandas as pd\n"
        "total = float(np.sum(a)) + float(df['x'].sum())\nlabels = pd.Index(df['s'])")


def child(cache: Path, store: bool, open_store: bool) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    for cell in (SETUP, "%load_ext resumable_nb", f"%config ResumableNB.cache_dir = {str(cache)!r}",
                 "%config ResumableNB.verbose = False"):
        ip.run_cell(cell, store_history=False).raise_error()
    magics = ip._resumable_nb_magics  # type: ignore[attr-defined]
    history = magics.runner.history
    if open_store:
        magics.session.store()
        magics.session.journal()
    times, cpu = [], []
    for _ in range(1 if store else 2):
        t, c = time.perf_counter(), time.process_time()
        ip.run_cell(STEP, store_history=False).raise_error()
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
        status = history[-1].status
        if not store and status != "cached":
            raise SystemExit(f"expected a hit, the step was {status}")
    print(json.dumps({"first_ms": times[0], "warm_ms": times[-1], "first_cpu_ms": cpu[0],
                      "warm_cpu_ms": cpu[-1]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--open-store", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.store, args.open_store)
        return

    tmp = Path(tempfile.mkdtemp(prefix="rnb-first-hit-"))
    env = {**os.environ, "RESUMABLE_NB_KEY_FILE": str(tmp / "hmac.key")}
    # A kernel imports from bytecode (pip compiles it at install; an editable install writes it
    # at the first import). With PYTHONDONTWRITEBYTECODE set (as on the CI VMs) every process
    # would compile our modules from source, a cost no user's kernel pays: the first process
    # below (the miss) writes the bytecode, the measured ones use it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run(*extra: str) -> dict[str, float]:
        out = subprocess.run([sys.executable, __file__, "--child", str(tmp / "cache"), *extra],
                             env=env, cwd=tmp, check=True, capture_output=True, text=True)
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    run("--store")
    for title, extra in (("cold", ()), ("store and journal opened first", ("--open-store",))):
        results = [run(*extra) for _ in range(args.runs)]
        first = statistics.median(r["first_ms"] for r in results)
        warm = statistics.median(r["warm_ms"] for r in results)

        def runs(field: str, results: list[dict[str, float]] = results) -> str:
            return ", ".join(f"{r[field]:.1f}" for r in results)

        print(f"%%step hit, numpy + pandas loaded, {args.runs} new processes, {title} (medians)")
        print(f"  first hit in the process  {first:8.2f} ms   (runs: {runs('first_ms')})")
        print(f"  second hit                {warm:8.2f} ms   (runs: {runs('warm_ms')})")
        print(f"  difference                {first - warm:8.2f} ms   (target: at most 10 ms)")
        cpu = statistics.median(r["first_cpu_ms"] - r["warm_cpu_ms"] for r in results)
        print(f"  difference in CPU time    {cpu:8.2f} ms   (the process's own work: the rest is "
              "waiting, for the fsync of the run's first record or for a core)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
