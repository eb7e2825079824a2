"""The cost of file inputs: a step naming one 1 GiB file, hit in new processes.

Run: .venv/bin/python benchmarks/files.py [--runs 3] [--size-mib 1024]

Writes one file of ``--size-mib`` MiB (random bytes, its mtime set a minute back so its hash
may be remembered), stores two steps in a setup process — one whose code names the file, one
that names nothing — then starts a NEW Python process per figure, with no warm-up:

- ``first``: the remembered hashes deleted, so the hit hashes the whole file (BLAKE3, both
  cores) before it can look the key up;
- ``unchanged``: the hashes a previous kernel saved (signed, next to the journal) are there, so
  the file costs a ``stat``;
- ``no file``: the same hit for a step that names no file;
- ``read``: a plain ``open(...).read()`` of the file in a new process (what the step itself
  would pay to read it).

The file is in the page cache throughout (it was just written): these are warm-cache figures,
not disk speed. Prints medians in ms and the ratios. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILE_STEP = "%%step with_file\nn = len('big.bin')"
PLAIN_STEP = "%%step no_file\nn = len('no such file')"


def child(mode: str, cache: Path) -> None:
    if mode == "read":
        start = time.perf_counter()
        with open("big.bin", "rb") as f:
            f.read()
        print(time.perf_counter() - start)
        return
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext resumable_nb")
    ip.run_cell(f"%config ResumableNB.cache_dir = {str(cache)!r}")
    ip.run_cell("%config ResumableNB.verbose = False")
    runner = ip.find_cell_magic("step").__self__.runner
    step = {"setup": None, "first": FILE_STEP, "unchanged": FILE_STEP, "nofile": PLAIN_STEP}[mode]
    if step is None:
        for cell in (FILE_STEP, PLAIN_STEP):
            ip.run_cell(cell)
        return
    start = time.perf_counter()
    ip.run_cell(step)
    elapsed = time.perf_counter() - start
    assert runner.history[-1].status == "cached", runner.history[-1]
    print(elapsed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = work / ".cache"
        big = work / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        old = time.time() - 60
        os.utime(big, (old, old))
        env = {**os.environ, "RESUMABLE_NB_KEY_FILE": str(work / "hmac.key")}

        def run(mode: str) -> float:
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(cache)], cwd=work,
                                 env=env, check=True, capture_output=True, text=True)
            return float(out.stdout.strip().splitlines()[-1]) if mode != "setup" else 0.0

        run("setup")
        saved = cache / "journal" / "file-hashes.json"
        figures: dict[str, list[float]] = {m: [] for m in ("first", "unchanged", "nofile", "read")}
        for _ in range(args.runs):
            saved.unlink(missing_ok=True)
            figures["first"].append(run("first"))  # saves the hashes again
            figures["unchanged"].append(run("unchanged"))
            figures["nofile"].append(run("nofile"))
            figures["read"].append(run("read"))
    med = {k: statistics.median(v) * 1000 for k, v in figures.items()}
    print(f"{args.size_mib} MiB file, medians of {args.runs} new processes (ms): "
          + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    print(f"first check (hit incl. hashing) / plain read of the file: {med['first'] / med['read']:.2f}")
    print(f"unchanged hit / hit without the file: {med['unchanged'] / med['nofile']:.3f} "
          f"(+{med['unchanged'] - med['nofile']:.1f} ms)")
    print(f"first hit / hit without the file: {med['first'] / med['nofile']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
