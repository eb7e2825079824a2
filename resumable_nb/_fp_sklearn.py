"""scikit-learn fingerprints: a ``Bunch`` (what ``load_iris()`` returns) by its items.

A Bunch is a dict with attribute access. Its instance ``__dict__`` holds
``_deprecated_key_to_warnings`` (which keys warn when read), and its ``__setstate__`` is a
no-op: pickling drops that dict, so the generic ``__reduce_ex__`` path hashed a restored
Bunch differently from the original and every step reading one missed. The items are the
content, and all that a restore reproduces; a subclass that overrides ``__setstate__`` keeps
the generic path (it may restore more).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sklearn.utils import Bunch

from . import _tags as tags

if TYPE_CHECKING:
    from .fingerprint import Handler, Writer


def handler_for(t: type) -> Handler | None:
    if issubclass(t, Bunch) and getattr(t, "__setstate__") is Bunch.__setstate__:  # noqa: B009
        return bunch
    return None


def bunch(w: Writer, b: dict[Any, Any]) -> None:
    w.begin(tags.SK_BUNCH, 2)
    w.value(type(b))
    w.value(dict(b))  # insertion order, as for any dict
