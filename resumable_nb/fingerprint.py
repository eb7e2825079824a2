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
- Identity counts only for mutable objects: a list or object met twice in one value is written
  the second time as a back-reference (cycles, aliasing). Tuples and frozensets are written by
  content wherever they appear (what they hold keeps its identity): the compiler shares equal
  constants between code objects where an unpickled value does not.
- A value with no such reduction (generator, lock, socket, open file...) raises
  :class:`~resumable_nb.errors.Unfingerprintable` — never a silent hit.

Handlers for a library's types
------------------------------
A handler is a function ``handler(w, obj)`` that writes ``obj`` through the :class:`Writer`
protocol, which :class:`Fingerprinter` implements:

- ``w.raw(tag, payload)``: a tag, the payload's length, the payload (bytes or a memoryview,
  hashed without a copy);
- ``w.text(tag, s)``: the same for a string (UTF-8);
- ``w.begin(tag, count)``: a record of ``count`` parts, which the handler writes next;
- ``w.value(obj)``: any nested value, with all the rules above (cycles, notebook code...).

Every tag is a named constant of :mod:`resumable_nb._tags` (one table, checked for
uniqueness). A library's handlers live in a module ``_fp_<library>.py`` with a
``handler_for(type) -> handler | None`` function, registered by the library's top-level
module name in ``_HANDLER_MODULES``; it is imported only once that library is, so
``import resumable_nb`` stays cheap. numpy, pandas, pyarrow/polars, matplotlib and scikit-learn
are handled this way (see docs/architecture.md for a worked example).
"""

from __future__ import annotations

import copyreg
import dis
import functools
import importlib.metadata
import importlib.util
import itertools
import os
import struct
import sys
import sysconfig
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import xxhash

from . import _tags as tags
from ._introspect import (
    EMPTY_CELL,
    ENV_WHOLE,
    FRAME_ATTRIBUTES,
    FRAME_METHODS,
    NAMESPACE_HANDLES,
    bound_module_attribute,
    cell_contents,
    class_body,
    closed_file,
    env_object,
    frame_kind,
    frame_names,
    importable_as,
    is_notebook_module,
    is_resource,
    resolves_to,
    string_frame_names,
    type_name,
)
from .errors import Unfingerprintable
from .files import guards_code, resolve_paths

__all__ = ["FINGERPRINT_VERSION", "Fingerprinter", "Handler", "Writer", "environ_digest",
           "fingerprint", "foreign_attributes", "import_environ_reads", "import_identity",
           "module_identity", "path_templates"]

FINGERPRINT_VERSION = 9  # 9: string columns as byte lengths + bytes (Arrow buffers hashed as they are)
"""Increment on any change that alters fingerprints of existing values."""

_MAX_DEPTH = 400


class Writer(Protocol):
    """What a type handler writes through (see the module docstring)."""

    def raw(self, tag: bytes, payload: bytes | memoryview = b"") -> None: ...

    def text(self, tag: bytes, s: str) -> None: ...

    def begin(self, tag: bytes, count: int) -> None: ...

    def value(self, obj: Any) -> None: ...


Handler: TypeAlias = Callable[[Writer, Any], None]
"""Writes one value of the types it was chosen for."""


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
    """One hashing pass; collects the notebook globals that functions read.

    ``follow_globals=False`` feeds only the *names* of the notebook globals a function reads
    (collected in :attr:`globals_read`): the runner fingerprints each of those as an input of
    its own, so a big global read by ten functions is hashed once, not eleven times.
    """

    def __init__(self, namespace: Mapping[str, Any] | None = None, *,
                 follow_globals: bool = True) -> None:
        self.namespace = namespace
        self.follow_globals = follow_globals
        self.globals_read: set[str] = set()
        self.env_read: set[str] = set()
        """Environment variables read by the code met (``"*"``: a computed name); with
        ``follow_globals=False`` their values are left to the caller, like globals'."""
        self.paths: set[str] = set()
        """Paths the code met builds from its globals and literals (``DATA / 'd.txt'``):
        candidate file inputs (:func:`path_templates`)."""
        self.dynamic: str | None = None  # why a notebook function hides what it reads
        self.guarded = False
        """A function met may write a file only under a condition on what is there
        (:func:`resumable_nb.files.guards_code`)."""
        self._h = xxhash.xxh3_128()
        self._memo: dict[int, int] = {}
        self._stack: list[int] = []  # ids of the containers being hashed (cycle detection)
        self._keep: list[Any] = []  # keeps memoised objects alive so ids are not reused
        self._path: list[str] = []
        self._local_module_dicts: set[int] = set()
        # The value about to be hashed as a name that code we scan reads (a top-level input, a
        # function's global): an env reader there is followed through that code's calls.
        self._named: Any = None

    def hash(self, value: Any, *, named: bool = True) -> str:
        """The fingerprint of ``value``.

        ``named``: ``value`` is held by a name that scanned code reads (a step's input, a
        function's global), so an environment reader it is counts by the names that code
        passes it; else (read through ``globals()``, a patched attribute) by the whole
        environment.

        :raises Unfingerprintable: the value (or something it holds) has no stable content.
        """
        self._h.reset()
        self._memo.clear()
        self._stack.clear()
        self._keep.clear()
        self._path.clear()
        self._local_module_dicts.clear()
        self._named = value if named else None
        try:
            self.value(value)
        except Unfingerprintable as exc:
            if not exc.path and self._path:
                exc.path = ".".join(self._path)
            raise
        except RecursionError:
            raise Unfingerprintable("nested too deeply to fingerprint", ".".join(self._path)) from None
        except Exception as exc:  # noqa: BLE001 - a value whose own methods fail
            raise Unfingerprintable(f"fingerprinting failed ({type(exc).__name__}: {exc})",
                                    ".".join(self._path)) from None
        finally:
            self._keep.clear()
        return self._h.hexdigest()

    # -- the Writer protocol (what handlers call) --------------------------------------
    def raw(self, tag: bytes, payload: bytes | memoryview = b"") -> None:
        """Write ``tag``, the length of ``payload``, then ``payload`` itself."""
        self._h.update(tag)
        self._h.update(struct.pack("<Q", len(payload)))
        self._h.update(payload)

    def text(self, tag: bytes, s: str) -> None:
        """Write ``s`` as UTF-8 (lone surrogates kept), like :meth:`raw`."""
        self.raw(tag, s.encode("utf-8", "surrogatepass"))

    def begin(self, tag: bytes, count: int) -> None:
        """Start a record of ``count`` parts; the caller writes exactly that many next."""
        self._h.update(tag)
        self._h.update(struct.pack("<Q", count))

    def value(self, obj: Any) -> None:
        """Write any value with the full rules (its own tag, cycles, notebook code...)."""
        t = type(obj)
        handler = _EXACT.get(t)
        if handler is not None:
            handler(self, obj)
            return
        if t is tuple or t is frozenset:
            # Immutable: its identity is not content. The compiler shares equal constants
            # between code objects (``__slots__`` and a method's ``co_names``) where a rebuilt
            # class or an unpickled value does not, so a back-reference to a tuple would make
            # equal values hash differently. What a tuple holds is still written through
            # value(): a list met twice through two tuples is still one list (aliasing), and
            # a cycle always runs through a mutable object, which is memoised.
            if t is tuple:
                self.begin(tags.TUPLE, len(obj))
                for item in obj:
                    self.value(item)
            else:
                self._unordered(tags.FROZENSET, obj)
            return
        self._tracked(obj)

    # -- dispatch ----------------------------------------------------------------------
    def _tracked(self, value: Any) -> None:
        key = id(value)
        # Before the memo, so that an environment reader is said each time it is met.
        if key in _ENV_IDS or (type(value) is types.MethodType and env_object(value) == "env"):
            self._env_object(value)
            return
        if key in self._memo:  # a cycle or shared reference
            self.raw(tags.BACKREF, struct.pack("<Q", self._memo[key]))
            return
        self._memo[key] = len(self._memo)
        self._keep.append(value)
        self._stack.append(key)
        try:
            if len(self._stack) > _MAX_DEPTH:
                raise Unfingerprintable("nested too deeply to fingerprint")
            self._dispatch(value)
        finally:
            self._stack.pop()

    def _dispatch(self, value: Any) -> None:
        t = type(value)
        if t is list:
            self.begin(tags.LIST, len(value))
            for item in value:
                self.value(item)
        elif t is dict:
            self._mapping(tags.DICT, value)
        elif t is set:
            self._unordered(tags.SET, value)
        elif t is bytearray:
            self.raw(tags.BYTEARRAY, bytes(value))
        elif t is memoryview:
            self.begin(tags.MEMORYVIEW, 2)
            self.value((value.format, value.shape))
            self.raw(tags.BUFFER, value.tobytes())
        elif t is types.FunctionType:  # first: the commonest code input (never a resource)
            self._function(value)
        elif is_resource(value):
            closed = closed_file(value)
            if closed is None:
                raise Unfingerprintable(f"{type_name(value)} has no stable content")
            self.begin(tags.CLOSED_FILE, len(closed))
            for part in closed:
                self.value(part)
        elif isinstance(value, types.ModuleType):
            self._module(value)
        elif t is property:
            self.begin(tags.PROPERTY, 4)
            for part in (value.fget, value.fset, value.fdel, value.__doc__):
                self.value(part)
        elif t is staticmethod or t is classmethod:
            self.text(tags.STATIC_OR_CLASS_METHOD, t.__name__)
            self.value(value.__func__)
        elif t is types.MappingProxyType:
            self._mapping(tags.MAPPINGPROXY, value)
        elif t is range:
            _range(self, value)
        elif isinstance(value, types.MethodType) and (attr := bound_module_attribute(value, self.namespace)):
            self._by_name(*attr)  # numpy.random.beta: a module's function, as the pickler stores it
        elif isinstance(value, types.MethodType):
            self.begin(tags.BOUND_METHOD, 2)
            self.value(value.__func__)
            self.value(value.__self__)
        elif isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            owner = getattr(value, "__self__", None)
            self.text(tags.BUILTIN, f"{getattr(value, '__module__', None)}.{value.__qualname__}")
            if owner is not None and not isinstance(owner, types.ModuleType):
                self.value(owner)
        elif isinstance(value, type):
            self._class(value)
        elif isinstance(value, _DESCRIPTORS):
            owner = value.__objclass__
            self.text(tags.DESCRIPTOR, f"{owner.__module__}.{owner.__qualname__}.{value.__name__}")
        elif isinstance(value, types.MethodWrapperType):
            self.begin(tags.METHOD_WRAPPER, 2)
            self.text(tags.NAME, f"{type(value.__self__).__qualname__}.{value.__name__}")
            self.value(value.__self__)
        elif isinstance(value, types.CodeType):
            self._code(value)
        elif t in _TYPE_VARIABLES:
            # Known to pickle only by name, which a notebook's own (T = TypeVar('T') in a
            # cell) cannot be; annotations hold them (def f(x: T) -> T).
            self.begin(tags.TYPEVAR, 5)
            self.text(tags.TYPE_NAME, t.__name__)
            self.text(tags.NAME, value.__name__)
            self.value(getattr(value, "__bound__", None))
            self.value(getattr(value, "__constraints__", ()))
            self.value((getattr(value, "__covariant__", False), getattr(value, "__contravariant__", False)))
        elif isinstance(value, functools.partial):
            self.begin(tags.PARTIAL, 3)
            self.value(value.func)
            self.value(value.args)
            self.value(value.keywords)
        else:
            handler = _lazy_handler(t)
            if handler is not None:
                handler(self, value)
            elif getattr(value, "__wrapped__", None) is not None and callable(value):
                # functools.wraps, lru_cache...: the wrapped function is what runs.
                self.begin(tags.WRAPPER, 2)
                self.text(tags.TYPE_NAME, f"{t.__module__}.{t.__qualname__}")
                self.value(value.__wrapped__)
            else:
                self._reduced(value)

    # -- containers --------------------------------------------------------------------
    def _mapping(self, tag: bytes, mapping: Mapping[Any, Any]) -> None:
        self.begin(tag, len(mapping))
        for k, v in mapping.items():
            self.value(k)
            self.value(v)

    def _unordered(self, tag: bytes, items: Any) -> None:
        digests = sorted(self._sub(item) for item in items)
        self.begin(tag, len(digests))
        for d in digests:
            self._h.update(d)

    def _sub(self, value: Any) -> bytes:
        """Fingerprint ``value`` alone (an element of an order-independent container).

        Back-references inside may point only at the containers being hashed around it
        (cycles), never at objects met earlier in some other element: which element came
        first depends on the hash seed.
        """
        outer, memo = self._h, self._memo
        self._h = xxhash.xxh3_128()
        self._memo = {i: n for n, i in enumerate(self._stack)}
        try:
            self.value(value)
            return self._h.digest()
        finally:
            self._h, self._memo = outer, memo

    # -- code --------------------------------------------------------------------------
    def _is_notebook(self, fn: types.FunctionType) -> bool:
        """Defined by running notebook code: its globals are the user namespace (a wrapper
        made by a library decorator only *claims* ``__module__ == "__main__"``)."""
        ns = self.namespace
        if ns is None:
            ns = getattr(sys.modules.get("__main__"), "__dict__", None)
        return ns is not None and fn.__globals__ is ns

    def _by_name(self, module_name: str | None, qualname: str) -> None:
        """An object reached by name in a module: the module's identity + the name."""
        self.begin(tags.BY_NAME, 2)
        self._module_named(module_name)
        self.text(tags.NAME, qualname)

    def _module_named(self, name: str | None) -> None:
        module = sys.modules.get(name or "")
        if module is None:
            self.text(tags.MODULE, f"{name}==?")
        else:
            self.value(module)

    def _env_object(self, value: Any) -> None:
        """``os.environ``, ``os.getenv`` or ``os.environ.get`` met as a value. Read by a name
        that scanned code reads (:attr:`_named`), the reads count by the names that code
        passes it (``ge('X')``: ``X``); held anywhere else (a container, a ``partial``, a
        module's attribute), by what calls it, unknown here: the whole environment."""
        named, self._named = self._named is value, None
        self.text(tags.ENV_OBJECT, getattr(value, "__qualname__", type(value).__qualname__))
        if not named:
            self._environ({ENV_WHOLE})

    def _environ(self, names: Iterable[str]) -> None:
        """Environment variables read: by value in the fingerprint, or left to the caller."""
        names = frozenset(names)
        self.env_read |= names
        if self.follow_globals:
            self.raw(tags.ENVIRON, environ_digest(names).encode())

    def _global(self, value: Any) -> None:
        """A function's global, read by its (scanned) code."""
        self._named = value
        self.value(value)

    def _function(self, fn: types.FunctionType) -> None:
        if id(fn.__globals__) in self._local_module_dicts:
            # Defined in a local module we are hashing the content of: by code. Its globals
            # are that module's other attributes, which the module's content covers.
            self.begin(tags.LOCAL_FUNCTION, 5)
            self.text(tags.NAME, fn.__qualname__)
            self._code_and_state(fn)
            return
        if not self._is_notebook(fn):
            home = _home_module(fn.__globals__)
            if home is None or _is_local_module(home):
                self._module_function(fn, home)
                return
            if importable_as(fn):
                self._by_name(fn.__module__, fn.__qualname__)
                return
            # Made at run time by library code (a factory, eval, lambdify): its code and
            # closure are the content; its foreign globals count by their module.
            self.begin(tags.RUNTIME_FUNCTION, 5)
            self._module_named(str(fn.__globals__.get("__name__", "?")))
            self._code_and_state(fn)
            return
        self.begin(tags.NOTEBOOK_FUNCTION, 7)
        self.text(tags.NAME, fn.__qualname__)
        facts = self._code_and_state(fn)
        if fn.__dict__:
            self.value(dict(fn.__dict__))
        else:  # the usual case; a fresh empty copy is never shared: no memo entry needed
            self.begin(tags.DICT, 0)
        if self.dynamic is None and facts.handles:
            self.dynamic = f"function {fn.__qualname__} uses {facts.handles[0]}"
        g = fn.__globals__
        present = [n for n in facts.sorted_reads if n in g]
        self.begin(tags.GLOBALS, len(present))
        for name in present:
            self.globals_read.add(name)
            self.text(tags.KEY, name)
            if not self.follow_globals:
                continue
            self._path.append(name)
            self._global(g[name])
            self._path.pop()

    def _module_function(self, fn: types.FunctionType, home: types.ModuleType | None) -> None:
        """A function of a local module reached without its module (``from helper import f``),
        or one whose globals are no module's (``exec(src, g)``, ``%run script.py``): its code
        and, transitively, the globals it reads there — by value, as the module's own content
        would count them. Reaching it through its module instead met the function itself
        again inside the module (a cycle) and never hashed its code."""
        g = fn.__globals__
        self.begin(tags.MODULE_FUNCTION, 6)
        self.text(tags.NAME, fn.__qualname__)
        self._code_and_state(fn)
        self.value(dict(fn.__dict__))
        facts = _code_facts(fn.__code__)
        reads = facts.reads
        if facts.handles:
            # globals(), eval...: it may read anything there, so all of it counts.
            if home is not None:
                self.value(home)
            else:
                self._members(tags.LOCAL_MODULE, "?", {k: v for k, v in g.items() if k != "__builtins__"})
            return
        self.value(None)
        present = [n for n in sorted(reads) if n in g]
        self.begin(tags.GLOBALS, len(present))
        for name in present:
            self.text(tags.KEY, name)
            try:
                self._named = g[name]
                self.raw(tags.MEMBER_DIGEST, self._sub(g[name]))
            except Unfingerprintable:
                # A lock or a connection at module level: as in a local module's content,
                # its type counts (docs/limitations.md), not its state.
                self.text(tags.MEMBER_OPAQUE, type_name(g[name]))

    def _code_and_state(self, fn: types.FunctionType) -> _CodeFacts:
        """What every kind of function is keyed by: code, defaults, closure values,
        annotations (``typing.get_type_hints`` and dispatchers read them), and the
        environment variables its code reads."""
        facts = _code_facts(fn.__code__)
        self.raw(tags.CODE, facts.digest)
        if not self.guarded and guards_code(fn.__code__):
            self.guarded = True
        self.value(fn.__defaults__)
        self.value(fn.__kwdefaults__)
        closure = fn.__closure__
        self.value(() if closure is None else tuple(cell_contents(c) for c in closure))
        self.value(fn.__annotations__ or None)
        env = facts.env
        aliases = _env_aliases(fn, facts)
        if aliases:
            env = environ_reads(fn.__code__, aliases)
        if env:
            self._environ(env)
        if facts.paths:
            self.paths |= resolve_paths(facts.paths, fn.__globals__)
        if facts.attributes:
            patched = foreign_attributes(facts.attributes, fn.__globals__)
            if patched:
                self._foreign(patched)
        return facts

    def _foreign(self, patched: Mapping[str, Any]) -> None:
        """Installed modules' attributes set from elsewhere (``statistics.mean = lambda ...``):
        by what they are, as if read by name."""
        self.begin(tags.FOREIGN_ATTRIBUTE, len(patched))
        for dotted in sorted(patched):
            self.text(tags.KEY, dotted)
            self.value(patched[dotted])

    def _code(self, code: types.CodeType) -> None:
        # Filenames and line numbers are left out: IPython names every execution's file
        # differently, and moving a function down a cell does not change what it does.
        # A code object is immutable: its digest is computed once (benchmarks/many_inputs.py).
        self.raw(tags.CODE, _code_facts(code).digest)

    def _code_parts(self, code: types.CodeType) -> None:
        self.begin(tags.CODE, 7)
        self.raw(tags.BYTECODE, code.co_code)
        self.value(code.co_consts)
        self.value(code.co_names)
        self.value(code.co_varnames)
        self.value(code.co_freevars)
        self.value(code.co_cellvars)
        self.value((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags))

    def _class(self, cls: type) -> None:
        home = sys.modules.get(cls.__module__)
        # A class of a local module counts by its body, as a notebook class does (by name, its
        # module's content met the class itself again: a cycle, and its methods went unhashed).
        in_local = home is not None and _is_local_module(home)
        if not in_local and not is_notebook_module(cls.__module__, self.namespace) and importable_as(cls):
            self._by_name(cls.__module__, cls.__qualname__)
            return
        attrs = class_body(cls)
        # Where the class was defined is not what it does (the pickler keeps it; we do not).
        attrs.pop("__module__", None)
        self.begin(tags.CLASS, 4)
        self.text(tags.NAME, cls.__qualname__)
        self.value(cls.__bases__)
        self.text(tags.METACLASS, "")
        self.value(type(cls))  # class A(metaclass=Meta): Meta's methods run on A
        self.begin(tags.CLASS_ATTRS, len(attrs))
        for k in sorted(attrs):
            self.text(tags.KEY, k)
            if not in_local:
                self.value(attrs[k])
                continue
            try:  # as a local module's own members: a lock held by the class, by its type
                self.raw(tags.MEMBER_DIGEST, self._sub(attrs[k]))
            except Unfingerprintable:
                self.text(tags.MEMBER_OPAQUE, type_name(attrs[k]))

    def _module(self, module: types.ModuleType) -> None:
        """Installed: ``name==version`` (its options, e.g. ``pd.set_option``, do not count).
        Local and loaded: what the kernel *runs*, i.e. the loaded content — its functions and
        classes by code, its data by value (``helpers.factor = 5`` counts) — not the file on
        disk, which may have been edited since the import."""
        source = getattr(module, "__file__", None)
        if source is None or not _is_local(source):
            self.text(tags.MODULE, f"{module.__name__}=={_version(module.__name__.split('.')[0])}")
            return
        self._local_module_dicts.add(id(vars(module)))
        self._members(tags.LOCAL_MODULE, module.__name__, vars(module))

    def _members(self, tag: bytes, name: str, namespace: Mapping[str, Any]) -> None:
        """A namespace's content, member by member (a local module, an ``exec`` dict)."""
        content = {k: v for k, v in namespace.items() if not k.startswith("__") and not is_resource(v)}
        self.begin(tag, len(content))
        self.text(tags.NAME, name)
        for k in sorted(content):
            self.text(tags.KEY, k)
            try:
                self.raw(tags.MEMBER_DIGEST, self._sub(content[k]))
            except Unfingerprintable:
                # A module-level object holding a live resource (a handler with a lock...):
                # its code still counts through the functions; its state cannot.
                self.text(tags.MEMBER_OPAQUE, type_name(content[k]))

    # -- everything else ---------------------------------------------------------------
    def _reduced(self, value: Any) -> None:
        reducer = copyreg.dispatch_table.get(type(value))
        try:
            rv = reducer(value) if reducer is not None else value.__reduce_ex__(4)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot fingerprint"
            raise Unfingerprintable(f"{type_name(value)} cannot be fingerprinted ({exc})") from None
        if isinstance(rv, str):
            # A global reference: the object *is* a module attribute. Count it by name only
            # when that name really leads back to it, in an installed module.
            module = getattr(value, "__module__", None) or type(value).__module__
            if is_notebook_module(module, self.namespace) or not resolves_to(module, rv, value):
                raise Unfingerprintable(f"{type_name(value)} {rv!r} is known only by its name")
            self._by_name(module, rv)
            return
        if not isinstance(rv, tuple) or len(rv) < 2:
            raise Unfingerprintable(f"{type_name(value)}.__reduce_ex__ returned {type(rv).__name__}")
        parts = list(rv) + [None] * (6 - len(rv))
        func, args, state, listitems, dictitems = parts[:5]
        self.begin(tags.REDUCED, 5)
        self.value(type(value))
        self.value(func)
        self.value(args)
        self.value(state)
        self.value(None if listitems is None else list(listitems))
        self.value(None if dictitems is None else list(dictitems))


# -- exact-type fast paths ----------------------------------------------------------------
def _none(w: Writer, v: None) -> None:
    w.raw(tags.NONE)


def _bool(w: Writer, v: bool) -> None:
    w.raw(tags.BOOL, b"1" if v else b"0")


def _int(w: Writer, v: int) -> None:
    w.raw(tags.INT, v.to_bytes((v.bit_length() + 8) // 8 or 1, "little", signed=True))


def _float(w: Writer, v: float) -> None:
    w.raw(tags.FLOAT, struct.pack("<d", v))


def _complex(w: Writer, v: complex) -> None:
    w.raw(tags.COMPLEX, struct.pack("<dd", v.real, v.imag))


def _str(w: Writer, v: str) -> None:
    w.text(tags.STR, v)


def _bytes(w: Writer, v: bytes) -> None:
    w.raw(tags.BYTES, v)


def _singleton(w: Writer, v: Any) -> None:
    w.text(tags.SINGLETON, repr(v))


def _range(w: Writer, v: range) -> None:
    w.begin(tags.RANGE, 3)
    for part in (v.start, v.stop, v.step):
        _int(w, part)


def _slice(w: Writer, v: slice) -> None:
    w.begin(tags.SLICE, 3)
    w.value(v.start)
    w.value(v.stop)
    w.value(v.step)


def _empty_cell(w: Writer, v: Any) -> None:
    w.raw(tags.EMPTY_CELL)  # a constant, not the sentinel's own (module) content


_EXACT: dict[type, Handler] = {
    type(None): _none, bool: _bool, int: _int, float: _float, complex: _complex,
    str: _str, bytes: _bytes, type(Ellipsis): _singleton, type(NotImplemented): _singleton,
    slice: _slice, type(EMPTY_CELL): _empty_cell,
}


# -- library handlers, looked up only when their library is already imported ---------------
# top-level module of a value's type -> the handler module (a ``handler_for(type)`` function).
_HANDLER_MODULES = {"numpy": "_fp_numpy", "pandas": "_fp_pandas", "pyarrow": "_fp_arrow",
                    "polars": "_fp_arrow", "matplotlib": "_fp_matplotlib",
                    "mpl_toolkits": "_fp_matplotlib", "sklearn": "_fp_sklearn"}


def _lazy_handler(t: type) -> Handler | None:
    top = t.__module__.split(".")[0]
    name = _HANDLER_MODULES.get(top)
    if name is None or top not in sys.modules:
        return None
    handler_for: Callable[[type], Handler | None] = importlib.import_module(
        f"{__package__}.{name}").handler_for
    return handler_for(t)


# -- helpers ------------------------------------------------------------------------------
_ENV_IDS = frozenset(id(o) for o in (os.getenv, os.environ, getattr(os, "getenvb", os.getenv),
                                     getattr(os, "environb", os.environ)))
_TYPE_VARIABLES: tuple[type, ...] = tuple(
    getattr(typing, n) for n in ("TypeVar", "ParamSpec", "TypeVarTuple") if hasattr(typing, n))
_DESCRIPTORS = (types.MethodDescriptorType, types.ClassMethodDescriptorType,
                types.WrapperDescriptorType, types.GetSetDescriptorType, types.MemberDescriptorType)
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL", "STORE_NAME",
                         "DELETE_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})


@functools.lru_cache(maxsize=4096)
def global_names(code: types.CodeType) -> frozenset[str]:
    """Names a code object (and the code objects nested in it) looks up as globals.

    From the bytecode, not ``co_names``: that also lists attribute names (``self.data``),
    which would pull an unrelated global ``data`` into the function's fingerprint.
    """
    names = {ins.argval for ins in dis.get_instructions(code)
             if ins.opname in _GLOBAL_OPS and isinstance(ins.argval, str)}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return frozenset(names)


class _CodeFacts:
    """What the fingerprint needs of one code object, computed once: it is immutable."""

    __slots__ = ("attributes", "code", "digest", "env", "handles", "paths", "reads", "sorted_reads")

    def __init__(self, code: types.CodeType) -> None:
        self.code = code  # kept alive, so that its id is not reused while cached
        fp = Fingerprinter()
        fp._h.reset()
        fp._code_parts(code)
        self.digest = fp._h.digest()
        self.reads = global_names(code) | frame_reads(code)
        self.sorted_reads = tuple(sorted(self.reads))
        # What hands out a namespace: globals(), eval... or a frame (sys._getframe(1).f_globals).
        attributes = {n for c in _all_codes(code) for n in c.co_names} & FRAME_ATTRIBUTES
        self.handles = tuple(sorted([f"{n}()" for n in self.reads & NAMESPACE_HANDLES]
                                    + [f".{n}" for n in attributes]))
        self.env = environ_reads(code)
        self.attributes = attribute_reads(code)
        self.paths = path_templates(code)


_CODE_FACTS: dict[int, _CodeFacts] = {}
_MAX_CODE_FACTS = 16384


def _code_facts(code: types.CodeType) -> _CodeFacts:
    facts = _CODE_FACTS.get(id(code))
    if facts is None or facts.code is not code:
        if len(_CODE_FACTS) >= _MAX_CODE_FACTS:
            _CODE_FACTS.clear()
        facts = _CODE_FACTS[id(code)] = _CodeFacts(code)
    return facts


def _all_codes(code: types.CodeType) -> list[types.CodeType]:
    codes = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            codes += _all_codes(const)
    return codes


def frame_reads(code: types.CodeType) -> frozenset[str]:
    """Names the string constants of ``code`` may make a library look up in its frame
    (``d.query('a > @thr')`` in a function reads the global ``thr``)."""
    codes = _all_codes(code)
    methods = {n for c in codes for n in c.co_names} & FRAME_METHODS
    found: set[str] = set()
    for c in codes:
        for const in c.co_consts:
            if isinstance(const, str) and len(const) < 10_000:
                found |= string_frame_names(const).keys()  # passed on to a helper
                for method in methods:  # which call a constant goes to is not known: all
                    kind = frame_kind(method, "pd" if method == "eval" else None, const)
                    if kind is not None:
                        found |= frame_names(const, kind).keys()
    return frozenset(found)


_ENV_NAMES = frozenset({"environ", "getenv", "environb", "getenvb"})
_ENV_SKIP = frozenset({"CACHE", "PUSH_NULL", "PRECALL", "KW_NAMES", "NOP", "EXTENDED_ARG",
                       "COPY_FREE_VARS", "RESUME"})
_ENV_METHODS = frozenset({"get", "__getitem__", "__contains__", "setdefault", "pop"})
_NAME_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FAST", "LOAD_DEREF",
                         "LOAD_CLASSDEREF", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_STORES = frozenset({"STORE_NAME", "STORE_GLOBAL", "STORE_FAST", "STORE_DEREF"})
Aliases: TypeAlias = frozenset[tuple[str, str]]
"""``(name, kind)``: a name whose value reads the environment (``"env"``: ``ge = os.getenv``)
or is the ``os`` module (``"os"``), found by the object it holds (:func:`env_object`)."""


def _instructions(code: types.CodeType) -> list[dis.Instruction]:
    return [i for i in dis.get_instructions(code) if i.opname not in _ENV_SKIP]


def _import_aliases(codes: list[types.CodeType]) -> tuple[set[str], set[str]]:
    """Names bound by ``from os import getenv as ge`` (env readers) and ``import os as o``
    (the module): what a module's functions may read them as, before any value exists."""
    env, mod = set(), set()
    for c in codes:
        if "os" not in c.co_names:
            continue
        ins = _instructions(c)
        for i, nxt in itertools.pairwise(ins):
            if nxt.opname in _STORES and isinstance(nxt.argval, str):
                if i.opname == "IMPORT_FROM" and i.argval in _ENV_NAMES:
                    env.add(nxt.argval)
                elif i.opname == "IMPORT_NAME" and i.argval == "os":
                    mod.add(nxt.argval)
    return env, mod


@functools.lru_cache(maxsize=4096)
def environ_reads(code: types.CodeType, aliases: Aliases = frozenset()) -> frozenset[str]:
    """Environment variables ``code`` reads: ``os.environ['X']``, ``os.environ.get('X')``,
    ``os.getenv('X')``, ``'X' in os.environ`` — also through any other name for those
    objects: ``aliases`` (names whose values are known), ``from os import getenv as ge`` and
    ``import os as o`` in the code itself. A name it cannot read off the bytecode (computed,
    the mapping or the reader passed on, ``getattr(os, name)``, ``vars(os)``) is
    :data:`~resumable_nb._introspect.ENV_WHOLE`."""
    codes = _all_codes(code)
    env_names = set(_ENV_NAMES) | {n for n, kind in aliases if kind == "env"}
    os_names = {"os"} | {n for n, kind in aliases if kind == "os"}
    static_env, static_os = _import_aliases(codes)
    env_names |= static_env
    os_names |= static_os
    watched = env_names | os_names
    found: set[str] = set()
    for c in codes:
        if not (watched & {*c.co_names, *c.co_varnames, *c.co_freevars, *c.co_cellvars}):
            continue
        ins = _instructions(c)
        for n, i in enumerate(ins):
            if not i.opname.startswith("LOAD_") or i.opname == "LOAD_CLOSURE":
                continue
            if i.argval in os_names and i.opname in _NAME_LOADS:
                # The module as a value (getattr(os, name), vars(os), passed on): any of its
                # attributes may be read; os.path & co by a plain attribute are nothing.
                nxt = ins[n + 1] if n + 1 < len(ins) else None
                if nxt is None or nxt.opname not in _ATTR_LOADS or nxt.argval == "__dict__":
                    found.add(ENV_WHOLE)
                continue
            if i.argval not in env_names:
                continue
            j = n + 1
            if (j < len(ins) and ins[j].opname in _ATTR_LOADS
                    and ins[j].argval in _ENV_METHODS):
                j += 1
            if j < len(ins) and ins[j].opname == "LOAD_CONST" and isinstance(ins[j].argval, str):
                found.add(ins[j].argval)
                continue
            if j < len(ins) and ins[j].opname == "CONTAINS_OP":
                k = n - 1  # 'X' in os.environ: the constant came before `os`
                while k >= 0 and ins[k].opname in {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FAST", "LOAD_DEREF"}:
                    k -= 1
                if k >= 0 and ins[k].opname == "LOAD_CONST" and isinstance(ins[k].argval, str):
                    found.add(ins[k].argval)
                    continue
            found.add(ENV_WHOLE)
    return frozenset(found)


def env_aliases(names: Iterable[str], values: Mapping[str, Any]) -> Aliases:
    """Which of ``names`` hold an env reader or the ``os`` module in ``values`` (by object)."""
    return frozenset((n, kind) for n in names if n not in _ENV_NAMES
                     and (kind := env_object(values.get(n))) is not None and (n != "os" or kind != "os"))


def _env_aliases(fn: types.FunctionType, facts: _CodeFacts) -> Aliases:
    """A function's globals and closure values that read the environment, by object."""
    aliases = env_aliases(facts.reads, fn.__globals__)
    if fn.__closure__:
        cells = dict(zip(fn.__code__.co_freevars, map(cell_contents, fn.__closure__), strict=True))
        aliases |= env_aliases(cells, cells)
    return aliases


@functools.lru_cache(maxsize=4096)
def attribute_reads(code: types.CodeType) -> frozenset[tuple[str, ...]]:
    """``name.attr`` (and ``name.attr.attr``) that ``code`` reads: where an installed module's
    attribute is used (``statistics.mean(xs)``), so that one set from elsewhere is seen."""
    found: set[tuple[str, ...]] = set()
    for c in _all_codes(code):
        ins = _instructions(c)
        for n, i in enumerate(ins):
            if i.opname not in _NAME_LOADS or not isinstance(i.argval, str):
                continue
            chain = [i.argval]
            for nxt in ins[n + 1:n + 3]:
                if nxt.opname not in _ATTR_LOADS:
                    break
                chain.append(nxt.argval)
            if len(chain) > 1:
                found.add(tuple(chain))
    return frozenset(found)


_PATH_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_MAX_PARTS = 6
PathTemplate: TypeAlias = tuple[tuple[str, ...], ...]
"""A path a piece of code builds from names and literals: ``("n", "DATA")`` (a global's
value), ``("k", "cfg", "dir")`` (``cfg['dir']``), ``("c", "d.txt")`` (a literal), ``("+",)``
(the next part is concatenated, not joined) — resolved by :func:`resumable_nb.files.resolve_paths`."""


@functools.lru_cache(maxsize=4096)
def path_templates(code: types.CodeType) -> frozenset[PathTemplate]:
    """Paths ``code`` may build from globals and literals: ``DATA / 'd.txt'``,
    ``os.path.join(DIR, 'x')``, ``Path(DIR, 'x')``, ``DIR + '/x.csv'``, ``cfg['dir'] / 'x'``:
    a run of global loads and string constants (with ``/`` or ``+`` between them), every
    prefix of two parts or more. A template that names no existing file costs a ``stat``."""
    found: set[PathTemplate] = set()
    for c in _all_codes(code):
        ins = _instructions(c)
        for start, first in enumerate(ins):
            if first.opname not in _PATH_LOADS:
                continue
            parts: list[tuple[str, ...]] = []
            j = start
            while j < len(ins) and len(parts) < _MAX_PARTS:
                x = ins[j]
                if x.opname in _PATH_LOADS and isinstance(x.argval, str):
                    if (j + 2 < len(ins) and ins[j + 1].opname == "LOAD_CONST"
                            and isinstance(ins[j + 1].argval, str) and ins[j + 2].opname == "BINARY_SUBSCR"):
                        parts.append(("k", x.argval, ins[j + 1].argval))
                        j += 3
                        continue
                    parts.append(("n", x.argval))
                elif x.opname == "LOAD_CONST" and isinstance(x.argval, str) and parts:
                    parts.append(("c", x.argval))
                elif x.opname == "BINARY_OP" and x.argrepr in {"/", "+"} and parts:
                    if x.argrepr == "+":
                        # a + b: the concatenation comes after both loads; mark the last part
                        parts.insert(len(parts) - 1, ("+",))
                else:
                    break
                j += 1
            for end in range(2, len(parts) + 1):
                if sum(p[0] != "+" for p in parts[:end]) >= 2 and parts[end - 1][0] != "+":
                    found.add(tuple(parts[:end]))
    return frozenset(found)


def foreign_attributes(chains: Iterable[tuple[str, ...]], values: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """The attributes of installed modules, among ``chains`` (``("statistics", "mean")``)
    resolved in ``values``, that the module did not define: a function or class of the
    notebook, of a local module or of another package, patched in (``statistics.mean =
    lambda xs: 99``). An installed module counts by ``name==version``; such an attribute
    counts by its own content, as the same value read by name would. Cheap for the common
    case: a module's own function is told by its globals (or ``__module__``)."""
    out: dict[str, Any] = {}
    for chain in chains:
        obj = values.get(chain[0])
        for depth, attr in enumerate(chain[1:], 1):
            if not isinstance(obj, types.ModuleType) or _is_local_module(obj):
                break
            module, obj = obj, getattr(obj, attr, None)
            if _foreign(obj, module):
                out[".".join(chain[:depth + 1])] = obj
                break
    return out


def _foreign(obj: Any, module: types.ModuleType) -> bool:
    if isinstance(obj, functools.partial):
        return _foreign(obj.func, module)
    if isinstance(obj, types.FunctionType):
        home = _home_module(obj.__globals__)
    elif isinstance(obj, type):
        home = sys.modules.get(obj.__module__)
    elif isinstance(obj, types.BuiltinFunctionType):  # C code: no notebook's; another package's
        home = obj.__self__ if isinstance(obj.__self__, types.ModuleType) else module
    else:
        return False
    if home is None or _is_local_module(home):
        return True
    mine, theirs = _top(module.__name__), _top(home.__name__)
    # The standard library re-exports its own C modules' functions (os.stat is posix's).
    return mine != theirs and not (mine in sys.stdlib_module_names and theirs in sys.stdlib_module_names)


def _top(name: str) -> str:
    return name.partition(".")[0].lstrip("_")


# Set per process by Jupyter and its tools: part of no result, and different in every kernel.
_PER_KERNEL_ENV = frozenset({"JPY_PARENT_PID", "JPY_SESSION_NAME", "JPY_INTERRUPT_EVENT",
                             "IPY_INTERRUPT_EVENT", "PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING", "_"})


def environ_value(name: str) -> str:
    """One entry of the key for environment variable ``name``: its value, or its absence;
    for :data:`~resumable_nb._introspect.ENV_WHOLE`, every variable but those Jupyter sets
    per kernel."""
    if name == ENV_WHOLE:
        items = sorted((k, v) for k, v in os.environ.items() if k not in _PER_KERNEL_ENV)
        return "environ:" + xxhash.xxh3_128_hexdigest(repr(items).encode("utf-8", "surrogatepass"))
    value = os.environ.get(name)
    if value is None:
        return "absent"
    return "=" + xxhash.xxh3_128_hexdigest(value.encode("utf-8", "surrogatepass"))


def environ_digest(names: Iterable[str]) -> str:
    """The values of environment variables ``names``, as one digest."""
    return xxhash.xxh3_128_hexdigest(repr(sorted((n, environ_value(n)) for n in names)).encode())


def _home_module(g: Mapping[str, Any]) -> types.ModuleType | None:
    """The loaded module whose namespace ``g`` is, if any (``exec``'s dict and ``%run``'s
    namespace are no module's)."""
    module = sys.modules.get(str(g.get("__name__")))
    return module if module is not None and getattr(module, "__dict__", None) is g else None


def _is_local_module(module: types.ModuleType) -> bool:
    source = getattr(module, "__file__", None)
    return isinstance(source, str) and _is_local(source)


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
    """What identifies a module's code: ``name==version`` for installed ones; for a local
    one (next to the notebook) that is loaded, the fingerprint of its loaded content (what
    the kernel runs, even if the file was edited since); not yet loaded, the content hash
    of its source file and of the local modules it imports, transitively (what an import
    will load).

    >>> module_identity("json").startswith("json==")
    True
    """
    if module is None:
        module = sys.modules.get(name)
    if module is None:
        return import_identity(name)
    source = getattr(module, "__file__", None)
    if source is None or not _is_local(source):
        return f"{name}=={_version(name.split('.')[0])}"
    return f"{name}@{Fingerprinter().hash(module)}"


def import_environ_reads(name: str) -> frozenset[str]:
    """Environment variables that importing ``name`` now would read: for a local module not
    yet loaded, those its code and the local modules it imports read (top-level code at
    import, ``THR = int(os.environ.get('THR', '1'))``, and their functions), by the bytecode.
    A loaded module is not imported again: its content, which counts by value, is what its
    top-level code made of the environment it saw then (its functions' reads count when they
    are reached); so nothing here."""
    if name in sys.modules:
        return frozenset()
    origin = _find_origin(name)
    if origin is None or not _is_local(origin):
        return frozenset()
    found: set[str] = set()
    for path in _local_closure(Path(origin)):
        found |= _file_environ_reads(_stat_key(path))
    return frozenset(found)


@functools.lru_cache(maxsize=4096)
def _file_environ_reads(key: tuple[str, int, int]) -> frozenset[str]:
    try:
        code = compile(Path(key[0]).read_bytes(), key[0], "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    return environ_reads(code)


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
    if not origin or not os.path.isfile(origin) or not _is_local(origin):
        return f"{name}=={_version(name)}"
    return f"{name}@file:{_local_identity(Path(origin))}"


@functools.lru_cache(maxsize=4096)
def _is_local(path: str) -> bool:
    return not os.path.realpath(path).startswith(_installed_prefixes())


def _local_identity(source: Path) -> str:
    h = xxhash.xxh3_128()
    for path in sorted(_local_closure(source)):
        h.update(str(path.name).encode())
        h.update(_file_hash(path).encode())
    return h.hexdigest()


def _local_closure(source: Path) -> set[Path]:
    """``source`` and the local (not installed) modules it imports, transitively."""
    todo, done = [source], set()
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        if path.name == "__init__.py":  # a package: all of its modules
            todo.extend(p for p in path.parent.rglob("*.py") if p not in done)
        todo.extend(d for d in _local_imports(path) if d not in done)
    return done


def _stat_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_mtime_ns, st.st_size)


def _file_hash(path: Path) -> str:
    return _file_hash_cached(_stat_key(path))


@functools.lru_cache(maxsize=4096)
def _file_hash_cached(key: tuple[str, int, int]) -> str:
    try:
        return xxhash.xxh3_128_hexdigest(Path(key[0]).read_bytes())
    except OSError:
        return "unreadable"


def _local_imports(path: Path) -> tuple[Path, ...]:
    return _local_imports_cached(_stat_key(path))


@functools.lru_cache(maxsize=4096)
def _local_imports_cached(key: tuple[str, int, int]) -> tuple[Path, ...]:
    import ast

    path = Path(key[0])
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return ()
    found: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
        elif isinstance(node, ast.ImportFrom):
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            stems = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            for stem in stems:
                for candidate in (base / f"{stem}.py", base / stem / "__init__.py"):
                    if candidate.is_file():
                        found.append(candidate)
            continue
        else:
            continue
        for name in names:
            origin = _find_origin(name)
            if origin is not None and _is_local(origin):
                found.append(Path(origin))
    return tuple(found)


def _find_origin(name: str) -> str | None:
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None and module is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
    return origin if origin and os.path.isfile(origin) else None


_PYTHON_VERSION = "py{}.{}.{}".format(*sys.version_info[:3])


def _version(top: str) -> str:
    """The version of top-level package ``top`` that this kernel runs.

    A loaded package's own ``__version__`` first: it is what the kernel runs (after an upgrade
    inside a running kernel the files on disk are newer than the loaded code, which the key
    must describe), and reading it costs nothing. The installed metadata only when there is
    no ``__version__``; asking it which distribution holds ``top`` is done once per kernel,
    for that one name (``packages_distributions()`` reads every installed RECORD: ~200 ms).
    """
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        # The stdlib's own __version__s (json 2.0.9...) do not follow its code.
        return _PYTHON_VERSION
    module = sys.modules.get(top)
    if module is None:
        return _installed_version(top)  # what an import would load now
    loaded = getattr(module, "__version__", None)
    if isinstance(loaded, str) and loaded:
        return loaded
    return _version_when_loaded(top)


@functools.cache
def _version_when_loaded(top: str) -> str:
    # Asked once the package is loaded: the files of that moment are what it loaded from
    # (as near as the metadata lets us tell), and a later upgrade on disk does not change
    # the code this kernel runs.
    return _installed_version(top)


def _installed_version(top: str) -> str:
    dist = _distribution_of(top)
    if dist is None:
        return "?"
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@functools.cache
def _distribution_of(top: str) -> str | None:
    """The distribution that installs top-level module ``top``, if any."""
    # Most distributions are named like their module: look that one up alone, and check
    # that it really installs ``top`` (another project may own the name).
    try:
        dist = importlib.metadata.distribution(top)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        dist = None
    if dist is not None and _installs(dist, top):
        return str(dist.metadata["Name"])
    names = _distributions().get(top)
    return names[0] if names else None


def _installs(dist: importlib.metadata.Distribution, top: str) -> bool:
    listed = dist.read_text("top_level.txt")
    if listed is not None:
        return top in listed.split()
    # No top_level.txt (meson, flit...): RECORD lists every installed file; a text search,
    # not dist.files (which parses all of it: 15 ms for numpy).
    record = "\n" + (dist.read_text("RECORD") or "")
    return f"\n{top}/" in record or f"\n{top}." in record
