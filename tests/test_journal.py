"""The run journal on a real temp dir: records, torn tails, damage, derived states, the hold."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from resumable_nb.journal import Journal, read_events, runs

_PRELUDE = (
    "import os, signal, sys, time\nsys.path.insert(0, {root!r})\n"
    "from pathlib import Path\nfrom resumable_nb.journal import Journal\n"
    "j = Journal(Path({cache!r}), {nb!r})\nassert j.acquire()\n"
)


def _journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path, str(tmp_path / "nb.ipynb"))
    assert j.acquire()
    return j


def test_events_round_trip_and_states(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    run = j.start_run()
    j.step_started("a", "k1", "x = 1")
    j.step_finished("a", "ran", key="k1", duration=1.5, outputs={"x": 28})
    j.step_finished("b", "cached", key="k2", duration=0.01, saved=2.0, started=("k2", "y = x"))
    j.step_started("c", "k3", "z = 1 / 0")
    j.step_finished("c", "failed", key=None, duration=0.1, error="ZeroDivisionError: division by zero")
    view = j.read()[0][run]
    assert view.state == "running"  # this process holds it
    assert [(s.name, s.status, s.attempt) for s in view.steps] == [
        ("a", "ran", 1), ("b", "cached", 1), ("c", "failed", 1)]
    assert view.steps[0].outputs == {"x": 28} and view.steps[0].complete
    assert not view.steps[2].complete and "ZeroDivision" in view.steps[2].error
    j.end_run("failed")
    assert j.read()[0][run].state == "failed"


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.start_run()
    j.step_started("a", "k1", "x = 1")
    with open(j.path, "ab") as f:
        f.write(b'{"kind": "step_finished", "run": "r", "step": "a", "sta')  # died mid-append
    events, warning = read_events(j.path)
    assert warning is None and [e["kind"] for e in events] == ["run_started", "step_started"]


def test_a_damaged_record_in_the_middle_is_skipped_with_a_warning(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.start_run()
    for name in "abc":
        j.step_started(name, None, "pass")
    lines = j.path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"b"', b'"X"')  # its MAC no longer matches
    lines[3] = lines[3][:40]  # and this one is cut short
    j.path.write_bytes(b"\n".join(lines))
    events, warning = read_events(j.path)
    assert [e.get("step") for e in events] == [None, "a"]
    assert warning is not None
    assert "1 record not signed with your key" in warning and "1 damaged record" in warning


def test_records_after_a_damaged_one_are_still_read(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.start_run()
    for name in "abc":
        j.step_started(name, None, "pass")
    lines = j.path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"b"', b'"X"')
    j.path.write_bytes(b"\n".join(lines))
    events, warning = read_events(j.path)
    assert [e.get("step") for e in events] == [None, "a", "c"]
    assert warning is not None and "1 record not signed with your key" in warning


def test_the_journal_is_only_ever_appended_to(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.start_run()
    j.step_started("a", None, "pass")
    first = j.path.read_bytes()
    j.step_finished("a", "ran", key="k", duration=0.1)
    j.end_run("completed")
    assert j.path.read_bytes().startswith(first)


def test_a_dead_writer_makes_its_run_and_step_interrupted(tmp_path: Path) -> None:
    code = _PRELUDE.format(root=str(Path(__file__).parent.parent), cache=str(tmp_path),
                           nb=str(tmp_path / "nb.ipynb")) + (
        "j.start_run()\nj.step_started('a', 'k', 'x = 1')\n"
        "j.step_finished('a', 'ran', key='k', duration=0.1)\nj.step_started('b', None, 'sleep')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    j = Journal(tmp_path, str(tmp_path / "nb.ipynb"))
    assert j.acquire(), "the hold is released when its process dies"
    [view] = j.read()[0].values()
    assert view.state == "interrupted"
    assert [(s.name, s.status) for s in view.steps] == [("a", "ran"), ("b", "interrupted")]


def test_a_second_holder_is_told_who_holds_the_notebook(tmp_path: Path) -> None:
    code = _PRELUDE.format(root=str(Path(__file__).parent.parent), cache=str(tmp_path),
                           nb=str(tmp_path / "nb.ipynb")) + (
        "j.start_run()\nprint('held', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        j = Journal(tmp_path, str(tmp_path / "nb.ipynb"))
        assert not j.acquire()
        assert j.holder is not None and f"pid {proc.pid}" in j.holder
        [view] = runs(read_events(j.path)[0]).values()
        assert view.state == "running"  # its process is alive
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while not j.acquire() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert j.holder is None


def test_run_ids_are_time_ordered_and_unique(tmp_path: Path) -> None:
    from resumable_nb.journal import new_run_id

    ids = [new_run_id() for _ in range(200)]
    assert len(set(ids)) == 200 and ids == sorted(ids)


@pytest.mark.parametrize("notebook", [None, "/a/b/analysis.ipynb"])
def test_one_journal_file_per_notebook(tmp_path: Path, notebook: str | None) -> None:
    from resumable_nb.journal import journal_path

    path = journal_path(tmp_path, notebook)
    assert path.parent == tmp_path / "journal" and path.suffix == ".jsonl"
    if notebook:
        assert path.name.startswith("analysis-")
        assert journal_path(tmp_path, "/other/analysis.ipynb") != path
