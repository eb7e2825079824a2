"""The IPython glue: ``%%step`` and the ``ResumableNB`` settings. Thin by design."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Unicode, default, observe

from . import gates, location, stepline
from .config import env_off
from .errors import StepUsageError, notice
from .session import Session

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
    verbose = Bool(True, help="Print one line per step: on a hit, the time saved and the data "
                   "restored; on a miss, why the step runs.").tag(config=True)
    lazy_arrays = Bool(
        False, help="Restore array buffers by mapping the cache file copy-on-write instead of "
        "reading it: a 1 GiB array in milliseconds, pages read on first use, writes stay private. "
        "Their MACs are then not checked (the pickle stream's always is): use it only on a cache "
        "folder you trust."
    ).tag(config=True)

    enabled = Bool(
        True, help="False: every %%step cell runs as a plain cell (nothing read from or written "
        "to the cache, nothing journaled) until set back to True. Default: True unless "
        "$RESUMABLE_NB_ENABLED is 0."
    ).tag(config=True)

    @default("enabled")
    def _enabled_default(self) -> bool:
        return not env_off("ENABLED")

    store = Unicode(
        "", help="Team store shared by several machines: s3://BUCKET/PREFIX (docs/team.md). "
        "Empty: $RESUMABLE_NB_STORE, else none. Credentials and endpoint: the AWS_* variables."
    ).tag(config=True)
    max_size = Unicode(
        "", help="Bound on the local cache folder, e.g. \"20GB\": after a store, least recently "
        "used entries go (never one the latest run of a notebook needs). Empty: "
        "$RESUMABLE_NB_MAX_SIZE, else unbounded."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Set before traitlets applies the config: its observers below run during __init__.
        self.session = Session(shell, lambda: self.root,
                               lambda: Path(self.key_file) if self.key_file else None, notice)
        self.session.settings = lambda: (self.store, self.max_size)
        self.runner = self.session.runner
        super().__init__(shell=shell, **kwargs)
        self.runner.verbose = self.verbose
        self.runner.lazy = self.lazy_arrays
        self.session.enabled = self.enabled

    @property
    def root(self) -> Path:
        user_ns = self.shell.user_ns if self.shell is not None else {}
        return location.cache_root(self.cache_dir, user_ns)

    def close(self) -> None:
        self.session.close()

    @observe("cache_dir", "key_file", "store", "max_size")
    def _reopen(self, change: Any) -> None:
        self.session.close()

    @observe("verbose")
    def _verbose_changed(self, change: Any) -> None:
        self.runner.verbose = bool(change["new"])

    @observe("enabled")
    def _enabled_changed(self, change: Any) -> None:
        self.session.enabled = bool(change["new"])

    @observe("lazy_arrays")
    def _lazy_changed(self, change: Any) -> None:
        self.runner.lazy = bool(change["new"])

    # -- magics -----------------------------------------------------------------------------
    @cell_magic
    @stepline.document
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
        Files named by string literals in the cell are inputs by content;
        ``%%step load --reads 'data/*.csv' --writes 'out/*.parquet' --retries 2`` declares
        more inputs, the files it writes (restored on a hit) and retries on an exception.
        ``%config ResumableNB.enabled = False`` turns caching off: steps run as plain cells.
        """
        __tracebackhide__ = True
        try:
            args = stepline.parse_step_line(line)
            if not self.enabled:
                return self.runner.run_plain(cell)
            self.session.check_duplicate(args.name)
            return self.runner.run(args.name, cell, force=args.force, ignore=args.ignore,
                                   header=f"%%step {line}", line=args)
        except StepUsageError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("run_id", nargs="?", default=None, help="The run to resume (default: the latest).")
    @argument("--run", action="store_true", help="Then run the notebook's remaining cells.")
    @argument("--steps-only", action="store_true",
              help="Restore the steps' outputs only; do not re-run the plain cells between them.")
    @line_magic
    def resume(self, line: str) -> None:
        """Restore the state of the last run of this notebook, in a fresh kernel.

        Rebuilds the namespace in the order things ran: completed steps are restored from the
        cache (never executed), and the plain cells that ran between them are re-run (their
        output is not shown again), so the state is the one a plain run left.
        ``--steps-only`` restores the steps' outputs alone (for every variable, the value from
        the last completed step that wrote it). Says which step was interrupted or failed and
        which %%step cells have not run. ``--run`` then runs the cells left, in notebook
        order (steps may still hit the cache).

        Example, after the kernel died::

            %load_ext resumable_nb
            %resume --run
        """
        __tracebackhide__ = True
        args = self._parse(self.resume, line, "%resume [RUN_ID] [--run] [--steps-only]")
        try:
            self.session.resume(args.run_id, args.run, steps_only=args.steps_only)
        except StepUsageError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("--from", dest="from_", default=None, metavar="NAME", help="The first step to re-run.")
    @argument("--to", default=None, metavar="NAME", help="The last step to run (default: the end).")
    @argument("--dry-run", action="store_true", help="Print the plan; execute nothing.")
    @line_magic
    def replay(self, line: str) -> None:
        """Restore the state just before a step last ran, then re-run it and the steps after it.

        The named step runs again (its cache entry is ignored); the steps after it, in
        notebook order, run normally: those whose inputs come out identical hit the cache.

        Example::

            %replay --from clean --to train --dry-run
            %replay --from clean
        """
        __tracebackhide__ = True
        args = self._parse(self.replay, line, "%replay --from NAME [--to NAME] [--dry-run]")
        try:
            if not args.from_:
                raise StepUsageError(f"%replay needs --from NAME; {self._known_steps()}")
            self.session.replay(args.from_, args.to, args.dry_run)
        except StepUsageError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def gate(self, line: str) -> None:
        """An approval gate between cells: ``%gate NAME [--ask TEXT]``, alone in its cell.

        Headless (``resumable-nb run``), the run stops here until someone decides: it exits 3
        and ``resumable-nb approve NB.ipynb --gate NAME`` (or ``reject``, or the panel's
        buttons) records the decision; the next ``resumable-nb run`` goes on past an approved
        gate, or ends failed at a rejected one. A gate whose question or position changed
        since it was approved asks again. In a live notebook, whoever runs this cell is the
        approver: the gate passes and is recorded as approved.

        Example::

            %%step train
            model = fit(features)

            %gate review --ask "Accuracy above 0.9 on the holdout?"

            %%step publish
            upload(model)
        """
        try:
            name, question = gates.parse_gate_line(line)
            print(self.session.gate(name, question))
        except StepUsageError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def steps(self, line: str) -> None:
        """Show this kernel's run: one row per step (state, attempts, duration, time saved,
        outputs, why it ran), with the notebook's steps that have not run yet.

        In Jupyter this is the run panel, with Resume / Replay from / Re-run / Clear / Refresh
        controls, updated live as steps run; elsewhere a plain-text table.

        Example::

            %steps
        """
        if line.strip():
            raise UsageError("%steps takes no arguments")
        if self.session.widgets_available:
            self.session.show_panel()
        else:
            print(self.session.table())

    @magic_arguments()
    @argument("name", help="The step to explain.")
    @line_magic
    def why(self, line: str) -> None:
        """Say what differs between a step as it stands now and its latest cache entry: the
        code diff, and each input's old and new fingerprint (new inputs, inputs no longer
        read). Nothing is run; the step's current inputs are fingerprinted in this kernel.

        Example::

            %why train
        """
        args = self._parse(self.why, line, "%why NAME")
        try:
            print(self.session.why(args.name))
        except StepUsageError as exc:
            raise UsageError(str(exc)) from None

    def _parse(self, magic: Any, line: str, usage: str) -> Any:
        try:
            return parse_argstring(magic, line)
        except UsageError as exc:
            raise UsageError(f"{exc}. Usage: {usage}") from None

    def _known_steps(self) -> str:
        names = self.session.completed_steps()
        if not names:
            return "no step has completed in this kernel's run yet"
        return f"completed steps: {', '.join(names)}"

