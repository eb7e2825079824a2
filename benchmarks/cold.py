"""Restores and stores in NEW processes: resumable_nb against its peers and the raw limits.

Run (from this file: joblib identifies a cached function by its file, so from a ``-c`` string
every call would recompute):

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/cold.py [--sizes 8,256,1024] [--runs 5] [--no-docs]

For each size (MiB) a float64 array, and a DataFrame of about that size (float64, int64,
float32, bool and categorical columns), are stored once per tool. Then every single
measurement starts a new Python process from this file, with no memory warm-up: it imports
numpy, pandas and the tool (what a kernel has after ``import``/``%load_ext``), then times one
restore of a file that is in the page cache (written just before). Medians of ``--runs``.

- resumable_nb: ``Store(root)`` + ``get`` + ``load`` (verified: every buffer's MAC checked),
  and the opt-in ``lazy`` restore (buffer MACs not checked);
- ``pickle.load`` from an open file; ``joblib.Memory`` (a hit of a cached function defined in
  this file; the function appends to a counter file, and a "restore" that recomputed is
  rejected, not timed); ``dill.load_module`` (if dill imports); ``numpy.load(mmap_mode="r")``;
- limits: ``readinto`` of the whole file into fresh ``numpy.empty`` memory, and ``mmap``
  (private) + keyed BLAKE3 or AES-GMAC over the mapping (what a verified mapped restore with
  that MAC cannot beat).

Stores: resumable_nb ``put`` vs the raw ``os.write`` + ``fsync`` of the same bytes, each in a
new process. Writes results to benchmarks/results-cold.json and a section of
docs/performance.md (between the ``cold:begin`` / ``cold:end`` markers). The 2 cores are
shared with other work: figures are noisy, hence medians, and the targets are ratios
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
KINDS = ("array", "frame")
RESTORES = ("resumable_nb", "resumable_nb_lazy", "pickle", "joblib", "dill", "numpy_mmap",
            "raw_readinto", "raw_mmap_blake3", "raw_mmap_gmac")


# -- data, made the same way in every process ------------------------------------------------
def make(kind: str, mib: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(mib)
    if kind == "array":
        return rng.random(mib * MIB // 8)
    import pandas as pd

    rows = mib * MIB // 30  # 8 + 8 + 4 + 1 + ~1 bytes... plus the float64 column below: ~30 B
    cats = pd.Categorical.from_codes(rng.integers(0, 50, rows), [f"c{i}" for i in range(50)])
    return pd.DataFrame({"f64": rng.random(rows), "i64": rng.integers(0, 1 << 40, rows),
                         "f32": rng.random(rows, dtype="f4"), "b": rng.random(rows) > 0.5,
                         "cat": cats, "g64": rng.random(rows)})


def nbytes(value: Any) -> int:
    return int(value.nbytes) if hasattr(value, "nbytes") and not hasattr(value, "columns") \
        else int(value.memory_usage(index=True, deep=True).sum())


def counter_file(work: Path) -> Path:
    return work / "joblib-calls.log"


def computed(kind: str, mib: int, counter: str) -> Any:
    """The joblib-cached function: every real call leaves a line in the counter file."""
    with open(counter, "a") as f:
        f.write(f"{kind} {mib}\n")
    return make(kind, mib)


# -- children ---------------------------------------------------------------------------------
def _memory() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def child_store(work: Path, tool: str, kind: str, mib: int) -> dict[str, Any]:
    import numpy  # noqa: F401 - as in a kernel: imported before the store
    import pandas  # noqa: F401

    value = make(kind, mib)
    where = work / f"{kind}-{mib}"
    where.mkdir(exist_ok=True)
    if tool == "resumable_nb":
        from resumable_nb.store import Store

        root = where / f"rnb-{time.monotonic_ns()}"  # a new entry each run (content-addressed)
        store = Store(root)
        t = time.perf_counter()
        store.put("k", "s", {"outputs": {"x": value}, "deleted": (), "events": [], "result": None},
                  {}, outputs=("x",), deleted=(), duration=1.0)
        seconds = time.perf_counter() - t
        store.close()
        shutil.rmtree(root)
        return {"seconds": seconds}
    if tool == "raw_write_fsync":
        import numpy as np

        data = memoryview(np.ascontiguousarray(value) if kind == "array" else
                          np.concatenate([np.ascontiguousarray(value[c]).view("u1")
                                          for c in value.columns if c != "cat"])).cast("B")
        path = where / f"raw-{time.monotonic_ns()}"
        t = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        for start in range(0, len(data), 1 << 24):
            view = data[start:start + (1 << 24)]
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
        os.fsync(fd)
        os.close(fd)
        seconds = time.perf_counter() - t
        os.unlink(path)
        return {"seconds": seconds, "bytes": len(data)}
    raise ValueError(tool)


def prepare(work: Path, kind: str, mib: int) -> None:
    """Store the value once per tool (in its own process)."""
    import pickle

    import numpy as np

    value = make(kind, mib)
    where = work / f"{kind}-{mib}"
    where.mkdir(exist_ok=True)
    from resumable_nb.store import Store

    store = Store(where / "rnb")
    store.put("k", "s", {"outputs": {"x": value}, "deleted": (), "events": [], "result": None},
              {}, outputs=("x",), deleted=(), duration=1.0)
    store.close()
    with open(where / "value.pkl", "wb") as f:
        pickle.dump(value, f, protocol=5)
    if kind == "array":
        np.save(where / "value.npy", value)
        value.tofile(where / "raw.bin")
    else:
        with open(where / "raw.bin", "wb") as f:
            f.write(pickle.dumps(value, protocol=5))
    try:
        import joblib
    except ImportError:
        pass
    else:
        joblib.Memory(str(where / "joblib"), verbose=0).cache(computed)(kind, mib, str(counter_file(work)))
    try:
        import dill
    except ImportError:
        pass
    else:
        import types

        module = types.ModuleType("__main__")
        module.x = value  # type: ignore[attr-defined]
        dill.dump_module(str(where / "session.dill"), module=module, refimported=True)


def child_restore(work: Path, tool: str, kind: str, mib: int) -> dict[str, Any]:
    import numpy as np
    import pandas  # noqa: F401

    where = work / f"{kind}-{mib}"
    key = os.environ.get("RESUMABLE_NB_KEY_FILE")
    base = _memory()["VmRSS"]  # after the imports a kernel has: what the restore adds is measured
    if tool.startswith("resumable_nb"):
        from resumable_nb.store import Store

        t = time.perf_counter()
        store = Store(where / "rnb")
        entry = store.get("k")
        assert entry is not None
        value = store.load(entry, {}, lazy=tool.endswith("lazy"))["outputs"]["x"]
    elif tool == "pickle":
        import pickle

        t = time.perf_counter()
        with open(where / "value.pkl", "rb") as f:
            value = pickle.load(f)
    elif tool == "joblib":
        import joblib

        counter = counter_file(work)
        before = counter.read_text().count("\n")
        t = time.perf_counter()
        value = joblib.Memory(str(where / "joblib"), verbose=0).cache(computed)(kind, mib, str(counter))
        seconds = time.perf_counter() - t
        if counter.read_text().count("\n") != before:
            return {"rejected": "joblib recomputed instead of restoring"}
        return {"seconds": seconds, "check": _check(value, kind), **_memory()}
    elif tool == "dill":
        import dill

        t = time.perf_counter()
        module = dill.load_module(str(where / "session.dill"))
        value = module.x
    elif tool == "numpy_mmap":
        if kind != "array":
            return {"skipped": "arrays only"}
        t = time.perf_counter()
        value = np.load(where / "value.npy", mmap_mode="r")
    elif tool == "raw_readinto":
        t = time.perf_counter()
        with open(where / "raw.bin", "rb", buffering=0) as f:
            value = np.empty(os.fstat(f.fileno()).st_size, dtype=np.uint8)
            view = memoryview(value)
            got = 0
            while got < len(view):
                got += f.readinto(view[got:got + (1 << 24)])
        seconds = time.perf_counter() - t
        return {"seconds": seconds, **_memory()}
    elif tool == "raw_mmap_gmac":
        from resumable_nb.bufmac import _gmac  # the check a verified restore of a big buffer makes

        t = time.perf_counter()
        fd = os.open(where / "raw.bin", os.O_RDONLY)
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
        os.close(fd)
        _gmac(b"k" * 32, b"n" * 12, memoryview(mapping))
        value = np.frombuffer(mapping, dtype=np.uint8)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, **_memory()}
    elif tool == "raw_mmap_blake3":
        import blake3

        t = time.perf_counter()
        fd = os.open(where / "raw.bin", os.O_RDONLY)
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
        os.close(fd)
        blake3.blake3(memoryview(mapping), key=b"k" * 32, max_threads=blake3.blake3.AUTO).digest()
        value = np.frombuffer(mapping, dtype=np.uint8)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, **_memory()}
    else:
        raise ValueError(tool)
    seconds = time.perf_counter() - t
    del key
    return {"seconds": seconds, "check": _check(value, kind), "base": base, **_memory()}


def _check(value: Any, kind: str) -> str:
    """A cheap identity of the restored value (shape and a few elements), outside the timing."""
    if kind == "array":
        return f"{value.shape} {float(value[0]):.6f} {float(value[-1]):.6f}"
    return f"{value.shape} {float(value['f64'].iloc[0]):.6f} {float(value['g64'].iloc[-1]):.6f}"


# -- the parent -------------------------------------------------------------------------------
def run_child(work: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", str(work), *args], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import numpy
    import pandas

    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(ram / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "numpy": numpy.__version__, "pandas": pandas.__version__,
            "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="8,256,1024", help="MiB, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kinds", default="array,frame")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--mib", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        if args.op == "prepare":
            prepare(args.child, args.kind, args.mib)
            print("{}")
        elif args.op == "store":
            print(json.dumps(child_store(args.child, args.tool, args.kind, args.mib)))
        else:
            print(json.dumps(child_restore(args.child, args.tool, args.kind, args.mib)))
        return

    work = Path(tempfile.mkdtemp(prefix="rnb-cold-", dir=os.environ.get("RNB_BENCH_DIR")))
    env = {**os.environ, "RESUMABLE_NB_KEY_FILE": str(work / "hmac.key"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    results: dict[str, Any] = {"machine": machine(), "runs": args.runs, "restore": {}, "store": {},
                               "memory": {}}
    try:
        for mib in sizes:
            for kind in kinds:
                run_child(work, env, "--op", "prepare", "--kind", kind, "--mib", str(mib))
                label = f"{kind} {mib} MiB"
                series: dict[str, Any] = {}
                checks: set[str] = set()
                # Interleave the tools run by run, so a burst of load on the shared cores
                # hits all of them alike.
                samples: dict[str, list[float]] = {t: [] for t in RESTORES}
                notes: dict[str, str] = {}
                for _ in range(args.runs):
                    for tool in RESTORES:
                        r = run_child(work, env, "--op", "restore", "--tool", tool, "--kind", kind,
                                      "--mib", str(mib))
                        if "seconds" in r:
                            samples[tool].append(r["seconds"])
                            if "check" in r:
                                checks.add(r["check"])
                            if tool == "resumable_nb":
                                results["memory"].setdefault(label, []).append(r)
                        else:
                            notes[tool] = r.get("rejected") or r.get("skipped") or "?"
                if len(checks) != 1:
                    raise SystemExit(f"{label}: tools restored different values: {checks}")
                for tool in RESTORES:
                    if samples[tool]:
                        series[tool] = {"median_s": statistics.median(samples[tool]),
                                        "runs_s": samples[tool]}
                    else:
                        series[tool] = {"note": notes.get(tool, "not run")}
                results["restore"][label] = series
                print(label, {t: round(v.get("median_s", float("nan")) * 1e3, 1) for t, v in series.items()},
                      flush=True)
            if mib >= 256:
                st: dict[str, list[float]] = {"resumable_nb": [], "raw_write_fsync": []}
                for _ in range(args.runs):
                    for tool in st:
                        st[tool].append(run_child(work, env, "--op", "store", "--tool", tool,
                                                  "--kind", "array", "--mib", str(mib))["seconds"])
                results["store"][f"array {mib} MiB"] = {
                    t: {"median_s": statistics.median(v), "runs_s": v} for t, v in st.items()}
                print(f"store array {mib} MiB", {t: round(statistics.median(v) * 1e3) for t, v in st.items()},
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = targets(results)
    results["targets"] = table
    (ROOT / "benchmarks" / "results-cold.json").write_text(json.dumps(results, indent=1) + "\n")
    text = render(results, table, " ".join(sys.argv[1:]))
    print(text)
    if not args.no_docs:
        doc = ROOT / "docs" / "performance.md"
        old = doc.read_text()
        block = f"<!-- cold:begin -->\n{text}<!-- cold:end -->"
        if "<!-- cold:begin -->" in old:
            new = re.sub(r"<!-- cold:begin -->.*<!-- cold:end -->", lambda _: block, old, flags=re.S)
        else:
            new = old.rstrip("\n") + "\n\n" + block + "\n"
        doc.write_text(new)


def _median(results: dict[str, Any], label: str, tool: str, what: str = "restore") -> float | None:
    value = results[what].get(label, {}).get(tool, {}).get("median_s")
    return float(value) if value is not None else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: float, above: bool = True) -> None:
        met = value is not None and (value >= goal if above else value <= goal)
        rows.append({"target": name, "measured": value, "goal": f"{'>=' if above else '<='} {goal}",
                     "met": met})

    for label in results["restore"]:
        if label.split()[1] == "8":
            continue  # the targets are about the big sizes; 8 MiB is reported, not targeted
        ours = _median(results, label, "resumable_nb")
        for peer, goal in (("joblib", 1.2), ("pickle", 3.0)):
            theirs = _median(results, label, peer)
            add(f"cold restore {label}: {peer} / resumable_nb (verified)",
                theirs / ours if ours and theirs else None, goal)
    for label, st in results["store"].items():
        if label.endswith("1024 MiB"):
            add(f"store {label}: resumable_nb / raw write+fsync",
                st["resumable_nb"]["median_s"] / st["raw_write_fsync"]["median_s"], 1.3, above=False)
    for label, runs in results["memory"].items():
        if label.startswith("array") and label.endswith("1024 MiB"):
            # What the restore adds to the process (peak RSS, mapped page cache included, minus
            # the RSS of the interpreter, numpy and pandas before it), as benchmarks/memory.py
            # measures a 10 GiB %resume.
            peak = statistics.median(r["VmHWM"] - r["base"] for r in runs)
            anon = statistics.median(r["RssAnon"] - r["base"] for r in runs)
            data = 1024 * MIB
            rows.append({"target": f"restore {label}: peak memory added / data (mapped page cache "
                                   f"included; anonymous {max(anon, 0) / data:.2f})",
                         "measured": peak / data, "goal": "<= 1.1", "met": peak / data <= 1.1})
    return rows


def render(results: dict[str, Any], table: list[dict[str, Any]], argv: str) -> str:
    m = results["machine"]
    lines = [
        "## Cold restores and stores (new processes)", "",
        f"`benchmarks/cold.py {argv}`".replace(" `", "`"), "",
        f"{m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, Python "
        f"{m['python']}, numpy {m['numpy']}, pandas {m['pandas']}; {m['date']}. Every figure is "
        f"the median of {results['runs']} new processes (each from the script file, no memory "
        "warm-up, the file in the page cache); the 2 cores are shared with other work, so single "
        "runs vary by 2-5x: compare ratios, which are measured in the same run.", "",
        "| restore, ms | " + " | ".join(RESTORES) + " |",
        "|---|" + "---:|" * len(RESTORES),
    ]
    for label, series in results["restore"].items():
        cells = []
        for tool in RESTORES:
            s = series.get(tool, {})
            cells.append(f"{s['median_s'] * 1e3:.1f}" if "median_s" in s else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "`resumable_nb` verifies every buffer's MAC; `_lazy` does not (opt-in); "
              "`numpy_mmap` reads nothing; `raw_readinto` is the limit of reading into fresh "
              "memory, `raw_mmap_blake3` and `raw_mmap_gmac` of verifying a private mapping with "
              "either MAC (resumable_nb uses GMAC for buffers of 1 MiB and more on this machine).", ""]
    if results["store"]:
        lines += ["| store, ms | resumable_nb | raw write + fsync |", "|---|---:|---:|"]
        for label, st in results["store"].items():
            lines.append(f"| {label} | {st['resumable_nb']['median_s'] * 1e3:.0f} | "
                         f"{st['raw_write_fsync']['median_s'] * 1e3:.0f} |")
        lines.append("")
    lines += ["| target | measured | goal | |", "|---|---:|---|---|"]
    for row in table:
        value = "n/a" if row["measured"] is None else f"{row['measured']:.2f}"
        lines.append(f"| {row['target']} | {value} | {row['goal']} | {'met' if row['met'] else 'NOT met'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
