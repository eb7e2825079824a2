"""The one view of a run's steps (resumable_nb.view): every state from a real journal, the same
words in ``%steps``, ``resumable-nb status`` and its ``--json``, and no ipywidgets to get them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from resumable_nb import cli
from resumable_nb.journal import Journal, RunView, read_events, runs
from resumable_nb.states import JOURNAL_STATUSES, LABELS, STEP_STATES
from resumable_nb.view import TABLE_HEAD, StepRow, render_steps, step_rows
from tests.conftest import Shell

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class _Cell:
    """Any object with ``step`` and ``body`` is a step cell (view.StepCell)."""

    step: str | None
    body: str


# The saved notebook: 'edited' differs from what ran; 'later' never ran.
CELLS = [_Cell("load", "a = 1"), _Cell(None, "import os"), _Cell("clean", "b = a"),
         _Cell("fit", "m = a + b"), _Cell("bad", "1 / 0"), _Cell("edited", "e = 2"),
         _Cell("slow", "sleep()"), _Cell("later", "z = 0")]


def _first_run(tmp_path: Path) -> tuple[Journal, str]:
    """One run, written with the real journal: every journal status, and then some."""
    j = Journal(tmp_path / "cache", str(tmp_path / "nb.ipynb"))
    assert j.acquire()
    run = j.start_run()
    j.step_started("load", "k-load", "a = 1")
    j.step_finished("load", "ran", key="k-load", duration=1.5, outputs={"a": 28},
                    reason="not in the cache yet")
    j.step_finished("clean", "cached", key="k-clean", duration=0.01, saved=2.0, outputs={"b": 28},
                    started=("k-clean", "b = a"))
    for fp in ("f1", "f2"):  # ran twice: the second time because its input changed
        j.step_started("fit", f"k-fit-{fp}", "m = a + b")
        j.step_finished("fit", "ran", key=f"k-fit-{fp}", duration=3.0, outputs={"m": 28},
                        inputs={"a": fp, "b": "b1"})
    j.step_started("bad", None, "1 / 0")
    j.step_finished("bad", "failed", key=None, duration=0.1, error="ZeroDivisionError: division by zero")
    j.step_started("edited", "k-edited", "e = 1")
    j.step_finished("edited", "ran", key="k-edited", duration=0.2, outputs={"e": 28})
    j.step_started("slow", "k-slow", "sleep()")  # never finished
    return j, run


def _runs(j: Journal, live: str | None = None) -> dict[str, RunView]:
    events, warning = read_events(j.path)
    assert warning is None
    return runs(events, live_run=live)


@pytest.mark.parametrize(("live", "name", "state", "attempts", "saved", "reason"), [
    (False, "load", "ran", 1, 0.0, "not in the cache yet"),
    (False, "clean", "cached", 1, 2.0, ""),
    (False, "fit", "ran", 2, 0.0, "input a changed"),
    (False, "bad", "failed", 1, 0.0, "ZeroDivisionError: division by zero"),
    (False, "edited", "stale", 1, 0.0, "its code in the notebook differs from the last run"),
    (False, "slow", "interrupted", 1, 0.0, "the kernel died while it ran"),
    (True, "slow", "running", 1, 0.0, ""),  # its kernel (here: this process) is alive
    (False, "later", "not_run", 0, None, ""),
])
def test_every_state_of_a_run(tmp_path: Path, live: bool, name: str, state: str, attempts: int,
                              saved: float | None, reason: str) -> None:
    j, run_id = _first_run(tmp_path)
    all_runs = _runs(j, run_id if live else None)
    rows = {r.name: r for r in step_rows(all_runs, all_runs[run_id], CELLS)}
    assert [*rows] == ["load", "clean", "fit", "bad", "edited", "slow", "later"]  # notebook order
    row = rows[name]
    assert (row.state, row.attempts, row.saved, row.reason) == (state, attempts, saved, reason)
    assert row.stale == (name == "edited") and row.label == LABELS[row.state]  # type: ignore[index]
    assert row.run == (None if state == "not_run" else run_id)


def test_a_resumed_run_shows_what_it_restored(tmp_path: Path) -> None:
    j, first = _first_run(tmp_path)
    j.end_run("failed")
    second = j.start_run(resumed_from=first)
    j.step_started("bad", "k-bad", "1 / 1")
    j.step_finished("bad", "ran", key="k-bad", duration=0.3)
    all_runs = _runs(j)
    rows = {r.name: r for r in step_rows(all_runs, all_runs[second], None)}
    # no notebook: the steps its run completed or restored, in the order they happened
    assert [*rows] == ["load", "clean", "fit", "edited", "bad"]
    assert {n: r.state for n, r in rows.items()} == {
        "load": "resumed", "clean": "resumed", "fit": "resumed", "edited": "resumed", "bad": "ran"}
    assert (rows["load"].attempts, rows["load"].run, rows["load"].saved) == (0, first, 1.5)
    assert rows["clean"].saved == pytest.approx(2.01)  # its restore then, and what that saved
    assert rows["bad"].attempts == 1 and rows["bad"].run == second


def test_a_partial_resume_shows_what_it_could_not_restore_as_left_to_run(tmp_path: Path) -> None:
    """Issue 9: the steps a resume could not restore (recorded with the run it started) are
    not "restored by resume" in any view: not yet run, saying why."""
    j, first = _first_run(tmp_path)
    j.end_run("failed")
    second = j.start_run(resumed_from=first, left={"fit": "its cache entry is gone (cleared?)",
                                                   "edited": "it ran after step 'fit', which could "
                                                             "not be restored"})
    all_runs = _runs(j)
    assert all_runs[second].left["fit"] == "its cache entry is gone (cleared?)"
    rows = {r.name: r for r in step_rows(all_runs, all_runs[second], None)}
    assert {n: r.state for n, r in rows.items()} == {
        "load": "resumed", "clean": "resumed", "fit": "not_run", "edited": "not_run"}
    assert rows["fit"].reason == "not restored: its cache entry is gone (cleared?)"
    assert rows["fit"].saved is None and rows["fit"].attempts == 0


def test_no_run_yet_lists_the_notebook_steps() -> None:
    rows = step_rows({}, None, CELLS)
    assert [(r.name, r.state, r.attempts) for r in rows] == [
        (c.step, "not_run", 0) for c in CELLS if c.step]
    text = render_steps("no run yet", rows)
    assert text.splitlines()[1].split() == " ".join(TABLE_HEAD).split()
    assert text.splitlines()[2].split()[:4] == ["load", "not", "yet", "run"]


def test_one_label_table_covers_every_state() -> None:
    assert set(LABELS) == set(STEP_STATES) and set(JOURNAL_STATUSES) <= set(STEP_STATES)
    assert len(set(LABELS.values())) == len(LABELS)  # no two states read alike
    row = StepRow("x", "cached", 1, 0.01, 2.0, (("df", 1_500_000),))
    assert row.to_json() == {"name": "x", "state": "restored from cache", "attempts": 1,
                             "duration": 0.01, "saved": 2.0, "run": None, "error": "",
                             "reason": "", "outputs": {"df": 1_500_000}, "stale": False}
    assert row.outputs_text() == "df (1.5 MB)"


def test_status_json_status_text_and_steps_table_say_the_same(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in [
        "%%step one\na = 1", "%%step two\nb = a + 1", "%%step three\nc = b / 0",
        "%%step four\nd = 4", "%%step five\ne = 5"]]
    path = tmp_path / "same.ipynb"
    nbformat.write(nb, str(path))
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(path))
    shell.fresh()
    shell.run("%%step one\na = 1")
    shell.run("%%step one\na = 1")  # a hit
    shell.run("%%step two\nb = a + 1")
    shell.run("%%step three\nc = b / 0", ok=False)
    shell.run("%%step four\nd = 40")  # not what the saved notebook says
    table = shell.magics.session.table()
    capsys.readouterr()
    assert cli.main(["status", str(path), "--cache-dir", str(shell.cache), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert cli.main(["status", str(path), "--cache-dir", str(shell.cache)]) == 0
    text = capsys.readouterr().out

    assert data["schema"] == cli.SCHEMA_VERSION == 2
    states = {s["name"]: s["state"] for s in data["run"]["steps"]}
    assert states == {"one": "restored from cache", "two": "ran", "three": "failed",
                      "four": "stale", "five": "not yet run"}
    for rendered in (table, text):
        lines = rendered.splitlines()
        assert lines[1].split()[:2] == ["step", "state"]
        for name, state in states.items():
            [line] = [ln for ln in lines[2:] if ln.split()[:1] == [name]]
            assert line[len(name):].lstrip().startswith(state + "  "), (name, line)


def test_the_view_and_the_steps_table_do_not_import_ipywidgets() -> None:
    code = (
        "import sys\n"
        "import resumable_nb.view, resumable_nb.cli, resumable_nb.session\n"
        "from resumable_nb.resume import step_cell\n"
        "resumable_nb.session.render_table({}, None, [step_cell('a', 'x = 1')])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'IPython')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
