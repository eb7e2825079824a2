"""resumable_nb.fingerprint: properties, golden vectors, hash-seed stability, notebook code,
pandas, and the values that must refuse to be fingerprinted.

A collision (two contents, one fingerprint) makes a hit stale; a difference for equal content
only costs a miss. The strict xfails in the last section pin the bugs known today.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import functools
import io
import json
import os
import pathlib
import pickle
import socket
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resumable_nb.errors import Unfingerprintable
from resumable_nb.fingerprint import FINGERPRINT_VERSION, Fingerprinter, fingerprint
from resumable_nb.runner import KEY_VERSION, step_key

ROOT = pathlib.Path(__file__).resolve().parents[1]

# No example database and no deadline (no timed assertions).
PROPERTY = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _notebook(source: str) -> dict[str, Any]:
    """A user namespace with ``source`` run in it, like a notebook's ``user_ns``."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(textwrap.dedent(source), ns)
    return ns


def _fp_in(source: str, name: str = "f") -> str:
    ns = _notebook(source)
    return fingerprint(ns[name], namespace=ns)


# -- properties ---------------------------------------------------------------------------------
# Hashable leaves for sets: no floats (0.0 == -0.0 and 1 == 1.0 would make "the same elements"
# ambiguous) and no shared sub-objects (see test_shared_object_in_set_elements_*).
_hashable = st.recursive(
    st.integers() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, min_size=1, max_size=3),
    max_leaves=8,
)


@PROPERTY
@given(items=st.lists(_hashable, unique=True, min_size=2, max_size=12), data=st.data())
@example(items=[-1, -2], data=None)  # hash(-1) == hash(-2): iteration order follows insertion
def test_set_insertion_order_never_matters(items: list[Any], data: st.DataObject | None) -> None:
    shuffled = data.draw(st.permutations(items)) if data is not None else items[::-1]
    assert fingerprint(set(items)) == fingerprint(set(shuffled))
    assert fingerprint(frozenset(items)) == fingerprint(frozenset(shuffled))
    assert fingerprint(set(items)) != fingerprint(frozenset(items))


@PROPERTY
@given(n=st.integers())
@example(n=0)
@example(n=1)
@example(n=-1)
def test_scalar_lookalikes_never_collide(n: int) -> None:
    text = str(n)
    values: list[Any] = [n, float(n), text, text.encode(), [n], (n,), frozenset([n]), {n}, {text: n}]
    if n in (0, 1):
        values.append(bool(n))
    digests = [fingerprint(v) for v in values]
    assert len(set(digests)) == len(values), list(zip(values, digests, strict=True))


def test_the_documented_lookalikes_are_pairwise_distinct() -> None:
    values: list[Any] = [1, 1.0, True, "1", b"1", [1], (1,), None, 0, "", b"", [], ()]
    assert len({fingerprint(v) for v in values}) == len(values)


_SAME_ITEMSIZE = ["<i8", "<u8", "<f8", "<c8", "<M8[ns]", "<m8[ns]", ">i8", "<i4,<f4", "V8"]


@PROPERTY
@given(n=st.integers(0, 6), data=st.data(),
       dtypes=st.lists(st.sampled_from(_SAME_ITEMSIZE), min_size=2, max_size=2, unique=True))
def test_arrays_differing_only_in_dtype_never_collide(n: int, data: st.DataObject,
                                                      dtypes: list[str]) -> None:
    raw = data.draw(st.binary(min_size=8 * n, max_size=8 * n))
    a, b = (np.frombuffer(raw, dtype=np.dtype(d)) for d in dtypes)
    assert a.shape == b.shape and a.tobytes() == b.tobytes()
    assert fingerprint(a) != fingerprint(b)


@PROPERTY
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple), data=st.data(),
       dtype=st.sampled_from(["<f8", "<i4", "|u1", "|b1"]))
def test_arrays_differing_only_in_shape_never_collide(shape: tuple[int, ...], data: st.DataObject,
                                                      dtype: str) -> None:
    size = int(np.prod(shape))
    other = data.draw(st.sampled_from([(size,), (1, size), (size, 1), shape[::-1], (*shape, 1), (1, *shape)]))
    if other == shape:
        other = (*shape, 1)
    a = np.zeros(shape, dtype=dtype)
    b = a.reshape(other)
    assert fingerprint(a) != fingerprint(b)


_leaf = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
         | st.binary(max_size=8))
_nested = st.recursive(
    _leaf,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)
                   | st.sets(_hashable, max_size=4) | st.frozensets(_hashable, max_size=4)),
    max_leaves=20,
)


def _rebuild(value: Any) -> Any:
    """An equal copy made of fresh objects, sets rebuilt in reverse iteration order."""
    t = type(value)
    if t is list:
        return [_rebuild(v) for v in value]
    if t is tuple:
        return tuple(_rebuild(v) for v in value)
    if t is dict:
        return {_rebuild(k): _rebuild(v) for k, v in value.items()}
    if t in (set, frozenset):
        return t(reversed([_rebuild(v) for v in value]))
    if t is float:
        return struct.unpack("<d", struct.pack("<d", value))[0]
    if t in (str, bytes):
        return t(value[:0]) + value  # same content, usually a new object
    return value


@PROPERTY
@given(value=_nested)
def test_equal_content_gives_equal_fingerprints(value: Any) -> None:
    expected = fingerprint(value)
    assert fingerprint(value) == expected
    assert fingerprint(_rebuild(value)) == expected
    assert fingerprint(copy.deepcopy(value)) == expected


@PROPERTY
@given(items=st.dictionaries(st.text(max_size=4) | st.integers(), _leaf, min_size=2, max_size=6))
def test_dicts_are_ordered(items: dict[Any, Any]) -> None:
    # A documented decision: a cell that iterates a dict sees its order.
    reordered = dict(reversed(list(items.items())))
    assert reordered == items
    assert fingerprint(reordered) != fingerprint(items)


def test_values_that_differ_give_different_fingerprints() -> None:
    values: list[Any] = [0.0, -0.0, float("nan"), float("inf"), 1j, 2**64, -(2**64), "a", "a\x00",
                         "\udcff", b"a", bytearray(b"a"), memoryview(b"a"), range(3), range(0, 3, 2),
                         slice(1, 2), Ellipsis, NotImplemented, [[]], [[], []], ((),), {"a": None},
                         {"a": 0}, {0: "a"}, {1: 1.0}]
    assert len({fingerprint(v) for v in values}) == len(values)


# -- stable across PYTHONHASHSEED ---------------------------------------------------------------
_STABILITY_SCRIPT = """
import json
import numpy as np
import pandas as pd
from resumable_nb.fingerprint import fingerprint

ns = {"__name__": "__main__"}
exec(
    "TAGS = {'red', 'green', 'blue'}\\n"
    "def f(x):\\n"
    "    return x in {'alpha', 'beta', 'gamma', 'delta'} or x in TAGS\\n",
    ns,
)
words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
values = [
    set(words),
    frozenset(words),
    {w: w.upper() for w in words},
    (frozenset({"x", "y", "z"}), 1),
    {"k": {("a", "b"), ("c", "d")}},
    pd.DataFrame({"name": words, "n": np.arange(len(words))}),
    pd.DataFrame({"name": pd.Series(words, dtype=object)}),
]
result = [fingerprint(v) for v in values] + [fingerprint(ns["f"], namespace=ns)]
"""


def _in_subprocesses(script: str, seeds: list[str]) -> list[Any]:
    procs = []
    for seed in seeds:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        procs.append(subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for seed, proc in zip(seeds, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"PYTHONHASHSEED={seed}: {err}"
        results.append(json.loads(out))
    return results


def test_stable_across_hash_seeds() -> None:
    here: dict[str, Any] = {}
    # dont_inherit: this module's `from __future__ import annotations` would change co_flags
    exec(compile(_STABILITY_SCRIPT, "<stability>", "exec", dont_inherit=True), here)
    results = _in_subprocesses(_STABILITY_SCRIPT + "\nprint(json.dumps([result, list(set(words))]))",
                               ["0", "12345", "random"])
    assert results[0][1] != results[1][1], "the seeds should give the sets another iteration order"
    for result, _order in results:
        assert result == here["result"]


_SHARED_ATOMS = (1, "a", (b"b", frozenset({2})))

# -- golden vectors -----------------------------------------------------------------------------
# A change here is a decision: bump FINGERPRINT_VERSION / KEY_VERSION (every stored entry then
# misses), and paste the new values.
GOLDEN = [
    pytest.param(None, "4f8efa5a87d044c602b6f74afa7ad0c6", id="None"),
    pytest.param(0, "8e7ba4744620b77b6c623212875f97ee", id="0"),
    pytest.param(-1, "a1e91c5d6860d32b80e47451797bd70d", id="-1"),
    pytest.param(2**100, "c86fcd399b9df5edc90b44928a1a5fc2", id="2**100"),
    pytest.param(1.5, "923bdd0fc0794405cf3dd154844c05eb", id="1.5"),
    pytest.param("héllo", "471d2b85742b9643143cd27e33b1eefd", id="str"),
    pytest.param(b"\x00", "313e6be198cfe03ac2f86e9652d15f5e", id="bytes"),
    pytest.param([1, "a"], "da270197e3bfc0d69a96c2acd75851a3", id="list"),
    pytest.param({"a": 1}, "3e831932b6b7ae85bdcc5462b973a8fa", id="dict"),
    pytest.param({3, 1, 2}, "9e6a2f9ce7e3de478341946c195486a7", id="set"),
    pytest.param(np.arange(4, dtype="int32"), "f19196b80fe9c68f23f70b5a37de11c1", id="np-arange-int32"),
    pytest.param(np.zeros((2, 2)), "41bcbf2f1178c68e56fe2d29cae7aac6", id="np-zeros-2x2"),
    pytest.param(pd.DataFrame({"a": np.array([1, 2], dtype="int64"),
                               "b": pd.Series(["x", "y"], dtype=object)}),
                 "78f928552176ead3a7a98d74fda9aece", id="dataframe"),
    pytest.param(bytearray(b"ab"), "dcc015e179f3571cb8a3d3aa3c186452", id="bytearray"),
    pytest.param(frozenset({1, 2}), "6be79197361287c7c6b0f10faa732eab", id="frozenset"),
    pytest.param(types.MappingProxyType({"a": 1}), "b7c09a4d1f05ffec1f099ca215a3c33c", id="mappingproxy"),
    pytest.param(range(1, 9, 2), "e63341114ad6f55081e9c304a6fd6cae", id="range"),
    pytest.param(memoryview(b"ab"), "2ca4cfa445a7b5d7e1e37c13bcc4212a", id="memoryview"),
    pytest.param(property(), "3617c0fba2d46154013242648886b381", id="property"),
    pytest.param(1 + 2j, "edc3c100986237370a40de4c5506216b", id="complex"),
    pytest.param([_SHARED_ATOMS, _SHARED_ATOMS], "65f6d90243d4e33759e1261e5bd0522f", id="shared-atom-tuple"),
]


@pytest.mark.parametrize(("value", "expected"), GOLDEN)
def test_golden_fingerprints(value: Any, expected: str) -> None:
    assert FINGERPRINT_VERSION == 9, "new version: paste the new golden values"
    assert fingerprint(value) == expected


# A change here is a decision: bump FINGERPRINT_VERSION / KEY_VERSION, and paste the new values.
GOLDEN_KEYS = [
    pytest.param(("x = 1", {}, [], []),
                 "step-877ba2e51cdb6337c08a55c614e901ada14b876b4a2c77cc3937d86c9b46a249", id="no-inputs"),
    pytest.param(("y = x + 1", {"x": "a1e91c5d6860d32b80e47451797bd70d"}, ["numpy==2.4.6"], []),
                 "step-709b5c281e35cf23718e2c69c64955770ecfd18cbfc59a21d8570852e551a44d", id="one-input"),
    pytest.param(("z = f(a, b)", {"b": "471d2b85742b9643143cd27e33b1eefd", "a": "absent",
                                  "f": "4f8efa5a87d044c602b6f74afa7ad0c6"},
                  ["pandas==3.1.1", "json==py3.11.7"], ["tmp", "log"]),
                 "step-04a72cbe49c4f34ca7946135260717644cf78798df2f4a8db1c47c5b894e18ca", id="full"),
]


@pytest.mark.parametrize(("args", "expected"), GOLDEN_KEYS)
def test_golden_step_keys(args: tuple[str, dict[str, str], list[str], list[str]], expected: str) -> None:
    assert (KEY_VERSION, FINGERPRINT_VERSION) == (2, 9), "new version: paste the new golden keys"
    assert step_key(*args) == expected


def test_step_key_ignores_the_order_of_its_collections() -> None:
    inputs = {"a": "1", "b": "2"}
    key = step_key("c = a + b", inputs, ["m==1", "n==2"], ["t", "u"])
    assert step_key("c = a + b", dict(reversed(inputs.items())), ["n==2", "m==1"], ["u", "t"]) == key
    assert step_key("c = a + b", {"a": "1", "b": "3"}, ["m==1", "n==2"], ["t", "u"]) != key
    assert step_key("c = a - b", inputs, ["m==1", "n==2"], ["t", "u"]) != key
    assert step_key("c = a + b", inputs, ["m==1", "n==3"], ["t", "u"]) != key
    assert step_key("c = a + b", inputs, ["m==1", "n==2"], ["t"]) != key


# -- the tag table ------------------------------------------------------------------------------
def _tag_table() -> dict[str, bytes]:
    from resumable_nb import _tags

    return {k: v for k, v in vars(_tags).items() if k.isupper() and isinstance(v, bytes)}


def test_every_tag_is_one_byte_and_used_by_one_name() -> None:
    table = _tag_table()
    assert len(table) > 40
    assert all(len(tag) == 1 for tag in table.values()), "a longer tag would make one tag a prefix of another"
    by_tag: dict[bytes, list[str]] = {}
    for name, tag in table.items():
        by_tag.setdefault(tag, []).append(name)
    assert {t: n for t, n in by_tag.items() if len(n) > 1} == {}


_WRITER_METHODS = {"raw", "text", "begin"}


@pytest.mark.parametrize("module", ["fingerprint", "_fp_numpy", "_fp_pandas", "_fp_arrow"])
def test_writers_take_their_tags_from_the_table(module: str) -> None:
    """Every ``w.raw/text/begin(tag, ...)`` names a constant of ``_tags`` (a literal there is
    how two kinds of value came to share a tag)."""
    import ast

    tree = ast.parse((ROOT / "resumable_nb" / f"{module}.py").read_text())
    table = _tag_table()
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in _WRITER_METHODS and n.args]
    assert calls
    for call in calls:
        tag = call.args[0]
        if isinstance(tag, ast.IfExp):  # ``tags.LIST if t is list else tags.TUPLE``
            options = [tag.body, tag.orelse]
        elif isinstance(tag, ast.Name) and tag.id == "tag":  # a helper's parameter
            continue
        else:
            options = [tag]
        for option in options:
            assert (isinstance(option, ast.Attribute) and isinstance(option.value, ast.Name)
                    and option.value.id == "tags" and option.attr in table), \
                f"{module}.py:{call.lineno}: {ast.unparse(option)} is not a tag from _tags"


# -- values without stable content --------------------------------------------------------------
def _generator(stack: ExitStack) -> Any:
    return (i for i in range(3))


def _socket(stack: ExitStack) -> Any:
    return stack.enter_context(socket.socket())


def _file(stack: ExitStack) -> Any:
    return stack.enter_context(open(os.devnull))


def _binary_file(stack: ExitStack) -> Any:
    return stack.enter_context(open(os.devnull, "rb"))


def _sqlite(stack: ExitStack) -> Any:
    conn = sqlite3.connect(":memory:")
    stack.callback(conn.close)
    return conn


def _sqlite_cursor(stack: ExitStack) -> Any:
    return _sqlite(stack).cursor()


async def _coroutine_function() -> None:
    pass


def _coroutine(stack: ExitStack) -> Any:
    coro = _coroutine_function()
    stack.callback(coro.close)
    return coro


UNFINGERPRINTABLE = [
    pytest.param(_generator, id="generator"),
    pytest.param(_coroutine, id="coroutine"),
    pytest.param(lambda stack: threading.Lock(), id="lock"),
    pytest.param(lambda stack: threading.RLock(), id="rlock"),
    pytest.param(lambda stack: threading.Event(), id="event"),
    pytest.param(_socket, id="socket"),
    pytest.param(_file, id="open-text-file"),
    pytest.param(_binary_file, id="open-binary-file"),
    pytest.param(_sqlite, id="sqlite3-connection"),
    pytest.param(_sqlite_cursor, id="sqlite3-cursor"),
]


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


@pytest.mark.parametrize("make", UNFINGERPRINTABLE)
def test_live_handles_are_unfingerprintable(make: Callable[[ExitStack], Any], stack: ExitStack) -> None:
    value = make(stack)
    with pytest.raises(Unfingerprintable):
        fingerprint(value)
    # ...also when nested, never silently skipped
    with pytest.raises(Unfingerprintable):
        fingerprint({"outer": [1, (2, value)]})
    with pytest.raises(Unfingerprintable):
        fingerprint({frozenset({1}), (value,)} if _hashable_value(value) else [{"k": value}])


def _hashable_value(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def test_unfingerprintable_through_a_notebook_function_global() -> None:
    ns = _notebook("import threading\nLOCK = threading.Lock()\ndef f():\n    with LOCK:\n        return 1\n")
    with pytest.raises(Unfingerprintable):
        fingerprint(ns["f"], namespace=ns)


CONTENT_VALUES = [
    pytest.param(lambda: io.StringIO("abc"), lambda: io.StringIO("abd"), id="StringIO"),
    pytest.param(lambda: io.BytesIO(b"abc"), lambda: io.BytesIO(b"abd"), id="BytesIO"),
    pytest.param(lambda: datetime.datetime(2024, 1, 2, 3, 4, 5),
                 lambda: datetime.datetime(2024, 1, 2, 3, 4, 6), id="datetime"),
    pytest.param(lambda: datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
                 lambda: datetime.datetime(2024, 1, 2), id="datetime-tz"),
    pytest.param(lambda: datetime.date(2024, 1, 2), lambda: datetime.date(2024, 1, 3), id="date"),
    pytest.param(lambda: datetime.timedelta(seconds=1), lambda: datetime.timedelta(seconds=2),
                 id="timedelta"),
    pytest.param(lambda: decimal.Decimal("1.10"), lambda: decimal.Decimal("1.1"), id="Decimal"),
    pytest.param(lambda: pathlib.Path("data/a.csv"), lambda: pathlib.Path("data/b.csv"), id="Path"),
    pytest.param(lambda: pathlib.PurePosixPath("a"), lambda: pathlib.PureWindowsPath("a"),
                 id="PurePath-flavour"),
    pytest.param(lambda: functools.partial(int, base=2), lambda: functools.partial(int, base=8),
                 id="partial"),
    pytest.param(lambda: functools.partial(pow, 2), lambda: functools.partial(pow, 3), id="partial-args"),
]


@pytest.mark.parametrize(("make", "make_other"), CONTENT_VALUES)
def test_values_with_content_fingerprint_by_content(make: Callable[[], Any],
                                                    make_other: Callable[[], Any]) -> None:
    assert fingerprint(make()) == fingerprint(make())
    assert fingerprint(make()) != fingerprint(make_other())


# -- cycles and depth ---------------------------------------------------------------------------
def _self_list(tail: Any) -> list[Any]:
    a: list[Any] = [1, tail]
    a.append(a)
    return a


def _dict_pair(name: str) -> dict[str, Any]:
    d1: dict[str, Any] = {"name": name}
    d2: dict[str, Any] = {"name": "b", "peer": d1}
    d1["peer"] = d2
    return d1


def test_cycles_fingerprint_deterministically() -> None:
    a = _self_list("x")
    assert fingerprint(a) == fingerprint(a)
    assert fingerprint(a) == fingerprint(_self_list("x")) == fingerprint(copy.deepcopy(a))
    assert fingerprint(a) != fingerprint(_self_list("y"))
    d = _dict_pair("a")
    assert fingerprint(d) == fingerprint(d) == fingerprint(_dict_pair("a")) == fingerprint(copy.deepcopy(d))
    assert fingerprint(d) != fingerprint(_dict_pair("z"))
    assert fingerprint(d) != fingerprint(d["peer"])


def test_a_cycle_is_not_its_unrolling() -> None:
    a: list[Any] = []
    a.append(a)
    assert fingerprint(a) != fingerprint([[]])
    assert fingerprint(a) != fingerprint([[[]]])


def test_a_shared_immutable_tuple_is_not_a_back_reference() -> None:
    # The compiler shares equal constant tuples (a class's __slots__ and a method's co_names);
    # an unpickled class or value does not: identity of immutable values is not content.
    t = (1, "a", (b"b", frozenset({2, 3})))
    assert fingerprint([t, t]) == fingerprint([t, copy.deepcopy(t)]) == fingerprint(
        [t, (1, "a", (b"b", frozenset({3, 2})))])
    assert fingerprint([t, t]) != fingerprint([t, (1, "a", (b"b", frozenset({2, 4})))])
    assert fingerprint([t, t]) != fingerprint([t, (1, "b", (b"b", frozenset({2, 3})))])


def test_mutable_objects_keep_their_identity_inside_shared_tuples() -> None:
    # A tuple holding a list is written by content, but the list is still met twice: aliasing
    # (one list seen through two names) stays distinct from two equal lists.
    inner = [1]
    shared = ((inner,), (inner,))
    separate = (([1],), ([1],))
    assert fingerprint(shared) != fingerprint(separate)
    assert fingerprint(shared) == fingerprint(pickle.loads(pickle.dumps(shared)))
    t = (inner,)
    assert fingerprint([t, t]) == fingerprint([(inner,), (inner,)]), "one list, reached twice"
    assert fingerprint([t, t]) != fingerprint([(inner,), ([1],)])


def _nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_moderate_nesting_is_fine() -> None:
    assert fingerprint(_nested_lists(100)) != fingerprint(_nested_lists(101))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _nested_lists(10_000), id="lists"),
        pytest.param(lambda: functools.reduce(lambda acc, _: {"k": acc}, range(10_000), {}), id="dicts"),
        pytest.param(lambda: functools.reduce(lambda acc, _: (acc,), range(10_000), ()), id="tuples"),
        pytest.param(lambda: functools.reduce(lambda acc, _: frozenset({acc}), range(10_000), frozenset()),
                     id="frozensets"),
    ],
)
def test_deep_nesting_raises_unfingerprintable_not_recursion_error(make: Callable[[], Any]) -> None:
    value = make()
    with pytest.raises(Unfingerprintable):
        fingerprint(value)
    # the Fingerprinter is usable again afterwards
    fp = Fingerprinter()
    with pytest.raises(Unfingerprintable):
        fp.hash(value)
    assert fp.hash([1, 2]) == fingerprint([1, 2])


# -- notebook functions -------------------------------------------------------------------------
BASE_FN = """
def f(x, k=1, *, scale=2):
    return x + k * scale
"""


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param("def f(x, k=1, *, scale=2):\n    return x - k * scale", id="body"),
        pytest.param("def f(x, k=2, *, scale=2):\n    return x + k * scale", id="default"),
        pytest.param("def f(x, k=1, *, scale=3):\n    return x + k * scale", id="kw-default"),
        pytest.param("def f(y, k=1, *, scale=2):\n    return y + k * scale", id="parameter-name"),
        pytest.param("def g(x, k=1, *, scale=2):\n    return x + k * scale\nf = g", id="function-name"),
        pytest.param("def f(x, k=1, *, scale=2):\n    return x + k * scale + 0.0", id="constant"),
    ],
)
def test_notebook_function_changes(changed: str) -> None:
    assert _fp_in(BASE_FN) != _fp_in(changed)


def test_notebook_function_same_source_same_fingerprint() -> None:
    assert _fp_in(BASE_FN) == _fp_in(BASE_FN)
    # moving a function down the cell (other line numbers) or other comments: same code
    assert _fp_in(BASE_FN) == _fp_in("\n\n\n# a comment\n" + BASE_FN.replace("k * scale", "k * scale  # why"))


CLOSURE = """
def make(n):
    def f(x):
        return x + n
    return f
f = make({n})
"""


def test_notebook_function_closure_value() -> None:
    assert _fp_in(CLOSURE.format(n=1)) == _fp_in(CLOSURE.format(n=1))
    assert _fp_in(CLOSURE.format(n=1)) != _fp_in(CLOSURE.format(n="[1]"))
    assert _fp_in(CLOSURE.format(n=1)) != _fp_in(CLOSURE.format(n=2))


TRANSITIVE = """
K = {k}
def g(x):
    return x * K
def f(x):
    return len(str(g(x)))
"""


def test_notebook_function_reads_a_global_transitively() -> None:
    assert _fp_in(TRANSITIVE.format(k=1)) == _fp_in(TRANSITIVE.format(k=1))
    assert _fp_in(TRANSITIVE.format(k=1)) != _fp_in(TRANSITIVE.format(k=2))
    assert _fp_in(TRANSITIVE.format(k=[1, 2])) != _fp_in(TRANSITIVE.format(k=[1, 3]))
    changed_g = TRANSITIVE.format(k=1).replace("x * K", "x + K")
    assert _fp_in(TRANSITIVE.format(k=1)) != _fp_in(changed_g)


def test_globals_read_lists_the_notebook_globals_a_function_reads() -> None:
    ns = _notebook(TRANSITIVE.format(k=1))
    fp = Fingerprinter(ns)
    fp.hash(ns["f"])
    assert fp.globals_read == {"g", "K"}  # len and str are builtins, not notebook globals
    fp.globals_read.clear()
    fp.hash(ns["g"])
    assert fp.globals_read == {"K"}


def test_globals_read_includes_mutated_globals() -> None:
    ns = _notebook("LOG = []\ndef f(x):\n    LOG.append(x)\n")
    fp = Fingerprinter(ns)
    before = fp.hash(ns["f"])
    assert fp.globals_read == {"LOG"}
    ns["f"](1)
    assert fp.hash(ns["f"]) != before


def test_recursive_functions() -> None:
    source = "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n"
    ns = _notebook(source)
    fp = Fingerprinter(ns)
    digest = fp.hash(ns["fact"])
    assert fp.globals_read == {"fact"}
    assert digest == _fp_in(source, "fact")
    assert digest != _fp_in(source.replace("n * fact", "n + fact"), "fact")
    mutual = ("def even(n):\n    return n == 0 or odd(n - 1)\n"
              "def odd(n):\n    return n != 0 and even(n - 1)\n")
    assert _fp_in(mutual, "even") == _fp_in(mutual, "even") != _fp_in(mutual, "odd")


def test_lambda_and_nested_function_globals() -> None:
    base = "T = 1\nf = lambda x: (lambda: x + T)()\n"
    assert _fp_in(base) == _fp_in(base)
    assert _fp_in(base) != _fp_in(base.replace("T = 1", "T = 2"))


NOTEBOOK_CLASS = """
SCALE = {scale}
class Model:
    kind = "linear"
    def predict(self, x):
        return x * SCALE
m = Model()
"""


def test_notebook_class_instance_follows_its_methods_and_globals() -> None:
    base = _fp_in(NOTEBOOK_CLASS.format(scale=2), "m")
    assert base == _fp_in(NOTEBOOK_CLASS.format(scale=2), "m")
    assert base != _fp_in(NOTEBOOK_CLASS.format(scale=3), "m")
    assert base != _fp_in(NOTEBOOK_CLASS.format(scale=2).replace("x * SCALE", "x / SCALE"), "m")
    assert base != _fp_in(NOTEBOOK_CLASS.format(scale=2).replace('"linear"', '"log"'), "m")
    assert base != _fp_in(NOTEBOOK_CLASS.format(scale=2) + "m.fitted = True\n", "m")


# -- pandas -------------------------------------------------------------------------------------
def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n": [1.0, 2.0, 3.0],
            "i": np.array([1, 2, 3], dtype="int64"),
            "s": ["a", "b", "c"],  # pandas 3: the default string dtype
            "o": pd.Series(["a", "b", "c"], dtype=object),
            "c": pd.Categorical(["x", "y", "x"], categories=["x", "y"]),
        },
        index=pd.Index([10, 20, 30], name="id"),
    )


def _set(column: str, row: int, value: Any) -> Callable[[pd.DataFrame], None]:
    def change(df: pd.DataFrame) -> None:
        df.loc[df.index[row], column] = value

    return change


def _rename_index(df: pd.DataFrame) -> None:
    df.index = df.index.rename("key")


def _other_index(df: pd.DataFrame) -> None:
    df.index = pd.Index([10, 20, 31], name="id")


def _rename_column(df: pd.DataFrame) -> None:
    df.columns = ["m", *df.columns[1:]]


def _reorder_columns(df: pd.DataFrame) -> pd.DataFrame:
    return df[["i", "n", "s", "o", "c"]]


def _reorder_categories(df: pd.DataFrame) -> None:
    df["c"] = df["c"].cat.reorder_categories(["y", "x"])


def _extra_category(df: pd.DataFrame) -> None:
    df["c"] = df["c"].cat.add_categories(["z"])


def _int_to_float(df: pd.DataFrame) -> None:
    df["i"] = df["i"].astype("float64")


def _attrs(df: pd.DataFrame) -> None:
    df.attrs["source"] = "x.csv"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set("n", 1, 2.5), id="numeric-cell"),
        pytest.param(_set("i", 2, 4), id="int-cell"),
        pytest.param(_set("s", 0, "z"), id="string-dtype-cell"),
        pytest.param(_set("o", 0, "z"), id="object-string-cell"),
        pytest.param(_set("c", 0, "y"), id="categorical-cell"),
        pytest.param(_reorder_categories, id="categorical-category-order"),
        pytest.param(_extra_category, id="categorical-extra-category"),
        pytest.param(_other_index, id="index-value"),
        pytest.param(_rename_index, id="index-name"),
        pytest.param(_rename_column, id="column-name"),
        pytest.param(_reorder_columns, id="column-order"),
        pytest.param(_int_to_float, id="column-dtype"),
        pytest.param(_attrs, id="attrs"),
    ],
)
def test_dataframe_changes_change_the_fingerprint(change: Callable[[pd.DataFrame], Any]) -> None:
    df = _frame()
    assert fingerprint(df) == fingerprint(_frame())
    before = fingerprint(df)
    result = change(df)
    changed = result if isinstance(result, pd.DataFrame) else df
    assert fingerprint(changed) != before


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(pd.Series(["a", None], dtype=object), pd.Series(["a", np.nan], dtype=object),
                     id="object-None-vs-NaN"),
        pytest.param(pd.Series(["a", None], dtype=object), pd.Series(["a", "None"], dtype=object),
                     id="object-None-vs-'None'"),
        pytest.param(pd.Series(["a", ""], dtype=object), pd.Series(["a", None], dtype=object),
                     id="object-empty-vs-None"),
        pytest.param(pd.Series(["ab", "c"]), pd.Series(["a", "bc"]), id="string-boundaries"),
        pytest.param(pd.Series(["ab", "c"], dtype=object), pd.Series(["a", "bc"], dtype=object),
                     id="object-string-boundaries"),
        pytest.param(pd.Series(["a", "b"]), pd.Series(["a", "b"], dtype=object), id="str-vs-object-dtype"),
        pytest.param(pd.Series([1, 2]), pd.Series([1, 2], dtype="Int64"), id="int64-vs-Int64"),
        pytest.param(pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b"), id="series-name"),
        pytest.param(pd.Series([1, 2]), pd.DataFrame({0: [1, 2]}), id="series-vs-frame"),
        pytest.param(pd.Series(["a", 1], dtype=object), pd.Series(["a", "1"], dtype=object),
                     id="object-mixed"),
        pytest.param(pd.DataFrame({"a": [1]}, index=pd.MultiIndex.from_tuples([("x", 1)])),
                     pd.DataFrame({"a": [1]}, index=pd.MultiIndex.from_tuples([("x", 2)])), id="multiindex"),
    ],
)
def test_pandas_lookalikes_differ(a: Any, b: Any) -> None:
    assert fingerprint(a) != fingerprint(b)


def test_dataframe_fingerprint_needs_no_copy_and_ignores_memory_layout() -> None:
    df = _frame()
    assert fingerprint(df) == fingerprint(df.copy(deep=True))
    assert fingerprint(df[["n"]]) == fingerprint(pd.DataFrame({"n": [1.0, 2.0, 3.0]},
                                                               index=pd.Index([10, 20, 30], name="id")))


# -- bugs found once (each a stale hit, a crash, or needless misses) --------------------------
@pytest.mark.parametrize("decorator", ["functools.lru_cache", "functools.cache", "functools.lru_cache(8)"])
def test_cached_notebook_function_body_counts(decorator: str) -> None:
    source = f"import functools\n@{decorator}\ndef f(x):\n    return x + 1\n"
    assert _fp_in(source) != _fp_in(source.replace("x + 1", "x + 2"))


def _make_adder(n: int) -> Callable[[int], int]:
    return lambda x: x + n


def test_closure_from_a_module_factory_counts() -> None:
    assert fingerprint(_make_adder(1)) != fingerprint(_make_adder(2))


def test_memoryview_format_and_shape_count() -> None:
    raw = b"\x01\x00\x00\x00\x02\x00\x00\x00"
    assert fingerprint(memoryview(raw)) != fingerprint(memoryview(raw).cast("i"))
    assert fingerprint(memoryview(raw)) != fingerprint(memoryview(raw).cast("B", (2, 4)))


@pytest.mark.parametrize("r", [range(2**63, 0), range(0, 10, 2**63), range(-(2**63) - 1, 0)],
                         ids=["start", "step", "negative-start"])
def test_huge_ranges(r: range) -> None:
    assert fingerprint(r) == fingerprint(range(r.start, r.stop, r.step))
    assert fingerprint(r) != fingerprint(range(0))


def _colliding_pair() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Two tuples sharing the () singleton whose frozenset order follows insertion order."""
    for i in range(1, 200):
        for j in range(i + 1, 200):
            a, b = ((), i), ((), j)
            if list(frozenset([a, b])) != list(frozenset([b, a])):
                return a, b
    raise AssertionError("no colliding pair found")  # pragma: no cover


def test_shared_object_in_set_elements_insertion_order() -> None:
    a, b = _colliding_pair()
    assert fingerprint(frozenset([a, b])) == fingerprint(frozenset([b, a]))


def test_shared_object_in_set_elements_across_hash_seeds() -> None:
    script = ("import json\n"
              "from resumable_nb.fingerprint import fingerprint\n"
              "keys = [('a', 1), ('b', 2), ('c', 3), ('d', 4)]\n"
              "print(json.dumps([fingerprint(frozenset({((), 'a'), ((), 'b'), ((), 'c')})),\n"
              "                  fingerprint((set(keys), keys))]))\n")
    results = _in_subprocesses(script, ["0", "1", "3", "4"])
    assert len({tuple(r) for r in results}) == 1


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("class C:\n    @property\n    def v(self):\n        return 1\n", id="property"),
        pytest.param("class C:\n    @staticmethod\n    def v():\n        return 1\n", id="staticmethod"),
        pytest.param("class C:\n    @classmethod\n    def v(cls):\n        return 1\n", id="classmethod"),
        pytest.param("from dataclasses import dataclass\n@dataclass\nclass C:\n    v: int = 1\n",
                     id="dataclass"),
        pytest.param("from typing import NamedTuple\nclass C(NamedTuple):\n    v: int = 1\n",
                     id="namedtuple"),
        pytest.param("import abc\nclass C(abc.ABC):\n    def v(self):\n        return 1\n", id="abc"),
    ],
)
def test_common_notebook_classes_fingerprint(source: str) -> None:
    source += "obj = C()\n"
    assert _fp_in(source, "obj") == _fp_in(source, "obj")
    assert _fp_in(source, "obj") != _fp_in(source.replace("1", "2"), "obj")


# -- pyarrow and polars (when installed) -------------------------------------------------------
def test_arrow_tables_and_polars_frames_are_keyed_by_content() -> None:
    pa = pytest.importorskip("pyarrow")
    pl = pytest.importorskip("polars")
    table = pa.table({"a": [1, 2, 3], "s": ["x", "y", None]})
    assert fingerprint(table) == fingerprint(pa.table({"a": [1, 2, 3], "s": ["x", "y", None]}))
    assert fingerprint(table) != fingerprint(pa.table({"a": [1, 2, 4], "s": ["x", "y", None]}))
    assert fingerprint(table) != fingerprint(pa.table({"a": [1, 2, 3], "s": ["x", "z", None]}))
    assert fingerprint(table.slice(1, 2)) != fingerprint(table.slice(0, 2))
    assert fingerprint(table.column("a")) != fingerprint(table.column("a").cast(pa.int32()))
    frame = pl.DataFrame({"a": [1, 2, 3], "s": ["x", "y", "z"]})
    assert fingerprint(frame) == fingerprint(pl.DataFrame({"a": [1, 2, 3], "s": ["x", "y", "z"]}))
    assert fingerprint(frame) != fingerprint(frame.with_columns(pl.col("a") * 2))
    assert fingerprint(pl.Series("n", [1.0])) != fingerprint(pl.Series("m", [1.0]))


def test_pyarrow_backed_pandas_strings_are_keyed_by_content() -> None:
    pytest.importorskip("pyarrow")
    s = pd.Series(["x", "y", None], dtype="string[pyarrow]")
    assert fingerprint(s) == fingerprint(pd.Series(["x", "y", None], dtype="string[pyarrow]"))
    assert fingerprint(s) != fingerprint(pd.Series(["x", "z", None], dtype="string[pyarrow]"))


# -- installed packages: keyed by what is loaded -----------------------------------------------
def test_a_package_upgraded_inside_the_kernel_is_keyed_by_the_loaded_version(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``pip install -U`` in a running kernel the old code still runs: the loaded
    module's ``__version__`` is what counts, not the metadata on disk."""
    from resumable_nb.fingerprint import import_identity, module_identity

    before = (module_identity("numpy"), import_identity("numpy"), fingerprint(np.mean), fingerprint(np))
    assert before[0] == f"numpy=={np.__version__}"
    # What an upgrade followed by a reload (or a fresh import) leaves in sys.modules.
    monkeypatch.setattr(sys.modules["numpy"], "__version__", "99.0.0")
    after = (module_identity("numpy"), import_identity("numpy"), fingerprint(np.mean), fingerprint(np))
    assert after[0] == "numpy==99.0.0" == after[1]
    assert all(a != b for a, b in zip(before, after, strict=True))


def test_stdlib_modules_are_keyed_by_the_python_version() -> None:
    from resumable_nb.fingerprint import module_identity

    # json has a __version__ of its own (2.0.9) that does not follow its code.
    assert module_identity("json") == "json==py{}.{}.{}".format(*sys.version_info[:3])


def test_a_package_without_version_attribute_uses_its_distribution() -> None:
    import importlib.metadata

    import _hypothesis_globals
    import hypothesis

    from resumable_nb.fingerprint import module_identity

    # Installed by the hypothesis distribution, no __version__: found through the metadata.
    assert not hasattr(_hypothesis_globals, "__version__")
    assert module_identity("_hypothesis_globals") == f"_hypothesis_globals=={hypothesis.__version__}"
    assert module_identity("iniconfig") == f"iniconfig=={importlib.metadata.version('iniconfig')}"


# -- environment readers by object (adversary round 2) ----------------------------------------
@pytest.mark.parametrize(
    ("source", "aliases", "expected"),
    [
        ("from os import getenv as ge\ndef f():\n    return ge('X')", frozenset(), {"X"}),
        ("import os as o\ndef f():\n    return o.getenv('X')", frozenset(), {"X"}),
        ("import os\ndef f():\n    return getattr(os, 'getenv')('X')", frozenset(), {"*"}),
        ("import os\ndef f():\n    return vars(os)", frozenset(), {"*"}),
        ("import os\ndef f():\n    return os.path.join('a', 'b')", frozenset(), set()),
        ("def f():\n    return ge('X')", frozenset({("ge", "env")}), {"X"}),
        ("def f():\n    return E.get('X'), 'Y' in E", frozenset({("E", "env")}), {"X", "Y"}),
        ("def f():\n    return helper(ge)", frozenset({("ge", "env")}), {"*"}),
        ("def f():\n    return getattr(m, 'environ')", frozenset({("m", "os")}), {"*"}),
    ],
    ids=["from-import-as", "import-as", "getattr-os", "vars-os", "os.path", "alias-call",
         "alias-mapping", "alias-passed-on", "os-alias-getattr"],
)
def test_environ_reads_follow_other_names(source: str, aliases: frozenset[tuple[str, str]],
                                          expected: set[str]) -> None:
    from resumable_nb.fingerprint import environ_reads

    assert environ_reads(compile(source, "<t>", "exec"), aliases) == expected


def test_an_environment_reader_held_in_a_value_reads_the_whole_environment() -> None:
    import functools
    import os

    for value in ([os.getenv], functools.partial(os.getenv, "X"), {"g": os.environ.get}):
        fp = Fingerprinter(follow_globals=False)
        fp.hash(value)
        assert fp.env_read == {"*"}, value
    fp = Fingerprinter(follow_globals=False)
    fp.hash(os.getenv)  # a name the scanned code reads: the names it passes count instead
    assert fp.env_read == set()


def test_foreign_attributes_of_installed_modules() -> None:
    import statistics

    from resumable_nb.fingerprint import foreign_attributes

    ns = {"statistics": statistics, "np": np, "os": __import__("os")}
    chains = [("statistics", "mean"), ("np", "random", "seed"), ("np", "mean"), ("os", "stat"),
              ("os", "path", "join")]
    assert foreign_attributes(chains, ns) == {}
    orig = statistics.mean
    patched = lambda xs: 99  # noqa: E731
    statistics.mean = patched
    try:
        assert foreign_attributes(chains, ns) == {"statistics.mean": patched}
    finally:
        statistics.mean = orig
