"""numpy fingerprints: dtype, shape and the raw C-order bytes, read without copying.

A ``MaskedArray`` by what it holds: its data, its mask, its fill value and whether its mask
is hard. Not by its ``__dict__`` (what the generic path would hash): a masked array's
``_fill_value`` is ``None`` until something asks for it, and a 0-d array after a pickle round
trip; its mask is ``nomask`` until set and an all-False array after a round trip. Both are the
same content, so they must give one fingerprint (a restored colorbar holding a pcolor's data
made every step reading its axes miss).

An ``NpzFile`` (``np.load("x.npz")``) by its members' names and arrays: it holds the archive
open, but what a step reads from it is the arrays.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _tags as tags

if TYPE_CHECKING:
    from .fingerprint import Handler, Writer


def handler_for(t: type) -> Handler | None:
    if t is np.ndarray:
        return array
    if t is np.ma.MaskedArray:
        return masked
    if t.__name__ == "NpzFile":
        return npz
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


def masked(w: Writer, a: np.ma.MaskedArray) -> None:
    w.begin(tags.NP_MASKED, 5)
    w.value(a.baseclass)  # np.matrix under the mask: its own type
    array(w, a.view(np.ndarray))
    array(w, np.ma.getmaskarray(a))
    array(w, _fill_value(a))
    w.value(bool(a.hardmask))


def npz(w: Writer, f: Any) -> None:
    """What ``np.load("x.npz")`` gives: its members, by name and content (read from the
    archive), not the file it reads them from."""
    w.begin(tags.NP_NPZ, 2 * len(f.files))
    for name in f.files:
        w.text(tags.NAME, name)
        w.value(f[name])


def _fill_value(a: np.ma.MaskedArray) -> np.ndarray:
    """The fill value ``a.fill_value`` would give, as a 0-d array of ``a``'s dtype, without
    setting it (reading the property stores the default in the array)."""
    stored = getattr(a, "_fill_value")  # noqa: B009 - private, not in the stubs
    value = np.ma.default_fill_value(a.dtype) if stored is None else stored
    return np.asarray(value, dtype=a.dtype).reshape(())
