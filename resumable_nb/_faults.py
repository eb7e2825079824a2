"""Test-only fault injection: kill or raise at a named point of persisting a step.

Set ``RESUMABLE_NB_FAULT=POINT[:ACTION][@N]`` before the kernel starts (it is read once, at
import). ACTION is ``kill`` (SIGKILL this process, the default) or ``raise``; ``@N`` fires on
the N-th time the point is reached (default 1). Points, in the order a step is persisted:

    payload-before-write   payload-mid-write   payload-before-rename   payload-after-rename
    index-after-set        journal-before-finish   journal-after-finish

With the variable unset, :func:`point` is a dictionary miss.
"""

from __future__ import annotations

import os
import signal

from .config import ENV

__all__ = ["POINTS", "FaultInjected", "point"]

POINTS = ("payload-before-write", "payload-mid-write", "payload-before-rename",
          "payload-after-rename", "index-after-set", "journal-before-finish", "journal-after-finish")


class FaultInjected(RuntimeError):
    """Raised at a fault point with ACTION ``raise``."""


def _parse(spec: str) -> dict[str, list]:
    faults: dict[str, list] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, count = item.partition("@")
        name, _, action = name.partition(":")
        if name not in POINTS:
            raise ValueError(f"RESUMABLE_NB_FAULT: unknown point {name!r}; known: {', '.join(POINTS)}")
        faults[name] = [action or "kill", int(count or 1)]
    return faults


_FAULTS = _parse(os.environ.get(ENV["FAULT"], ""))


def point(name: str) -> None:
    """Reach the fault point ``name``: kill or raise if a fault is set for it."""
    fault = _FAULTS.get(name)
    if fault is None:
        return
    fault[1] -= 1
    if fault[1] > 0:
        return
    if fault[0] == "raise":
        raise FaultInjected(f"fault injected at {name}")
    os.kill(os.getpid(), signal.SIGKILL)
