"""``resumable-nb``: the CLI as a subprocess on real notebooks, and its pure parts.

The kernel tests run ``python -m resumable_nb run`` on notebooks built in tmp_path, with a temp
cache and the session's HMAC key; executions are counted through a log file each step appends
to, never timed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from resumable_nb.cli import SCHEMA_VERSION
from resumable_nb.errors import RunError
from resumable_nb.headless import choose_resume
from resumable_nb.journal import Journal, chain, journal_path, read_events, runs
from resumable_nb.nbfile import code_cells, inject_parameters, parse_parameter, skipped, source_digest
from resumable_nb.progress import Progress
from resumable_nb.store import Store

ROOT = Path(__file__).resolve().parent.parent


# -- helpers ----------------------------------------------------------------------------------
def cli(*args: object, cache: Path, key: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m resumable_nb ARGS`` with a temp cache and the session's key."""
    env = {**os.environ, "RESUMABLE_NB_KEY_FILE": str(key), "RESUMABLE_NB_DIR": str(cache)}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", "resumable_nb", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=240)


def marker_cell(log: Path) -> str:
    return (f"def mark(tag, _log={str(log)!r}):\n"
            "    with open(_log, 'a') as f:\n"
            "        f.write(tag + '\\n')")


def write_notebook(path: Path, cells: list[str | tuple[str, list[str]]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))
    nbformat.write(nb, path)
    return path


def counts(log: Path) -> dict[str, int]:
    tags = log.read_text().split() if log.exists() else []
    return {t: tags.count(t) for t in set(tags)}


def texts(cell: Any) -> str:
    """A cell's stream and text/plain outputs, joined."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def step_cell(nb: Any, name: str) -> Any:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(f"%%step {name}\n"))


# -- the command itself -----------------------------------------------------------------------
def test_help_through_python_m_and_the_console_script(tmp_path: Path, _key_file: Path) -> None:
    out = cli("--help", cache=tmp_path / "cache", key=_key_file)
    assert out.returncode == 0
    for command in ("run", "status", "runs", "events", "clear", "gc"):
        assert command in out.stdout
    run_help = cli("run", "--help", cache=tmp_path / "cache", key=_key_file)
    assert run_help.returncode == 0
    assert "--from STEP" in run_help.stdout and "-p NAME VALUE" in run_help.stdout
    script = Path(sys.executable).parent / "resumable-nb"
    if script.exists():  # the console script of an installed checkout
        same = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
        assert same.returncode == 0 and same.stdout == out.stdout


@pytest.mark.parametrize("case", ["missing", "not a notebook", "json, not a notebook", "a folder",
                                  "unknown --from step", "malformed -p name", "keyword -p name",
                                  "-p without a value", "bad --timeout", "output folder missing",
                                  "no command"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, _key_file: Path, case: str) -> None:
    nb = write_notebook(tmp_path / "good.ipynb", ["%%step a\nx = 1", "%%step b\ny = x"])
    (tmp_path / "text.ipynb").write_text("hello, not json\n")
    (tmp_path / "other.ipynb").write_text('{"a": 1}')
    out = tmp_path / "out.ipynb"
    args: list[object] = {
        "missing": ["run", tmp_path / "nope.ipynb", "-o", out],
        "not a notebook": ["run", tmp_path / "text.ipynb", "-o", out],
        "json, not a notebook": ["run", tmp_path / "other.ipynb", "-o", out],
        "a folder": ["run", tmp_path, "-o", out],
        "unknown --from step": ["run", nb, "--from", "zzz", "-o", out],
        "malformed -p name": ["run", nb, "-p", "1x", "3", "-o", out],
        "keyword -p name": ["run", nb, "-p", "class", "3", "-o", out],
        "-p without a value": ["run", nb, "-o", out, "-p", "alpha"],
        "bad --timeout": ["run", nb, "--timeout", "0", "-o", out],
        "output folder missing": ["run", nb, "-o", tmp_path / "no" / "out.ipynb"],
        "no command": [],
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli(*args, cache=tmp_path / "cache", key=_key_file)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing may be written"
    if case == "unknown --from step":
        assert "its steps: a, b" in lines[0]


def test_a_notebook_held_by_a_live_kernel_is_refused(tmp_path: Path, _key_file: Path) -> None:
    nb = write_notebook(tmp_path / "held.ipynb", ["%%step a\nx = 1"])
    cache = tmp_path / "cache"
    journal = Journal(cache, str(nb))  # this (alive) process stands in for the holding kernel
    journal.start_run()
    journal.release()
    result = cli("run", nb, cache=cache, key=_key_file)
    assert result.returncode == 2
    assert f"being run by another kernel (pid {os.getpid()}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "held.out.ipynb").exists()


def test_status_runs_events_of_a_notebook_that_never_ran(tmp_path: Path, _key_file: Path) -> None:
    nb = write_notebook(tmp_path / "new.ipynb", ["%%step a\nx = 1"])
    cache = tmp_path / "cache"
    status = json.loads(cli("status", nb, "--json", cache=cache, key=_key_file).stdout)
    assert status["schema"] == SCHEMA_VERSION and status["run"] is None and status["runs"] == []
    assert status["notebook"] == str(nb) and status["cache_dir"] == str(cache)
    assert json.loads(cli("runs", nb, "--json", cache=cache, key=_key_file).stdout)["runs"] == []
    assert json.loads(cli("events", nb, "--json", cache=cache, key=_key_file).stdout)["events"] == []
    assert "no runs yet" in cli("status", nb, cache=cache, key=_key_file).stdout
    assert not cache.exists(), "looking must not create the cache"


# -- clear and gc, on journals and entries made here (no kernel needed) -----------------------
def _payload(value: int) -> dict[str, Any]:
    return {"outputs": {"v": value}, "deleted": (), "events": [], "result": None, "mutated": []}


def _entry(store: Store, key: str, step: str, value: int) -> None:
    store.put(key, step, _payload(value), {}, outputs=("v",), deleted=(), duration=0.5)


def _ran(journal: Journal, step: str, key: str) -> None:
    journal.step_started(step, key, f"v = {key!r}")
    journal.step_finished(step, "ran", key=key, duration=0.5, outputs={"v": 28})


def test_clear_and_gc(tmp_path: Path, _key_file: Path) -> None:
    cache = tmp_path / "cache"
    a = write_notebook(tmp_path / "a.ipynb", ["%%step load\nv = 1", "%%step fit\nv = 2"])
    b = write_notebook(tmp_path / "b.ipynb", ["%%step load\nv = 3"])
    store = Store(cache, _key_file)
    for key, step, value in [("step-a-old", "load", 0), ("step-a-load", "load", 1), ("step-a-fit", "fit", 2),
                             ("step-b-load", "load", 3), ("step-orphan", "other", 4)]:
        _entry(store, key, step, value)
    store.close()
    ja = Journal(cache, str(a))
    _ran(ja, "load", "step-a-old")
    ja.end_run("completed")
    ja.start_run()
    _ran(ja, "load", "step-a-load")
    _ran(ja, "fit", "step-a-fit")
    ja.end_run("completed")
    ja.release()
    jb = Journal(cache, str(b))
    _ran(jb, "load", "step-b-load")
    jb.end_run("completed")
    jb.release()

    def keys() -> set[str]:
        s = Store(cache, _key_file)
        try:
            return set(s.keys())
        finally:
            s.close()

    # gc keeps what the latest run of every notebook needs; drops the rest
    gc = cli("gc", "--cache-dir", cache, cache=tmp_path / "elsewhere", key=_key_file)
    assert gc.returncode == 0, gc.stderr
    assert gc.stdout.startswith("removed 2 cache entries") and "2 notebooks" in gc.stdout
    assert keys() == {"step-a-load", "step-a-fit", "step-b-load"}
    assert cli("gc", cache=cache, key=_key_file).stdout.startswith("removed 0 cache entries")

    # clear one step of a: b's entry of a step with the same name stays
    one = cli("clear", a, "--step", "load", cache=cache, key=_key_file)
    assert one.returncode == 0 and one.stdout.startswith("removed 1 cache entry of step 'load'")
    assert keys() == {"step-a-fit", "step-b-load"}
    unknown = cli("clear", a, "--step", "nope", cache=cache, key=_key_file)
    assert unknown.returncode == 2 and "no step 'nope'" in unknown.stderr
    every = cli("clear", b, cache=cache, key=_key_file)
    assert every.returncode == 0
    assert every.stdout.startswith("removed 1 cache entry of b.ipynb's steps (load)")
    assert keys() == {"step-a-fit"}


def test_gc_keeps_what_a_running_kernel_is_storing(tmp_path: Path, _key_file: Path) -> None:
    cache = tmp_path / "cache"
    nb = write_notebook(tmp_path / "live.ipynb", ["%%step a\nv = 1"])
    store = Store(cache, _key_file)
    _entry(store, "step-live", "a", 1)  # put before its step_finished record: a step mid-store
    store.close()
    journal = Journal(cache, str(nb))  # this process is alive: its run reads as running
    journal.step_started("a", "step-live", "v = 1")
    result = cli("gc", cache=cache, key=_key_file)
    journal.release()
    assert result.stdout.startswith("removed 0 cache entries"), result.stdout


def test_gc_dry_run_is_honoured_with_max_size(tmp_path: Path, _key_file: Path) -> None:
    """`gc --max-size SIZE --dry-run` says what it would remove and removes nothing (it used to
    ignore --dry-run and delete)."""
    cache = tmp_path / "cache"
    nb = write_notebook(tmp_path / "a.ipynb", ["%%step load\nv = 1"])
    store = Store(cache, _key_file)
    _entry(store, "step-old", "load", 0)
    _entry(store, "step-new", "load", 1)
    store.close()
    journal = Journal(cache, str(nb))
    _ran(journal, "load", "step-new")
    journal.end_run("completed")
    journal.release()
    objects = sorted(p.name for p in (cache / "objects").iterdir())
    dry = cli("gc", "--max-size", "1", "--dry-run", cache=cache, key=_key_file)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would remove 1 least recently used cache entry"), dry.stdout
    assert dry.stdout.rstrip().endswith("(dry run: nothing removed)")
    assert sorted(p.name for p in (cache / "objects").iterdir()) == objects
    real = cli("gc", "--max-size", "1", cache=cache, key=_key_file)
    assert real.stdout.startswith("removed 1 least recently used cache entry"), real.stdout
    assert len(list((cache / "objects").iterdir())) == len(objects) - 1


def test_the_cli_sets_a_damaged_index_aside_and_says_so(tmp_path: Path, _key_file: Path) -> None:
    cache = tmp_path / "cache"
    store = Store(cache, _key_file)
    _entry(store, "step-x", "load", 1)
    store.close()
    (cache / "index" / "cache.db").write_bytes(b"not a database " * 100)
    result = cli("gc", cache=cache, key=_key_file)
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("resumable-nb: the cache index in ") and "moved aside" in line
    assert len(list((cache / "index").glob("cache.db.corrupt-*"))) == 1
    assert result.stdout.startswith("removed 0 cache entries")  # a new, empty index


# -- pure parts -------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value"), [
    ("10", 10), ("-2.5", -2.5), ("1e-3", 0.001), ("True", True), ("None", None), ("[1, 2]", [1, 2]),
    ("{'a': 1}", {"a": 1}), ("(1,)", (1,)), ("'10'", "10"), ("hello", "hello"), ("data/x.csv", "data/x.csv"),
    ("", ""), ("print(1)", "print(1)"),
])
def test_parameter_values_are_literals_else_strings(text: str, value: Any) -> None:
    assert parse_parameter("p", text) == ("p", value)


@pytest.mark.parametrize("name", ["1x", "a-b", "", "for", "None", "x y"])
def test_malformed_parameter_names(name: str) -> None:
    with pytest.raises(RunError, match="identifier"):
        parse_parameter(name, "1")


def test_a_value_that_cannot_be_written_back_is_refused() -> None:
    with pytest.raises(RunError, match="literal"):
        parse_parameter("big", "1e999")  # inf: its repr is not a literal


def test_parameters_are_injected_after_the_parameters_cell_like_papermill() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("import os"),
                nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("%%step a\nx = n")]
    inject_parameters(nb, {"n": 5, "name": "x"})
    assert nb.cells[3].source == "# Parameters\nn = 5\nname = 'x'\n"
    assert nb.cells[3].metadata["tags"] == ["injected-parameters"]
    inject_parameters(nb, {"n": 6})  # replaces, does not stack
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and injected[0].source == "# Parameters\nn = 6\n" and nb.cells[3] is injected[0]
    nbformat.validate(nb)

    plain = nbformat.v4.new_notebook()
    plain.nbformat_minor = 4
    plain.cells = [nbformat.v4.new_code_cell("x = 1")]
    for cell in plain.cells:
        cell.pop("id")
    inject_parameters(plain, {"n": 1})
    assert plain.cells[0].source.startswith("# Parameters") and "id" not in plain.cells[0]
    nbformat.validate(plain)


def test_code_cells_and_the_cells_a_headless_run_never_executes() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in [
        "%load_ext resumable_nb", "%resume --run", "# resume\n%resume", "%resume\nx = 1",
        "%%step load --force\nx = 1", "%%step\nx = 2"]]
    cells = code_cells(nb)
    assert [skipped(c) for c in cells] == [False, True, True, False, False, False]
    assert (cells[4].step, cells[4].body) == ("load", "x = 1")
    assert cells[5].step is None


def _journal_events(*specs: tuple[str, list[tuple[str, str, str | None, str]], str | None, str | None]
                    ) -> list[dict[str, Any]]:
    """Events for runs given as (run id, [(step, status, key, source)], ended, resumed_from)."""
    events: list[dict[str, Any]] = []
    for run, steps, ended, resumed_from in specs:
        events.append({"kind": "run_started", "run": run, "pid": 0, "host": "elsewhere", "time": 1.0,
                       "resumed_from": resumed_from})
        for step, status, key, source in steps:
            events.append({"kind": "step_started", "run": run, "step": step, "key": key, "source": source})
            if status != "running":
                events.append({"kind": "step_finished", "run": run, "step": step, "status": status,
                               "key": key})
        if ended:
            events.append({"kind": "run_ended", "run": run, "status": ended})
    return events


@dataclass
class _Case:
    events: list[dict[str, Any]]
    code: list[str]
    record: list[str] | None = None
    fresh: bool = False
    start: str | None = None
    parameters: bool = False


_CODE = ["import os", "%%step a\nx = 1", "%%step b\ny = x", "%%step c\nz = y"]
_CRASHED = _journal_events(("r1", [("a", "ran", "k-a", "x = 1"), ("b", "running", "k-b", "y = x")],
                            None, None))


def _digests(code: list[str]) -> list[str]:
    return [source_digest(s) for s in code]


@pytest.mark.parametrize(("case", "resumes", "note"), [
    (_Case([], _CODE), False, ""),
    (_Case(_journal_events(("r1", [("a", "ran", "k-a", "x = 1")], "completed", None)), _CODE), False, ""),
    (_Case(_CRASHED, _CODE), True, ""),
    (_Case(_CRASHED, _CODE, fresh=True), False, "--fresh"),
    (_Case(_CRASHED, _CODE, start="a"), False, "--from a"),
    (_Case(_CRASHED, ["import os", "%%step a\nx = 2", *_CODE[2:]]), False, "step 'a' changed"),
    (_Case(_CRASHED, _CODE, record=_digests(_CODE)), True, ""),
    (_Case(_CRASHED, ["import sys", *_CODE[1:]], record=_digests(_CODE)), False, "cell 1 changed"),
    (_Case(_CRASHED, [*_CODE[:2], "%%step b\ny = x + 1", *_CODE[3:]], record=_digests(_CODE)), True, ""),
    (_Case(_CRASHED, _CODE, parameters=True), False, "parameters are unknown"),
    (_Case(_journal_events(("r1", [("a", "running", "k-a", "x = 1")], None, None)), _CODE), False,
     "completed no step"),
    (_Case(_journal_events(("r1", [("a", "ran", "k-a", "x = 1")], None, None),
                           ("r2", [], None, "r1")), _CODE), True, ""),
])
def test_when_a_run_resumes(case: _Case, resumes: bool, note: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in case.code]
    all_runs = runs(case.events)
    latest = list(all_runs)[-1] if all_runs else None
    records = {latest: {"code": case.record}} if case.record is not None and latest else {}
    choice = choose_resume(all_runs, code_cells(nb), records, fresh=case.fresh, start=case.start,
                           parameters=case.parameters)
    assert (choice.run is not None) == resumes
    if resumes:
        assert choice.run is not None and choice.run.run == latest
        assert [s.name for s in choice.done] == ["a"]
    assert (note in choice.note) if note else choice.note == ""


def test_progress_lines_plain_and_live() -> None:
    plain = io.StringIO()
    p = Progress(plain, width=6)
    p.start("load")
    p.done("load", "ran", 1.234)
    p.done("fit", "restored by resume", None, "(1.00 s saved)")
    assert plain.getvalue().splitlines() == [
        "  load    running", "  load    ran                    1.23 s",
        "  fit     restored by resume             (1.00 s saved)"]
    live = io.StringIO()
    p = Progress(live, width=6, live=True)
    p.start("load")
    p.done("load", "ran", 2.0)
    assert "\r\x1b[2K  load    running" in live.getvalue()
    assert live.getvalue().endswith("\r\x1b[2K  load    ran                    2.00 s\n")


# -- real kernels -----------------------------------------------------------------------------
@dataclass
class Crash:
    notebook: Path
    cache: Path
    log: Path
    output: Path
    first: subprocess.CompletedProcess[str]
    first_nb: Any
    first_counts: dict[str, int]
    second: subprocess.CompletedProcess[str]
    key: Path


@pytest.fixture(scope="module")
def crash(tmp_path_factory: pytest.TempPathFactory, _key_file: Path) -> Iterator[Crash]:
    """A notebook whose third step kills its own kernel the first time, run twice."""
    tmp = tmp_path_factory.mktemp("crash")
    log, died = tmp / "executions.log", tmp / "died-once"
    nb = write_notebook(tmp / "crash.ipynb", [
        "%load_ext resumable_nb",
        marker_cell(log) + f"\nimport os, signal\nfrom pathlib import Path\nDIED = Path({str(died)!r})"
        "\nresults = []",
        "%%step one\nmark('one')\na = 1\nresults.append(a)\nprint('one done')",
        "%%step two\nmark('two')\nb = a + 1\nresults.append(b)\nb",
        "%%step three\nif not DIED.exists():\n    DIED.touch()\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        "mark('three')\nc = b * 10",
        "%%step four\nmark('four')\nd = c + 1\nresults.append(d)\nprint('results', results)",
    ])
    cache, output = tmp / "cache", tmp / "out" / "crash.out.ipynb"
    output.parent.mkdir()
    first = cli("run", nb, "-o", output, cache=cache, key=_key_file)
    first_nb = nbformat.read(output, as_version=4) if output.exists() else None
    first_counts = counts(log)
    second = cli("run", nb, "-o", output, cache=cache, key=_key_file)
    yield Crash(nb, cache, log, output, first, first_nb, first_counts, second, _key_file)


@pytest.mark.kernel
def test_a_run_whose_kernel_dies_exits_1_and_the_next_resumes(crash: Crash) -> None:
    assert crash.first.returncode == 1, crash.first.stderr
    assert "the kernel died during step 'three'" in crash.first.stderr
    assert crash.first_counts == {"one": 1, "two": 1}
    assert crash.first_nb is not None, "the partial notebook is written"
    assert "the kernel died while this cell ran" in texts(step_cell(crash.first_nb, "three"))
    assert "one done" in texts(step_cell(crash.first_nb, "one"))

    assert crash.second.returncode == 0, crash.second.stderr
    assert "restored 2 steps without running them (one, two)" in crash.second.stderr
    assert counts(crash.log) == {"one": 1, "two": 1, "three": 1, "four": 1}, "restored steps never execute"
    progress = crash.second.stderr.splitlines()
    assert any(line.split()[:2] == ["one", "restored"] for line in progress)
    assert any(line.split()[:2] == ["three", "running"] for line in progress)
    assert any(line.split()[:2] == ["three", "ran"] and line.endswith(" s") for line in progress)

    nb = nbformat.read(crash.output, as_version=4)
    for name in ("one", "two"):
        cell = step_cell(nb, name)
        assert cell.execution_count is None and "restored from run" in texts(cell)
        assert "not executed" in texts(cell)
    # the plain cell above (results = []) ran, and the restored list was bound again after it
    assert "results [1, 2, 21]" in texts(step_cell(nb, "four"))
    meta = nb.metadata["resumable_nb"]
    assert meta["status"] == "completed" and meta["resumed_from"] is not None


@pytest.mark.kernel
def test_status_runs_and_events_after_the_resume(crash: Crash) -> None:
    status = json.loads(cli("status", crash.notebook, "--json", cache=crash.cache, key=crash.key).stdout)
    assert status["schema"] == SCHEMA_VERSION and status["warning"] is None
    first, second = status["runs"]
    assert first["state"] == "interrupted" and second["state"] == "completed"
    assert second["resumed_from"] == first["id"]
    assert first["step_counts"] == {"ran": 2, "interrupted": 1}
    run = status["run"]
    assert run["id"] == second["id"] and run["resumed_from"] == first["id"] and run["state"] == "completed"
    steps = {s["name"]: s for s in run["steps"]}
    assert [s["name"] for s in run["steps"]] == ["one", "two", "three", "four"]
    assert {n: (s["state"], s["attempts"]) for n, s in steps.items()} == {
        "one": ("restored by resume", 0), "two": ("restored by resume", 0), "three": ("ran", 1),
        "four": ("ran", 1)}
    assert steps["one"]["run"] == first["id"] and steps["three"]["run"] == second["id"]
    assert steps["one"]["saved"] == steps["one"]["duration"]
    assert steps["two"]["outputs"].keys() == {"b", "results"}
    assert all(s["stale"] is False and s["error"] == "" for s in run["steps"])

    text = cli("status", crash.notebook, cache=crash.cache, key=crash.key).stdout
    assert f"run {second['id']} completed, resumed from {first['id']}" in text
    listed = json.loads(cli("runs", crash.notebook, "--json", cache=crash.cache, key=crash.key).stdout)
    assert [r["id"] for r in listed["runs"]] == [first["id"], second["id"]]
    assert listed["schema"] == SCHEMA_VERSION
    assert "interrupted" in cli("runs", crash.notebook, cache=crash.cache, key=crash.key).stdout

    events = json.loads(cli("events", crash.notebook, "--run", first["id"][:22], "--limit", "3", "--json",
                            cache=crash.cache, key=crash.key).stdout)
    assert events["schema"] == SCHEMA_VERSION and len(events["events"]) == 3
    assert {e["run"] for e in events["events"]} == {first["id"]}
    assert events["events"][-1] == {**events["events"][-1], "kind": "step_started", "step": "three"}
    lines = cli("events", crash.notebook, cache=crash.cache, key=crash.key).stdout.splitlines()
    assert "run_started" in lines[0] and "run_ended" in lines[-1] and "completed" in lines[-1]


@pytest.mark.kernel
def test_gc_keeps_what_the_latest_run_needs_to_resume(crash: Crash, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(crash.cache, cache)
    store = Store(cache, crash.key)
    _entry(store, "step-orphan", "orphan", 1)
    store.close()
    result = cli("gc", cache=cache, key=crash.key)
    assert result.stdout.startswith("removed 1 cache entry"), result.stdout
    events, _ = read_events(journal_path(cache, str(crash.notebook)))
    all_runs = runs(events)
    needed = {s.key for s in chain(all_runs, list(all_runs)[-1])}
    store = Store(cache, crash.key)
    try:
        assert needed <= set(store.keys()) and len(needed) == 4
    finally:
        store.close()


@pytest.mark.kernel
def test_changing_one_parameter_reruns_exactly_the_steps_that_read_it(tmp_path: Path,
                                                                      _key_file: Path) -> None:
    log, cache = tmp_path / "executions.log", tmp_path / "cache"
    nb = write_notebook(tmp_path / "params.ipynb", [
        marker_cell(log),
        ("alpha = 1\nbeta = 'b'", ["parameters"]),
        "%%step use_alpha\nmark('use_alpha')\nx = alpha * 10\nprint('x =', x)",
        "%%step use_beta\nmark('use_beta')\ny = beta.upper()",
        "%%step neither\nmark('neither')\nw = 42",
    ])
    first = cli("run", nb, cache=cache, key=_key_file)
    assert first.returncode == 0, first.stderr
    assert counts(log) == {"use_alpha": 1, "use_beta": 1, "neither": 1}

    second = cli("run", nb, "-p", "alpha", "3", "-o", tmp_path / "alpha3.ipynb", cache=cache, key=_key_file)
    assert second.returncode == 0, second.stderr
    assert counts(log) == {"use_alpha": 2, "use_beta": 1, "neither": 1}
    out = nbformat.read(tmp_path / "alpha3.ipynb", as_version=4)
    assert out.cells[2].metadata["tags"] == ["injected-parameters"]
    assert out.cells[2].source == "# Parameters\nalpha = 3\n"
    assert "x = 30" in texts(step_cell(out, "use_alpha"))
    assert "restored from cache" in texts(step_cell(out, "use_beta"))
    status = json.loads(cli("status", nb, "--json", cache=cache, key=_key_file).stdout)
    assert status["run"]["parameters"] == {"alpha": "3"}
    assert [s["state"] for s in status["run"]["steps"]] == ["ran", *["restored from cache"] * 2]

    replay = cli("run", nb, "-p", "alpha", "3", "--from", "use_beta", cache=cache, key=_key_file)
    assert replay.returncode == 0, replay.stderr
    assert counts(log) == {"use_alpha": 2, "use_beta": 2, "neither": 1}, "--from re-runs only that step"


@pytest.mark.kernel
def test_a_failed_step_exits_1_and_after_the_fix_the_run_resumes(tmp_path: Path, _key_file: Path) -> None:
    log, cache = tmp_path / "executions.log", tmp_path / "cache"
    cells: list[str | tuple[str, list[str]]] = [
        marker_cell(log), "%%step one\nmark('one')\na = 1",
        "%%step two\nmark('two')\nb = a / 0", "%%step three\nmark('three')\nc = b + 1\nprint('c =', c)"]
    nb = write_notebook(tmp_path / "fails.ipynb", cells)
    first = cli("run", nb, cache=cache, key=_key_file)
    assert first.returncode == 1
    assert "failed at step 'two' (ZeroDivisionError: division by zero)" in first.stderr
    written = nbformat.read(tmp_path / "fails.out.ipynb", as_version=4)
    errors = [o for o in step_cell(written, "two").outputs if o.output_type == "error"]
    assert [o.get("ename") for o in errors] == ["ZeroDivisionError"]

    cells[2] = "%%step two\nmark('two')\nb = a / 2"
    write_notebook(nb, cells)
    second = cli("run", nb, cache=cache, key=_key_file)
    assert second.returncode == 0, second.stderr
    assert "resuming run" in second.stderr
    assert counts(log) == {"one": 1, "two": 2, "three": 1}
    assert "c = 1.5" in texts(step_cell(nbformat.read(tmp_path / "fails.out.ipynb", as_version=4), "three"))


@pytest.mark.kernel
def test_the_example_notebooks_run_through_the_cli(tmp_path: Path, _key_file: Path) -> None:
    """notebooks/: quickstart completes; crash_and_resume dies on its first run by design and
    completes on the second, restoring what the first computed. Copies, temp cache."""
    folder = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder, ignore=shutil.ignore_patterns(".resumable_nb", "*.out.ipynb"))
    env = {**os.environ, "RESUMABLE_NB_KEY_FILE": str(_key_file),
           "RESUMABLE_NB_DIR": str(tmp_path / "quickstart-cache")}
    env.pop("PYTEST_CURRENT_TEST", None)
    quickstart = subprocess.Popen(  # alongside the crash notebook: the two are independent
        [sys.executable, "-m", "resumable_nb", "run", folder / "quickstart.ipynb"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        cache = tmp_path / "crash-cache"
        first = cli("run", folder / "crash_and_resume.ipynb", cache=cache, key=_key_file)
        assert first.returncode == 1, first.stderr
        assert "the kernel died during step 'train'" in first.stderr
        second = cli("run", folder / "crash_and_resume.ipynb", cache=cache, key=_key_file)
        assert second.returncode == 0, second.stderr
        assert "restored 2 steps without running them (load, features)" in second.stderr
        report = step_cell(nbformat.read(folder / "crash_and_resume.out.ipynb", as_version=4), "report")
        assert "'accuracy'" in texts(report)
        _, err = quickstart.communicate(timeout=240)
    finally:
        if quickstart.poll() is None:
            quickstart.kill()
    assert quickstart.returncode == 0, err
    out = nbformat.read(folder / "quickstart.out.ipynb", as_version=4)
    assert "test accuracy" in texts(step_cell(out, "evaluate"))
    assert any("image/png" in o.get("data", {}) for o in step_cell(out, "plot").outputs)
