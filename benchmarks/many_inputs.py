"""A hit on a step with many small inputs vs running the same body plainly.

Run: .venv/bin/python benchmarks/many_inputs.py [--runs 5]

Workloads (each in its own new process, a real InteractiveShell, the step stored first):
  frames     the step reads 50 DataFrames of 1,000 rows (an int and a str column)
  scalars    the step reads 50 int globals
  functions  the step calls f49, which calls f48 ... f0 (50 notebook functions)
Each process times 30 warm hits and 30 plain runs of the same body and reports medians; the
printed figure is the median over --runs processes. Targets: frames < 3 ms, scalars and
functions < 1 ms. The cores are shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
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

    def median_ms(code: str) -> float:
        times = []
        for _ in range(30):
            t = time.perf_counter()
            ip.run_cell(code, store_history=False)
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3

    hit = median_ms(cell)
    if history[-1].status != "cached":
        raise SystemExit(f"expected hits, got {history[-1].status}")
    print(json.dumps({"hit_ms": hit, "plain_ms": median_ms(body)}))


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
        verdict = "met" if hit < goal else "NOT met"
        print(f"{name:10s} hit {hit:6.2f} ms   plain {plain:6.2f} ms   (target < {goal} ms: {verdict})")


if __name__ == "__main__":
    main()
