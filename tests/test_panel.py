"""The run panel's logic (rows, states, reasons, controls) in a real InteractiveShell, and its
live updates and error handling in a real kernel. The browser test is test_panel_browser.py."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from resumable_nb.view import StepRow, step_rows
from resumable_nb.widget import RunPanel
from tests.conftest import Shell
from tests.kernels import Kernel


def _state(shell: Shell) -> dict[str, object]:
    return shell.magics.session.panel_state()


def _rows(shell: Shell) -> dict[str, StepRow]:
    info = _state(shell)
    return {r.name: r for r in step_rows(info["runs"], info["run"], info["cells"])}  # type: ignore[arg-type]


def test_rows_show_states_attempts_and_why_a_step_ran(shell: Shell) -> None:
    shell.run("v = 1")
    shell.run("%%step a\nx = v")
    shell.run("%%step b\ny = x / 0", ok=False)
    shell.run("v = 2")
    shell.run("%%step a\nx = v")
    shell.run("%%step a\nx = v")
    shell.run("%%step a --force\nx = v")
    r = _rows(shell)
    assert (r["a"].state, r["a"].attempts) == ("ran", 4)
    assert r["a"].reason == "re-run on request (--force)"
    assert r["b"].state == "failed" and "ZeroDivisionError" in r["b"].reason
    shell.run("v = 3")
    shell.run("%%step a\nx = v")
    assert _rows(shell)["a"].reason == "input v changed"
    shell.run("%%step a\nx = v + 0")
    assert _rows(shell)["a"].reason == "its code changed"
    shell.run("%%step a\nx = v")
    assert _rows(shell)["a"].state == "cached"


def test_not_yet_run_stale_and_restored_rows(shell: Shell, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in
                ["%%step one\na = 1", "%%step two\nb = a + 1", "%%step three\nc = b + 1"]]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, str(path))
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(path))
    shell.fresh()
    shell.run("%%step one\na = 1")
    shell.run("%%step two\nb = a + 2")  # differs from the saved notebook's cell
    r = _rows(shell)
    assert [*r] == ["one", "two", "three"]
    assert [r[n].state for n in r] == ["ran", "stale", "not_run"]
    shell.fresh()
    shell.run("%resume")
    r = _rows(shell)
    assert r["one"].state == "resumed" and r["three"].state == "not_run"


def test_controls_ask_first_and_act(shell: Shell) -> None:
    shell.run("%%step load\nmark('load')\nitems = [1]")
    shell.run("%%step grow\nmark('grow')\nitems.append(2)")
    panel = RunPanel(shell.magics.session)
    assert panel.step_choice.options == ("load", "grow")
    assert "rnb-panel" in panel._dom_classes
    panel.step_choice.value = "load"
    panel.buttons["replay"].click()
    assert panel.confirm_box.layout.display == "flex" and "Replay from &#x27;load" in panel.question.value
    panel.cancel.click()
    assert panel.confirm_box.layout.display == "none" and shell.count("load") == 1
    panel.buttons["replay"].click()
    panel.confirm.click()
    assert shell.count("load") == 2 and shell.count("grow") == 1  # grow's inputs came out equal: hit
    assert shell.ns["items"] == [1, 2]
    panel.step_choice.value = "grow"
    panel.buttons["rerun"].click()
    panel.confirm.click()
    assert shell.count("grow") == 2
    panel.buttons["clear"].click()
    panel.confirm.click()
    assert not [e for e in shell.magics.session.store().entries() if e.step == "grow"]


def test_the_text_fallback_is_the_steps_table(shell: Shell) -> None:
    shell.run("%%step a\nx = 1")
    panel = RunPanel(shell.magics.session)
    text = panel._repr_mimebundle_()["text/plain"]
    assert text.splitlines()[1].split()[:2] == ["step", "state"] and "\na " in text


@pytest.mark.kernel
def test_panel_in_a_kernel_updates_live_and_reports_errors_in_one_line(tmp_path: Path,
                                                                      _key_file: Path) -> None:
    k = Kernel(tmp_path, {"RESUMABLE_NB_DIR": str(tmp_path / "cache"),
                          "RESUMABLE_NB_KEY_FILE": str(_key_file)})
    try:
        k.ok("%load_ext resumable_nb")
        k.ok("%%step a\nx = 1")
        reply = k.ok("%steps")
        [bundle] = [m["content"]["data"] for m in reply.messages if m["msg_type"] == "display_data"]
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["text/plain"].splitlines()[1].startswith("step")
        k.ok("panel = list(get_ipython()._resumable_nb_magics.session._panels)[0]")
        k.ok("%%step b\ny = x + 1")  # another cell: the panel follows the journal
        assert "data-step='b'" in k.value("panel.table.value")
        k.run("%%step c\nz = 1 / 0")
        k.ok("panel.step_choice.value = 'c'\npanel.buttons['rerun'].click()\npanel.confirm.click()")
        lines = k.value("[o['text'] for o in panel.out.outputs if o.get('name') == 'stdout']")
        assert lines == ["[resumable_nb] error: ZeroDivisionError: division by zero\n"]
        assert k.value("1 + 1") == 2  # the kernel is fine
        k.ok("import os\nos.environ['RESUMABLE_NB_HEADLESS'] = '1'")
        reply = k.ok("%steps")
        assert reply.stdout.splitlines()[1].startswith("step")
    finally:
        k.close()
