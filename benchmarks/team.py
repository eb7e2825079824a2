"""The team store: a hit from the bucket with a cold local folder, vs a local hit, vs recomputing.

Run: .venv/bin/python benchmarks/team.py [--mib 256] [--rounds 3] [--json results-team.json]

Starts a moto S3 server (``ThreadedMotoServer``) in a child process on 127.0.0.1. Every figure
is one ``%%step`` cell timed inside a fresh Python process running an IPython shell with the
extension loaded (so imports, the store's opening and the first-hit costs are in it):

- **recompute**: the step runs (``--mib`` MiB of ``numpy`` random numbers) and is stored in the
  local folder; its upload to the bucket is queued (timed separately, as "upload");
- **local hit**: a new process on the same folder;
- **bucket hit, cold folder**: a new process on a new, empty folder: the manifest is fetched and
  verified, the payload downloaded into ``tmp/`` and renamed into ``objects/``, then loaded as
  a local hit (MACs checked before unpickling).

Everything is on loopback with moto as the server, so the bucket figures measure our client
path plus moto (Python, single process), not a network: moto bounds them. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _moto import moto_server  # benchmarks/ is sys.path[0] when run as a script

BUCKET = "rnb-bench"

_CELL = ("%%step big\nimport numpy as np\n"
         "data = np.random.default_rng(0).random({n})\n")

_WORKER = r'''
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_cell("%load_ext resumable_nb")
cell, flush = sys.argv[1], sys.argv[2] == "1"
t = time.perf_counter()
result = ip.run_cell(cell)
step = time.perf_counter() - t
assert result.success, result.error_in_exec
magics = ip._resumable_nb_magics
status = magics.runner.history[-1].status
upload = None
if flush:
    t = time.perf_counter()
    assert magics.session.team.flush(600), "upload did not finish"
    upload = time.perf_counter() - t
ip.run_cell("%unload_ext resumable_nb")
print(json.dumps({"step_s": step, "status": status, "upload_s": upload}))
'''


def _run(env: dict[str, str], cache: Path, cell: str, flush: bool) -> dict[str, float | str | None]:
    out = subprocess.run([sys.executable, "-c", _WORKER, cell, "1" if flush else "0"],
                         env={**env, "RESUMABLE_NB_DIR": str(cache)}, capture_output=True,
                         text=True, check=True)
    result: dict[str, float | str | None] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    proc, endpoint = moto_server()
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket=BUCKET)
        figures: dict[str, list[float]] = {"recompute": [], "upload": [], "local hit": [],
                                           "bucket hit, cold folder": []}
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "team.key"
            key.write_bytes(os.urandom(32))
            key.chmod(0o600)
            env["RESUMABLE_NB_KEY_FILE"] = str(key)
            n = args.mib * (1 << 20) // 8
            for r in range(args.rounds):
                # A new prefix per round: the recompute is a true miss in the bucket as well.
                round_env = {**env, "RESUMABLE_NB_STORE": f"s3://{BUCKET}/round{r}"}
                cell = _CELL.format(n=n)
                a = Path(tmp) / f"a{r}"
                miss = _run(round_env, a, cell, flush=True)
                assert miss["status"] == "ran", miss
                figures["recompute"].append(float(miss["step_s"] or 0))
                figures["upload"].append(float(miss["upload_s"] or 0))
                hit = _run(round_env, a, cell, flush=False)
                assert hit["status"] == "cached", hit
                figures["local hit"].append(float(hit["step_s"] or 0))
                cold = _run(round_env, Path(tmp) / f"b{r}", cell, flush=False)
                assert cold["status"] == "cached", cold
                figures["bucket hit, cold folder"].append(float(cold["step_s"] or 0))
    finally:
        proc.terminate()
        proc.wait()
    print(f"{args.mib} MiB output, {args.rounds} rounds, fresh processes, moto on 127.0.0.1:")
    print(f"{'':26} {'median':>8} {'min':>8} {'max':>8}")
    for name, values in figures.items():
        print(f"{name:26} {statistics.median(values):7.2f}s {min(values):7.2f}s {max(values):7.2f}s")
    if args.json is not None:
        args.json.write_text(json.dumps({"mib": args.mib, "rounds": args.rounds, "seconds": figures},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
