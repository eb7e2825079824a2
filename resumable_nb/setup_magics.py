"""Line magics that set up the session, not the namespace: replayed when a step hits.

``%matplotlib nbagg`` in a step selects a backend and IPython's hooks for it. A hit restores
the step's variables and output but runs none of its code, so after a hit the kernel stayed on
its default backend: figures made by later steps were drawn, shown and closed at the end of
each cell as the plain run's never were (the corpus's extra_gradient_descent: the restored
axes then differed from a plain run's, and every step reading them missed). The magics below
change only the session (backend, configuration, display precision, environment variables,
extensions, working directory); each is idempotent from the state the step started in, so
running it again is exactly what a plain run does. Only top-level lines are replayed (one
inside an ``if`` may not have run); their output is dropped (the step's recorded output is
replayed as it was).
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["REPLAYED", "replay", "setup_magics"]

REPLAYED = frozenset({"matplotlib", "config", "precision", "env", "set_env", "load_ext", "cd"})


def setup_magics(transformed: str) -> list[tuple[str, str]]:
    """The ``(magic, line)`` pairs of the REPLAYED line magics at the top level of a cell,
    given as IPython transforms it (``get_ipython().run_line_magic('matplotlib', 'nbagg')``)."""
    if "run_line_magic" not in transformed:
        return []
    try:
        tree = ast.parse(transformed)
    except SyntaxError:
        return []
    found = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "run_line_magic" and len(call.args) >= 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args[:2])):
            magic, line = call.args[0].value, call.args[1].value  # type: ignore[attr-defined]
            if magic in REPLAYED:
                found.append((magic, line))
    return found


def replay(shell: Any, magics: list[tuple[str, str]]) -> None:
    """Run ``magics`` in order, their output dropped.

    :raises Exception: whatever a magic raises (the step then runs instead).
    """
    from IPython.utils.capture import capture_output

    with capture_output(display=True):
        for magic, line in magics:
            shell.run_line_magic(magic, line)
