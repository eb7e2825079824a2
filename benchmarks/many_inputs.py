"""A hit on a step with many small inputs vs running the same body plainly.

Run: .venv/bin/python benchmarks/many_inputs.py [--runs 5]

Workloads (each in its own new process, a real InteractiveShell, the step stored first):
  frames     the step reads 50 DataFrames of 1,000 rows (an int and a str column)
  scalars    the step reads 50 int globals
  functions  the step calls f49, which calls f48 ... f0 (50 notebook functions)
Each process times 30 warm hits and 30 plain runs of the same body and reports medians; the
printed figure is the median over --runs processes. Targets: frames < 3 ms, scalars and
functions < 1 ms (wall time). The cores are shared: figures are noisy; the process's CPU time
(``time.process_time``) is printed too, which the other sessions' load does not inflate.
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

WORKLOADS = {
    "frames": ("import numpy as np, pandas as pd\n" + "\n".join(
        f"df{i} = pd.DataFrame({{'x': np.arange(1000) + {i}, 's': [str(j) for j in range(1000)]}})"
        for i in range(50)),
        "total = " + " + ".join(f"int(df{i}['x'].sum())" for i in range(50)), 3.0),
    "scalars": ("\n".join(f"v{i} = {i}" for i in range(50)),
                "total = " + " + ".join(f"v{i}" for i in range(50)), 1.0),
    "functions": ("def f0(x):\n    return x + 1\n" + "".join(
        f"def f{i}(x):\n    return f{i - 1}(x) + 1\n" for i in range(1, 50)), "total = f49(0)", 1.0),
}


def child(name: str) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    setup, body, _ = WORKLOADS[name]
    ip = InteractiveShell.instance()
    for cell in (setup, "%load_ext resumable_nb", "%config ResumableNB.verbose = False"):
        ip.run_cell(cell, store_history=False).raise_error()
    cell = f"%%step many_{name}\n{body}"
    ip.run_cell(cell, store_history=False).raise_error()
    history = ip._resumable_nb_magics.runner.history  # type: ignore[attr-defined]

    def median_ms(code: str) -> tuple[float, float]:
        wall, cpu = [], []
        for _ in range(30):
            t, c = time.perf_counter(), time.process_time()
            ip.run_cell(code, store_history=False)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3

    hit, hit_cpu = median_ms(cell)
    if history[-1].status != "cached":
        raise SystemExit(f"expected hits, got {history[-1].status}")
    plain, plain_cpu = median_ms(body)
    print(json.dumps({"hit_ms": hit, "plain_ms": plain, "hit_cpu_ms": hit_cpu, "plain_cpu_ms": plain_cpu}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    tmp = tempfile.mkdtemp(prefix="rnb-many-")
    env = {**os.environ, "RESUMABLE_NB_KEY_FILE": f"{tmp}/hmac.key", "RESUMABLE_NB_DIR": f"{tmp}/cache"}
    for name, (_, _, goal) in WORKLOADS.items():
        results = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--child", name], env=env, cwd=tmp,
                                 check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.splitlines()[-1]))
        hit = statistics.median(r["hit_ms"] for r in results)
        plain = statistics.median(r["plain_ms"] for r in results)
        hit_cpu = statistics.median(r["hit_cpu_ms"] for r in results)
        verdict = "met" if hit < goal else "NOT met"
        runs = ", ".join(f"{r['hit_ms']:.2f}" for r in results)
        print(f"{name:10s} hit {hit:6.2f} ms (CPU {hit_cpu:5.2f})   plain {plain:6.2f} ms   "
              f"(target < {goal} ms: {verdict}; runs: {runs})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
