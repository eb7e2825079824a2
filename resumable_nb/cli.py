"""``resumable-nb``: run a notebook headless and resume it after a crash; look at its runs;
manage the cache. Thin: parsing and rendering here, the work in :mod:`resumable_nb.headless`,
:mod:`resumable_nb.journal` and :mod:`resumable_nb.store`.

Exit codes: 0 done; 1 a run failed (a cell raised, the kernel died, a cell timed out, a gate
was rejected); 2 bad arguments or input (one line on stderr, nothing written); 3 the run is
waiting for approval at a ``%gate`` (``approve`` / ``reject``, then ``run`` again). ``--json`` output carries
``"schema": 2`` and is documented in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import location
from ._text import columns, human_size, printable
from .config import ENV
from .errors import ResumableError, RunError
from .headless import HeadlessRun, RunOptions, cache_root_for
from .housekeeping import gc_keep
from .journal import RunView, iter_journals, journal_path, read_events, runs
from .nbfile import CodeCell, code_cells, notebook_json, read_record
from .states import label
from .view import StepRow, render_steps, step_rows

__all__ = ["SCHEMA_VERSION", "gc_keep", "ls_data", "main", "status_data"]

SCHEMA_VERSION = 2
"""The ``schema`` field of every ``--json`` output; incremented on an incompatible change
(2: step states are the labels of :mod:`resumable_nb.states`, as every view shows them)."""

PROG = "resumable-nb"


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run notebooks headless with resumable_nb; resume "
                     "after a crash; inspect runs; manage the step cache.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _Parser(add_help=False)
    common.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                        help="the cache folder (default: $RESUMABLE_NB_DIR, else .resumable_nb/ "
                        "next to the notebook)")

    run = sub.add_parser("run", parents=[common], help="execute a notebook; resume it if its last "
                         "run failed or was interrupted",
                         description="Execute NB in a new kernel with resumable_nb loaded and write "
                         "the executed notebook. If the last run of NB failed or its kernel died, "
                         "resume it: completed steps are restored, not executed.")
    run.add_argument("notebook", metavar="NB.ipynb")
    run.add_argument("-o", "--output", metavar="OUT.ipynb",
                     help="where to write the executed notebook (default: NB.out.ipynb next to "
                     "NB; '-' for stdout)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set a parameter (papermill's convention: "
                     "after the cell tagged 'parameters'); VALUE is a Python literal, else a string")
    run.add_argument("--fresh", action="store_true",
                     help="do not resume an earlier run (cache hits still apply)")
    run.add_argument("--from", dest="start", metavar="STEP",
                     help="replay from STEP: run it again ignoring its cache entry, and the cells "
                     "after it (earlier steps come from the cache)")
    run.add_argument("--timeout", type=float, metavar="S",
                     help="stop a cell that runs longer than S seconds: the run stops there "
                     "(exit 1, the step recorded as interrupted); give a larger --timeout to let "
                     "it finish")
    run.add_argument("--log-output", action="store_true",
                     help="also write the cells' output to stderr as it comes (as papermill's "
                     "--log-output)")
    run.add_argument("-k", "--kernel", metavar="NAME",
                     help="the kernel to use (default: the notebook's, else python3)")
    run.add_argument("--store", metavar="URL", help=STORE_HELP)
    run.set_defaults(func=_run)

    status = sub.add_parser("status", parents=[common], help="the latest run and its steps",
                            description="The latest run of NB: its state and its steps (state, "
                            "attempts, duration, time saved), and the runs before it.")
    status.add_argument("notebook", metavar="NB.ipynb", nargs="?", default=None,
                        help="the notebook (it may since have been renamed or deleted)")
    status.add_argument("--journal", metavar="FILE", type=Path, default=None,
                        help="read this journal file (<cache>/journal/*.jsonl) instead: a "
                        "notebook renamed since, or terminal IPython's ipython-*.jsonl")
    status.add_argument("--json", action="store_true", help="machine-readable (docs/cli.md)")
    status.add_argument("--dot", action="store_true", help="the pipeline as a Graphviz graph: steps, "
                        "the names they pass, states as colours (pipe it to `dot -Tsvg`)")
    status.add_argument("--store", metavar="URL", help=STORE_HELP)
    status.set_defaults(func=_status)

    for verb, what in (("approve", "approved"), ("reject", "rejected")):
        decide = sub.add_parser(verb, parents=[common], help=f"{verb} the gate a run is waiting at",
                                description=f"Record that the gate the latest run of NB is waiting "
                                f"at is {what} (who, where, when, --note). The next `run` "
                                + ("goes on past it." if verb == "approve" else "ends failed there."))
        decide.add_argument("notebook", metavar="NB.ipynb")
        decide.add_argument("--gate", metavar="NAME", help="the gate (default: the one waiting)")
        decide.add_argument("--note", metavar="TEXT", default="", help="why, for the record")
        decide.set_defaults(func=_decide, decision=what)

    runs_p = sub.add_parser("runs", parents=[common], help="list the runs of a notebook")
    runs_p.add_argument("notebook", metavar="NB.ipynb", nargs="?", default=None,
                        help="the notebook (it may since have been renamed or deleted)")
    runs_p.add_argument("--journal", metavar="FILE", type=Path, default=None,
                        help="read this journal file (<cache>/journal/*.jsonl) instead: a "
                        "notebook renamed since, or terminal IPython's ipython-*.jsonl")
    runs_p.add_argument("--json", action="store_true", help="machine-readable (docs/cli.md)")
    runs_p.set_defaults(func=_runs)

    events = sub.add_parser("events", parents=[common], help="print the run journal's events")
    events.add_argument("notebook", metavar="NB.ipynb", nargs="?", default=None,
                        help="the notebook (it may since have been renamed or deleted)")
    events.add_argument("--journal", metavar="FILE", type=Path, default=None,
                        help="read this journal file (<cache>/journal/*.jsonl) instead: a "
                        "notebook renamed since, or terminal IPython's ipython-*.jsonl")
    events.add_argument("--run", metavar="ID", help="only this run's events (a unique prefix is enough)")
    events.add_argument("--limit", type=_positive, metavar="N", help="only the last N events")
    events.add_argument("--json", action="store_true", help="machine-readable (docs/cli.md)")
    events.set_defaults(func=_events)

    clear = sub.add_parser("clear", parents=[common], help="delete a notebook's cache entries",
                           description="Delete the cache entries of NB's steps (or of one step). "
                           "Entries that only another notebook's runs used are kept.")
    clear.add_argument("notebook", metavar="NB.ipynb")
    clear.add_argument("--step", metavar="NAME", help="only this step's entries")
    clear.add_argument("--dry-run", action="store_true",
                       help="say what would be removed and freed; remove nothing")
    clear.set_defaults(func=_clear)

    ls = sub.add_parser("ls", help="list the cache entries",
                        description="List the cache entries (of NB's steps, or all): step, "
                        "notebook, size on disk, when stored, when last used, and whether the "
                        "latest run of a notebook needs it (gc keeps those).")
    ls.add_argument("notebook", metavar="NB.ipynb", nargs="?", default=None)
    ls.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                    help="the cache folder (default: $RESUMABLE_NB_DIR, else .resumable_nb/ next "
                    "to NB, else in the working directory)")
    ls.add_argument("--json", action="store_true", help="machine-readable (docs/cli.md)")
    ls.set_defaults(func=_ls)

    gc = sub.add_parser("gc", help="delete cache entries no notebook needs",
                        description="Delete every cache entry that no notebook's latest run "
                        "(and no running kernel) needs, and payload files no entry uses.")
    gc.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                    help="the cache folder (default: $RESUMABLE_NB_DIR, else ./.resumable_nb in "
                    "the working directory: gc names no notebook)")
    gc.add_argument("--dry-run", action="store_true",
                    help="say what would be removed and freed; remove nothing")
    gc.add_argument("--max-size", metavar="SIZE", help="only delete least recently used entries "
                    "until the folder holds at most SIZE (e.g. 20GB)")
    gc.add_argument("--store", metavar="URL", help="collect this team store (s3://BUCKET/PREFIX) "
                    "instead of the local folder: manifests and payloads no mirrored run needs")
    gc.set_defaults(func=_gc)

    push = sub.add_parser("push", help="upload to the team store what it lacks",
                          description="Send the uploads kernels left queued, then every local "
                          "entry and run journal the team store lacks (docs/team.md).")
    push.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                      help="the cache folder (default: $RESUMABLE_NB_DIR, else ./.resumable_nb)")
    push.add_argument("--store", metavar="URL", help=STORE_HELP)
    push.set_defaults(func=_push)
    return parser


STORE_HELP = "the team store, s3://BUCKET/PREFIX (default: $RESUMABLE_NB_STORE; docs/team.md)"


def main(argv: Sequence[str] | None = None) -> int:
    """The ``resumable-nb`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: run, status, runs, events, ls, approve, reject, clear, gc "
                     "or push")
    try:
        return int(args.func(args))
    except ResumableError as exc:  # RunError, and StoreError: an unusable cache folder or key
        print(f"{PROG} {args.command}: error: {printable(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `resumable-nb events NB | head`: quiet, also at exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# -- run --------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    from . import teamops

    if args.store:
        os.environ[ENV["STORE"]] = args.store  # the kernel reads and writes the same store
    notebook = Path(args.notebook).expanduser().absolute()
    if notebook.is_file():
        teamops.pull_for(notebook, cache_root_for(notebook, args.cache_dir), args.store)
    options = RunOptions(
        notebook=Path(args.notebook), output=args.output,
        parameters=tuple((name, value) for name, value in args.parameter), fresh=args.fresh,
        start=args.start, timeout=args.timeout, kernel=args.kernel, cache_dir=args.cache_dir,
        log_output=args.log_output,
    )
    job = HeadlessRun(options)
    job.prepare()
    return job.execute()


# -- status / runs / events -------------------------------------------------------------------
def _open(args: argparse.Namespace) -> tuple[Path, list[CodeCell], Path, Path]:
    """The notebook, its code cells, its cache folder and its journal. A notebook that is gone
    (renamed, deleted) is fine while its journal is there: its cells are then unknown."""
    journal_arg: Path | None = getattr(args, "journal", None)
    if journal_arg is not None:
        journal = journal_arg.expanduser().absolute()
        if not journal.is_file():
            raise RunError(f"--journal {journal_arg}: no such file")
        root = journal.parent.parent
        notebook = _journal_notebook(journal) or journal
        cells = code_cells(notebook_json(notebook)) if notebook.suffix == ".ipynb" \
            and notebook.is_file() else []
        return notebook, cells, root, journal
    if args.notebook is None:
        raise RunError(f"name a notebook or a --journal FILE (`{PROG} ls` lists the cache)")
    notebook = Path(args.notebook).expanduser().absolute()
    root = cache_root_for(notebook, args.cache_dir)
    journal = journal_path(root, str(notebook))
    if not notebook.exists() and journal.is_file():
        print(f"note: {notebook.name} is gone; showing its journal {journal}", file=sys.stderr)
        return notebook, [], root, journal
    if not notebook.exists():
        raise RunError(f"{notebook}: no such file, and no journal of it in {root} (renamed? "
                       f"pass --journal FILE: `ls {root / 'journal'}`)")
    return notebook, code_cells(notebook_json(notebook)), root, journal


def _journal_notebook(journal: Path) -> Path | None:
    """The notebook the latest run in ``journal`` recorded, if any (None: terminal IPython)."""
    events, _ = read_events(journal)
    named = [e.get("notebook") for e in events if e.get("kind") == "run_started"]
    return Path(named[-1]) if named and isinstance(named[-1], str) and named[-1] else None


def _iso(t: float | None) -> str | None:
    if not t:
        return None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{stamp}.{int(t % 1 * 1000):03d}Z"


def _run_summary(run: RunView, ended_at: Mapping[str, float], records: Mapping[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for step in run.steps:
        counts[label(step.status)] = counts.get(label(step.status), 0) + 1
    record = records.get(run.run)
    params = record.get("parameters") if isinstance(record, dict) else None
    gate = run.waiting
    return {
        "id": run.run, "state": run.state, "started": _iso(run.started),
        "ended": _iso(ended_at.get(run.run)), "resumed_from": run.resumed_from,
        "pid": run.pid, "host": run.host, "python": run.python,
        "step_counts": counts, "parameters": params if isinstance(params, dict) else None,
        "gate": None if gate is None else {
            "name": gate.name, "question": gate.question, "since": _iso(gate.since),
            "decision": gate.decision, "user": gate.user or None, "host": gate.host or None,
            "note": gate.note or None, "decided": _iso(gate.decided)},
    }


def _load(journal: Path) -> tuple[list[dict[str, Any]], dict[str, RunView], dict[str, float], str | None]:
    events, warning = read_events(journal)
    all_runs = runs(events)
    ended_at = {str(e.get("run")): float(e.get("time", 0)) for e in events if e.get("kind") == "run_ended"}
    return events, all_runs, ended_at, warning


def status_data(notebook: Path, cells: list[CodeCell], root: Path, journal: Path) -> dict[str, Any]:
    """What ``status --json`` prints (see docs/cli.md)."""
    return _status_data(notebook, cells, root, journal)[0]


def _status_data(notebook: Path, cells: list[CodeCell], root: Path,
                 journal: Path) -> tuple[dict[str, Any], list[StepRow]]:
    """``status --json``'s document, and the latest run's rows it holds (for the text)."""
    _, all_runs, ended_at, warning = _load(journal)
    records = read_record(journal)
    latest = list(all_runs.values())[-1] if all_runs else None
    detail = None
    rows: list[StepRow] = []
    if latest is not None:
        rows = step_rows(all_runs, latest, cells)
        detail = {**_run_summary(latest, ended_at, records), "steps": [r.to_json() for r in rows]}
    data = {"schema": SCHEMA_VERSION, "notebook": str(notebook), "cache_dir": str(root),
            "cache_size": _disk_usage(root),
            "journal": str(journal), "warning": warning, "run": detail,
            "runs": [_run_summary(r, ended_at, records) for r in all_runs.values()]}
    return data, rows


def _status(args: argparse.Namespace) -> int:
    notebook, cells, root, journal = _open(args)
    if args.store or os.environ.get(ENV["STORE"]):
        from . import teamops

        teamops.pull_for(notebook, root, args.store)
    if args.dot:
        from .graph import pipeline_graph, to_dot

        _, all_runs, _, warning = _load(journal)
        if warning:
            print(f"warning: {printable(warning)}", file=sys.stderr)
        latest = list(all_runs.values())[-1] if all_runs else None
        print(to_dot(pipeline_graph(all_runs, latest, cells), notebook.stem))
        return 0
    data, rows = _status_data(notebook, cells, root, journal)
    if args.json:
        _print_json(data)
        return 0
    if data["warning"]:
        print(f"warning: {data['warning']}", file=sys.stderr)
    run = data["run"]
    if run is None:
        print(f"{notebook.name}: no runs yet (cache: {root})")
        return 0
    title = f"{notebook.name}: run {run['id']} {run['state']}"
    if run["resumed_from"]:
        title += f", resumed from {run['resumed_from']}"
    print(render_steps(printable(title), rows))
    earlier = len(data["runs"]) - 1
    if earlier:
        which = args.notebook or f"--journal {args.journal}"
        print(f"({earlier} earlier run{'s' * (earlier != 1)}: `{PROG} runs {which}`)")
    print(f"cache: {human_size(data['cache_size'])} in {root} (`{PROG} ls` lists it)")
    return 0


def _runs(args: argparse.Namespace) -> int:
    notebook, _, root, journal = _open(args)
    _, all_runs, ended_at, warning = _load(journal)
    records = read_record(journal)
    listed = [_run_summary(r, ended_at, records) for r in all_runs.values()]
    if args.json:
        _print_json({"schema": SCHEMA_VERSION, "notebook": str(notebook), "cache_dir": str(root),
                     "journal": str(journal), "warning": warning, "runs": listed})
        return 0
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if not listed:
        print(f"{notebook.name}: no runs yet (cache: {root})")
        return 0
    table = [["run", "state", "started (UTC)", "steps", "resumed from"]]
    for r in listed:
        steps = ", ".join(f"{n} {k}" for k, n in r["step_counts"].items()) or "-"
        table.append([r["id"], r["state"], (r["started"] or "")[:19].replace("T", " "), steps,
                      r["resumed_from"] or "-"])
    _print_table(table)
    return 0


def _decide(args: argparse.Namespace) -> int:
    from .gates import whoami
    from .journal import Journal

    notebook, _, root, journal = _open(args)
    _, all_runs, _, _ = _load(journal)
    latest = list(all_runs.values())[-1] if all_runs else None
    gate = latest.waiting if latest is not None else None
    if latest is None or gate is None or gate.decision is not None:
        raise RunError(f"nothing is waiting for approval in {notebook.name}"
                       + (f" (its latest run is {latest.state})" if latest is not None else ""))
    if args.gate is not None and args.gate != gate.name:
        raise RunError(f"--gate {args.gate}: the run is waiting at gate {gate.name!r}, not {args.gate!r}")
    user, host = whoami()
    writer = Journal(root, str(notebook))
    try:
        writer.gate_decided(latest.run, gate.name, args.decision, question=gate.question,
                            position=gate.position, user=user, host=host, note=args.note)
    finally:
        writer.release()
    then = "goes on past it" if args.decision == "approved" else "ends failed there"
    print(f"gate '{gate.name}' {args.decision} by {user}@{host}; `{PROG} run {args.notebook}` {then}")
    return 0


def _events(args: argparse.Namespace) -> int:
    notebook, _, _, journal = _open(args)
    events, all_runs, _, warning = _load(journal)
    if args.run:
        matches = [r for r in all_runs if r.startswith(args.run)]
        if len(matches) != 1:
            known = ", ".join(list(all_runs)[-5:]) or "none"
            what = "no run" if not matches else "more than one run starts with"
            raise RunError(f"--run {args.run}: {what} {args.run!r} in {notebook.name}; recent runs: {known}")
        events = [e for e in events if e.get("run") == matches[0]]
    if args.limit:
        events = events[-args.limit:]
    if args.json:
        _print_json({"schema": SCHEMA_VERSION, "notebook": str(notebook), "journal": str(journal),
                     "warning": warning, "events": events})
        return 0
    if warning:
        print(f"warning: {printable(warning)}", file=sys.stderr)
    for e in events:
        print(printable(_event_line(e)))
    return 0


def _event_line(e: Mapping[str, Any]) -> str:
    kind = str(e.get("kind"))
    head = f"{_iso(float(e.get('time', 0))) or '-'}  {kind:<13}  {e.get('run', '-')}"
    if kind == "run_started":
        extra = f"pid {e.get('pid')} on {e.get('host')}, python {e.get('python')}"
        if e.get("resumed_from"):
            extra += f", resumed from {e['resumed_from']}"
    elif kind == "step_started":
        extra = f"{e.get('step')}"
    elif kind == "step_finished":
        extra = f"{e.get('step')}  {e.get('status')}  {float(e.get('duration', 0)):.2f} s"
        if e.get("error"):
            extra += f"  {e['error']}"
        elif e.get("reason"):  # why it ran: what changed, --force, an input it cannot hash
            extra += f"  ({e['reason']})"
    elif kind == "run_ended":
        extra = str(e.get("status"))
    elif kind == "gate_waiting":
        extra = f"{e.get('gate')}  {e.get('question')}"
    elif kind == "gate_decided":
        extra = f"{e.get('gate')}  {e.get('decision')} by {e.get('user')}@{e.get('host')}  {e.get('note')}"
    else:
        extra = ""
    return f"{head}  {extra}".rstrip()


# -- cache ------------------------------------------------------------------------------------
def _store(root: Path) -> Any:
    from .errors import StoreError
    from .store import Store

    try:
        store = Store(root)
    except StoreError as exc:
        raise RunError(str(exc)) from None
    if store.repaired:
        print(f"{PROG}: {printable(store.repaired)}", file=sys.stderr)
    return store


def _journal_keys(path: Path) -> set[str]:
    events, _ = read_events(path)
    return {str(e["key"]) for e in events if e.get("key")}


def _clear(args: argparse.Namespace) -> int:
    notebook, cells, root, journal = _open(args)
    _, all_runs, _, _ = _load(journal)
    names = {c.step for c in cells if c.step} | {s.name for r in all_runs.values() for s in r.steps}
    if args.step is not None:
        if args.step not in names:
            known = ", ".join(sorted(names)) or "none"
            raise RunError(f"--step {args.step}: no step {args.step!r} in {notebook.name} or its "
                           f"runs; its steps: {known}")
        names = {args.step}
    if not (root / "index").is_dir():
        print(f"nothing to clear: no cache at {root}")
        return 0
    own = _journal_keys(journal)
    others: set[str] = set()
    for path in iter_journals(root):
        if path != journal:
            others |= _journal_keys(path)
    store = _store(root)
    try:
        entries = list(store.entries())
        targets = [e for e in entries if e.step in names and (e.key in own or e.key not in others)]
        files = {e.file: e.size for e in targets}
        if args.dry_run:
            gone = {e.key for e in targets}
            still = {e.file for e in entries if e.key not in gone}
            freed = sum(size for name, size in files.items() if name not in still)
        else:
            for entry in targets:
                store.delete(entry.key)
            freed = sum(size for name, size in files.items()
                        if not (root / "objects" / name).exists())
    finally:
        store.close()
    steps = sorted({e.step for e in targets})
    which = f"step '{args.step}'" if args.step else f"{notebook.name}'s steps"
    detail = f" ({', '.join(steps)})" if steps and not args.step else ""
    entries_text = f"{len(targets)} cache entr{'y' if len(targets) == 1 else 'ies'} of {which}{detail}"
    if args.dry_run:
        print(printable(f"would remove {entries_text}, would free {human_size(freed)} "
                        "(dry run: nothing removed)"))
    else:
        print(printable(f"removed {entries_text}, {human_size(freed)} freed"))
    return 0


def _gc(args: argparse.Namespace) -> int:
    root = location.cache_root(str(args.cache_dir or ""), {})  # as the kernel finds it
    if args.store or args.max_size:
        from . import teamops

        if args.store:
            return teamops.cmd_gc_store(root, args.store, dry_run=args.dry_run)
        if (root / "index").is_dir():
            return teamops.cmd_gc_max_size(root, args.max_size, dry_run=args.dry_run)
    if not (root / "index").is_dir():
        print(f"nothing to collect: no cache at {root}")
        return 0
    keep, warnings = gc_keep(root)
    if warnings:
        for warning in warnings:
            print(f"warning: {printable(warning)}", file=sys.stderr)
        print(f"collected nothing: a journal in {root} could not be read whole (see above), and a "
              "skipped record may need an entry. Remove the journal files you do not trust, then "
              "run gc again.")
        return 0
    store = _store(root)
    try:
        if args.dry_run:
            removed, freed = _gc_preview(store, keep)
            left = sum(1 for k in store.keys() if k in keep)
        else:
            removed, freed = store.gc(keep)
            left = sum(1 for _ in store.keys())
    finally:
        store.close()
    notebooks = sum(1 for _ in iter_journals(root))
    entries = f"{removed} cache entr{'y' if removed == 1 else 'ies'}"
    kept = f"{left} that the latest runs of {notebooks} notebook{'s' * (notebooks != 1)} need"
    if args.dry_run:
        print(f"would remove {entries}, would free {human_size(freed)}; would keep {kept} "
              "(dry run: nothing removed)")
    else:
        print(f"removed {entries}, {human_size(freed)} freed; kept {kept}")
    return 0


def _gc_preview(store: Any, keep: set[str]) -> tuple[int, int]:
    """What ``Store.gc(keep)`` would remove and free, without removing anything."""
    import stat as stat_

    removed = sum(1 for k in store.keys() if k not in keep)
    used = {e.file for e in store.entries() if e.key in keep}
    freed = 0
    for name in store.dir.names("objects"):
        if name in used:
            continue
        st = store.dir.lstat("objects", name)
        if st is not None and stat_.S_ISREG(st.st_mode):
            freed += st.st_size
    return removed, freed


# -- ls ---------------------------------------------------------------------------------------
def _ls(args: argparse.Namespace) -> int:
    notebook = Path(args.notebook).expanduser().absolute() if args.notebook else None
    if notebook is not None:
        root = cache_root_for(notebook, args.cache_dir)
    else:
        root = location.cache_root(str(args.cache_dir or ""), {})
    rows = ls_data(root, notebook) if (root / "index").is_dir() else []
    total = sum(r["size"] for r in rows)
    if args.json:
        _print_json({"schema": SCHEMA_VERSION, "cache_dir": str(root),
                     "notebook": str(notebook) if notebook else None, "size": total,
                     "entries": rows})
        return 0
    if not rows:
        print(f"no cache entries{f' of {notebook.name}' if notebook else ''} in {root}")
        return 0
    table = [["step", "notebook", "size", "stored (UTC)", "last used (UTC)", "latest run needs it"]]
    for r in rows:
        table.append([r["step"], ", ".join(Path(n).name for n in r["notebooks"]) or "-",
                      human_size(r["size"]), _short_time(r["created"]),
                      _short_time(r["last_used"]), "yes" if r["needed"] else "no"])
    _print_table([[printable(c) for c in row] for row in table])
    spare = sum(r["size"] for r in rows if not r["needed"])
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, {human_size(total)} in {root}; "
          f"{human_size(spare)} no latest run needs (`{PROG} gc --dry-run` says what gc frees)")
    return 0


def ls_data(root: Path, notebook: Path | None = None) -> list[dict[str, Any]]:
    """What ``ls --json`` lists under ``entries``: every cache entry (of ``notebook``'s journal,
    when given), newest first."""
    keep, _ = gc_keep(root)
    notebooks: dict[str, set[str]] = {}
    last_used: dict[str, float] = {}
    own: set[str] | None = None
    for path in iter_journals(root):
        events, _ = read_events(path)
        names = {str(e.get("run")): str(e.get("notebook") or "") for e in events
                 if e.get("kind") == "run_started"}
        keys = set()
        for e in events:
            key = e.get("key")
            if e.get("kind") == "step_finished" and isinstance(key, str):
                keys.add(key)
                last_used[key] = max(last_used.get(key, 0.0), float(e.get("time", 0)))
                if names.get(str(e.get("run"))):
                    notebooks.setdefault(key, set()).add(names[str(e.get("run"))])
        if notebook is not None and path == journal_path(root, str(notebook)):
            own = keys
    store = _store(root)
    try:
        entries = [e for e in store.entries() if notebook is None or e.key in (own or set())]
    finally:
        store.close()
    entries.sort(key=lambda e: e.created, reverse=True)
    return [{"key": e.key, "step": e.step, "notebooks": sorted(notebooks.get(e.key, ())),
             "size": e.size, "created": _iso(e.created), "last_used": _iso(last_used.get(e.key)),
             "needed": e.key in keep} for e in entries]


def _short_time(iso: str | None) -> str:
    return (iso or "-")[:19].replace("T", " ")


def _disk_usage(root: Path) -> int:
    """Bytes of the files under the cache folder (links not followed); 0 when there is none."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += st.st_size if not os.path.islink(os.path.join(folder, name)) else 0
    return total
def _push(args: argparse.Namespace) -> int:
    from . import teamops

    return teamops.cmd_push(location.cache_root(str(args.cache_dir or ""), {}), args.store)


# -- helpers ----------------------------------------------------------------------------------
def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def _print_table(table: list[list[str]]) -> None:
    for line in columns(table):
        print(line)


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
