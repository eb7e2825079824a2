"""numpy fingerprints: dtype, shape and the raw C-order bytes, read without copying."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .fingerprint import Fingerprinter


def handler_for(t: type) -> Callable[[Fingerprinter, Any], None] | None:
    if issubclass(t, np.ndarray) and t is np.ndarray:
        return array
    if issubclass(t, np.generic):
        return scalar
    if t is np.dtype or issubclass(t, np.dtype):
        return dtype
    return None


def array(fp: Fingerprinter, a: np.ndarray) -> None:
    fp._str(b"A", a.dtype.str if a.dtype.names is None else repr(a.dtype.descr))
    fp._raw(b"s", struct.pack(f"<{a.ndim}q", *a.shape))
    if a.dtype.hasobject:
        fp._begin(b"o", a.size)
        for item in a.ravel(order="C"):
            fp._feed(item)
        return
    contiguous = np.ascontiguousarray(a)
    fp._raw(b"b", memoryview(contiguous.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]


def scalar(fp: Fingerprinter, v: np.generic) -> None:
    if v.dtype.hasobject:
        fp._feed(v.item())
        return
    fp._str(b"a", v.dtype.str)
    fp._raw(b"b", np.asarray(v).tobytes())


def dtype(fp: Fingerprinter, d: np.dtype) -> None:
    fp._str(b"E", d.str if d.names is None else repr(d.descr))
