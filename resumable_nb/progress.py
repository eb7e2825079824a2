"""The CLI's progress lines for a headless run: one line per step, rewritten live while the
step runs when the stream is a terminal, plain lines otherwise (a log, a CI job)."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from ._text import printable
from .states import LABELS

__all__ = ["Progress"]

_STATE_WIDTH = max(map(len, LABELS.values()))  # progress lines keep their columns


class Progress:
    """One line per step: live (rewritten while the step runs) on a terminal, plain otherwise."""

    def __init__(self, stream: TextIO, width: int = 12, live: bool | None = None) -> None:
        self.stream = stream
        self.width = max(width, 4)
        self.live = _isatty(stream) if live is None else live
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._shown = True  # the current line has been drawn (a delayed one may not be yet)

    def say(self, text: str) -> None:
        """Print a line; control characters in it (a step's error, a notebook's name: text
        someone else may have written) are escaped, never sent to the terminal raw."""
        with self._lock:
            self.stream.write(printable(text, keep_newlines=True) + "\n")
            self.stream.flush()

    def write(self, text: str) -> None:
        """Text as it is (a cell's output, with --log-output)."""
        with self._lock:
            self.stream.write(("\r\x1b[2K" if self.live and self._thread is not None else "") + text)
            self.stream.flush()

    def line(self, name: str, state: str, seconds: float | None = None, detail: str = "") -> str:
        secs = "" if seconds is None else f"{seconds:.2f} s"
        line = f"  {name:<{self.width}}  {state:<{_STATE_WIDTH}} {secs:>9}  {detail}".rstrip()
        return printable(line)

    def start(self, name: str, after: float = 0.0) -> None:
        """A step begins: a live line on a terminal, a plain 'running' line elsewhere. With
        ``after`` (a plain cell), nothing shows unless it is still running ``after`` seconds
        later: a slow cell gets a line like a step, the quick ones none."""
        self._halt()
        self._shown = after <= 0
        if not self.live and after <= 0:
            self.say(self.line(name, "running"))
            return
        began = time.monotonic()
        stop = threading.Event()

        def tick() -> None:
            if after > 0:
                if stop.wait(after):
                    return
                self._shown = True
                if not self.live:
                    self.say(self.line(name, "running"))
                    return
            while True:
                with self._lock:
                    self.stream.write("\r\x1b[2K" + self.line(name, "running", time.monotonic() - began))
                    self.stream.flush()
                if stop.wait(0.2):
                    return

        self._stop = stop
        self._thread = threading.Thread(target=tick, name="resumable-nb-progress", daemon=True)
        self._thread.start()

    def done(self, name: str, state: str, seconds: float | None = None, detail: str = "") -> None:
        """A step ended (or was restored without running): its final line."""
        self._halt()
        prefix = "\r\x1b[2K" if self.live else ""
        with self._lock:
            self.stream.write(prefix + self.line(name, state, seconds, detail) + "\n")
            self.stream.flush()

    def done_if_shown(self, name: str, state: str, seconds: float | None = None) -> None:
        """The end of a delayed line: its final line if it was drawn, else nothing."""
        self._halt()
        if self._shown:
            self.done(name, state, seconds)

    def stop(self) -> None:
        """Stop a live line without a final line (one is said another way)."""
        self._halt()
        if self.live and self._shown:
            with self._lock:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()

    def _halt(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join()
        self._stop = self._thread = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
