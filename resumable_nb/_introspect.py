"""Facts about Python objects and code that several modules must agree on.

The fingerprinter, the pickler and the static analysis each decide what a function, a class
or a closure *is*; where they must decide the same way, they ask here (a second copy is where
a key and a payload start to disagree). Pure: no IPython, no third-party imports.
"""

from __future__ import annotations

import io
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DYNAMIC_CALLS",
    "EMPTY_CELL",
    "NAMESPACE_HANDLES",
    "bound_module_attribute",
    "cell_contents",
    "class_body",
    "closed_file",
    "importable_as",
    "is_notebook_module",
    "is_resource",
    "resolves_to",
    "type_name",
]

# -- code that hides what it reads --------------------------------------------------------
DYNAMIC_CALLS = frozenset({"globals", "locals", "vars", "exec", "eval", "__import__"})
"""Builtins that read or bind names the source does not show."""
NAMESPACE_HANDLES = DYNAMIC_CALLS | {"get_ipython"}
"""Names that hand out the namespace itself (``get_ipython().user_ns``...)."""


# -- closures -----------------------------------------------------------------------------
class _EmptyCell:
    """Stands for an empty closure cell (a name assigned later in the enclosing scope)."""

    def __reduce__(self) -> str:
        return "EMPTY_CELL"  # pickled by reference: one sentinel, `is`-comparable after load

    def __repr__(self) -> str:
        return "<empty cell>"


EMPTY_CELL = _EmptyCell()


def cell_contents(cell: types.CellType) -> Any:
    """What ``cell`` holds, or :data:`EMPTY_CELL` (reading an empty cell raises)."""
    try:
        return cell.cell_contents
    except ValueError:
        return EMPTY_CELL


# -- classes ------------------------------------------------------------------------------
# Made by Python itself, not by the class body: __dict__/__weakref__ and slot descriptors by
# type(), __slotnames__ by copyreg (a cache), _abc_impl by ABCMeta (anew for every class).
_RUNTIME_ATTRS = frozenset({"__dict__", "__weakref__", "__slotnames__", "_abc_impl"})


def class_body(cls: type) -> dict[str, Any]:
    """The attributes the class statement defined: what a class is rebuilt from, and what
    its fingerprint covers."""
    return {k: v for k, v in vars(cls).items()
            if k not in _RUNTIME_ATTRS
            and not isinstance(v, (types.MemberDescriptorType, types.GetSetDescriptorType))}


# -- where an object comes from -----------------------------------------------------------
def is_notebook_module(module: str | None, namespace: Mapping[str, Any] | None) -> bool:
    """Is ``module`` the notebook's (``__main__``, or the namespace's own ``__name__``)?"""
    return module == "__main__" or (namespace is not None and module == namespace.get("__name__"))


def resolves_to(module: str | None, qualname: str, obj: Any) -> bool:
    """Does ``module.qualname`` lead to ``obj`` itself (what pickle by reference relies on)?"""
    target: Any = sys.modules.get(module or "")
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is obj


def importable_as(obj: Any) -> bool:
    """Can ``obj`` be found again by its module and qualified name, outside the notebook?"""
    module = getattr(obj, "__module__", None)
    return not is_notebook_module(module, None) and resolves_to(module, getattr(obj, "__qualname__", ""), obj)


def bound_module_attribute(method: Any, namespace: Any = None) -> tuple[str, str] | None:
    """``(module, name)`` when a bound method *is* an installed module's attribute of its
    name: numpy.random's ``beta`` is ``np.random.mtrand._rand.beta``, exported as the module's
    function. It is then that function of that module, like any other (its owner's state is
    the module's: numpy.random's generator is followed by resumable_nb.rng)."""
    module, name = getattr(method, "__module__", None), getattr(method, "__name__", None)
    if not isinstance(module, str) or not isinstance(name, str) or is_notebook_module(module, namespace):
        return None
    if getattr(sys.modules.get(module), name, None) is not method:
        return None
    return module, name


# -- values that are live handles, not content ----------------------------------------------
_UNSAFE_TYPES: tuple[type, ...] = (io.IOBase, types.GeneratorType, types.CoroutineType,
                                   types.AsyncGeneratorType, types.FrameType)
_RESOURCE_MODULES = frozenset({"_thread", "_socket", "socket", "sqlite3", "_sqlite3", "threading",
                               "select", "selectors", "_multiprocessing", "multiprocessing.synchronize",
                               "mmap", "_io", "io", "asyncio.locks", "_queue", "queue", "ssl"})


def is_resource(value: Any) -> bool:
    """Open files, locks, sockets, threads, DB connections, generators: live handles."""
    if isinstance(value, (io.StringIO, io.BytesIO)):
        return False  # in-memory buffers: their content is their state
    return isinstance(value, _UNSAFE_TYPES) or type(value).__module__ in _RESOURCE_MODULES


_FILE_TYPES = {t.__name__: t for t in (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter,
                                       io.BufferedRandom, io.FileIO)}


def closed_file(value: Any) -> tuple[str, Any, str, str | None, str | None] | None:
    """A *closed* file object's kind, name, mode, encoding and errors; None for anything else
    (an open file above all: it stays a live handle).

    What ``with open(name) as f:`` leaves in ``f``: nothing can be read or written through it
    any more, so it is data (what it was opened as), stored and fingerprinted as such.
    """
    t = type(value)
    if _FILE_TYPES.get(t.__name__) is not t or not value.closed:
        return None
    try:
        name, mode = value.name, value.mode
    except (AttributeError, ValueError):  # a wrapper over an in-memory buffer: no name
        return None
    text = t is io.TextIOWrapper
    return (t.__name__, name, str(mode), value.encoding if text else None,
            value.errors if text else None)


def type_name(value: Any) -> str:
    """``int`` for builtins, ``module.Qualname`` for the rest (for messages)."""
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
