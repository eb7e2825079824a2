"""The global random generators (``random``, ``numpy.random``): what a hit must match and leave.

A step that draws from a global generator gives other numbers after another seed, and leaves
the generator advanced. So on a miss the runner notes whether the step moved a generator; if it
did, the entry records each generator's state before (as a digest) and after (whole). A hit is
then allowed only when the generators are where they were before, and it leaves them where the
step left them — exactly what a plain run would. Steps that draw nothing pay two ``getstate``
calls on a miss and nothing on a hit.

A step that seeds a generator before anything else could touch it (``np.random.seed(0)`` as
its first statement after imports) does not depend on where that generator stood: for it the
before-state is not recorded, so it hits in a new kernel too (:func:`seeded`, a static and
conservative reading of the step's top-level statements). Its after-state still is.
"""

from __future__ import annotations

import ast
import hashlib
import pickle
import random
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["Watch", "digests", "moved", "restore", "seeded", "states", "summary"]

# The seed functions, by dotted name, and the generator each one sets.
_SEED_NAMES = {"random.seed": "random", "numpy.random.seed": "numpy",
               "numpy.random.mtrand.seed": "numpy"}
# Importing these draws from no global generator (numpy's starts from fresh entropy, untracked).
_QUIET_IMPORTS = frozenset({"random", "numpy", "numpy.random"})


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


def moved(before: dict[str, Any], after: dict[str, Any], seeded: frozenset[str] = frozenset()
          ) -> list[str]:
    """The generators whose state changed between ``before`` and ``after``. One loaded by the
    step itself (``import numpy`` in it) started from fresh entropy: not tracked — unless the
    step seeded it (``seeded``): then where it left it is its output, changed or not."""
    before_d, after_d = digests(before), digests(after)
    return [name for name in after_d if name in seeded
            or (name in before_d and before_d[name] != after_d[name])]


def seeded(tree: ast.Module, namespace: Mapping[str, Any]) -> frozenset[str]:
    """The generators the step seeds before anything could draw from them or read them.

    Conservative: only the step's first top-level statements are read, and only while each is
    an import of ``random`` / ``numpy`` / ``numpy.random``, a name bound to a literal, a
    docstring or ``pass``, or a seed call (``np.random.seed(0)``, ``random.seed(SEED)``: the
    arguments literals or names). The first other statement ends the reading: any call, an
    attribute or an operator could run code that draws. A seed function is recognised through
    a module the step imports in those statements or one the namespace holds (``np``), or a
    seed function the namespace holds (``from numpy.random import seed`` in an earlier cell).
    """
    imported: dict[str, str] = {}  # name -> dotted path, bound by the statements read so far
    shadowed: set[str] = set()  # names bound to literals by those statements
    found: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Import) and all(a.name in _QUIET_IMPORTS for a in stmt.names):
            for a in stmt.names:
                if a.asname:
                    imported[a.asname] = a.name
                else:
                    top = a.name.partition(".")[0]
                    imported[top] = top
                shadowed.discard(a.asname or a.name.partition(".")[0])
        elif (isinstance(stmt, ast.ImportFrom) and not stmt.level and stmt.module in _QUIET_IMPORTS
              and all(a.name != "*" for a in stmt.names)):
            for a in stmt.names:
                imported[a.asname or a.name] = f"{stmt.module}.{a.name}"
                shadowed.discard(a.asname or a.name)
        elif (isinstance(stmt, ast.Assign) and _literal(stmt.value)
              and all(isinstance(t, ast.Name) for t in stmt.targets)):
            for t in stmt.targets:
                assert isinstance(t, ast.Name)
                shadowed.add(t.id)
                imported.pop(t.id, None)
        elif isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr)
                                            and isinstance(stmt.value, ast.Constant)):
            continue
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            generator = _seed_call(stmt.value, imported, shadowed, namespace)
            if generator is None:
                break
            found.add(generator)
        else:
            break
    return frozenset(found)


def _literal(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant)


def _seed_call(call: ast.Call, imported: Mapping[str, str], shadowed: set[str],
               namespace: Mapping[str, Any]) -> str | None:
    """The generator ``call`` seeds, if it is a seed call with plain arguments; else None."""
    args = [*call.args, *(k.value for k in call.keywords)]
    if not args or any(k.arg is None for k in call.keywords) or not all(
            _literal(a) or isinstance(a, ast.Name) for a in args):
        return None  # seed() draws entropy; seed(f()) may draw first; seed(**kw): unknown
    chain: list[str] = []
    node: ast.expr = call.func
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id in shadowed:
        return None
    chain.reverse()
    if node.id in imported:
        return _SEED_NAMES.get(".".join([imported[node.id], *chain]))
    value = namespace.get(node.id)
    for attr in chain:  # through modules only: no attribute of another object is evaluated
        if not isinstance(value, types.ModuleType):
            return None
        value = vars(value).get(attr)
    for dotted, generator in _SEED_NAMES.items():
        module, _, attr = dotted.rpartition(".")
        loaded = sys.modules.get(module)
        if value is not None and loaded is not None and vars(loaded).get(attr) is value:
            return generator
    return None


def restore(state: dict[str, Any]) -> None:
    """Put the generators where ``state`` says (what the step left)."""
    if "random" in state:
        random.setstate(state["random"])
    np = sys.modules.get("numpy")
    if np is not None and "numpy" in state:
        np.random.set_state(state["numpy"])


def summary(drawn: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an entry's manifest says of a payload's ``rng`` record (small, signed, readable
    without loading the payload): the digests a hit requires, and which generators the step
    leaves somewhere (their states are in the payload). ``%resume`` reads it."""
    if drawn is None:
        return {"before": {}, "moved": []}
    return {"before": dict(drawn["before"]), "moved": sorted(drawn["after"])}


# The module functions that set or read a generator's state, by generator: (module, name).
_STATE_FUNCTIONS = {
    "random": [("random", n) for n in ("seed", "getstate", "setstate")],
    "numpy": [(m, n) for m in ("numpy.random", "numpy.random.mtrand")
              for n in ("seed", "get_state", "set_state")],
}


class Watch:
    """While a step runs: which generators it seeded before anything read or moved them.

    The run-time half of :func:`seeded`, for steps that call something first (a logging
    helper): the module functions that seed, read or set a generator's state are wrapped for
    the step's duration. A generator counts as seeded when the first of them the step calls
    is its seed function and, at that moment, its state is still the one before the step
    (nothing drew from it: every draw advances it). Conservative: a notebook that holds one of
    those functions or a generator object itself under another name (``gs = np.random.get_state``
    in an earlier cell) could read it unseen, so then nothing is claimed.
    """

    def __init__(self, before: Mapping[str, str], namespace: Mapping[str, Any]) -> None:
        self.seeded: set[str] = set()
        self._before = before
        self._touched: set[str] = set()
        self._patched: list[tuple[types.ModuleType, str, Any]] = []
        self._wrappers: dict[int, Any] = {}
        self._modules = frozenset(sys.modules)
        originals = self._originals()
        if any(id(v) in originals for v in namespace.values()):
            return  # an alias of a state function or of a generator: its use would be unseen
        for generator, functions in _STATE_FUNCTIONS.items():
            if generator not in before:
                continue
            for module_name, attr in functions:
                module = sys.modules.get(module_name)
                original = vars(module).get(attr) if module is not None else None
                if module is None or original is None:
                    continue
                wrapper = self._wrap(generator, attr == "seed", original)
                self._patched.append((module, attr, wrapper))
                self._wrappers[id(wrapper)] = original
                setattr(module, attr, wrapper)

    @staticmethod
    def _originals() -> set[int]:
        found = {id(getattr(random, "_inst", None))}
        np = sys.modules.get("numpy")
        if np is not None:
            found.add(id(getattr(np.random.mtrand, "_rand", None)))
        for functions in _STATE_FUNCTIONS.values():
            for module_name, attr in functions:
                module = sys.modules.get(module_name)
                if module is not None and attr != "seed":
                    found.add(id(vars(module).get(attr)))
        found.discard(id(None))
        return found

    def _wrap(self, generator: str, is_seed: bool, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if generator not in self._touched:
                self._touched.add(generator)
                now = digests(states()).get(generator) if is_seed and (args or kwargs) else None
                if now is not None and now == self._before[generator]:
                    self.seeded.add(generator)
            return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        return wrapper

    def close(self, namespace: dict[str, Any]) -> None:
        """Put the module functions back, also where the step bound a wrapper to a name, or a
        module it loaded did (``from pylab import *`` loads ``from numpy.random import *``)."""
        if not self._patched:
            return
        for module, attr, wrapper in self._patched:
            if vars(module).get(attr) is wrapper:  # unless the step put its own there
                setattr(module, attr, self._wrappers[id(wrapper)])
        loaded = [vars(m) for n, m in list(sys.modules.items())
                  if n not in self._modules and isinstance(m, types.ModuleType)]
        for names in [namespace, *loaded]:
            for name, value in list(names.items()):
                if id(value) in self._wrappers:
                    names[name] = self._wrappers[id(value)]
        self._patched = []
