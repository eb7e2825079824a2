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
    monkeypatch.setattr(_fp_pandas, "_ARROW_FEW", 0)  # a few strings: from the Arrow buffers too
    assert (_hash(frame), _hash(series)) == fast
    monkeypatch.setattr(_fp_pandas, "_ARROW_JOIN_MAX", -1)  # forces the general path
    assert (_hash(frame), _hash(series)) == fast


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
