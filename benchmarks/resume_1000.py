"""How long %resume takes in a NEW process for a run of N steps, with and without loading the data.

Run: .venv/bin/python benchmarks/resume_1000.py [--steps 1000] [--runs 3]

One process writes a run of N tiny steps (two small outputs each, one of 100 names rewritten
every step), through the store and the journal as the runner writes them (see ``make``).
Then each of ``--runs`` NEW processes (from this file: a new kernel) starts an
InteractiveShell, loads the extension and times:
  plan  = read and verify the journal + fold it into runs + compute last writers (no payload
          loads), in one process;
  total = the whole %resume (plan + loading and verifying every needed entry + binding), in
          another: nothing of the first one's work is reused.
Prints the medians (wall time, and the process's CPU time, which the load of other work on
shared cores does not inflate); the target is a 10,000-step %resume under 2 s.
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
from typing import Any


def shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext resumable_nb").raise_error()
    ip.run_cell("%config ResumableNB.verbose = False").raise_error()
    return ip


def make(steps: int) -> None:
    """The run a kernel leaves after N ``%%step`` cells ``v{i % 100} = i; w{i} = [i] * 10``,
    written the way the runner writes it (Store.put, the journal's records, fsyncs included)
    but without a shell: a kernel with 10,000 names spends most of each miss on checks that
    walk its namespace (aliasing, 30-60 ms a step here), which has nothing to do with %resume."""
    import hashlib

    from resumable_nb.journal import Journal
    from resumable_nb.store import Store

    store = Store(Path(os.environ["RESUMABLE_NB_DIR"]))
    journal = Journal(store.dir, None, key=store.journal_key)  # type: ignore[arg-type]
    assert journal.acquire()
    t = time.perf_counter()
    journal.start_run()
    for i in range(steps):
        name, source = f"s{i}", f"v{i % 100} = {i}\nw{i} = [{i}] * 10"
        key = "step-" + hashlib.sha256(source.encode()).hexdigest()
        outputs = {f"v{i % 100}": i, f"w{i}": [i] * 10}
        journal.step_started(name, key, source)
        entry = store.put(key, name, {"outputs": outputs, "deleted": (), "events": [], "result": None,
                                      "mutated": []}, {}, outputs=tuple(outputs), deleted=(),
                          duration=0.0005, extra={"reason": "not in the cache yet"})
        journal.step_finished(name, "ran", key=key, duration=0.0005, outputs=entry.output_sizes,
                              reason="not in the cache yet", inputs={})
    journal.end_run("completed")
    journal.release()
    store.close()
    print(json.dumps({"made_s": time.perf_counter() - t}))


def plan() -> None:
    from resumable_nb.journal import chain

    ip = shell()
    session = ip._resumable_nb_magics.session
    t = time.perf_counter()
    journal = session.journal()
    runs, _ = journal.read()
    latest = [r for r in runs.values() if r.steps][-1]
    steps = chain(runs, latest.run)
    writer: dict[str, int] = {}
    for i, s in enumerate(steps):
        for name in s.outputs:
            writer[name] = i
    seconds = time.perf_counter() - t
    print(json.dumps({"plan_s": seconds, "entries": len(set(writer.values())),
                      "journal_mb": journal.path.stat().st_size / 1e6}))


def resume(steps: int) -> None:
    ip = shell()
    t, cpu = time.perf_counter(), time.process_time()
    ip.run_cell("%resume", store_history=False).raise_error()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert ip.user_ns[f"w{steps - 1}"] == [steps - 1] * 10
    assert ip.user_ns["v0"] == steps - 1 - (steps - 1) % 100
    print(json.dumps({"total_s": seconds, "cpu_s": cpu}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="keep the run here; reuse it if it is there")
    parser.add_argument("--child", choices=("make", "plan", "resume"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "make":
        make(args.steps)
        return
    if args.child == "plan":
        plan()
        return
    if args.child == "resume":
        resume(args.steps)
        return

    tmp = args.dir or Path(tempfile.mkdtemp(prefix="rnb-resume-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RESUMABLE_NB_KEY_FILE": str(tmp / "hmac.key"),
           "RESUMABLE_NB_DIR": str(tmp / "cache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a kernel imports from bytecode

    def child(what: str) -> dict[str, float]:
        out = subprocess.run([sys.executable, __file__, "--child", what, "--steps", str(args.steps)],
                             env=env, cwd=tmp, check=True, capture_output=True, text=True)
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    reuse = (tmp / "made.json").exists()
    made = json.loads((tmp / "made.json").read_text()) if reuse else child("make")
    (tmp / "made.json").write_text(json.dumps(made))
    plans, totals, cpus = [], [], []
    for _ in range(args.runs):
        p = child("plan")
        plans.append(p["plan_s"])
        r = child("resume")
        totals.append(r["total_s"])
        cpus.append(r["cpu_s"])
    if args.dir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.steps} steps made in {made['made_s']:.1f} s; journal {p['journal_mb']:.2f} MB")
    print(f"new process, %resume plan (journal read + fold + last writers): "
          f"{statistics.median(plans) * 1e3:.0f} ms (runs: {', '.join(f'{x * 1e3:.0f}' for x in plans)})")
    print(f"new process, %resume total ({p['entries']:.0f} entries loaded and verified): "
          f"{statistics.median(totals) * 1e3:.0f} ms, CPU {statistics.median(cpus) * 1e3:.0f} ms "
          f"(runs: {', '.join(f'{x * 1e3:.0f}' for x in totals)})")


if __name__ == "__main__":
    main()
