"""What runs inside the kernel of a headless run, and the protocol the CLI reaches it by.

The CLI (:mod:`resumable_nb.headless`) runs hidden cells in the kernel built by
:func:`kernel_code`: each imports this module and calls one of the ``kernel_*`` functions on
the shell. :func:`kernel_setup` answers with one line on stdout, which :func:`read_report`
parses. This module is imported on both sides: keep its imports cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from . import load_ipython_extension, magics_of
from .errors import StepUsageError

__all__ = ["kernel_code", "kernel_finish", "kernel_gate", "kernel_rebind", "kernel_restored",
           "kernel_setup", "read_report"]

_REPORT = "@@resumable-nb-report@@ "  # prefix of the line kernel_setup prints for the CLI
_RESTORED_ATTR = "_resumable_nb_headless_restored"


def kernel_code(function: str, *args: str | None) -> str:
    """The code of a hidden cell that calls ``function(get_ipython(), *args)`` in the kernel
    (``args`` are written as literals)."""
    if function not in ("kernel_setup", "kernel_rebind", "kernel_restored", "kernel_finish", "kernel_gate"):
        raise ValueError(f"not a kernel-side function: {function!r}")
    call = ", ".join(["get_ipython()", *(repr(a) for a in args)])
    return f"__import__({__name__!r}, fromlist=[{function!r}]).{function}({call})"


def read_report(stdout: str) -> dict[str, Any]:
    """What :func:`kernel_setup` reported, from the hidden cell's stdout (empty if nothing)."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(_REPORT)), None)
    report = json.loads(line[len(_REPORT):]) if line else {}
    return report if isinstance(report, dict) else {}


def kernel_setup(ip: Any, resume: str | None) -> None:
    """(Runs in the kernel.) Load resumable_nb, take the notebook's hold and, given a run id,
    resume it without running anything. Prints one report line for the CLI."""
    load_ipython_extension(ip)  # not %load_ext: the notebook's own stays silent
    magics = magics_of(ip)
    assert magics is not None
    session = magics.session
    report: dict[str, Any] = {"pid": os.getpid(), "restored": [], "run": None, "error": "",
                              "held": False, "stopped": ""}
    if session.store() is not None and session.journal() is None:
        report["held"] = True
    elif resume and session.journal() is not None:
        try:
            with contextlib.redirect_stdout(_Discard()):  # the CLI says it its own way
                plan = session.resume(resume, False, steps_only=True)  # the CLI runs the plain cells
        except StepUsageError as exc:
            report["error"] = str(exc)
        else:
            setattr(ip, _RESTORED_ATTR, plan.restored)
            report["restored"] = list(dict.fromkeys(s.name for s in plan.restored.steps
                                                    if s.name not in plan.left))
            journal = session.journal()
            report["run"] = journal.run_id if journal is not None else None
            if plan.restored.stopped_at is not None:
                report["stopped"] = (f"step '{plan.restored.stopped_at.name}' could not be restored "
                                     f"({plan.restored.why}): it and the steps after it run again")
    print(_REPORT + json.dumps(report), flush=True)


def kernel_rebind(ip: Any) -> None:
    """(Runs in the kernel.) Bind the restored values again, after a plain cell above the
    resume point (``results = []``) may have replaced one."""
    restored = getattr(ip, _RESTORED_ATTR, None)
    if restored is None:
        return
    ns = ip.user_ns
    ns.update({k: v for k, v in restored.values.items() if ns.get(k) is not v})


def kernel_restored(ip: Any, name: str, check: str | None) -> None:
    """(Runs in the kernel.) The CLI skips restored step ``name``'s cell: leave the generators
    where it left them; ``check`` (a plain cell re-ran since the resume): first see that its
    inputs are what it ran with. Reports ``{"stale": why}`` ("" when it stays restored)."""
    restored = getattr(ip, _RESTORED_ATTR, None)
    magics = magics_of(ip)
    why = ""
    if restored is not None and magics is not None:
        why = magics.session.restored_step(restored, name, bool(check))
    print(_REPORT + json.dumps({"stale": why}), flush=True)


def kernel_gate(ip: Any, event: str) -> None:
    """(Runs in the kernel.) Journal a gate event of this run: ``event`` is JSON, either
    ``{"event": "waiting", gate, question, position}`` or ``{"event": "decided", ..., decision,
    user, host, note}`` (a decision found in an earlier run, carried into this one so that the
    runs resuming this one see it)."""
    data = json.loads(event)
    magics = magics_of(ip)
    journal = magics.session.journal() if magics is not None else None
    if journal is None:
        print("[resumable_nb] no run journal in the kernel: the gate is not recorded", file=sys.stderr)
        return
    where = {k: str(data.get(k, "")) for k in ("question", "position")}
    if data.get("event") == "waiting":
        journal.gate_waiting(str(data["gate"]), **where)
    else:
        journal.gate_decided(None, str(data["gate"]), str(data["decision"]), **where,
                             user=str(data["user"]), host=str(data["host"]), note=str(data["note"]))


def kernel_finish(ip: Any, status: str) -> None:
    """(Runs in the kernel.) End the run in the journal as ``status`` and release the notebook."""
    with contextlib.suppress(AttributeError):
        delattr(ip, _RESTORED_ATTR)
    magics = magics_of(ip)
    if magics is not None:
        magics.session.close(status)


class _Discard:
    """A stdout that drops everything."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
