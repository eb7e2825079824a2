"""A moto S3 server on 127.0.0.1 in a child process, for the team-store benchmarks."""

from __future__ import annotations

import subprocess
import sys


def moto_server() -> tuple[subprocess.Popen[str], str]:
    """Start it; (the process, its endpoint URL). Stop it with ``proc.kill()``."""
    code = ("from moto.server import ThreadedMotoServer; import time\n"
            "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start()\n"
            "print(s.get_host_and_port()[1], flush=True)\n"
            "time.sleep(86400)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    return proc, f"http://127.0.0.1:{port}"
