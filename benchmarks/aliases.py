"""What finding aliased variables costs a step on a miss (hits pay nothing).

Run: .venv/bin/python benchmarks/aliases.py

A miss looks for namespace variables the step could change through its inputs (views of an
input array, objects reachable from an input): ``aliases.candidates``. Printed as the time per
miss, and as a ratio against fingerprinting the same inputs (what every step already pays).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd

from resumable_nb import aliases
from resumable_nb.fingerprint import Fingerprinter


def _time(fn, repeat: int = 15) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    cases = {}
    ns: dict = {f"a{i}": rng.random(1000) for i in range(1000)}  # 1,000 arrays in the namespace
    ns["df"] = pd.DataFrame({f"c{i}": rng.random(10_000) for i in range(20)})
    ns["big"] = list(range(1_000_000))  # walked up to the budget only
    ns["cfg"] = {"xs": [1, 2], "nested": {"k": [3]}}
    cases["1 array input, 1,000 arrays around"] = ["a0"]
    cases["a DataFrame input"] = ["df"]
    cases["a 1M-element list input"] = ["big"]
    cases["a small dict input"] = ["cfg"]
    names = list(ns)
    print(f"{'inputs':<36} {'candidates':>11} {'fingerprint inputs':>19} {'ratio':>6}")
    for label, inputs in cases.items():
        find = _time(lambda inputs=inputs: aliases.candidates(ns, inputs, names))
        fper = Fingerprinter(ns, follow_globals=False)
        hashing = _time(lambda inputs=inputs, fper=fper: [fper.hash(ns[n]) for n in inputs])
        print(f"{label:<36} {find * 1e3:>9.2f}ms {hashing * 1e3:>17.2f}ms {find / hashing:>6.2f}")


if __name__ == "__main__":
    main()
