"""Real ipykernel kernels for tests, driven with jupyter_client."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager


@dataclass
class Reply:
    """What one execute request produced, in order."""

    status: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.messages
                       if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(m["content"]["text"] for m in self.messages
                       if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")

    @property
    def outputs(self) -> list[tuple[str, Any]]:
        """(kind, payload) per output: stream text, display/result mime bundles, errors."""
        out: list[tuple[str, Any]] = []
        for m in self.messages:
            kind, c = m["msg_type"], m["content"]
            if kind == "stream":
                if out and out[-1][0] == c["name"]:
                    out[-1] = (c["name"], out[-1][1] + c["text"])
                else:
                    out.append((c["name"], c["text"]))
            elif kind in ("display_data", "execute_result"):
                out.append((kind, c["data"]))
            elif kind == "error":
                out.append(("error", c["ename"]))
        return out


class Kernel:
    """A python3 kernel with the extension's env (cache dir, key file) set."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("PYTEST_CURRENT_TEST", None)
        full_env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=full_env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> Reply:
        messages: list[dict[str, Any]] = []
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=messages.append,
                                            allow_stdin=False)
        return Reply(reply["content"]["status"], messages)

    def ok(self, code: str, timeout: float = 120) -> Reply:
        reply = self.run(code, timeout)
        if reply.status != "ok":
            raise AssertionError(f"kernel cell failed: {code!r}\n{reply.stdout}\n{reply.stderr}\n"
                                 f"{[m['content'] for m in reply.messages if m['msg_type'] == 'error']}")
        return reply

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel and bring back its repr, evaluated here."""
        import ast

        reply = self.ok(f"print(repr({expression}))")
        return ast.literal_eval(reply.stdout.strip())

    def run_until(self, code: str, marker: str, timeout: float = 60) -> None:
        """Send ``code`` and return once ``marker`` shows on stdout (the cell keeps running)."""
        self.kc.execute(code, allow_stdin=False)
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except Exception:  # queue.Empty
                continue
            if msg["msg_type"] == "stream":
                seen += msg["content"]["text"]
                if marker in seen:
                    return
            elif msg["msg_type"] == "error":
                raise AssertionError(f"cell failed before {marker!r}: {msg['content']['ename']}")
        raise AssertionError(f"{marker!r} never appeared; saw {seen!r}")

    @property
    def pid(self) -> int:
        return self.km.provisioner.pid  # type: ignore[union-attr]

    def kill(self) -> None:
        """SIGKILL: what an OOM killer does. No goodbye."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.close()

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=True)
            self.km.cleanup_resources()
