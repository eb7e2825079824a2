"""Peak memory of a %resume that restores a big run, in a new process, against the data's size.

Run: .venv/bin/python benchmarks/memory.py [--gib 10] [--runs 1] [--lazy]

One process writes a run of ``--gib`` GiB: steps of about 1 GiB each (float64 arrays, and every
third one a DataFrame of float64, int64, float32, bool and categorical columns), stored and
journaled as a kernel running ``%%step`` cells would, one value in memory at a time. Then a
NEW process (a new kernel: a real InteractiveShell with numpy and pandas imported and the
extension loaded) runs ``%resume`` and reads its own ``/proc/self/status``:

  before  VmRSS just before %resume (after the peak is reset through /proc/self/clear_refs)
  peak    VmHWM after %resume: the most resident memory the process ever had
  extra   peak - before: what restoring cost, against the data restored (target <= 1.1x)

RssAnon and RssFile after %resume split that memory: a verified (default) restore maps the
cache files privately, so restored arrays are page-cache pages (RssFile, shared and
reclaimable) until written, and what the process allocated itself is RssAnon. The payload
files must fit in the page cache for the figure to mean "memory" rather than "disk reads".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GIB = 1 << 30


def status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    return out


def value(i: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(i)
    if i % 3 != 2:
        return rng.random(GIB // 8)
    import pandas as pd

    rows = GIB // 30
    cats = pd.Categorical.from_codes(rng.integers(0, 50, rows), [f"c{k}" for k in range(50)])
    return pd.DataFrame({"f64": rng.random(rows), "i64": rng.integers(0, 1 << 40, rows),
                         "f32": rng.random(rows, dtype="f4"), "b": rng.random(rows) > 0.5,
                         "cat": cats, "g64": rng.random(rows)})


def nbytes(v: Any) -> int:
    return int(v.memory_usage(index=True, deep=True).sum()) if hasattr(v, "columns") else int(v.nbytes)


def make(root: Path, gib: float) -> None:
    """A run of ``gib`` GiB, one step per ~1 GiB value, each stored then dropped."""
    import numpy  # noqa: F401 - as in a kernel
    import pandas  # noqa: F401

    from resumable_nb.journal import Journal
    from resumable_nb.store import Store

    store = Store(root)
    journal = Journal(store.dir, None, key=store.journal_key)  # type: ignore[arg-type]
    assert journal.acquire()
    journal.start_run()
    total = 0
    i = 0
    while total < gib * GIB:
        name, v = f"x{i}", value(i)
        source = f"{name} = value({i})"
        key = f"memory-bench-{i}"
        journal.step_started(f"s{i}", key, source)
        t = time.perf_counter()
        store.put(key, f"s{i}", {"outputs": {name: v}, "deleted": (), "events": [], "result": None},
                  {}, outputs=(name,), deleted=(), duration=1.0)
        journal.step_finished(f"s{i}", "ran", key=key, duration=time.perf_counter() - t,
                              outputs={name: nbytes(v)})
        total += nbytes(v)
        i += 1
        del v
    journal.end_run("completed")
    journal.release()
    store.close()
    print(json.dumps({"data": total, "steps": i}))


def restore(lazy: bool) -> None:
    import numpy  # noqa: F401 - a kernel that imports numpy and pandas, as a notebook does
    import pandas  # noqa: F401
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    for cell in ("%load_ext resumable_nb", "%config ResumableNB.verbose = False",
                 f"%config ResumableNB.lazy_arrays = {lazy}"):
        ip.run_cell(cell, store_history=False).raise_error()
    try:  # "5": reset the peak (VmHWM) to the current RSS (Linux 4.0+)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before = status()
    t = time.perf_counter()
    ip.run_cell("%resume", store_history=False).raise_error()
    seconds = time.perf_counter() - t
    after = status()
    restored = sum(nbytes(v) for k, v in ip.user_ns.items() if k.startswith("x") and k[1:].isdigit())
    print(json.dumps({"before": before, "after": after, "seconds": seconds, "restored": restored,
                      "peak_reset": reset}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--lazy", action="store_true", help="also measure the lazy restore")
    parser.add_argument("--child", choices=("make", "restore", "restore-lazy"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "make":
        make(Path(os.environ["RESUMABLE_NB_DIR"]), args.gib)
        return
    if args.child:
        restore(args.child == "restore-lazy")
        return

    work = Path(tempfile.mkdtemp(prefix="rnb-memory-", dir=os.environ.get("RNB_BENCH_DIR")))
    env = {**os.environ, "RESUMABLE_NB_KEY_FILE": str(work / "hmac.key"),
           "RESUMABLE_NB_DIR": str(work / "cache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def child(what: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, __file__, "--child", what, "--gib", str(args.gib)],
                             env=env, cwd=work, check=True, capture_output=True, text=True)
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    try:
        t = time.perf_counter()
        made = child("make")
        print(f"wrote a run of {made['steps']} steps, {made['data'] / GIB:.2f} GiB of data, "
              f"in {time.perf_counter() - t:.0f} s", flush=True)
        results = []
        for what in ("restore", "restore-lazy") if args.lazy else ("restore",):
            for _ in range(args.runs):
                r = child(what)
                # The same data, up to how deep memory_usage counts a restored categorical's labels.
                assert abs(r["restored"] - made["data"]) < 1 << 20, (r["restored"], made["data"])
                data = r["restored"]
                before, after = r["before"], r["after"]
                extra = after["VmHWM"] - before["VmRSS"]
                row = {"restore": what, "seconds": r["seconds"], "data": data,
                       "rss_before": before["VmRSS"], "peak": after["VmHWM"], "extra": extra,
                       "extra_ratio": extra / data, "anon_after": after["RssAnon"],
                       "file_after": after["RssFile"], "peak_reset": r["peak_reset"]}
                results.append(row)
                print(f"{what}: %resume {r['seconds']:.1f} s; RSS before {before['VmRSS'] / GIB:.2f} GiB, "
                      f"peak {after['VmHWM'] / GIB:.2f} GiB; peak - before = {extra / GIB:.2f} GiB = "
                      f"{extra / data:.3f} x the data (target <= 1.1); after: anonymous "
                      f"{after['RssAnon'] / GIB:.2f} GiB, file-backed {after['RssFile'] / GIB:.2f} GiB",
                      flush=True)
        out = Path(__file__).with_name("results-memory.json")
        out.write_text(json.dumps({"gib": args.gib, "date": time.strftime("%Y-%m-%d"),
                                   "results": results}, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
