"""resumable_nb: cached, resumable notebook steps for IPython and Jupyter.

``%load_ext resumable_nb`` registers the ``%%step`` cell magic.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any

from .errors import (
    CorruptEntry,
    RestoreError,
    ResumableError,
    ResumableWarning,
    RunError,
    StepUsageError,
    StoreError,
    Unfingerprintable,
    Unstorable,
)
from .fingerprint import fingerprint

if TYPE_CHECKING:
    from .magics import ResumableNB

__all__ = [
    "CorruptEntry",
    "RestoreError",
    "ResumableError",
    "ResumableWarning",
    "RunError",
    "StepUsageError",
    "StoreError",
    "Unfingerprintable",
    "Unstorable",
    "__version__",
    "fingerprint",
    "load_ipython_extension",
    "magics_of",
    "unload_ipython_extension",
]

__version__ = "0.1.0"

_ATTR = "_resumable_nb_magics"


def magics_of(shell: Any) -> ResumableNB | None:
    """The extension's state in ``shell`` (store, journal, runner, panel), or None when the
    extension is not loaded there. The one way to reach it from outside the magics."""
    return getattr(shell, _ATTR, None)


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext resumable_nb``: register the magics and settings."""
    from .magics import ResumableNB

    if magics_of(ipython) is not None:
        return
    magics = ResumableNB(shell=ipython, config=ipython.config)
    ipython.register_magics(magics)  # also makes it a configurable: %config ResumableNB...
    atexit.register(magics.close)  # a clean exit ends the run as completed (or failed)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    # Plain cells are journaled too, so that %resume can re-run them between the steps.
    ipython.events.register("post_run_cell", magics.session.record_cell)
    setattr(ipython, _ATTR, magics)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext`` / ``%reload_ext``: undo every registration."""
    magics = magics_of(ipython)
    if magics is None:
        return
    atexit.unregister(magics.close)
    try:
        ipython.events.unregister("post_run_cell", magics.session.record_cell)
    except ValueError:
        pass  # not registered (a shell without events)
    magics.close()
    for kind, names in magics.magics.items():
        for name in names:
            ipython.magics_manager.magics[kind].pop(name, None)
    ipython.magics_manager.registry.pop(type(magics).__name__, None)
    while magics in ipython.configurables:
        ipython.configurables.remove(magics)
    setattr(ipython, _ATTR, None)
