"""Pickling of step outputs: protocol 5, out-of-band buffers, notebook code by value.

The C pickler does the bulk work; ``reducer_override`` handles what plain pickle gets wrong
in a notebook:

- functions and lambdas defined in the notebook are stored by value (code, defaults,
  closure) and rebuilt with the *live* user namespace as their globals, so a restored
  function reads today's globals like one defined by running the cell;
- classes defined in the notebook are stored by value when the step defines them, and by
  reference otherwise — checked against the class's fingerprint on load, so an instance is
  never re-attached to a class whose code changed (that would mix new methods with old
  state);
- modules are stored by name and imported on load; an output that *is* an installed module's
  attribute of the same name (what ``from pylab import *`` binds: ``rcParams``, ...) is
  stored by that name and restored as that very object when its content is still what was
  stored, else from a copy stored next to the name (see :func:`_module_attr`);
- open files, sockets, locks, DB connections and generators are refused: restoring a file
  handle opened for writing would truncate the user's file. A *closed* file (what
  ``with open(name) as f:`` leaves in ``f``) is data: it comes back as a closed file object
  of the same kind, name and mode, made from the null device. An ``NpzFile`` (it holds its
  archive open) is stored as its arrays and comes back over an in-memory archive.

We do not use dill: it is 6x slower on a DataFrame, binds restored functions to a copy of
their globals, and restores file handles.
"""

from __future__ import annotations

import collections
import enum
import functools
import importlib
import io
import linecache
import marshal
import os
import pickle
import sys
import types
import typing
from collections.abc import Callable, Collection, Mapping, MutableMapping
from typing import Any, Protocol

from . import aliases
from ._introspect import (
    EMPTY_CELL,
    bound_module_attribute,
    cell_contents,
    class_body,
    closed_file,
    importable_as,
    is_notebook_module,
    is_resource,
    type_name,
)
from .errors import RestoreError, Unfingerprintable, Unstorable
from .fingerprint import Fingerprinter

__all__ = ["dump", "load", "storable_check"]

_FORMAT = 1


class Writer(Protocol):
    def write(self, data: Any, /) -> int: ...


class _Pickler(pickle.Pickler):
    def __init__(self, file: Writer, namespace: Mapping[str, Any], defined: set[int],
                 buffer_callback: Callable[[pickle.PickleBuffer], Any] | None,
                 module_attrs: Mapping[int, tuple[str, str]] | None = None,
                 views: Mapping[int, aliases.InPayload | aliases.InName] | None = None) -> None:
        super().__init__(file, protocol=5,  # type: ignore[arg-type]
                         buffer_callback=buffer_callback)
        self.namespace = namespace
        self.defined = defined  # ids of classes this step defines: stored by value
        self.module_attrs = module_attrs or {}  # id -> (module, name): outputs a module owns
        self.views = views or {}  # id -> where an output array is a view of (aliases.views)
        self.on_mark: Callable[[str | None], None] | None = None

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if t is _Mark:
            if self.on_mark is not None:
                self.on_mark(obj.name)
            return _unmark, (obj.value,)
        if self.views and id(obj) in self.views:
            spec = self.views[id(obj)]
            if isinstance(spec, aliases.InPayload):
                return _view_in, (spec.root, spec.offset, obj.shape, obj.strides, obj.dtype,
                                  bool(obj.flags.writeable))
            return _view_named, (spec.name, spec.offset, obj.shape, obj.strides, obj.dtype,
                                 spec.base_shape, spec.base_dtype, spec.fortran, obj.copy(order="K"),
                                 spec.sharers, bool(obj.flags.writeable))
        if t.__name__ == "memmap" and t.__module__.startswith("numpy") and _maps_a_file(obj):
            # Its file, mapped again: a copy would cut writes off from the file a plain run
            # writes ('r+'), or make a read-only map writeable ('r'). 'c' keeps its changes
            # in memory only: stored by value below.
            return _memmap, (obj.filename, obj.dtype, obj.mode, obj.offset, obj.shape,
                             "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C")
        if self.module_attrs and id(obj) in self.module_attrs:
            return self._by_module_attr(obj, *self.module_attrs[id(obj)])
        if t is types.FunctionType:
            # Only code that ran in the notebook: a library wrapper made with functools.wraps
            # claims __module__ == "__main__" but its globals are the library's.
            if obj.__globals__ is self.namespace:
                return _reduce_function(obj)
            if importable_as(obj):
                return NotImplemented
            # Made at run time by a library (contextmanager, wraps...): by value, with its
            # own module's globals.
            return _reduce_function(obj, str(obj.__globals__.get("__name__", "")))
        if t is functools._lru_cache_wrapper:  # type: ignore[attr-defined]
            params = obj.cache_parameters()
            return _make_lru, (obj.__wrapped__, params["maxsize"], params["typed"])
        if t is property:
            return property, (obj.fget, obj.fset, obj.fdel, obj.__doc__)
        if t is staticmethod or t is classmethod:
            return t, (obj.__func__,)
        if t is types.MappingProxyType:
            return _mappingproxy, (dict(obj),)
        if isinstance(obj, type):
            cls: type = obj
            if cls.__module__ == "__main__" or (self.namespace.get("__name__") == cls.__module__):
                if id(cls) in self.defined or self.namespace.get(cls.__name__) is not cls:
                    return _reduce_class(cls, self.namespace)
                return _class_ref, (cls.__qualname__, _class_fingerprint(cls, self.namespace))
            return NotImplemented
        if t is typing.TypeVar and is_notebook_module(obj.__module__, self.namespace):
            # Pickled by reference to __main__.T otherwise, which a new kernel does not have yet.
            return _make_typevar, (obj.__name__, obj.__constraints__, obj.__bound__,
                                   obj.__covariant__, obj.__contravariant__)
        if t is types.ModuleType:
            return importlib.import_module, (obj.__name__,)
        if t is types.MethodType or t is types.BuiltinMethodType:
            by_reference = _bound_to_module_object(obj, self.namespace)
            if by_reference is not None:
                return by_reference
        if t is types.CodeType:
            return marshal.loads, (marshal.dumps(obj),)
        if t.__name__ == "MaskedArray" and t.__module__ in ("numpy.ma", "numpy.ma.core") and obj._hardmask:
            # numpy's own reduction drops the hard mask: a restored array would let a write
            # unmask what the step's array kept masked.
            func, args, state = obj.__reduce__()
            return func, args, (state, True), None, None, _set_hard_mask
        if t.__name__ == "NpzFile" and t.__module__.startswith("numpy"):
            # np.load("x.npz"): it holds the archive open; its content is the arrays.
            return _npz, ({name: obj[name] for name in obj.files}, bool(obj.allow_pickle),
                          str(getattr(obj.fid, "name", "object")))
        if is_resource(obj):
            closed = closed_file(obj)
            if closed is None:
                raise pickle.PicklingError(_resource_reason(obj))
            return _closed_file, closed
        return NotImplemented

    def _by_module_attr(self, obj: Any, module: str, name: str) -> Any:
        copy = io.BytesIO()
        _Pickler(copy, self.namespace, self.defined, None).dump(obj)
        try:
            fingerprint = Fingerprinter().hash(obj)
        except Unfingerprintable:
            fingerprint = ""  # never matches: the copy is restored
        return _module_attr, (module, name, fingerprint, copy.getvalue())


def dump(value: Any, file: Writer, namespace: Mapping[str, Any],
         buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
         sizes: dict[str, int] | None = None, read: Collection[str] = ()) -> None:
    """Pickle ``value`` into ``file``; large contiguous buffers go to ``buffer_callback``.

    ``sizes``: for a step payload (``{"outputs": {...}, ...}``), filled with each output's
    share of what is written — its bytes in the pickle stream plus its out-of-band buffers.
    An object shared by two outputs counts for the first one. ``read``: the names the step
    read (an output array that views one is stored as a view of it: aliases.views).
    """
    defined = {id(v) for v in _iter_values(value) if isinstance(v, type)}
    outputs = value.get("outputs") if isinstance(value, dict) else None
    module_attrs = _module_attrs(value, namespace)
    views = aliases.views(outputs, namespace, read) if isinstance(outputs, dict) else {}
    if sizes is None or not isinstance(outputs, dict):
        _Pickler(file, namespace, defined, buffer_callback, module_attrs, views).dump(value)
        return
    meter = _Meter(file, buffer_callback)
    pickler = _Pickler(meter, namespace, defined, meter.buffer, module_attrs, views)
    pickler.on_mark = meter.mark
    # Each output is wrapped in a _Mark (unpickled as the bare value): the pickler tells us
    # when it reaches one, so what was written in between is the previous output's. "_end"
    # closes the last output; it loads as None and nothing reads it.
    # In the payload's own order: what comes before the outputs is unpickled before them
    # (mplstate.Changes chooses the backend the step's figures are restored into).
    marked: dict[str, Any] = {}
    for k, v in value.items():
        if k == "outputs":
            marked["outputs"] = {name: _Mark(name, out) for name, out in outputs.items()}
            marked["_end"] = _Mark(None, None)
        else:
            marked[k] = v
    pickler.dump(marked)
    sizes.update(meter.sizes(outputs, namespace))


class _Mark:
    """A top-level output, for measuring its share of a payload."""

    __slots__ = ("name", "value")

    def __init__(self, name: str | None, value: Any) -> None:
        self.name = name
        self.value = value


def _unmark(value: Any) -> Any:
    return value


class _Meter:
    """Counts the bytes written and the out-of-band buffer bytes, per output."""

    _FRAME = 1 << 16  # the C pickler writes in frames of about 64 KiB: positions are that coarse

    def __init__(self, file: Writer, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None) -> None:
        self.file = file
        self.callback = buffer_callback
        self.written = 0
        self.buffered = 0
        self.marks: list[tuple[str | None, int, int]] = []

    def write(self, data: Any) -> int:
        n = self.file.write(data)
        self.written += memoryview(data).nbytes
        return n

    def buffer(self, buf: pickle.PickleBuffer) -> Any:
        self.buffered += memoryview(buf).nbytes
        return self.callback(buf) if self.callback is not None else None

    def mark(self, name: str | None) -> None:
        self.marks.append((name, self.written, self.buffered))

    def sizes(self, outputs: Mapping[str, Any], namespace: Mapping[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for (name, pos, buf), (_, next_pos, next_buf) in zip(self.marks, self.marks[1:], strict=False):
            if name is None:
                continue
            inband = next_pos - pos
            if inband < 2 * self._FRAME:
                # Below the frame size the stream position says nothing: measure the output
                # alone, giving up past a few frames (then it shares most of its data).
                alone = _pickled_size(outputs[name], namespace, 4 * self._FRAME)
                inband = alone if alone is not None else inband
            out[name] = inband + next_buf - buf
        return out


class _Limited:
    def __init__(self, limit: int) -> None:
        self.n = 0
        self.limit = limit

    def write(self, data: Any) -> int:
        self.n += memoryview(data).nbytes
        if self.n > self.limit:
            raise _TooBig
        return memoryview(data).nbytes


class _TooBig(Exception):
    pass


def _pickled_size(value: Any, namespace: Mapping[str, Any], limit: int) -> int | None:
    """Bytes of ``value`` pickled alone (in the stream only), or None past ``limit``."""
    counter = _Limited(limit)
    try:
        dump(value, counter, namespace, buffer_callback=lambda b: None)
    except Exception:  # noqa: BLE001 - _TooBig, or anything: the coarse measure stands
        return None
    return counter.n


_COPY_BELOW = 1 << 20


def load(data: bytes | bytearray | memoryview, buffers: list[Any],
         namespace: MutableMapping[str, Any], classes: Mapping[str, Any] | None = None) -> Any:
    """Unpickle ``data``; notebook functions get ``namespace`` as their globals.

    ``classes`` is where classes stored by reference are looked up (default: ``namespace``;
    ``%resume`` passes the namespace it is building).

    :raises RestoreError: when a referenced notebook class is missing or its code changed.
    """
    # A small stream through io.BytesIO (C reads; a copy of a bytearray costs less than the
    # Python-level reads of _BytesReader: 5 per one-line step's payload); a big one without a copy.
    small = len(data) < _COPY_BELOW
    unpickler = _Unpickler(io.BytesIO(data) if small else _BytesReader(data), buffers=buffers)
    unpickler.namespace = namespace
    unpickler.classes = namespace if classes is None else classes
    return unpickler.load()


def storable_check(name: str, value: Any, namespace: Mapping[str, Any]) -> None:
    """Pickle ``value`` to nowhere to find out whether (and why not) it can be stored.

    :raises Unstorable: naming ``name`` and the reason.
    """
    try:
        dump(value, _NullWriter(), namespace, buffer_callback=lambda b: None)
    except RecursionError:
        raise Unstorable(name, "it is nested too deeply to pickle") from None
    except Exception as exc:  # noqa: BLE001 - any pickling failure is reported the same way
        raise Unstorable(name, f"it cannot be pickled ({_short(exc)})") from None


class _Unpickler(pickle.Unpickler):
    namespace: MutableMapping[str, Any]
    classes: Mapping[str, Any]

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == "_class_ref":
            return functools.partial(_class_ref, self.classes, self.namespace)
        if module == __name__ and name == "_view_named":
            return functools.partial(_view_named, self.classes)
        if module == __name__ and name in _NEEDS_NAMESPACE:
            return functools.partial(_NEEDS_NAMESPACE[name], self.namespace)
        found = super().find_class(module, name)
        if name == "_frombuffer" and module in ("numpy._core.numeric", "numpy.core.numeric"):
            return functools.partial(_owning_array, found)
        return found


OWN_BELOW = 1 << 20
"""Arrays smaller than this come back owning their data; bigger ones are views of their buffer,
which the store maps copy-on-write from the cache file at this size (``store._MAP_MIN``)."""


def _owning_array(frombuffer: Any, buf: Any, *args: Any) -> Any:
    """numpy's rebuild of an array from an out-of-band buffer makes a view of that buffer. An
    array a plain run made owns its data (``a.resize(...)`` works on it), so one under
    :data:`OWN_BELOW` is copied: cheap at that size. A bigger one stays a view of the mapped
    payload, so that restoring 1 GiB costs no copy (the trade-off in docs/performance.md)."""
    array = frombuffer(buf, *args)
    if array.nbytes >= OWN_BELOW or array.flags.owndata:
        return array
    import ctypes

    import numpy

    if array.size == 0:  # empty_like and copy() give an empty array zero strides; a slice keeps its own
        empty = numpy.empty(array.shape, array.dtype)
        if empty.strides != array.strides:
            return array
        empty.flags.writeable = array.flags.writeable
        return empty
    # Same layout as the buffer's: C, Fortran, or (numpy 2) a transposed array's axis order.
    owned = numpy.empty_like(array, order="K")
    if owned.strides != array.strides:  # not a dense layout empty_like can repeat
        copied = array.copy(order="K")
        copied.flags.writeable = array.flags.writeable
        return copied
    # Byte for byte, not ``array.copy()``: that copies a structured dtype field by field and
    # leaves its padding bytes to chance, and they are part of the array's fingerprint (an
    # sklearn tree's nodes).
    ctypes.memmove(owned.ctypes.data, array.ctypes.data, array.nbytes)
    owned.flags.writeable = array.flags.writeable
    return owned


def _resource_reason(obj: Any) -> str:
    if isinstance(obj, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        return f"a {type_name(obj)} is a paused computation, not data; store a list instead"
    return (f"{type_name(obj)} is a live handle (file, connection, lock...); restoring it "
            "could change files or services, so re-create it in a step that is not cached")


def _mappingproxy(d: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(d)


def _closed_file(kind: str, name: Any, mode: str, encoding: str | None, errors: str | None) -> Any:
    """A closed file object like the one stored: same kind, name, mode and encoding. Made by
    opening the null device (never the named file: a restore must not touch it) and closing
    it; a mode that would create the file ('x') opens it for writing instead."""
    text = kind == "TextIOWrapper"
    opened = mode.replace("x", "w").replace("t", "")
    if not text and "b" not in opened:
        opened += "b"
    f: Any = open(os.devnull, opened, buffering=0 if kind == "FileIO" else -1,
                  encoding=encoding, errors=errors)
    f.close()
    raw = f if kind == "FileIO" else f.buffer.raw if text else f.raw
    raw.name = name
    if text:
        f.mode = mode
    return f


def _npz(arrays: dict[str, Any], allow_pickle: bool, name: str) -> Any:
    """An NpzFile over an in-memory archive of the stored arrays (never the file it was read
    from: it may have changed since)."""
    import numpy as np

    archive = io.BytesIO()
    np.savez(archive, **arrays)
    archive.seek(0)
    archive.name = name  # type: ignore[attr-defined]  # what its repr shows
    loaded = np.load(archive, allow_pickle=allow_pickle)
    loaded.fid = archive  # as np.load("x.npz") leaves it: closed with it
    return loaded


def _maps_a_file(obj: Any) -> bool:
    """A memmap numpy made over a whole mapping of a named file (not a slice of one, whose
    ``offset`` and ``filename`` are its parent's), in a mode that writes through or reads."""
    import mmap

    return (isinstance(obj.base, mmap.mmap) and bool(obj.filename)
            and obj.mode in ("r", "r+", "w+"))


def _memmap(filename: str, dtype: Any, mode: str, offset: int, shape: tuple[int, ...],
            order: str) -> Any:
    """The file mapped again as the step mapped it ('w+' as 'r+': it must not be emptied)."""
    import numpy as np

    try:
        memmap: Any = np.memmap  # its stubs want literal modes
        return memmap(filename, dtype=dtype, mode="r+" if mode == "w+" else mode,
                         offset=offset, shape=shape, order=order)
    except (OSError, ValueError) as exc:
        raise RestoreError(f"the memory-mapped file {filename} cannot be mapped again "
                           f"({type(exc).__name__}: {exc})") from exc


def _view_in(root: Any, offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
             dtype: Any, writeable: bool = True) -> Any:
    """A view of ``root`` (restored from the same payload), as the stored output was."""
    view = _view_at(root, offset, shape, strides, dtype)
    if view is None:  # cannot happen for what aliases.views chose; never a wrong view
        raise RestoreError("a stored view does not fit in its base array")
    if not writeable:
        view.flags.writeable = False
    return view


def _view_named(classes: Mapping[str, Any], name: str, offset: int, shape: tuple[int, ...],
                strides: tuple[int, ...], dtype: Any, base_shape: tuple[int, ...], base_dtype: str,
                fortran: bool, copy: Any, sharers: tuple[str, ...] = (),
                writeable: bool = True) -> Any:
    """A view of the array under ``name`` in the namespace being restored, when it is laid
    out as the step's base was, the other names that shared its memory then still share it,
    and the view shows exactly the stored bytes; else the copy."""
    import numpy as np

    if not writeable:
        copy.flags.writeable = False
    base = classes.get(name)
    if (type(base) is not np.ndarray or tuple(base.shape) != tuple(base_shape)
            or base.dtype.str != base_dtype
            or not (base.flags.f_contiguous if fortran else base.flags.c_contiguous)):
        return copy
    root = aliases.root_of(base)
    for other in sharers:  # a and b = a[:] then, two arrays now: which one was viewed?
        value = classes.get(other)
        if type(value) is np.ndarray and aliases.root_of(value) is not root:
            return copy
    view = _view_at(base, offset, shape, strides, dtype)
    if view is None or view.shape != copy.shape:
        return copy
    try:
        same = bool(np.array_equal(view, copy, equal_nan=view.dtype.kind in "fc"))
    except TypeError:
        same = view.tobytes() == copy.tobytes()
    if not same:
        return copy
    if not writeable:
        view.flags.writeable = False
    return view


def _view_at(base: Any, offset: int, shape: tuple[int, ...], strides: tuple[int, ...],
             dtype: Any) -> Any:
    """The array of ``shape``/``strides``/``dtype`` starting ``offset`` bytes into the
    contiguous array ``base``, sharing its memory; None if it would reach outside it."""
    import numpy as np

    low = sum(s * (n - 1) for n, s in zip(shape, strides, strict=True) if s < 0)
    high = sum(s * (n - 1) for n, s in zip(shape, strides, strict=True) if s > 0) + dtype.itemsize
    if 0 in shape or offset + low < 0 or offset + high > base.nbytes:
        return None
    flat = base.reshape(-1, order="F" if base.flags.f_contiguous and not base.flags.c_contiguous
                        else "C").view(np.uint8)
    first = flat[offset:offset + dtype.itemsize].view(dtype)
    return np.lib.stride_tricks.as_strided(first, shape=shape, strides=strides,
                                           writeable=bool(base.flags.writeable))


def _set_hard_mask(array: Any, state: tuple[Any, bool]) -> None:
    array.__setstate__(state[0])
    array._hardmask = state[1]


# -- functions ----------------------------------------------------------------------------
def _make_lru(fn: Any, maxsize: int | None, typed: bool) -> Any:
    return functools.lru_cache(maxsize=maxsize, typed=typed)(fn)


def _reduce_function(fn: types.FunctionType, module: str | None = None) -> tuple[Any, ...]:
    """By value. ``module`` None: a notebook function (globals = the live namespace on load);
    else the module whose globals it uses."""
    state = {
        "defaults": fn.__defaults__,
        "kwdefaults": fn.__kwdefaults__,
        "dict": fn.__dict__ or None,
        "annotations": fn.__annotations__ or None,
        "doc": fn.__doc__,
        "qualname": fn.__qualname__,
        "module": fn.__module__,
        "closure": tuple(cell_contents(c) for c in fn.__closure__ or ()),
        # The cell's source (kept by IPython in linecache, under a name that is no file): a
        # restored function keeps inspect.getsource and readable tracebacks in a new kernel.
        "source": _cell_source(fn.__code__.co_filename) if module is None else None,
    }
    # Skeleton first, state after: a recursive closure refers back to the function itself.
    return (_make_function, (fn.__code__, fn.__name__, len(fn.__closure__ or ()), module), state,
            None, None, _set_function_state)


def _make_function(namespace: MutableMapping[str, Any], code: types.CodeType, name: str,
                   ncells: int, module: str | None = None) -> types.FunctionType:
    globals_ = namespace if module is None else vars(importlib.import_module(module))
    closure = tuple(types.CellType() for _ in range(ncells)) or None
    return types.FunctionType(code, globals_, name, None, closure)  # type: ignore[arg-type]


def _set_function_state(fn: types.FunctionType, state: dict[str, Any]) -> None:
    fn.__defaults__ = state["defaults"]
    fn.__kwdefaults__ = state["kwdefaults"]
    fn.__doc__ = state["doc"]
    fn.__qualname__ = state["qualname"]
    fn.__module__ = state["module"]
    if state["dict"]:
        fn.__dict__.update(state["dict"])
    if state["annotations"]:
        fn.__annotations__ = state["annotations"]
    for cell, stored in zip(fn.__closure__ or (), state["closure"], strict=True):
        if stored is not EMPTY_CELL:
            cell.cell_contents = stored
    source = state.get("source")
    filename = fn.__code__.co_filename
    if source and filename not in linecache.cache:
        # mtime None: linecache.checkcache keeps it (there is no file to compare with).
        linecache.cache[filename] = (sum(map(len, source)), None, list(source), filename)


def _cell_source(filename: str) -> tuple[str, ...] | None:
    if not filename or os.path.exists(filename):
        return None  # a real file: linecache reads it itself
    lines = linecache.getlines(filename)
    return tuple(lines) if lines else None


# Payloads written before the sentinel moved to _introspect name it by this global.
_EMPTY = EMPTY_CELL


# -- classes ------------------------------------------------------------------------------
def _reduce_class(cls: type, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    if isinstance(cls, enum.EnumMeta):
        return _reduce_enum(cls, namespace)
    if issubclass(cls, tuple) and "_make" in vars(cls) and isinstance(getattr(cls, "_fields", None), tuple):
        return _reduce_namedtuple(cls, namespace)
    attrs = class_body(cls)
    # What type() takes only at creation: __slots__, and __doc__ (type() puts a None there
    # that setattr would then have to overwrite) and __qualname__ (not in vars()).
    body = {"__doc__": attrs.get("__doc__"), "__qualname__": cls.__qualname__}
    if "__slots__" in attrs:
        body["__slots__"] = attrs["__slots__"]
    skeleton = (type(cls), cls.__name__, cls.__bases__, body)
    return (_make_class, skeleton, attrs, None, None, _set_class_state)


def _own_code(attrs: Mapping[str, Any], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes written in the notebook (methods, properties, the docstring) of a class
    whose other attributes its metaclass or factory makes (Enum, namedtuple)."""
    own = {}
    for k, v in attrs.items():
        fn = v.__func__ if isinstance(v, (staticmethod, classmethod)) else v.fget if isinstance(
            v, property) else v
        if k == "__doc__" or (isinstance(fn, types.FunctionType) and fn.__globals__ is namespace):
            own[k] = v
    return own


def _reduce_enum(cls: enum.EnumMeta, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    """An Enum/Flag class by its members' names and values (aliases included), rebuilt through
    its metaclass, which is the only way members come into being; methods as state."""
    table: Mapping[str, Any] = cls.__members__
    members = [(name, member._value_) for name, member in table.items()]
    skeleton = (type(cls), cls.__name__, cls.__bases__, members, cls.__qualname__, cls.__module__)
    return (_make_enum, skeleton, _own_code(vars(cls), namespace), None, None, _set_class_state)


def _make_enum(meta: Any, name: str, bases: tuple[type, ...], members: list[tuple[str, Any]],
               qualname: str, module: str) -> type:
    body = meta.__prepare__(name, bases)
    for member, value in members:
        body[member] = value
    body["__qualname__"] = qualname
    body["__module__"] = module
    return meta(name, bases, body)  # type: ignore[no-any-return]


def _reduce_namedtuple(cls: type, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    """A namedtuple class (collections.namedtuple or typing.NamedTuple) by its fields and
    defaults, rebuilt by the factory (its generated methods come from a module named
    ``namedtuple_<name>`` that exists nowhere); what the notebook added to it, as state."""
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    defaults = [cls._field_defaults[f] for f in fields if f in cls._field_defaults]  # type: ignore[attr-defined]
    state = _own_code(vars(cls), namespace)
    if "__annotations__" in vars(cls):
        state["__annotations__"] = dict(vars(cls)["__annotations__"])
    return (_make_namedtuple, (cls.__name__, fields, tuple(defaults), cls.__qualname__, cls.__module__),
            state, None, None, _set_class_state)


def _make_namedtuple(name: str, fields: tuple[str, ...], defaults: tuple[Any, ...], qualname: str,
                     module: str) -> type:
    cls = collections.namedtuple(name, fields, defaults=defaults, module=module)  # type: ignore[misc]
    cls.__qualname__ = qualname
    return cls


def _make_typevar(name: str, constraints: tuple[Any, ...], bound: Any, covariant: bool,
                  contravariant: bool) -> Any:
    tv = typing.TypeVar(name, *constraints, bound=bound, covariant=covariant,  # type: ignore[misc]
                        contravariant=contravariant)
    tv.__module__ = "__main__"
    return tv


def _make_class(namespace: MutableMapping[str, Any], meta: type, name: str, bases: tuple[type, ...],
                body: dict[str, Any]) -> type:
    return meta(name, bases, dict(body))


def _set_class_state(cls: type, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        if k in {"__slots__", "__doc__"} and k in vars(cls):
            continue
        try:
            setattr(cls, k, v)
        except (AttributeError, TypeError):
            pass


def _class_fingerprint(cls: type, namespace: Mapping[str, Any]) -> str:
    # follow_globals=False: the class's code, not the current values of the globals its
    # methods read (those are inputs of whatever step uses them).
    return Fingerprinter(namespace, follow_globals=False).hash(cls)


def _class_ref(classes: Mapping[str, Any], namespace: Mapping[str, Any], qualname: str,
               fingerprint: str) -> type:
    cls = classes.get(qualname.split(".")[0])
    for part in qualname.split(".")[1:]:
        cls = getattr(cls, part, None)
    if not isinstance(cls, type):
        raise RestoreError(f"class {qualname} is not defined in this kernel: run the cell that "
                           "defines it first")
    if _class_fingerprint(cls, namespace) != fingerprint:
        raise RestoreError(f"class {qualname} has changed since this entry was stored")
    return cls


_NEEDS_NAMESPACE: dict[str, Callable[..., Any]] = {
    "_make_function": _make_function,
    "_make_class": _make_class,
}


# -- objects an installed module owns ---------------------------------------------------------
_BY_VALUE = (type(None), bool, int, float, complex, str, bytes, type, types.ModuleType,
             types.FunctionType, types.BuiltinFunctionType)


def _module_attrs(value: Any, namespace: Mapping[str, Any]) -> dict[int, tuple[str, str]]:
    """Outputs that are an installed module's attribute of the same name: ``from m import *``
    or ``from m import x`` bound them, and a plain run has *that* object (``rcParams`` is
    ``matplotlib.rcParams``: setting an item restyles every later plot). Some do not even
    survive a copy: matplotlib's ``rcParamsDefault`` holds a sentinel object that its own
    validation recognises by identity, so its unpickled copy raises, and a ``from pylab
    import *`` step could never be restored. Looked for in the module of the value's type and
    that module's packages, where a library keeps its module-level instances."""
    outputs = value.get("outputs") if isinstance(value, dict) else None
    found: dict[int, tuple[str, str]] = {}
    if not isinstance(outputs, dict):
        return found
    for name, v in outputs.items():
        if isinstance(v, _BY_VALUE):  # by value or already by reference
            continue
        parts = str(getattr(type(v), "__module__", "") or "").split(".")
        for n in range(len(parts), 0, -1):
            module = ".".join(parts[:n])
            if is_notebook_module(module, namespace) or module == "builtins":
                break
            if getattr(sys.modules.get(module), name, None) is v:
                found[id(v)] = (module, name)
                break
    return found


def _module_attr(namespace: MutableMapping[str, Any], module: str, name: str, fingerprint: str,
                 copy: bytes) -> Any:
    """``module.name`` itself, as in a plain run. When its content is no longer what was
    stored (the step, or one before it, changed ``rcParams``): a mapping (``rcParams``) gets
    the stored content put into it, in place, so it is still the object the library reads;
    anything else comes back as the stored copy."""
    try:
        live = getattr(importlib.import_module(module), name)
        if fingerprint and Fingerprinter().hash(live) == fingerprint:
            return live
    except (ImportError, AttributeError, Unfingerprintable):
        live = None
    stored = load(copy, [], namespace)  # part of the entry: authenticated with it
    if isinstance(live, dict) and type(stored) is type(live):
        for key in [k for k in live if k not in stored]:
            del live[key]
        live.update({k: v for k, v in dict.items(stored) if k not in live or dict.get(live, k) != v})
        return live
    return stored


_NEEDS_NAMESPACE["_module_attr"] = _module_attr


def _bound_to_module_object(method: Any, namespace: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A bound method of an installed module's own object, by reference: ``beta`` after
    ``from pylab import *`` is ``numpy.random.beta``, a method of numpy's global
    ``RandomState``. Pickled by value it came back bound to a copy of the generator, which no
    longer draws from ``numpy.random``'s state. Either the method is itself the module's
    attribute (looked up by its own ``__module__``), or its owner is an attribute of the
    module of the owner's type."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", None)
    if owner is None or isinstance(owner, (types.ModuleType, type)) or not isinstance(name, str):
        return None  # a module's function or a class's method: by name already
    attribute = bound_module_attribute(method, namespace)
    if attribute is not None:
        return getattr, (sys.modules[attribute[0]], name)
    owner_module = type(owner).__module__
    found = sys.modules.get(owner_module)
    if found is None or is_notebook_module(owner_module, namespace) or owner_module == "builtins":
        return None
    for attr, value in list(vars(found).items()):
        if value is owner:
            return getattr, (_Global(owner_module, attr), name)
    return None


class _Global:
    """A module-level object, pickled as a reference to it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __reduce__(self) -> tuple[Any, ...]:
        return _load_global, (self.module, self.name)


def _load_global(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


# -- plumbing -----------------------------------------------------------------------------
def _iter_values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        outputs = value.get("outputs", value)
        if isinstance(outputs, dict):
            return list(outputs.values())
    return [value]


class _NullWriter:
    def write(self, data: Any) -> int:
        return len(memoryview(data))


class _BytesReader:
    """A minimal file-like reader over a buffer, without copying it."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else min(len(self._view), self._pos + n)
        chunk = self._view[self._pos:end].tobytes()
        self._pos = end
        return chunk

    def readinto(self, buf: Any) -> int:
        target = memoryview(buf).cast("B")
        n = min(len(target), len(self._view) - self._pos)
        target[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def readline(self) -> bytes:
        rest = self._view[self._pos:]
        i = bytes(rest[:4096]).find(b"\n")
        n = len(rest) if i < 0 else i + 1
        return self.read(n)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."

