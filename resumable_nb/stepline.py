"""The ``%%step`` line: its one parser, shared by the magic, ``%resume --run``, ``%replay``, the
panel's Re-run and the headless CLI. Pure: no IPython.

Every caller that runs a step from its line parses it here, so the options that go into the
key (``--ignore``) are read the same way everywhere; a second parser is where keys diverge.

>>> parse_step_line("clean --ignore=fig --force --retries 2")
StepLine(name='clean', force=True, ignore=('fig',), reads=(), writes=(), retries=2, retry_delay=0.0)
>>> str(StepLine("clean", force=True, ignore=("fig",)))
'clean --force --ignore fig'
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, NoReturn, TypeVar

from .errors import StepUsageError

__all__ = ["USAGE", "StepLine", "check_ignore", "check_patterns", "check_step_name", "document",
           "parse_step_line"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")


@dataclass(frozen=True, slots=True)
class StepLine:
    """A parsed ``%%step`` line. A new option is a field here (named as its ``dest``) plus a
    row of ``_OPTIONS``."""

    name: str
    force: bool = False
    ignore: tuple[str, ...] = ()  # sorted, without repeats: the same set reads the same
    reads: tuple[str, ...] = ()  # glob patterns, sorted, without repeats (resumable_nb.files)
    writes: tuple[str, ...] = ()
    retries: int = 0
    retry_delay: float = 0.0

    def __str__(self) -> str:
        """The line's arguments, canonical: parsing them gives this ``StepLine`` back."""
        words = [self.name]
        for option in _OPTIONS:
            value = getattr(self, option.dest)
            if value is True:
                words.append(option.flag)
            elif isinstance(value, tuple) and value:
                words += [option.flag, *value]
            elif value not in (False, (), None):
                words += [option.flag, str(value)]
        return " ".join(shlex.quote(w) for w in words)


@dataclass(frozen=True, slots=True)
class _Option:
    flag: str
    shape: str  # what follows the flag in the usage line ("" for a switch)
    help: str
    kwargs: dict[str, Any]

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


_OPTIONS = (
    _Option("--force", "", "Run even on a cache hit, and overwrite the entry.",
            {"action": "store_true"}),
    _Option("--ignore", "NAME ...", "Leave these inputs out of the key. Your responsibility: a "
            "change to them will not re-run the step.", {"nargs": "+", "metavar": "NAME"}),
    _Option("--reads", "PATTERN ...", "More inputs: files matching these globs (quote them), "
            "relative to the working directory. Their contents and the set of matches are in the "
            "key.", {"nargs": "+", "metavar": "PATTERN"}),
    _Option("--writes", "PATTERN ...", "Files the step writes (globs, quoted): stored with the "
            "entry and written back on a hit when absent or different. One missing after the "
            "step ran is an error.", {"nargs": "+", "metavar": "PATTERN"}),
    _Option("--retries", "N", "On an exception, run the body up to N more times from the same "
            "inputs (never after a KeyboardInterrupt).", {"type": int, "metavar": "N"}),
    _Option("--retry-delay", "S", "Seconds to wait before each retry.",
            {"type": float, "metavar": "S"}),
)

USAGE = " ".join(["%%step NAME", *(f"[{o.flag}{' ' + o.shape if o.shape else ''}]" for o in _OPTIONS)])
"""``%%step NAME [--force] [--ignore NAME ...] [--reads PATTERN ...] ...``: said in every usage
error and in ``%%step?``."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise StepUsageError(f"%%step: {message}. Usage: {USAGE}")


def _parser(description: str = "") -> _Parser:
    # argparse %-formats usage and help texts: "%%step" must reach it as "%%%%step".
    parser = _Parser(prog="%%step", usage=USAGE.replace("%", "%%"), add_help=False,
                     allow_abbrev=False, description=description,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="", metavar="NAME",
                        help="The step's name: letters, digits, _ - . (starting with a letter or _).")
    for option in _OPTIONS:
        parser.add_argument(option.flag, dest=option.dest, help=option.help.replace("%", "%%"),
                            **option.kwargs)
    return parser


_PARSER = _parser()


@lru_cache(maxsize=256)  # argparse is a third of a cache hit's cost; StepLine is immutable
def parse_step_line(line: str) -> StepLine:
    """The arguments of a ``%%step`` line (what follows ``%%step``), quoted as in a shell.

    :raises StepUsageError: no name, a bad name or ``--ignore`` name, an unknown option, an
        unclosed quote; one line that ends with the usage.
    """
    try:
        words = shlex.split(line)
    except ValueError as exc:  # "No closing quotation"
        raise StepUsageError(f"%%step: {str(exc).lower()} in {line.strip()!r}. Usage: {USAGE}") from None
    args = vars(_PARSER.parse_args(words))
    check_step_name(args["name"])
    args["ignore"] = check_ignore(args["ignore"] or ())
    args["reads"] = check_patterns("--reads", args["reads"] or ())
    args["writes"] = check_patterns("--writes", args["writes"] or ())
    args["retries"] = args["retries"] or 0
    args["retry_delay"] = float(args["retry_delay"] or 0.0)
    if args["retries"] < 0 or not 0 <= args["retry_delay"] < float("inf"):
        raise StepUsageError(f"%%step: --retries and --retry-delay take numbers >= 0. Usage: {USAGE}")
    return StepLine(**{f.name: args[f.name] for f in fields(StepLine)})


def check_step_name(name: str) -> None:
    """:raises StepUsageError: ``name`` is empty or not a valid step name."""
    if not name:
        raise StepUsageError(f"%%step needs a step name, e.g. `%%step load`. Usage: {USAGE}")
    if not _NAME.match(name):
        raise StepUsageError(f"invalid step name {name!r}: use letters, digits, '_', '-' or '.', "
                             "starting with a letter or '_'")


def check_ignore(names: Iterable[str]) -> tuple[str, ...]:
    """The ``--ignore`` names, sorted and without repeats.

    :raises StepUsageError: one of them is not a variable name.
    """
    names = tuple(sorted(set(names)))
    for n in names:
        if not n.isidentifier():
            raise StepUsageError(f"--ignore takes variable names; {n!r} is not one")
    return names


def check_patterns(flag: str, patterns: Iterable[str]) -> tuple[str, ...]:
    """The ``--reads`` / ``--writes`` globs, sorted and without repeats.

    :raises StepUsageError: an empty pattern, or one with a NUL or a line break.
    """
    patterns = tuple(sorted(set(patterns)))
    for p in patterns:
        if not p.strip() or any(c in p for c in "\0\n\r"):
            raise StepUsageError(f"{flag} takes file paths or glob patterns; {p!r} is not one")
    return patterns


_F = TypeVar("_F", bound=Callable[..., Any])


def document(magic: _F) -> _F:
    """Give the ``%%step`` magic its ``%%step?`` help: the usage line, its docstring (the user
    help with an example), then every argument, generated from the parser."""
    magic.__doc__ = _parser(inspect.cleandoc(magic.__doc__ or "")).format_help()
    return magic
