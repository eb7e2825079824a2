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
    # ``df.iloc[:, i]`` builds a Series per column: 0.6 ms of a 1.6 ms fingerprint of a
    # 1,000-row, two-column frame (profiled: a hit reading 50 such frames cost 15 ms, nearly
    # all here). The column arrays are the same objects (pandas' own iterator; public fallback).
    iter_arrays = getattr(df, "_iter_column_arrays", None)
    columns = iter_arrays() if iter_arrays is not None else (
        df.iloc[:, i].array for i in range(df.shape[1]))
    for arr in columns:
        values(w, arr)


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


_ARROW_JOIN_MAX = 1 << 20  # bytes of text joined from Arrow buffers (temporaries: 17x that)
_ARROW_FEW = 64  # up to this many strings, Python's join beats building index arrays


def _arrow_strings(w: Writer, chunked: Any) -> bool:
    """The bytes the joined-strings path below writes, made from the Arrow buffers without
    building a Python str per element (``to_numpy`` was 0.25 ms of a 1,000-row column's
    0.7 ms). Only for columns without missing values, without a NUL in any string and up to
    1 MiB of text; False means "not handled": the general path then writes the same bytes.
    A few strings (column labels) are joined in Python: the index arrays cost 6 us, the
    join 0.6 (a 1,000-row frame's fingerprint fingerprints its two labels too)."""
    n = len(chunked)
    if n == 0 or chunked.null_count:
        return False
    if n <= _ARROW_FEW:
        strings = chunked.to_pylist()
        if not all(type(s) is str for s in strings):
            return False
        text = "\x00".join(strings)
        if text.count("\x00") != n - 1:  # a NUL inside a string (the general path adds lengths)
            return False
        data = text.encode("utf-8", "surrogatepass")  # as Writer.text does
        if len(data) - (n - 1) > _ARROW_JOIN_MAX:
            return False
        w.raw(tags.PD_STRINGS, struct.pack("<Q", n))
        w.raw(tags.STR, data)
        return True
    import pyarrow as pa

    a = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    if pa.types.is_string(a.type):
        offset_type: Any = np.int32
    elif pa.types.is_large_string(a.type):
        offset_type = np.int64
    else:
        return False
    _, offsets_buf, data_buf = a.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[a.offset:a.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    if end - start > _ARROW_JOIN_MAX:
        return False
    body = np.frombuffer(data_buf, dtype=np.uint8)[start:end] if data_buf is not None \
        else np.zeros(0, np.uint8)
    if np.count_nonzero(body) != len(body):  # a NUL inside a string (the general path adds lengths)
        return False
    # NUL between consecutive strings: separator k sits after string k, at its end + k.
    joined = np.zeros(len(body) + n - 1, dtype=np.uint8)
    keep = np.ones(len(joined), dtype=bool)
    keep[offsets[1:-1] + np.arange(-start, n - 1 - start, dtype=offsets.dtype)] = False
    joined[keep] = body
    w.raw(tags.PD_STRINGS, struct.pack("<Q", n))
    w.raw(tags.STR, joined.data)
    return True


_BUILTIN_NAMES: dict[np.dtype[Any], str] = {}


def _dtype_name(dtype: Any) -> str:
    """``str(dtype)``. numpy's is Python code (3.6 us, a tenth of a 1,000-row frame's
    fingerprint), so the names of its builtin dtypes (``isbuiltin == 1``: the canonical int,
    float, bool... singletons, where equal means same name) are remembered."""
    if isinstance(dtype, np.dtype) and dtype.isbuiltin == 1:
        name = _BUILTIN_NAMES.get(dtype)
        if name is None:
            name = _BUILTIN_NAMES[dtype] = str(dtype)
        return name
    return str(dtype)


def values(w: Writer, arr: Any) -> None:
    """One column's values: numpy-backed, categorical, strings, or element by element."""
    dtype = arr.dtype
    w.text(tags.PD_VALUES, _dtype_name(dtype))
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
    if arrow is not None and isinstance(dtype, pd.StringDtype) and _arrow_strings(w, arrow):
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
