"""pandas fingerprints: per column (name, dtype, values) plus the index.

String columns (object or the string dtypes) are hashed as one length table plus one joined
UTF-8 buffer, not element by element.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import _fp_numpy
from . import _tags as tags

if TYPE_CHECKING:
    from .fingerprint import Handler, Writer


def handler_for(t: type) -> Handler | None:
    if issubclass(t, pd.DataFrame):
        return frame
    if issubclass(t, pd.Series):
        return series
    if issubclass(t, pd.MultiIndex):
        return multiindex
    if issubclass(t, pd.Index):
        return index
    return None


def frame(w: Writer, df: pd.DataFrame) -> None:
    w.begin(tags.PD_FRAME, df.shape[1])
    w.value(type(df).__qualname__)
    w.value(df.attrs)
    w.value(df.flags.allows_duplicate_labels)
    index(w, df.columns)
    index(w, df.index)
    for i in range(df.shape[1]):
        values(w, df.iloc[:, i].array)


def series(w: Writer, s: pd.Series) -> None:
    w.begin(tags.PD_SERIES, 3)
    w.value(s.name)
    w.value(s.attrs)
    index(w, s.index)
    values(w, s.array)


def index(w: Writer, idx: pd.Index) -> None:
    if isinstance(idx, pd.MultiIndex):
        multiindex(w, idx)
        return
    w.begin(tags.PD_INDEX, 3)
    w.text(tags.TYPE_NAME, type(idx).__qualname__)
    w.value(idx.name)
    w.value(getattr(idx, "freqstr", None))
    if isinstance(idx, pd.RangeIndex):
        w.value(range(idx.start, idx.stop, idx.step))
    else:
        values(w, idx.array)


def multiindex(w: Writer, idx: pd.MultiIndex) -> None:
    w.begin(tags.PD_MULTIINDEX, len(idx.levels))
    w.value(list(idx.names))
    for level, codes in zip(idx.levels, idx.codes, strict=True):
        index(w, level)
        _fp_numpy.array(w, np.asarray(codes))


def values(w: Writer, arr: Any) -> None:
    """One column's values: numpy-backed, categorical, strings, or element by element."""
    dtype = arr.dtype
    w.text(tags.PD_VALUES, str(dtype))
    if isinstance(dtype, pd.CategoricalDtype):
        w.value(dtype.ordered)
        index(w, dtype.categories)
        _fp_numpy.array(w, np.asarray(arr.codes))
        return
    if isinstance(arr, np.ndarray | pd.arrays.NumpyExtensionArray) or isinstance(dtype, np.dtype):
        plain = np.asarray(arr)  # no copy: pandas 3 wraps numpy columns in NumpyExtensionArray
        if not plain.dtype.hasobject:
            _fp_numpy.array(w, plain)
            return
    # pyarrow-backed columns by their Arrow buffers; but strings (pandas' "str" is pyarrow-
    # backed only when pyarrow is installed) take the path below, so that the same strings
    # have the same fingerprint with or without pyarrow.
    arrow = getattr(arr, "_pa_array", None)
    if arrow is not None and "pyarrow" in sys.modules and not isinstance(dtype, pd.StringDtype):
        from . import _fp_arrow

        _fp_arrow.chunked(w, arrow)
        return
    asi8 = getattr(arr, "asi8", None)
    if isinstance(asi8, np.ndarray):  # tz-aware datetimes, periods: int64 ticks + the dtype
        _fp_numpy.array(w, asi8)
        return
    if isinstance(dtype, pd.IntervalDtype):
        w.text(tags.PD_INTERVAL, str(arr.closed))
        values(w, arr.left)
        values(w, arr.right)
        return
    data, mask = getattr(arr, "_data", None), getattr(arr, "_mask", None)
    if isinstance(data, np.ndarray) and isinstance(mask, np.ndarray):  # Int64, Float64, boolean
        _fp_numpy.array(w, mask)
        _fp_numpy.array(w, np.where(mask, np.zeros((), data.dtype), data))
        return
    objects = np.asarray(arr, dtype=object)
    if len(objects) and pd.api.types.infer_dtype(objects, skipna=False) == "string":
        # Only str, nothing missing (the common case): one NUL-joined buffer. It is
        # unambiguous when no string holds a NUL itself, which one count() checks.
        joined = "\x00".join(objects)
        if joined.count("\x00") == len(objects) - 1:
            w.raw(tags.PD_STRINGS, struct.pack("<Q", len(objects)))
            w.text(tags.STR, joined)
            return
    mask = np.asarray(pd.isna(objects), dtype=bool).reshape(-1) if len(objects) else np.zeros(0, bool)
    missing_kinds = sorted({type(m).__name__ for m in objects[mask]})
    strings = objects[~mask]
    all_str = len(strings) and pd.api.types.infer_dtype(strings, skipna=False) == "string"
    if len(missing_kinds) <= 1 and all_str:
        # Which kind of missing value (None, nan, NA) is part of the content too.
        w.text(tags.PD_MISSING, "".join(missing_kinds))
        _fp_numpy.array(w, mask)
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
        _fp_numpy.array(w, lengths)
        w.text(tags.STR, "".join(strings))
        return
    w.begin(tags.ELEMENTS, len(objects))
    for item in objects:
        w.value(item)
