"""How long %resume takes for a 1,000-step run, with and without loading the data.

Run: .venv/bin/python benchmarks/resume_1000.py [--steps 1000]

Runs N tiny steps (one small output each, some names rewritten) in a real InteractiveShell,
then in a "new kernel" (namespace reset, extension reloaded) times:
  plan  = read the journal + fold it into runs + compute last writers (no payload loads),
  total = the whole %resume (plan + loading and verifying every needed entry + binding).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from IPython.core.interactiveshell import InteractiveShell

from resumable_nb.journal import chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rnb-resume-"))
    os.environ.setdefault("RESUMABLE_NB_KEY_FILE", str(tmp / "hmac.key"))
    os.environ["RESUMABLE_NB_DIR"] = str(tmp / "cache")
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext resumable_nb")
    ip.run_cell("%config ResumableNB.verbose = False")
    t = time.perf_counter()
    for i in range(args.steps):
        ip.run_cell(f"%%step s{i}\nv{i % 100} = {i}\nw{i} = [{i}] * 10", store_history=False)
    made = time.perf_counter() - t
    ip.run_cell("%unload_ext resumable_nb")
    ip.reset(new_session=False)
    ip.run_cell("%load_ext resumable_nb")
    session = ip._resumable_nb_magics.session  # type: ignore[attr-defined]

    t = time.perf_counter()
    journal = session.journal()
    runs, _ = journal.read()
    latest = [r for r in runs.values() if r.steps][-1]
    steps = chain(runs, latest.run)
    writer: dict[str, int] = {}
    for i, s in enumerate(steps):
        for name in s.outputs:
            writer[name] = i
    plan = time.perf_counter() - t

    t = time.perf_counter()
    ip.run_cell("%resume", store_history=False)
    total = time.perf_counter() - t
    assert ip.user_ns[f"w{args.steps - 1}"] == [args.steps - 1] * 10
    print(f"{args.steps} steps made in {made:.1f} s; journal {journal.path.stat().st_size / 1e6:.2f} MB")
    print(f"%resume plan (journal read + fold + last writers): {plan * 1e3:.0f} ms")
    print(f"%resume total ({len(set(writer.values()))} entries loaded and verified): {total * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
