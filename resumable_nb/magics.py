"""The IPython glue: ``%%step`` and the ``ResumableNB`` settings. Thin by design."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Unicode, observe

from . import location
from .errors import StepUsageError, StoreError
from .runner import StepRunner
from .store import Store

__all__ = ["ResumableNB"]


@magics_class
class ResumableNB(Magics):
    """Cached, resumable notebook steps. Settings (``%config ResumableNB.<name> = ...``):"""

    cache_dir = Unicode(
        "", help="Cache folder. Empty: $RESUMABLE_NB_DIR, else .resumable_nb/ next to the "
        "notebook, else in the working directory."
    ).tag(config=True)
    key_file = Unicode(
        "", help="Per-user HMAC key file. Empty: $RESUMABLE_NB_KEY_FILE, else "
        "~/.config/resumable_nb/hmac.key."
    ).tag(config=True)
    verbose = Bool(True, help="Print a line when a step is restored from the cache.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Set before traitlets applies the config: its observers below run during __init__.
        self._store: Store | None = None
        self._store_opened = False
        self.runner = StepRunner(shell, self.store, _notice)
        super().__init__(shell=shell, **kwargs)
        self.runner.verbose = self.verbose

    # -- state ----------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        user_ns = self.shell.user_ns if self.shell is not None else {}
        return location.cache_root(self.cache_dir, user_ns)

    def store(self) -> Store | None:
        """The open store, or None (caching off) after telling the user why, once."""
        if not self._store_opened:
            self._store_opened = True
            try:
                self._store = Store(self.root, Path(self.key_file) if self.key_file else None)
            except StoreError as exc:
                _notice(f"caching is off: {exc}. Steps still run.")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None
        self._store_opened = False

    @observe("cache_dir", "key_file")
    def _reopen(self, change: Any) -> None:
        self.close()

    @observe("verbose")
    def _verbose_changed(self, change: Any) -> None:
        self.runner.verbose = bool(change["new"])

    # -- magics -----------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", nargs="?", default="", help="The step's name (letters, digits, _ - .).")
    @argument("--force", action="store_true", help="Run even on a cache hit, and overwrite the entry.")
    @argument("--ignore", nargs="+", default=[], metavar="NAME",
              help="Leave these inputs out of the key. Your responsibility: a change to them "
              "will not re-run the step.")
    @cell_magic
    def step(self, line: str, cell: str) -> Any:
        """Run the cell as a cached step.

        The cell's inputs (names it reads) and outputs (names it binds, deletes or mutates)
        are worked out from its code. The key is the cell's code (comments and whitespace
        do not count) plus the content of its inputs: when both match an earlier run, the
        outputs are restored and the printed output replayed instead of running the cell.

        Example::

            %%step clean
            df = raw.dropna()
            print(len(df))

        ``%%step clean --force`` re-runs and overwrites the entry;
        ``%%step plot --ignore fig`` leaves ``fig`` out of the key.
        """
        __tracebackhide__ = True
        try:
            args = parse_argstring(self.step, line)
        except UsageError as exc:
            raise UsageError(f"%%step: {exc}. Usage: %%step NAME [--force] [--ignore NAME ...]") from None
        try:
            return self.runner.run(args.name, cell, force=args.force, ignore=args.ignore,
                                   header=f"%%step {line}")
        except StepUsageError as exc:
            raise UsageError(str(exc)) from None


def _notice(text: str) -> None:
    print(f"[resumable_nb] {text}", file=sys.stderr)
