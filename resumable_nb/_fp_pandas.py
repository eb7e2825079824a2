"""pandas fingerprints: per column (name, dtype, values) plus the index.

String columns (object or the string dtypes) are hashed as one length table plus one joined
UTF-8 buffer, not element by element.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import _fp_numpy

if TYPE_CHECKING:
    from .fingerprint import Fingerprinter


def handler_for(t: type) -> Callable[[Fingerprinter, Any], None] | None:
    if issubclass(t, pd.DataFrame):
        return frame
    if issubclass(t, pd.Series):
        return series
    if issubclass(t, pd.MultiIndex):
        return multiindex
    if issubclass(t, pd.Index):
        return index
    return None


def frame(fp: Fingerprinter, df: pd.DataFrame) -> None:
    fp._begin(b"P", df.shape[1])
    fp._feed(type(df).__qualname__)
    fp._feed(df.attrs)
    fp._feed(df.flags.allows_duplicate_labels)
    index(fp, df.columns)
    index(fp, df.index)
    for i in range(df.shape[1]):
        values(fp, df.iloc[:, i].array)


def series(fp: Fingerprinter, s: pd.Series) -> None:
    fp._begin(b"Q", 3)
    fp._feed(s.name)
    fp._feed(s.attrs)
    index(fp, s.index)
    values(fp, s.array)


def index(fp: Fingerprinter, idx: pd.Index) -> None:
    if isinstance(idx, pd.MultiIndex):
        multiindex(fp, idx)
        return
    fp._begin(b"I", 3)
    fp._str(b"t", type(idx).__qualname__)
    fp._feed(idx.name)
    fp._feed(getattr(idx, "freqstr", None))
    if isinstance(idx, pd.RangeIndex):
        fp._feed(range(idx.start, idx.stop, idx.step))
    else:
        values(fp, idx.array)


def multiindex(fp: Fingerprinter, idx: pd.MultiIndex) -> None:
    fp._begin(b"U", len(idx.levels))
    fp._feed(list(idx.names))
    for level, codes in zip(idx.levels, idx.codes, strict=True):
        index(fp, level)
        _fp_numpy.array(fp, np.asarray(codes))


def values(fp: Fingerprinter, arr: Any) -> None:
    """One column's values: numpy-backed, categorical, strings, or element by element."""
    dtype = arr.dtype
    fp._str(b"V", str(dtype))
    if isinstance(dtype, pd.CategoricalDtype):
        fp._feed(dtype.ordered)
        index(fp, dtype.categories)
        _fp_numpy.array(fp, np.asarray(arr.codes))
        return
    if isinstance(arr, np.ndarray | pd.arrays.NumpyExtensionArray) or isinstance(dtype, np.dtype):
        plain = np.asarray(arr)  # no copy: pandas 3 wraps numpy columns in NumpyExtensionArray
        if not plain.dtype.hasobject:
            _fp_numpy.array(fp, plain)
            return
    # pyarrow-backed columns by their Arrow buffers; but strings (pandas' "str" is pyarrow-
    # backed only when pyarrow is installed) take the path below, so that the same strings
    # have the same fingerprint with or without pyarrow.
    arrow = getattr(arr, "_pa_array", None)
    if arrow is not None and "pyarrow" in sys.modules and not isinstance(dtype, pd.StringDtype):
        from . import _fp_arrow

        _fp_arrow.chunked(fp, arrow)
        return
    asi8 = getattr(arr, "asi8", None)
    if isinstance(asi8, np.ndarray):  # tz-aware datetimes, periods: int64 ticks + the dtype
        _fp_numpy.array(fp, asi8)
        return
    if isinstance(dtype, pd.IntervalDtype):
        fp._str(b"c", str(arr.closed))
        values(fp, arr.left)
        values(fp, arr.right)
        return
    data, mask = getattr(arr, "_data", None), getattr(arr, "_mask", None)
    if isinstance(data, np.ndarray) and isinstance(mask, np.ndarray):  # Int64, Float64, boolean
        _fp_numpy.array(fp, mask)
        _fp_numpy.array(fp, np.where(mask, np.zeros((), data.dtype), data))
        return
    objects = np.asarray(arr, dtype=object)
    if len(objects) and pd.api.types.infer_dtype(objects, skipna=False) == "string":
        # Only str, nothing missing (the common case): one NUL-joined buffer. It is
        # unambiguous when no string holds a NUL itself, which one count() checks.
        joined = "\x00".join(objects)
        if joined.count("\x00") == len(objects) - 1:
            fp._raw(b"Z", struct.pack("<Q", len(objects)))
            fp._str(b"s", joined)
            return
    mask = np.asarray(pd.isna(objects), dtype=bool).reshape(-1) if len(objects) else np.zeros(0, bool)
    missing_kinds = sorted({type(m).__name__ for m in objects[mask]})
    strings = objects[~mask]
    all_str = len(strings) and pd.api.types.infer_dtype(strings, skipna=False) == "string"
    if len(missing_kinds) <= 1 and all_str:
        # Which kind of missing value (None, nan, NA) is part of the content too.
        fp._str(b"n", "".join(missing_kinds))
        _fp_numpy.array(fp, mask)
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
        _fp_numpy.array(fp, lengths)
        fp._str(b"s", "".join(strings))
        return
    fp._begin(b"o", len(objects))
    for item in objects:
        fp._feed(item)
