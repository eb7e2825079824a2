"""Which other variables a step can change through its inputs (views, shared objects).

``sub = base[:3]`` in one step and ``sub[0] = 99`` in the next: the second step changes
``base`` too, though it never names it. ``cfg = {"xs": inner}`` and a step doing
``cfg["xs"].append(2)`` changes ``inner``. A plain run leaves those changes; a hit must too, so
such variables are outputs of the step. Finding them must not cost a hash of the whole
namespace on every step (a namespace may hold gigabytes), so:

- arrays: a namespace array is a candidate when it has the same root buffer (following
  ``.base``) as an array reachable from the inputs: views of one array, or of one buffer;
- other mutable objects (lists, dicts, sets, instances): a candidate when the object itself is
  reachable from the inputs, found by a walk bounded to :data:`BUDGET` objects;
- a module's own object bound under its name (``rcParams`` after ``from pylab import *``): a
  candidate when the step reads that module (``matplotlib.rcParams.update(...)`` changes the
  notebook's ``rcParams``). Modules are not walked: only the same-named attribute is looked up.

Only candidates are fingerprinted, before and after the step (on a miss; a hit costs nothing).
Not seen: a variable whose container holds an input (``holder = [arr]``, a step doing
``arr += 1`` through ``arr``) is found only when ``holder`` is itself an input; structures
larger than the budget are walked in part.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

__all__ = ["BUDGET", "candidates"]

BUDGET = 20_000  # objects visited from the inputs, at most

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), range, frozenset,
              types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type)


# Stored by reference to the module: their owner's content is the module's state (numpy.random's
# functions are methods of its global generator, which rng.py follows), not the notebook's.
_REFERENCES = (types.MethodType, types.BuiltinMethodType)


def candidates(namespace: Mapping[str, Any], inputs: Iterable[str], names: Iterable[str]) -> set[str]:
    """The names among ``names`` (not inputs) whose value a step reading ``inputs`` could
    change in place."""
    inputs = set(inputs)
    np = sys.modules.get("numpy")
    ndarray = np.ndarray if np is not None else ()
    seen: set[int] = set()
    roots: set[int] = set()  # root buffers of the arrays reachable from the inputs
    stack = [namespace[n] for n in inputs if n in namespace]
    budget = BUDGET
    while stack and budget > 0:
        obj = stack.pop()
        budget -= 1
        if isinstance(obj, _IMMUTABLE) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, ndarray):
            roots.add(id(_root(obj)))
            if obj.dtype.hasobject:
                stack.extend(obj.ravel()[:budget].tolist())
        elif isinstance(obj, (list, tuple, set)):
            stack.extend(islice(obj, budget))
        elif isinstance(obj, dict):
            stack.extend(islice(obj.values(), budget))
        else:
            attrs = getattr(obj, "__dict__", None)
            if type(attrs) is dict:
                stack.extend(attrs.values())
    modules = [namespace[n] for n in inputs if isinstance(namespace.get(n), types.ModuleType)]
    found = set()
    for name in names:
        if name in inputs:
            continue
        value = namespace.get(name)
        if isinstance(value, _IMMUTABLE) or isinstance(value, tuple):
            continue
        if id(value) in seen or (roots and isinstance(value, ndarray) and id(_root(value)) in roots):
            found.add(name)
        elif not isinstance(value, _REFERENCES) and any(getattr(m, name, None) is value for m in modules):
            found.add(name)
    return found


def _root(array: Any) -> Any:
    """The object that owns an array's memory: another array, or a buffer (mmap, bytes...)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array
