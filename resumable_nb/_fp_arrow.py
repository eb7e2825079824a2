"""pyarrow and polars fingerprints: the type, then every buffer of every chunk, as is.

An Arrow array is its type, length, offset, null count and buffers (validity bitmap, offsets,
data), so hashing exactly those determines the content. Two equal arrays laid out differently
(another chunking, a slice with an offset) hash differently: a needless miss, never a stale
hit. Polars frames and series go through their (zero-copy) Arrow form.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fingerprint import Fingerprinter


def handler_for(t: type) -> Callable[[Fingerprinter, Any], None] | None:
    module = t.__module__.split(".")[0]
    if module == "pyarrow":
        import pyarrow as pa

        if issubclass(t, pa.Table | pa.RecordBatch):
            return table
        if issubclass(t, pa.ChunkedArray):
            return chunked
        if issubclass(t, pa.Array):
            return array
        if issubclass(t, pa.Schema | pa.DataType):
            return lambda fp, v: fp._str(b"W", str(v))
        return None
    if module == "polars":
        import polars as pl

        if issubclass(t, pl.DataFrame | pl.Series):
            return polars
    return None


def table(fp: Fingerprinter, t: Any) -> None:
    fp._begin(b"X", t.num_columns)
    fp._str(b"W", str(t.schema))
    fp._feed(t.schema.metadata)
    for column in t.columns:
        (chunked if hasattr(column, "chunks") else array)(fp, column)


def chunked(fp: Fingerprinter, c: Any) -> None:
    fp._begin(b"H", c.num_chunks)
    fp._str(b"W", str(c.type))
    for chunk in c.chunks:
        array(fp, chunk)


def array(fp: Fingerprinter, a: Any) -> None:
    fp._str(b"W", str(a.type))
    fp._raw(b"n", struct.pack("<3q", len(a), a.offset, a.null_count))
    buffers = a.buffers()
    fp._begin(b"Y", len(buffers))
    for buf in buffers:
        if buf is None:
            fp._raw(b"0")
        else:
            fp._raw(b"b", memoryview(buf))
    dictionary = getattr(a, "dictionary", None)
    if dictionary is not None:
        array(fp, dictionary)


def polars(fp: Fingerprinter, value: Any) -> None:
    fp._str(b"p", type(value).__qualname__)
    if hasattr(value, "name") and not hasattr(value, "columns"):
        fp._feed(value.name)
    arrow = value.to_arrow()
    (table if hasattr(arrow, "schema") and hasattr(arrow, "num_columns") else
     chunked if hasattr(arrow, "chunks") else array)(fp, arrow)
