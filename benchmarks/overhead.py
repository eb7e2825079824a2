"""Fixed cost of a %%step hit, and store/restore of a big numpy output.

Run: .venv/bin/python benchmarks/overhead.py [--gib 1.0] [--repeat 200]

Prints medians and ratios against a no-op registered cell magic running the same line, all
in this process (machine noise cancels out of the ratios). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, magics_class


@magics_class
class _Noop(Magics):
    @cell_magic
    def noop(self, line: str, cell: str) -> None:
        exec(cell, self.shell.user_ns)  # the least a cell magic that runs its body can do


def _median_ms(ip: InteractiveShell, cells: list[str], repeat: int) -> list[float]:
    """The median time of each cell, run in turn ``repeat`` times (interleaved, so that load
    from other processes that comes and goes weighs on every cell alike: measured one after
    the other on a shared machine, the ratio swung from 1.4x to 2.5x)."""
    times: list[list[float]] = [[] for _ in cells]
    for _ in range(repeat):
        for cell, spent in zip(cells, times, strict=True):
            t = time.perf_counter()
            ip.run_cell(cell, store_history=False)
            spent.append(time.perf_counter() - t)
    return [statistics.median(spent) * 1e3 for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0, help="size of the big array (GiB)")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--warm-gib", type=float, default=4.0,
                        help="touch this much memory first (first touches of VM memory are slow)")
    args = parser.parse_args()
    warm = np.ones(int(args.warm_gib * 2**30), dtype=np.uint8)
    del warm

    tmp = Path(tempfile.mkdtemp(prefix="rnb-bench-"))
    os.environ.setdefault("RESUMABLE_NB_KEY_FILE", str(tmp / "hmac.key"))
    ip = InteractiveShell.instance()
    ip.register_magics(_Noop)
    ip.run_cell("%load_ext resumable_nb")
    ip.run_cell(f"%config ResumableNB.cache_dir = {str(tmp / 'cache')!r}")
    ip.run_cell("%config ResumableNB.verbose = False")
    ip.run_cell("a = 1")

    ip.run_cell("%%step one\nb = a + 1")
    plain, noop, hit = _median_ms(ip, ["b = a + 1", "%%noop\nb = a + 1", "%%step one\nb = a + 1"],
                                  args.repeat)
    print(f"one-line cell `b = a + 1` (median of {args.repeat})")
    print(f"  plain cell               {plain:8.3f} ms")
    print(f"  no-op cell magic         {noop:8.3f} ms")
    print(f"  %%step hit               {hit:8.3f} ms   ({hit / noop:.2f}x the no-op magic)")

    n = int(args.gib * 2**30) // 8
    ip.user_ns["n"] = n
    t = time.perf_counter()
    ip.run_cell("import numpy as np\nbig_src = np.random.default_rng(0).random(n)")
    make = time.perf_counter() - t
    gc.collect()
    t = time.perf_counter()
    ip.run_cell("%%step big\nbig = big_src * 1.0")
    miss = time.perf_counter() - t
    history = ip._resumable_nb_magics.runner.history  # type: ignore[attr-defined]
    compute = history[-1].duration
    ip.user_ns.pop("big")
    gc.collect()
    t = time.perf_counter()
    ip.run_cell("%%step big\nbig = big_src * 1.0")
    restore = time.perf_counter() - t
    assert history[-1].status == "cached" and np.array_equal(ip.user_ns["big"], ip.user_ns["big_src"])
    size = n * 8 / 2**30
    print(f"\n{size:.2f} GiB float64 output (array made in {make:.2f} s)")
    print(f"  miss: compute {compute:.2f} s, fingerprint+store {miss - compute:.2f} s "
          f"({size / max(miss - compute, 1e-9):.2f} GiB/s)")
    print(f"  hit:  fingerprint input + verify + restore {restore:.2f} s "
          f"({size / restore:.2f} GiB/s)")


if __name__ == "__main__":
    main()
