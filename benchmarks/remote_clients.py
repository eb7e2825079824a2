"""Which S3 client for the remote store: boto3 or obstore (s3fs: import time only)?

Run: .venv/bin/python benchmarks/remote_clients.py [--mib 256] [--gets 200]

Starts a moto S3 server (``ThreadedMotoServer``) in a child process on 127.0.0.1, then runs
each client in a fresh process of its own, so that every figure includes nothing another
client imported or warmed up: import time, upload and download of one ``--mib`` file
(streamed from/to disk, multipart, 8 MiB parts, 4 in flight), the peak RSS of that process,
and the latency of small (1 KiB) GETs. Not a test: nothing is asserted. Everything runs on
loopback, so the transfer figures measure client overhead plus moto, not a network.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _moto import moto_server  # benchmarks/ is sys.path[0] when run as a script

BUCKET = "rnb-bench"
PART = 8 << 20
CONCURRENCY = 4


def _worker(client: str, path: Path, gets: int) -> dict[str, float]:
    """One client, in this (fresh) process. Returns seconds / milliseconds / MiB."""
    out: dict[str, float] = {}
    t = time.perf_counter()
    if client == "boto3":
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
    elif client == "obstore":
        import obstore
        from obstore.store import S3Store
    elif client == "s3fs":
        import s3fs  # noqa: F401 - import time only (see docs/architecture.md)
        out["import_s"] = time.perf_counter() - t
        return out
    out["import_s"] = time.perf_counter() - t
    size = path.stat().st_size
    down = path.with_suffix(f".{client}")
    small = os.urandom(1024)
    latencies = []
    if client == "boto3":
        t = time.perf_counter()
        s3 = boto3.client("s3", config=Config(connect_timeout=2, read_timeout=10))
        out["client_s"] = time.perf_counter() - t
        cfg = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART,
                             max_concurrency=CONCURRENCY)
        t = time.perf_counter()
        s3.upload_file(str(path), BUCKET, "big-boto3", Config=cfg)
        out["upload_s"] = time.perf_counter() - t
        t = time.perf_counter()
        s3.download_file(BUCKET, "big-boto3", str(down), Config=cfg)
        out["download_s"] = time.perf_counter() - t
        s3.put_object(Bucket=BUCKET, Key="small-boto3", Body=small)
        for _ in range(gets):
            t = time.perf_counter()
            s3.get_object(Bucket=BUCKET, Key="small-boto3")["Body"].read()
            latencies.append(time.perf_counter() - t)
    else:
        t = time.perf_counter()
        store = S3Store(BUCKET, client_options={"allow_http": True, "connect_timeout": "2s",
                                                "timeout": "120s"})
        out["client_s"] = time.perf_counter() - t
        t = time.perf_counter()
        obstore.put(store, "big-obstore", path, chunk_size=PART, max_concurrency=CONCURRENCY)
        out["upload_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with open(down, "wb") as f:
            for chunk in obstore.get(store, "big-obstore").stream(min_chunk_size=PART):
                f.write(chunk)
        out["download_s"] = time.perf_counter() - t
        obstore.put(store, "small-obstore", small)
        for _ in range(gets):
            t = time.perf_counter()
            bytes(obstore.get(store, "small-obstore").bytes())
            latencies.append(time.perf_counter() - t)
    assert down.stat().st_size == size
    down.unlink()
    latencies.sort()
    out["get_small_median_ms"] = statistics.median(latencies) * 1e3
    out["get_small_p95_ms"] = latencies[int(len(latencies) * 0.95)] * 1e3
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _best(client: str, path: Path, gets: int, rounds: int, env: dict[str, str]) -> dict[str, float] | None:
    """The fastest of ``rounds`` fresh-process runs of one client (per figure)."""
    runs = []
    for _ in range(rounds):
        r = subprocess.run([sys.executable, __file__, "--worker", client, "--file", str(path),
                            "--gets", str(gets)], env=env, capture_output=True, text=True)
        if r.returncode:
            print(r.stderr.strip().splitlines()[-1:], file=sys.stderr)
            return None
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {k: min(run[k] for run in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2,
                        help="transfer runs per client (the first moto multipart upload is slower: "
                             "the best round is shown)")
    parser.add_argument("--imports", type=int, default=5, help="fresh processes per import figure")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, Path(args.file), args.gets)))
        return

    proc, endpoint = moto_server()
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        make_bucket = f"import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')"
        subprocess.run([sys.executable, "-c", make_bucket], env=env, check=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "payload.bin"
            with open(path, "wb") as f:
                for _ in range(args.mib):
                    f.write(os.urandom(1 << 20))
                f.flush()
                os.fsync(f.fileno())  # no writeback competing with the first client measured
            print(f"moto {endpoint}; file {args.mib} MiB; parts {PART >> 20} MiB x {CONCURRENCY}; "
                  f"{args.gets} small GETs; transfers: best of {args.rounds} rounds; "
                  f"imports: median of {args.imports} fresh processes")
            header = (f"{'client':8} {'import':>8} {'upload':>8} {'MiB/s':>6} {'download':>8} {'MiB/s':>6} "
                      f"{'GET 1KiB med/p95':>17} {'peak RSS':>9}")
            print(header)
            for client in ("obstore", "boto3", "s3fs"):
                imports = []
                for _ in range(args.imports):
                    r = subprocess.run([sys.executable, __file__, "--worker", client, "--file", str(path),
                                        "--gets", "0"] if client == "s3fs" else
                                       [sys.executable, "-c", f"import time; t=time.perf_counter(); "
                                        f"import {client}; print(time.perf_counter()-t)"],
                                       env=env, capture_output=True, text=True)
                    if r.returncode:
                        imports.append(float("nan"))
                        break
                    line = r.stdout.strip().splitlines()[-1]
                    imports.append(json.loads(line)["import_s"] if client == "s3fs" else float(line))
                imp = statistics.median(imports) * 1e3
                if client == "s3fs":
                    print(f"{client:8} {imp:6.0f}ms   (import only)")
                    continue
                m = _best(client, path, args.gets, args.rounds, env)
                if m is None:
                    print(f"{client:8} failed")
                    continue
                print(f"{client:8} {imp:6.0f}ms {m['upload_s']:7.2f}s {args.mib / m['upload_s']:6.0f} "
                      f"{m['download_s']:7.2f}s {args.mib / m['download_s']:6.0f} "
                      f"{m['get_small_median_ms']:8.2f}/{m['get_small_p95_ms']:5.2f}ms "
                      f"{m['peak_rss_mib']:6.0f}MiB")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
