"""matplotlib's global settings a step changes: what a hit and ``%resume`` must leave too.

``plt.style.use('classic')``, ``matplotlib.rcParams.update(...)``, ``matplotlib.use('nbagg')``
change ``matplotlib.rcParams``, which later figures read (margins, autolimit mode, fonts) and
which decides the backend (and so whether figures are drawn and closed at the end of a cell).
A hit ran none of that: after it, later figures (and the axes' limits, computed lazily) came
out as the plain run's never did (the corpus's amp_part4: 'classic' style, nbagg backend).

So on a miss the runner notes which rcParams the step changed; the entry carries them, first
in the payload, as an object whose unpickling puts them back (:class:`Changes`): a hit and
``%resume`` (which loads the entry) leave rcParams as the step did, and the backend is chosen
before the step's figures are unpickled, as in the plain run. Steps that change nothing pay
one dict copy on a miss, and nothing when matplotlib is not loaded.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

__all__ = ["Changes", "apply", "changed", "snapshot"]


def snapshot() -> dict[str, Any] | None:
    """rcParams as they are (None: matplotlib is not loaded)."""
    mpl = sys.modules.get("matplotlib")
    rc = getattr(mpl, "rcParams", None)
    if not isinstance(rc, dict):
        return None
    return {k: v for k, v in dict.items(rc) if k != "backend" or isinstance(v, str)}


def changed(before: dict[str, Any] | None) -> dict[str, Any]:
    """The rcParams that differ from ``before`` now; when the step loaded matplotlib itself,
    those that differ from what importing it gives (``rcParamsOrig``: the matplotlibrc), so a
    hit in a kernel whose plain cells set other rcParams leaves those alone."""
    after = snapshot()
    if after is None:
        return {}
    if before is None:
        orig = getattr(sys.modules["matplotlib"], "rcParamsOrig", None)
        before = {k: v for k, v in dict.items(orig)} if isinstance(orig, dict) else None
    out = {}
    for key, value in after.items():
        try:
            same = before is not None and key in before and bool(before[key] == value)
        except Exception:  # noqa: BLE001 - a value that cannot compare: count it as changed
            same = False
        if not same:
            out[key] = value
    return out


class Changes:
    """rcParams a step changed, applied when unpickled."""

    __slots__ = ("items",)

    def __init__(self, items: dict[str, Any]) -> None:
        self.items = items

    def __reduce__(self) -> tuple[Any, ...]:
        return apply, (self.items,)


def apply(items: dict[str, Any]) -> None:
    """Set ``items`` in ``matplotlib.rcParams``; the backend through ``matplotlib.use`` (which
    switches pyplot as the step's call did)."""
    import matplotlib

    items = dict(items)
    backend = items.pop("backend", None)
    if isinstance(backend, str) and dict.get(matplotlib.rcParams, "backend") != backend:
        try:
            matplotlib.use(backend)
        except Exception:  # noqa: BLE001, S110 - not available here: the kernel's own stays
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a deprecated key the step set said so already
        for key, value in items.items():
            try:
                matplotlib.rcParams[key] = value  # type: ignore[index]
            except (KeyError, ValueError, TypeError):
                continue
