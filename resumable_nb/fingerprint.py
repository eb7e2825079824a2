"""Stable content fingerprints of Python values.

A fingerprint is the same for equal content in any kernel, under any ``PYTHONHASHSEED``:
every value is fed to one streaming xxh3-128 hasher as a type tag followed by
length-prefixed content. Python's ``hash()`` is never used.

Decisions worth knowing (each is a golden-vector test):

- ``1``, ``1.0``, ``True``, ``"1"`` and ``b"1"`` differ (the type tag goes first).
- Set and frozenset elements are sorted by their own fingerprints: iteration order of a set
  depends on the hash seed, so it cannot be part of the content.
- Dicts are hashed **in insertion order**: a cell that iterates over a dict sees that
  order, so two dicts with the same items in another order may make a cell produce other
  output. (Never stale beats a few extra misses.)
- numpy arrays: dtype, shape and the raw C-order bytes; object arrays element by element.
- pandas objects: per column (name, dtype, values) plus the index.
- Functions and classes defined in the notebook: their code (bytecode, constants, names),
  defaults, closure values and, transitively, the globals they read. The names of those
  globals are reported in :attr:`Fingerprinter.globals_read` so that the runner can treat
  them as inputs too (a function that appends to a global list mutates it).
- Functions, classes and modules from installed packages: module name + distribution
  version. Local modules (next to the notebook): the content hash of their source.
- Anything else: what ``__reduce_ex__(4)`` returns (what pickle would store), hashed with
  the same rules, so a set nested in an object is still order-independent.
- A value with no such reduction (generator, lock, socket, open file...) raises
  :class:`~resumable_nb.errors.Unfingerprintable` — never a silent hit.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import io
import os
import struct
import sys
import sysconfig
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import xxhash

from .errors import Unfingerprintable

__all__ = ["FINGERPRINT_VERSION", "Fingerprinter", "fingerprint", "import_identity", "module_identity"]

FINGERPRINT_VERSION = 1
"""Increment on any change that alters fingerprints of existing values."""

_MAX_DEPTH = 400
_UNSAFE_TYPES: tuple[type, ...] = (io.IOBase, types.GeneratorType, types.CoroutineType,
                                   types.AsyncGeneratorType, types.FrameType)


def fingerprint(value: Any, namespace: Mapping[str, Any] | None = None) -> str:
    """Return the hex fingerprint of ``value``.

    ``namespace`` is the user namespace: functions whose globals are that namespace count
    as defined in the notebook (hashed by code, not by name).

    >>> fingerprint({"a": 1}) == fingerprint({"a": 1})
    True
    >>> fingerprint(1) == fingerprint(1.0)
    False

    :raises Unfingerprintable: for a value without stable content (generator, lock...).
    """
    fp = Fingerprinter(namespace)
    return fp.hash(value)


class Fingerprinter:
    """One hashing pass; collects the notebook globals that functions read."""

    def __init__(self, namespace: Mapping[str, Any] | None = None) -> None:
        self.namespace = namespace
        self.globals_read: set[str] = set()
        self._h = xxhash.xxh3_128()
        self._memo: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps memoised objects alive so ids are not reused
        self._depth = 0
        self._path: list[str] = []

    def hash(self, value: Any) -> str:
        self._h.reset()
        self._memo.clear()
        self._keep.clear()
        self._feed(value)
        return self._h.hexdigest()

    # -- low-level writers -------------------------------------------------------------
    def _raw(self, tag: bytes, payload: bytes | memoryview = b"") -> None:
        self._h.update(tag)
        self._h.update(struct.pack("<Q", len(payload)))
        self._h.update(payload)

    def _str(self, tag: bytes, s: str) -> None:
        self._raw(tag, s.encode("utf-8", "surrogatepass"))

    def _begin(self, tag: bytes, count: int) -> None:
        self._h.update(tag)
        self._h.update(struct.pack("<Q", count))

    # -- dispatch ----------------------------------------------------------------------
    def _feed(self, value: Any) -> None:
        handler = _EXACT.get(type(value))
        if handler is not None:
            handler(self, value)
            return
        key = id(value)
        if key in self._memo:  # a cycle or shared reference
            self._raw(b"@", struct.pack("<Q", self._memo[key]))
            return
        self._memo[key] = len(self._memo)
        self._keep.append(value)
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                raise Unfingerprintable("nested too deeply to fingerprint")
            self._dispatch(value)
        except RecursionError:
            raise Unfingerprintable("nested too deeply to fingerprint") from None
        finally:
            self._depth -= 1

    def _dispatch(self, value: Any) -> None:
        t = type(value)
        if t is list or t is tuple:
            self._begin(b"L" if t is list else b"T", len(value))
            for item in value:
                self._feed(item)
        elif t is dict:
            self._mapping(b"D", value)
        elif t is set or t is frozenset:
            self._unordered(b"S" if t is set else b"F", value)
        elif t is bytearray:
            self._raw(b"y", bytes(value))
        elif t is memoryview:
            self._raw(b"m", value.tobytes())
        elif _is_resource(value):
            raise Unfingerprintable(f"{_type_name(value)} has no stable content")
        elif isinstance(value, types.ModuleType):
            self._str(b"M", module_identity(value.__name__, value))
        elif isinstance(value, (types.FunctionType)):
            self._function(value)
        elif isinstance(value, types.MethodType):
            self._begin(b"b", 2)
            self._feed(value.__func__)
            self._feed(value.__self__)
        elif isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            owner = getattr(value, "__self__", None)
            self._str(b"B", f"{getattr(value, '__module__', None)}.{value.__qualname__}")
            if owner is not None and not isinstance(owner, types.ModuleType):
                self._feed(owner)
        elif isinstance(value, type):
            self._class(value)
        elif isinstance(value, types.CodeType):
            self._code(value)
        elif isinstance(value, functools.partial):
            self._begin(b"p", 3)
            self._feed(value.func)
            self._feed(value.args)
            self._feed(value.keywords)
        else:
            handler = _lazy_handler(t)
            if handler is not None:
                handler(self, value)
            else:
                self._reduced(value)

    # -- containers --------------------------------------------------------------------
    def _mapping(self, tag: bytes, mapping: Mapping[Any, Any]) -> None:
        self._begin(tag, len(mapping))
        for k, v in mapping.items():
            self._feed(k)
            self._feed(v)

    def _unordered(self, tag: bytes, items: Any) -> None:
        digests = sorted(self._sub(item) for item in items)
        self._begin(tag, len(digests))
        for d in digests:
            self._h.update(d)

    def _sub(self, value: Any) -> bytes:
        """Fingerprint ``value`` with a fresh hasher (for order-independent containers)."""
        outer = self._h
        self._h = xxhash.xxh3_128()
        try:
            self._feed(value)
            return self._h.digest()
        finally:
            self._h = outer

    # -- code --------------------------------------------------------------------------
    def _is_notebook(self, fn: types.FunctionType) -> bool:
        ns = self.namespace
        return (ns is not None and fn.__globals__ is ns) or fn.__module__ == "__main__"

    def _function(self, fn: types.FunctionType) -> None:
        if not self._is_notebook(fn):
            self._str(b"f", f"{module_identity(fn.__module__ or '')}:{fn.__qualname__}")
            return
        self._begin(b"N", 6)
        self._str(b"n", fn.__qualname__)
        self._code(fn.__code__)
        self._feed(fn.__defaults__)
        self._feed(fn.__kwdefaults__)
        self._feed(tuple(_cell_value(c) for c in fn.__closure__ or ()))
        reads = _global_names(fn.__code__)
        g = fn.__globals__
        ns_is_user = self.namespace is not None and g is self.namespace
        present = [n for n in sorted(reads) if n in g]
        self._begin(b"g", len(present))
        for name in present:
            if ns_is_user:
                self.globals_read.add(name)
            self._str(b"k", name)
            self._path.append(name)
            try:
                self._feed(g[name])
            finally:
                self._path.pop()

    def _code(self, code: types.CodeType) -> None:
        # Filenames and line numbers are left out: IPython names every execution's file
        # differently, and moving a function down a cell does not change what it does.
        self._begin(b"C", 7)
        self._raw(b"c", code.co_code)
        self._feed(code.co_consts)
        self._feed(code.co_names)
        self._feed(code.co_varnames)
        self._feed(code.co_freevars)
        self._feed(code.co_cellvars)
        self._feed((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags))

    def _class(self, cls: type) -> None:
        module = cls.__module__
        ns = self.namespace
        defined_here = module == "__main__" or (ns is not None and module == ns.get("__name__"))
        if not defined_here:
            self._str(b"t", f"{module_identity(module)}:{cls.__qualname__}")
            return
        attrs = {k: v for k, v in vars(cls).items()
                 if k not in {"__dict__", "__weakref__", "__module__", "__slotnames__"}}
        self._begin(b"K", 3)
        self._str(b"n", cls.__qualname__)
        self._feed(cls.__bases__)
        self._begin(b"a", len(attrs))
        for k in sorted(attrs):
            self._str(b"k", k)
            self._feed(attrs[k])

    # -- everything else ---------------------------------------------------------------
    def _reduced(self, value: Any) -> None:
        try:
            rv = value.__reduce_ex__(4)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot fingerprint"
            raise Unfingerprintable(f"{_type_name(value)} cannot be fingerprinted ({exc})") from None
        if isinstance(rv, str):
            self._str(b"G", f"{module_identity(type(value).__module__)}:{rv}")
            return
        parts = list(rv) + [None] * (6 - len(rv))
        func, args, state, listitems, dictitems = parts[:5]
        self._begin(b"R", 5)
        self._feed(type(value))
        self._feed(func)
        self._feed(args)
        self._feed(state)
        self._feed(None if listitems is None else list(listitems))
        self._feed(None if dictitems is None else list(dictitems))


# -- exact-type fast paths ----------------------------------------------------------------
def _none(fp: Fingerprinter, v: None) -> None:
    fp._raw(b"0")


def _bool(fp: Fingerprinter, v: bool) -> None:
    fp._raw(b"?", b"1" if v else b"0")


def _int(fp: Fingerprinter, v: int) -> None:
    fp._raw(b"i", v.to_bytes((v.bit_length() + 8) // 8 or 1, "little", signed=True))


def _float(fp: Fingerprinter, v: float) -> None:
    fp._raw(b"d", struct.pack("<d", v))


def _complex(fp: Fingerprinter, v: complex) -> None:
    fp._raw(b"j", struct.pack("<dd", v.real, v.imag))


def _str(fp: Fingerprinter, v: str) -> None:
    fp._str(b"s", v)


def _bytes(fp: Fingerprinter, v: bytes) -> None:
    fp._raw(b"x", v)


def _singleton(fp: Fingerprinter, v: Any) -> None:
    fp._str(b"e", repr(v))


def _range(fp: Fingerprinter, v: range) -> None:
    fp._raw(b"r", struct.pack("<3q", v.start, v.stop, v.step) if abs(v.stop) < 2**62 else repr(v).encode())


def _slice(fp: Fingerprinter, v: slice) -> None:
    fp._begin(b"l", 3)
    fp._feed(v.start)
    fp._feed(v.stop)
    fp._feed(v.step)


_EXACT: dict[type, Callable[[Fingerprinter, Any], None]] = {
    type(None): _none, bool: _bool, int: _int, float: _float, complex: _complex,
    str: _str, bytes: _bytes, type(Ellipsis): _singleton, type(NotImplemented): _singleton,
    range: _range, slice: _slice,
}


# -- numpy / pandas, looked up only when those modules are already imported ----------------
def _lazy_handler(t: type) -> Callable[[Fingerprinter, Any], None] | None:
    module = t.__module__.split(".")[0]
    if module == "numpy" and "numpy" in sys.modules:
        from . import _fp_numpy

        return _fp_numpy.handler_for(t)
    if module == "pandas" and "pandas" in sys.modules:
        from . import _fp_pandas

        return _fp_pandas.handler_for(t)
    return None


# -- helpers ------------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_resource(value: Any) -> bool:
    """Open files, locks, sockets, threads, DB connections: live handles, not content."""
    if isinstance(value, (io.StringIO, io.BytesIO)):
        return False  # in-memory buffers: their content is their state
    return isinstance(value, _UNSAFE_TYPES) or type(value).__module__ in _RESOURCE_MODULES


_RESOURCE_MODULES = frozenset({"_thread", "_socket", "socket", "sqlite3", "_sqlite3", "threading",
                               "select", "selectors", "_multiprocessing", "multiprocessing.synchronize",
                               "mmap", "_io", "io", "asyncio.locks", "_queue", "queue", "ssl"})


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a name assigned later in the enclosing scope)
        return _EmptyCell


class _EmptyCellType:
    def __reduce__(self) -> str:
        return "_EmptyCell"


_EmptyCell = _EmptyCellType()


def _global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the code objects nested in it) may look up as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


@functools.cache
def _installed_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    prefixes = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    for p in sys.path:
        if "site-packages" in p or "dist-packages" in p:
            prefixes.add(p)
    return tuple(sorted(os.path.realpath(p) + os.sep for p in prefixes))


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def module_identity(name: str, module: types.ModuleType | None = None) -> str:
    """What identifies a module's code: ``name==version`` for installed ones, the content
    hash of the source for local ones (so that editing ``helpers.py`` invalidates steps).

    >>> module_identity("json").startswith("json==")
    True
    """
    if module is None:
        module = sys.modules.get(name)
    top = name.split(".")[0]
    if module is None:
        return f"{name}==?"
    source = getattr(module, "__file__", None)
    if source is None or os.path.realpath(source).startswith(_installed_prefixes()):
        return f"{name}=={_version(top)}"
    return f"{name}@{_source_hash(Path(source))}"


def import_identity(name: str) -> str:
    """:func:`module_identity` of a module a cell imports, found without importing it."""
    if name in sys.modules:
        return module_identity(name)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return f"{name}==missing"
    origin = spec.origin
    if not origin or not os.path.isfile(origin) or os.path.realpath(origin).startswith(_installed_prefixes()):
        return f"{name}=={_version(name)}"
    return f"{name}@{_source_hash(Path(origin))}"


def _version(top: str) -> str:
    dists = _distributions().get(top)
    if dists:
        try:
            return importlib.metadata.version(dists[0])
        except importlib.metadata.PackageNotFoundError:
            pass
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return f"py{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
    version = getattr(sys.modules.get(top), "__version__", None)
    return str(version) if version else "?"


def _source_hash(source: Path) -> str:
    """Hash of a local module's source files (every ``.py`` of a local package)."""
    h = xxhash.xxh3_128()
    paths = sorted(source.parent.rglob("*.py")) if source.name == "__init__.py" else [source]
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        h.update(str(path.name).encode() + struct.pack("<Q", len(data)))
        h.update(data)
    return h.hexdigest()
