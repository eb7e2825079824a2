"""pyarrow and polars fingerprints: the type, then every buffer of every chunk, as is.

An Arrow array is its type, length, offset, null count and buffers (validity bitmap, offsets,
data), so hashing exactly those determines the content. Two equal arrays laid out differently
(another chunking, a slice with an offset) hash differently: a needless miss, never a stale
hit. Polars frames and series go through their (zero-copy) Arrow form.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from . import _tags as tags

if TYPE_CHECKING:
    from .fingerprint import Handler, Writer


def handler_for(t: type) -> Handler | None:
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
            return data_type
        return None
    if module == "polars":
        import polars as pl

        if issubclass(t, pl.DataFrame | pl.Series):
            return polars
    return None


def data_type(w: Writer, t: Any) -> None:
    w.text(tags.ARROW_TYPE, str(t))


def table(w: Writer, t: Any) -> None:
    w.begin(tags.ARROW_TABLE, t.num_columns)
    w.text(tags.ARROW_TYPE, str(t.schema))
    w.value(t.schema.metadata)
    for column in t.columns:
        (chunked if hasattr(column, "chunks") else array)(w, column)


def chunked(w: Writer, c: Any) -> None:
    w.begin(tags.ARROW_CHUNKED, c.num_chunks)
    w.text(tags.ARROW_TYPE, str(c.type))
    for chunk in c.chunks:
        array(w, chunk)


def array(w: Writer, a: Any) -> None:
    w.text(tags.ARROW_ARRAY, str(a.type))
    w.raw(tags.SHAPE, struct.pack("<3q", len(a), a.offset, a.null_count))
    buffers = a.buffers()
    w.begin(tags.ARROW_BUFFERS, len(buffers))
    for buf in buffers:
        if buf is None:
            w.raw(tags.NONE)
        else:
            w.raw(tags.BUFFER, memoryview(buf))
    dictionary = getattr(a, "dictionary", None)
    if dictionary is not None:
        array(w, dictionary)


def polars(w: Writer, value: Any) -> None:
    w.text(tags.POLARS, type(value).__qualname__)
    if hasattr(value, "name") and not hasattr(value, "columns"):
        w.value(value.name)
    arrow = value.to_arrow()
    (table if hasattr(arrow, "schema") and hasattr(arrow, "num_columns") else
     chunked if hasattr(arrow, "chunks") else array)(w, arrow)
