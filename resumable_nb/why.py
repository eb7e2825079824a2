"""Why a step missed: what differs between this run of a step and its latest cache entry.

Pure: compares a step's source and input fingerprints (short, as the journal records them)
with those of the step's latest completed execution. The runner puts the one-line summary in
the miss reason (shown by the ``%%step`` notice, ``%steps``, the panel and ``events``);
``%why NAME`` prints the whole comparison.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from . import procstate
from .files import describe
from .journal import RunView, StepView

__all__ = ["Comparison", "compare", "latest_entry"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """This execution of a step against its latest completed one."""

    previous: StepView | None
    code_diff: tuple[str, ...] = ()  # unified diff lines; empty when the source is the same
    changed: tuple[tuple[str, str, str], ...] = ()  # (input, old short fp, new short fp)
    new: tuple[str, ...] = ()  # inputs the latest entry did not have
    gone: tuple[str, ...] = ()  # inputs it had that this execution does not
    extra: tuple[str, ...] = field(default_factory=tuple)  # other causes (force, uncacheable)

    @property
    def differs(self) -> bool:
        """Something visible differs (code or inputs)."""
        return bool(self.code_diff or self.changed or self.new or self.gone)

    def summary(self) -> str:
        """One line: what differs, or why nothing visible does."""
        if self.previous is None:
            return "first run of this step (no earlier entry)"
        parts = []
        if self.code_diff:
            parts.append("its code changed")
        # "file:x.csv", "env:X", "frame:df.query:@thr": not variables; a variable read through
        # a library's string is said once, as such.
        framed = {n.rpartition(":")[2].lstrip("@") for n, _, _ in self.changed if n.startswith("frame:")}
        variables = [n for n, _, _ in self.changed if ":" not in n and n not in framed]
        if variables:
            parts.append(_listed("input", variables) + " changed")
        # A process setting enters the key only when not as a new process has it: coming or
        # going, it changed (procstate.py).
        settings = {n for n in (*self.new, *self.gone) if n.startswith("proc:")}
        parts += [f"{_label(n)} changed" for n, _, _ in self.changed if ":" in n]
        parts += [f"{_label(n)} changed" for n in sorted(settings)]
        new = [n for n in self.new if n not in settings]
        gone = [n for n in self.gone if n not in settings]
        if new:
            parts.append(_listed("new input", map(_label, new)))
        if gone:
            parts.append(_listed("input", map(_label, gone)) + " no longer read")
        if not parts:
            return ("same code and inputs as its latest entry: an imported module, a read file "
                    "or resumable_nb's key format changed, or the entry was removed")
        return "; ".join(parts)

    def report(self) -> str:
        """Several lines: the code diff and every input's old and new fingerprint."""
        lines = [self.summary()]
        if self.previous is not None:
            lines.append(f"latest entry: run {self.previous.run}, key {str(self.previous.key)[:22]}")
        if self.code_diff:
            lines.extend(["code:", *(f"  {ln}" for ln in self.code_diff)])
        rows = ([(n, old, new) for n, old, new in self.changed]
                + [(n, "-", "(new)") for n in self.new] + [(n, "(gone)", "-") for n in self.gone])
        if rows:
            width = max(len(n) for n, _, _ in rows)
            lines.append("inputs:")
            lines.extend(f"  {n:<{width}}  {old:<16} -> {new}" for n, old, new in rows)
        return "\n".join(lines)


def _label(entry: str) -> str:
    """How a miss reason names an entry of the key that is not a variable: ``environment
    variable `THR```, ``the environment``, ```@thr` read by df.query``, ``file data.csv``."""
    kind, _, what = entry.partition(":")
    if kind == "env":
        return "the environment" if what == "*" else f"environment variable `{what}`"
    if kind == "module":
        return f"module `{what}`"
    if kind == "attr":  # an installed module's attribute set from elsewhere
        return f"`{what}` (replaced in its module)"
    if kind == "frame":
        where, _, name = what.rpartition(":")
        return f"`{name}` read by {where}"
    if kind == "proc":
        return procstate.label(what)
    if kind in {"file", "reads", "cwd", "writes"}:
        return describe(entry)
    return entry


def _listed(noun: str, names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{noun}{'s' * (len(names) != 1)} {shown}"


def latest_entry(runs: Mapping[str, RunView], name: str, other_than: str | None = None) -> StepView | None:
    """The latest completed execution of step ``name`` (any run), with a key other than
    ``other_than`` (the key that just missed)."""
    for run in reversed(list(runs.values())):
        for step in reversed(run.steps):
            if step.name == name and step.complete and step.key != other_than:
                return step
    return None


def compare(previous: StepView | None, source: str, inputs: Mapping[str, str]) -> Comparison:
    """Compare an execution (its source and short input fingerprints) with ``previous``."""
    if previous is None:
        return Comparison(None)
    diff: tuple[str, ...] = ()
    if _normal(previous.source) != _normal(source):
        diff = tuple(difflib.unified_diff(previous.source.splitlines(), source.splitlines(),
                                          "latest entry", "now", lineterm="", n=1))[2:]
    old = previous.inputs
    changed = tuple((n, old[n], inputs[n]) for n in sorted(set(old) & set(inputs))
                    if old[n] and inputs[n] and old[n][:16] != inputs[n][:16])
    return Comparison(previous, diff, changed, tuple(sorted(set(inputs) - set(old))),
                      tuple(sorted(set(old) - set(inputs))))


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
