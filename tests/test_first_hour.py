"""Issue 16, "the first hour": what a new user met in the first hour, each as a test through
a real InteractiveShell, a real kernel or the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import Kernels as StartKernel
from tests.conftest import Shell


def _notebook(folder: Path, sources: list[str], name: str = "pipeline.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path = folder / name
    nbformat.write(nb, str(path))
    return path


# -- 1. %resume does not hide an interrupted re-run -------------------------------------------
TRAIN = "%%step train\nmark('train')\nmodel = {'p': p}"


@pytest.mark.kernel
def test_resume_reports_a_rerun_killed_midway_and_runs_it_with_current_inputs(
        start: StartKernel) -> None:
    cells = ["%load_ext resumable_nb", "p = 2", TRAIN]
    _notebook(start.folder, cells)
    k = start()
    k.ok("p = 1")
    k.ok(TRAIN)
    k.ok("p = 2")
    k.run_until("%%step train\nprint('training', flush=True)\nimport time\ntime.sleep(120)",
                "training")
    k.kill()

    k2 = start()
    reply = k2.ok("%resume")
    assert "Step 'train' was interrupted: the kernel died while it ran." in reply.stdout
    assert "Left to run: train" in reply.stdout and "Nothing left to run" not in reply.stdout
    reply = k2.ok("%resume --run")
    assert k2.value("model") == {"p": 2}
    assert start.count("train") == 2


def test_resume_run_reruns_a_step_whose_latest_attempt_failed(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fail = "%%step train\nmark('train')\nmodel = {'p': p}\nassert p != 2"
    nb = _notebook(tmp_path, ["p = 3", fail])
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(nb))
    shell.fresh()
    shell.run("p = 1")
    shell.run(fail)
    shell.run("p = 2")
    shell.run(fail, ok=False)
    shell.fresh()
    capsys.readouterr()
    shell.run("%resume")
    out = capsys.readouterr().out
    assert "Step 'train' was failed" in out and "Left to run: train" in out
    shell.run("%resume --run")
    assert shell.ns["model"] == {"p": 3} and shell.count("train") == 3


# -- 5. an off switch ------------------------------------------------------------------------
def test_disabled_steps_run_as_plain_cells_and_leave_no_trace(shell: Shell) -> None:
    shell.run("%config ResumableNB.enabled = False")
    for _ in range(2):
        shell.run("%%step a\nmark('a')\nx = 1")
        shell.run("y = 2")  # a plain cell: not journaled either
    assert shell.count("a") == 2 and shell.ns["x"] == 1
    assert shell.magics.runner.history == [], "nothing journaled, nothing stored"
    assert not (shell.cache / "journal").exists() or not any((shell.cache / "journal").glob("*.jsonl"))
    shell.run("%config ResumableNB.enabled = True")
    shell.run("%%step a\nmark('a')\nx = 1")
    shell.run("%%step a\nmark('a')\nx = 1")
    assert shell.count("a") == 3 and shell.last.status == "cached"


def test_the_environment_variable_turns_caching_off(
        shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESUMABLE_NB_ENABLED", "0")
    shell.ip.config.ResumableNB.pop("enabled", None)  # %config in another test outlives it
    shell.fresh()
    assert shell.magics.enabled is False
    shell.run("%%step a\nmark('a')\nx = 1")
    shell.run("%%step a\nmark('a')\nx = 1")
    assert shell.count("a") == 2 and shell.magics.runner.history == []


# -- 2. sizes are what the cache holds ---------------------------------------------------------
def test_output_sizes_are_the_bytes_each_output_takes_in_the_cache(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step big\nimport types\nimport numpy as np\n"
              "holder = types.SimpleNamespace(arr=np.ones(1_000_000))\n"
              "rows = [str(i) for i in range(100_000)]\nn = 1")
    sizes = shell.last.output_sizes
    assert 8_000_000 <= sizes["holder"] < 8_100_000, sizes  # the array inside, not 56 B
    assert 500_000 < sizes["rows"] < 1_500_000, sizes
    assert sizes["n"] < 100, sizes
    entry = shell.magics.session.store().get(shell.last.key)
    assert sum(sizes.values()) <= entry.size < sum(sizes.values()) + 100_000

    capsys.readouterr()
    shell.run("%steps")
    assert "holder (8.0 MB)" in capsys.readouterr().out
    shell.fresh()
    capsys.readouterr()
    shell.run("%resume")
    out = capsys.readouterr().out
    assert "5 variables, 8.8 MB" in out, out  # the entry's file (holder, rows and the rest)
    assert shell.ns["holder"].arr.sum() == 1_000_000


# -- 6. a quieter hit line, and one line on a miss --------------------------------------------
def test_the_hit_line_names_the_time_saved_and_data_only(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    cell = ("%%step prep\nimport math\nimport os\ndef helper(v):\n    return v\n"
            "for i in range(3):\n    pass\n" + "".join(f"v{k} = {k}\n" for k in range(8)))
    shell.run("p = 1")
    capsys.readouterr()
    shell.run(cell)
    assert capsys.readouterr().out == ("[resumable_nb] step 'prep' runs: first run of this step "
                                       "(no earlier entry)\n")
    shell.run(cell)
    line = capsys.readouterr().out.strip()
    assert line.startswith("[resumable_nb] step 'prep' restored from cache, ")
    assert " saved: " in line and "and 4 more" in line, line
    for left_out in ("math", "os", "helper"):
        assert left_out not in line.split("saved:")[1], line

    train = "%%step train\nmodel = p * 2"
    shell.run(train)
    shell.run("p = 2")
    capsys.readouterr()
    shell.run(train)
    assert capsys.readouterr().out == "[resumable_nb] step 'train' runs: input p changed\n"


# -- 9. %resume --run in Jupyter -----------------------------------------------------------------
def test_resume_run_heads_each_cell_and_resume_twice_leaves_one_run(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cells = ["%load_ext resumable_nb", "base = 10", "%%step one\nmark('one')\na = base + 1",
             "%%step two\nmark('two')\nb = a + 1"]
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(_notebook(tmp_path, cells)))
    shell.fresh()
    shell.run(cells[1])
    shell.run(cells[2])
    shell.fresh()
    shell.run("%resume")
    capsys.readouterr()
    shell.run("%resume --run")
    out = capsys.readouterr().out
    assert "%resume --run" not in out, out
    assert "Left to run: two — running them now." in out
    assert "[resumable_nb] re-running plain cell 2" in out
    assert "[resumable_nb] running step two (cell 4)" in out
    assert shell.ns["b"] == 12 and shell.count("two") == 1
    session = shell.magics.session
    runs = session._runs(session.journal())
    assert len(runs) == 2, "the first %resume's run is the one --run continued"
    assert [s.name for s in runs[session.journal().run_id].steps] == ["two"]


# -- 4. see the cache ------------------------------------------------------------------------------
def _cli(*args: object, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESUMABLE_NB_DIR": str(cache)}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", "resumable_nb", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_ls_lists_entries_and_dry_runs_free_nothing(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _notebook(tmp_path, ["%%step a\nx = bytes(2_000_000)"])
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(nb))
    shell.fresh()
    shell.run("%%step a\nx = bytes(1_000_000)")
    shell.fresh()  # a new kernel: a new run, which no longer needs the first entry
    shell.run("%%step a\nx = bytes(2_000_000)")
    shell.magics.session.close()

    listed = _cli("ls", nb, "--json", cache=shell.cache)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["entries"]
    assert [(e["step"], e["needed"]) for e in entries] == [("a", True), ("a", False)]
    assert entries[0]["size"] > 2_000_000 and 1_000_000 < entries[1]["size"] < 1_100_000
    assert entries[0]["notebooks"] == [str(nb)] and entries[0]["last_used"]
    text = _cli("ls", "--cache-dir", shell.cache, cache=tmp_path / "elsewhere").stdout
    assert "pipeline.ipynb" in text and "2 entries, 3.0 MB" in text, text

    gc = _cli("gc", "--dry-run", cache=shell.cache)
    assert gc.stdout.startswith("would remove 1 cache entry, would free 1.0 MB"), gc.stdout
    clear = _cli("clear", nb, "--dry-run", cache=shell.cache)
    assert clear.stdout.startswith("would remove 2 cache entries of pipeline.ipynb's steps (a), "
                                   "would free 3.0 MB"), clear.stdout
    assert len(json.loads(_cli("ls", nb, "--json", cache=shell.cache).stdout)["entries"]) == 2

    status = _cli("status", nb, cache=shell.cache)
    assert f"cache: 3.0 MB in {shell.cache}" in status.stdout, status.stdout
    data = json.loads(_cli("status", nb, "--json", cache=shell.cache).stdout)
    assert data["cache_size"] > 3_000_000


# -- 11. a renamed or deleted notebook, terminal IPython -------------------------------------------
def test_status_runs_events_read_the_journal_of_a_deleted_notebook(
        shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _notebook(tmp_path, ["%%step a\nx = 1"])
    monkeypatch.setenv("RESUMABLE_NB_NOTEBOOK", str(nb))
    shell.fresh()
    shell.run("%%step a\nx = 1")
    shell.magics.session.close()
    nb.unlink()
    status = _cli("status", nb, cache=shell.cache)
    assert status.returncode == 0, status.stderr
    assert "is gone" in status.stderr and "a     ran" in status.stdout
    assert _cli("runs", nb, cache=shell.cache).returncode == 0
    events = _cli("events", nb, cache=shell.cache)
    assert "a  ran" in events.stdout and "(first run of this step" in events.stdout, events.stdout
    missing = _cli("status", tmp_path / "never.ipynb", cache=shell.cache)
    assert missing.returncode == 2 and "--journal FILE" in missing.stderr


def test_status_of_a_terminal_ipython_journal(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESUMABLE_NB_NOTEBOOK", raising=False)
    shell.fresh()
    shell.run("%%step a\nx = 1")
    shell.magics.session.close()
    (journal,) = (shell.cache / "journal").glob("ipython-*.jsonl")
    status = _cli("status", "--journal", journal, cache=shell.cache)
    assert status.returncode == 0, status.stderr
    assert "a     ran" in status.stdout
    data = json.loads(_cli("runs", "--journal", journal, "--json", cache=shell.cache).stdout)
    assert len(data["runs"]) == 1
    assert "step_finished" in _cli("events", "--journal", journal, cache=shell.cache).stdout


# -- 12. docs and help say what the code does ---------------------------------------------------
def test_an_interrupted_step_has_no_duration_not_zero(tmp_path: Path, _key_file: Path) -> None:
    from resumable_nb.journal import Journal, read_events, runs
    from resumable_nb.session import render_table

    j = Journal(tmp_path / "cache", str(tmp_path / "nb.ipynb"))
    j.acquire()
    j.start_run()
    j.step_finished("load", "ran", key="k", duration=1.5, started=("k", "x = 1"))
    j.step_started("train", None, "import time\ntime.sleep(99)")
    j.release()  # as if the kernel died: no step_finished, no run_ended
    all_runs = runs(read_events(j.path)[0])
    (run,) = all_runs.values()
    rows = render_table(all_runs, run, None).splitlines()
    assert rows[2].split()[:4] == ["load", "ran", "1", "1.50"]
    assert rows[3].split()[:4] == ["train", "interrupted", "1", "-"], rows[3]


def test_every_option_and_setting_is_documented_with_an_example() -> None:
    import argparse

    from resumable_nb.cli import _parser
    from resumable_nb.magics import ResumableNB

    root = Path(__file__).resolve().parent.parent
    cli_doc = (root / "docs" / "cli.md").read_text()
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        assert f"`{name}" in cli_doc, f"resumable-nb {name} is not in docs/cli.md"
        for action in command._actions:
            flags = [f for f in action.option_strings if f not in ("-h", "--help")]
            if flags:
                assert any(f"{f} " in cli_doc or f"{f}`" in cli_doc for f in flags), \
                    f"resumable-nb {name} {flags[0]} is not in docs/cli.md"
    guide = (root / "docs" / "getting-started.md").read_text()
    for trait in ResumableNB.class_traits(config=True):
        assert f"| `{trait}` |" in guide, f"%config ResumableNB.{trait} is not in the settings table"
    docs = "\n".join(p.read_text() for p in [root / "README.md", *(root / "docs").glob("*.md")])
    for kind, magics in ResumableNB.magics.items():
        for magic, method in magics.items():
            shown = f"%%{magic}" if kind == "cell" else f"%{magic}"
            doc = getattr(ResumableNB, method).__doc__ or ""
            assert "Example" in doc, f"{shown}'s help has no example"
            assert re.search(rf"{shown}\b", docs), f"{shown} is not in README.md or docs/"
    assert "%step_cache" not in (root / "resumable_nb" / "resume.py").read_text()


# -- 7. headless parameters that cannot work --------------------------------------------------------
def _prepare(nb: Path, cache: Path, *params: tuple[str, str]) -> str:
    import io

    from resumable_nb.headless import HeadlessRun, RunOptions

    err = io.StringIO()
    HeadlessRun(RunOptions(notebook=nb, parameters=params, cache_dir=cache), err=err).prepare()
    return err.getvalue()


def test_run_warns_of_a_parameter_never_assigned_and_of_no_parameters_cell(
        tmp_path: Path, _key_file: Path) -> None:
    untagged = _notebook(tmp_path, ["alpha = 0.1", "%%step fit\nmodel = alpha * 2"], "untagged.ipynb")
    err = _prepare(untagged, tmp_path / "cache", ("alpha", "0.5"), ("alhpa", "1"))
    lines = err.splitlines()
    assert len(lines) == 2, lines
    assert "-p alhpa: the notebook never assigns 'alhpa'" in lines[0]
    assert "no cell is tagged 'parameters'" in lines[1]
    assert "its own assignment of alpha overwrites the -p value" in lines[1]

    tagged = nbformat.read(str(untagged), as_version=4)
    tagged.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(tagged, str(tmp_path / "tagged.ipynb"))
    assert _prepare(tmp_path / "tagged.ipynb", tmp_path / "cache", ("alpha", "0.5")) == ""


# -- 8. headless failures, output, slow cells, timeouts ---------------------------------------------
def test_run_shows_where_it_failed_logs_output_and_slow_plain_cells(tmp_path: Path) -> None:
    nb = _notebook(tmp_path, ["import time\ntime.sleep(3)",
                              "def settings():\n    return {}.missing_attribute",
                              "%%step fit\nprint('hello from fit')\nsettings()"], "fails.ipynb")
    result = _cli("run", nb, "--log-output", cache=tmp_path / "cache")
    assert result.returncode == 1
    err = result.stderr
    assert re.search(r"cell 1 +ran +3\.\d\d s", err), err  # a slow plain cell: like a step
    assert "hello from fit" in err and "@@resumable-nb-report@@" not in err
    assert "Cell In[2], line 2, in settings()" in err
    assert "return {}.missing_attribute" in err, err  # the failing line, not only the error
    assert "AttributeError: 'dict' object has no attribute 'missing_attribute'" in err
    assert "cell 2" not in err, "a quick plain cell gets no progress line"


def test_a_timeout_says_to_use_a_larger_timeout(tmp_path: Path) -> None:
    nb = _notebook(tmp_path, ["%%step slow\nimport time\ntime.sleep(30)"], "slow.ipynb")
    result = _cli("run", nb, "--timeout", "2", cache=tmp_path / "cache")
    assert result.returncode == 1
    assert "Use a larger --timeout (above 2 s)" in result.stderr, result.stderr
    assert "Run the same command again" not in result.stderr


# -- 9. an error in a step reads like one in a plain cell -------------------------------------------
@pytest.mark.kernel
def test_a_step_error_in_a_kernel_names_its_cell_and_line_as_a_plain_cell(start: StartKernel) -> None:
    """The kernel's error message (what Jupyter draws) for a failing step is the plain cell's:
    `Cell In[n], line k` with the cell's own count, no `run_cell_magic` frame (issue 9)."""
    k = start()
    ansi = re.compile(r"\x1b\[[0-9;]*m")

    def error(code: str) -> tuple[int, list[str]]:
        reply = k.run(code)
        [msg] = [m for m in reply.messages if m["msg_type"] == "error"]
        lines = ansi.sub("", "\n".join(msg["content"]["traceback"])).splitlines()
        return int(k.value("get_ipython().execution_count")) - 2, lines

    n, plain = error("pass\nb = 2\n1 / 0")
    m, step = error("%%step s\nb = 2\n1 / 0")
    assert m == n + 2  # the value() between them is a cell too
    assert f"Cell In[{m}], line 3" in step and "run_cell_magic" not in "\n".join(step)
    expected = [line.replace(f"Cell In[{n}]", f"Cell In[{m}]").replace("1 pass", "1 %%step s")
                for line in plain]
    assert step == expected, "\n".join(step)
