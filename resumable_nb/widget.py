"""The run panel: an ipywidgets view of the run, live from journal events, with controls.

Every control has an accessible name (its description / tooltip) and a stable CSS class
(``rnb-...``) so that tests and users' own tooling can find it. Callbacks never raise into
the kernel: an error shows as one line in the panel's own output area.

The graph (:mod:`resumable_nb.graph`) is inline SVG in an HTML widget: no frontend extension.
A click on a node must reach the kernel, and SVG in an HTML widget has no comm of its own; the
widget sets the SVG with ``innerHTML``, so an ``onclick`` on a node can change the panel's own
step ``<select>`` (the Dropdown's view) as a user would, and the Dropdown syncs the choice to
Python like any other: the node is then the one Replay / Re-run act on.

Where no widget frontend is present (terminal IPython, nbclient), the panel's ``text/plain``
is the same table as ``%steps`` prints.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .graph import pipeline_graph, to_svg
from .states import COLORS
from .view import StepRow, step_rows

if TYPE_CHECKING:
    from .session import Session

__all__ = ["RunPanel"]




class RunPanel(w.VBox):
    """The panel. ``refresh()`` rebuilds it from the journal; the session calls it on every
    journal event, so rows update while steps run, from any cell."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.header = w.HTML().add_class("rnb-header")
        self.table = w.HTML().add_class("rnb-table")
        self.step_choice = w.Dropdown(description="Step", options=[],
                                      layout=w.Layout(width="260px")).add_class("rnb-step-choice")
        self.buttons = {
            "resume": _button("Resume", "Restore the last run and run what is left", "play",
                              "rnb-resume", self._on_resume),
            "replay": _button("Replay from step", "Restore the state before the chosen step and "
                              "re-run from there", "redo", "rnb-replay", self._on_replay),
            "rerun": _button("Re-run step", "Run the chosen step again, ignoring its cache entry",
                             "refresh", "rnb-rerun", self._on_rerun),
            "clear": _button("Clear step cache", "Delete the chosen step's cache entries", "trash",
                             "rnb-clear", self._on_clear),
            "refresh": _button("Refresh", "Read the journal again", "sync", "rnb-refresh",
                               lambda: self.refresh()),
        }
        self.question = w.HTML().add_class("rnb-question")
        self.confirm = _button("Yes, do it", "Confirm the action", "check", "rnb-confirm",
                               self._on_confirm)
        self.cancel = _button("Cancel", "Cancel the action", "times", "rnb-cancel", self._on_cancel)
        self.confirm_box = w.HBox([self.question, self.confirm, self.cancel]).add_class(
            "rnb-confirm-box")
        self.confirm_box.layout.display = "none"
        self.graph = w.HTML().add_class("rnb-graph-box")
        self.gate_text = w.HTML().add_class("rnb-gate")
        self.gate_note = w.Text(placeholder="note (optional)", description="Note",
                                layout=w.Layout(width="260px")).add_class("rnb-gate-note")
        self.approve = _button("Approve", "Approve the gate the run is waiting at", "check",
                               "rnb-approve", lambda: self._on_decide("approved"))
        self.reject = _button("Reject", "Reject the gate the run is waiting at", "times",
                              "rnb-reject", lambda: self._on_decide("rejected"))
        self.gate_box = w.HBox([self.gate_text, self.gate_note, self.approve, self.reject],
                               layout=w.Layout(flex_flow="row wrap")).add_class("rnb-gate-box")
        self.gate_box.layout.display = "none"
        self._waiting_run: str | None = None
        self.out = w.Output().add_class("rnb-output")
        self._pending: Callable[[], Any] | None = None
        controls = w.HBox([self.buttons["resume"], self.step_choice, self.buttons["replay"],
                           self.buttons["rerun"], self.buttons["clear"], self.buttons["refresh"]],
                          layout=w.Layout(flex_flow="row wrap")).add_class("rnb-controls")
        super().__init__([self.header, self.gate_box, self.table, self.graph, controls,
                          self.confirm_box, self.out])
        self.add_class("rnb-panel")
        self._text = ""
        self.refresh()

    # -- view ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild header and rows from the journal (never raises)."""
        try:
            self._refresh()
        except Exception as exc:  # noqa: BLE001 - the panel must never break the kernel
            self._say(f"could not read the run: {type(exc).__name__}: {exc}")

    def _refresh(self) -> None:
        info = self.session.panel_state()
        run, runs, cells = info["run"], info["runs"], info["cells"]
        table_rows = step_rows(runs, run, cells)
        notebook = info["notebook"] or ""
        head = [f"<b>notebook</b> <span title='{html.escape(notebook)}'>"
                f"{html.escape(notebook.rsplit('/', 1)[-1] or '(unknown)')}</span>"]
        if run is not None:
            head.append(f"<b>run</b> <code class='rnb-run-id'>{html.escape(run.run)}</code>")
            if run.resumed_from:
                head.append(f"<b>resumed from</b> <code>{html.escape(run.resumed_from)}</code>")
            head.append(f"<b>state</b> <span class='rnb-run-state'>{html.escape(run.state)}</span>")
            if not info["own"]:
                head.append("<i>(the latest run; this kernel has not run a step yet)</i>")
        else:
            head.append("<b>run</b> none yet")
        head.append(f"<b>cache</b> {html.escape(info['cache_size'])}")
        self.header.value = " &nbsp;·&nbsp; ".join(head)
        self.table.value = _table_html(table_rows)
        self.graph.value = to_svg(pipeline_graph(runs, run, cells), clickable=True)
        gate = run.waiting if run is not None else None
        if gate is not None and gate.decision is None:
            self._waiting_run = run.run
            ask = f": {html.escape(gate.question)}" if gate.question else ""
            self.gate_text.value = (f"<b>waiting for approval at gate "
                                    f"<code class='rnb-gate-name'>{html.escape(gate.name)}</code></b>{ask}")
            self.gate_box.layout.display = "flex"
        else:
            self._waiting_run = None
            self.gate_box.layout.display = "none"
        self._text = info["text"]
        names = [r.name for r in table_rows]
        current = self.step_choice.value
        self.step_choice.options = names
        if current in names:
            self.step_choice.value = current

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = self._text or bundle.get("text/plain", "")
        return bundle

    # -- actions ------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        # append_stdout, not print: it lands in the widget's state whether or not a frontend
        # routes messages, so it shows in any view of the panel (and tests can read it).
        self.out.append_stdout(f"[resumable_nb] {text}\n")

    def _run(self, action: Callable[[], Any]) -> None:
        """Run an action with its output in the panel; an error becomes one line there."""
        error = None
        with self.out:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - the panel must never break the kernel
                first = str(exc).splitlines()[0] if str(exc) else ""
                error = f"error: {type(exc).__name__}: {first}"
        if error:
            self._say(error)
        self.refresh()

    def _ask(self, question: str, action: Callable[[], Any]) -> None:
        self._pending = action
        self.question.value = f"<b>{html.escape(question)}</b>"
        self.confirm_box.layout.display = "flex"

    def _on_confirm(self) -> None:
        action, self._pending = self._pending, None
        self.confirm_box.layout.display = "none"
        if action is not None:
            self._run(action)

    def _on_cancel(self) -> None:
        self._pending = None
        self.confirm_box.layout.display = "none"

    def _chosen(self) -> str:
        name = self.step_choice.value
        if not name:
            raise ValueError("choose a step first")
        return str(name)

    def _on_resume(self) -> None:
        self.out.clear_output()
        self._run(lambda: self.session.resume(None, True, show_panel=False))

    def _on_decide(self, decision: str) -> None:
        run_id = self._waiting_run
        if run_id is None:
            self._say("no run is waiting at a gate")
            return
        note = self.gate_note.value
        self._run(lambda: self._say(self.session.decide_gate(run_id, decision, note)))

    def _on_replay(self) -> None:
        name = self._chosen_or_say()
        if name:
            self._ask(f"Replay from '{name}'? Its state is restored and it and the steps after "
                      "it run again.", lambda: self.session.replay(name, None, False))

    def _on_rerun(self) -> None:
        name = self._chosen_or_say()
        if name:
            self._ask(f"Re-run '{name}', ignoring its cache entry?", lambda: self.session.rerun(name))

    def _on_clear(self) -> None:
        name = self._chosen_or_say()
        if name:
            self._ask(f"Delete every cache entry of '{name}'?", lambda: self.session.clear_step(name))

    def _chosen_or_say(self) -> str | None:
        try:
            return self._chosen()
        except ValueError as exc:
            self._say(str(exc))
            return None


def _button(label: str, tooltip: str, icon: str, css: str, callback: Callable[[], Any]) -> w.Button:
    button = w.Button(description=label, tooltip=tooltip, icon=icon,
                      layout=w.Layout(width="auto")).add_class(css)

    def clicked(_: Any) -> None:
        try:
            callback()
        except Exception:  # noqa: BLE001, S110 - never into the kernel (actions report via _run)
            pass

    button.on_click(clicked)
    return button


def _table_html(table_rows: list[StepRow]) -> str:
    head = ("<tr><th>state</th><th>step</th><th>attempts</th><th>last run</th><th>saved</th>"
            "<th>outputs</th><th>why it ran</th></tr>")
    body = []
    for r in table_rows:
        body.append(
            f"<tr class='rnb-row rnb-state-{r.state}' data-step='{html.escape(r.name)}'>"
            f"<td><span class='rnb-state' style='background:{COLORS[r.state]}'>"
            f"{html.escape(r.label)}</span></td>"
            f"<td class='rnb-name'><code>{html.escape(r.name)}</code></td>"
            f"<td class='rnb-attempts'>{r.attempts}</td>"
            f"<td class='rnb-seconds'>{'' if r.duration is None else f'{r.duration:.2f} s'}</td>"
            f"<td class='rnb-saved'>{'' if not r.saved else f'{r.saved:.2f} s'}</td>"
            f"<td class='rnb-outputs'>{html.escape(r.outputs_text())}</td>"
            f"<td class='rnb-reason'>{html.escape(r.reason)}</td></tr>")
    return _STYLE + "<table class='rnb-steps'>" + head + "".join(body) + "</table>"


_STYLE = """<style>
.rnb-steps {border-collapse: collapse; margin: 4px 0 6px 0; font-size: 13px}
.rnb-steps th {text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid #d0d7de;
  white-space: nowrap; font-weight: 600}
.rnb-steps td {padding: 3px 10px 3px 0; vertical-align: top; white-space: nowrap}
.rnb-steps td.rnb-outputs, .rnb-steps td.rnb-reason {white-space: normal; max-width: 26em}
.rnb-steps .rnb-state {white-space: nowrap; border-radius: 4px; padding: 1px 6px; color: white}
</style>"""

