"""pandas fingerprints: per column (name, dtype, values) plus the index.

String columns (object or the string dtypes) are hashed as one table of UTF-8 byte lengths plus
the bytes end to end, not element by element; from Arrow's own buffers when Arrow holds them.
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
    if isinstance(idx, pd.RangeIndex):  # as a range is written, without the memo's lookups
        w.begin(tags.RANGE, 3)
        for part in (idx.start, idx.stop, idx.step):
            w.value(part)
    else:
        values(w, idx.array)


def multiindex(w: Writer, idx: pd.MultiIndex) -> None:
    w.begin(tags.PD_MULTIINDEX, len(idx.levels))
    w.value(list(idx.names))
    for level, codes in zip(idx.levels, idx.codes, strict=True):
        index(w, level)
        _fp_numpy.array(w, np.asarray(codes))


_FEW = 64  # up to this many strings, encoding each in Python beats numpy's fixed costs


def _strings(w: Writer, strings: Any) -> None:
    """Strings without missing values, as one table of UTF-8 byte lengths (int64) and their
    bytes end to end: what the Arrow path below hashes straight from a column's buffers, so
    the same strings fingerprint alike whatever holds them (Arrow, Python, object arrays)."""
    n = len(strings)
    if n <= _FEW:
        encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
        w.raw(tags.PD_STRINGS, struct.pack(f"<{n}q", *map(len, encoded)))
        w.raw(tags.STR, b"".join(encoded))
        return
    data = "\x00".join(strings).encode("utf-8", "surrogatepass")
    buf = np.frombuffer(data, dtype=np.uint8)
    seps = np.flatnonzero(buf == 0)
    if len(seps) == n - 1:  # no string holds a NUL: the separators give the lengths
        bounds = np.empty(n + 1, dtype=np.int64)
        bounds[0], bounds[-1] = -1, len(buf)
        bounds[1:-1] = seps
        lengths = np.diff(bounds) - 1
        body = np.delete(buf, seps)
    else:
        encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
        body = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    _write_strings(w, lengths, body)


def _write_strings(w: Writer, lengths: np.ndarray, body: np.ndarray) -> None:
    # Bytes, not elements: Writer.raw writes len(payload) first.
    w.raw(tags.PD_STRINGS, np.ascontiguousarray(lengths, dtype="<i8").view(np.uint8).data)
    w.raw(tags.STR, body.data)


def _arrow_strings(w: Writer, chunked: Any) -> bool:
    """A column of Arrow strings written as :func:`_strings` writes it, from the Arrow
    offsets and data buffers (no Python str per element: ``to_numpy`` was 0.25 ms of a
    1,000-row column's 0.7 ms; the NUL-joined text this replaced, 13 us). False for a column
    with missing values (the general path handles them)."""
    n = len(chunked)
    if n == 0 or chunked.null_count:
        return False
    if n <= _FEW:  # column labels: a few strings
        strings = chunked.to_pylist()
        if not all(type(s) is str for s in strings):
            return False
        _strings(w, strings)
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
    lengths = np.diff(offsets)
    start, end = int(offsets[0]), int(offsets[-1])
    body = np.frombuffer(data_buf, dtype=np.uint8)[start:end] if data_buf is not None \
        else np.zeros(0, np.uint8)
    _write_strings(w, lengths, body)
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
        _strings(w, objects)  # only str, nothing missing: the common case
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
