"""Approval gates (``%gate``, ``resumable-nb approve`` / ``reject``, exit 3), parameters reused by
a resumed run, and the pipeline graph (pure). The kernel tests run the CLI as a subprocess on
notebooks built in tmp_path; executions are counted through a log file, never timed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import nbformat
import pytest

from resumable_nb.errors import StepUsageError
from resumable_nb.gates import decision_for, find_gates, parse_gate_line
from resumable_nb.graph import pipeline_graph, to_dot, to_svg
from resumable_nb.journal import Journal, journal_key, read_events
from resumable_nb.resume import parse_cells
from resumable_nb.states import COLORS
from tests.test_cli import cli, counts, marker_cell, step_cell, texts, write_notebook


def _gated(tmp: Path, question: str = "Numbers look right?") -> tuple[Path, Path]:
    log = tmp / "executions.log"
    nb = write_notebook(tmp / "gated.ipynb", [
        marker_cell(log),
        "%%step load\nmark('load')\nraw = [1, 2, 3]",
        f"%gate review --ask {json.dumps(question)}",
        "%%step publish\nmark('publish')\ntotal = sum(raw)\nprint('total', total)",
    ])
    return nb, log


def _status(nb: Path, cache: Path, key: Path) -> dict:  # type: ignore[type-arg]
    out = cli("status", nb, "--json", cache=cache, key=key)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# -- pure ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    ("review", ("review", "")),
    ('review --ask "Numbers look right?"', ("review", "Numbers look right?")),
    ("ship --ask 'go?'", ("ship", "go?")),
])
def test_gate_lines(line: str, expected: tuple[str, str]) -> None:
    assert parse_gate_line(line) == expected


@pytest.mark.parametrize("line", ["", "1x", "a b", "a --bogus", "a --ask 'open"])
def test_bad_gate_lines(line: str) -> None:
    with pytest.raises(StepUsageError, match="%gate"):
        parse_gate_line(line)


def test_gates_and_their_positions() -> None:
    nb = {"cells": [{"cell_type": "code", "source": s} for s in [
        "%%step a\nx = 1", "%gate first", "%%step b\ny = x", "# check\n%gate second --ask 'ok?'",
        "%gate third\nprint(1)"]]}
    gates = find_gates(parse_cells(nb))
    assert [(g.name, g.question, g.position, g.index) for g in gates] == [
        ("first", "", "a", 1), ("second", "ok?", "a,b", 3)]


def _journal(tmp: Path) -> Journal:
    return Journal(tmp / "cache", str(tmp / "nb.ipynb"), key=journal_key())


def test_graph_nodes_edges_and_colours(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    assert j.acquire()
    for name, inputs, outputs in [("load", {}, {"raw": 10}), ("clean", {"raw": "f1"}, {"df": 10}),
                                  ("stats", {"raw": "f1"}, {"n": 1}),
                                  ("report", {"df": "f2", "n": "f3"}, {})]:
        j.step_started(name, f"k-{name}", f"# {name}")
        status = "cached" if name == "load" else "ran"
        j.step_finished(name, status, key=f"k-{name}", duration=1.0, outputs=outputs,
                        inputs=inputs, saved=2.5 if status == "cached" else 0.0)
    j.gate_waiting("review", "ok?", "load,clean,stats,report")
    j.end_run("waiting")
    all_runs, _ = j.read()
    j.release()
    cells = parse_cells({"cells": [{"cell_type": "code", "source": s} for s in [
        "%%step load\n# load", "%%step clean\n# clean", "%%step stats\n# stats",
        "%%step report\n# report", "%gate review --ask 'ok?'", "%%step ship\nz = 1"]]})
    run = list(all_runs.values())[-1]
    assert run.state == "waiting"
    graph = pipeline_graph(all_runs, run, cells)
    assert [(n.id, n.state, n.rank) for n in graph.nodes] == [
        ("load", "cached", 0), ("clean", "ran", 1), ("stats", "ran", 1), ("report", "ran", 2),
        ("gate:review", "waiting", 3), ("ship", "not_run", 4)]
    assert {(e.source, e.target, e.names, e.kind) for e in graph.edges} == {
        ("load", "clean", ("raw",), "data"), ("load", "stats", ("raw",), "data"),
        ("clean", "report", ("df",), "data"), ("stats", "report", ("n",), "data"),
        ("report", "gate:review", (), "order"), ("gate:review", "ship", (), "order")}
    assert graph.node("load").saved == 2.5
    dot = to_dot(graph, "nb")
    assert dot.startswith('digraph "nb" {') and '"load" -> "clean" [label="raw"];' in dot
    assert f'fillcolor="{COLORS["waiting"]}", shape=diamond' in dot
    svg = to_svg(graph, clickable=True)
    assert svg.count("class='rnb-node ") == 6 and svg.count("class='rnb-edge ") == 6
    assert f"data-step='clean' data-state='ran' data-color='{COLORS['ran']}'" in svg
    assert "2.50 s saved" in svg


def test_a_decision_counts_only_for_the_same_question_and_place(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    assert j.acquire()
    j.gate_waiting("review", "ok?", "a")
    j.end_run("waiting")
    all_runs, _ = j.read()
    run = list(all_runs.values())[-1]
    j.gate_decided(run.run, "review", "approved", question="ok?", position="a", user="ann",
                   host="box", note="fine")
    all_runs, _ = j.read()
    j.release()
    run = all_runs[run.run]
    assert run.state == "approved" and run.waiting is not None and run.waiting.user == "ann"
    gate = find_gates(parse_cells({"cells": [{"cell_type": "code", "source": s} for s in [
        "%%step a\nx = 1", "%gate review --ask 'ok?'"]]}))[0]
    assert decision_for(gate, [run]) is not None
    assert decision_for(gate.__class__("review", "sure?", "a"), [run]) is None
    assert decision_for(gate.__class__("review", "ok?", "a,b"), [run]) is None
    events, warning = read_events(j.path)
    assert warning is None
    assert [e["kind"] for e in events][-3:] == ["gate_waiting", "run_ended", "gate_decided"]


# -- real kernels -------------------------------------------------------------------------------
@pytest.mark.kernel
def test_wait_approve_continue_and_a_changed_gate_asks_again(tmp_path: Path, _key_file: Path) -> None:
    nb, log = _gated(tmp_path)
    cache = tmp_path / "cache"
    first = cli("run", nb, cache=cache, key=_key_file)
    assert first.returncode == 3, first.stderr
    assert f"waiting for approval at gate 'review': resumable-nb approve {nb} --gate review" in first.stderr
    assert counts(log) == {"load": 1}
    written = nbformat.read(tmp_path / "gated.out.ipynb", as_version=4)
    assert "waiting for approval at gate 'review'" in texts(written.cells[2])
    status = _status(nb, cache, _key_file)
    assert status["run"]["state"] == "waiting"
    gate = status["run"]["gate"]
    assert (gate["name"], gate["question"], gate["decision"]) == ("review", "Numbers look right?", None)
    assert gate["since"].endswith("Z")

    again = cli("run", nb, cache=cache, key=_key_file)
    assert again.returncode == 3, again.stderr
    assert counts(log) == {"load": 1}, "waiting again re-runs nothing"

    wrong = cli("approve", nb, "--gate", "ship", cache=cache, key=_key_file)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    ok = cli("approve", nb, "--gate", "review", "--note", "checked", cache=cache, key=_key_file)
    assert ok.returncode == 0, ok.stderr
    decided = _status(nb, cache, _key_file)["run"]
    assert decided["state"] == "approved" and decided["gate"]["note"] == "checked"
    assert decided["gate"]["user"] and decided["gate"]["host"]
    twice = cli("approve", nb, cache=cache, key=_key_file)
    assert twice.returncode == 2 and "nothing is waiting" in twice.stderr

    # the question changed after the approval: it asks again, and nothing re-runs
    changed, _ = _gated(tmp_path, "Totals checked against the ledger?")
    asked = cli("run", changed, cache=cache, key=_key_file)
    assert asked.returncode == 3, asked.stderr
    assert counts(log) == {"load": 1}
    assert cli("approve", nb, cache=cache, key=_key_file).returncode == 0

    done = cli("run", nb, cache=cache, key=_key_file)
    assert done.returncode == 0, done.stderr
    assert counts(log) == {"load": 1, "publish": 1}, "restored steps never execute again"
    out = nbformat.read(tmp_path / "gated.out.ipynb", as_version=4)
    assert "total 6" in texts(step_cell(out, "publish"))
    assert "approved by" in texts(out.cells[2])
    final = _status(nb, cache, _key_file)["run"]
    assert final["state"] == "completed"
    dot = cli("status", nb, "--dot", cache=cache, key=_key_file)
    assert dot.returncode == 0 and '"load" -> "publish" [label="raw"];' in dot.stdout
    assert "nothing is waiting" in cli("reject", nb, cache=cache, key=_key_file).stderr


@pytest.mark.kernel
def test_a_rejected_gate_ends_failed_and_nothing_after_runs(tmp_path: Path, _key_file: Path) -> None:
    nb, log = _gated(tmp_path)
    cache = tmp_path / "cache"
    assert cli("run", nb, cache=cache, key=_key_file).returncode == 3
    rejected = cli("reject", nb, "--note", "totals are off", cache=cache, key=_key_file)
    assert rejected.returncode == 0, rejected.stderr
    result = cli("run", nb, cache=cache, key=_key_file)
    assert result.returncode == 1, result.stderr
    assert "failed at gate 'review' (rejected by" in result.stderr and "totals are off" in result.stderr
    assert counts(log) == {"load": 1}, "nothing after a rejected gate runs"
    assert _status(nb, cache, _key_file)["run"]["state"] == "failed"


@pytest.mark.kernel
def test_a_resumed_run_keeps_its_parameters(tmp_path: Path, _key_file: Path) -> None:
    log, died, cache = tmp_path / "executions.log", tmp_path / "died-once", tmp_path / "cache"
    nb = write_notebook(tmp_path / "params.ipynb", [
        marker_cell(log) + f"\nimport os, signal\nfrom pathlib import Path\nDIED = Path({str(died)!r})",
        ("alpha = 1", ["parameters"]),
        "%%step scale\nmark('scale')\nx = alpha * 10",
        "%%step boom\nif not DIED.exists():\n    DIED.touch()\n    os.kill(os.getpid(), "
        f"{int(signal.SIGKILL)})\nmark('boom')\nprint('x =', x)",
    ])
    first = cli("run", nb, "-p", "alpha", "3", cache=cache, key=_key_file)
    assert first.returncode == 1, first.stderr
    second = cli("run", nb, cache=cache, key=_key_file)
    assert second.returncode == 0, second.stderr
    first_run = _status(nb, cache, _key_file)["runs"][0]["id"]
    assert f"reusing the parameters of run {first_run}: alpha=3" in second.stderr
    assert counts(log) == {"scale": 1, "boom": 1}, "resumed, not run from the top"
    out = nbformat.read(tmp_path / "params.out.ipynb", as_version=4)
    assert "x = 30" in texts(step_cell(out, "boom"))
    assert _status(nb, cache, _key_file)["run"]["parameters"] == {"alpha": "3"}


@pytest.mark.kernel
def test_an_unsigned_run_record_is_never_reused(tmp_path: Path, _key_file: Path) -> None:
    log, cache = tmp_path / "executions.log", tmp_path / "cache"
    nb = write_notebook(tmp_path / "p.ipynb", [
        marker_cell(log), ("alpha = 1", ["parameters"]), "%%step one\nmark('one')\nx = alpha",
        "%%step two\nraise ValueError('boom')"])
    assert cli("run", nb, "-p", "alpha", "5", cache=cache, key=_key_file).returncode == 1
    record = next((cache / "journal").glob("*.cli.json"))
    body, _, _ = record.read_text().rstrip("\n").rpartition("\t")
    record.write_text(body.replace('"5"', '"7"') + "\tnot-a-mac\n")
    again = cli("run", nb, cache=cache, key=_key_file)
    assert "reusing the parameters" not in again.stderr


@pytest.mark.kernel
def test_in_a_live_kernel_running_the_gate_approves_it(tmp_path: Path, _key_file: Path) -> None:
    from tests.kernels import Kernel

    nb = write_notebook(tmp_path / "live.ipynb", ["%%step a\nx = 1", "%gate review --ask 'ok?'"])
    env = {**os.environ, "RESUMABLE_NB_DIR": str(tmp_path / "cache"), "RESUMABLE_NB_KEY_FILE": str(_key_file),
           "JPY_SESSION_NAME": str(nb)}
    env.pop("RESUMABLE_NB_HEADLESS", None)
    k = Kernel(tmp_path, env)
    try:
        k.ok("%load_ext resumable_nb")
        k.ok("%%step a\nx = 1")
        out = k.ok("%gate review --ask 'ok?'").stdout
        assert "gate 'review' approved by" in out
    finally:
        k.close()
    status = _status(nb, tmp_path / "cache", _key_file)
    events = json.loads(cli("events", nb, "--json", cache=tmp_path / "cache", key=_key_file).stdout)["events"]
    decided = [e for e in events if e["kind"] == "gate_decided"]
    assert [(e["gate"], e["decision"], e["position"]) for e in decided] == [("review", "approved", "a")]
    assert status["run"]["gate"] is None, "a live run does not wait: it is not stopped at a gate"
