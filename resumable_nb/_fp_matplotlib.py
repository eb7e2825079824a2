"""matplotlib fingerprints: what a figure draws, the same in every process and after a restore.

Through the generic ``__reduce_ex__`` path a figure hashes differently every time:

- every transform and box keeps ``_parents``, a dict from ``id()`` of the transforms that
  depend on it to weak references to them. The ids differ in every process, and a restore
  re-keys the dict with new ones. It is a back-reference (parents are told when a child
  changes, so that they recompute): what a transform computes is determined by its own
  attributes and its children, which are hashed. The parents themselves are still reached
  from the artists that use them;
- transforms cache what they compute (``_mtx``, ``_inverted``, a transformed box's
  ``_points``, a transformed path) behind an ``_invalid`` flag: drawing fills the caches and
  a restore resets the flags;
- ``CallbackRegistry.__getstate__`` advances the registry's id counter (``next(_cid_gen)``),
  so hashing a figure changed the next hash of it; and the registry holds weak-method
  proxies of callbacks that pickling drops unless they were connected as picklable;
- an artist's ``_stale`` flag says it needs a redraw (drawing clears it, a restore sets it);
  a figure's ``_number`` is pyplot's handle for it (``plt.figure(1)``): a restore registers
  the figure under the next free number in its kernel.

So a transform is hashed as its type + its attributes but ``_parents`` and those caches (their
content is hashed through the children they are computed from); a callback registry as its
signals + the callbacks pickling keeps, in connection order, without their ids; an artist
(figure, axes, line, text...) as what pickle stores but ``_stale`` and a figure's ``_number``.
Attributes go by name in sorted order (their order is not content, and a restore rebuilds
them in its own). Everything that is drawn (data, colours, labels, limits, sizes...) is still
hashed, and hashes the same in every process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matplotlib.artist import Artist
from matplotlib.cbook import CallbackRegistry
from matplotlib.figure import Figure
from matplotlib.transforms import Affine2D, LockableBbox, TransformedBbox, TransformNode

from . import _tags as tags

if TYPE_CHECKING:
    from .fingerprint import Handler, Writer


def handler_for(t: type) -> Handler | None:
    if issubclass(t, TransformNode):
        return transform
    if issubclass(t, Artist):
        return artist
    if issubclass(t, CallbackRegistry):
        return callbacks
    return None


# What every transform computes lazily and throws away when a child changes (``_invalid`` set):
# a cache of the content hashed through the children, filled by drawing, so a drawn figure and
# its restored copy (whose flags a restore resets) would differ by when it was last drawn.
_CACHES = frozenset({"_parents", "_invalid", "_inverted", "_transformed_path", "_transformed_points"})


def _caches(node: TransformNode) -> frozenset[str]:
    drop = _CACHES
    if not isinstance(node, Affine2D):
        # An Affine2D's matrix is what it is (set, rotated, translated); every other
        # transform computes _mtx from its children on demand (BboxTransformTo, Blended...).
        drop |= {"_mtx"}
    if isinstance(node, (TransformedBbox, LockableBbox)):
        # Their points are computed from the box and transform they wrap; a plain Bbox's
        # points are its content.
        drop |= {"_points"}
    return drop


def transform(w: Writer, node: TransformNode) -> None:
    state: dict[str, Any] = getattr(node, "__getstate__")()  # noqa: B009 - not in the stubs
    drop = _caches(node)
    attrs = {k: state[k] for k in sorted(state) if k not in drop}
    w.begin(tags.MPL_TRANSFORM, 2)
    w.value(type(node))
    w.value(attrs)


def artist(w: Writer, obj: Artist) -> None:
    # What pickle stores (Artist.__getstate__ already leaves out the stale callback, a
    # Figure its canvas), by attribute name, but:
    # - _stale: "needs a redraw", cleared by drawing and set again by a restore;
    # - a Figure's _number: pyplot's handle for it (plt.figure(1)); a restore registers the
    #   figure under the next free number of its kernel. Neither is drawn.
    reduced: Any = obj.__reduce_ex__(4)
    func, args, state, *rest = reduced
    if isinstance(state, dict):
        drop = {"_stale", "_number"} if isinstance(obj, Figure) else {"_stale"}
        state = {k: state[k] for k in sorted(state) if k not in drop}
    w.begin(tags.MPL_ARTIST, 5)
    w.value(type(obj))
    w.value(func)
    w.value(args)
    w.value(state)
    w.value([None if part is None else list(part) for part in rest])


def callbacks(w: Writer, registry: CallbackRegistry) -> None:
    # Not __getstate__: it advances the registry's id counter, a mutation.
    kept: set[int] = getattr(registry, "_pickled_cids")  # noqa: B009 - private, not in the stubs
    signals = {signal: [proxy() for cid, proxy in sorted(by_cid.items()) if cid in kept]
               for signal, by_cid in sorted(registry.callbacks.items())}
    w.begin(tags.MPL_CALLBACKS, 4)
    w.value(type(registry))
    w.value(getattr(registry, "_signals"))  # noqa: B009
    w.value(registry.exception_handler)
    w.value({s: fns for s, fns in signals.items() if fns})
