"""Process settings that change what a step computes, or that a step makes for later cells.

A step's result can depend on more than its variables, files and modules: the decimal
context (``getcontext().prec = 5``), numpy's error state (``np.seterr(divide='raise')``: a
plain run raises where 1/0 gave inf), warnings filters (``simplefilter('error')``: a plain
run raises at ``warnings.warn``), pandas' behaviour options (``future.infer_string``) and
``sys.argv`` (read by argparse). And a step can set process state that later cells rely on:
``os.chdir('sub')``, ``sys.path.append('src')`` (the next cell's import), the same settings.

So each setting in :data:`SETTINGS` says how to read it, whether it is part of the key, and
how to apply what a step changed:

* **Key** (:func:`key_entries`): a keyed setting enters the key as ``proc:NAME`` only when it
  differs from what a new process has (:attr:`Setting.fresh`). Existing entries and steps in
  kernels that change nothing keep their keys; a setting whose module is not loaded has its
  fresh value and costs nothing. Of the warnings filters only the ``'error'`` ones count
  (only they raise; the ``'ignore'`` filters libraries add at import must not make a new
  kernel with another import order miss). ``sys.argv`` counts once it is not the
  interpreter's own (the kernel's connection file differs in every kernel).
* **Not keyed**: the working directory (a relative path read is keyed by the file it
  resolves to, with ``cwd:``: files.py) and ``sys.path`` (an import is keyed by the
  identity of the code it loads: fingerprint.import_identity).
* **Outputs** (:func:`snapshot`, :func:`changed`): on a miss the runner snapshots every
  setting before the step and stores those the step changed; the entry carries them first in
  its payload as an object whose unpickling applies them (:class:`Changes`, as mplstate
  does), so a hit and ``%resume`` leave them as the plain run did, before any output (whose
  class may live in the folder the step put on ``sys.path``) is unpickled.

matplotlib's rcParams stay in mplstate.py: they are not keyed, their "fresh" value is the
matplotlibrc, and applying them needs the backend first; one more row here would not say it
more simply.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SETTINGS", "Changes", "Setting", "apply", "changed", "key_entries", "label", "snapshot"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One process setting.

    ``read()`` gives a comparable, picklable value made of str/int/None/tuples (None: its
    module is not loaded); ``key()`` its part of the key (None: not keyed, or its module is
    not loaded), entered only when not ``fresh``, the part a new process has (read on every
    step, hit or miss: cheap); ``diff(before, after)`` what the step changed (None:
    nothing) and ``apply(diff)`` makes that change again.
    """

    name: str
    label: str
    read: Callable[[], Any]
    diff: Callable[[Any, Any], Any]
    apply: Callable[[Any], None]
    key: Callable[[], Any] | None = None
    fresh: Any = None


# -- decimal ---------------------------------------------------------------------------------
_DECIMAL_FIELDS = ("prec", "rounding", "Emin", "Emax", "capitals", "clamp", "traps")
_DECIMAL_FRESH = (28, "ROUND_HALF_EVEN", -999999, 999999, 1, 0,
                  ("DivisionByZero", "InvalidOperation", "Overflow"))


def _decimal_read() -> tuple[Any, ...] | None:
    dec = sys.modules.get("decimal")
    if dec is None:
        return None
    ctx = dec.getcontext()
    traps = ctx.traps.copy()  # a dict {signal: bool}
    fresh = _DECIMAL_FRESH_TRAPS.get(dec)
    if fresh is None:
        fresh = _DECIMAL_FRESH_TRAPS[dec] = {sig: sig.__name__ in _DECIMAL_FRESH[-1] for sig in traps}
    if traps == fresh:  # every hit's key reads this: the usual case without sorting names
        names = _DECIMAL_FRESH[-1]
    else:
        names = tuple(sorted(s.__name__ for s, on in traps.items() if on))
    return (ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, ctx.capitals, ctx.clamp, names)


# A new process's traps as decimal's own dict, per decimal module (C or pure Python).
_DECIMAL_FRESH_TRAPS: dict[Any, dict[Any, bool]] = {}


def _decimal_apply(fields: dict[str, Any]) -> None:
    import decimal

    ctx = decimal.getcontext()
    for field, value in fields.items():
        if field == "traps":
            for signal in ctx.traps:
                ctx.traps[signal] = signal.__name__ in value
        else:
            setattr(ctx, field, value)


def _fields_diff(names: tuple[str, ...], fresh: tuple[Any, ...]) -> Callable[[Any, Any], Any]:
    def diff(before: Any, after: Any) -> dict[str, Any] | None:
        if after is None:
            return None
        before = fresh if before is None else before
        out = {n: a for n, b, a in zip(names, before, after, strict=True) if a != b}
        return out or None
    return diff


# -- numpy -----------------------------------------------------------------------------------
_NP_FRESH = (("divide", "warn"), ("invalid", "warn"), ("over", "warn"), ("under", "ignore"))


_NP_FRESH_DICT = dict(_NP_FRESH)


def _np_read() -> tuple[tuple[str, str], ...] | None:
    np = sys.modules.get("numpy")
    geterr = getattr(np, "geterr", None)
    if geterr is None:
        return None
    state = geterr()
    return _NP_FRESH if state == _NP_FRESH_DICT else tuple(sorted(state.items()))


def _np_diff(before: Any, after: Any) -> dict[str, str] | None:
    if after is None:
        return None
    old = dict(_NP_FRESH if before is None else before)
    out = {k: v for k, v in after if old.get(k) != v}
    return out or None


def _np_apply(kinds: dict[str, str]) -> None:
    import numpy as np

    np.seterr(**kinds)  # type: ignore[arg-type]


# -- warnings filters ------------------------------------------------------------------------
def _pattern(p: Any) -> tuple[str, int] | None:
    return None if p is None else (p.pattern, p.flags) if isinstance(p, re.Pattern) else (str(p), 0)


def _warnings_read() -> tuple[Any, ...]:
    """The filters as plain tuples: (action, message, category 'module:qualname', module, lineno)."""
    return tuple((action, _pattern(msg), _qualname(cat), _pattern(mod), line)
                 for action, msg, cat, mod, line in warnings.filters)


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '')}:{getattr(cls, '__qualname__', repr(cls))}"


_warnings_seen: list[Any] = [None, ()]  # the filters last read (as a tuple), their key


def _warnings_key() -> tuple[Any, ...]:
    """The 'error' filters, in order: only they make a warning raise. IPython's own (it turns
    its ProvisionalCompleterWarning into an error at import) is in every kernel: left out, so
    that keys taken outside a kernel and in one agree. Remembered for the same filter entries
    (tuples, compared by identity first: a hit's key reads this on every step)."""
    now = tuple(warnings.filters)
    if now != _warnings_seen[0]:
        _warnings_seen[:] = [now, _error_filters(now)]
    return _warnings_seen[1]  # type: ignore[no-any-return]


def _error_filters(filters: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(f for f in ((a, _pattern(m), _qualname(c), _pattern(d), n)
                             for a, m, c, d, n in filters if a == "error")
                 if not f[2].startswith("IPython."))


def _added(before: tuple[Any, ...] | None, after: tuple[Any, ...] | None) -> dict[str, list[Any]] | None:
    """Entries of ``after`` not in ``before``: those ahead of every old one (inserted at the
    front, as simplefilter and sys.path.insert(0, ...) do) and the rest (appended)."""
    if after is None:
        return None
    old = set(before or ())
    new = [e for e in after if e not in old]
    if not new:
        return None
    front = 0
    while front < len(after) and after[front] not in old:
        front += 1
    return {"front": list(after[:front]), "end": [e for e in after[front:] if e not in old]}


def _category(spec: str) -> type[Warning] | None:
    module, _, qualname = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:  # noqa: BLE001 - a class that is gone (defined in a cell): left out
        return None
    return obj if isinstance(obj, type) and issubclass(obj, Warning) else None


def _compiled(p: tuple[str, int] | None) -> Any:
    return None if p is None else re.compile(p[0], p[1])


def _warnings_apply(added: dict[str, list[Any]]) -> None:
    def entry(f: Any) -> tuple[Any, ...] | None:
        cat = _category(f[2])
        return None if cat is None else (f[0], _compiled(f[1]), cat, _compiled(f[3]), f[4])

    front = [e for e in map(entry, added["front"]) if e is not None]
    end = [e for e in map(entry, added["end"]) if e is not None]
    filters: list[Any] = warnings.filters  # type: ignore[assignment]
    filters[:] = front + [f for f in filters if f not in front and f not in end] + end
    warnings._filters_mutated()  # type: ignore[attr-defined]  # drop the once/default registries


# -- pandas options --------------------------------------------------------------------------
_PD_GROUPS = ("compute.", "future.", "mode.")
_PD_DISPLAY = frozenset({"mode.sim_interactive"})  # only how a frame prints


def _pd_values() -> list[tuple[str, Any, Any]] | None:
    """(option, value, default) for pandas' behaviour options, read straight from its registry
    (no deprecation warnings, no validation); None when pandas is not loaded."""
    if "pandas" not in sys.modules:
        return None
    config = sys.modules.get("pandas._config.config")
    registered = getattr(config, "_registered_options", None)
    root = getattr(config, "_global_config", None)
    if not isinstance(registered, dict) or not isinstance(root, dict):
        return None
    return [(opt, parent.get(leaf) if parent is not None else None, default)
            for opt, parent, leaf, default in _pd_behaviour(registered, root)]


def _pd_options() -> dict[str, tuple[Any, Any]] | None:
    """{option: (value, default)} for pandas' behaviour options."""
    values = _pd_values()
    return None if values is None else {opt: (v, d) for opt, v, d in values}


_pd_known: list[Any] = [None, 0, None, ()]  # registry, its size, the values' root, the options


def _pd_behaviour(registered: dict[str, Any], root: dict[str, Any]
                  ) -> tuple[tuple[str, dict[str, Any] | None, str, Any], ...]:
    """(option, the dict holding its value, its key there, default) of the behaviour options;
    picked out of the ~150 options once per registry (an option registered later makes it
    again). pandas sets an option in the dict its group made at registration: that dict is
    read directly, not walked to from the root on every key."""
    if _pd_known[0] is not registered or _pd_known[1] != len(registered) or _pd_known[2] is not root:
        options = []
        for opt, spec in sorted(registered.items()):
            if not opt.startswith(_PD_GROUPS) or opt in _PD_DISPLAY:
                continue
            *groups, leaf = opt.split(".")
            parent: Any = root
            for part in groups:
                parent = parent.get(part) if isinstance(parent, dict) else None
            options.append((opt, parent if isinstance(parent, dict) else None, leaf,
                            getattr(spec, "defval", None)))
        _pd_known[:] = [registered, len(registered), root, tuple(options)]
    return _pd_known[3]  # type: ignore[no-any-return]


def _pd_read() -> tuple[tuple[str, str], ...] | None:
    """The behaviour options that differ from pandas' defaults (repr: comparable, picklable),
    sorted."""
    values = _pd_values()
    if values is None:
        return None
    return tuple((opt, repr(v)) for opt, v, d in values if v is not d and _differs(v, d))


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:  # noqa: BLE001 - a value that cannot compare: count it as changed
        return True


def _pd_diff(before: Any, after: Any) -> dict[str, Any] | None:
    if after is None or after == (before or ()):
        return None
    options = _pd_options() or {}
    old = dict(before or ())
    # Back to a default is a change too: recorded with the default's value.
    names = {k for k, _ in after} | set(old)
    out = {k: options[k][0] for k in names if k in options and old.get(k) != dict(after).get(k)}
    return out or None


def _pd_apply(options: dict[str, Any]) -> None:
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated options: the step's own call said so
        for opt, value in options.items():
            try:
                pd.set_option(opt, value)
            except Exception:  # noqa: BLE001 - an option this pandas lacks: left alone
                continue


# -- sys.argv, working directory, sys.path ---------------------------------------------------
def _argv_key() -> tuple[str, ...] | None:
    """None while ``sys.argv`` is the interpreter's own (another connection file in every
    kernel: ``ipykernel_launcher.py -f kernel-1.json``): the tail of ``sys.orig_argv``, led by
    the script, ``-c``, or the file of the module run with ``-m``."""
    argv = tuple(sys.argv)
    if argv == _argv_seen[0]:
        return _argv_seen[1]  # type: ignore[no-any-return]
    _argv_seen[:] = [argv, _argv_key_of(argv)]
    return _argv_seen[1]  # type: ignore[no-any-return]


_argv_seen: list[Any] = [None, None]  # sys.argv last read, its key


def _argv_key_of(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    orig = list(getattr(sys, "orig_argv", ()))
    n = len(argv)
    if not n or len(orig) < n + 1 or list(argv[1:]) != orig[len(orig) - n + 1:]:
        return argv
    lead, flag = orig[len(orig) - n], orig[len(orig) - n - 1]
    if argv[0] == lead or argv[0] == flag == "-c":  # python -c CODE: argv[0] is '-c'
        return None
    # -m pkg.mod: argv[0] is .../pkg/mod.py; -m pkg: .../pkg/__main__.py
    path = argv[0].removesuffix(os.sep + "__main__.py")
    if flag == "-m" and os.path.basename(path).removesuffix(".py") == lead.rpartition(".")[2]:
        return None
    return argv


def _argv_diff(before: Any, after: Any) -> list[str] | None:
    return None if after == before else list(after)


def _argv_apply(argv: list[str]) -> None:
    sys.argv = list(argv)


def _cwd_read() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed under us: nothing to compare
        return None


def _cwd_diff(before: Any, after: Any) -> str | None:
    return None if after is None or after == before else after


def _cwd_apply(path: str) -> None:
    try:
        os.chdir(path)
    except OSError:  # gone on this machine: a later relative read misses and says so
        pass


def _path_apply(added: dict[str, list[Any]]) -> None:
    front = [p for p in added["front"] if p not in sys.path]
    sys.path[:0] = front
    sys.path.extend(p for p in added["end"] if p not in sys.path)


# Applied in this order: the folder first (a relative sys.path entry resolves against it),
# then sys.path (before anything the entry holds is imported).
SETTINGS: tuple[Setting, ...] = (
    Setting("cwd", "working directory", _cwd_read, _cwd_diff, _cwd_apply),
    Setting("sys.path", "sys.path", lambda: tuple(sys.path), _added, _path_apply),
    Setting("argv", "sys.argv", lambda: tuple(sys.argv), _argv_diff, _argv_apply,
            key=_argv_key, fresh=None),
    Setting("decimal", "decimal context", _decimal_read, _fields_diff(_DECIMAL_FIELDS, _DECIMAL_FRESH),
            _decimal_apply, key=_decimal_read, fresh=_DECIMAL_FRESH),
    Setting("numpy.seterr", "numpy error state", _np_read, _np_diff, _np_apply,
            key=_np_read, fresh=_NP_FRESH),
    Setting("warnings", "warnings filters", _warnings_read, _added, _warnings_apply,
            key=_warnings_key, fresh=()),
    Setting("pandas", "pandas options", _pd_read, _pd_diff, _pd_apply, key=_pd_read, fresh=()),
)
_BY_NAME = {s.name: s for s in SETTINGS}


def key_entries() -> dict[str, str]:
    """``{"proc:NAME": fingerprint}`` for each keyed setting that differs from a new process's."""
    out = {}
    for s in SETTINGS:
        if s.key is None:
            continue
        part = s.key()
        if part is not None and part != s.fresh:
            out[f"proc:{s.name}"] = hashlib.sha256(repr(part).encode()).hexdigest()[:32]
    return out


def label(name: str) -> str:
    """How a miss reason names setting ``name`` (``numpy error state``)."""
    s = _BY_NAME.get(name)
    return s.label if s is not None else name


def snapshot() -> dict[str, Any]:
    """Every setting as it is (taken before a step runs)."""
    return {s.name: s.read() for s in SETTINGS}


def changed(before: dict[str, Any]) -> dict[str, Any]:
    """What the step changed since ``before``: {name: diff} for :func:`apply`."""
    out = {}
    for s in SETTINGS:
        try:
            diff = s.diff(before.get(s.name), s.read())
        except Exception:  # noqa: BLE001 - a setting we cannot read: not replayed
            continue
        if diff is not None:
            out[s.name] = diff
    return out


class Changes:
    """Settings a step changed, applied when unpickled."""

    __slots__ = ("items",)

    def __init__(self, items: dict[str, Any]) -> None:
        self.items = items

    def __reduce__(self) -> tuple[Any, ...]:
        return apply, (self.items,)


def apply(items: dict[str, Any]) -> None:
    """Make the changes ``items`` (from :func:`changed`) again, in table order."""
    for s in SETTINGS:
        if s.name in items:
            try:
                s.apply(items[s.name])
            except Exception:  # noqa: BLE001 - not possible here (no numpy): left alone
                continue
