"""%resume, %replay and %steps through a real InteractiveShell (a reload stands in for a new
kernel here; the kill tests with real kernels are in test_crash_kernel.py)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.conftest import Shell


def _new_kernel(shell: Shell) -> None:
    """Forget everything but the cache and journal, as a new kernel would."""
    shell.fresh()


def test_resume_restores_the_last_writer_of_every_name(shell: Shell,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step a\nmark('a')\nx = 1\ntmp = 'gone later'")
    shell.run("%%step b\nmark('b')\ny = x + 1\ndel tmp")
    shell.run("%%step c\nmark('c')\nx = 10")
    _new_kernel(shell)
    shell.run("%resume")
    assert (shell.ns["x"], shell.ns["y"]) == (10, 2) and "tmp" not in shell.ns
    assert [shell.count(t) for t in "abc"] == [1, 1, 1], "no step body runs on resume"
    out = capsys.readouterr().out
    assert "Restored 3 steps (a, b, c)" in out and "No step was executed" in out


def test_out_of_order_use_resumes_to_the_state_after_the_last_run(shell: Shell) -> None:
    shell.run("v = 1")
    cell_a = "%%step a\nmark('a')\nw = v * 10"
    shell.run(cell_a)
    shell.run("%%step b\nmark('b')\nw = -1\nz = 5")
    shell.run("v = 2")
    shell.run(cell_a)  # A again, after B, with another input
    _new_kernel(shell)
    shell.run("%resume")
    assert shell.ns["w"] == 20 and shell.ns["z"] == 5


def test_resume_reports_the_failed_step_and_what_is_left(
        shell: Shell, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _notebook(tmp_path, ["%%step one\nmark('one')\na = 1", "%%step two\nmark('two')\nb = a / 0",
                              "%%step three\nmark('three')\nc = 3"])
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(nb))
    _new_kernel(shell)
    shell.run("%%step one\nmark('one')\na = 1")
    shell.run("%%step two\nmark('two')\nb = a / 0", ok=False)
    _new_kernel(shell)
    capsys.readouterr()
    shell.run("%resume")
    out = capsys.readouterr().out
    assert "Step 'two' was failed: ZeroDivisionError: division by zero." in out
    assert "Left to run: two, three" in out
    assert shell.ns["a"] == 1 and "b" not in shell.ns


def test_resume_run_executes_the_rest_in_notebook_order(shell: Shell, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cells = ["%load_ext resumable_nb", "import math\nresults = []",
             "%%step one\nmark('one')\na = 1\nresults.append(a)",
             "helper = lambda v: v * 100", "%%step two\nmark('two')\nb = helper(a) + math.floor(0.5)",
             "%%step three\nmark('three')\nc = b + 1\nresults.append(c)\nc"]
    nb = _notebook(tmp_path, cells)
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(nb))
    _new_kernel(shell)
    shell.run(cells[1])
    shell.run(cells[2])
    _new_kernel(shell)
    shell.run("%resume --run")
    assert shell.ns["c"] == 101
    assert shell.ns["results"] == [1, 101], "the plain cell above did not undo the restored step"
    assert [shell.count(t) for t in ("one", "two", "three")] == [1, 1, 1]
    session = shell.magics.session
    current = session._runs(session.journal())[session.journal().run_id]
    assert current.resumed_from is not None
    assert [s.name for s in current.steps] == ["two", "three"]


def test_replay_restores_the_unmutated_input_and_reruns_what_it_says(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step load\nmark('load')\nrows = [3, 1, 2]")
    shell.run("%%step sort\nmark('sort')\nrows.sort()\nfirst = rows[0]")
    shell.run("%%step other\nmark('other')\nconst = 42")
    shell.run("%%step report\nmark('report')\nmsg = f'first={first}'")
    capsys.readouterr()
    shell.run("%replay --from sort --dry-run")
    out = capsys.readouterr().out
    assert "sort             will run" in out
    assert "other            will hit" in out
    assert "report           unknown (reads first)" in out
    assert [shell.count(t) for t in ("load", "sort", "other", "report")] == [1, 1, 1, 1]

    shell.run("seen = []\n_orig_sort = list.sort")
    shell.run("%replay --from sort")
    assert shell.count("sort") == 2, "the replayed step runs even though it would hit"
    assert shell.count("other") == 1 and shell.count("report") == 1, "early cutoff: identical inputs hit"
    assert shell.ns["rows"] == [1, 2, 3] and shell.ns["first"] == 1


def test_replay_sees_the_value_before_an_in_place_change(shell: Shell) -> None:
    shell.run("%%step load\nmark('load')\nitems = [1]")
    shell.run("%%step grow\nmark('grow')\nbefore = list(items)\nitems.append(len(items) + 1)")
    assert shell.ns["items"] == [1, 2]
    shell.run("%replay --from grow")
    assert shell.ns["before"] == [1] and shell.ns["items"] == [1, 2]
    assert shell.count("grow") == 2


def test_replay_to_stops_there(shell: Shell) -> None:
    for name, code in [("a", "p = 1"), ("b", "q = p + 1"), ("c", "r = q + 1")]:
        shell.run(f"%%step {name}\nmark('{name}')\n{code}")
    shell.run("p = 5")  # not a step: replay rebuilds p from step a
    shell.run("%replay --from b --to b")
    assert shell.count("b") == 2 and shell.count("c") == 1
    assert shell.ns["q"] == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%replay", "%replay needs --from NAME; completed steps: a"),
        ("%replay --from nope", "no completed step 'nope' in this kernel's run; completed: a"),
        ("%replay --from a --to nope", "--to 'nope' is not a step at or after 'a'; those are: a"),
        ("%resume 20990101", "no run '20990101'; recent runs:"),
        ("%replay --frm a", "unrecognized arguments"),
    ],
)
def test_bad_arguments_give_one_line_naming_what_exists(
        shell: Shell, capsys: pytest.CaptureFixture[str], line: str, message: str) -> None:
    shell.run("%%step a\nx = 1")
    capsys.readouterr()
    shell.run(line, ok=False)
    out = capsys.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], lines


def test_resume_with_nothing_to_resume(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%resume", ok=False)
    err = capsys.readouterr()
    assert "nothing to resume" in err.out + err.err


def test_steps_table(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step a\nx = list(range(1000))")
    shell.run("%%step b\ny = 1 / 0", ok=False)
    shell.run("%%step a\nx = list(range(1000))")
    capsys.readouterr()
    shell.run("%steps")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run ") and "(running)" in out[0]
    assert out[1].split()[:3] == ["step", "state", "attempts"]
    assert out[2].split()[:4] == ["a", "restored", "from", "cache"] and " 2 " in out[2]
    assert out[3].split()[:3] == ["b", "failed", "1"]


def _notebook(folder: Path, sources: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path = folder / "pipeline.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_resume_rebuilds_what_plain_cells_made_in_the_order_everything_ran(shell: Shell) -> None:
    """Issue 9: variables made by plain cells (imports, setup, helpers) come back after %resume,
    and a plain cell between two steps sees the value the earlier step left."""
    cells = ["import math\nbase = 10", "%%step a\nmark('a')\nv = base * 2",
             "w = v + 1\nhelper = lambda q: q + base", "%%step b\nmark('b')\nv = helper(w)",
             "z = math.floor(v / 3)"]
    for cell in cells:  # as a frontend runs cells (silent ones, with no history, are not journaled)
        assert shell.ip.run_cell(cell, store_history=True).success
    plain = {k: shell.ns[k] for k in ("base", "v", "w", "z")}
    shell.fresh()
    shell.run("%resume")
    assert {k: shell.ns.get(k) for k in plain} == plain
    assert shell.ns["helper"](1) == 11 and shell.ns["math"].floor(2.5) == 2
    assert shell.count("a") == 1 and shell.count("b") == 1  # no step executed again


def test_resume_steps_only_restores_the_steps_alone(shell: Shell) -> None:
    for cell in ["base = 10", "%%step a\nv = base * 2", "w = v + 1"]:
        assert shell.ip.run_cell(cell, store_history=True).success
    shell.fresh()
    shell.run("%resume --steps-only")
    assert shell.ns["v"] == 20 and "w" not in shell.ns and "base" not in shell.ns


@pytest.mark.parametrize("resume", ["%resume", "%resume --steps-only"])
def test_a_partial_resume_labels_only_what_it_restored(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], resume: str) -> None:
    """Issue 9: when an entry cannot be restored (corrupt here), that step and the ones after
    it are not "restored by resume" in %steps, the panel's rows or `resumable-nb status`: they
    are left to run, and %resume says which and why, one line each."""
    from resumable_nb.cli import status_data
    from resumable_nb.journal import journal_path
    from resumable_nb.resume import notebook_cells
    from resumable_nb.view import step_rows

    cells = ["base = 1", "%%step a\nmark('a')\nx = base", "%%step b\nmark('b')\ny = x + 1",
             "%%step c\nmark('c')\nz = y + 1"]
    nb = _notebook(tmp_path, cells)
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(nb))
    shell.fresh()
    for cell in cells:
        assert shell.ip.run_cell(cell, store_history=True).success
    store = shell.magics.session.store()
    [entry] = [e for e in store.entries() if e.step == "b"]
    payload = shell.cache / "objects" / entry.file
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x01
    payload.write_bytes(bytes(data))
    shell.fresh()
    capsys.readouterr()
    shell.run(resume)
    out = capsys.readouterr().out
    assert "Restored 1 step (a)" in out, out
    lines = [ln for ln in out.splitlines() if "not restored" in ln]
    assert len(lines) == 2, out
    assert lines[0].startswith("Step 'b' not restored: ") and "integrity check" in lines[0]
    assert lines[1] == "Step 'c' not restored: it ran after step 'b', which could not be restored."
    assert "Left to run: b, c" in out
    assert shell.ns["x"] == 1 and "y" not in shell.ns and "z" not in shell.ns

    expected = {"a": "restored by resume", "b": "not yet run", "c": "not yet run"}
    shell.run("%steps")
    table = capsys.readouterr().out.splitlines()[2:]
    assert {ln.split()[0]: " ".join(ln.split()[1:4]) for ln in table} \
        == expected, table
    assert all(" not restored: " in ln for ln in table[1:]), table
    panel = shell.magics.session.panel_state()
    rows = step_rows(panel["runs"], panel["run"], panel["cells"])
    assert {r.name: r.label for r in rows} == expected
    shell.magics.session.close()  # as the kernel's end would: the CLI reads the journal
    status = status_data(nb, notebook_cells(nb), shell.cache, journal_path(shell.cache, str(nb)))
    assert {s["name"]: s["state"] for s in status["run"]["steps"]} == expected
    assert [s["reason"] for s in status["run"]["steps"]][1:] == [
        "not restored: " + line.split(": ", 1)[1].rstrip(".") for line in lines]


# -- step options survive a rebuild from the journal (no notebook file) -----------------------
_LOCKED = "%%step {name} --ignore lock\nmark('{name}')\nwith lock:\n    {code}"


def test_replay_from_the_journal_keeps_the_step_line_options(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 9: without a notebook file, %replay rebuilds the cells from the journal; they keep
    the whole %%step line (`--ignore lock` here: without it the lock makes the step uncacheable)."""
    shell.run("import threading\nlock = threading.Lock()")
    shell.run(_LOCKED.format(name="a", code="x = 1"))
    key = shell.last.key
    assert key is not None and shell.last.stored
    shell.run("%%step b\nmark('b')\ny = x + 1")
    capsys.readouterr()
    shell.run("%replay --from a")
    out = capsys.readouterr()
    assert "--- %%step a --ignore lock" in out.out, out.out
    assert shell.count("a") == 2 and shell.count("b") == 1
    [replayed] = [r for r in shell.magics.runner.history[-2:] if r.name == "a"]
    assert replayed.key == key and replayed.stored, "the same key as the cell's own run"
    assert "--ignore lock" not in out.err  # no "pass --ignore lock to leave it out" hint


def test_resume_run_from_the_journal_keeps_the_step_line_options(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("import threading\nlock = threading.Lock()\nok = False")
    shell.run(_LOCKED.format(name="a", code="x = 1"))
    failing = _LOCKED.format(name="b", code="y = x + 1\nassert ok")
    shell.run(failing, ok=False)
    shell.run("ok = True")
    shell.run(failing)
    key = shell.last.key
    shell.magics.session.store().delete_step("b")
    _new_kernel(shell)
    shell.run("import threading\nlock = threading.Lock()\nok = True")
    capsys.readouterr()
    shell.run("%resume --run")
    out = capsys.readouterr()
    assert "--- %%step b --ignore lock" in out.out, out.out
    assert shell.ns["y"] == 2 and shell.count("b") == 3
    assert shell.last.name == "b" and shell.last.key == key and shell.last.stored


def test_a_step_whose_latest_entry_is_lost_is_left_to_run_even_if_an_earlier_one_restored(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    """A, B, then A again with another input; A's second entry is gone: the state restored is
    the one before that second A ran (A's first values, B's), and A is left to run — not
    counted done because its first execution restored."""
    shell.run("v = 1")
    cell_a = "%%step a\nmark('a')\nw = v * 10"
    shell.run(cell_a)
    shell.run("%%step b\nmark('b')\nz = w + 1")
    shell.run("v = 2")
    shell.run(cell_a)
    store = shell.magics.session.store()
    store.delete(shell.last.key)
    _new_kernel(shell)
    capsys.readouterr()
    shell.run("%resume")
    out = capsys.readouterr().out
    assert (shell.ns["w"], shell.ns["z"]) == (10, 11)
    assert "Step 'a' not restored: its cache entry is gone (cleared?)." in out
    assert "Left to run: a" in out, out
    shell.run("%steps")
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[2:]}
    assert "not yet run" in rows["a"] and "restored by resume" in rows["b"]
