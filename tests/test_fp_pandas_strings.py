"""The Arrow fast path for pandas string columns writes exactly what the general path writes:
the same strings keep the same fingerprint whichever path (or pandas storage) hashes them."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from resumable_nb import _fp_pandas
from resumable_nb.fingerprint import Fingerprinter

pytest.importorskip("pyarrow")

CASES = [
    ["a", "bb", "ccc"], ["", "", ""], ["x"], ["é", "日本", "🙂", ""], ["a\x00b", "c"],
    ["a", None, "c"], [str(i) for i in range(1000)], [],
    [f"é{i}" for i in range(65)], [f"日{i}" for i in range(64)], ["", "a", ""] * 30,
]


def _hash(value: Any) -> str:
    return Fingerprinter().hash(value)


@pytest.mark.parametrize("strings", CASES)
def test_arrow_strings_hash_like_the_general_path(strings: list[Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"s": pd.array(strings, dtype="string[pyarrow]")})
    series = pd.Series(strings, dtype="str")
    fast = (_hash(frame), _hash(series))
    monkeypatch.setattr(_fp_pandas, "_FEW", 0)  # a few strings: from the Arrow buffers too
    assert (_hash(frame), _hash(series)) == fast
    monkeypatch.setattr(_fp_pandas, "_arrow_strings", lambda w, a: False)  # the general path
    assert (_hash(frame), _hash(series)) == fast


@pytest.mark.parametrize("strings", CASES)
def test_python_held_strings_hash_like_arrow_held_ones(strings: list[Any]) -> None:
    python = pd.Series(strings, dtype=pd.StringDtype("python", na_value=float("nan")))
    assert str(python.dtype) == "str"
    assert _hash(python) == _hash(pd.Series(strings, dtype="str"))


def test_string_lengths_keep_neighbours_apart() -> None:
    """Byte lengths, not separators, split the strings: moving a character (even a NUL) from
    one string to the next changes the fingerprint."""
    for a, b in ([["ab", "c"] * 40, ["a", "bc"] * 40], [["a\x00", "b"] * 40, ["a", "\x00b"] * 40],
                 [["é", ""] * 40, ["", "é"] * 40]):
        assert _hash(pd.Series(a, dtype="str")) != _hash(pd.Series(b, dtype="str"))
        assert _hash(pd.Series(a, dtype=object)) != _hash(pd.Series(b, dtype=object))


@pytest.mark.parametrize("start, stop", [(10, 20), (50, 250)])  # a few strings; Arrow's offsets
def test_a_sliced_column_hashes_like_a_fresh_one(start: int, stop: int) -> None:
    s = pd.Series([f"v{i}" for i in range(300)], dtype="str")
    assert _hash(s.iloc[start:stop].reset_index(drop=True)) == _hash(
        pd.Series([f"v{i}" for i in range(start, stop)], dtype="str"))


def test_the_fast_path_is_taken_for_small_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    real = _fp_pandas._arrow_strings
    monkeypatch.setattr(_fp_pandas, "_arrow_strings", lambda w, a: taken.append(real(w, a)) or taken[-1])
    _hash(pd.DataFrame({"s": pd.Series(["a", "b"], dtype="str")}))
    assert True in taken
