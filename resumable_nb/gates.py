"""Approval gates: the ``%gate NAME [--ask TEXT]`` line, where a gate stands in a notebook, and
whether a run may pass it.

Pure: the magic (live notebook), the headless run (:mod:`resumable_nb.headless`) and the CLI's
``approve`` / ``reject`` all parse the line and look decisions up here, so they agree on what a
gate is. A decision is for one gate *as it was asked*: its name, its question and its position
(the steps above it). Change the question or move the gate past a step and it asks again.
"""

from __future__ import annotations

import argparse
import getpass
import shlex
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import StepUsageError
from .journal import GateView, RunView
from .resume import Cell

__all__ = ["GATE_STATES", "Gate", "decision_for", "find_gates", "gate_of", "lineage", "parse_gate_line",
           "whoami"]

GATE_STATES = ("waiting", "approved", "rejected")
"""The states of a run that stopped at a gate: the next ``resumable-nb run`` resumes it."""


@dataclass(frozen=True, slots=True)
class Gate:
    """A ``%gate`` cell of a notebook."""

    name: str
    question: str
    position: str  # the names of the steps above it, comma-separated
    index: int = -1  # the cell's position among all cells (-1: not from a notebook)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise StepUsageError(f"%gate: {message}. Usage: %gate NAME [--ask TEXT]")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%gate", add_help=False)
    parser.add_argument("name")
    parser.add_argument("--ask", default="")
    return parser


def parse_gate_line(line: str) -> tuple[str, str]:
    """``review --ask "Numbers look right?"`` -> ``("review", "Numbers look right?")``.

    :raises StepUsageError: no name, an unknown option, or unbalanced quotes.
    """
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise StepUsageError(f"%gate: {exc}. Usage: %gate NAME [--ask TEXT]") from None
    args = _parser().parse_args(words)
    if not args.name.isidentifier():
        raise StepUsageError(f"%gate {args.name}: a gate name must be an identifier (like review)")
    return str(args.name), str(args.ask)


def _gate_line(source: str) -> str | None:
    """The arguments of a cell that is one ``%gate`` line (comments aside), else None."""
    lines = [ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) != 1 or not (lines[0] == "%gate" or lines[0].startswith("%gate ")):
        return None
    return lines[0][len("%gate"):].strip()


def find_gates(cells: Sequence[Cell]) -> list[Gate]:
    """The gate cells of a notebook (a cell that is one ``%gate`` line), with their positions.
    A gate line that does not parse is not a gate here: executing it shows the magic's error."""
    gates = []
    above: list[str] = []
    for cell in cells:
        if cell.step:
            above.append(cell.step)
            continue
        line = _gate_line(cell.source)
        if line is None:
            continue
        try:
            name, question = parse_gate_line(line)
        except StepUsageError:
            continue
        gates.append(Gate(name, question, ",".join(above), cell.index))
    return gates


def gate_of(cell: Cell, gates: Iterable[Gate]) -> Gate | None:
    """The gate ``cell`` is, if it is one."""
    return next((g for g in gates if g.index == cell.index), None)


def lineage(all_runs: Mapping[str, RunView], run_id: str | None) -> list[RunView]:
    """``run_id`` and the runs it resumed, latest first."""
    out: list[RunView] = []
    seen: set[str] = set()
    while run_id is not None and run_id in all_runs and run_id not in seen:
        seen.add(run_id)
        out.append(all_runs[run_id])
        run_id = all_runs[run_id].resumed_from
    return out


def decision_for(gate: Gate, history: Iterable[RunView]) -> GateView | None:
    """The latest decision on ``gate`` as it stands now, in ``history`` (latest run first);
    None: nobody decided this gate with this question at this place."""
    for run in history:
        for seen in reversed(run.gates):
            if seen.name == gate.name and seen.decision and seen.same(gate.question, gate.position):
                return seen
    return None


def whoami() -> tuple[str, str]:
    """(user, host) for a decision's record."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return user, socket.gethostname()
