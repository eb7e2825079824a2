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
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

__all__ = ["BUDGET", "InName", "InPayload", "candidates", "root_of", "views"]

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
            roots.add(id(root_of(obj)))
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
        if id(value) in seen or (roots and isinstance(value, ndarray) and id(root_of(value)) in roots):
            found.add(name)
        elif not isinstance(value, _REFERENCES) and any(getattr(m, name, None) is value for m in modules):
            found.add(name)
    return found


def root_of(array: Any) -> Any:
    """The object that owns an array's memory: another array, or a buffer (mmap, bytes...)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


# -- views, re-established on a restore --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InPayload:
    """A view of ``root``, an array stored in the same payload: ``offset`` bytes into it."""

    root: Any
    offset: int


@dataclass(frozen=True, slots=True)
class InName:
    """A view of the array the namespace holds under ``name`` (not an output: an input the
    key pins, or a name restored earlier in the same pass), ``offset`` bytes into it."""

    name: str
    offset: int
    base_shape: tuple[int, ...]
    base_dtype: str
    fortran: bool
    sharers: tuple[str, ...] = ()
    """The other names that held arrays on the same memory when the step ran: the view is
    rebuilt only if they still share ``name``'s memory (else which of them it viewed is
    unknown, and a view of the wrong one would make writes land in the wrong array)."""


def views(outputs: Mapping[str, Any], namespace: Mapping[str, Any],
          read: Collection[str] = ()) -> dict[int, InPayload | InName]:
    """For each output array that is a view (``a_slice = a[2:5]``, ``B = A.reshape(...)``),
    how to make it a view again on a restore, by id; arrays left out are stored as copies.

    - When its root buffer (following ``.base``) is an output: a view of it, in the payload.
    - Else when a namespace name that is not an output holds an array with the same root, and
      the view lies within that array's memory, which is contiguous (so a restore lays it out
      the same): a view of that name, preferring a name the step ``read`` (``v = b[1:4]`` is
      a view of ``b`` in a plain run, whatever else shares ``b``'s memory). The loader checks
      the bytes against a stored copy; for a name the step did not read, also that the names
      which shared its memory still do.
    - Else when the root is shared with another output: a view of the root, stored once in the
      payload, when it is at most twice the size of its views (never a whole big array for a
      small slice).

    Not re-established: views of a non-contiguous array, of a buffer that is not an array
    (mmap, bytes), of object arrays, and views nested in containers.
    """
    np = sys.modules.get("numpy")
    if np is None:
        return {}
    arrays = [v for v in outputs.values() if type(v) is np.ndarray]
    groups: dict[int, list[Any]] = {}
    for a in arrays:
        root = root_of(a)
        if type(root) is np.ndarray and not root.dtype.hasobject and _contiguous(root):
            groups.setdefault(id(root), []).append(a)
    found: dict[int, InPayload | InName] = {}
    output_ids = {id(v) for v in outputs.values()}
    for members in groups.values():
        root = root_of(members[0])
        shared = id(root) in output_ids or len(members) > 1
        small = root.nbytes <= 2 * sum(m.nbytes for m in members if m is not root)
        for view in members:
            if view is root:
                continue
            named = None if id(root) in output_ids else _named_base(view, root, namespace, output_ids,
                                                                     read)
            if named is not None:
                found[id(view)] = named
            elif shared and (id(root) in output_ids or small):
                found[id(view)] = InPayload(root, _address(view) - _address(root))
    return found


def _named_base(view: Any, root: Any, namespace: Mapping[str, Any], outputs: set[int],
                read: Collection[str] = ()) -> InName | None:
    start, end = _extent(view)
    found: InName | None = None
    sharers: list[str] = []
    first = [n for n in read if n in namespace]
    rest = set(first)
    for name in [*first, *(n for n in namespace if n not in rest)]:
        value = namespace[name]
        if (type(value) is not type(view) or id(value) in outputs or name.startswith("_")
                or root_of(value) is not root):
            continue
        sharers.append(name)
        if found is None and _contiguous(value) and value.size:
            base = _address(value)
            if base <= start and end <= base + value.nbytes:
                # The offset of the view's first element (not of its lowest byte: they
                # differ for a negative stride), as _view_at reads it.
                found = InName(name, _address(view) - base, tuple(value.shape),
                               value.dtype.str,
                               bool(value.flags.f_contiguous and not value.flags.c_contiguous))
    if found is None:
        return None
    if found.name in first:  # what the step viewed: right whatever else shares it now
        return found
    return InName(found.name, found.offset, found.base_shape, found.base_dtype, found.fortran,
                  tuple(n for n in sharers if n != found.name))


def _address(a: Any) -> int:
    return int(a.__array_interface__["data"][0])


def _extent(a: Any) -> tuple[int, int]:
    """The first and one-past-last byte addresses an array's elements occupy."""
    start = end = _address(a)
    for n, stride in zip(a.shape, a.strides, strict=True):
        if n == 0:
            return start, start
        if stride < 0:
            start += stride * (n - 1)
        else:
            end += stride * (n - 1)
    return start, end + a.itemsize


def _contiguous(a: Any) -> bool:
    return bool(a.flags.c_contiguous or a.flags.f_contiguous)
