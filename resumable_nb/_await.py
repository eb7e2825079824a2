"""Top-level ``await`` in a step: running a cell's coroutine from inside the ``%%step`` magic.

IPython compiles a cell with ``PyCF_ALLOW_TOP_LEVEL_AWAIT`` and, when its code is a coroutine,
hands it to ``shell.loop_runner`` (IPython's own asyncio loop). A step does the same. In a
Jupyter kernel the magic itself runs inside the kernel's event loop (a sync call from the
loop's callback), where asyncio refuses to start another loop in the same thread; so the
kernel's loop is set aside for the duration (the thread is blocked in this call anyway: the
kernel's loop cannot run until the step returns, exactly as during a synchronous cell).
"""

from __future__ import annotations

import asyncio
import inspect
from types import CodeType
from typing import Any

__all__ = ["run_code"]


def run_code(shell: Any, code: CodeType, globals_: dict[str, Any], locals_: Any) -> Any:
    """``eval`` ``code`` (exec or eval mode); a coroutine (top-level await) runs to its end."""
    __tracebackhide__ = True
    if not code.co_flags & inspect.CO_COROUTINE:
        return eval(code, globals_, locals_)
    return _run_coroutine(shell, eval(code, globals_, locals_))


def _run_coroutine(shell: Any, coroutine: Any) -> Any:
    __tracebackhide__ = True
    runner = getattr(shell, "loop_runner", None) or asyncio.run
    running = asyncio.events._get_running_loop()
    if running is None:
        return runner(coroutine)
    asyncio.events._set_running_loop(None)
    try:
        return runner(coroutine)
    finally:
        asyncio.events._set_running_loop(running)
