"""What reading names from query strings and environment variables adds to a hit.

Run: .venv/bin/python benchmarks/frame_lookup.py [--hits 300] [--rounds 5]

One real InteractiveShell (a temp cache folder), each step stored first, then timed hits of
each step in turn (--rounds times, interleaved, so that noise from the shared cores falls
on all of them alike). A pair is a step and the same step without the feature:

  direct       r = len(df[df.a > thr]); s = 'a > thr'   thr read as a plain name
  query        r = len(df.query('a > @thr'))      thr found in the query string
  query-input  r = len(df.query(q))               q = 'a > @thr': read from q's value per hit
  literals-10  r = ['RNB_B0', ... 'RNB_B9']        the same literals, no environment
  env-10       r = [os.environ.get('RNB_B0'), ... 'RNB_B9']   ten variables, by name
  os-sep       r = len(os.sep)
  env-whole    r = len(os.environ)                 the whole environment, one digest

Each baseline has the same string literals as its pair: a literal costs a check of whether
it names a file (docs/invalidation.md), which is not what this measures.

Prints each step's median hit in ms and the ratio to its baseline (query* / direct,
env* / no-env). The cores are shared: figures are noisy, ratios less so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

SETUP = ("import os\nimport pandas as pd\ndf = pd.DataFrame({'a': range(1000)})\nthr = 500\n"
         "q = 'a > @thr'\n" + "".join(f"os.environ['RNB_B{i}'] = '{i}'\n" for i in range(10)))
STEPS = {
    "direct": "r = len(df[df.a > thr])\ns = 'a > thr'",
    "query": "r = len(df.query('a > @thr'))",
    "query-input": "r = len(df.query(q))",
    "literals-10": "r = [" + ", ".join(f"'RNB_B{i}'" for i in range(10)) + "]",
    "env-10": "r = [" + ", ".join(f"os.environ.get('RNB_B{i}')" for i in range(10)) + "]",
    "os-sep": "r = len(os.sep)",
    "env-whole": "r = len(os.environ)",
}
BASELINE = {"query": "direct", "query-input": "direct", "env-10": "literals-10",
            "env-whole": "os-sep"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="rnb-frame-")
    os.environ.setdefault("RESUMABLE_NB_KEY_FILE", f"{tmp}/hmac.key")
    os.environ["RESUMABLE_NB_DIR"] = f"{tmp}/cache"
    os.chdir(tmp)
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    for cell in (SETUP, "%load_ext resumable_nb", "%config ResumableNB.verbose = False"):
        ip.run_cell(cell, store_history=False).raise_error()
    history = ip._resumable_nb_magics.runner.history  # type: ignore[attr-defined]
    cells = {name: f"%%step bench_{name.replace('-', '_')}\n{body}" for name, body in STEPS.items()}
    for cell in cells.values():
        ip.run_cell(cell, store_history=False).raise_error()
    times: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(args.rounds):
        for name, cell in cells.items():
            for _ in range(args.hits):
                t = time.perf_counter()
                ip.run_cell(cell, store_history=False)
                times[name].append(time.perf_counter() - t)
            if history[-1].status != "cached":
                raise SystemExit(f"step {name}: expected hits, got {history[-1].status}")
    median = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    for name, ms in median.items():
        base = BASELINE.get(name)
        ratio = f"  x{ms / median[base]:.2f} of {base}" if base else ""
        print(f"{name:12s} hit {ms:6.3f} ms{ratio}")


if __name__ == "__main__":
    main()
