"""Record a step's printed and displayed output while still showing it live, and replay it.

Events are kept in the order they happened: ``("stream", "stdout"|"stderr", text)``,
``("display", data, metadata, display_id)`` and ``("clear", wait)``. They are plain data (str/dict/bytes),
stored with the step's outputs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Event", "capture", "replay"]

Event = tuple[Any, ...]


class _Tee:
    """Stands in for sys.stdout/sys.stderr: passes writes through and records them."""

    def __init__(self, stream: Any, name: str, events: list[Event], busy: list[bool]) -> None:
        self._stream = stream
        self._name = name
        self._events = events
        self._busy = busy  # [True] while a display is being published: its text is not ours

    def write(self, text: str) -> int:
        if text and not self._busy[0]:
            last = self._events[-1] if self._events else None
            if last is not None and last[0] == "stream" and last[1] == self._name:
                self._events[-1] = ("stream", self._name, last[2] + text)
            else:
                self._events.append(("stream", self._name, text))
        return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def capture(shell: Any) -> Iterator[list[Event]]:
    """Record stdout, stderr, display and clear_output calls made inside the block."""
    events: list[Event] = []
    pub = shell.display_pub
    had_publish = "publish" in vars(pub)
    had_clear = "clear_output" in vars(pub)
    original_publish = pub.publish
    original_clear = pub.clear_output

    busy = [False]

    def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("update"):
            # display(..., display_id=...).update(): the replay shows the final state.
            for i in range(len(events) - 1, -1, -1):
                if events[i][0] == "display" and events[i][3] == _display_id(kwargs):
                    events[i] = ("display", _plain(data), _plain(metadata or {}), events[i][3])
                    break
        else:
            events.append(("display", _plain(data), _plain(metadata or {}), _display_id(kwargs)))
        # A terminal publisher prints text/plain to stdout: that is the display, not a print.
        busy[0] = True
        try:
            return original_publish(data, metadata, *args, **kwargs)
        finally:
            busy[0] = False

    def clear_output(wait: bool = False) -> Any:
        events.append(("clear", bool(wait)))
        return original_clear(wait)

    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = _Tee(old_out, "stdout", events, busy)
    sys.stderr = _Tee(old_err, "stderr", events, busy)
    # Logging handlers made before the step hold the old streams: point them at ours.
    handlers = [h for h in _stream_handlers() if h.stream in (old_out, old_err)]
    saved = [(h, h.stream) for h in handlers]
    for h in handlers:
        h.stream = sys.stdout if h.stream is old_out else sys.stderr
    pub.publish = publish
    pub.clear_output = clear_output
    try:
        yield events
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        for h, stream in saved:
            h.stream = stream
        _restore_attr(pub, "publish", original_publish, had_publish)
        _restore_attr(pub, "clear_output", original_clear, had_clear)


def _display_id(kwargs: dict[str, Any]) -> str | None:
    transient = kwargs.get("transient") or {}
    return transient.get("display_id") if isinstance(transient, dict) else None


def _stream_handlers() -> list[logging.StreamHandler]:  # type: ignore[type-arg]
    loggers = [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger)]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def _restore_attr(obj: Any, name: str, original: Any, had: bool) -> None:
    if had:
        setattr(obj, name, original)
    else:
        delattr(obj, name)


def flush_figures() -> None:
    """Show matplotlib figures now (the inline backend would at the end of the cell, after
    the step has finished capturing)."""
    inline = sys.modules.get("matplotlib_inline.backend_inline")
    mpl = sys.modules.get("matplotlib")
    if inline is None or mpl is None:
        return
    if "inline" in str(mpl.get_backend()).lower():
        inline.flush_figures()


def replay(shell: Any, events: list[Event]) -> None:
    """Show recorded events again, in their order."""
    for event in events:
        kind = event[0]
        if kind == "stream":
            stream = sys.stdout if event[1] == "stdout" else sys.stderr
            stream.write(event[2])
        elif kind == "display":
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            shell.display_pub.publish(data=event[1], metadata=event[2])
        elif kind == "clear":
            shell.display_pub.clear_output(event[1])
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


def _plain(value: Any) -> Any:
    """Display data as plain JSON-like data (bytes kept as bytes)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bytes, int, float, bool)):
        return value
    return str(value)
