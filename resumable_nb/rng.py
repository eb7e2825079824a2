"""The global random generators (``random``, ``numpy.random``): what a hit must match and leave.

A step that draws from a global generator gives other numbers after another seed, and leaves
the generator advanced. So on a miss the runner notes whether the step moved a generator; if it
did, the entry records each generator's state before (as a digest) and after (whole). A hit is
then allowed only when the generators are where they were before, and it leaves them where the
step left them — exactly what a plain run would. Steps that draw nothing pay two ``getstate``
calls on a miss and nothing on a hit.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import sys
from typing import Any

__all__ = ["digests", "moved", "restore", "states"]


def states() -> dict[str, Any]:
    """The state of every global generator that is loaded."""
    out: dict[str, Any] = {"random": random.getstate()}
    np = sys.modules.get("numpy")
    if np is not None:
        out["numpy"] = np.random.get_state()
    return out


def _digest(state: Any) -> str:
    return hashlib.sha256(pickle.dumps(state, protocol=4)).hexdigest()[:32]


def digests(state: dict[str, Any]) -> dict[str, str]:
    return {name: _digest(s) for name, s in state.items()}


def moved(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The generators whose state changed between ``before`` and ``after``. One loaded by the
    step itself (``import numpy`` in it) started from fresh entropy: not tracked."""
    before_d, after_d = digests(before), digests(after)
    return [name for name in after_d if name in before_d and before_d[name] != after_d[name]]


def restore(state: dict[str, Any]) -> None:
    """Put the generators where ``state`` says (what the step left)."""
    if "random" in state:
        random.setstate(state["random"])
    np = sys.modules.get("numpy")
    if np is not None and "numpy" in state:
        np.random.set_state(state["numpy"])
