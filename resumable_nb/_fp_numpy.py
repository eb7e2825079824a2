"""numpy fingerprints: dtype, shape and the raw C-order bytes, read without copying."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from . import _tags as tags

if TYPE_CHECKING:
    from .fingerprint import Handler, Writer


def handler_for(t: type) -> Handler | None:
    if issubclass(t, np.ndarray) and t is np.ndarray:
        return array
    if issubclass(t, np.generic):
        return scalar
    if t is np.dtype or issubclass(t, np.dtype):
        return dtype
    return None


def array(w: Writer, a: np.ndarray) -> None:
    w.text(tags.NP_ARRAY, a.dtype.str if a.dtype.names is None else repr(a.dtype.descr))
    w.raw(tags.SHAPE, struct.pack(f"<{a.ndim}q", *a.shape))
    if a.dtype.hasobject:
        w.begin(tags.ELEMENTS, a.size)
        for item in a.ravel(order="C"):
            w.value(item)
        return
    contiguous = np.ascontiguousarray(a)
    w.raw(tags.BUFFER, memoryview(contiguous.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]


def scalar(w: Writer, v: np.generic) -> None:
    if v.dtype.hasobject:
        w.value(v.item())
        return
    w.text(tags.NP_SCALAR, v.dtype.str)
    w.raw(tags.BUFFER, np.asarray(v).tobytes())


def dtype(w: Writer, d: np.dtype) -> None:
    w.text(tags.NP_DTYPE, d.str if d.names is None else repr(d.descr))
