"""Facts about Python objects and code that several modules must agree on.

The fingerprinter, the pickler and the static analysis each decide what a function, a class
or a closure *is*; where they must decide the same way, they ask here (a second copy is where
a key and a payload start to disagree). Pure: no IPython, no third-party imports.
"""

from __future__ import annotations

import io
import keyword
import os
import re
import sys
import types
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "DYNAMIC_CALLS",
    "EMPTY_CELL",
    "ENV_WHOLE",
    "FRAME_ATTRIBUTES",
    "FRAME_METHODS",
    "NAMESPACE_HANDLES",
    "bound_module_attribute",
    "cell_contents",
    "class_body",
    "closed_file",
    "env_object",
    "frame_kind",
    "frame_names",
    "importable_as",
    "is_notebook_module",
    "is_resource",
    "resolves_to",
    "string_frame_names",
    "type_name",
]

# -- code that hides what it reads --------------------------------------------------------
DYNAMIC_CALLS = frozenset({"globals", "locals", "vars", "exec", "eval", "__import__"})
"""Builtins that read or bind names the source does not show."""
NAMESPACE_HANDLES = DYNAMIC_CALLS | {"get_ipython"}
"""Names that hand out the namespace itself (``get_ipython().user_ns``...)."""
FRAME_ATTRIBUTES = frozenset({"_getframe", "currentframe", "f_globals", "f_locals", "f_back",
                              "__globals__"})
"""Attributes that lead to a frame's or a function's namespace (``sys._getframe().f_globals``,
``inspect.currentframe()``, ``f.__globals__``): the code may read any variable through them."""

# -- names a library reads from its caller's frame ------------------------------------------
FRAME_METHODS = frozenset({"query", "eval", "sql", "execute", "evaluate"})
"""Methods whose string argument names variables of the calling frame: ``df.query('a > @thr')``
and ``df.eval`` (``@name``), ``pd.eval('x + z')`` and numexpr's ``ne.evaluate('a * b')``
(bare names), polars' ``pl.sql`` and ``SQLContext(register_globals=True).execute`` (table
names: frames found in the caller's scope). The static analysis (for a step's code) and
the fingerprint (for a function's code) both read these strings with :func:`frame_names`."""

FrameKind = Literal["pandas", "pandas-eval", "sql"]
ENV_WHOLE = "*"
"""Stands for "the whole environment" where code reads a variable whose name is computed."""

EnvObject = Literal["env", "os"]
_GETENV = os.getenv
_GETENVB = getattr(os, "getenvb", os.getenv)
_ENVIRON = os.environ
_ENVIRONB = getattr(os, "environb", os.environ)


def env_object(obj: Any) -> EnvObject | None:
    """What an object gives access to, whatever name it goes by: ``"env"`` for the
    environment itself or a reader of it (``os.environ``, ``os.getenv``, a bound method of
    ``os.environ`` such as ``os.environ.get``), ``"os"`` for the ``os`` module (a computed
    attribute of it, ``getattr(os, name)``, may be any of those); None for anything else.
    ``ge = os.getenv`` or ``from os import getenv as ge`` reads the environment as
    ``os.getenv`` does: env reads are recognised by the object a name holds, not its spelling.
    A few identity checks: the fingerprint asks this of every object it meets."""
    if obj is _GETENV or obj is _ENVIRON or obj is _GETENVB or obj is _ENVIRONB:
        return "env"
    if type(obj) is types.MethodType:
        owner = obj.__self__
        return "env" if owner is _ENVIRON or owner is _ENVIRONB else None
    return "os" if obj is os else None


_SQL_START = re.compile(r"^\s*(\(\s*)*(select|with|from|table|values)\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")
_AT_NAME = re.compile(r"@\s*([^\W\d]\w*)")
_BARE_NAME = re.compile(r"(?<![\w.@])([^\W\d]\w*)(?!\s*=[^=])")
_SQL_NAME = re.compile(r"(?<![\w.])([^\W\d]\w*)")
_SQL_DOUBLE_QUOTED = re.compile(r'"([^"]+)"')


def frame_kind(method: str, receiver: str | None, text: str) -> FrameKind | None:
    """How ``receiver.method(text)`` reads names from its caller, if it does."""
    if method == "sql" or (method in {"query", "execute"} and _SQL_START.match(text)):
        return "sql"
    if method == "query":
        return "pandas"
    if method == "eval":
        return "pandas-eval" if receiver in {"pd", "pandas"} else "pandas"
    if method == "evaluate":
        return "pandas-eval"
    return None


def frame_names(text: str, kind: FrameKind) -> dict[str, str]:
    """The names ``text`` may look up in the caller's frame, each with how it is written
    there (``{"thr": "@thr"}``). Errs on the side of more names: a name that is really a
    column costs a fingerprint (and, if it exists as a variable, a miss when it changes)."""
    found: dict[str, str] = {}
    if kind == "sql":
        for quoted in _SQL_DOUBLE_QUOTED.findall(text):  # "Frame": a quoted identifier
            if quoted.isidentifier():
                found.setdefault(quoted, quoted)
        for m in _SQL_NAME.finditer(_QUOTED.sub(" ", text)):
            if m.group(1).upper() not in _SQL_KEYWORDS:
                found.setdefault(m.group(1), m.group(1))
        return found
    plain = _QUOTED.sub(" ", text)  # string literals and `column names` read nothing
    for m in _AT_NAME.finditer(plain):
        found[m.group(1)] = f"@{m.group(1)}"
    if kind == "pandas-eval":
        for m in _BARE_NAME.finditer(_AT_NAME.sub(" ", plain)):
            if not keyword.iskeyword(m.group(1)):
                found.setdefault(m.group(1), m.group(1))
    return found


def string_frame_names(text: str) -> dict[str, str]:
    """For a string met anywhere (a literal passed to a helper that calls ``df.query``, a
    ``str`` input): the ``@names`` of a pandas expression, or the identifiers of an SQL
    query, that some library may look up in the frame it is called from."""
    if "@" in text and len(text) < 10_000:
        return frame_names(text, "pandas")
    if _SQL_START.match(text) and len(text) < 10_000:
        return frame_names(text, "sql")
    if "~" in text and _FORMULA.match(text) and len(text) < 10_000:
        # A model formula (patsy, formulaic: smf.ols('y ~ center(x)', df)): names that are
        # not columns are looked up in the frame that calls the model.
        return frame_names(text, "pandas-eval")
    return {}


_FORMULA = re.compile(r"^[\w\s.()\[\]:+*,-]*~(?!/)[\w\s.()\[\]:+*/,^-]*$")


_SQL_KEYWORDS = frozenset("""
SELECT FROM WHERE AND OR NOT IN IS NULL AS ON JOIN INNER LEFT RIGHT FULL OUTER CROSS NATURAL
USING GROUP BY ORDER HAVING LIMIT OFFSET UNION ALL DISTINCT INTERSECT EXCEPT WITH CASE WHEN
THEN ELSE END ASC DESC BETWEEN LIKE ILIKE CAST TRUE FALSE OVER PARTITION SEMI ANTI VALUES
TABLE EXISTS ANY SOME INTERVAL DATE TIMESTAMP RECURSIVE QUALIFY WINDOW FILTER LATERAL
""".split())


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
